"""A sync in progress: :class:`SyncRun`, the iterator over the Rust engine.

:func:`make_engine` builds that engine from the selected tables and the options.

:meth:`headwater.Plugin.sync` returns a :class:`SyncRun`. When it is exhausted,
:attr:`SyncRun.summary` holds the rows and errors per table. Breaking out of the loop and
calling :meth:`SyncRun.close` (or leaving a ``with`` block, or pressing Ctrl-C) cancels the
sync cleanly: generators are closed and every thread is joined.
"""

from __future__ import annotations

import atexit
import collections
import inspect
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from headwater import _core
from headwater.errors import RowError
from headwater.schema import Table
from headwater.sync.asyncio_driver import EventLoop
from headwater.sync.events import RunSink
from headwater.sync.invocation import invoker, row_hooks
from headwater.sync.messages import MigrateTable, SyncError, SyncMessage, SyncSummary
from headwater.sync.options import SyncOptions

__all__ = ["SyncRun", "make_engine"]


_live_runs: weakref.WeakSet[SyncRun] = weakref.WeakSet()


@atexit.register
def _close_live_runs() -> None:
    # Engine threads must not outlive the interpreter.
    for run in list(_live_runs):
        run.close()


class SyncRun(Iterator[SyncMessage]):
    """A sync in progress: iterate it for messages; made by :meth:`headwater.Plugin.sync`.

    The engine starts on the first ``next()``. Use it as a context manager, or call
    :meth:`close`, to cancel a sync you stop reading early. A client the sync made itself is
    released (:meth:`headwater.Plugin.release`) when the run ends, fails or is closed.
    """

    def __init__(
        self,
        tables: list[Table],
        engine: _core.SyncEngine,
        loop: EventLoop,
        log: logging.Logger,
        release: Callable[[], Any] | None = None,
        *,
        sink: RunSink,
    ) -> None:
        self._migrations = collections.deque(MigrateTable(t, t.arrow_schema) for t in tables)
        self._engine = engine
        self._loop = loop
        self._log = log
        self._release = release
        self._sink = sink
        # Rows refused after the engine delivered them (see refuse_rows), per table.
        self._refused_skips: collections.Counter[str] = collections.Counter()
        self._refused_failures: collections.Counter[str] = collections.Counter()
        self._state = "new"
        self._started = 0.0
        self._duration: float | None = None

    def __iter__(self) -> SyncRun:
        return self

    def __next__(self) -> SyncMessage:
        if self._state == "new":
            self._state = "running"
            self._started = time.perf_counter()
            _live_runs.add(self)
            self._engine.start()
        if self._migrations:
            return self._migrations.popleft()
        if self._state != "running":
            raise StopIteration
        try:
            message: SyncMessage = next(self._engine)
        except StopIteration:
            self._end(complete=not self._engine.cancelled)
            raise
        except BaseException:
            self.close()
            raise
        return message

    def cancel(self) -> None:
        """Ask the sync to stop, from any thread, without waiting.

        Resolvers stop at their next item and buffered batches are dropped; the iterator
        then ends (its :attr:`summary` says the sync is not complete). Call :meth:`close`
        from the consuming thread to wait for every thread to exit.
        """
        if self._state == "running":
            self._engine.cancel()
            self._loop.cancel_all()

    def close(self) -> None:
        """Cancel the sync if it is still running, and wait for its threads to exit."""
        if self._state != "running":
            if self._state == "new":
                self._state = "closed"
                self._release_client()
            return
        self._engine.cancel()
        self._end(complete=False)

    def _end(self, *, complete: bool) -> None:
        try:
            try:
                self._loop.cancel_and_wait()
            finally:
                self._engine.close()
            # Every resolver has stopped: nothing uses the client any more.
            self._release_client()
        finally:
            self._loop.close()
        self._duration = time.perf_counter() - self._started
        self._state = "done" if complete else "closed"
        _live_runs.discard(self)
        summary = self.summary
        self._log.info(
            "sync finished" if complete else "sync cancelled",
            extra={
                "rows": summary.total_rows,
                "errors": sum(summary.errors.values()),
                "skipped_rows": sum(summary.skipped_rows.values()),
                "duration": round(summary.duration, 3),
            },
        )
        for name, count in summary.withheld_states.items():
            if count:
                self._log.warning(
                    "table %r: %d state update(s) not saved because rows they cover were lost "
                    "(see the errors above); the next sync fetches those rows again",
                    name,
                    count,
                )

    def _release_client(self) -> None:
        release, self._release = self._release, None
        if release is None:
            return
        try:
            outcome = release()
            if inspect.isawaitable(outcome):
                self._loop.run(outcome)
        except Exception as exc:
            # The rows are out; a client that fails to close is worth a warning, not the sync.
            self._log.warning(
                "releasing the client failed: %s: %s", type(exc).__name__, exc, exc_info=True
            )

    def refuse_rows(
        self, table_name: str, errors: Sequence[RowError], count: int, *, fail: bool = False
    ) -> SyncError | None:
        """Report ``count`` delivered rows of a table that the consumer cannot store.

        A destination may refuse values the engine accepted (PostgreSQL's ``text`` refuses
        the NUL character): the consumer leaves those rows out and reports them here, so they
        are counted and logged as the engine reports rows that do not fit their table.

        Args:
            table_name: The table.
            errors: The first refused rows (the engine logs at most ten per table).
            count: How many rows were refused in all (at least ``len(errors)``).
            fail: Count them as a failed invocation of the table whatever ``on_row_error``
                says: for rows no consumer could take (one larger than the gRPC message limit).

        Returns:
            ``None`` under ``on_row_error="skip"``: the rows count in
            :attr:`SyncSummary.skipped_rows` and are logged as skipped. Under ``"fail"``, they
            count as one failed invocation of the table in :attr:`SyncSummary.errors` (so an
            ``overwrite`` keeps the table's old rows), logged as one, and the returned
            :class:`SyncError` is for the caller to report with the engine's.
        """
        if not (fail or self._engine.options.on_row_error == "fail"):
            self._refused_skips[table_name] += count
            for error in errors:
                self._sink.skipped(table_name, None, error)
            return None
        self._refused_failures[table_name] += 1
        failure: BaseException | str = errors[0]
        if count > 1:
            failure = f"{count} rows cannot be stored and were left out; the first: {errors[0]}"
        self._sink.failed(table_name, None, errors[0])
        return SyncError(table_name, failure)

    @property
    def summary(self) -> SyncSummary:
        """Rows and errors per table so far, and the duration; final once exhausted."""
        rows, errors, skipped, withheld = {}, {}, {}, {}
        for name, table_rows, table_errors, table_skipped, table_withheld in self._engine.stats():
            rows[name] = table_rows
            errors[name] = table_errors + self._refused_failures[name]
            skipped[name] = table_skipped + self._refused_skips[name]
            withheld[name] = table_withheld
        if self._duration is not None:
            duration = self._duration
        else:
            duration = time.perf_counter() - self._started if self._started else 0.0
        return SyncSummary(
            rows=rows,
            errors=errors,
            skipped_rows=skipped,
            duration=duration,
            complete=self._state == "done",
            withheld_states=withheld,
        )

    @property
    def state(self) -> dict[str, str]:
        """The incremental state: what the sync started with, and every update since."""
        return self._engine.state()

    @property
    def interrupted(self) -> list[tuple[str, str | None]]:
        """Which resolvers a cancellation interrupted: ``(table, client_id)`` pairs.

        Those running when the sync was cancelled (closed early, interrupted, or past
        ``sync_timeout``); empty if it was not. The client is ``None`` when the sync has one
        client without an ``id`` of its own (as in :attr:`SyncError.client_id`).
        """
        return self._engine.interrupted()

    @property
    def options(self) -> SyncOptions:
        """The options the sync runs with: the very object the engine was given."""
        return self._engine.options

    @property
    def peak_buffer_bytes(self) -> int:
        """The most bytes of batches buffered at once, against ``max_buffer_bytes``."""
        return self._engine.peak_buffer_bytes

    def __enter__(self) -> SyncRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_state", None) in ("new", "running"):
            self.close()


def make_engine(
    tables: list[Table],
    roots: list[tuple[int, list[int]]],
    clients: list[Any],
    client_ids: list[str],
    sink: RunSink,
    options: SyncOptions,
    *,
    strict: bool = False,
    client_labels: list[str | None] | None = None,
    state: dict[str, str] | None = None,
) -> _core.SyncEngine:
    """The Rust engine for ``tables`` (selected, parents first), calling back into ``sink``.

    ``options`` reaches the engine as it is. ``strict`` is the default of tables whose
    ``strict`` is ``None`` (the plugin's).
    """
    index = {id(table): i for i, table in enumerate(tables)}
    specs = []
    for table in tables:
        table_strict = strict if table.strict is None else table.strict
        pre_row, derive = row_hooks(table, strict=table_strict)
        specs.append(
            (
                table.arrow_schema,
                invoker(table),
                index[id(table.parent)] if table.parent is not None else None,
                table.resolver_wants_state,
                pre_row,
                derive,
                table_strict,
            )
        )
    return _core.SyncEngine(
        specs,
        roots,
        clients,
        client_ids,
        sink=sink,
        options=options,
        client_labels=client_labels,
        state=state,
    )
