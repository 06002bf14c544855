"""Rows or Arrow data into CloudQuery record batches, and Arrow IPC encoding.

Both run in Rust (``headwater._core``): Python objects are read with the GIL held, and the
arrays are finished, ``_cq_id`` hashed and IPC encoded with the GIL released.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal
from uuid import UUID

import pyarrow as pa

from headwater import _core
from headwater.errors import RowError
from headwater.schema import Table

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "build_batch", "encode_ipc"]

#: Default IPC message size limit: well under the 100 MiB the CloudQuery CLI accepts.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

ParentIds = UUID | str | bytes | Iterable[UUID | str | bytes] | None


def _builder(table: Table) -> _core.BatchBuilder:
    # Compiled once per table and cached on it; the builder is immutable and thread-safe.
    builder: _core.BatchBuilder | None = table.__dict__.get("_batch_builder")
    if builder is None:
        builder = _core.BatchBuilder(table.arrow_schema, strict=bool(table.strict))
        table.__dict__["_batch_builder"] = builder
    return builder


def _is_arrow(data: object) -> bool:
    kind = type(data)
    return hasattr(kind, "__arrow_c_array__") or hasattr(kind, "__arrow_c_stream__")


def build_batch(
    table: Table,
    rows: Iterable[Any] | Any,
    *,
    parent_cq_ids: ParentIds = None,
    deterministic_cq_id: bool = True,
    on_error: Literal["raise", "skip"] = "raise",
    errors: list[RowError] | None = None,
) -> pa.RecordBatch:
    """Build one record batch of ``table`` from rows or Arrow data.

    Rows may be dicts (by column name; a missing key is null, unknown keys are ignored),
    objects, dataclasses or pydantic models (by attribute), or tuples/lists (by position).
    Arrow data is anything implementing ``__arrow_c_array__`` or ``__arrow_c_stream__``
    (pyarrow, polars, DuckDB results): its columns are matched by name and cast to the table's
    types only where the cast is exact.

    Values are never coerced with loss: ``3`` is accepted in a float column, but ``"3"`` in an
    int column, ``3.5`` in an int column or a NaN in an int column is a :class:`RowError`.
    Naive ``datetime`` values are taken as UTC; aware ones are converted exactly.

    ``_cq_id`` follows the CloudQuery Go SDK: with ``deterministic_cq_id`` (the default) and
    primary keys, it is the UUIDv5 of the primary-key values, identical to what a Go plugin
    computes; otherwise it is a random UUIDv4.

    Args:
        table: The table the batch belongs to.
        rows: An iterable of rows, or Arrow data.
        parent_cq_ids: ``_cq_parent_id`` of the rows: one UUID (``uuid.UUID``, str or 16
            bytes) for all rows, or one per input row. ``None`` leaves it null.
        deterministic_cq_id: Derive ``_cq_id`` from the primary key when the table has one.
        on_error: ``"raise"`` raises :class:`RowError` for the first bad row; ``"skip"``
            leaves bad rows out.
        errors: With ``on_error="skip"``, a list that receives a :class:`RowError` per
            skipped row, so skipped rows are counted and explained.

    Returns:
        A ``pyarrow.RecordBatch`` with ``table.arrow_schema``.

    Raises:
        RowError: A row does not fit the table (with ``on_error="raise"``).
        SchemaError: Arrow data cannot be converted to the table's schema.
    """
    if not isinstance(table, Table):
        raise TypeError(f"table must be a headwater.Table, not {type(table).__name__}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if errors is not None and not isinstance(errors, list):
        raise TypeError(f"errors must be a list, not {type(errors).__name__}")
    builder = _builder(table)
    if _is_arrow(rows):
        return builder.build_arrow(
            rows, parent_cq_ids=parent_cq_ids, deterministic_cq_id=deterministic_cq_id
        )
    return builder.build_rows(
        rows,
        parent_cq_ids=parent_cq_ids,
        deterministic_cq_id=deterministic_cq_id,
        skip_errors=on_error == "skip",
        errors=errors,
    )


def encode_ipc(
    data: pa.Schema | pa.RecordBatch | pa.Table | Any,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """Encode a schema or Arrow data as Arrow IPC streams, the payload of CloudQuery messages.

    A schema gives one stream holding only the schema (``GetTables``, ``migrate_table``).
    Data gives one stream (schema + one record batch) per message, splitting batches so that
    no message exceeds ``max_message_bytes``; the messages decoded in order give back every row.

    Args:
        data: A ``pyarrow.Schema`` (or any ``__arrow_c_schema__`` producer), or Arrow data
            (``__arrow_c_array__`` / ``__arrow_c_stream__``).
        max_message_bytes: Upper bound on the size of each returned stream.

    Returns:
        The encoded streams.

    Raises:
        IpcError: A single row alone encodes to more than ``max_message_bytes``.
    """
    if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
        raise TypeError("max_message_bytes must be an int")
    if max_message_bytes <= 0:
        raise ValueError(f"max_message_bytes must be positive, not {max_message_bytes}")
    if _is_arrow(data):
        return _core.encode_data_ipc(data, max_message_bytes)
    if hasattr(type(data), "__arrow_c_schema__"):
        return [_core.encode_schema_ipc(data)]
    raise TypeError(
        f"expected a pyarrow Schema, RecordBatch or Table (or another Arrow C data producer), "
        f"not {type(data).__name__}"
    )
