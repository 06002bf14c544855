"""A real HTTP server on 127.0.0.1 with declared routes and expectations, for plugin tests.

:class:`MockServer` runs a threaded HTTP/1.1 server (keep-alive, like real APIs) in the test
process. Declare what it answers with :meth:`MockServer.route` (a fixed answer, a sequence of
answers with ``times``, or a handler function) and what the test expects to be asked with
:meth:`MockServer.expect`; :meth:`MockServer.verify` (run by the ``http_server`` fixture at
teardown) fails the test on an unexpected request or an unmet expectation.

Example:
    >>> from headwater.testing import MockServer
    >>> with MockServer() as server:
    ...     _ = server.route("GET", "/items", json=[{"id": 1}])
    ...     import httpx
    ...     httpx.get(server.url + "/items").json()
    [{'id': 1}]
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json as jsonlib
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MockRequest", "MockResponse", "MockServer", "Route"]

_UNSET: Any = object()


@dataclasses.dataclass
class MockRequest:
    """A request the server received.

    Attributes:
        method: ``GET``, ``POST`` ...
        path: The path, without the query string.
        query: Query parameters, each with its list of values.
        headers: Headers, names lowercase.
        body: The raw body.
        path_params: Values of the route's ``{name}`` placeholders.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    path_params: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        """Query parameters, the first value of each."""
        return {name: values[0] for name, values in self.query.items()}

    @property
    def target(self) -> str:
        """The path with its query string."""
        query = urllib.parse.urlencode(self.query, doseq=True)
        return self.path + (f"?{query}" if query else "")

    def json(self) -> Any:
        """The body decoded as JSON."""
        return jsonlib.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body decoded as a form."""
        return dict(urllib.parse.parse_qsl(self.body.decode()))


@dataclasses.dataclass
class MockResponse:
    """An answer of the server.

    Attributes:
        status: The HTTP status.
        json: A body to send as JSON (sets ``Content-Type: application/json``).
        body: A raw body (``str`` or ``bytes``), when not ``json``.
        headers: Headers to send.
        delay: Seconds to wait before answering.
        raw: Bytes written to the socket as they are, instead of a proper answer; the
            connection is then closed (to test truncated or malformed answers).
    """

    status: int = 200
    json: Any = _UNSET
    body: bytes | str = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        """The body and headers to send."""
        headers = dict(self.headers)
        if self.json is not _UNSET:
            body = jsonlib.dumps(self.json).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            body = self.body.encode() if isinstance(self.body, str) else self.body
        return body, headers


#: ``handler(request) -> MockResponse``, or any JSON value (sent with status 200).
Handler = Callable[[MockRequest], Any]


class Route:
    """A declared route: which requests it matches, what it answers, how often it was used."""

    def __init__(
        self,
        method: str,
        path: str,
        answer: Handler,
        *,
        query: Mapping[str, str] | None,
        times: int | None,
        expected: bool,
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.answer = answer
        self.query = dict(query or {})
        self.times = times
        self.expected = expected
        self.calls: list[MockRequest] = []
        names: list[str] = []

        def placeholder(match: re.Match[str]) -> str:
            names.append(match.group(1))
            return f"(?P<{match.group(1)}>[^/]+)"

        self._pattern = re.compile(re.sub(r"\\\{(\w+)\\\}", placeholder, re.escape(path)) + "$")

    def __repr__(self) -> str:
        return f"Route({self.method} {self.path}, calls={len(self.calls)}, times={self.times})"

    def match(self, request: MockRequest) -> dict[str, str] | None:
        """The path parameters if ``request`` is for this route; ``None`` otherwise."""
        if self.method != request.method or (
            self.times is not None and len(self.calls) >= self.times
        ):
            return None
        found = self._pattern.match(request.path)
        if found is None:
            return None
        params = request.params
        if any(params.get(name) != value for name, value in self.query.items()):
            return None
        return found.groupdict()


class MockServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 answering declared routes.

    Unmatched requests get a 404 whose body says so, and are kept in :attr:`unmatched` for
    :meth:`verify`. Every request is kept in :attr:`requests`.

    Args:
        host: Address to listen on.
        port: Port (0: a free one).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: list[Route] = []
        self.requests: list[MockRequest] = []
        self.unmatched: list[MockRequest] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host = self._server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    def start(self) -> MockServer:
        """Start serving on a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="headwater-mock-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def route(
        self,
        method: str,
        path: str,
        response: MockResponse | Handler | None = None,
        *,
        json: Any = _UNSET,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        query: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> Route:
        """Answer ``method path`` requests.

        Routes are tried in the order declared; one with ``times`` answers that many times,
        then lets later routes answer (declare ``route(..., status=500, times=2)`` before
        ``route(..., json=...)`` for two failures, then success).

        Args:
            method: The method to match.
            path: The path to match; ``{name}`` matches one segment (``request.path_params``).
            response: A :class:`MockResponse`, or a handler ``handler(request)`` returning one
                (or a JSON value).
            json: Or: a JSON body to answer with.
            status: With ``json``/``body``: the status.
            body: Or: a raw body.
            headers: With ``json``/``body``: headers.
            delay: With ``json``/``body``: seconds to wait before answering.
            query: Query parameters the request must have (first values compared).
            times: How many requests this route answers (default: all).

        Returns:
            The route (its ``calls`` are the requests it answered).
        """
        return self._add(
            method, path, response, json, status, body, headers, delay, query, times, False
        )

    def expect(
        self,
        method: str,
        path: str,
        response: MockResponse | Handler | None = None,
        *,
        json: Any = _UNSET,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        query: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> Route:
        """Like :meth:`route`, and :meth:`verify` fails unless it answered exactly ``times``."""
        return self._add(
            method, path, response, json, status, body, headers, delay, query, times, True
        )

    def _add(
        self,
        method: str,
        path: str,
        response: MockResponse | Handler | None,
        json: Any,
        status: int,
        body: bytes | str,
        headers: Mapping[str, str] | None,
        delay: float,
        query: Mapping[str, str] | None,
        times: int | None,
        expected: bool,
    ) -> Route:
        if response is None:
            fixed = MockResponse(status, json, body, dict(headers or {}), delay)
            answer: Handler = lambda request: fixed  # noqa: E731
        elif isinstance(response, MockResponse):
            answer = lambda request: response  # noqa: E731
        elif callable(response):
            answer = response
        else:
            raise TypeError(
                f"response must be a MockResponse or a handler, got {type(response).__name__}"
            )
        route = Route(method, path, answer, query=query, times=times, expected=expected)
        with self._lock:
            self.routes.append(route)
        return route

    def reset(self) -> None:
        """Forget the routes and the requests received."""
        with self._lock:
            self.routes.clear()
            self.requests.clear()
            self.unmatched.clear()
            self.errors.clear()

    def verify(self) -> None:
        """Fail if a request matched no route, a handler raised, or an expectation is unmet.

        Raises:
            AssertionError: Listing every problem.
        """
        problems = [f"unexpected request {r.method} {r.target}" for r in self.unmatched]
        problems += self.errors
        for route in self.routes:
            if route.expected and len(route.calls) != route.times:
                problems.append(
                    f"expected {route.method} {route.path} {route.times} time(s), "
                    f"got {len(route.calls)}"
                )
        if problems:
            raise AssertionError("mock server: " + "; ".join(problems))

    def _answer(self, request: MockRequest) -> MockResponse:
        with self._lock:
            self.requests.append(request)
            for route in self.routes:
                params = route.match(request)
                if params is not None:
                    request.path_params = params
                    route.calls.append(request)
                    break
            else:
                self.unmatched.append(request)
                declared = ", ".join(f"{r.method} {r.path}" for r in self.routes) or "none"
                return MockResponse(
                    404, body=f"no route for {request.method} {request.path}; routes: {declared}"
                )
        try:
            result = route.answer(request)
        except Exception as exc:  # the handler is test code: report it, answer 500
            with self._lock:
                self.errors.append(
                    f"handler of {route.method} {route.path} raised {type(exc).__name__}: {exc}"
                )
            return MockResponse(500, body=f"handler raised {type(exc).__name__}: {exc}")
        return result if isinstance(result, MockResponse) else MockResponse(json=result)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up, time out or fail a TLS handshake are what tests provoke;
        # handler errors are reported through MockServer.verify instead.
        pass


def _handler_for(server: MockServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = MockRequest(
                self.command,
                urllib.parse.unquote(split.path),
                urllib.parse.parse_qs(split.query, keep_blank_values=True),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            response = server._answer(request)
            if response.delay:
                time.sleep(response.delay)
            if response.raw is not None:
                self.wfile.write(response.raw)
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_WR)
                return
            content, headers = response.encoded()
            self.send_response(response.status)
            for name, value in headers.items():
                self.send_header(name, value)
            if "content-length" not in {k.lower() for k in headers}:
                self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    return Handler
