"""Proxies set in the environment, against a real forwarding proxy on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server as stdlib_http
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest

import headwater.http as hwhttp
from headwater.errors import HttpTimeoutError


class _Api(stdlib_http.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Proxy(stdlib_http.BaseHTTPRequestHandler):
    """Forwards absolute-URL requests (what a client sends a plain HTTP proxy) and logs them."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(self.path, timeout=5) as answer:
            body = answer.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Via", "1.1 test-proxy")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(handler: type[stdlib_http.BaseHTTPRequestHandler]) -> stdlib_http.ThreadingHTTPServer:
    server = stdlib_http.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def api() -> Iterator[str]:
    server = _serve(_Api)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A forwarding proxy named by ``HTTP_PROXY``; yields the URLs it forwarded."""
    seen: list[str] = []
    server = _serve(type("Proxy", (_Proxy,), {"seen": seen}))
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")
    yield seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("native_transport", [True, False])
def test_requests_go_through_the_proxy_the_environment_names(
    api: str, proxy: list[str], native_transport: bool
) -> None:
    with hwhttp.Client(base_url=api, native_transport=native_transport) as client:
        answer = client.get("/items", params={"page": 2})
    assert answer.json() == {"path": "/items?page=2"}
    assert answer.headers["Via"] == "1.1 test-proxy"
    assert proxy == [f"{api}/items?page=2"]


def test_no_proxy_sends_its_hosts_direct(
    api: str, proxy: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
    with hwhttp.Client(base_url=api) as client:
        answer = client.get("/direct")
    assert answer.json() == {"path": "/direct"}
    assert "Via" not in answer.headers
    assert proxy == []


def test_the_async_client_goes_through_the_proxy(api: str, proxy: list[str]) -> None:
    async def fetch() -> object:
        async with hwhttp.AsyncClient(base_url=api) as client:
            return (await client.get("/async")).json()

    assert asyncio.run(fetch()) == {"path": "/async"}
    assert proxy == [f"{api}/async"]


def test_total_time_holds_through_a_proxy_that_never_answers(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as silent:  # accepts the connection, then says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        retry = hwhttp.RetryPolicy(attempts=1, total_time=1)
        client = hwhttp.Client(base_url=api, retry=retry, timeout=30)
        with client, pytest.raises(HttpTimeoutError) as caught:
            client.get("/slow")
    assert caught.value.limit == "total_time"
