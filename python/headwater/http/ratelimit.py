"""Client-side rate and concurrency limits, enforced in Rust and shared by a sync's threads.

:class:`RateLimit` is the configuration (requests per second, burst, requests in flight, per
host or one key for all); :class:`RateLimiter` is the limiter itself, a token bucket and a
semaphore per key in ``headwater._core``. A :class:`~headwater.http.Client` makes one from its
``rate_limit``; pass the same :class:`RateLimiter` to several clients (one per account, say)
to make them share it. Threads wait in Rust with the GIL released; async tasks never block
their event loop (they await ``asyncio.sleep`` for the time Rust computes).

When an answer carries ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (or the IETF draft's
``RateLimit-Remaining``/``RateLimit-Reset``), the limiter follows the API: with nothing left,
no request of that key goes before the reset; with little left, the rate and the requests in
flight drop so that what is left lasts until the reset. A client never waits for that past a
request's ``total_time`` (or ``max_wait``) of its :class:`~headwater.http.RetryPolicy`: it
fails at once with a :class:`~headwater.errors.RateLimitError` instead, and it logs a wait of
more than a few seconds, so a sync that sits idle says why.

Example:
    >>> from headwater.http import RateLimiter
    >>> limiter = RateLimiter(requests_per_second=50, burst=5, max_concurrent=8)
    >>> limiter.acquire("api.example.com")
    >>> limiter.release("api.example.com")
    >>> limiter.stats("api.example.com")
    {'granted': 1, 'in_flight': 0, 'peak_in_flight': 1}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Literal

import pydantic

from headwater import _core

__all__ = ["RateLimit", "RateLimiter", "parse_rate_limit_headers"]

# An epoch timestamp is at least this big; smaller reset values are seconds from now.
_EPOCH_THRESHOLD = 1_000_000_000
_ASYNC_POLL_START = 0.001
_ASYNC_POLL_MAX = 0.02
_RATE_LIMIT_HEADERS = (
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)


class RateLimit(pydantic.BaseModel):
    """What a client may send: a rate, a burst and a number of requests in flight.

    Attributes:
        requests_per_second: The sustained rate; ``None`` for no rate limit.
        burst: Requests that may go at once after an idle spell.
        max_concurrent: Requests in flight at once; ``None`` for no limit.
        per: ``host``: one bucket per host; ``client``: one for everything the client sends.
        respect_headers: Follow the API's ``X-RateLimit-*`` headers.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    requests_per_second: float | None = pydantic.Field(default=None, gt=0)
    burst: int = pydantic.Field(default=1, ge=1)
    max_concurrent: int | None = pydantic.Field(default=None, ge=1)
    per: Literal["host", "client"] = "host"
    respect_headers: bool = True


class RateLimiter:
    """A token bucket and a concurrency cap per key, shared by every thread and task.

    Args:
        requests_per_second: The sustained rate per key; ``None`` for none.
        burst: Requests per key that may go at once after an idle spell.
        max_concurrent: Requests per key in flight at once; ``None`` for no limit.

    Raises:
        ValueError: A limit is not positive.
    """

    def __init__(
        self,
        requests_per_second: float | None = None,
        burst: int = 1,
        max_concurrent: int | None = None,
    ) -> None:
        self._native = _core.RateLimiter(requests_per_second, burst, max_concurrent)
        # Per key: until when (monotonic) the API's last rate-limit headers hold, and what
        # they said, as received, for messages.
        self._said: dict[str, tuple[float, str]] = {}

    @classmethod
    def from_config(cls, config: RateLimit) -> RateLimiter:
        """The limiter a :class:`RateLimit` describes."""
        return cls(config.requests_per_second, config.burst, config.max_concurrent)

    def __repr__(self) -> str:
        native = self._native
        return (
            f"RateLimiter(requests_per_second={native.rate}, burst={native.burst}, "
            f"max_concurrent={native.max_concurrent})"
        )

    @property
    def requests_per_second(self) -> float | None:
        """The sustained rate per key, or ``None``."""
        return self._native.rate

    @property
    def max_concurrent(self) -> int | None:
        """Requests per key in flight at once, or ``None``."""
        return self._native.max_concurrent

    def acquire(self, key: str, timeout: float | None = None) -> None:
        """Wait (GIL released) for a slot of ``key`` and its turn under the rate.

        Call :meth:`release` when the request is done.

        Raises:
            TimeoutError: No slot freed within ``timeout`` seconds.
        """
        if not self.acquire_slot(key, timeout):
            raise TimeoutError(
                f"no request slot of {key!r} freed within {timeout} s "
                f"(max_concurrent={self._native.max_concurrent})"
            )
        try:
            wait = self._native.reserve(key)
            if wait > 0:
                time.sleep(wait)
        except BaseException:
            self._native.release(key)
            raise

    async def acquire_async(self, key: str) -> None:
        """Like :meth:`acquire`, for async code: waits with ``asyncio.sleep``, never blocking."""
        await self.acquire_slot_async(key)
        try:
            wait = self._native.reserve(key)
            if wait > 0:
                await asyncio.sleep(wait)
        except BaseException:
            self._native.release(key)
            raise

    def acquire_slot(self, key: str, timeout: float | None = None) -> bool:
        """Wait (GIL released) for a slot of ``key``, at most ``timeout`` seconds.

        Returns:
            Whether it got one; then call :meth:`release` when the request is done.
        """
        return self._native.acquire_slot(key, timeout)

    async def acquire_slot_async(self, key: str, timeout: float | None = None) -> bool:
        """:meth:`acquire_slot` for async code, never blocking the event loop."""
        native = self._native
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _ASYNC_POLL_START
        while not native.try_acquire_slot(key):
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                delay = min(delay, left)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _ASYNC_POLL_MAX)
        return True

    def reserve(self, key: str, max_wait: float | None = None) -> tuple[bool, float]:
        """Book ``key``'s next turn under the rate, if it comes within ``max_wait`` seconds.

        The caller then waits the seconds returned before it sends. A turn further away
        books nothing, so a caller that gives up holds nobody else back.

        Returns:
            ``(booked, seconds)``: whether the turn was booked, and the wait until it.
        """
        if max_wait is None:
            return True, self._native.reserve(key)
        return self._native.reserve_within(key, max(0.0, max_wait))

    def release(self, key: str) -> None:
        """Give back the slot :meth:`acquire` took."""
        self._native.release(key)

    def observe(self, key: str, headers: Mapping[str, str]) -> None:
        """Follow what an answer's ``X-RateLimit-*`` headers say about ``key``'s limit."""
        remaining, reset_after = parse_rate_limit_headers(headers)
        if remaining is not None and reset_after is not None:
            self._native.observe(key, remaining, reset_after)
            said = ", ".join(
                f"{name}: {value}"
                for name in _RATE_LIMIT_HEADERS
                if (value := headers.get(name.lower())) is not None
            )
            self._said[key] = (time.monotonic() + reset_after, said)

    def said(self, key: str) -> str | None:
        """The API's rate-limit headers that still hold for ``key``, as received; or ``None``."""
        said = self._said.get(key)
        if said is None or said[0] <= time.monotonic():
            return None
        return said[1]

    def stats(self, key: str) -> dict[str, int]:
        """Requests granted, slots held now, and the most held at once, for ``key``."""
        granted, in_flight, peak = self._native.stats(key)
        return {"granted": granted, "in_flight": in_flight, "peak_in_flight": peak}


def parse_rate_limit_headers(
    headers: Mapping[str, str], now: float | None = None
) -> tuple[int | None, float | None]:
    """``(remaining, seconds until reset)`` from rate-limit headers; ``None`` where absent.

    Reads ``X-RateLimit-Remaining``/``X-RateLimit-Reset`` and the IETF draft's
    ``RateLimit-Remaining``/``RateLimit-Reset``. A reset value of at least 10^9 is a Unix
    timestamp (GitHub's style); a smaller one is seconds from now.

    Args:
        headers: Response headers (a case-insensitive mapping such as ``httpx.Headers``).
        now: The current Unix time (default: now).
    """
    remaining_text = headers.get("x-ratelimit-remaining") or headers.get("ratelimit-remaining")
    reset_text = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
    remaining: int | None = None
    reset_after: float | None = None
    if remaining_text is not None:
        try:
            remaining = max(0, int(float(remaining_text)))
        except ValueError:
            remaining = None
    if reset_text is not None:
        try:
            reset = float(reset_text)
        except ValueError:
            reset = None
        if reset is not None and reset == reset and abs(reset) != float("inf"):
            if reset >= _EPOCH_THRESHOLD:
                reset -= time.time() if now is None else now
            reset_after = max(0.0, reset)
    return remaining, reset_after
