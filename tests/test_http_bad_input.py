"""Bad answers: each gets a clear error naming the request; in a sync the table fails, the
rest goes on.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from headwater import http
from headwater.testing import MockResponse, MockServer, run_sync

NO_RETRY = http.RetryPolicy(attempts=1)
# Both transports: headwater's Rust one (the default) and httpx's own.
NATIVE = pytest.mark.parametrize("native", [True, False], ids=["rust", "httpcore"])


def fetch(server: MockServer, path: str, **options: Any) -> Any:
    with http.Client(server.url, retry=NO_RETRY, **options) as client:
        return client.get_json(path)


def test_invalid_json(http_server: MockServer) -> None:
    http_server.route(
        "GET", "/x", body='{"items": [1, 2,', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(http.HttpResponseError) as caught:
        fetch(http_server, "/x")
    message = str(caught.value)
    assert message.startswith(f"GET {http_server.url}/x: invalid JSON (16 bytes): ")
    assert "(HTTP 200); the body starts '{\"items\": [1, 2,'" in message


def test_an_html_error_page_with_200(http_server: MockServer) -> None:
    page = (
        "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>"
    )
    http_server.route("GET", "/x", body=page, headers={"Content-Type": "text/html; charset=utf-8"})
    with pytest.raises(
        http.HttpResponseError,
        match=r"GET http://.*/x: expected JSON, got content type 'text/html; charset=utf-8' "
        r"\(HTTP 200\); the body starts '<!DOCTYPE html><html><head><title>Sign in",
    ):
        fetch(http_server, "/x")


def test_html_without_a_content_type_is_invalid_json(http_server: MockServer) -> None:
    http_server.route("GET", "/x", body="<html>oops</html>")
    with pytest.raises(http.HttpResponseError, match=r"invalid JSON .*the body starts '<html>oops"):
        fetch(http_server, "/x")


def test_a_wrong_content_type(http_server: MockServer) -> None:
    http_server.route("GET", "/x", body="<items/>", headers={"Content-Type": "application/xml"})
    with pytest.raises(
        http.HttpResponseError, match="expected JSON, got content type 'application/xml'"
    ):
        fetch(http_server, "/x")
    # Unless told not to care: then the body is decoded as JSON if it is JSON.
    http_server.route("GET", "/plain", body="[1]", headers={"Content-Type": "text/plain"})
    assert fetch(http_server, "/plain", strict_content_type=False) == [1]


def test_an_empty_body(http_server: MockServer) -> None:
    http_server.route("GET", "/x", status=200, headers={"Content-Type": "application/json"})
    with pytest.raises(http.HttpResponseError, match="expected JSON, got an empty body"):
        fetch(http_server, "/x")


@NATIVE
def test_a_truncated_body(http_server: MockServer, native: bool) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        b'{"items": [1, 2'
    )
    http_server.route("GET", "/x", MockResponse(raw=raw))
    policy = http.RetryPolicy(attempts=2, min_wait=0, backoff=0)
    with (
        http.Client(http_server.url, retry=policy, native_transport=native) as client,
        pytest.raises(http.HttpTransportError) as caught,
    ):
        client.get_json("/x")
    message = str(caught.value)
    assert message.startswith(
        f"GET {http_server.url}/x: the server broke the HTTP protocol or "
        "closed the connection mid-answer (RemoteProtocolError"
    )
    assert "after 2 attempts" in message
    assert len(http_server.requests) == 2


def test_a_redirect_loop(http_server: MockServer) -> None:
    http_server.route("GET", "/a", status=302, headers={"Location": "/b"})
    http_server.route("GET", "/b", status=302, headers={"Location": "/a"})
    with pytest.raises(
        http.HttpTransportError,
        match=r"GET http://.*/a: too many redirects, a redirect loop\? .* \(not retried\)",
    ):
        fetch(http_server, "/a", max_redirects=5)
    assert len(http_server.requests) == 6


@NATIVE
def test_tls_to_a_plain_http_port(http_server: MockServer, native: bool) -> None:
    http_server.route("GET", "/x", json={})
    https = http_server.url.replace("http://", "https://")
    # The default policy: TLS errors are not retried.
    with (
        http.Client(https, native_transport=native) as client,
        pytest.raises(http.HttpTransportError) as caught,
    ):
        client.get("/x")
    assert str(caught.value).startswith(f"GET {https}/x: TLS error (")
    assert "(not retried)" in str(caught.value)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A server key and certificate for 127.0.0.1, and the private CA that signed it.

    Returns ``(key, chain)``: ``chain`` holds the server certificate, then the CA's; trusting
    the chain's file trusts the CA.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail(
            "openssl is not installed; scripts/test.sh installs it (apt-get install openssl)"
        )
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=headwater test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(d / "key.pem"),
        "-out",
        str(d / "server.csr"),
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.pem"),
        "-days", "2", "-extfile", str(d / "ext.cnf"))  # fmt: skip
    chain = d / "chain.pem"
    chain.write_bytes((d / "server.pem").read_bytes() + (d / "ca.pem").read_bytes())
    return d / "key.pem", chain


@pytest.fixture
def tls_server(self_signed: tuple[Path, Path]) -> Iterator[MockServer]:
    key, cert = self_signed
    server = MockServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    inner = server._server
    inner.socket = context.wrap_socket(
        inner.socket, server_side=True, do_handshake_on_connect=False
    )
    server.route("GET", "/x", json={"secure": True})
    with server:
        yield server


@NATIVE
def test_a_self_signed_certificate(
    tls_server: MockServer, self_signed: tuple[Path, Path], native: bool
) -> None:
    url = tls_server.url.replace("http://", "https://")
    with (
        http.Client(url, native_transport=native) as client,
        pytest.raises(http.HttpTransportError, match=r"TLS error \(\w+: .*(?i:certificate)"),
    ):
        client.get("/x")
    # Trusting it explicitly works: as a CA file (both transports), or an SSLContext (httpx's).
    with http.Client(url, verify=str(self_signed[1]), native_transport=native) as client:
        assert client.get_json("/x") == {"secure": True}
    with http.Client(url, verify=ssl.create_default_context(cafile=str(self_signed[1]))) as client:
        assert client.get_json("/x") == {"secure": True}
    # Or not verifying at all.
    with http.Client(url, verify=False, native_transport=native) as client:
        assert client.get_json("/x") == {"secure": True}


def test_a_failing_table_does_not_stop_the_sync(http_server: MockServer) -> None:
    http_server.route("GET", "/good", json={"data": [{"id": 1}, {"id": 2}], "next_cursor": None})
    http_server.route(
        "GET", "/html", body="<html>maintenance</html>", headers={"Content-Type": "text/html"}
    )
    http_server.route("GET", "/broken", body="[{", headers={"Content-Type": "application/json"})
    http_server.route("GET", "/loop", status=301, headers={"Location": "/loop"})
    pages = http.CursorPaginator(items_path="data")
    columns = [hw.Column("id", pa.int64(), primary_key=True)]

    def resolver(path: str) -> Any:
        def resolve(client: http.Client) -> Iterator[list[Any]]:
            yield from client.paginate(path, pages)

        return resolve

    tables = [
        hw.Table(f"t_{name}", columns, resolver=resolver(f"/{name}"))
        for name in ("good", "html", "broken", "loop")
    ]
    plugin = hw.Plugin(
        name="bad", version="1", tables=tables, connect=lambda spec: http.Client(http_server.url)
    )
    result = run_sync(plugin)
    assert result.rows("t_good") == [{"id": 1}, {"id": 2}]
    failures = {e.table_name: str(e.error) for e in result.errors}
    assert set(failures) == {"t_html", "t_broken", "t_loop"}
    assert (
        f"GET {http_server.url}/html: expected JSON, got content type 'text/html'"
        in failures["t_html"]
    )
    assert f"GET {http_server.url}/broken: invalid JSON" in failures["t_broken"]
    assert f"GET {http_server.url}/loop: too many redirects" in failures["t_loop"]
    assert all(isinstance(e.error, http.HttpError) for e in result.errors)
    assert result.summary.errors == {"t_good": 0, "t_html": 1, "t_broken": 1, "t_loop": 1}


def test_concurrent_bad_answers_do_not_leak_slots(http_server: MockServer) -> None:
    http_server.route("GET", "/x", body="nope", headers={"Content-Type": "text/plain"})
    limiter = http.RateLimiter(max_concurrent=2)
    errors: list[BaseException] = []

    def work() -> None:
        with http.Client(http_server.url, rate_limit=limiter, retry=NO_RETRY) as client:
            for _ in range(5):
                try:
                    client.get_json("/x")
                except http.HttpResponseError as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(errors) == 20
    assert limiter.stats("127.0.0.1")["in_flight"] == 0
