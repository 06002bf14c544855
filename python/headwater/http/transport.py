"""The transports under headwater's httpx clients, and the limits every answer is read under.

httpx keeps its API and its work above the network (URLs, redirects, auth, cookies);
:class:`NativeTransport` hands each request's network part (the connection pool, TLS with
rustls, HTTP/1.1 framing) to ``headwater._core.HttpTransport``, which runs with the GIL
released. Threads of a sync waiting on an API then do not contend for the GIL at every socket
operation, which is what limits httpx's own transport at high concurrency.
:class:`AsyncNativeTransport` runs the same on a pool of threads, so an event loop is never
blocked.

Certificates are verified against the same bundle httpx uses (``SSL_CERT_FILE`` if set,
otherwise certifi's), or a CA file given as ``verify``; ``verify=False`` trusts any. An
``ssl.SSLContext`` cannot be translated, and proxies are not supported: with either (a proxy
set in the environment, see :mod:`headwater.http.proxies`), the clients use httpx's transport.

Whichever transport sends, a client reads every answer through :class:`LimitedTransport`
(:class:`AsyncLimitedTransport`), which holds a hostile server to the request's
:class:`BodyLimits`: the body's size on the wire and decompressed, the ratio of the two, and
the request's deadline, which covers connecting, the headers and the whole body. It also
undoes ``Content-Encoding`` (``gzip``, ``deflate``: what the clients ask for) itself, in
bounded steps, so a small compressed body never expands into memory unchecked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import os
import ssl
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import httpcore
import httpx

from headwater import _core
from headwater.http.proxies import AsyncProxyRouter, ProxyRouter, environment_proxies

__all__ = [
    "DEFAULT_MAX_DECOMPRESSION_RATIO",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "RATIO_FLOOR",
    "AsyncLimitedTransport",
    "AsyncNativeTransport",
    "BodyLimits",
    "LimitedTransport",
    "NativeTransport",
    "ResponseTooLarge",
    "TLSError",
    "TotalTimeout",
    "choose_transport",
    "native_supported",
]

#: The largest body a client accepts by default, after decompression: 256 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
#: The most decompressed bytes per compressed byte a client accepts by default (see README).
DEFAULT_MAX_DECOMPRESSION_RATIO = 200.0
#: Decompressed bytes below which the ratio is not checked: small, very repetitive JSON
#: (a page of empty objects) compresses far better than any real large answer.
RATIO_FLOOR = 8 * 1024 * 1024

#: Where a request's limits travel, in ``request.extensions``.
LIMITS = "headwater.limits"

#: Set by :mod:`headwater.testing` (cassettes): wraps the transport of every client made
#: afterwards, as ``transport_wrapper(transport, is_async)``.
transport_wrapper: Callable[[Any, bool], Any] | None = None

# The decompressed bytes produced per step: the most that exists between two checks.
_STEP = 1024 * 1024
# The compressed bytes decompressed per step.
_SLICE = 16 * 1024
_NO_BODY = (204, 304)
_DECODED = ("gzip", "x-gzip", "deflate")

_ERRORS: dict[str, type[httpx.TransportError]] = {
    "connect": httpx.ConnectError,
    "connect_timeout": httpx.ConnectTimeout,
    "read_timeout": httpx.ReadTimeout,
    "write_timeout": httpx.WriteTimeout,
    "protocol": httpx.RemoteProtocolError,
    "request": httpx.LocalProtocolError,
}


class TLSError(httpx.ConnectError):
    """The TLS handshake failed: an untrusted certificate, or no TLS on the other side."""


class TotalTimeout(httpx.TimeoutException):
    """The request's deadline (its ``total_time``) passed while it was being sent or read."""


class ResponseTooLarge(httpx.RequestError):
    """An answer's body is over a :class:`BodyLimits` limit; nothing more of it was read.

    Attributes:
        kind: ``"declared"``, ``"received"``, ``"decoded"`` or ``"ratio"``.
        limit: The limit crossed (bytes, or the ratio).
        size: The declared length, or the bytes counted when the limit was crossed.
    """

    def __init__(
        self, message: str, *, request: httpx.Request, kind: str, limit: float, size: int
    ) -> None:
        super().__init__(message, request=request)
        self.kind = kind
        self.limit = limit
        self.size = size


@dataclasses.dataclass(frozen=True)
class BodyLimits:
    """What one request's answer may cost; clients put it in ``request.extensions``.

    Attributes:
        max_bytes: The largest body, in bytes, both as received and decompressed.
        max_ratio: The most decompressed bytes per compressed byte, checked once more than
            :data:`RATIO_FLOOR` bytes came out.
        deadline: ``time.monotonic()`` by which the whole answer must be in; ``None``: none.
    """

    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_ratio: float = DEFAULT_MAX_DECOMPRESSION_RATIO
    deadline: float | None = None

    @classmethod
    def of(cls, request: httpx.Request) -> BodyLimits:
        """The limits a client gave ``request``, or the defaults."""
        limits = request.extensions.get(LIMITS)
        return limits if isinstance(limits, BodyLimits) else _DEFAULT_LIMITS

    def left(self, request: httpx.Request) -> float | None:
        """Seconds to the deadline; ``None`` without one.

        Raises:
            TotalTimeout: It has passed.
        """
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TotalTimeout("the request's total time ran out", request=request)
        return left


_DEFAULT_LIMITS = BodyLimits()


def native_supported(verify: object) -> bool:
    """Whether :class:`NativeTransport` can stand in for httpx's transport here.

    Not for ``verify`` given as an ``ssl.SSLContext``, nor when proxies are configured in the
    environment (``HTTPS_PROXY`` ...), which this transport does not speak.
    """
    if isinstance(verify, ssl.SSLContext):
        return False
    if any(scheme != "no" for scheme in urllib.request.getproxies()):
        return False
    # A certificate directory (without a file) is an OpenSSL notion rustls does not read.
    return not (os.environ.get("SSL_CERT_DIR") and not os.environ.get("SSL_CERT_FILE"))


def _ca_bundle(verify: bool | str) -> bytes | None:
    if verify is False:
        return None
    if isinstance(verify, str):
        return Path(verify).read_bytes()
    path = os.environ.get("SSL_CERT_FILE")
    if not path:
        import certifi

        path = certifi.where()
    return Path(path).read_bytes()


def _native(verify: bool | str, max_connections: int) -> _core.HttpTransport:
    return _core.HttpTransport(
        ca_pem=_ca_bundle(verify), verify=verify is not False, max_connections=max_connections
    )


def _send(native: _core.HttpTransport, request: httpx.Request, body: bytes) -> httpx.Response:
    timeout: dict[str, Any] = request.extensions.get("timeout", {})
    limits = BodyLimits.of(request)
    headers = [(name.decode("latin-1"), value) for name, value in request.headers.raw]
    try:
        status, answer_headers, content = native.send(
            request.method,
            str(request.url),
            headers,
            body,
            timeout.get("connect"),
            timeout.get("read"),
            timeout.get("write"),
            limits.left(request),
            limits.max_bytes,
        )
    except ConnectionError as exc:
        kind, message = exc.args
        declared: int | None = getattr(exc, "declared", None)
        if kind == "too_large":
            raise _too_large(
                request, limits, "declared" if declared is not None else "received", declared
            ) from None
        if kind == "total_timeout":
            raise TotalTimeout(message, request=request) from None
        error = TLSError if kind == "tls" else _ERRORS.get(kind, httpx.TransportError)
        raise error(message, request=request) from None
    # The body as received: Content-Encoding is undone by LimitedTransport, in bounded steps,
    # not here (httpx would undo it at once, whatever it grows to).
    return httpx.Response(
        status,
        headers=cast(Any, answer_headers),  # (str, bytes) pairs: httpx takes them as they are
        stream=httpx.ByteStream(content),
        request=request,
        extensions={"http_version": b"HTTP/1.1"},
    )


class NativeTransport(httpx.BaseTransport):
    """An httpx transport doing its network I/O in Rust, without the GIL.

    Reads at most the request's :class:`BodyLimits` ``max_bytes`` of body, by its deadline
    (the defaults without limits in the request), and leaves ``Content-Encoding`` to the
    caller (:class:`LimitedTransport`, or httpx).

    Args:
        verify: ``True`` (httpx's CA bundle), a CA file path, or ``False`` (no verification).
        max_connections: Idle connections kept per host.
    """

    def __init__(self, verify: bool | str = True, max_connections: int = 100) -> None:
        self._native = _native(verify, max_connections)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read the whole answer."""
        return _send(self._native, request, request.read())


class AsyncNativeTransport(httpx.AsyncBaseTransport):
    """:class:`NativeTransport` for ``httpx.AsyncClient``: requests run on worker threads.

    The worker thread also reads the answer under the request's :class:`BodyLimits` (what
    :class:`AsyncLimitedTransport` does for other transports) and loads its body, so the
    event loop is handed a finished response: decompressing and copying bodies there would
    hold up every other task of the loop. The deadline holds from the call on: a request
    still waiting for a free worker thread when it passes is dropped from the queue.

    Args:
        verify: As for :class:`NativeTransport`.
        max_connections: Idle connections kept per host, and requests in flight at once.
    """

    def __init__(self, verify: bool | str = True, max_connections: int = 100) -> None:
        self._native = _native(verify, max_connections)
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_connections, thread_name_prefix="headwater-http"
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a worker thread and await the whole answer.

        Raises:
            TotalTimeout: The request's deadline passed.
        """
        body = await request.aread()
        loop = asyncio.get_running_loop()
        answer = loop.run_in_executor(self._threads, self._exchange, request, body)
        deadline = BodyLimits.of(request).deadline
        if deadline is None:
            return await answer
        # A timer handle rather than asyncio.wait_for, which would wrap every request in a
        # task of its own. Cancelling the future takes a request still queued off the queue;
        # one already running is held to the deadline by the Rust transport.
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            answer.cancel()

        timer = loop.call_later(max(0.0, deadline - time.monotonic()), expire)
        try:
            return await answer
        except asyncio.CancelledError:
            if not expired:
                raise
            raise TotalTimeout("the request's total time ran out", request=request) from None
        finally:
            timer.cancel()

    def _exchange(self, request: httpx.Request, body: bytes) -> httpx.Response:
        return _read_limited(request, _send(self._native, request, body))

    async def aclose(self) -> None:
        """Let the worker threads finish and exit."""
        self._threads.shutdown(wait=False)


# -- httpx's own transport, held to the deadline on every socket operation

# The deadline of the request this thread is sending, for _DeadlineStream's reads; set by
# LimitedTransport around the inner transport's work.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "headwater_http_deadline", default=None
)


def _bounded(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    """``timeout``, shortened to what is left before the current request's deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's total time ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the current request's deadline.

    httpx's timeouts apply to each socket operation, so a server sending one byte of header
    or body at a time, each within the read timeout, would hold a request for ever.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def httpx_transport(
    verify: bool | ssl.SSLContext, max_connections: int, proxy: str | None = None
) -> httpx.HTTPTransport:
    """The transport of httpx, direct or through ``proxy``, held to each request's deadline.

    httpx takes no network backend as an argument, so its connection pool (direct or through
    the proxy) is given :class:`_DeadlineBackend` after it is made.
    """
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
    pool = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    transport = httpx.HTTPTransport(verify=context, limits=pool, proxy=proxy)
    transport._pool._network_backend = _DeadlineBackend()
    return transport


# -- reading answers under limits


def _too_large(
    request: httpx.Request,
    limits: BodyLimits,
    kind: str,
    size: int | None,
    compressed: int = 0,
) -> ResponseTooLarge:
    limit: float = limits.max_bytes
    if kind == "declared":
        what = (
            f"the answer declares a body of {size} bytes (Content-Length), more than "
            f"max_response_bytes={limits.max_bytes}"
        )
    elif kind == "received":
        what = f"the body is longer than max_response_bytes={limits.max_bytes}"
    elif kind == "decoded":
        what = f"the body decompresses to more than max_response_bytes={limits.max_bytes}"
    else:
        limit = limits.max_ratio
        what = (
            f"the body decompresses to more than max_decompression_ratio={limits.max_ratio:g} "
            f"times its compressed size ({size} bytes out of {compressed}), which no real "
            "answer does: a decompression bomb?"
        )
    return ResponseTooLarge(what, request=request, kind=kind, limit=limit, size=size or 0)


class _Inflate:
    """One ``gzip`` or ``deflate`` layer, giving out at most :data:`_STEP` bytes at a time."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # deflate is meant to be zlib-wrapped, but some servers send it raw: tried on error.
        self._maybe_raw = encoding == "deflate"
        self._zlib = zlib.decompressobj(
            zlib.MAX_WBITS if encoding == "deflate" else zlib.MAX_WBITS | 16
        )

    @property
    def pending(self) -> int:
        """Compressed bytes fed but not decompressed yet."""
        return len(self._zlib.unconsumed_tail)

    def run(
        self, data: bytes | memoryview, request: httpx.Request, first: int = _STEP
    ) -> Iterator[bytes]:
        """Decompress ``data``: at most ``first`` bytes, then :data:`_STEP` bytes a step."""
        step = first
        while True:
            try:
                out = self._zlib.decompress(data, step)
            except zlib.error as exc:
                if self._maybe_raw:
                    self._maybe_raw = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(
                    f"the body is not valid {self.encoding} ({exc})", request=request
                ) from None
            self._maybe_raw = False
            data = self._zlib.unconsumed_tail
            if out:
                yield out
            # A full step may leave output inside zlib even with all input consumed.
            if not data and len(out) < step:
                return
            step = _STEP

    def flush(self) -> bytes:
        return self._zlib.flush()


class _Decoder:
    """Undoes a ``Content-Encoding`` of ``gzip``/``deflate`` layers in bounded steps."""

    def __init__(self, encodings: list[str], request: httpx.Request) -> None:
        # Listed in the order applied: undone from the last.
        self._layers = [_Inflate("gzip" if e == "x-gzip" else e) for e in reversed(encodings)]
        self._request = request
        self.fed = 0

    @property
    def consumed(self) -> int:
        """Compressed bytes decompressed so far."""
        return self.fed - self._layers[0].pending

    def size(self, body: bytes) -> int | None:
        """The decompressed size a whole single-layer gzip ``body`` announces in its trailer.

        Modulo 2^32, and only the server's word: a hint to decompress in one step.
        """
        if len(self._layers) != 1 or self._layers[0].encoding != "gzip" or len(body) < 18:
            return None
        return int.from_bytes(body[-4:], "little")

    def feed(self, data: bytes, hint: int | None = None) -> Iterator[bytes]:
        """Decompress ``data``; with ``hint`` (see :meth:`size`), first up to that in one step.

        One step makes one piece, so the body is not copied once more to join pieces.
        """
        if hint is not None:
            self.fed += len(data)
            for out in self._layers[0].run(data, self._request, hint + 1):
                yield from self._through(1, out)
            return
        # In slices: zlib copies the input it has not consumed at each bounded step.
        view = memoryview(data)
        for start in range(0, len(view), _SLICE):
            piece = view[start : start + _SLICE]
            self.fed += len(piece)
            yield from self._through(0, piece)

    def finish(self) -> Iterator[bytes]:
        for index, layer in enumerate(self._layers):
            yield from self._through(index + 1, layer.flush())

    def _through(self, index: int, data: bytes | memoryview) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield bytes(data)
            return
        for piece in self._layers[index].run(data, self._request):
            yield from self._through(index + 1, piece)


def _encodings(response: httpx.Response, request: httpx.Request) -> list[str]:
    """The layers of ``Content-Encoding`` to undo.

    Raises:
        httpx.DecodingError: One that headwater does not decode (it asks for gzip, deflate).
    """
    value = response.headers.get("content-encoding", "")
    layers = [e.strip().lower() for e in value.split(",")]
    layers = [e for e in layers if e and e != "identity"]
    for encoding in layers:
        if encoding not in _DECODED:
            raise httpx.DecodingError(
                f"the answer's Content-Encoding is {value!r}; headwater decodes gzip and "
                "deflate (what it asks for in Accept-Encoding)",
                request=request,
            )
    return layers


class _Reading:
    """The state of one answer's body as it comes in, checked against the limits."""

    def __init__(self, request: httpx.Request, response: httpx.Response) -> None:
        self.request = request
        self.response = response
        self.limits = BodyLimits.of(request)
        self.received = 0
        self.decoded = 0
        self.chunks: list[bytes] = []
        self.decoder: _Decoder | None = None
        # The Rust transport hands over the whole body at once.
        self.whole = isinstance(response.stream, httpx.ByteStream)
        if request.method == "HEAD" or response.status_code in _NO_BODY:
            return
        declared = response.headers.get("content-length")
        declared = declared.strip() if declared is not None else ""
        if declared.isdigit() and int(declared) > self.limits.max_bytes:
            raise _too_large(request, self.limits, "declared", int(declared))
        layers = _encodings(response, request)
        if layers:
            self.decoder = _Decoder(layers, request)

    def take(self, raw: bytes) -> None:
        """Take a piece of the body as received."""
        self.limits.left(self.request)
        self.received += len(raw)
        if self.received > self.limits.max_bytes:
            raise _too_large(self.request, self.limits, "received", self.received)
        if self.decoder is None:
            self.decoded = self.received
            self.chunks.append(raw)
            return
        hint = None
        if self.whole and self.decoder.fed == 0:
            # A size the limits allow anyway is decompressed in one step; a wrong one only
            # ends that step early (then the bounded steps go on), a forged large one costs
            # at most what the limits allow a genuine answer.
            size = self.decoder.size(raw)
            allowed = min(self.limits.max_bytes, max(RATIO_FLOOR, self.limits.max_ratio * len(raw)))
            if size is not None and size <= allowed:
                hint = size
        for piece in self.decoder.feed(raw, hint):
            self._decoded(piece)

    def _decoded(self, piece: bytes) -> None:
        self.decoded += len(piece)
        limits = self.limits
        if self.decoded > limits.max_bytes:
            raise _too_large(self.request, limits, "decoded", self.decoded)
        assert self.decoder is not None
        consumed = max(1, self.decoder.consumed)
        if self.decoded > RATIO_FLOOR and self.decoded > limits.max_ratio * consumed:
            raise _too_large(self.request, limits, "ratio", self.decoded, consumed)
        self.chunks.append(piece)

    def answer(self) -> httpx.Response:
        """The response with its whole (decoded) body."""
        if self.whole and self.decoder is None:
            # The body in memory is the body to give: the response goes on as it is.
            return self.response
        headers = self.response.headers
        if self.decoder is not None:
            for piece in self.decoder.finish():
                self._decoded(piece)
            headers = httpx.Headers(
                [
                    (name, value)
                    for name, value in headers.multi_items()
                    if name.lower() not in ("content-encoding", "content-length")
                ]
            )
        content = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        if self.decoder is not None:
            # Describes the body as it is now: decoded.
            headers["Content-Length"] = str(len(content))
        return httpx.Response(
            self.response.status_code,
            headers=headers,
            stream=httpx.ByteStream(content),
            request=self.request,
            extensions=self.response.extensions,
        )


def _read_limited(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """``response`` read whole under ``request``'s limits, decoded, its body loaded.

    Loading it here (``read``) leaves httpx nothing to read or decode after the transport.
    """
    try:
        reading = _Reading(request, response)
        for raw in cast(Iterable[bytes], response.stream):
            reading.take(raw)
        answer = reading.answer()
        answer.read()
    except BaseException:
        response.close()
        raise
    if answer is not response:
        response.close()
    return answer


def _timed_out(exc: httpx.TimeoutException, request: httpx.Request) -> httpx.TimeoutException:
    """``exc`` as :class:`TotalTimeout` when it was the deadline that ran out."""
    deadline = BodyLimits.of(request).deadline
    if isinstance(exc, TotalTimeout) or deadline is None or time.monotonic() < deadline:
        return exc
    return TotalTimeout(f"the request's total time ran out ({exc})", request=request)


class LimitedTransport(httpx.BaseTransport):
    """Reads each answer of ``inner`` whole, under the request's :class:`BodyLimits`.

    Sets the deadline that the sockets of :func:`httpx_transport` obey, checks it and the
    size limits as the body comes in, and undoes ``Content-Encoding`` in bounded steps; the
    answer it returns holds the decoded body (without ``Content-Encoding``).

    Args:
        inner: The transport that talks to the network.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through ``inner`` and read the answer under its limits."""
        limits = BodyLimits.of(request)
        token = _DEADLINE.set(limits.deadline)
        try:
            limits.left(request)
            return _read_limited(request, self.inner.handle_request(request))
        except httpx.TimeoutException as exc:
            raise _timed_out(exc, request) from exc
        finally:
            _DEADLINE.reset(token)

    def close(self) -> None:
        """Close ``inner``."""
        self.inner.close()


class AsyncLimitedTransport(httpx.AsyncBaseTransport):
    """:class:`LimitedTransport` for async clients; the deadline cancels the exchange.

    Args:
        inner: The transport that talks to the network.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through ``inner`` and read the answer under its limits."""
        limits = BodyLimits.of(request)
        left = limits.left(request)
        try:
            if isinstance(self.inner, AsyncNativeTransport):
                # It reads the answer under the limits and holds it to the deadline itself,
                # on its worker thread, with less work for the event loop than done here.
                return await self.inner.handle_async_request(request)
            if left is None:
                return await self._exchange(request)
            return await asyncio.wait_for(self._exchange(request), left)
        except TimeoutError:
            raise TotalTimeout("the request's total time ran out", request=request) from None
        except httpx.TimeoutException as exc:
            raise _timed_out(exc, request) from exc

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        try:
            reading = _Reading(request, response)
            async for raw in cast(AsyncIterator[bytes], response.stream):
                reading.take(raw)
            answer = reading.answer()
            await answer.aread()
        except BaseException:
            await response.aclose()
            raise
        if answer is not response:
            await response.aclose()
        return answer

    async def aclose(self) -> None:
        """Close ``inner``."""
        await self.inner.aclose()


# -- the transport of a client


def _context(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """``verify`` as httpx takes it (a CA file path became deprecated there)."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def choose_transport(
    transport: Any,
    *,
    is_async: bool,
    native: bool,
    verify: bool | str | ssl.SSLContext,
    max_connections: int,
) -> Any:
    """The transport a client sends through.

    ``transport`` if given, else the Rust transport where it can serve (see
    :class:`~headwater.http.Client`'s ``native_transport``), else httpx's; read through
    :class:`LimitedTransport`, which holds every answer to the request's size and time
    limits; wrapped by a cassette when one is recording or replaying.

    Raises:
        TypeError: ``transport`` is not of the kind the client awaits (or does not).
    """
    if transport is not None:
        kind = httpx.AsyncBaseTransport if is_async else httpx.BaseTransport
        if not isinstance(transport, kind):
            raise TypeError(
                f"transport must be an httpx.{kind.__name__} for "
                f"{'an AsyncClient' if is_async else 'a Client'}, got {type(transport).__name__}"
            )
    else:
        proxies = environment_proxies()
        context = _context(verify)
        if native and not isinstance(verify, ssl.SSLContext) and native_supported(verify):
            rust = AsyncNativeTransport if is_async else NativeTransport
            transport = rust(verify, max_connections)
        elif is_async:

            def make_async(proxy: str | None) -> httpx.AsyncBaseTransport:
                return httpx.AsyncHTTPTransport(
                    limits=_pool(max_connections), verify=context, proxy=proxy
                )

            transport = AsyncProxyRouter(proxies, make_async) if proxies else make_async(None)
        else:

            def make(proxy: str | None) -> httpx.BaseTransport:
                return httpx_transport(context, max_connections, proxy)

            transport = ProxyRouter(proxies, make) if proxies else make(None)
    transport = AsyncLimitedTransport(transport) if is_async else LimitedTransport(transport)
    if transport_wrapper is not None:
        transport = transport_wrapper(transport, is_async)
    return transport


def _pool(max_connections: int) -> httpx.Limits:
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
