"""The engine's one way back into Python: :class:`RunSink`.

The Rust engine calls nothing in Python but the resolvers, their row hooks and one object per
sync, the *sink*, whose methods are declared by the ``EngineSink`` protocol in
``headwater/_core.pyi`` (the engine's list of the methods it calls is
``SyncEngine.SINK_METHODS``, checked against that protocol by the tests). :class:`RunSink` is
the implementation: it makes the messages a :class:`~headwater.SyncRun` yields, logs what
resolvers do, interrupts threads of a cancelled sync and hands async resolvers to the event
loop. The engine calls it from its threads, with the GIL held; a method that raises is
reported as unraisable, never allowed to break the sync (except the message makers, whose
error reaches the consumer).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from headwater import _core
from headwater.errors import ResolverCancelled
from headwater.sync.asyncio_driver import STOP_GRACE, EventLoop
from headwater.sync.messages import Insert, StateUpdate, SyncError

if TYPE_CHECKING:
    from headwater._core import EngineSink

__all__ = ["RunSink"]

#: Skipped rows logged per table; the rest are only counted.
_LOGGED_SKIPS = 10


def _fields(table: str, client: str | None, **more: Any) -> dict[str, Any]:
    """A log record's structured fields; a client not worth naming (``None``) is left out."""
    named = {"table": table} if client is None else {"table": table, "client": client}
    return {**named, **more}


class RunSink:
    """What the engine of one sync calls: messages, log events, interrupts, async resolvers.

    ``client`` is ``None`` for the only client of a sync that has no ``id`` of its own.

    Args:
        log: Where the sync's events are logged.
        loop: Runs the sync's async resolvers.
    """

    def __init__(self, log: logging.Logger, loop: EventLoop) -> None:
        self._log = log
        self._loop = loop
        self._skipped: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def insert(self, table: str, batch: pa.RecordBatch) -> Insert:
        """The message for a finished batch of ``table``."""
        return Insert(table, batch)

    def error(self, table: str, error: BaseException | str, client: str | None) -> SyncError:
        """The message for a failed resolver invocation of ``table``."""
        return SyncError(table, error, client)

    def state(self, table: str, key: str, value: str) -> StateUpdate:
        """The message for a state update a resolver of ``table`` made."""
        return StateUpdate(table, key, value)

    def started(self, table: str, client: str | None) -> None:
        """A top-level table started for ``client``."""
        self._log.debug("table sync started", extra=_fields(table, client))

    def finished(self, table: str, client: str | None, rows: int, seconds: float) -> None:
        """A top-level table ended for ``client`` after storing ``rows`` rows."""
        self._log.info(
            "table sync finished",
            extra=_fields(table, client, rows=rows, duration=round(seconds, 3)),
        )

    def failed(self, table: str, client: str | None, error: BaseException) -> None:
        """A resolver invocation of ``table`` failed with ``error``."""
        self._log.error(
            "table resolver failed: %s: %s",
            type(error).__name__,
            error,
            exc_info=(type(error), error, error.__traceback__),
            extra=_fields(table, client),
        )

    def skipped(self, table: str, client: str | None, error: BaseException) -> None:
        """A row of ``table`` did not fit it and was left out (the first ten are logged)."""
        with self._lock:
            self._skipped[table] += 1
            count = self._skipped[table]
        if count <= _LOGGED_SKIPS:
            more = (
                "; further skipped rows are counted, not logged" if count == _LOGGED_SKIPS else ""
            )
            self._log.warning("row skipped: %s%s", error, more, extra=_fields(table, client))

    def interrupt(self, threads: list[int]) -> None:
        """Makes each thread raise :class:`ResolverCancelled` when it next runs Python."""
        for ident in threads:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(ResolverCancelled)
            )

    def abandoned(self, stuck: list[tuple[str, str | None]]) -> None:
        """Resolver threads that did not stop after a cancel are left to end on their own."""
        names = ", ".join(
            f"table {table!r}" + ("" if client is None else f" (client {client})")
            for table, client in stuck
        )
        self._log.warning(
            "resolver threads did not stop within %ss of the cancel; left to end on their own "
            "(they deliver nothing more): %s",
            STOP_GRACE,
            names or "(tasks already ended)",
        )

    def submit(self, result: Any, task: _core.AsyncTask) -> None:
        """Runs an async resolver's ``result`` on the event loop, feeding ``task``."""
        self._loop.submit(result, task)


if TYPE_CHECKING:
    # mypy checks the implementation against the protocol the engine is typed with.
    _checked: type[EngineSink] = RunSink
