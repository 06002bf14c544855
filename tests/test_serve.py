"""CloudQuery plugin protocol v3 conformance: a real gRPC server and client on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest
from cloudquery.discovery_v1 import discovery_pb2, discovery_pb2_grpc
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

import headwater as hw
import serve_plugin
from headwater.serve import PluginServer, ServeError
from headwater.serve.destination import DestinationServicer, MemoryTableStore
from headwater.serve.servicer import SourceServicer
from sync_helpers import thread_count

SPEC = {"token": "s3cr3t-token", "accounts": ["acct-1", "acct-2"]}
MiB = 1024 * 1024


@pytest.fixture
def server() -> Iterator[PluginServer]:
    with PluginServer(SourceServicer(serve_plugin.plugin), "127.0.0.1:0") as running:
        yield running


@pytest.fixture
def stub(server: PluginServer) -> Iterator[plugin_pb2_grpc.PluginStub]:
    channel = grpc.insecure_channel(
        server.address,
        options=[("grpc.max_receive_message_length", 100 * MiB)],
    )
    yield plugin_pb2_grpc.PluginStub(channel)
    channel.close()


def init(stub: plugin_pb2_grpc.PluginStub, spec: dict[str, Any] = SPEC, **kwargs: Any) -> None:
    stub.Init(plugin_pb2.Init.Request(spec=json.dumps(spec).encode(), **kwargs))


def sync(stub: plugin_pb2_grpc.PluginStub, **kwargs: Any) -> list[plugin_pb2.Sync.Response]:
    return list(stub.Sync(plugin_pb2.Sync.Request(**kwargs), timeout=60))


def decode(responses: list[plugin_pb2.Sync.Response]) -> dict[str, pa.Table]:
    """Rows per table, every record decoded by pyarrow."""
    batches: dict[str, list[pa.RecordBatch]] = {}
    for response in responses:
        if response.HasField("insert"):
            with pa.ipc.open_stream(response.insert.record) as reader:
                for batch in reader:
                    name = batch.schema.metadata[b"cq:table_name"].decode()
                    batches.setdefault(name, []).append(batch)
    return {name: pa.Table.from_batches(parts) for name, parts in batches.items()}


def test_discovery_name_version_and_spec_schema(server: PluginServer, stub: Any) -> None:
    channel = grpc.insecure_channel(server.address)
    versions = discovery_pb2_grpc.DiscoveryStub(channel).GetVersions(
        discovery_pb2.GetVersions.Request()
    )
    assert list(versions.versions) == [3]
    channel.close()
    assert stub.GetName(plugin_pb2.GetName.Request()).name == "test-source"
    assert stub.GetVersion(plugin_pb2.GetVersion.Request()).version == "1.2.3"
    schema = json.loads(stub.GetSpecSchema(plugin_pb2.GetSpecSchema.Request()).json_schema)
    assert schema["required"] == ["token"]
    assert schema["properties"]["token"]["format"] == "password"


def test_init_rejects_a_bad_spec_listing_every_error_without_secrets(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        init(stub, {"token": 123456789, "accounts": "one", "typo": "s3cr3t-token"})
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details()
    assert "3 errors" in details
    assert "token" in details and "accounts" in details and "typo: unknown field" in details
    assert "123456789" not in details and "s3cr3t-token" not in details
    with pytest.raises(grpc.RpcError) as info:
        stub.Init(plugin_pb2.Init.Request(spec=b"{not json"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid JSON" in info.value.details()


def test_get_tables_flattened_with_cloudquery_metadata(stub: Any) -> None:
    init(stub, no_connection=True)  # GetTables needs no connection
    response = stub.GetTables(plugin_pb2.GetTables.Request(tables=["*"]))
    schemas = [pa.ipc.open_stream(raw).schema for raw in response.tables]
    names = [s.metadata[b"cq:table_name"].decode() for s in schemas]
    assert names == [
        "example_accounts",
        "test_repos",
        "test_issues",
        "test_failing",
        "test_events",
        "test_endless",
        "test_wide",
        "test_slow",
        "test_pair",
        "test_big",
        "test_big_parts",
    ]
    repos, issues = schemas[1], schemas[2]
    assert repos.metadata[b"cq:table_title"] == b"Test repositories"
    assert issues.metadata[b"cq:table_depends_on"] == b"test_repos"
    assert repos.names[:2] == ["_cq_id", "_cq_parent_id"]
    cq_id = repos.field("_cq_id")
    assert cq_id.type == hw.types.uuid() and not cq_id.nullable
    assert cq_id.metadata[b"cq:extension:unique"] == b"true"
    assert repos.field("id").metadata[b"cq:extension:primary_key"] == b"true"
    assert repos.field("settings").type == hw.types.json()
    # The extension types are CloudQuery's, byte for byte.
    owner = repos.field("owner").type
    assert owner.extension_name == "uuid" and owner.__arrow_ext_serialize__() == b"uuid-serialized"
    only = stub.GetTables(
        plugin_pb2.GetTables.Request(tables=["test_repos"], skip_dependent_tables=True)
    )
    assert len(only.tables) == 1
    with pytest.raises(grpc.RpcError) as info:
        stub.GetTables(plugin_pb2.GetTables.Request(tables=["nope_*"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'nope_*' matches no table" in info.value.details()


def test_sync_streams_migrations_then_inserts(stub: Any) -> None:
    init(stub)
    responses = sync(stub, tables=["test_repos", "example_accounts"])
    kinds = [r.WhichOneof("message") for r in responses]
    first_insert = kinds.index("insert")
    assert kinds[:first_insert] == ["migrate_table"] * 3
    assert set(kinds[first_insert:]) == {"insert"}
    tables = decode(responses)
    assert tables["test_repos"].num_rows == 10  # 5 repos for each of 2 accounts
    assert tables["test_issues"].num_rows == 30
    # The DESIGN.md vector: account_id="acct-123", id=42.
    assert tables["example_accounts"]["_cq_id"].to_pylist() == [
        uuid.UUID("8efb8158-fd03-5c3b-8e04-4df9c21be81d")
    ]
    repos = tables["test_repos"].to_pylist()
    assert {r["owner"] for r in repos} == {uuid.UUID(int=i + 1) for i in range(5)}
    assert all(isinstance(r["settings"], dict) for r in repos)
    ids = {(r["account"], r["id"]): r["_cq_id"] for r in repos}
    for issue in tables["test_issues"].to_pylist():
        assert issue["_cq_parent_id"] == ids[(issue["account"], issue["repo_id"])]


def test_sync_errors_are_sent_only_when_asked(stub: Any) -> None:
    init(stub)
    quiet = sync(stub, tables=["test_failing", "test_repos"])
    assert not any(r.HasField("error") for r in quiet)
    assert decode(quiet)["test_repos"].num_rows == 10  # the rest of the sync went on
    loud = sync(stub, tables=["test_failing", "test_repos"], withErrorMessages=True)
    errors = [r.error for r in loud if r.HasField("error")]
    assert [e.table_name for e in errors] == ["test_failing", "test_failing"]  # per account
    assert "RuntimeError: the test API is down" in errors[0].error
    assert decode(loud)["test_failing"].num_rows == 2


def test_sync_preconditions_and_source_only_rpcs(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sync(stub)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    init(stub, no_connection=True)
    with pytest.raises(grpc.RpcError) as info:
        sync(stub)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no_connection" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Read(plugin_pb2.Read.Request()))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as info:
        stub.Write(iter([plugin_pb2.Write.Request()]))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    init(stub)
    with pytest.raises(grpc.RpcError) as info:
        sync(stub, tables=["missing"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stub.Close(plugin_pb2.Close.Request())
    with pytest.raises(grpc.RpcError) as info:
        sync(stub)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("spec", "success", "code", "text"),
    [
        (SPEC, True, "", ""),
        ({"token": 5}, False, "INVALID_SPEC", "token"),
        ({**SPEC, "fail_test": "credentials"}, False, "INVALID_CREDENTIALS", "refused"),
        ({**SPEC, "fail_test": "crash"}, False, "UNKNOWN", "ValueError: unexpected"),
        ({**SPEC, "fail_test": "leak"}, False, "UNKNOWN", "ValueError: token *** was refused"),
    ],
)
def test_test_connection(
    stub: Any, spec: dict[str, Any], success: bool, code: str, text: str
) -> None:
    response = stub.TestConnection(
        plugin_pb2.TestConnection.Request(spec=json.dumps(spec).encode())
    )
    assert response.success is success
    assert response.failure_code == code
    assert text in response.failure_description
    assert "s3cr3t" not in response.failure_description


def test_shards_cover_the_sync_exactly_once(stub: Any) -> None:
    spec = {**SPEC, "accounts": [f"acct-{i}" for i in range(7)]}
    init(stub, spec)
    full = decode(sync(stub, tables=["test_repos"], skip_dependent_tables=True))["test_repos"]
    everything = sorted(full["_cq_id"].to_pylist())
    for total in (1, 2, 3, 5, 20):
        parts = []
        for num in range(1, total + 1):
            tables = decode(
                sync(
                    stub,
                    tables=["test_repos"],
                    skip_dependent_tables=True,
                    shard=plugin_pb2.Sync.Request.Shard(num=num, total=total),
                )
            )
            parts += tables["test_repos"]["_cq_id"].to_pylist() if tables else []
        assert sorted(parts) == everything, f"{total} shards"
    with pytest.raises(grpc.RpcError) as info:
        sync(stub, shard=plugin_pb2.Sync.Request.Shard(num=3, total=2))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "shard 3 of 2" in info.value.details()


def test_inserts_are_split_under_the_message_limit(
    stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("headwater.serve.servicer.MAX_RECORD_BYTES", 256 * 1024)
    init(stub, {**SPEC, "accounts": ["acct-1"]})
    responses = sync(stub, tables=["test_wide"])
    inserts = [r.insert.record for r in responses if r.HasField("insert")]
    assert len(inserts) > 10
    assert max(len(record) for record in inserts) <= 256 * 1024
    assert sorted(decode(responses)["test_wide"]["id"].to_pylist()) == list(range(2000))


def test_a_client_that_goes_away_stops_the_sync(stub: Any) -> None:
    before = thread_count()
    serve_plugin.ENDLESS_CLOSED.clear()
    init(stub, {**SPEC, "accounts": ["acct-1"]})
    call = stub.Sync(plugin_pb2.Sync.Request(tables=["test_endless"]))
    received = 0
    for response in call:
        received += response.HasField("insert")
        if received == 2:
            break
    call.cancel()
    assert serve_plugin.ENDLESS_CLOSED.wait(timeout=30), "the resolver was not closed"
    deadline = time.monotonic() + 30
    while thread_count() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thread_count() <= before + 2  # gRPC may keep a couple of its own threads


def test_a_unix_socket_server(tmp_path: Path) -> None:
    path = tmp_path / "plugin.sock"
    with PluginServer(SourceServicer(serve_plugin.plugin), str(path), "unix") as running:
        assert running.address == f"unix:{path.resolve()}"
        channel = grpc.insecure_channel(running.address)
        stub = plugin_pb2_grpc.PluginStub(channel)
        init(stub)
        assert decode(sync(stub, tables=["example_accounts"]))["example_accounts"].num_rows == 1
        channel.close()
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(ServeError, match="is not a unix socket"):
        PluginServer(SourceServicer(serve_plugin.plugin), str(path), "unix")


def test_an_address_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on '127.0.0.1:{port}'"):
            PluginServer(SourceServicer(serve_plugin.plugin), f"127.0.0.1:{port}")


@pytest.fixture
def backend() -> Iterator[tuple[str, MemoryTableStore]]:
    store = MemoryTableStore()
    servicer = DestinationServicer("memory", "0.1.0", store)
    with PluginServer(servicer, "127.0.0.1:0") as running:
        yield running.address, store


def test_state_round_trip_through_a_backend_plugin(
    stub: Any, backend: tuple[str, MemoryTableStore]
) -> None:
    address, store = backend
    options = plugin_pb2.Sync.BackendOptions(table_name="cq_state_test", connection=address)
    init(stub)
    first = decode(sync(stub, tables=["test_events"], backend=options))
    assert sorted(first["test_events"]["id"].to_pylist()) == sorted(list(range(10)) * 2)
    state = {row["key"]: row["value"] for row in store.rows("cq_state_test")}
    assert state == {
        "test_events/acct-1/events:acct-1": "9",
        "test_events/acct-2/events:acct-2": "9",
    }
    # The next sync starts from the stored cursors.
    second = decode(sync(stub, tables=["test_events"], backend=options))
    assert sorted(second["test_events"]["id"].to_pylist()) == sorted(list(range(10, 20)) * 2)
    state = {row["key"]: row["value"] for row in store.rows("cq_state_test")}
    assert state == {
        "test_events/acct-1/events:acct-1": "19",
        "test_events/acct-2/events:acct-2": "19",
    }


def test_a_backend_table_named_like_a_plugin_table_is_refused(
    stub: Any, backend: tuple[str, MemoryTableStore]
) -> None:
    address, store = backend
    options = plugin_pb2.Sync.BackendOptions(table_name="test_events", connection=address)
    init(stub)
    with pytest.raises(grpc.RpcError) as info:
        sync(stub, tables=["test_events"], backend=options)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "the state backend table 'test_events' is also a table of plugin 'test-source': its state "
        "would be written among that table's rows; give the backend another table_name"
    )
    assert store.rows("test_events") == []  # the backend was never migrated nor written


def test_an_unreachable_or_old_backend_is_reported(stub: Any) -> None:
    init(stub)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    options = plugin_pb2.Sync.BackendOptions(table_name="s", connection=f"127.0.0.1:{port}")
    with pytest.raises(grpc.RpcError) as info:
        sync(stub, tables=["test_events"], backend=options)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"state backend at '127.0.0.1:{port}': GetVersions failed" in info.value.details()

    class OldDiscovery(discovery_pb2_grpc.DiscoveryServicer):  # type: ignore[misc]
        def GetVersions(self, request: Any, context: Any) -> Any:
            return discovery_pb2.GetVersions.Response(versions=[2])

    old = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
    discovery_pb2_grpc.add_DiscoveryServicer_to_server(OldDiscovery(), old)
    old_port = old.add_insecure_port("127.0.0.1:0")
    old.start()
    try:
        options = plugin_pb2.Sync.BackendOptions(table_name="s", connection=f"127.0.0.1:{old_port}")
        with pytest.raises(grpc.RpcError) as info:
            sync(stub, tables=["test_events"], backend=options)
        assert "speaks protocol versions [2]; headwater needs 3" in info.value.details()
    finally:
        old.stop(0).wait()


def test_concurrent_syncs_on_one_server(stub: Any) -> None:
    init(stub)
    results: list[int] = []

    def one() -> None:
        results.append(decode(sync(stub, tables=["test_repos"]))["test_repos"].num_rows)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [10, 10, 10, 10]
