"""The Rust transport under headwater's httpx clients.

httpx keeps its API and its work above the network (URLs, redirects, auth, cookies,
``Content-Encoding``); :class:`NativeTransport` hands each request's network part (the
connection pool, TLS with rustls, HTTP/1.1 framing) to ``headwater._core.HttpTransport``,
which runs with the GIL released. Threads of a sync waiting on an API then do not contend for
the GIL at every socket operation, which is what limits httpx's own transport at high
concurrency. :class:`AsyncNativeTransport` runs the same on a pool of threads, so an event loop
is never blocked.

Certificates are verified against the same bundle httpx uses (``SSL_CERT_FILE`` if set,
otherwise certifi's), or a CA file given as ``verify``; ``verify=False`` trusts any. An
``ssl.SSLContext`` cannot be translated, and proxies are not supported: with either, the
clients fall back to httpx's transport.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import ssl
import urllib.request
from pathlib import Path
from typing import Any, cast

import httpx

from headwater import _core

__all__ = ["AsyncNativeTransport", "NativeTransport", "TLSError", "native_supported"]

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


def native_supported(verify: object) -> bool:
    """Whether :class:`NativeTransport` can stand in for httpx's transport here.

    Not for ``verify`` given as an ``ssl.SSLContext``, nor when proxies are configured in the
    environment (``HTTPS_PROXY`` ...), which httpx's transport honours and this one does not.
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
        )
    except ConnectionError as exc:
        kind, message = exc.args
        error = TLSError if kind == "tls" else _ERRORS.get(kind, httpx.TransportError)
        raise error(message, request=request) from None
    return httpx.Response(
        status,
        headers=cast(Any, answer_headers),  # (str, bytes) pairs: httpx takes them as they are
        content=content,
        request=request,
        extensions={"http_version": b"HTTP/1.1"},
    )


class NativeTransport(httpx.BaseTransport):
    """An httpx transport doing its network I/O in Rust, without the GIL.

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
        """Send ``request`` on a worker thread and await the whole answer."""
        body = await request.aread()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, _send, self._native, request, body)

    async def aclose(self) -> None:
        """Let the worker threads finish and exit."""
        self._threads.shutdown(wait=False)
