"""The gRPC server against bad input and load, on a real server on loopback: specs nested too
deep, rows over the message limit, more syncs than it runs, a second ``Init`` under a running
sync, ``TestConnection`` without a hook, and sync options taken from the spec."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pyarrow as pa
import pytest
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

import headwater as hw
import serve_plugin
from headwater.errors import PluginError, SpecError
from headwater.serve import PluginServer, ServeError
from headwater.serve.destination import DestinationServicer, MemoryTableStore
from headwater.serve.servicer import SourceServicer

SPEC = {"token": "s3cr3t-token", "accounts": ["acct-1"]}
MiB = 1024 * 1024


def connect(server: PluginServer) -> plugin_pb2_grpc.PluginStub:
    channel = grpc.insecure_channel(
        server.address, options=[("grpc.max_receive_message_length", 100 * MiB)]
    )
    return plugin_pb2_grpc.PluginStub(channel)


@pytest.fixture
def stub() -> Iterator[plugin_pb2_grpc.PluginStub]:
    with PluginServer(SourceServicer(serve_plugin.plugin), "127.0.0.1:0") as server:
        yield connect(server)


@pytest.fixture
def gate() -> Iterator[None]:
    """``test_slow`` waits until the test opens the gate (or 30 s): opened whatever happens."""
    serve_plugin.SLOW_GATE.clear()
    serve_plugin.CONNECTED.clear()
    try:
        yield
    finally:
        serve_plugin.SLOW_GATE.set()


def init(stub: Any, spec: dict[str, Any] = SPEC, **kwargs: Any) -> None:
    stub.Init(plugin_pb2.Init.Request(spec=json.dumps(spec).encode(), **kwargs))


def sync(stub: Any, **kwargs: Any) -> list[plugin_pb2.Sync.Response]:
    return list(stub.Sync(plugin_pb2.Sync.Request(**kwargs), timeout=120))


def rows(responses: list[plugin_pb2.Sync.Response]) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for response in responses:
        if response.HasField("insert"):
            with pa.ipc.open_stream(response.insert.record) as reader:
                for batch in reader:
                    name = batch.schema.metadata[b"cq:table_name"].decode()
                    tables.setdefault(name, []).extend(batch.to_pylist())
    return tables


def errors(responses: list[plugin_pb2.Sync.Response]) -> list[tuple[str, str]]:
    return [(r.error.table_name, r.error.error) for r in responses if r.HasField("error")]


def test_a_spec_nested_too_deep_is_an_invalid_argument(stub: Any) -> None:
    deep = b'{"token": "t", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(grpc.RpcError) as info:
        stub.Init(plugin_pb2.Init.Request(spec=deep))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "the spec is nested deeper than 100 levels"
    answer = stub.TestConnection(plugin_pb2.TestConnection.Request(spec=deep))
    assert not answer.success and answer.failure_code == "INVALID_SPEC"
    assert answer.failure_description == "the spec is nested deeper than 100 levels"
    with pytest.raises(grpc.RpcError) as info:
        stub.Init(plugin_pb2.Init.Request(spec=b'{"token": "\xff"}'))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("the spec is not UTF-8 text")
    # The server is healthy: it answers and syncs.
    assert stub.GetName(plugin_pb2.GetName.Request(), timeout=30).name == "test-source"
    init(stub)
    assert len(rows(sync(stub, tables=["example_accounts"]))["example_accounts"]) == 1


def test_a_failing_connect_does_not_show_the_spec_s_secret_to_the_cli(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        init(stub, {**SPEC, "fail_test": "leak-connect"})
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "login refused for ***" in caught.value.details()
    assert SPEC["token"] not in caught.value.details()


def test_a_null_spec_is_an_empty_one_as_the_cloudquery_cli_sends_it(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Init(plugin_pb2.Init.Request(spec=b"null"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "token: Field required" in info.value.details()  # not "must be an object"
    specless = hw.Plugin(name="specless", version="1", tables=[serve_plugin.example_accounts])
    with PluginServer(SourceServicer(specless), "127.0.0.1:0") as server:
        other = connect(server)
        other.Init(plugin_pb2.Init.Request(spec=b"null"))
        assert len(rows(sync(other))["example_accounts"]) == 1


def test_sync_options_come_from_the_spec(stub: Any) -> None:
    # With one resolver at a time, the two sides of test_pair never meet at their barrier.
    init(stub, {**SPEC, "concurrency": 1})
    failed = sync(stub, tables=["test_pair"], withErrorMessages=True)
    assert [table for table, _ in errors(failed)] == ["test_pair", "test_pair"]
    assert "BrokenBarrierError" in errors(failed)[0][1]
    init(stub, {**SPEC, "concurrency": 2})
    met = sync(stub, tables=["test_pair"], withErrorMessages=True)
    assert errors(met) == []
    assert sorted(row["side"] for row in rows(met)["test_pair"]) == ["left", "right"]
    with pytest.raises(grpc.RpcError) as info:
        init(stub, {**SPEC, "concurrency": 0})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "plugin 'test-source': the spec sets the sync option concurrency to 0 (through "
        "sync_options); concurrency takes an int >= 1"
    )
    answer = stub.TestConnection(
        plugin_pb2.TestConnection.Request(spec=json.dumps({**SPEC, "concurrency": 0}).encode())
    )
    assert not answer.success and answer.failure_code == "INVALID_SPEC"
    assert "concurrency takes an int >= 1" in answer.failure_description


@pytest.mark.parametrize(
    ("options", "value"),
    [
        ({"concurrency": 3}, None),
        ({"table_concurrency": 2, "depth_concurrency": [4, 2]}, None),
        ({"strategy": "shuffle", "shuffle_seed": 7}, None),
        ({"max_buffer_bytes": MiB, "batch_max_rows": 10, "batch_max_bytes": 4096}, None),
        ({"batch_max_latency": 0.5, "on_row_error": "fail"}, None),
        ({"resolver_timeout": 60, "sync_timeout": 600.0}, None),
        ({"concurrency": True}, "concurrency takes an int >= 1"),
        ({"batch_max_latency": float("inf")}, "batch_max_latency takes a number of seconds"),
        (
            {"sync_timeout": 1e300},
            "sync_timeout takes a number of seconds above 0, at most 1e+09",
        ),
        ({"strategy": "random"}, "strategy takes 'dfs', 'round-robin' or 'shuffle'"),
        ({"depth_concurrency": []}, "depth_concurrency takes a non-empty list of ints >= 1"),
        ({"shuffle_seed": -1}, "shuffle_seed takes an int from 0 to 2**64 - 1"),
    ],
)
def test_every_option_the_hook_sets_is_checked_and_taken_by_sync(
    options: dict[str, Any], value: str | None
) -> None:
    plugin = hw.Plugin(
        name="tuned",
        version="1",
        tables=[serve_plugin.example_accounts],
        sync_options=lambda spec: options,
    )
    if value is not None:
        with pytest.raises(SpecError, match=re.escape(value)):
            plugin.sync_options_from()
        return
    checked = plugin.sync_options_from()
    assert checked == options
    with plugin.sync(**checked) as run:  # Plugin.sync takes every one of them
        assert [type(m).__name__ for m in run] == ["MigrateTable", "Insert"]


def test_a_wrong_sync_options_hook_is_a_plugin_error() -> None:
    def plugin(hook: Any) -> hw.Plugin:
        return hw.Plugin(
            name="hooked", version="1", tables=[serve_plugin.example_accounts], sync_options=hook
        )

    with pytest.raises(PluginError, match=r"returned 'tables', which is not an option it can set"):
        plugin(lambda spec: {"tables": ["x"]}).sync_options_from()
    with pytest.raises(PluginError, match="must return a mapping of sync options, got list"):
        plugin(lambda spec: [("concurrency", 1)]).sync_options_from()
    with pytest.raises(PluginError, match=r"sync_options\(spec\) failed: AttributeError"):
        plugin(lambda spec: {"concurrency": spec.concurrency}).sync_options_from()
    with pytest.raises(PluginError, match="sync_options must be callable"):
        plugin({"concurrency": 1})


@pytest.fixture
def backend() -> Iterator[tuple[plugin_pb2.Sync.BackendOptions, MemoryTableStore]]:
    store = MemoryTableStore()
    with PluginServer(DestinationServicer("memory", "0.1.0", store), "127.0.0.1:0") as running:
        yield (
            plugin_pb2.Sync.BackendOptions(table_name="cq_state", connection=running.address),
            store,
        )


def test_a_row_over_the_message_limit_fails_its_table_and_the_rest_is_sent(
    stub: Any,
    backend: tuple[plugin_pb2.Sync.BackendOptions, MemoryTableStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    options, store = backend
    limit = 256 * 1024
    monkeypatch.setattr("headwater.serve.servicer.MAX_RECORD_BYTES", limit)
    monkeypatch.setattr(serve_plugin, "BIG_BYTES", limit + 1)
    init(stub)
    with caplog.at_level(logging.INFO, logger="headwater"):
        responses = sync(
            stub, tables=["test_big", "example_accounts"], backend=options, withErrorMessages=True
        )
    synced = rows(responses)
    assert sorted(row["id"] for row in synced["test_big"]) == [0, 1, 2, 3]
    assert sorted(row["id"] for row in synced["test_big_parts"]) == [0, 1, 3]
    assert len(synced["example_accounts"]) == 1
    [(table, message)] = errors(responses)
    assert table == "test_big_parts"
    # The row's place in its batch depends on which parent's rows were batched first.
    assert re.match(
        rf"table 'test_big_parts': RowError: table 'test_big_parts', row \d+: expected a row "
        rf"that fits the {limit}-byte message limit, got a row of ",
        message,
    )
    assert "it cannot be sent to the CloudQuery CLI and was left out (_cq_id " in message
    # Logged and counted as the table's failure; the parent's cursor, which covers the
    # row that was not sent, is withheld, so the next sync fetches it again.
    assert any("expected a row that fits" in r.getMessage() for r in caplog.records)
    assert any(
        "table 'test_big': 1 state update(s) not saved" in r.getMessage() for r in caplog.records
    )
    finished = [r for r in caplog.records if r.getMessage() == "sync finished"]
    assert [r.errors for r in finished] == [1, 1]  # type: ignore[attr-defined]  # run, server
    assert store.rows("cq_state") == []
    # The same sync with the row under the limit stores the cursor.
    monkeypatch.setattr(serve_plugin, "BIG_BYTES", 10)
    again = sync(stub, tables=["test_big"], backend=options, withErrorMessages=True)
    assert errors(again) == [] and len(rows(again)["test_big_parts"]) == 4
    assert {r["key"]: r["value"] for r in store.rows("cq_state")} == {"test_big/main/cursor": "4"}


def test_a_row_over_64_mib_does_not_abort_the_sync(
    stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve_plugin, "BIG_BYTES", 64 * MiB + 1)
    init(stub)
    responses = sync(stub, tables=["test_big", "example_accounts"], withErrorMessages=True)
    assert [table for table, _ in errors(responses)] == ["test_big_parts"]
    assert sorted(row["id"] for row in rows(responses)["test_big_parts"]) == [0, 1, 3]
    assert len(rows(responses)["example_accounts"]) == 1
    assert max(len(r.insert.record) for r in responses if r.HasField("insert")) <= 64 * MiB


def test_more_syncs_than_the_bound_are_refused_and_cheap_calls_answer(gate: None) -> None:
    with PluginServer(SourceServicer(serve_plugin.plugin, max_syncs=2), "127.0.0.1:0") as server:
        stub = connect(server)
        init(stub)
        running = [stub.Sync(plugin_pb2.Sync.Request(tables=["test_slow"])) for _ in range(2)]
        # A first message means the sync holds its slot (and a worker).
        assert [next(call).WhichOneof("message") for call in running] == ["migrate_table"] * 2
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Sync(plugin_pb2.Sync.Request(tables=["test_slow"]), timeout=60))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert info.value.details() == (
                "2 syncs are running already, the most this server runs at once (headwater "
                "serve --max-syncs); retry when one has finished"
            )
        assert stub.GetName(plugin_pb2.GetName.Request(), timeout=30).name == "test-source"
        assert stub.GetVersion(plugin_pb2.GetVersion.Request(), timeout=30).version == "1.2.3"
        assert stub.GetSpecSchema(plugin_pb2.GetSpecSchema.Request(), timeout=30).json_schema
        tables = stub.GetTables(plugin_pb2.GetTables.Request(tables=["test_slow"]), timeout=30)
        assert len(tables.tables) == 1
        serve_plugin.SLOW_GATE.set()
        for call in running:
            assert len(rows(list(call))["test_slow"]) == 2
        # The slots are free again.
        assert len(rows(sync(stub, tables=["test_slow"]))["test_slow"]) == 2


def test_the_worker_pool_must_exceed_the_sync_bound() -> None:
    servicer = SourceServicer(serve_plugin.plugin, max_syncs=4)
    with pytest.raises(ServeError, match="max_workers=4 must exceed the servicer's max_syncs=4"):
        PluginServer(servicer, "127.0.0.1:0", max_workers=4)
    with pytest.raises(ValueError, match="max_syncs must be an int >= 1, not 0"):
        SourceServicer(serve_plugin.plugin, max_syncs=0)


def test_a_second_init_keeps_the_client_running_syncs_use(stub: Any, gate: None) -> None:
    init(stub)
    call = stub.Sync(plugin_pb2.Sync.Request(tables=["test_slow"], withErrorMessages=True))
    assert next(call).WhichOneof("message") == "migrate_table"  # the sync has its client
    init(stub, {**SPEC, "token": "rotated"})
    first, second = serve_plugin.CONNECTED
    assert not first.closed  # still in use
    serve_plugin.SLOW_GATE.set()
    responses = list(call)
    assert errors(responses) == []
    assert sorted(row["id"] for row in rows(responses)["test_slow"]) == [0, 1]
    assert first.closed and not second.closed  # released when its last sync ended
    # Close behaves the same: the running sync keeps the client until it ends.
    serve_plugin.SLOW_GATE.clear()
    call = stub.Sync(plugin_pb2.Sync.Request(tables=["test_slow"], withErrorMessages=True))
    assert next(call).WhichOneof("message") == "migrate_table"
    stub.Close(plugin_pb2.Close.Request())
    assert not second.closed
    serve_plugin.SLOW_GATE.set()
    assert errors(list(call)) == []
    assert second.closed


def test_test_connection_without_a_hook_does_not_claim_success() -> None:
    unchecked = hw.Plugin(
        name="unchecked",
        version="1",
        tables=[serve_plugin.example_accounts],
        spec=serve_plugin.Spec,
        connect=serve_plugin.Client,
    )
    with PluginServer(SourceServicer(unchecked), "127.0.0.1:0") as server:
        stub = connect(server)
        request = plugin_pb2.TestConnection.Request(spec=b'{"token": "wrong-token"}')
        with pytest.raises(grpc.RpcError) as info:
            stub.TestConnection(request)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert info.value.details() == (
            "plugin 'unchecked' has no test_connection hook: its spec is valid, but the "
            "connection was not tested"
        )
        answer = stub.TestConnection(plugin_pb2.TestConnection.Request(spec=b'{"token": 5}'))
        assert not answer.success and answer.failure_code == "INVALID_SPEC"
        assert "token" in answer.failure_description
