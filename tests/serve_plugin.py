"""A plugin for the gRPC tests: accounts (multiplexed), repos -> issues, a failing table, a
table with incremental state, the DESIGN.md `_cq_id` vector table, a slow table held by a
gate, a pair of resolvers that must run at once, and a parent with state whose child has an
oversized row. Runnable as a script (``python serve_plugin.py serve ...``) for the
command-line tests."""

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
#: `test_slow` yields a row, then waits for this (30 s at most, so it always ends by itself).
SLOW_GATE = threading.Event()
#: Every client `connect` made, in order.
CONNECTED: list[Client] = []
#: Bytes of the `test_big_parts` row under `test_big` row 2: set above the test's limit.
BIG_BYTES = 10


class Spec(hw.Spec):
    token: hw.SecretStr
    accounts: list[str] = pydantic.Field(default_factory=lambda: ["acct-1", "acct-2"])
    fail_test: str = ""
    concurrency: int | None = None


class Client:
    def __init__(self, spec: Spec, account: str = "") -> None:
        self.spec = spec
        self.id = account
        self.closed = False
        self.barrier: threading.Barrier | None = None

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
            "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i),
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


@hw.table("test_slow", columns=[hw.Column("id", pa.int64())], clients=lambda client: [client])
def slow(client: Client) -> Iterator[dict[str, int]]:
    yield {"id": 0}
    SLOW_GATE.wait(timeout=30)
    if client.closed:
        raise RuntimeError("the client was closed while a sync used it")
    yield {"id": 1}


def _pair(client: Client) -> list[Client]:
    # A barrier per sync: both sides must run at the same time to pass it.
    barrier = threading.Barrier(2, timeout=3)
    sides = [Client(client.spec, "left"), Client(client.spec, "right")]
    for side in sides:
        side.barrier = barrier
    return sides


@hw.table("test_pair", columns=[hw.Column("side", pa.string())], clients=_pair)
def pair(client: Client) -> Iterator[dict[str, str]]:
    assert client.barrier is not None
    client.barrier.wait()
    yield {"side": client.id}


@hw.table(
    "test_big",
    columns=[hw.Column("id", pa.int64(), primary_key=True)],
    clients=lambda client: [Client(client.spec, "main")],
)
def big(client: Client, state: hw.State) -> Iterator[dict[str, int]]:
    start = int(state.get("cursor", "0"))
    yield from ({"id": i} for i in range(start, start + 4))
    state.set("cursor", str(start + 4))


@big.child("test_big_parts", columns=[hw.Column("id", pa.int64()), hw.Column("blob", pa.string())])
def big_parts(client: Client, parent: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield {"id": parent["id"], "blob": "x" * (BIG_BYTES if parent["id"] % 4 == 2 else 10)}


def connect(spec: Spec) -> Client:
    if spec.fail_test == "leak-connect":
        raise RuntimeError(f"login refused for {spec.token.get_secret_value()}")
    client = Client(spec)
    CONNECTED.append(client)
    return client


def test_connection(client: Client) -> None:
    if client.spec.fail_test == "credentials":
        raise ConnectionTestFailed("INVALID_CREDENTIALS", "the token was refused")
    if client.spec.fail_test == "crash":
        raise ValueError("unexpected")
    if client.spec.fail_test == "leak":
        raise ValueError(f"token {client.spec.token.get_secret_value()} was refused")


plugin = hw.Plugin(
    name="test-source",
    version="1.2.3",
    tables=[example_accounts, repos, failing, events, endless, wide, slow, pair, big],
    spec=Spec,
    connect=connect,
    clients=lambda client: [Client(client.spec, a) for a in client.spec.accounts],
    test_connection=test_connection,
    sync_options=lambda spec: {"concurrency": spec.concurrency},
    team="headwater",
    description="The plugin of headwater's gRPC tests.",
)


if __name__ == "__main__":
    plugin.main()
