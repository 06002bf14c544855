"""A local sync: run a plugin and write what it yields into a destination.

:func:`sync_to` is what ``headwater sync`` runs. The plugin's batches go to the destination as
they come (Arrow in, Arrow out); incremental state is committed in the same transaction as the
rows it covers, at most every ``commit_interval`` seconds and at the end, so a crash at any
moment leaves the destination at its last commit with a state that never runs ahead of the data.

Example:
    >>> import pyarrow as pa
    >>> import headwater as hw
    >>> from headwater.destinations.run import sync_to
    >>> @hw.table("numbers", columns=[hw.Column("n", pa.int64(), primary_key=True)])
    ... def numbers(client):
    ...     yield from ({"n": n} for n in range(3))
    >>> plugin = hw.Plugin(name="demo", version="1", tables=[numbers])
    >>> sync_to(plugin, "duckdb:///:memory:").rows  # doctest: +SKIP
    {'numbers': 3}

:meth:`headwater.Plugin.sync_to` is the public face of :func:`sync_to`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa
import pyarrow.compute as pc

import headwater.sync as hw_sync
from headwater.destinations import DEFAULT_URL, open_destination
from headwater.destinations.base import (
    Destination,
    DestinationTable,
    StateEntry,
    Unstorable,
    WriteMode,
    WriteOptions,
)
from headwater.errors import RowError, SyncInterrupted
from headwater.schema import Table
from headwater.sync.options import SyncOptionFields, SyncOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from headwater.plugin import Plugin

__all__ = [
    "DEFAULT_COMMIT_INTERVAL",
    "LocalSyncResult",
    "ProgressListener",
    "completed_tables",
    "sync_to",
]

logger = logging.getLogger("headwater.local")

#: Seconds between commits of state (and the rows it covers) during a sync.
DEFAULT_COMMIT_INTERVAL = 1.0
#: Rows of a batch a destination cannot store that are named in the log or the error.
_REPORTED_ROWS = 10


class _Coalescer:
    """Gathers a table's small batches into one write; flushed before every commit.

    Every write costs the destination a statement or two whatever its size, and the engine
    cuts a batch whenever a resolver sets state, so a resolver setting state every few rows
    would otherwise make the destination the bottleneck. All tables together hold at most the
    destination's ``write_batch_bytes`` (the table holding most is written first), so a sync
    of many tables holds no more than one of few.
    """

    def __init__(self, destination: Destination, rows: int) -> None:
        self._destination = destination
        self._limit = rows
        self._byte_limit = destination.write_batch_bytes
        self._pending: dict[str, list[pa.RecordBatch]] = {}
        self._rows: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self.held_bytes = 0

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        waiting = self._pending.get(table)
        if not waiting and batch.num_rows >= self._limit:
            self._destination.write(table, batch)
            return
        self._pending.setdefault(table, []).append(batch)
        self._rows[table] = self._rows.get(table, 0) + batch.num_rows
        self._bytes[table] = self._bytes.get(table, 0) + batch.nbytes
        self.held_bytes += batch.nbytes
        if self._rows[table] >= self._limit or self._bytes[table] >= self._byte_limit:
            self._flush(table)
        while self._bytes and self.held_bytes >= self._byte_limit:
            self._flush(max(self._bytes, key=self._bytes.__getitem__))

    def _flush(self, table: str) -> None:
        waiting = self._pending.pop(table, [])
        self.held_bytes -= self._bytes.pop(table, 0)
        self._rows.pop(table, None)
        if len(waiting) == 1:
            self._destination.write(table, waiting[0])
        elif waiting:
            self._destination.write(table, pa.Table.from_batches(waiting))  # no copy

    def flush(self) -> None:
        """Write everything gathered."""
        for table in list(self._pending):
            self._flush(table)


class ProgressListener(Protocol):
    """Told what a local sync does, as it does it (the CLI's progress display)."""

    def started(self, tables: list[str]) -> None:
        """The sync starts writing ``tables``."""

    def wrote(self, table: str, rows: int) -> None:
        """``rows`` more rows of ``table`` were written."""

    def failed(self, table: str, message: str) -> None:
        """A resolver of ``table`` failed."""


@dataclasses.dataclass
class LocalSyncResult:
    """What a local sync did.

    Attributes:
        url: The destination (without a password).
        tables: The tables synced, parents first.
        rows: Rows written per table.
        errors: Failed resolver invocations per table.
        skipped_rows: Rows left out per table because they did not fit it.
        error_messages: One line per failed resolver invocation.
        duration: Seconds from start to the last commit.
        complete: The sync ran to its end and its last commit succeeded.
        state: The incremental state after the sync.
        incomplete_tables: Tables that failed, or sit below a table that failed: ``overwrite``
            kept their earlier rows and ``delete_stale`` left them alone.
    """

    url: str
    tables: list[str]
    rows: dict[str, int]
    errors: dict[str, int]
    skipped_rows: dict[str, int]
    error_messages: list[str]
    duration: float
    complete: bool
    state: dict[str, str]
    incomplete_tables: list[str] = dataclasses.field(default_factory=list)

    @property
    def failed_tables(self) -> list[str]:
        """Tables with at least one failed resolver invocation."""
        return [name for name in self.tables if self.errors.get(name, 0)]

    @property
    def total_rows(self) -> int:
        """Rows written in all."""
        return sum(self.rows.values())


def _leave_out(
    run: hw_sync.SyncRun,
    table: str,
    batch: pa.RecordBatch,
    refused: list[Unstorable],
    first_row: int,
) -> tuple[pa.RecordBatch, hw_sync.SyncError | None]:
    """``batch`` without the rows holding values the destination cannot store.

    They are reported to ``run`` as rows that do not fit their table (``on_row_error``
    decides: skipped, or a failure of the table, returned for the caller to report). A row
    is named by its position among the table's rows in this sync (``first_row`` is the
    batch's) and its ``_cq_id``.
    """
    bad = pc.unique(pa.concat_arrays([problem.rows for problem in refused])).sort()
    positions = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), len(batch))), 1)
    kept = batch.filter(pc.invert(pc.is_in(positions, value_set=bad)))
    ids = batch.column("_cq_id")
    errors = [
        RowError(
            table=table,
            column=problem.column,
            row=first_row + row,
            expected=problem.expected,
            value_type=value_type,
            value_repr=value_repr,
            reason=f"{problem.reason} (_cq_id {ids[row]})",
        )
        for problem in refused
        for row, (value_type, value_repr) in zip(
            problem.rows.to_pylist()[: len(problem.examples)], problem.examples, strict=True
        )
    ]
    errors.sort(key=lambda error: error.row)
    return kept, run.refuse_rows(table, errors[:_REPORTED_ROWS], len(bad))


def _lineage(table: Table | None) -> list[str]:
    """The names of ``table`` and every table above it."""
    names = []
    while table is not None:
        names.append(table.name)
        table = table.parent
    return names


def completed_tables(plans: Sequence[DestinationTable], errors: Mapping[str, int]) -> list[str]:
    """The tables of ``plans`` that synced completely: neither they nor a table above them failed.

    A child table is resolved once per row of its parent. When a parent's resolver fails (for
    any client, at any depth above), the rows it did not yield get no children, so the child
    table holds only part of what it should, although its own resolvers succeeded. Replacing
    its rows (``overwrite``) or deleting its stale ones (``delete_stale``) would then lose rows,
    exactly as for a table whose own resolver failed.

    Args:
        plans: The tables of the sync, parents first.
        errors: Failed resolver invocations (and batches that failed to build) per table.

    Returns:
        The names of the complete tables, in the order of ``plans``.
    """
    failed = {name for name, count in errors.items() if count}
    return [plan.name for plan in plans if failed.isdisjoint(_lineage(plan.table))]


def sync_to(
    plugin: Plugin,
    to: str = DEFAULT_URL,
    spec: object = None,
    *,
    options: SyncOptions | None = None,
    mode: WriteMode | None = None,
    delete_stale: bool = False,
    migrate_force: bool = False,
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
    source_name: str | None = None,
    progress: ProgressListener | None = None,
    coalesce_rows: int | None = None,
    **overrides: Unpack[SyncOptionFields],
) -> LocalSyncResult:
    """Sync ``plugin`` into the destination at ``to``.

    Args:
        plugin: The plugin.
        to: The destination URL (see :mod:`headwater.destinations`).
        spec: The plugin spec (a mapping, JSON text or a spec instance).
        options: The sync's options; a keyword option replaces that field (as in
            :meth:`headwater.Plugin.sync`). The result is handed to ``plugin.sync`` unchanged.
        mode: ``append``, ``overwrite`` or ``upsert``; by default ``upsert`` for tables with a
            primary key (a rerun does not double them) and ``append`` for the others (see
            :class:`WriteOptions`).
        delete_stale: Delete this source's rows of earlier syncs from the tables that synced
            without errors (neither they nor a table above them failed).
        migrate_force: Rebuild tables whose column types changed incompatibly.
        commit_interval: Seconds between commits of incremental state with its rows.
        source_name: ``_cq_source_name`` and the state's owner (default: the plugin's name).
        progress: Told about rows and errors as they are written.
        coalesce_rows: Batches smaller than this (a resolver that sets state often makes
            small ones) are gathered up to this many rows before they are written (default:
            what the destination prefers, ``write_batch_rows``).
        **overrides: Fields of :class:`~headwater.SyncOptions` by name: ``tables``,
            ``concurrency``, ``resolver_timeout``, ``sync_timeout``...

    Returns:
        What was written; :attr:`LocalSyncResult.failed_tables` lists tables with errors.

    Raises:
        SpecError: The spec is invalid (nothing was written).
        SyncOptionsError: An option is unknown or out of range (nothing was written).
        TableSelectionError: A table pattern matches no table (nothing was written).
        MigrationError: A table's column type changed incompatibly (nothing was written).
        DestinationError: The destination failed; what was not committed is rolled back.
        SyncTimeoutError: The sync ran past ``sync_timeout``; what was not committed is
            rolled back.
        SyncInterrupted: A ``KeyboardInterrupt`` (Ctrl-C) stopped the sync; what was not
            committed is rolled back, and the error names the resolvers that were running.
    """
    if commit_interval < 0:
        raise ValueError(f"commit_interval must be >= 0 seconds, got {commit_interval}")
    given = (options if options is not None else SyncOptions()).replace(**overrides)
    validated = plugin.validate_spec(spec)
    selected = plugin.select_tables(given.tables, given.skip_tables, given.skip_dependent_tables)
    plans = [DestinationTable(t, t.arrow_schema, t.resolver_wants_state) for t in selected]
    names = [plan.name for plan in plans]
    now = dt.datetime.now(dt.UTC)
    write_options = WriteOptions(
        source_name=source_name or plugin.name,
        sync_time=now,
        mode=mode,
        delete_stale=delete_stale,
        migrate_force=migrate_force,
    )
    started = time.perf_counter()
    destination = open_destination(to)
    rows = dict.fromkeys(names, 0)
    messages: list[str] = []
    run: hw_sync.SyncRun | None = None
    try:
        state = destination.prepare(plans, write_options)
        logger.debug(
            "destination ready",
            extra={"destination": destination.url, "tables": len(plans), "mode": mode or "default"},
        )
        run = plugin.sync(validated, options=given, state=state)
        if progress is not None:
            progress.started(names)
        pending: list[StateEntry] = []
        last_commit = time.monotonic()
        batches = _Coalescer(destination, coalesce_rows or destination.write_batch_rows)
        delivered = dict.fromkeys(names, 0)
        # Tables whose state may no longer advance: rows below them were refused under
        # on_row_error="fail", and the engine's later updates would cover those rows.
        holding: set[str] = set()
        tables_by_name = {plan.name: plan.table for plan in plans}
        final_state = dict(state)

        def report(error: hw_sync.SyncError) -> None:
            messages.append(error.message)
            if progress is not None:
                progress.failed(error.table_name, error.message)

        for message in run:
            if isinstance(message, hw_sync.Insert):
                name, batch = message.table_name, message.batch
                refused = destination.unstorable(name, batch)
                if refused:
                    batch, error = _leave_out(run, name, batch, refused, delivered[name])
                    if error is not None:
                        report(error)
                        holding.update(_lineage(tables_by_name[name]))
                delivered[name] += message.batch.num_rows
                if batch.num_rows:  # not every row left out
                    batches.write(name, batch)
                    rows[name] += batch.num_rows
                    if progress is not None:
                        progress.wrote(name, batch.num_rows)
            elif isinstance(message, hw_sync.StateUpdate):
                if message.table_name not in holding:
                    pending.append(StateEntry(message.table_name, message.key, message.value))
                    final_state[message.key] = message.value
            elif isinstance(message, hw_sync.SyncError):
                report(message)
            if pending and time.monotonic() - last_commit >= commit_interval:
                batches.flush()
                destination.commit(pending)
                logger.debug("committed", extra={"state_updates": len(pending)})
                pending = []
                last_commit = time.monotonic()
        summary = run.summary
        completed = completed_tables(plans, summary.errors)
        batches.flush()
        destination.finish(completed, pending)
    except BaseException as exc:
        if run is not None:
            run.close()
        destination.abort()
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, SyncInterrupted):
            raise SyncInterrupted(run.interrupted if run is not None else []) from exc
        raise
    finally:
        destination.close()
    return LocalSyncResult(
        url=destination.url,
        tables=names,
        rows=rows,
        errors={name: summary.errors.get(name, 0) for name in names},
        skipped_rows={name: summary.skipped_rows.get(name, 0) for name in names},
        incomplete_tables=[name for name in names if name not in completed],
        error_messages=messages,
        duration=time.perf_counter() - started,
        complete=summary.complete,
        state=final_state,
    )
