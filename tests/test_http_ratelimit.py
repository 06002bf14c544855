"""The Rust rate limiter from Python: counts, order and limits, never wall-clock durations."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from headwater import http
from headwater.testing import MockRequest, MockResponse, MockServer


class InFlight:
    """A handler that counts the requests being answered at once."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.now = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, request: MockRequest) -> MockResponse:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
        return MockResponse(json={"ok": True})


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="rate must be a positive number"):
        http.RateLimiter(requests_per_second=0)
    with pytest.raises(ValueError, match="burst must be at least 1"):
        http.RateLimiter(requests_per_second=1, burst=0)
    with pytest.raises(ValueError, match="max_concurrent must be at least 1"):
        http.RateLimiter(max_concurrent=0)
    assert repr(http.RateLimiter(2.5, 3, 4)) == (
        "RateLimiter(requests_per_second=2.5, burst=3, max_concurrent=4)"
    )


def test_reservations_come_in_order_after_the_burst() -> None:
    native = http.RateLimiter(requests_per_second=10, burst=2)._native
    waits = [native.reserve("h") for _ in range(5)]
    assert waits[0] == waits[1] == 0
    assert 0 < waits[2] < waits[3] < waits[4]
    assert native.stats("h") == (5, 0, 0)
    assert native.reserve("other host") == 0


def test_a_release_without_acquire_is_an_error() -> None:
    limiter = http.RateLimiter(max_concurrent=1)
    limiter.acquire("h")
    limiter.release("h")
    with pytest.raises(ValueError, match="release without a matching acquire"):
        limiter.release("h")
    limiter.acquire("h")
    with pytest.raises(TimeoutError, match=r"no request slot of 'h' freed within 0\.01 s"):
        limiter.acquire("h", timeout=0.01)


def test_threads_of_one_client_share_the_concurrency_limit(http_server: MockServer) -> None:
    counter = InFlight()
    http_server.route("GET", "/x", counter)
    limit = http.RateLimit(max_concurrent=3)
    with http.Client(http_server.url, rate_limit=limit) as client:
        threads = [
            threading.Thread(target=lambda: [client.get("/x") for _ in range(4)]) for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        stats = client.limiter.stats("127.0.0.1")
    assert len(http_server.requests) == 40
    assert counter.most <= 3
    assert stats == {"granted": 40, "in_flight": 0, "peak_in_flight": 3}


def test_a_shared_limiter_spans_clients(http_server: MockServer) -> None:
    counter = InFlight()
    http_server.route("GET", "/x", counter)
    shared = http.RateLimiter(max_concurrent=2)
    clients = [http.Client(http_server.url, rate_limit=shared) for _ in range(4)]
    threads = [
        threading.Thread(target=lambda c=c: [c.get("/x") for _ in range(5)]) for c in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    assert counter.most <= 2
    assert shared.stats("127.0.0.1")["granted"] == 20


def test_per_client_keys_one_bucket_for_all_hosts(http_server: MockServer) -> None:
    http_server.route("GET", "/x", json={})
    limit = http.RateLimit(requests_per_second=1000, burst=1000, per="client")
    with http.Client(http_server.url, rate_limit=limit) as client:
        client.get("/x")
        client.get(http_server.url.replace("127.0.0.1", "localhost") + "/x")
        assert client.limiter.stats("client")["granted"] == 2


def test_no_requests_remaining_pauses_until_the_reset(http_server: MockServer) -> None:
    http_server.route(
        "GET", "/x", json={}, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    )
    with http.Client(http_server.url) as client:  # no limits of its own
        client.get("/x")
        # The next request of that host is booked after the reset.
        assert client.limiter._native.reserve("127.0.0.1") > 25
        assert client.limiter._native.reserve("elsewhere") == 0


def test_few_requests_remaining_lower_the_concurrency(http_server: MockServer) -> None:
    reset = str(int(time.time()) + 60)  # as a Unix timestamp, GitHub-style
    http_server.route(
        "GET", "/x", json={}, headers={"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": reset}
    )
    with http.Client(http_server.url, rate_limit=http.RateLimit(max_concurrent=10)) as client:
        client.get("/x")
        native = client.limiter._native
        assert native.try_acquire_slot("127.0.0.1")
        assert native.try_acquire_slot("127.0.0.1")
        assert not native.try_acquire_slot("127.0.0.1")
        native.release("127.0.0.1")
        native.release("127.0.0.1")


def test_headers_are_ignored_when_told_to(http_server: MockServer) -> None:
    http_server.route(
        "GET", "/x", json={}, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    )
    with http.Client(http_server.url, rate_limit=http.RateLimit(respect_headers=False)) as client:
        client.get("/x")
        assert client.limiter._native.reserve("127.0.0.1") == 0


def test_parse_rate_limit_headers() -> None:
    parse = http.parse_rate_limit_headers
    assert parse({"x-ratelimit-remaining": "10", "x-ratelimit-reset": "5"}) == (10, 5.0)
    assert parse({"ratelimit-remaining": "3", "ratelimit-reset": "2.5"}) == (3, 2.5)
    assert parse(
        {"x-ratelimit-remaining": "1", "x-ratelimit-reset": "1700000100"}, now=1700000000
    ) == (1, 100.0)
    assert parse({"x-ratelimit-reset": "1600000000"}, now=1700000000) == (None, 0.0)
    assert parse({"x-ratelimit-remaining": "many"}) == (None, None)
    assert parse({}) == (None, None)


def test_async_waits_do_not_block_the_event_loop() -> None:
    limiter = http.RateLimiter(requests_per_second=20, max_concurrent=1)

    async def main() -> list[str]:
        events: list[str] = []
        await limiter.acquire_async("h")  # holds the only slot

        async def second() -> None:
            await limiter.acquire_async("h")
            events.append("second acquired")
            limiter.release("h")

        task = asyncio.create_task(second())
        for _ in range(3):
            await asyncio.sleep(0)
            events.append("loop ran")
        limiter.release("h")
        await asyncio.wait_for(task, timeout=30)
        return events

    assert asyncio.run(main()) == ["loop ran"] * 3 + ["second acquired"]
    assert limiter.stats("h") == {"granted": 2, "in_flight": 0, "peak_in_flight": 1}


def test_a_cancelled_async_wait_gives_its_slot_back() -> None:
    limiter = http.RateLimiter(requests_per_second=0.5)

    async def main() -> None:
        await limiter.acquire_async("h")  # the next reservation is 2 s away
        limiter.release("h")
        waiting = asyncio.create_task(limiter.acquire_async("h"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
    assert limiter.stats("h")["in_flight"] == 0


def test_the_async_client_respects_the_concurrency_limit(http_server: MockServer) -> None:
    counter = InFlight()
    http_server.route("GET", "/x", counter)

    async def main() -> None:
        async with http.AsyncClient(
            http_server.url, rate_limit=http.RateLimit(max_concurrent=2)
        ) as client:
            await asyncio.gather(*(client.get("/x") for _ in range(12)))

    asyncio.run(main())
    assert len(http_server.requests) == 12
    assert counter.most <= 2
