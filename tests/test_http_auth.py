"""Every kind of auth, OAuth2 refresh before expiry and on 401, and secrets kept out of errors."""

from __future__ import annotations

import asyncio
import base64
import threading

import httpx
import pytest
from pydantic import SecretStr

from headwater import http
from headwater.testing import MockRequest, MockResponse, MockServer


def test_api_key_in_a_header_or_a_query_parameter(http_server: MockServer) -> None:
    route = http_server.route("GET", "/x", json={})
    with http.Client(http_server.url, auth=http.ApiKeyAuth("key-in-header")) as client:
        client.get("/x")
    with http.Client(
        http_server.url, auth=http.ApiKeyAuth(SecretStr("key-in-query"), param="api_key")
    ) as client:
        client.get("/x", params={"page": 2})
    with http.Client(
        http_server.url,
        auth=http.ApiKeyAuth("key-prefixed", header="Authorization", prefix="Token "),
    ) as client:
        client.get("/x")
    first, second, third = route.calls
    assert first.headers["x-api-key"] == "key-in-header"
    assert second.params == {"page": "2", "api_key": "key-in-query"}
    assert "x-api-key" not in second.headers
    assert third.headers["authorization"] == "Token key-prefixed"
    assert "key-in-query" not in repr(http.ApiKeyAuth("key-in-query", param="api_key"))


def test_bearer_basic_and_callable(http_server: MockServer) -> None:
    route = http_server.route("GET", "/x", json={})
    with http.Client(http_server.url, auth=http.BearerAuth("bearer-token-1")) as client:
        client.get("/x")
    with http.Client(http_server.url, auth=http.BasicAuth("ann", "basic-pass")) as client:
        client.get("/x")

    def sign(request: httpx.Request) -> None:
        request.headers["X-Signature"] = f"signed:{request.url.path}"

    with http.Client(http_server.url, auth=sign) as client:
        client.get("/x")
    bearer, basic, signed = route.calls
    assert bearer.headers["authorization"] == "Bearer bearer-token-1"
    assert basic.headers["authorization"] == "Basic " + base64.b64encode(b"ann:basic-pass").decode()
    assert signed.headers["x-signature"] == "signed:/x"
    assert repr(http.BasicAuth("ann", "basic-pass")) == "BasicAuth('ann', ***)"


class TokenServer:
    """A token endpoint and an API accepting only the tokens it issued."""

    def __init__(self, server: MockServer, expires_in: int | None = 3600) -> None:
        self.server = server
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.forms: list[dict[str, str]] = []
        self.lock = threading.Lock()
        server.route("POST", "/token", self.token)
        server.route("GET", "/api", self.api)

    def token(self, request: MockRequest) -> MockResponse:
        form = request.form()
        with self.lock:
            self.forms.append(form)
            token = f"access-token-{len(self.issued) + 1}"
            self.issued.append(token)
            self.valid.add(token)
        body: dict[str, object] = {"access_token": token, "token_type": "bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if form.get("grant_type") == "refresh_token":
            body["refresh_token"] = f"refresh-token-{len(self.issued)}"
        return MockResponse(json=body)

    def api(self, request: MockRequest) -> MockResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            return MockResponse(401, json={"error": "invalid_token"})
        return MockResponse(json={"token": token})


def test_client_credentials_fetch_once_then_before_expiry(http_server: MockServer) -> None:
    tokens = TokenServer(http_server, expires_in=100)
    now = [1000.0]
    auth = http.OAuth2ClientCredentials(
        http_server.url + "/token",
        "my-client",
        SecretStr("client-secret-1"),
        scope="read",
        refresh_margin=10,
        clock=lambda: now[0],
    )
    with http.Client(http_server.url, auth=auth) as client:
        assert client.get_json("/api") == {"token": "access-token-1"}
        now[0] += 80  # 20 s left: still good
        assert client.get_json("/api") == {"token": "access-token-1"}
        now[0] += 11  # 9 s left, within the margin: renewed before it expires
        assert client.get_json("/api") == {"token": "access-token-2"}
    assert tokens.forms[0] == {
        "grant_type": "client_credentials",
        "scope": "read",
        "client_id": "my-client",
        "client_secret": "client-secret-1",
    }
    assert len(tokens.forms) == 2
    assert "client-secret-1" not in repr(auth)


def test_client_credentials_in_a_basic_header(http_server: MockServer) -> None:
    tokens = TokenServer(http_server)
    auth = http.OAuth2ClientCredentials(
        http_server.url + "/token", "id", "client-secret-2", client_auth="basic"
    )
    with http.Client(http_server.url, auth=auth) as client:
        client.get("/api")
    token_request = http_server.requests[0]
    assert (
        token_request.headers["authorization"]
        == "Basic " + base64.b64encode(b"id:client-secret-2").decode()
    )
    assert tokens.forms == [{"grant_type": "client_credentials"}]


def test_a_401_refreshes_the_token_once(http_server: MockServer) -> None:
    tokens = TokenServer(http_server, expires_in=None)  # never expires by the clock
    auth = http.OAuth2ClientCredentials(http_server.url + "/token", "id", "client-secret-3")
    with http.Client(http_server.url, auth=auth) as client:
        assert client.get_json("/api") == {"token": "access-token-1"}
        tokens.valid.clear()  # revoked by the server
        assert client.get_json("/api") == {"token": "access-token-2"}
        # A token refused even when new: one refresh, then a clear error.
        always = tokens.server.route("GET", "/api", status=401, json={"error": "nope"})
        tokens.server.routes.remove(always)
        tokens.server.routes.insert(0, always)
        with pytest.raises(http.AuthError) as caught:
            client.get("/api")
    assert len(tokens.issued) == 3
    message = str(caught.value)
    assert "GET http://127.0.0.1" in message and "HTTP 401" in message
    assert "access-token" not in message
    assert caught.value.status == 401


def test_concurrent_401s_refresh_only_once(http_server: MockServer) -> None:
    tokens = TokenServer(http_server, expires_in=None)
    auth = http.OAuth2ClientCredentials(http_server.url + "/token", "id", "client-secret-4")
    with http.Client(http_server.url, auth=auth) as client:
        client.get("/api")
        tokens.valid.clear()
        threads = [threading.Thread(target=client.get, args=("/api",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    # Every thread saw the same revoked token; the first to get the lock renewed it, the others
    # used the new one.
    assert len(tokens.issued) == 2


def test_refresh_token_grant_rotates_and_reports(http_server: MockServer) -> None:
    tokens = TokenServer(http_server, expires_in=60)
    rotated: list[str] = []
    now = [0.0]
    auth = http.OAuth2RefreshToken(
        http_server.url + "/token",
        "refresh-token-0",
        client_id="app",
        on_rotate=rotated.append,
        clock=lambda: now[0],
    )
    with http.Client(http_server.url, auth=auth) as client:
        client.get("/api")
        now[0] += 55  # inside the default 30 s margin
        client.get("/api")
    assert [f["refresh_token"] for f in tokens.forms] == ["refresh-token-0", "refresh-token-1"]
    assert rotated == ["refresh-token-1", "refresh-token-2"]


def test_refresh_token_starts_with_a_given_access_token(http_server: MockServer) -> None:
    tokens = TokenServer(http_server)
    tokens.valid.add("given-access-token")
    auth = http.OAuth2RefreshToken(
        http_server.url + "/token", "refresh-token-x", access_token="given-access-token"
    )
    with http.Client(http_server.url, auth=auth) as client:
        assert client.get_json("/api") == {"token": "given-access-token"}
    assert tokens.forms == []


def test_token_endpoint_failures_are_auth_errors(http_server: MockServer) -> None:
    http_server.route("POST", "/bad-secret", status=401, json={"error": "invalid_client"})
    http_server.route("POST", "/no-token", json={"token": "x"})
    http_server.route(
        "POST", "/html", body="<html>login</html>", headers={"Content-Type": "text/html"}
    )
    for path, expected in [
        ("/bad-secret", r"could not get an OAuth2 token: POST http://.*/bad-secret: HTTP 401"),
        ("/no-token", r"the OAuth2 token response has no access_token \(it has \['token'\]\)"),
        ("/html", r"token endpoint answered HTTP 200 with a body that is not JSON"),
    ]:
        auth = http.OAuth2ClientCredentials(http_server.url + path, "id", "client-secret-5")
        with (
            http.Client(http_server.url, auth=auth) as client,
            pytest.raises(http.AuthError, match=expected) as caught,
        ):
            client.get("/api")
        assert "client-secret-5" not in str(caught.value)
    assert not any(r.path == "/api" for r in http_server.requests)


def test_async_oauth_refreshes_without_blocking(http_server: MockServer) -> None:
    tokens = TokenServer(http_server, expires_in=None)
    auth = http.OAuth2ClientCredentials(http_server.url + "/token", "id", "client-secret-6")

    async def main() -> list[object]:
        async with http.AsyncClient(http_server.url, auth=auth) as client:
            first = await client.get_json("/api")
            tokens.valid.clear()
            again = await asyncio.gather(*(client.get_json("/api") for _ in range(5)))
            return [first, *again]

    results = asyncio.run(main())
    assert results[0] == {"token": "access-token-1"}
    assert results[1:] == [{"token": "access-token-2"}] * 5
    assert len(tokens.issued) == 2


def test_an_unbound_oauth_auth_says_so() -> None:
    auth = http.OAuth2ClientCredentials("http://127.0.0.1:9/token", "id", "client-secret-7")
    request = httpx.Request("GET", "http://127.0.0.1:9/")
    with pytest.raises(RuntimeError, match="is not bound to a client"):
        auth.apply(request)
    with pytest.raises(ValueError, match="client_auth must be 'body' or 'basic'"):
        http.OAuth2ClientCredentials("http://x/token", "id", "s", client_auth="header")


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_token_requests_carry_none_of_the_clients_defaults(
    http_server: MockServer, flavour: str
) -> None:
    # Default params and headers (an API key among them) and hooks are the API's business,
    # not the token endpoint's, which is often another host.
    TokenServer(http_server)
    auth = http.OAuth2ClientCredentials(http_server.url + "/token", "id", "client-secret-8")
    hooked: list[str] = []

    def hook(request: httpx.Request) -> None:
        hooked.append(request.url.path)
        request.headers["X-Hooked"] = "1"

    options: dict[str, object] = {
        "auth": auth,
        "params": {"api_key": "default-param-key-1", "tenant": "acme"},
        "headers": {"X-API-Key": "default-header-key-2", "X-Team": "data"},
        "request_hooks": [hook],
        "response_hooks": [lambda response: hooked.append(f"answer {response.url.path}")],
    }
    if flavour == "sync":
        with http.Client(http_server.url, **options) as client:  # type: ignore[arg-type]
            client.get("/api")
    else:

        async def main() -> None:
            async with http.AsyncClient(http_server.url, **options) as client:  # type: ignore[arg-type]
                await client.get("/api")

        asyncio.run(main())
    token, api = http_server.requests
    assert token.path == "/token" and token.query == {}
    assert not {"x-api-key", "x-team", "x-hooked"} & set(token.headers)
    assert token.headers["user-agent"].startswith("headwater/")
    assert token.form()["client_secret"] == "client-secret-8"
    # The API's request has them all.
    assert api.params == {"api_key": "default-param-key-1", "tenant": "acme"}
    assert api.headers["x-api-key"] == "default-header-key-2"
    assert api.headers["x-hooked"] == "1"
    assert hooked == ["/api", "answer /api"]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_status_errors(http_server: MockServer, status: int) -> None:
    http_server.route("GET", "/x", status=status, json={"error": "denied"})
    with http.Client(http_server.url, auth=http.BearerAuth("bearer-token-9")) as client:
        try:
            client.get("/x")
        except http.HttpStatusError as error:
            caught: http.HttpStatusError = error
        else:
            pytest.fail("no error")
    assert isinstance(caught, http.AuthError)
    assert caught.status == status
    assert str(caught).startswith(f"GET {http_server.url}/x: HTTP {status}")
