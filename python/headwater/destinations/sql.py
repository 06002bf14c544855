"""SQL text and Arrow helpers the SQL destinations share (DuckDB, PostgreSQL, DuckDB over files).

The statements that end a sync (``overwrite``'s replacement, ``delete_stale``'s deletes) and
that forget a rebuilt table's state are built here once, for both databases: a
:class:`SqlDialect` says how each names its tables and passes values. Kept apart from any one
database's module so that a destination imports only its own driver.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from headwater.destinations.base import (
    CQ_SOURCE_NAME,
    CQ_SYNC_TIME,
    DestinationTable,
    StateEntry,
    WriteOptions,
)

__all__ = [
    "EndOfSync",
    "SqlDialect",
    "Statement",
    "dedupe_last",
    "end_of_sync",
    "forget_table_state",
    "literal",
    "quote",
    "timestamp_literal",
]


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


@dataclasses.dataclass(frozen=True)
class Statement:
    """One SQL statement and the values bound to its ``?`` placeholders (none when inlined)."""

    sql: str
    params: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SqlDialect:
    """What the DuckDB and PostgreSQL destinations' statements differ in.

    Attributes:
        table: A table's name as a statement writes it: quoted, and for PostgreSQL qualified
            with the session's schema (``search_path`` may change between connections).
        state_table: The state table, as a statement writes it.
        bind: Values compared with the state table's columns are bound to ``?``
            placeholders (DuckDB); otherwise they are inlined as escaped literals
            (PostgreSQL).
    """

    table: Callable[[str], str]
    state_table: str
    bind: bool

    def value(self, value: str, params: list[str]) -> str:
        """``value`` in a statement: ``?`` (appending ``value`` to ``params``), or a literal."""
        if self.bind:
            params.append(value)
            return "?"
        return literal(value)


@dataclasses.dataclass(frozen=True)
class EndOfSync:
    """What :func:`end_of_sync` decided.

    Attributes:
        statements: To run, in order, in the transaction that then stores ``state``.
        state: The state updates to store with them.
    """

    statements: list[Statement]
    state: list[StateEntry]


def end_of_sync(
    dialect: SqlDialect,
    tables: Iterable[DestinationTable],
    completed: Collection[str],
    options: WriteOptions,
    state: Sequence[StateEntry],
) -> EndOfSync:
    """The deletes that end a sync, and the state to store with them.

    ``overwrite`` deletes, in every completed table, the rows no other than this sync wrote,
    and in every other table this sync's partial rows (a failed table keeps its old ones);
    the completed tables' stored state is replaced by theirs from ``state`` (all of this
    sync's updates: ``overwrite`` commits none before its end), and a failed table's updates
    are dropped. ``delete_stale`` deletes this source's rows of earlier syncs from the
    completed tables that are not incremental. Rows are matched on ``_cq_source_name`` and
    ``_cq_sync_time``, which :class:`~headwater.destinations.base.WriteOptions` keeps to
    the microsecond in UTC so that the literal compares equal to what was stored.

    Args:
        dialect: The database's.
        tables: The sync's tables.
        completed: The tables that synced without errors (with every table above them).
        options: The sync's options.
        state: The state updates not yet stored.
    """
    source = literal(options.source_name)
    sync_time = timestamp_literal(options.sync_time)
    source_column, time_column = quote(CQ_SOURCE_NAME), quote(CQ_SYNC_TIME)
    statements: list[Statement] = []
    if options.mode == "overwrite":
        this_sync = f"{source_column} = {source} AND {time_column} = {sync_time}"
        older = (
            f"{source_column} IS DISTINCT FROM {source} "
            f"OR {time_column} IS DISTINCT FROM {sync_time}"
        )
        done = []
        for plan in tables:
            where = older if plan.name in completed else this_sync
            statements.append(Statement(f"DELETE FROM {dialect.table(plan.name)} WHERE {where}"))
            if plan.name in completed:
                done.append(plan.name)
        if done:
            params: list[str] = []
            source_value = dialect.value(options.source_name, params)
            names = ", ".join(dialect.value(name, params) for name in done)
            statements.append(
                Statement(
                    f"DELETE FROM {dialect.state_table} WHERE source_name = {source_value} "
                    f"AND table_name IN ({names})",
                    tuple(params),
                )
            )
        return EndOfSync(statements, [entry for entry in state if entry.table_name in completed])
    if options.delete_stale:
        for plan in tables:
            if plan.name in completed and not plan.incremental:
                statements.append(
                    Statement(
                        f"DELETE FROM {dialect.table(plan.name)} WHERE {source_column} = "
                        f"{source} AND {time_column} < {sync_time}"
                    )
                )
    return EndOfSync(statements, list(state))


def forget_table_state(dialect: SqlDialect, source_name: str, table: str) -> Statement:
    """Delete the state ``source_name`` stored for ``table`` (a table rebuilt from scratch)."""
    params: list[str] = []
    source = dialect.value(source_name, params)
    name = dialect.value(table, params)
    return Statement(
        f"DELETE FROM {dialect.state_table} WHERE source_name = {source} AND table_name = {name}",
        tuple(params),
    )
