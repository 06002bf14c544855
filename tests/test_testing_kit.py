"""The testing kit itself: mock server expectations, cassettes, run_sync and snapshots."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from headwater import http
from headwater.testing import (
    Cassette,
    CassetteError,
    MockResponse,
    MockServer,
    assert_schema_snapshot,
    run_sync,
    use_cassette,
)

pytest_plugins = ["pytester"]


def test_verify_reports_unexpected_requests_and_unmet_expectations() -> None:
    with MockServer() as server:
        server.expect("GET", "/wanted", json={}, times=2)
        server.route("GET", "/boom", lambda request: 1 / 0)
        with http.Client(server.url, retry=False) as client:
            client.get("/wanted")
            with pytest.raises(http.HttpStatusError, match="HTTP 404"):
                client.get("/surprise")
            with pytest.raises(http.HttpStatusError, match="handler raised ZeroDivisionError"):
                client.get("/boom")
    with pytest.raises(AssertionError) as caught:
        server.verify()
    message = str(caught.value)
    assert "unexpected request GET /surprise" in message
    assert "handler of GET /boom raised ZeroDivisionError" in message
    assert "expected GET /wanted 2 time(s), got 1" in message


def test_the_fixtures_in_a_test_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite=textwrap.dedent(
            """
            import httpx

            def test_met(http_server):
                http_server.expect("GET", "/a", json=[1])
                assert httpx.get(http_server.url + "/a").json() == [1]

            def test_unmet(http_server):
                http_server.expect("GET", "/a", json=[1])
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*mock server: expected GET /a 1 time(s), got 0*"])


class Api:
    """A small API with OAuth, for cassette tests."""

    def __init__(self, server: MockServer) -> None:
        server.route(
            "POST",
            "/token",
            json={
                "access_token": "live-access-token-1",
                "expires_in": 3600,
                "token_type": "bearer",
            },
        )
        server.route("GET", "/items", status=500, times=1)
        server.route(
            "GET", "/items", json={"data": [{"id": 2}], "next_cursor": None}, query={"cursor": "c2"}
        )
        server.route("GET", "/items", json={"data": [{"id": 1}], "next_cursor": "c2"})


def items(base_url: str, secret: str) -> list[Any]:
    auth = http.OAuth2ClientCredentials(base_url + "/token", "client-id", secret)
    with http.Client(base_url, auth=auth, retry=http.RetryPolicy(min_wait=0, backoff=0)) as client:
        return list(
            client.paginate("/items", http.CursorPaginator(items_path="data"), params={"key": "k1"})
        )


def test_record_then_replay_without_the_server(tmp_path: Path) -> None:
    path = tmp_path / "cassettes" / "items.json"
    with MockServer() as server:
        Api(server)
        with use_cassette(path) as cassette:
            assert cassette.recording
            recorded = items(server.url, "real-client-secret")
        recorded_port = server.port
    assert recorded == [[{"id": 1}], [{"id": 2}]]
    text = path.read_text()
    # Scrubbed: the client secret, the access token, and the Authorization header.
    for secret in ("real-client-secret", "live-access-token-1"):
        assert secret not in text
    stored = json.loads(text)
    targets = [i["request"]["target"] for i in stored["interactions"]]
    # "key" is a secret parameter: its value is hidden, and requests still match on replay.
    assert targets == ["/token", "/items?key=***", "/items?key=***", "/items?cursor=c2&key=***"]
    assert stored["interactions"][1]["request"]["headers"]["authorization"] == "***"
    assert stored["interactions"][0]["response"]["body"]["text"].startswith(
        '{"access_token": "***"'
    )
    # Replayed with other credentials, on another port, with the server gone: the same pages,
    # the 500 and its retry included.
    with use_cassette(path, mode="none") as cassette:
        assert not cassette.recording
        assert items(f"http://127.0.0.1:{recorded_port + 1}", "ci-dummy-secret") == recorded
        assert cassette.played == 4


def test_a_request_without_a_recorded_answer(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with MockServer() as server:
        server.route("GET", "/a", json={"a": 1})
        with use_cassette(path), http.Client(server.url) as client:
            client.get("/a")
    with use_cassette(path, mode="none"), http.Client("http://127.0.0.1:9") as client:
        assert client.get_json("/a") == {"a": 1}
        with pytest.raises(CassetteError) as caught:
            client.get("/b", params={"page": "2"})
    message = str(caught.value)
    assert f"cassette {str(path)!r} has no recorded answer for GET /b?page=2" in message
    assert "it holds 1 interaction(s): GET /a" in message
    assert "--headwater-record=all" in message


def test_replay_only_needs_the_cassette(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="does not exist and mode is 'none'"):
        Cassette(tmp_path / "missing.json", mode="none")
    with pytest.raises(ValueError, match="cassette mode must be"):
        Cassette(tmp_path / "x.json", mode="sometimes")  # type: ignore[arg-type]


def test_cassettes_work_with_the_async_client(tmp_path: Path) -> None:
    path = tmp_path / "async.json"

    async def fetch(url: str) -> Any:
        async with http.AsyncClient(url) as client:
            return await client.get_json("/a")

    with MockServer() as server:
        server.route("GET", "/a", json={"async": True})
        with use_cassette(path):
            assert asyncio.run(fetch(server.url)) == {"async": True}
    with use_cassette(path, mode="none"):
        assert asyncio.run(fetch("http://127.0.0.1:9")) == {"async": True}


def test_the_cassette_fixture_records_then_replays(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_api=textwrap.dedent(
            """
            import os
            from headwater import http
            from headwater.testing import MockServer

            def test_api(cassette):
                url = os.environ.get("API_URL", "http://127.0.0.1:9")
                with http.Client(url) as client:
                    assert client.get_json("/v") == {"v": 1}
            """
        )
    )
    with MockServer() as server:
        server.route("GET", "/v", json={"v": 1})
        monkeypatch.setenv("API_URL", server.url)
        monkeypatch.delenv("CI", raising=False)
        pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (pytester.path / "cassettes" / "test_api" / "test_api.json").exists()
    monkeypatch.delenv("API_URL")
    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--headwater-record=none")
    replayed.assert_outcomes(passed=1)


@hw.table("kit_numbers", columns=[hw.Column("n", pa.int64(), primary_key=True)])
def numbers(client: Any, state: hw.State) -> Iterator[list[dict[str, int]]]:
    yield [{"n": 1}, {"n": 2}]
    state.set("numbers", "2")


@numbers.child("kit_halves", columns=[hw.Column("half", pa.float64())])
def halves(client: Any, row: dict[str, int]) -> Iterator[dict[str, float]]:
    if row["n"] == 2:
        raise RuntimeError("two is too many")
    yield {"half": row["n"] / 2}


KIT = hw.Plugin(name="kit", version="1", tables=[numbers])


def test_run_sync_collects_tables_errors_and_state() -> None:
    result = run_sync(KIT, state={"old": "x"})
    assert result.rows("kit_numbers") == [{"n": 1}, {"n": 2}]
    assert result.rows("kit_halves") == [{"half": 0.5}]
    assert result.tables["kit_halves"].column_names == ["_cq_id", "_cq_parent_id", "half"]
    # The plugin's only client has no id of its own: not named.
    assert result.error_messages() == ["table 'kit_halves': RuntimeError: two is too many"]
    # The child of row 2 failed, so the update covering row 2 is withheld: a rerun from
    # `result.state` fetches that row and its children again.
    assert result.state == {"old": "x"}
    assert result.state_updates == []
    with pytest.raises(RuntimeError, match="two is too many"):
        run_sync(KIT, raise_errors=True)


def test_run_sync_closes_the_client() -> None:
    closed: list[bool] = []

    class Closing:
        def close(self) -> None:
            closed.append(True)

    plugin = hw.Plugin(name="kit", version="1", tables=[numbers], connect=lambda spec: Closing())
    run_sync(plugin, tables=["kit_numbers"])
    assert closed == [True]


def test_schema_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    with pytest.raises(
        AssertionError, match=r"no schema snapshot at .* --headwater-update-snapshots"
    ):
        assert_schema_snapshot(KIT, path)
    assert_schema_snapshot(KIT, path, update=True)
    assert_schema_snapshot(KIT, path)
    stored = json.loads(path.read_text())
    assert [c["name"] for c in stored["kit_numbers"]["columns"]] == ["_cq_id", "_cq_parent_id", "n"]
    assert stored["kit_halves"]["metadata"]["cq:table_depends_on"] == "kit_numbers"
    changed = hw.Table("kit_numbers", [hw.Column("n", pa.int32(), primary_key=True)])
    with pytest.raises(AssertionError, match=r'(?s)-\s+"type": "int64".*\+\s+"type": "int32"'):
        assert_schema_snapshot([changed], path)


def test_the_schema_snapshot_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_schema=textwrap.dedent(
            """
            import pyarrow as pa
            import headwater as hw

            TABLE = hw.Table("t", [hw.Column("id", pa.int64())])

            def test_schema(schema_snapshot):
                schema_snapshot([TABLE])
            """
        )
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(failed=1)
    pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--headwater-update-snapshots"
    ).assert_outcomes(passed=1)
    assert (pytester.path / "__snapshots__" / "test_schema" / "test_schema.json").exists()
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_mock_responses_raw_and_delays() -> None:
    response = MockResponse(json={"a": 1}, headers={"X": "1"})
    body, headers = response.encoded()
    assert body == b'{"a": 1}' and headers == {"X": "1", "Content-Type": "application/json"}
