"""SQL text and Arrow helpers the SQL destinations share (DuckDB, PostgreSQL, DuckDB over files).

Kept apart from any one database's module so that a destination imports only its own driver.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["dedupe_last", "literal", "quote", "timestamp_literal"]


def quote(identifier: str) -> str:
    """``identifier`` as a double-quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str) -> str:
    """``value`` as a single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def timestamp_literal(value: dt.datetime) -> str:
    """A ``TIMESTAMPTZ`` literal of a UTC datetime, to the microsecond."""
    return f"TIMESTAMPTZ {literal(value.isoformat(timespec='microseconds'))}"


def dedupe_last(batch: pa.RecordBatch, column: str = "_cq_id") -> pa.RecordBatch:
    """``batch`` with only the last row of each value of ``column`` (upserts: last one wins).

    ``_cq_id`` is derived from the primary key, so one ``_cq_id`` is one key.
    """
    values = batch.column(column)
    if isinstance(values, pa.ExtensionArray):
        values = values.storage
    if pc.count_distinct(values, mode="all").as_py() == batch.num_rows:
        return batch
    positions = pa.table({"k": values, "i": pa.array(range(batch.num_rows), pa.int64())})
    last = positions.group_by("k", use_threads=False).aggregate([("i", "max")])
    last_rows = last.column("i_max").combine_chunks()
    return batch.take(pc.take(last_rows, pc.sort_indices(last_rows)))
