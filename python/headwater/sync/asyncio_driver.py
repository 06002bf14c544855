"""The asyncio side of a sync: an event loop on its own thread that runs async resolvers.

The engine hands each async resolver's result (a coroutine or an async iterable) to
:meth:`EventLoop.submit` together with an :class:`headwater._core.AsyncTask`; :func:`drive`
steps it on the loop and pushes what it yields into the task, which feeds the engine's
accumulators. Whether an awaited result is one row or many is the engine's to decide
(:meth:`~headwater._core.AsyncTask.push_all`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from headwater import _core
from headwater.errors import ResolverTimeoutError

__all__ = ["STOP_GRACE", "EventLoop", "drive", "run_to_end"]

logger = logging.getLogger("headwater.sync")

#: Seconds a closing sync waits for its async resolvers to stop (the engine gives its
#: threaded ones as long): one blocking the event loop is then left to end on its own.
STOP_GRACE = 2.0


async def drive(result: Any, task: _core.AsyncTask, timeout: float | None = None) -> None:
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


class EventLoop:
    """An asyncio loop on its own thread, started on the first async resolver of a sync."""

    def __init__(self, resolver_timeout: float | None = None) -> None:
        self._resolver_timeout = resolver_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, result: Any, task: _core.AsyncTask) -> None:
        """Runs an async resolver's ``result`` on the loop, feeding ``task``."""
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
                drive(result, task, self._resolver_timeout), self._loop
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

    def cancel_and_wait(self, timeout: float = STOP_GRACE) -> None:
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

    def close(self, timeout: float = STOP_GRACE) -> None:
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
