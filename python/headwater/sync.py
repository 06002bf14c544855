"""Running a sync: the messages it yields, its summary, and the iterator over the Rust engine.

:meth:`headwater.Plugin.sync` returns a :class:`SyncRun`. Iterating it yields a
:class:`MigrateTable` for every selected table first, then :class:`Insert` messages (one
``pyarrow.RecordBatch`` each) and :class:`SyncError` messages (a resolver that failed; the rest
of the sync goes on) as the engine produces them. When it is exhausted, :attr:`SyncRun.summary`
holds the rows and errors per table. Breaking out of the loop and calling
:meth:`SyncRun.close` (or leaving a ``with`` block, or pressing Ctrl-C) cancels the sync
cleanly: generators are closed and every thread is joined.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import fnmatch
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from headwater import _core
from headwater.errors import (
    ResolverCancelled,
    ResolverTimeoutError,
    RowError,
    TableSelectionError,
)
from headwater.redaction import redact
from headwater.schema import RowHook, Table

__all__ = [
    "Insert",
    "MigrateTable",
    "State",
    "StateUpdate",
    "SyncError",
    "SyncMessage",
    "SyncRun",
    "SyncSummary",
    "select_tables",
]

logger = logging.getLogger("headwater.sync")

#: Skipped rows logged per table; the rest are only counted.
_LOGGED_SKIPS = 10

#: Seconds a closing sync waits for its async resolvers to stop (the engine gives its
#: threaded ones as long): one blocking the event loop is then left to end on its own.
_STOP_GRACE = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class MigrateTable:
    """A table the sync will write: create or migrate it before its first :class:`Insert`.

    Attributes:
        table: The table.
        schema: Its CloudQuery Arrow schema (``table.arrow_schema``).
    """

    table: Table
    schema: pa.Schema


@dataclasses.dataclass(frozen=True, slots=True)
class Insert:
    """A batch of rows of one table.

    Attributes:
        table_name: The table's name.
        batch: The rows, with the table's full schema (``_cq_id`` and ``_cq_parent_id``
            included).
    """

    table_name: str
    batch: pa.RecordBatch


@dataclasses.dataclass(frozen=True, slots=True)
class SyncError:
    """A resolver invocation failed (for one client or parent row); the sync goes on.

    Attributes:
        table_name: The table whose resolver failed.
        error: The exception it raised (or a description of an engine failure).
        client_id: The client it ran with, when the failure belongs to one and the sync has
            more than one client (or that client has an ``id`` of its own).
    """

    table_name: str
    error: BaseException | str
    client_id: str | None = None

    @property
    def message(self) -> str:
        """A one-line description: table, client and error, registered secrets masked."""
        client = f" (client {self.client_id})" if self.client_id is not None else ""
        error = self.error
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        return redact(f"table {self.table_name!r}{client}: {text}")


@dataclasses.dataclass(frozen=True, slots=True)
class StateUpdate:
    """A resolver set an incremental state key (a cursor): store it with the data.

    Every row the resolver yielded before setting the key is in an earlier :class:`Insert`,
    so a destination that stores the update in the same transaction as the rows before it
    never advances a cursor past data it does not hold.

    Attributes:
        table_name: The table whose resolver set it.
        key: The state key.
        value: Its new value.
    """

    table_name: str
    key: str
    value: str


#: The ``state`` argument a resolver receives: ``state.get(key, default=None)`` and
#: ``state.set(key, value)`` on string keys and values, scoped to the resolver's table and
#: client (stored as ``"{table}/{client}/{key}"``; ``shared=True`` stores ``key`` as given),
#: plus ``stored_key(key)``, ``table_name`` and ``client_id``.
State = _core.TaskState

#: What iterating a :class:`SyncRun` yields.
SyncMessage = MigrateTable | Insert | SyncError | StateUpdate


@dataclasses.dataclass(frozen=True)
class SyncSummary:
    """What a sync did, per table.

    Attributes:
        rows: Rows delivered per table.
        errors: Failed resolver invocations per table (with the batches that failed to build,
            and rows the consumer could not store under ``on_row_error="fail"``, see
            :meth:`SyncRun.refuse_rows`).
        skipped_rows: Rows left out per table because they did not fit it, or because the
            consumer could not store them (each logged, up to ten per table).
        duration: Seconds from the start of the sync to its end (or to now, while running).
        complete: The sync ran to its end (it was not cancelled).
        withheld_states: State updates per table that were not delivered because rows they
            cover were lost (a child resolver failed, say): the cursor stays where it was,
            so the next sync fetches those rows again.
    """

    rows: dict[str, int]
    errors: dict[str, int]
    skipped_rows: dict[str, int]
    duration: float
    complete: bool
    withheld_states: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        """Rows delivered in all."""
        return sum(self.rows.values())

    @property
    def total_errors(self) -> int:
        """Failed resolver invocations and skipped rows, in all."""
        return sum(self.errors.values()) + sum(self.skipped_rows.values())

    @property
    def failed_tables(self) -> list[str]:
        """Tables with at least one failed resolver invocation."""
        return [name for name, count in self.errors.items() if count]


def select_tables(
    tables: Sequence[Table],
    include: Iterable[str] = ("*",),
    skip: Iterable[str] = (),
    skip_dependent_tables: bool = False,
) -> list[Table]:
    """The tables a sync resolves, as the CloudQuery Go SDK selects them.

    A table is selected if a pattern of ``include`` matches it, or its parent is selected
    (unless ``skip_dependent_tables``); a parent is selected with any selected child, since a
    child is resolved once per parent row; a table matching ``skip`` is dropped with all its
    children. Patterns are :mod:`fnmatch` globs (``*``, ``?``, ``[...]``).

    Args:
        tables: The plugin's top-level tables.
        include: Patterns of tables to sync.
        skip: Patterns of tables not to sync.
        skip_dependent_tables: Do not sync children of selected tables unless they match
            ``include`` themselves.

    Returns:
        The selected tables, parents before their children.

    Raises:
        TableSelectionError: A pattern matches no table; the message lists the tables.
        TypeError: A pattern is not a str.
    """
    include = _patterns(include, "tables")
    skip = _patterns(skip, "skip_tables")
    every = [t for top in tables for t in top.walk()]
    names = [t.name for t in every]
    for option, patterns in (("tables", include), ("skip_tables", skip)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise TableSelectionError(
                    f"{option} pattern {pattern!r} matches no table; the plugin's tables are "
                    f"{', '.join(names) or '(none)'}"
                )

    def matches(table: Table, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(table.name, p) for p in patterns)

    def visit(table: Table, parent_selected: bool) -> list[Table]:
        if matches(table, skip):
            return []
        selected = matches(table, include) or (parent_selected and not skip_dependent_tables)
        below = [t for child in table.children for t in visit(child, selected)]
        return [table, *below] if selected or below else []

    return [t for top in tables for t in visit(top, False)]


def _patterns(patterns: Iterable[str], option: str) -> list[str]:
    if isinstance(patterns, str):
        return [patterns]
    checked = list(patterns)
    for pattern in checked:
        if not isinstance(pattern, str):
            raise TypeError(
                f"{option} must be a list of table name patterns (str), "
                f"got {type(pattern).__name__} {pattern!r}"
            )
    return checked


def _fields(table: str, client: str | None, **more: Any) -> dict[str, Any]:
    """A log record's structured fields; a client not worth naming (``None``) is left out."""
    named = {"table": table} if client is None else {"table": table, "client": client}
    return {**named, **more}


class _Events:
    """The engine's logging hooks, called from its threads with the GIL held.

    ``client`` is ``None`` for the only client of a sync that has no ``id`` of its own.
    """

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._skipped: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def started(self, table: str, client: str | None) -> None:
        self._log.debug("table sync started", extra=_fields(table, client))

    def finished(self, table: str, client: str | None, rows: int, seconds: float) -> None:
        self._log.info(
            "table sync finished",
            extra=_fields(table, client, rows=rows, duration=round(seconds, 3)),
        )

    def failed(self, table: str, client: str | None, error: BaseException) -> None:
        self._log.error(
            "table resolver failed: %s: %s",
            type(error).__name__,
            error,
            exc_info=(type(error), error, error.__traceback__),
            extra=_fields(table, client),
        )

    def interrupt(self, threads: list[int]) -> None:
        """Makes each thread raise :class:`ResolverCancelled` when it next runs Python."""
        for ident in threads:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(ResolverCancelled)
            )

    def abandoned(self, stuck: list[tuple[str, str | None]]) -> None:
        names = ", ".join(
            f"table {table!r}" + ("" if client is None else f" (client {client})")
            for table, client in stuck
        )
        self._log.warning(
            "resolver threads did not stop within %ss of the cancel; left to end on their own "
            "(they deliver nothing more): %s",
            _STOP_GRACE,
            names or "(tasks already ended)",
        )

    def skipped(self, table: str, client: str | None, error: BaseException) -> None:
        with self._lock:
            self._skipped[table] += 1
            count = self._skipped[table]
        if count <= _LOGGED_SKIPS:
            more = (
                "; further skipped rows are counted, not logged" if count == _LOGGED_SKIPS else ""
            )
            self._log.warning("row skipped: %s%s", error, more, extra=_fields(table, client))


async def _drive(result: Any, task: _core.AsyncTask, timeout: float | None = None) -> None:
    """Steps an async resolver's result on the event loop, feeding its items to the engine.

    Past ``timeout`` seconds it is cancelled and ends with a :class:`ResolverTimeoutError`;
    nothing it yields afterwards is delivered.
    """
    error: BaseException | None = None
    expired = False
    timer: asyncio.TimerHandle | None = None
    if timeout is not None:
        current = asyncio.current_task()
        assert current is not None

        def expire() -> None:
            nonlocal expired
            expired = True
            current.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, expire)

    def push(item: Any) -> bool:
        return not expired and task.push(item)

    try:
        if not hasattr(type(result), "__aiter__"):
            result = await result
        if hasattr(type(result), "__aiter__"):
            await _drive_async_iterable(result, task, push)
        elif not expired:
            task.push_all(result)
    except BaseException as exc:
        error = exc
    finally:
        if timer is not None:
            timer.cancel()
    if expired:
        error = ResolverTimeoutError(
            f"the resolver did not finish within resolver_timeout={timeout:g}s; the sync "
            "stopped waiting for it"
        )
    task.finish(error)


async def _drive_async_iterable(
    items: Any, task: _core.AsyncTask, push: Callable[[Any], bool]
) -> None:
    iterator = items.__aiter__()
    try:
        async for item in iterator:
            if not push(item):
                break
            if task.needs_room():
                # Its children are behind: wait for them without blocking the loop, and
                # without holding a concurrency slot meanwhile.
                task.suspend()
                while not task.try_resume():
                    await asyncio.sleep(0.005)
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


class _EventLoop:
    """An asyncio loop on its own thread, started on the first async resolver of a sync."""

    def __init__(self, resolver_timeout: float | None = None) -> None:
        self._resolver_timeout = resolver_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, result: Any, task: _core.AsyncTask) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the sync is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="headwater-asyncio", daemon=True
                )
                self._thread.start()
            asyncio.run_coroutine_threadsafe(
                _drive(result, task, self._resolver_timeout), self._loop
            )

    def cancel_all(self) -> None:
        """Cancels the resolvers running on the loop, without waiting for them."""
        with self._lock:
            loop = self._loop
        if loop is None:
            return

        def cancel() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()

        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(cancel)

    def cancel_and_wait(self, timeout: float = _STOP_GRACE) -> None:
        """Cancels the resolvers running on the loop and waits until they have stopped.

        One blocking the loop (a ``time.sleep`` in an ``async def``) is waited for
        ``timeout`` seconds at most.
        """
        if self._open_loop() is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                self.run(_cancel_all(), timeout)

    def run(self, awaitable: Awaitable[Any], timeout: float = 30.0) -> Any:
        """Runs ``awaitable`` to its end on the loop, where async clients live.

        When no async resolver started the loop, ``awaitable`` gets a loop of its own.
        """
        loop = self._open_loop()
        if loop is None:
            return run_to_end(awaitable)
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop).result(timeout)

    def _open_loop(self) -> asyncio.AbstractEventLoop | None:
        with self._lock:
            return None if self._closed else self._loop

    def close(self, timeout: float = _STOP_GRACE) -> None:
        """Cancels the resolvers still running (their generators are closed) and stops.

        A loop still blocked after ``timeout`` seconds is left to stop on its own (its thread
        is a daemon).
        """
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout)
        except concurrent.futures.TimeoutError:
            logger.warning(
                "async resolvers did not stop within %ss (one blocks the event loop); left to "
                "end on their own",
                timeout,
            )
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()


def run_to_end(awaitable: Awaitable[Any]) -> Any:
    """Runs ``awaitable`` on a new event loop in this thread; returns its result."""
    return asyncio.run(_awaited(awaitable))


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def invoker(table: Table) -> Callable[..., Any]:
    """The function the engine calls to run a table's resolver.

    ``invoke(client, parent_row)``, or ``invoke(client, parent_row, state)`` when the resolver
    takes ``state``: it passes the resolver the arguments its signature takes. The engine
    applies the row hooks (:func:`row_hooks`) to each row it yields.
    """
    resolver = table.resolver
    if resolver is None:
        raise ValueError(f"table {table.name!r} has no resolver")
    call: Callable[..., Any]
    if table.resolver_wants_state:
        if table.resolver_arity == 0:

            def call(client: Any, parent: Any, state: Any) -> Any:
                return resolver(state=state)

        elif table.resolver_arity == 1:

            def call(client: Any, parent: Any, state: Any) -> Any:
                return resolver(client, state=state)

        else:

            def call(client: Any, parent: Any, state: Any) -> Any:
                return resolver(client, parent, state=state)

    elif table.resolver_arity == 0:

        def call(client: Any, parent: Any) -> Any:
            return resolver()

    elif table.resolver_arity == 1:

        def call(client: Any, parent: Any) -> Any:
            return resolver(client)

    else:
        call = resolver
    return call


def row_hooks(table: Table, *, strict: bool = False) -> tuple[RowHook | None, RowHook | None]:
    """The hooks the engine runs on each row of ``table``: ``(pre_row, derive)``.

    Each is called as ``hook(client, row)``, and a result other than ``None`` replaces the
    row. ``pre_row`` is the table's own: what it returns is stored and passed to the children.
    ``derive`` makes what is stored from that: the column resolvers' values (see
    :class:`_ColumnValues`), then ``post_row``; the children still receive the row.
    """
    if table.column_resolvers:
        return table.pre_row, _ColumnValues(table, strict=strict).derive
    return table.pre_row, table.post_row


class _ColumnValues:
    """A table's column resolvers and ``post_row``, applied to a row."""

    def __init__(self, table: Table, *, strict: bool) -> None:
        self._post = table.post_row
        self._resolvers = table.column_resolvers
        self._names = [column.name for column in table.columns]
        self._strict = strict

    def derive(self, client: Any, row: Any) -> Any:
        """What to store for ``row``: its column values with the resolvers' (post_row applied)."""
        values = self._values(row)
        if values is not None:
            for column in self._resolvers:
                assert column.resolver is not None
                values[column.name] = column.resolver(client, row)
            row = values
        if self._post is not None:
            replaced = self._post(client, row)
            if replaced is not None:
                row = replaced
        return row

    def _values(self, row: Any) -> dict[str, Any] | None:
        """The row as a dict of column values; ``None`` if it is no row.

        The engine then reports the row as it is. For a strict table, an object's public
        instance attributes come along, so that those matching no column are reported.
        """
        if isinstance(row, dict):
            return dict(row)
        if isinstance(row, (tuple, list)):
            if len(row) != len(self._names):
                return None
            return dict(zip(self._names, row, strict=True))
        if row is None or isinstance(row, (str, bytes, int, float)):
            return None
        values = {name: getattr(row, name, None) for name in self._names}
        if self._strict:
            attributes = getattr(row, "__dict__", None)
            if isinstance(attributes, dict):
                extra = {k: v for k, v in attributes.items() if not str(k).startswith("_")}
                values = {**extra, **values}
        return values


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
        loop: _EventLoop,
        log: logging.Logger,
        release: Callable[[], Any] | None = None,
        *,
        events: _Events,
        fail_on_row_error: bool,
    ) -> None:
        self._migrations = collections.deque(MigrateTable(t, t.arrow_schema) for t in tables)
        self._engine = engine
        self._loop = loop
        self._log = log
        self._release = release
        self._events = events
        self._fail_on_row_error = fail_on_row_error
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
        if not (fail or self._fail_on_row_error):
            self._refused_skips[table_name] += count
            for error in errors:
                self._events.skipped(table_name, None, error)
            return None
        self._refused_failures[table_name] += 1
        failure: BaseException | str = errors[0]
        if count > 1:
            failure = f"{count} rows cannot be stored and were left out; the first: {errors[0]}"
        self._events.failed(table_name, None, errors[0])
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
    loop: _EventLoop,
    events: _Events,
    *,
    strict: bool = False,
    **options: Any,
) -> _core.SyncEngine:
    """The Rust engine for ``tables`` (selected, parents first), with its callbacks.

    ``strict`` is the default of tables whose ``strict`` is ``None`` (the plugin's).
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
        insert_type=Insert,
        error_type=SyncError,
        state_type=StateUpdate,
        events=events,
        async_runner=loop,
        **options,
    )
