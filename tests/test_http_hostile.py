"""A hostile server cannot grow the process, nor hold a request past its time limits.

Each test runs a raw-socket server on 127.0.0.1 (a thread per connection) that misbehaves on
purpose: a gzip bomb, a huge declared ``Content-Length``, an endless chunked body, headers or
a body trickled a byte at a time, a rate limit that resets hours away. Clients get small
limits (``max_response_bytes`` of 1 MiB, ``total_time`` of 1 s) so every test ends quickly,
and each case runs on both transports (headwater's Rust one and httpx's), sync and async.
The tests assert the error and its message, never a duration; every server sends a bounded
number of bytes and stops when the test ends, so none can hang.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from headwater import http
from headwater.errors import HttpError, HttpTimeoutError, RateLimitError, ResponseTooLargeError
from headwater.http import core as client_module

MiB = 1024 * 1024
# A server's answer: (connection, request head, stop) -> None; it returns when done.
Answer = Callable[[socket.socket, bytes, threading.Event], None]


class Hostile:
    """A raw-socket HTTP server that answers each connection with ``answer``.

    Attributes:
        url: Its base URL.
        heads: The request heads received (request line and headers), in order.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.heads: list[bytes] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    piece = connection.recv(4096)
                    if not piece:
                        return
                    head += piece
                self.heads.append(head)
                self.answer(connection, head, self.stop)
            except OSError:
                pass  # the client hung up: what a limit does

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.accepting.join(timeout=10)
        for thread in self.threads:
            thread.join(timeout=10)
        assert not self.accepting.is_alive()
        assert not any(thread.is_alive() for thread in self.threads)


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], Hostile]]:
    servers: list[Hostile] = []

    def start(answer: Answer) -> Hostile:
        servers.append(Hostile(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def trickle(
    connection: socket.socket, stop: threading.Event, pieces: Iterator[bytes], pause: float
) -> None:
    """Send ``pieces`` one by one, ``pause`` seconds apart, until the test ends."""
    for piece in pieces:
        if stop.wait(pause):
            return
        connection.sendall(piece)


def gzip_bomb(decoded: int) -> bytes:
    """A gzip body of ``decoded`` zero bytes, about 1,000 times smaller.

    Each MiB is compressed on its own (a full flush), so its compressed form repeats and
    the bomb is built without compressing gigabytes. The trailer does not match the data:
    nothing reads that far.
    """
    block = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (decoded // MiB - 1) + compressor.flush()


def gzip_answer(body: bytes) -> Answer:
    """Answers ``/warm`` with ``{}``, anything else with the gzip ``body``."""

    def answer(connection: socket.socket, head: bytes, stop: threading.Event) -> None:
        if head.startswith(b"GET /warm "):
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: 2\r\n\r\n{}"
            )
            return
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for start in range(0, len(body), 65536):
            if stop.is_set():
                return
            connection.sendall(body[start : start + 65536])

    return answer


def huge_declared_length(connection: socket.socket, head: bytes, stop: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
    trickle(connection, stop, iter([b"x"] * 200), 0.05)


def endless_chunks(pause: float) -> Answer:
    def answer(connection: socket.socket, head: bytes, stop: threading.Event) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"a" * 65536 + b"\r\n"
        # At most 64 MiB, or 200 pauses: bounded even if nobody stops reading.
        trickle(connection, stop, iter([chunk] * (1024 if pause == 0 else 200)), pause)

    return answer


def slow_headers(connection: socket.socket, head: bytes, stop: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\n")
    trickle(connection, stop, iter([b"X-Slow: 1\r\n"] * 200), 0.05)


def slow_body(connection: socket.socket, head: bytes, stop: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n")
    trickle(connection, stop, iter([b"x"] * 200), 0.05)


def silent_after_headers(connection: socket.socket, head: bytes, stop: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    stop.wait(3)


def rate_limited(reset: str) -> Answer:
    def answer(connection: socket.socket, head: bytes, stop: threading.Event) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\nX-RateLimit-Remaining: 0\r\n"
            + f"X-RateLimit-Reset: {reset}\r\n\r\n{{}}".encode()
        )

    return answer


TRANSPORTS = pytest.mark.parametrize("native", [True, False], ids=["rust", "httpx"])
FLAVOURS = pytest.mark.parametrize("flavour", ["sync", "async"])


def fetch(server: Hostile, path: str, *, native: bool, flavour: str, **options: Any) -> Any:
    """GET ``path`` with a client made with ``options``; what it raised, or the answer."""
    options.setdefault("retry", http.RetryPolicy(attempts=1, total_time=5))
    if flavour == "sync":
        with http.Client(server.url, native_transport=native, **options) as client:
            return client.get(path)

    async def run() -> Any:
        async with http.AsyncClient(server.url, native_transport=native, **options) as client:
            return await client.get(path)

    return asyncio.run(run())


# -- size


@TRANSPORTS
@FLAVOURS
def test_a_gzip_bomb_stops_at_the_size_limit(
    serve: Callable[[Answer], Hostile], native: bool, flavour: str
) -> None:
    # 64 MiB of zeros in 64 KiB on the wire: under the limit as received, over it decoded.
    server = serve(gzip_answer(gzip_bomb(64 * MiB)))
    with pytest.raises(ResponseTooLargeError) as caught:
        fetch(server, "/bomb", native=native, flavour=flavour, max_response_bytes=MiB)
    error = caught.value
    assert (error.kind, error.limit, error.status) == ("decoded", MiB, None)
    assert str(error) == (
        f"GET {server.url}/bomb: the body decompresses to more than max_response_bytes=1048576; "
        "stopped reading it (not retried). If the answer is genuine, raise the size limit: "
        "Client(max_response_bytes=...), or max_response_bytes= on the request"
    )


@TRANSPORTS
@FLAVOURS
def test_a_gzip_bomb_stops_at_the_ratio_limit(
    serve: Callable[[Answer], Hostile], native: bool, flavour: str
) -> None:
    # 1 GiB of zeros (1 MiB on the wire), with the default size limit of 256 MiB: the
    # ratio check stops it past 8 MiB decoded.
    server = serve(gzip_answer(gzip_bomb(1024 * MiB)))
    with pytest.raises(ResponseTooLargeError) as caught:
        fetch(server, "/bomb", native=native, flavour=flavour)
    error = caught.value
    assert (error.kind, error.limit) == ("ratio", 200.0)
    assert error.size is not None and 8 * MiB < error.size <= 10 * MiB
    message = str(error)
    assert message.startswith(
        f"GET {server.url}/bomb: the body decompresses to more than max_decompression_ratio=200 "
        f"times its compressed size ({error.size} bytes out of "
    )
    assert "a decompression bomb?; stopped reading it (not retried)" in message
    assert message.endswith(
        "raise the decompression ratio limit: Client(max_decompression_ratio=...)"
    )


@TRANSPORTS
def test_a_gzip_bomb_does_not_grow_the_process(
    serve: Callable[[Answer], Hostile], native: bool
) -> None:
    # The bomb: 4 MiB on the wire, 4 GiB decoded; default limits, in a process of
    # its own whose peak memory is measured before and after.
    server = serve(gzip_answer(gzip_bomb(4096 * MiB)))
    script = """
import json, resource, sys
from headwater import http
from headwater.errors import ResponseTooLargeError
client = http.Client(sys.argv[1], native_transport=sys.argv[2] == "rust", retry=False)
client.get("/warm")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    client.get("/bomb")
    kind = None
except ResponseTooLargeError as error:
    kind = error.kind
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"kind": kind, "growth_kib": after - before}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, server.url, "rust" if native else "httpx"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(done.stdout)
    assert measured["kind"] == "ratio"
    # ru_maxrss is in KiB on Linux.
    assert measured["growth_kib"] < 200 * 1024, measured


@TRANSPORTS
def test_a_gzip_trailer_is_only_a_hint(serve: Callable[[Answer], Hostile], native: bool) -> None:
    # The trailer's size lets a whole body decompress in one step when the limits allow that
    # size; a bomb that announces such a size is still refused, ...
    bomb = gzip_bomb(64 * MiB)
    forged = bomb[:-4] + (10 * MiB).to_bytes(4, "little")
    server = serve(gzip_answer(forged))
    with pytest.raises(ResponseTooLargeError) as caught:
        fetch(server, "/bomb", native=native, flavour="sync", max_response_bytes=1024 * MiB)
    assert caught.value.kind == "ratio"
    # ... and a body whose trailer lies about its size is invalid, whichever way it is read.
    body = gzip.compress(bytes(3 * MiB))
    server = serve(gzip_answer(body[:-4] + (MiB).to_bytes(4, "little")))
    with pytest.raises(HttpError, match=r"could not decode the body .*not valid gzip"):
        fetch(server, "/short", native=native, flavour="sync")


@TRANSPORTS
@FLAVOURS
def test_a_huge_declared_length_fails_before_the_body(
    serve: Callable[[Answer], Hostile], native: bool, flavour: str
) -> None:
    server = serve(huge_declared_length)
    with pytest.raises(ResponseTooLargeError) as caught:
        fetch(server, "/big", native=native, flavour=flavour, max_response_bytes=MiB)
    error = caught.value
    assert (error.kind, error.size) == ("declared", 10_000_000_000)
    assert str(error).startswith(
        f"GET {server.url}/big: the answer declares a body of 10000000000 bytes "
        "(Content-Length), more than max_response_bytes=1048576; stopped reading it"
    )


@TRANSPORTS
@FLAVOURS
def test_an_endless_chunked_body_stops_at_the_size_limit(
    serve: Callable[[Answer], Hostile], native: bool, flavour: str
) -> None:
    server = serve(endless_chunks(pause=0))
    with pytest.raises(ResponseTooLargeError) as caught:
        fetch(server, "/endless", native=native, flavour=flavour, max_response_bytes=MiB)
    assert caught.value.kind == "received"
    assert str(caught.value).startswith(
        f"GET {server.url}/endless: the body is longer than max_response_bytes=1048576; "
    )


@TRANSPORTS
def test_the_size_limit_can_be_raised_per_request(
    serve: Callable[[Answer], Hostile], native: bool
) -> None:
    server = serve(gzip_answer(gzip.compress(bytes(4 * MiB))))
    with http.Client(server.url, native_transport=native, max_response_bytes=MiB) as client:
        with pytest.raises(ResponseTooLargeError):
            client.get("/bomb")
        response = client.get("/bomb", max_response_bytes=8 * MiB)
    assert response.content == bytes(4 * MiB)
    # The body is decoded: the header describes it as it is now.
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(4 * MiB)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_response_bytes must be a whole number of bytes"):
        http.Client(max_response_bytes=0)
    with pytest.raises(ValueError, match="max_decompression_ratio must be a number of at least 1"):
        http.Client(max_decompression_ratio=0.5)


# -- time


@TRANSPORTS
@FLAVOURS
@pytest.mark.parametrize(
    "answer",
    [slow_headers, slow_body, endless_chunks(pause=0.05)],
    ids=["slow-headers", "slow-body", "endless-chunked"],
)
def test_total_time_holds_while_the_answer_trickles(
    serve: Callable[[Answer], Hostile], native: bool, flavour: str, answer: Answer
) -> None:
    # Every byte comes well within the 5 s read timeout; only the total time can stop it.
    server = serve(answer)
    with pytest.raises(HttpTimeoutError) as caught:
        fetch(
            server,
            "/slow",
            native=native,
            flavour=flavour,
            timeout=5,
            retry=http.RetryPolicy(attempts=3, total_time=1),
        )
    error = caught.value
    assert (error.limit, error.seconds, error.attempts) == ("total_time", 1, 1)
    assert str(error).startswith(
        f"GET {server.url}/slow: no complete answer within the total time limit of 1 s "
        "(RetryPolicy.total_time, which covers connecting, the headers and the whole body of "
        "every attempt) (not retried)"
    )
    assert len(server.heads) == 1


@TRANSPORTS
@FLAVOURS
def test_a_read_timeout_is_retried_within_the_total_time(
    serve: Callable[[Answer], Hostile], native: bool, flavour: str
) -> None:
    server = serve(silent_after_headers)
    with pytest.raises(HttpTimeoutError) as caught:
        fetch(
            server,
            "/stall",
            native=native,
            flavour=flavour,
            timeout=0.2,
            retry=http.RetryPolicy(attempts=2, total_time=30, backoff=0, min_wait=0),
        )
    error = caught.value
    assert (error.limit, error.seconds, error.attempts) == ("read", 0.2, 2)
    assert str(error).startswith(f"GET {server.url}/stall: timed out (ReadTimeout")
    assert "the read timeout of 0.2 s (Client(timeout=...)) after 2 attempts in" in str(error)
    assert len(server.heads) == 2


# -- rate limits


@TRANSPORTS
@FLAVOURS
@pytest.mark.parametrize("reset", ["36000", "epoch"])
def test_a_rate_limit_reset_hours_away_fails_at_once(
    serve: Callable[[Answer], Hostile], native: bool, flavour: str, reset: str
) -> None:
    import time

    value = str(int(time.time()) + 36000) if reset == "epoch" else reset
    server = serve(rate_limited(value))
    policy = http.RetryPolicy(attempts=3, total_time=60)

    async def twice_async() -> None:
        async with http.AsyncClient(server.url, native_transport=native, retry=policy) as c:
            await c.get("/x")
            await c.get("/x")

    with pytest.raises(RateLimitError) as caught:
        if flavour == "sync":
            with http.Client(server.url, native_transport=native, retry=policy) as client:
                client.get("/x")
                client.get("/x")
        else:
            asyncio.run(twice_async())
    error = caught.value
    assert isinstance(error, http.HttpStatusError)
    assert error.status is None and 35000 < error.wait <= 36000
    assert error.source == f"X-RateLimit-Remaining: 0, X-RateLimit-Reset: {value}"
    message = str(error)
    assert message.startswith(
        f"GET {server.url}/x: the API's rate limit asks to wait {error.wait:.2f} s "
        f"(X-RateLimit-Remaining: 0, X-RateLimit-Reset: {value}), past the total time limit "
        "of 60 s (RetryPolicy.total_time; "
    )
    assert "failing now instead of waiting, after 1 attempt in" in message
    # The second request never went.
    assert len(server.heads) == 1


def test_a_long_rate_limit_wait_within_the_deadline_is_logged_once(
    serve: Callable[[Answer], Hostile],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The waits are recorded instead of slept, as in test_http_retry.
    slept: list[float] = []

    class Clock:
        sleep = staticmethod(slept.append)
        monotonic = staticmethod(client_module.time.monotonic)

    monkeypatch.setattr(client_module, "time", Clock)
    server = serve(rate_limited("30"))
    with (
        caplog.at_level(logging.INFO, logger="headwater.http"),
        http.Client(server.url, retry=http.RetryPolicy(total_time=600)) as client,
    ):
        for _ in range(3):
            client.get("/x")
    assert len(slept) == 2 and all(25 < wait <= 30 for wait in slept)
    said = [r for r in caplog.records if r.getMessage().startswith("waiting ")]
    # Each answer renews the pause, with the same headers: one line for all of them.
    assert len(said) == 1
    assert said[0].levelno == logging.WARNING
    assert said[0].getMessage() == (
        f"waiting {slept[0]:.0f} s before GET {server.url}/x: the API's rate limit "
        "(X-RateLimit-Remaining: 0, X-RateLimit-Reset: 30)"
    )


def test_max_wait_bounds_a_rate_limit_wait_within_the_deadline(
    serve: Callable[[Answer], Hostile],
) -> None:
    server = serve(rate_limited("30"))
    policy = http.RetryPolicy(total_time=600, max_wait=10)
    with http.Client(server.url, retry=policy) as client:
        client.get("/x")
        with pytest.raises(RateLimitError, match=r"longer than max_wait=10 s"):
            client.get("/x")


def test_http_errors_survive_pickling() -> None:
    import pickle

    errors: list[HttpError] = [
        ResponseTooLargeError("m", method="GET", url="u", limit=5, kind="declared", size=9),
        HttpTimeoutError("m", method="GET", url="u", attempts=2, limit="read", seconds=0.5),
        RateLimitError("m", method="GET", url="u", status=429, wait=60, source="Retry-After: 60"),
        http.AuthError("m", method="POST", url="u", status=401),
    ]
    for error in errors:
        restored = pickle.loads(pickle.dumps(error))
        assert type(restored) is type(error)
        assert str(restored) == "m"
        assert restored.__dict__ == error.__dict__
