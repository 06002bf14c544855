"""A plugin for the gRPC tests: accounts (multiplexed), repos -> issues, a failing table, a
table with incremental state, and the DESIGN.md `_cq_id` vector table. Runnable as a script
(``python serve_plugin.py serve ...``) for the command-line tests."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pydantic

import headwater as hw
from headwater import types
from headwater.serve import ConnectionTestFailed

#: Set by the `endless` resolver's cleanup: proves a cancelled sync closed it.
ENDLESS_CLOSED = threading.Event()


class Spec(hw.Spec):
    token: hw.SecretStr
    accounts: list[str] = pydantic.Field(default_factory=lambda: ["acct-1", "acct-2"])
    fail_test: str = ""


class Client:
    def __init__(self, spec: Spec, account: str = "") -> None:
        self.spec = spec
        self.id = account
        self.closed = False

    def close(self) -> None:
        self.closed = True


@hw.table(
    "example_accounts",
    columns=[
        hw.Column("account_id", pa.string(), primary_key=True),
        hw.Column("id", pa.int64(), primary_key=True),
    ],
    clients=lambda client: [client],
)
def example_accounts(client: Client) -> Iterator[dict[str, Any]]:
    yield {"account_id": "acct-123", "id": 42}


@hw.table(
    "test_repos",
    columns=[
        hw.Column("account", pa.string(), primary_key=True),
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("owner", types.uuid()),
        hw.Column("settings", types.json()),
        hw.Column("created_at", pa.timestamp("us", tz="UTC")),
    ],
    title="Test repositories",
)
def repos(client: Client) -> Iterator[dict[str, Any]]:
    for i in range(5):
        yield {
            "account": client.id,
            "id": i,
            "owner": uuid.UUID(int=i + 1),
            "settings": {"private": i % 2 == 0},
            "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=i),
        }


@repos.child(
    "test_issues",
    columns=[
        hw.Column("account", pa.string(), primary_key=True),
        hw.Column("repo_id", pa.int64(), primary_key=True),
        hw.Column("number", pa.int64(), primary_key=True),
    ],
)
def issues(client: Client, repo: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for number in range(3):
        yield {"account": repo["account"], "repo_id": repo["id"], "number": number}


@hw.table("test_failing", columns=[hw.Column("id", pa.int64())])
def failing(client: Client) -> Iterator[dict[str, Any]]:
    yield {"id": 1}
    raise RuntimeError("the test API is down")


@hw.table("test_events", columns=[hw.Column("id", pa.int64(), primary_key=True)])
def events(client: Client, state: hw.State) -> Iterator[dict[str, int]]:
    key = f"events:{client.id}"
    start = int(state.get(key, "-1")) + 1
    for i in range(start, start + 10):
        yield {"id": i}
    state.set(key, str(start + 9))


@hw.table("test_endless", columns=[hw.Column("id", pa.int64())])
def endless(client: Client) -> Iterator[dict[str, int]]:
    try:
        i = 0
        while True:
            time.sleep(0.001)
            i += 1
            yield {"id": i}
    finally:
        ENDLESS_CLOSED.set()


@hw.table("test_wide", columns=[hw.Column("id", pa.int64()), hw.Column("text", pa.string())])
def wide(client: Client) -> Iterator[list[dict[str, Any]]]:
    yield [{"id": i, "text": "x" * 2000} for i in range(2000)]


def test_connection(client: Client) -> None:
    if client.spec.fail_test == "credentials":
        raise ConnectionTestFailed("INVALID_CREDENTIALS", "the token was refused")
    if client.spec.fail_test == "crash":
        raise ValueError("unexpected")


plugin = hw.Plugin(
    name="test-source",
    version="1.2.3",
    tables=[example_accounts, repos, failing, events, endless, wide],
    spec=Spec,
    connect=Client,
    clients=lambda client: [Client(client.spec, a) for a in client.spec.accounts],
    test_connection=test_connection,
    team="headwater",
    description="The plugin of headwater's gRPC tests.",
)


if __name__ == "__main__":
    plugin.main()
