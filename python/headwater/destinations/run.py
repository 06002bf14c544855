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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

import pyarrow as pa

import headwater.sync as hw_sync
from headwater.destinations import DEFAULT_URL, open_destination
from headwater.destinations.base import (
    Destination,
    StateEntry,
    TablePlan,
    WriteMode,
    WriteOptions,
)
from headwater.errors import SyncInterrupted
from headwater.plugin import DEFAULT_CONCURRENCY, Plugin

__all__ = ["DEFAULT_COMMIT_INTERVAL", "LocalSyncResult", "ProgressListener", "sync_to"]

logger = logging.getLogger("headwater.local")

#: Seconds between commits of state (and the rows it covers) during a sync.
DEFAULT_COMMIT_INTERVAL = 1.0


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

    @property
    def failed_tables(self) -> list[str]:
        """Tables with at least one failed resolver invocation."""
        return [name for name in self.tables if self.errors.get(name, 0)]

    @property
    def total_rows(self) -> int:
        """Rows written in all."""
        return sum(self.rows.values())


def sync_to(
    plugin: Plugin,
    to: str = DEFAULT_URL,
    spec: object = None,
    *,
    tables: Iterable[str] = ("*",),
    skip_tables: Iterable[str] = (),
    skip_dependent_tables: bool = False,
    mode: WriteMode = "append",
    delete_stale: bool = False,
    migrate_force: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
    source_name: str | None = None,
    progress: ProgressListener | None = None,
    coalesce_rows: int | None = None,
    **sync_options: Any,
) -> LocalSyncResult:
    """Sync ``plugin`` into the destination at ``to``.

    Args:
        plugin: The plugin.
        to: The destination URL (see :mod:`headwater.destinations`).
        spec: The plugin spec (a mapping, JSON text or a spec instance).
        tables: Table name patterns to sync.
        skip_tables: Table name patterns to leave out.
        skip_dependent_tables: Leave out children of selected tables unless selected.
        mode: ``append``, ``overwrite`` or ``upsert`` (see :class:`WriteOptions`).
        delete_stale: Delete this source's rows of earlier syncs from the tables that synced
            without errors.
        migrate_force: Rebuild tables whose column types changed incompatibly.
        concurrency: Resolver invocations running at once.
        commit_interval: Seconds between commits of incremental state with its rows.
        source_name: ``_cq_source_name`` and the state's owner (default: the plugin's name).
        progress: Told about rows and errors as they are written.
        coalesce_rows: Batches smaller than this (a resolver that sets state often makes
            small ones) are gathered up to this many rows before they are written (default:
            what the destination prefers, ``write_batch_rows``).
        **sync_options: Passed on to :meth:`headwater.Plugin.sync`: e.g. ``resolver_timeout``
            and ``sync_timeout`` (seconds).

    Returns:
        What was written; :attr:`LocalSyncResult.failed_tables` lists tables with errors.

    Raises:
        SpecError: The spec is invalid (nothing was written).
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
    validated = plugin.validate_spec(spec)
    selected = plugin.select_tables(tables, skip_tables, skip_dependent_tables)
    plans = [TablePlan(t, t.arrow_schema, t.resolver_wants_state) for t in selected]
    names = [plan.name for plan in plans]
    now = dt.datetime.now(dt.timezone.utc)
    options = WriteOptions(
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
        state = destination.prepare(plans, options)
        logger.debug(
            "destination ready",
            extra={"destination": destination.url, "tables": len(plans), "mode": mode},
        )
        run = plugin.sync(
            validated,
            tables=tables,
            skip_tables=skip_tables,
            skip_dependent_tables=skip_dependent_tables,
            concurrency=concurrency,
            state=state,
            **sync_options,
        )
        if progress is not None:
            progress.started(names)
        pending: list[StateEntry] = []
        last_commit = time.monotonic()
        batches = _Coalescer(destination, coalesce_rows or destination.write_batch_rows)
        for message in run:
            if isinstance(message, hw_sync.Insert):
                batches.write(message.table_name, message.batch)
                rows[message.table_name] += message.batch.num_rows
                if progress is not None:
                    progress.wrote(message.table_name, message.batch.num_rows)
            elif isinstance(message, hw_sync.StateUpdate):
                pending.append(StateEntry(message.table_name, message.key, message.value))
            elif isinstance(message, hw_sync.SyncError):
                messages.append(message.message)
                if progress is not None:
                    progress.failed(message.table_name, message.message)
            if pending and time.monotonic() - last_commit >= commit_interval:
                batches.flush()
                destination.commit(pending)
                logger.debug("committed", extra={"state_updates": len(pending)})
                pending = []
                last_commit = time.monotonic()
        summary = run.summary
        completed = [name for name in names if not summary.errors.get(name, 0)]
        batches.flush()
        destination.finish(completed, pending)
        final_state = run.state
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
        error_messages=messages,
        duration=time.perf_counter() - started,
        complete=summary.complete,
        state=final_state,
    )
