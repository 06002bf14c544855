"""Retries: which failures, how long to wait (Retry-After), and when to give up.

The waits are recorded instead of slept (``time.sleep``/``asyncio.sleep`` of the client module
are replaced), so the tests check the policy's decisions and never depend on the clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from headwater import http
from headwater.http import core as client_module
from headwater.testing import MockServer

FAST = http.RetryPolicy(attempts=4, backoff=0.01, jitter=False, min_wait=0.001)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    recorded: list[float] = []

    class Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            recorded.append(seconds)

        monotonic = staticmethod(client_module.time.monotonic)

    async def no_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(client_module, "time", Clock)
    monkeypatch.setattr(client_module.asyncio, "sleep", no_sleep)
    yield recorded


def test_5xx_and_429_are_retried_with_exponential_backoff(
    http_server: MockServer, waits: list[float]
) -> None:
    http_server.route("GET", "/x", status=500, times=1)
    http_server.route("GET", "/x", status=502, times=1)
    http_server.route("GET", "/x", status=429, times=1)
    http_server.route("GET", "/x", json={"ok": 1})
    with http.Client(http_server.url, retry=FAST) as client:
        assert client.get_json("/x") == {"ok": 1}
    assert waits == pytest.approx([0.01, 0.02, 0.04])


def test_retry_after_in_seconds_and_as_a_date(http_server: MockServer, waits: list[float]) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    http_server.route("GET", "/x", status=503, headers={"Retry-After": "7"}, times=1)
    http_server.route(
        "GET",
        "/x",
        status=429,
        headers={"Retry-After": email.utils.format_datetime(later, usegmt=True)},
        times=1,
    )
    http_server.route("GET", "/x", json={})
    with http.Client(http_server.url, retry=FAST) as client:
        client.get("/x")
    assert waits[0] == 7
    assert 20 < waits[1] <= 30


@pytest.mark.parametrize("value", ["0", "-5", "Thu, 01 Jan 1970 00:00:00 GMT", "garbage"])
def test_retry_after_zero_negative_or_past_never_spins(
    http_server: MockServer, waits: list[float], value: str
) -> None:
    http_server.route("GET", "/x", status=429, headers={"Retry-After": value}, times=3)
    http_server.route("GET", "/x", json={})
    policy = http.RetryPolicy(attempts=5, backoff=0.2, jitter=False, min_wait=0.25)
    with http.Client(http_server.url, retry=policy) as client:
        client.get("/x")
    # The minimum wait applies; an unreadable header falls back to the backoff.
    expected = [0.25, 0.4, 0.8] if value == "garbage" else [0.25] * 3
    assert waits == pytest.approx(expected)


def test_attempts_bound_the_retries_and_the_error_says_it_all(
    http_server: MockServer, waits: list[float]
) -> None:
    http_server.route("GET", "/down", status=503, body="maintenance until noon")
    with (
        http.Client(http_server.url, retry=FAST) as client,
        pytest.raises(http.HttpStatusError) as caught,
    ):
        client.get("/down", params={"token": "query-secret-1", "page": "3"})
    error = caught.value
    assert len(http_server.requests) == 4
    assert len(waits) == 3
    assert error.status == 503 and error.attempts == 4
    message = str(error)
    assert message.startswith(f"GET {http_server.url}/down?token=***&page=3: HTTP 503 ")
    assert "after 4 attempts in" in message
    assert message.endswith(": maintenance until noon")
    assert "query-secret-1" not in message


def test_total_time_bounds_the_retries(http_server: MockServer, waits: list[float]) -> None:
    # A wait the API asks for that would pass the deadline fails at once, saying so; a
    # RateLimitError is an HttpStatusError (the 429) like any other.
    http_server.route("GET", "/x", status=429, headers={"Retry-After": "120"})
    policy = http.RetryPolicy(attempts=10, total_time=60)
    with (
        http.Client(http_server.url, retry=policy) as client,
        pytest.raises(http.HttpStatusError) as caught,
    ):
        client.get("/x")
    assert waits == []
    assert len(http_server.requests) == 1
    error = caught.value
    assert isinstance(error, http.RateLimitError)
    assert (error.status, error.wait, error.source) == (429, 120.0, "Retry-After: 120")
    assert str(error).startswith(
        f"GET {http_server.url}/x: the API asks to wait 120.00 s (HTTP 429, Retry-After: 120), "
        "past the total time limit of 60 s (RetryPolicy.total_time; "
    )
    assert "failing now instead of waiting, after 1 attempt in" in str(error)
    # So does one longer than max_wait, well within the total time.
    policy = http.RetryPolicy(attempts=10, total_time=600, max_wait=30)
    with (
        http.Client(http_server.url, retry=policy) as client,
        pytest.raises(
            http.RateLimitError,
            match=r"asks to wait 120\.00 s \(HTTP 429, Retry-After: 120\), longer than "
            r"max_wait=30 s \(RetryPolicy\.max_wait\)",
        ),
    ):
        client.get("/x")
    assert waits == []
    # A backoff of the policy's own that would pass the deadline ends the retries too.
    http_server.route("GET", "/y", status=503)
    policy = http.RetryPolicy(attempts=10, total_time=1, backoff=5, jitter=False)
    with (
        http.Client(http_server.url, retry=policy) as client,
        pytest.raises(
            http.HttpStatusError,
            match=r"HTTP 503 .*; a retry in 5\.00 s would pass the total time limit of 1 s",
        ) as caught,
    ):
        client.get("/y")
    assert type(caught.value) is http.HttpStatusError


def test_client_errors_are_not_retried(http_server: MockServer, waits: list[float]) -> None:
    http_server.route("GET", "/missing", status=404, json={"message": "Not Found"})
    with (
        http.Client(http_server.url, retry=FAST) as client,
        pytest.raises(http.HttpStatusError, match=r"HTTP 404 Not Found \(not retried\)"),
    ):
        client.get("/missing")
    assert waits == [] and len(http_server.requests) == 1


def test_connection_errors_are_retried(waits: list[float]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        http.Client(f"http://127.0.0.1:{port}", retry=FAST) as client,
        pytest.raises(http.HttpTransportError) as caught,
    ):
        client.get("/x")
    assert len(waits) == 3
    assert caught.value.attempts == 4 and caught.value.status is None
    assert f"GET http://127.0.0.1:{port}/x: could not connect (ConnectError" in str(caught.value)


def test_timeouts_are_retried(http_server: MockServer, waits: list[float]) -> None:
    http_server.route("GET", "/slow", json={}, delay=0.5)
    policy = http.RetryPolicy(attempts=2, backoff=0.01, jitter=False)
    with (
        http.Client(http_server.url, retry=policy, timeout=0.05) as client,
        pytest.raises(http.HttpTransportError, match=r"timed out \(ReadTimeout"),
    ):
        client.get("/slow")
    assert len(waits) == 1


def test_retry_false_and_a_per_request_policy(http_server: MockServer, waits: list[float]) -> None:
    http_server.route("GET", "/x", status=500)
    with http.Client(http_server.url, retry=False) as client:
        with pytest.raises(http.HttpStatusError, match="after 1 attempt in"):
            client.get("/x")
        with pytest.raises(http.HttpStatusError, match="after 2 attempts in"):
            client.get("/x", retry=http.RetryPolicy(attempts=2, min_wait=0))
    assert len(http_server.requests) == 3


def test_the_async_client_retries_alike(http_server: MockServer, waits: list[float]) -> None:
    http_server.route("GET", "/x", status=503, headers={"Retry-After": "0"}, times=2)
    http_server.route("GET", "/x", json={"ok": True})

    async def main() -> Any:
        async with http.AsyncClient(http_server.url, retry=FAST) as client:
            return await client.get_json("/x")

    assert asyncio.run(main()) == {"ok": True}
    assert waits == [0.001, 0.001]


def test_jitter_stays_between_the_minimum_and_the_backoff() -> None:
    policy = http.RetryPolicy(backoff=1, max_backoff=4, min_wait=0.1)
    for attempt in range(1, 8):
        ceiling = min(4, 2 ** (attempt - 1))
        assert all(0.1 <= policy.wait(attempt) <= ceiling for _ in range(50))


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert http.parse_retry_after({"retry-after": "12"}) == 12
    assert http.parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert http.parse_retry_after({"retry-after": "Thu, 01 Jan 2026 00:01:00 GMT"}, now) == 60
    assert http.parse_retry_after({"retry-after": "inf"}) is None
    assert http.parse_retry_after({"retry-after": "soon"}) is None
    assert http.parse_retry_after({}) is None
