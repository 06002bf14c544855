"""headwater.http clients: requests, defaults, hooks, JSON, sync and async flavours."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from headwater import http
from headwater.testing import MockRequest, MockResponse, MockServer


def test_get_json_with_base_url_default_headers_and_params(http_server: MockServer) -> None:
    route = http_server.expect("GET", "/v1/items", json={"items": [1, 2]})
    with http.Client(
        http_server.url + "/v1/", headers={"X-Team": "data"}, params={"tenant": "acme"}
    ) as client:
        assert client.get_json("items", params={"q": "x"}) == {"items": [1, 2]}
    [request] = route.calls
    assert request.params == {"tenant": "acme", "q": "x"}
    assert request.headers["x-team"] == "data"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("headwater/")


def test_post_json_and_form_bodies(http_server: MockServer) -> None:
    route = http_server.route("POST", "/echo", lambda r: {"got": r.body.decode()})
    with http.Client(http_server.url) as client:
        assert client.request_json("POST", "/echo", json={"a": 1}) == {"got": '{"a":1}'}
        assert client.post("/echo", data={"b": "2"}).json() == {"got": "b=2"}
    assert [r.headers["content-type"] for r in route.calls] == [
        "application/json",
        "application/x-www-form-urlencoded",
    ]


def test_hooks_run_in_declaration_order_on_every_attempt(http_server: MockServer) -> None:
    http_server.route("GET", "/flaky", status=503, times=1)
    http_server.route("GET", "/flaky", json={"ok": True})
    order: list[str] = []

    def first_request(request: httpx.Request) -> None:
        order.append("request 1")
        request.headers["X-Trace"] = "1"

    def second_request(request: httpx.Request) -> httpx.Request:
        order.append("request 2")
        request.headers["X-Trace"] += ",2"
        return request

    def first_response(response: httpx.Response) -> None:
        order.append(f"response 1: {response.status_code}")

    def second_response(response: httpx.Response) -> httpx.Response:
        order.append(f"response 2: {response.status_code}")
        return response

    with http.Client(
        http_server.url,
        request_hooks=[first_request, second_request],
        response_hooks=[first_response, second_response],
        retry=http.RetryPolicy(min_wait=0, backoff=0, jitter=False),
    ) as client:
        assert client.get_json("/flaky") == {"ok": True}
    assert order == [
        "request 1",
        "request 2",
        "response 1: 503",
        "response 2: 503",
        "request 1",
        "request 2",
        "response 1: 200",
        "response 2: 200",
    ]
    assert [r.headers["x-trace"] for r in http_server.requests] == ["1,2", "1,2"]


def test_a_response_hook_can_replace_the_answer(http_server: MockServer) -> None:
    # An API that reports errors in a 200 body: a hook turns them into real statuses.
    http_server.route("GET", "/x", json={"error": "quota"})

    def unwrap(response: httpx.Response) -> httpx.Response | None:
        if response.json().get("error"):
            return httpx.Response(403, json=response.json(), request=response.request)
        return None

    with (
        http.Client(http_server.url, response_hooks=[unwrap]) as client,
        pytest.raises(http.HttpStatusError, match=r"GET http://.*/x: HTTP 403"),
    ):
        client.get("/x")


def test_a_user_exception_in_a_hook_passes_through(http_server: MockServer) -> None:
    class Mine(Exception):
        pass

    def boom(request: httpx.Request) -> None:
        raise Mine("from the hook")

    with (
        http.Client(http_server.url, request_hooks=[boom]) as client,
        pytest.raises(Mine, match="from the hook"),
    ):
        client.get("/never")
    assert http_server.requests == []


def test_async_client_has_the_same_api(http_server: MockServer) -> None:
    http_server.route("GET", "/items", json={"data": [{"id": 1}], "next_cursor": "b"}, times=1)
    http_server.route("GET", "/items", json={"data": [{"id": 2}], "next_cursor": None})
    order: list[str] = []

    async def request_hook(request: httpx.Request) -> None:
        await asyncio.sleep(0)
        order.append("request")

    def response_hook(response: httpx.Response) -> None:
        order.append("response")

    async def main() -> list[list[Any]]:
        async with http.AsyncClient(
            http_server.url, request_hooks=[request_hook], response_hooks=[response_hook]
        ) as client:
            pages = [
                page
                async for page in client.paginate("/items", http.CursorPaginator(items_path="data"))
            ]
            assert (await client.get("/items")).status_code == 200
            return pages

    assert asyncio.run(main()) == [[{"id": 1}], [{"id": 2}]]
    assert order == ["request", "response"] * 3
    assert http_server.requests[1].params == {"cursor": "b"}


def test_clients_are_safe_to_share_between_threads(http_server: MockServer) -> None:
    http_server.route("GET", "/n/{n}", lambda r: {"n": int(r.path_params["n"])})
    import concurrent.futures

    with (
        http.Client(http_server.url) as client,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        results = list(pool.map(lambda n: client.get_json(f"/n/{n}")["n"], range(100)))
    assert results == list(range(100))


def test_mock_server_handlers_see_the_request(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> MockResponse:
        return MockResponse(201, json={"path": request.path, "q": request.params})

    http_server.route("PUT", "/things/{id}", handler)
    with http.Client(http_server.url) as client:
        response = client.request("PUT", "/things/7", params={"a": "b"}, json={})
    assert response.status_code == 201
    assert response.json() == {"path": "/things/7", "q": {"a": "b"}}
    assert http_server.requests[0].path_params == {"id": "7"}


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match=r"auth must be a headwater\.http Auth or a callable"):
        http.Client(auth="token")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate_limit must be a RateLimit or a RateLimiter"):
        http.Client(rate_limit=10)  # type: ignore[arg-type]


def test_a_transport_of_the_other_kind_is_refused() -> None:
    with pytest.raises(TypeError, match=r"transport must be an httpx\.BaseTransport for a Client"):
        http.Client(transport=httpx.AsyncHTTPTransport())
    with pytest.raises(
        TypeError, match=r"transport must be an httpx\.AsyncBaseTransport for an AsyncClient"
    ):
        http.AsyncClient(transport=httpx.HTTPTransport())


def test_the_rust_transport_is_the_default_unless_httpx_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    from headwater.http.proxies import ProxyRouter
    from headwater.http.transport import (
        AsyncLimitedTransport,
        AsyncNativeTransport,
        LimitedTransport,
        NativeTransport,
    )

    def transport_of(client: http.Client) -> object:
        # Every answer is read through the wrapper that holds it to the request's limits.
        limited = client.http._transport
        assert isinstance(limited, LimitedTransport)
        return limited.inner

    with http.Client() as client:
        assert isinstance(transport_of(client), NativeTransport)
    with http.Client(native_transport=False) as client:
        assert isinstance(transport_of(client), httpx.HTTPTransport)
    with http.Client(verify=ssl.create_default_context()) as client:
        assert isinstance(transport_of(client), httpx.HTTPTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    with http.Client() as client:  # httpx's transports, one per proxy (tests/test_http_proxies.py)
        assert isinstance(transport_of(client), ProxyRouter)
    monkeypatch.delenv("HTTPS_PROXY")

    async def async_transport() -> object:
        async with http.AsyncClient() as client:
            limited = client.http._transport
            assert isinstance(limited, AsyncLimitedTransport)
            return limited.inner

    assert isinstance(asyncio.run(async_transport()), AsyncNativeTransport)


@pytest.mark.parametrize("native", [True, False], ids=["rust", "httpcore"])
def test_compressed_answers_and_cookies(http_server: MockServer, native: bool) -> None:
    import gzip

    body = gzip.compress(b'{"compressed": true}')
    http_server.route(
        "GET",
        "/gz",
        MockResponse(
            body=body,
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Set-Cookie": "session=abc; Path=/",
            },
        ),
    )
    http_server.route("GET", "/again", json={})
    with http.Client(http_server.url, native_transport=native) as client:
        assert client.get_json("/gz") == {"compressed": True}
        client.get("/again")
    assert "gzip" in http_server.requests[0].headers["accept-encoding"]
    assert http_server.requests[1].headers["cookie"] == "session=abc"


@pytest.mark.parametrize("native", [True, False], ids=["rust", "httpcore"])
def test_every_content_encoding_asked_for_is_decoded(http_server: MockServer, native: bool) -> None:
    import gzip
    import zlib

    data = b'{"rows": [' + b",".join(b'{"id": %d}' % i for i in range(5000)) + b"]}"
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    encoded = {
        "gzip": gzip.compress(data),
        "x-gzip": gzip.compress(data),
        "deflate": zlib.compress(data),  # as the standard says: zlib-wrapped
        "Deflate ": raw.compress(data) + raw.flush(),  # as some servers send it: raw
        "gzip, deflate": zlib.compress(gzip.compress(data)),  # two layers, undone in reverse
        "identity": data,
    }
    for number, (encoding, body) in enumerate(encoded.items()):
        http_server.route(
            "GET",
            f"/{number}",
            MockResponse(
                body=body,
                headers={"Content-Type": "application/json", "Content-Encoding": encoding},
            ),
        )
    with http.Client(http_server.url, native_transport=native) as client:
        for number, encoding in enumerate(encoded):
            response = client.get(f"/{number}")
            assert response.content == data
            # What was undone is gone from the headers, which describe the body as it is.
            assert response.headers.get("content-encoding") == (
                "identity" if encoding == "identity" else None
            )
            assert response.headers["content-length"] == str(len(data))
    assert http_server.requests[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("native", [True, False], ids=["rust", "httpcore"])
def test_an_encoding_not_asked_for_is_a_clear_error(http_server: MockServer, native: bool) -> None:
    import gzip

    http_server.route(
        "GET", "/br", MockResponse(body=b"\x1b\x00\x00", headers={"Content-Encoding": "br"})
    )
    http_server.route(
        "GET",
        "/broken",
        MockResponse(
            body=gzip.compress(b"{}")[:-12] + b"garbage!", headers={"Content-Encoding": "gzip"}
        ),
    )
    with http.Client(http_server.url, native_transport=native, retry=False) as client:
        with pytest.raises(
            http.HttpResponseError,
            match=r"GET http://.*/br: could not decode the body \(DecodingError: the answer's "
            r"Content-Encoding is 'br'; headwater decodes gzip and deflate \(what it asks for "
            r"in Accept-Encoding\)\) \(not retried\)",
        ):
            client.get("/br")
        with pytest.raises(
            http.HttpResponseError,
            match=r"could not decode the body \(DecodingError: the body is not valid gzip",
        ):
            client.get("/broken")
