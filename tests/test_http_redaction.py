"""Secrets never show in log lines (ours or httpx's), exceptions or reprs."""

from __future__ import annotations

import logging

import pytest

from headwater import http
from headwater import redaction as redact
from headwater.testing import MockServer


def test_redact_text_urls_and_headers() -> None:
    redact.register_secret("sekrit/value+1")
    assert redact.redact("token sekrit/value+1 and sekrit%2Fvalue%2B1") == "token *** and ***"
    assert (
        redact.redact_url("https://user:pw12@api.example.com/x?api_key=a&page=2&access_token=b#f")
        == "https://user:***@api.example.com/x?api_key=***&page=2&access_token=***#f"
    )
    assert redact.redact_headers({"Authorization": "Bearer x", "X-Other": "sekrit/value+1"}) == {
        "Authorization": "***",
        "X-Other": "***",
    }
    redact.register_secret("abc")  # too short to be told apart from ordinary text
    assert redact.redact("abc") == "abc"


def test_log_lines_of_httpx_and_headwater_hide_secrets(
    http_server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    http_server.route("GET", "/x", status=503, times=1)
    http_server.route("GET", "/x", json={})
    auth = http.ApiKeyAuth("query-key-42", param="key_for_api")
    caplog.set_level(logging.DEBUG)
    with http.Client(
        http_server.url, auth=auth, retry=http.RetryPolicy(min_wait=0, backoff=0)
    ) as client:
        client.get("/x")
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("HTTP Request: GET") for line in lines)  # httpx's own line
    assert any(line.startswith("retrying GET") for line in lines)  # ours
    assert all("query-key-42" not in line for line in lines)
    assert any("key_for_api=***" in line for line in lines)
    assert "query-key-42" not in caplog.text


def test_errors_hide_bearer_tokens_echoed_by_the_server(http_server: MockServer) -> None:
    # Some APIs echo the request in their error body.
    http_server.route(
        "GET", "/x", lambda r: http_server_echo(r.headers["authorization"]), times=None
    )
    with (
        http.Client(http_server.url, auth=http.BearerAuth("echoed-token-7"), retry=False) as client,
        pytest.raises(http.HttpStatusError) as caught,
    ):
        client.get("/x")
    assert "echoed-token-7" not in str(caught.value)
    assert "Bearer ***" in str(caught.value)
    assert "echoed-token-7" not in repr(caught.value)


def http_server_echo(authorization: str) -> object:
    from headwater.testing import MockResponse

    return MockResponse(400, json={"error": "bad request", "you_sent": authorization})


def test_client_and_auth_reprs_hide_secrets() -> None:
    client = http.Client("https://user:hunter22@api.example.com/?token=t0ken99")
    try:
        assert "hunter22" not in repr(client) and "t0ken99" not in repr(client)
    finally:
        client.close()
    assert "s3cret-key" not in repr(http.BearerAuth("s3cret-key"))
    assert "s3cret-cs" not in repr(
        http.OAuth2ClientCredentials("https://x/token", "id", "s3cret-cs")
    )


def test_oauth_errors_hide_the_client_secret(http_server: MockServer) -> None:
    http_server.route("POST", "/token", lambda r: http_server_echo(r.body.decode()))
    auth = http.OAuth2ClientCredentials(http_server.url + "/token", "id", "client-secret-echoed")
    with (
        http.Client(http_server.url, auth=auth, retry=False) as client,
        pytest.raises(http.AuthError) as caught,
    ):
        client.get("/x")
    assert "client-secret-echoed" not in str(caught.value)
    assert "client_secret=***" in str(caught.value)


def test_credentials_in_default_headers_and_params_are_secrets(http_server: MockServer) -> None:
    http_server.route("GET", "/x", status=500, json={"echo": "Token hdr-secret-9 q-secret-9"})
    with (
        http.Client(
            http_server.url,
            headers={"Authorization": "Token hdr-secret-9"},
            params={"access_token": "q-secret-9"},
            retry=False,
        ) as client,
        pytest.raises(http.HttpStatusError) as caught,
    ):
        client.get("/x")
    message = str(caught.value)
    assert "hdr-secret-9" not in message and "q-secret-9" not in message
    assert "access_token=***" in message
