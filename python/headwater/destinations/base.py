"""What every destination of a local sync implements, and the options they share.

A destination receives, in order: :meth:`Destination.prepare` with the tables the sync will write
(it creates or migrates them and returns the incremental state to start from), then
:meth:`Destination.unstorable` and :meth:`Destination.write` for every batch (without the rows
holding values it cannot store), :meth:`Destination.commit` now and then (the rows
written so far and the state updates that cover them become durable together), and
:meth:`Destination.finish` at the end of a sync that ran to its end, or :meth:`Destination.abort`
when it did not. :meth:`Destination.close` releases the connection or the lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Literal, Protocol

import pyarrow as pa
import pydantic

from headwater.errors import DestinationError
from headwater.schema import Table, reserved_table_prefix

__all__ = [
    "CQ_SOURCE_NAME",
    "CQ_SYNC_TIME",
    "Destination",
    "DestinationTable",
    "StateEntry",
    "SyncColumns",
    "Unstorable",
    "WriteMode",
    "WriteOptions",
    "batches_of",
    "one_batch",
]

#: How a sync writes into existing tables.
WriteMode = Literal["append", "overwrite", "upsert"]

#: The columns a local sync adds to every table, as the CloudQuery CLI does.
CQ_SYNC_TIME = "_cq_sync_time"
CQ_SOURCE_NAME = "_cq_source_name"


class WriteOptions(pydantic.BaseModel):
    """How one sync writes into its destination.

    Attributes:
        source_name: Identifies the source in ``_cq_source_name`` and in the state table.
        sync_time: The sync's start, stored in ``_cq_sync_time`` of every row it writes.
        mode: ``None`` (the default) chooses per table (see :meth:`mode_of`): ``upsert``
            for a table with a primary key, so a rerun replaces its rows instead of adding
            them again, ``append`` for a table without one. ``append`` adds rows;
            ``overwrite`` replaces each table's rows with the sync's, atomically at its end
            (the sync starts without incremental state); ``upsert`` replaces rows with the
            same primary key (``_cq_id`` when the table has none). A destination that cannot
            upsert chooses its own default (JSON lines: ``append`` with ``delete_stale``).
        delete_stale: At the end of a table that synced without errors, delete the rows this
            source wrote in earlier syncs. Tables with incremental state are left alone, since
            an incremental sync only fetches what changed.
        migrate_force: Drop and rebuild a table whose column types changed incompatibly,
            instead of refusing to sync (its rows and incremental state are lost).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    source_name: str = pydantic.Field(min_length=1)
    sync_time: dt.datetime
    mode: WriteMode | None = None
    delete_stale: bool = False
    migrate_force: bool = False

    def mode_of(self, plan: DestinationTable) -> WriteMode:
        """How this sync writes ``plan``'s table: :attr:`mode`, or the default for it.

        The default upserts a table with a primary key, which makes a plain rerun of a
        full-refresh sync replace its rows rather than double them, and appends to a table
        without one, whose ``_cq_id`` is random so that there is nothing to match on.
        """
        if self.mode is not None:
            return self.mode
        return "upsert" if plan.table.primary_keys else "append"

    @pydantic.field_validator("sync_time")
    @classmethod
    def _utc_microseconds(cls, value: dt.datetime) -> dt.datetime:
        # Stored as microseconds in UTC: the value written must compare equal when read back.
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True)
class DestinationTable:
    """A table a sync writes, as the destination needs to know it.

    Attributes:
        table: The plugin's table.
        schema: Its CloudQuery Arrow schema (``_cq_id`` and ``_cq_parent_id`` included).
        incremental: Its resolver takes incremental state: ``delete_stale`` leaves it alone.
    """

    table: Table
    schema: pa.Schema
    incremental: bool

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name


@dataclasses.dataclass(frozen=True)
class StateEntry:
    """One incremental state key as a destination stores it.

    Attributes:
        table_name: The table whose resolver set it.
        key: The state key.
        value: Its value.
    """

    table_name: str
    key: str
    value: str


@dataclasses.dataclass(frozen=True)
class Unstorable:
    """Values of one column of a batch that a destination cannot store, for one reason.

    The engine accepted them (they fit the Arrow schema); the destination's own type refuses
    them, e.g. PostgreSQL's ``text`` and ``jsonb`` refuse the NUL character.

    Attributes:
        column: The column's name.
        rows: The rows' indices in the batch (``int64``, ascending, each once).
        expected: The column's type in the destination.
        reason: Why the values cannot be stored.
        examples: The first rows' values, at most ten, as ``(Python type name, truncated
            repr)`` with the offending part in view.
    """

    column: str
    rows: pa.Array
    expected: str
    reason: str
    examples: list[tuple[str, str]]


class Destination(Protocol):
    """Where a local sync writes: DuckDB, PostgreSQL, Parquet or JSON-lines files."""

    #: The destination's URL, with any password left out; for messages.
    url: str
    #: Rows per :meth:`write` the destination prefers: smaller batches are gathered first.
    write_batch_rows: int
    #: Bytes gathered at most, for one :meth:`write` and for all tables together, whatever
    #: ``write_batch_rows`` says.
    write_batch_bytes: int

    def prepare(self, tables: Sequence[DestinationTable], options: WriteOptions) -> dict[str, str]:
        """Create or migrate ``tables`` and return the incremental state to sync from.

        Raises:
            MigrationError: A column type changed incompatibly and ``migrate_force`` is off.
            DestinationError: The destination failed.
        """
        ...

    def unstorable(self, table: str, batch: pa.RecordBatch) -> list[Unstorable]:
        """The values of ``batch`` (rows of ``table``) this destination cannot store.

        Called for every batch before it is written; the caller leaves those rows out under
        the sync's ``on_row_error`` rule. Checked with Arrow compute kernels over whole
        columns, only for the column types the destination has a limit on.
        """
        ...

    def write(self, table: str, data: pa.RecordBatch | pa.Table) -> None:
        """Write rows of ``table`` (its CloudQuery schema) within the open transaction.

        ``data`` is one batch, or several gathered into a table (one write, no copy).
        """
        ...

    def commit(self, state: Sequence[StateEntry]) -> None:
        """Make the rows written so far durable, with ``state`` in the same transaction.

        In ``overwrite`` mode nothing becomes visible before :meth:`finish`; a destination
        may keep the state for then.
        """
        ...

    def finish(self, completed: Collection[str], state: Sequence[StateEntry]) -> None:
        """End a sync that ran to its end: the last commit.

        Args:
            completed: The tables that synced without errors, with every table above them
                (see :func:`headwater.destinations.run.completed_tables`). ``overwrite``
                replaces only their rows (the others keep their old rows), and
                ``delete_stale`` applies only to them.
            state: State updates since the last commit.
        """
        ...

    def abort(self) -> None:
        """Roll back whatever was not committed; leave nothing half-written behind."""
        ...

    def close(self) -> None:
        """Release the connection or the lock; safe to call twice."""
        ...


class SyncColumns:
    """Appends ``_cq_sync_time`` and ``_cq_source_name`` to batches.

    The two constant columns are made once, as long as the longest batch, and sliced (no copy)
    for each batch.
    """

    def __init__(self, options: WriteOptions) -> None:
        self._time = pa.scalar(options.sync_time, pa.timestamp("us", tz="UTC"))
        self._source = pa.scalar(options.source_name, pa.string())
        self._arrays: tuple[pa.Array, pa.Array] | None = None
        self._schema: tuple[pa.Schema, pa.Schema] | None = None

    def add(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the two columns appended."""
        n = batch.num_rows
        if self._arrays is None or len(self._arrays[0]) < n:
            size = max(n, 2 * len(self._arrays[0]) if self._arrays is not None else 0)
            self._arrays = (pa.repeat(self._time, size), pa.repeat(self._source, size))
        times, sources = self._arrays
        if self._schema is None or self._schema[0] is not batch.schema:
            schema = batch.schema.append(pa.field(CQ_SYNC_TIME, times.type))
            self._schema = (batch.schema, schema.append(pa.field(CQ_SOURCE_NAME, pa.string())))
        return pa.RecordBatch.from_arrays(
            [*batch.columns, times.slice(0, n), sources.slice(0, n)], schema=self._schema[1]
        )


def batches_of(data: pa.RecordBatch | pa.Table) -> list[pa.RecordBatch]:
    """The batches of what :meth:`Destination.write` received."""
    return data.to_batches() if isinstance(data, pa.Table) else [data]


def one_batch(data: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
    """``data`` as a single batch (copied together only when it has several)."""
    batches = batches_of(data)
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of ``schema`` without rows (nested extension types included)."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def state_of(
    rows: Sequence[tuple[str, str, str]], tables: Sequence[DestinationTable], options: WriteOptions
) -> dict[str, str]:
    """The state a sync starts from, from stored ``(table_name, key, value)`` rows.

    ``overwrite`` syncs its tables from scratch, so their keys are left out.
    """
    fresh = {plan.name for plan in tables} if options.mode == "overwrite" else set()
    return {key: value for table, key, value in rows if table not in fresh}


def latest(state: Sequence[StateEntry]) -> dict[str, StateEntry]:
    """The last update of every key, in the order keys were first set."""
    result: dict[str, StateEntry] = {}
    for entry in state:
        result[entry.key] = entry
    return result


def check_table_names(tables: Sequence[DestinationTable], url: str) -> None:
    """Refuse tables whose names are reserved for the destination's own tables.

    :class:`~headwater.schema.Table` refuses them already; this is the destination's own
    guard, run before anything is written, so that no path around it (a table built another
    way, a plan made by hand) can overwrite the state or staging tables.

    Raises:
        DestinationError: A table's name starts with a reserved prefix.
    """
    for plan in tables:
        reserved = reserved_table_prefix(plan.name)
        if reserved is not None:
            raise DestinationError(
                f"{url}: table {plan.name!r} cannot be written: names starting with "
                f"{reserved!r} are reserved for headwater's internal tables (incremental "
                "state, staging); nothing was written"
            )


def check_modes(
    options: WriteOptions,
    tables: Sequence[DestinationTable],
    supported: Mapping[str, bool],
    url: str,
) -> None:
    """Raise if the destination at ``url`` cannot write one of ``tables`` as ``options`` say."""
    for plan in tables:
        mode = options.mode_of(plan)
        if not supported.get(mode, False):
            modes = ", ".join(name for name, ok in supported.items() if ok)
            raise DestinationError(
                f"{url}: mode {mode!r} is not supported here (table {plan.name!r}); use {modes}"
            )
