"""When to retry a request, how long to wait first, and how long the whole request may take.

:class:`RetryPolicy` retries connection errors, timeouts, cut-short bodies, 429 and 5xx
answers (by default 500, 502, 503, 504), with exponential backoff and full jitter, bounded both
by a number of attempts and by a total time. A ``Retry-After`` header (seconds or an HTTP date)
replaces the backoff; a ``Retry-After`` of 0, a negative one or a date in the past never makes
a client spin: :attr:`RetryPolicy.min_wait` applies. A wait that would end past the total time
ends the retries at once, and the final error says so.

``total_time`` is the request's deadline: every attempt (connecting, the headers, the whole
body), the waits between attempts, and the waits for rate limits end by it, however slowly a
server trickles its answer. An attempt that hits the client's per-read ``timeout`` is retried
while time remains; one cut by the deadline is not (there is no time left). A wait the API
asks for (``Retry-After``, ``X-RateLimit-Reset``) that would pass the deadline, or is longer
than ``max_wait``, fails at once with :class:`~headwater.errors.RateLimitError`.

Example:
    >>> from headwater.http import RetryPolicy
    >>> policy = RetryPolicy(attempts=5, backoff=0.5, max_backoff=30, total_time=120)
    >>> policy.retries_status(503), policy.retries_status(404)
    (True, False)
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
from collections.abc import Mapping

import pydantic

__all__ = ["RetryPolicy", "parse_retry_after"]


class RetryPolicy(pydantic.BaseModel):
    """How a client retries a failed request.

    Attributes:
        attempts: Times a request is sent at most (1: never retried).
        backoff: The first backoff in seconds; it doubles (``multiplier``) at every retry.
        multiplier: Growth of the backoff from one retry to the next.
        max_backoff: The longest backoff, in seconds.
        jitter: Wait a random time between ``min_wait`` and the backoff ("full jitter"), so
            that clients that failed together do not retry together.
        total_time: Seconds the whole request may take, from the first attempt to the last
            byte of the answer, retries, their waits and rate-limit waits included.
        min_wait: The shortest wait before a retry, whatever ``Retry-After`` says.
        max_wait: The longest wait the API may ask for (``Retry-After``, or
            ``X-RateLimit-Remaining: 0`` until its reset) before a request fails with
            :class:`~headwater.errors.RateLimitError`; ``None``: as long as ``total_time``
            allows.
        statuses: HTTP statuses that are retried.
        respect_retry_after: Wait as long as ``Retry-After`` says (at least ``min_wait``)
            instead of the backoff.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    attempts: int = pydantic.Field(default=5, ge=1)
    backoff: float = pydantic.Field(default=0.5, ge=0)
    multiplier: float = pydantic.Field(default=2.0, ge=1)
    max_backoff: float = pydantic.Field(default=30.0, ge=0)
    jitter: bool = True
    total_time: float = pydantic.Field(default=300.0, gt=0)
    min_wait: float = pydantic.Field(default=0.05, ge=0)
    max_wait: float | None = pydantic.Field(default=None, ge=0)
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    respect_retry_after: bool = True

    def retries_status(self, status: int) -> bool:
        """Whether an answer with ``status`` is retried."""
        return status in self.statuses

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` failed ones.

        Args:
            attempt: Attempts made so far (1 after the first failure).
            retry_after: Seconds the server asked to wait (``Retry-After``), if it did.
        """
        if retry_after is not None and self.respect_retry_after:
            return max(self.min_wait, retry_after)
        backoff = min(self.max_backoff, self.backoff * self.multiplier ** (attempt - 1))
        if self.jitter:
            backoff = random.uniform(0.0, backoff)
        return max(self.min_wait, backoff)


def parse_retry_after(headers: Mapping[str, str], now: dt.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait; ``None`` without a readable one.

    Args:
        headers: Response headers (a case-insensitive mapping such as ``httpx.Headers``).
        now: The current time for an HTTP-date value (default: now, UTC).

    Returns:
        The seconds, possibly zero or negative (a date in the past): the caller applies its
        minimum wait.
    """
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
