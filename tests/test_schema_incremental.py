"""The table-level ``cq:extension:incremental`` in every schema headwater emits.

The official CloudQuery SDKs set it on the Arrow schema of each table (``"true"`` or
``"false"``); destinations read it to leave an incremental table's stale rows alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pyarrow as pa
import pytest
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

import headwater as hw
from headwater.errors import SchemaError
from headwater.serve import PluginServer
from headwater.serve.package import tables_json
from headwater.serve.servicer import SourceServicer
from sync_helpers import run_all

KEY = b"cq:extension:incremental"
ID = hw.Column("id", pa.int64(), primary_key=True)
CURSOR = hw.Column("updated_at", pa.int64(), incremental_key=True)


def incremental_flag(schema: pa.Schema) -> bytes:
    return schema.metadata[KEY]


@hw.table("by_cursor_column", columns=[ID, CURSOR])
def by_cursor_column(client: Any) -> Iterator[dict[str, int]]:
    yield {"id": 1, "updated_at": 10}


@by_cursor_column.child("plain_child", columns=[ID])
def plain_child(client: Any, row: dict[str, int]) -> Iterator[dict[str, int]]:
    yield {"id": row["id"]}


@hw.table("by_state", columns=[ID])
def by_state(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
    yield {"id": int(state.get("cursor", "7"))}


@hw.table("declared", columns=[ID], is_incremental=True)
def declared(client: Any) -> Iterator[dict[str, int]]:
    yield {"id": 1}


@hw.table("full_refresh", columns=[ID])
def full_refresh(client: Any) -> Iterator[dict[str, int]]:
    yield {"id": 1}


PLUGIN = hw.Plugin(
    name="incremental", version="1.0.0", tables=[by_cursor_column, by_state, declared, full_refresh]
)
EXPECTED = {
    "by_cursor_column": b"true",
    "plain_child": b"false",
    "by_state": b"true",
    "declared": b"true",
    "full_refresh": b"false",
}


def test_a_table_is_incremental_by_its_cursor_column_its_state_or_its_declaration() -> None:
    assert {t.name: t.is_incremental for t in PLUGIN.flat_tables()} == {
        name: flag == b"true" for name, flag in EXPECTED.items()
    }
    assert {t.name: incremental_flag(t.arrow_schema) for t in PLUGIN.flat_tables()} == EXPECTED
    # Declared, it wins over what the columns say, either way.
    assert not hw.Table("t", [ID, CURSOR], is_incremental=False).is_incremental
    assert incremental_flag(hw.Table("t", [ID, CURSOR], is_incremental=False).arrow_schema) == (
        b"false"
    )
    child = by_cursor_column.child("declared_child", columns=[ID], is_incremental=True)(
        lambda client, row: []
    )
    try:
        assert incremental_flag(child.arrow_schema) == b"true"
    finally:
        by_cursor_column.children.remove(child)


def test_is_incremental_must_be_a_bool() -> None:
    with pytest.raises(SchemaError, match=r"table 't': is_incremental must be a bool.*'yes'"):
        hw.Table("t", [ID], is_incremental="yes")  # type: ignore[arg-type]


def test_reading_a_schema_back_keeps_the_flag() -> None:
    for table in PLUGIN.flat_tables():
        again = hw.Table.from_arrow_schema(table.arrow_schema)
        assert again.is_incremental == table.is_incremental
        assert again.arrow_schema.equals(table.arrow_schema, check_metadata=True)
    # Declared false beside a cursor column: read back as declared.
    schema = hw.Table("t", [ID, CURSOR], is_incremental=False).arrow_schema
    assert not hw.Table.from_arrow_schema(schema).is_incremental


def test_a_schema_without_the_flag_is_read_from_its_columns() -> None:
    # As a schema of an SDK that leaves the key out (the Go SDK writes it only when true).
    schema = hw.Table("t", [ID, CURSOR]).arrow_schema
    stripped = schema.with_metadata({k: v for k, v in schema.metadata.items() if k != KEY})
    assert hw.Table.from_arrow_schema(stripped).is_incremental
    plain = hw.Table("u", [ID]).arrow_schema
    stripped = plain.with_metadata({k: v for k, v in plain.metadata.items() if k != KEY})
    assert not hw.Table.from_arrow_schema(stripped).is_incremental


def test_sync_messages_and_batches_carry_the_flag() -> None:
    messages, tables, errors = run_all(PLUGIN.sync())
    assert errors == []
    migrated = {m.table.name: m.schema for m in messages if isinstance(m, hw.MigrateTable)}
    assert {name: incremental_flag(schema) for name, schema in migrated.items()} == EXPECTED
    inserted = {m.table_name: m.batch.schema for m in messages if isinstance(m, hw.Insert)}
    assert {name: incremental_flag(schema) for name, schema in inserted.items()} == EXPECTED
    assert {name: table.num_rows for name, table in tables.items()} == dict.fromkeys(EXPECTED, 1)


def test_build_batch_carries_the_flag() -> None:
    batch = hw.build_batch(by_cursor_column, [{"id": 1, "updated_at": 2}])
    assert incremental_flag(batch.schema) == b"true"


def test_tables_json_says_the_same() -> None:
    listed = {t["name"]: t["is_incremental"] for t in tables_json(PLUGIN)}
    assert listed == {name: flag == b"true" for name, flag in EXPECTED.items()}


@pytest.fixture
def stub() -> Iterator[plugin_pb2_grpc.PluginStub]:
    with PluginServer(SourceServicer(PLUGIN), "127.0.0.1:0") as server:
        channel = grpc.insecure_channel(server.address)
        yield plugin_pb2_grpc.PluginStub(channel)
        channel.close()


def test_get_tables_and_migrate_table_over_grpc_carry_the_flag(stub: Any) -> None:
    stub.Init(plugin_pb2.Init.Request(spec=json.dumps({}).encode()))
    response = stub.GetTables(plugin_pb2.GetTables.Request(tables=["*"]))
    schemas = [pa.ipc.open_stream(raw).schema for raw in response.tables]
    assert {s.metadata[b"cq:table_name"].decode(): incremental_flag(s) for s in schemas} == EXPECTED
    responses = list(stub.Sync(plugin_pb2.Sync.Request(tables=["*"]), timeout=60))
    migrated = [
        pa.ipc.open_stream(r.migrate_table.table).schema
        for r in responses
        if r.HasField("migrate_table")
    ]
    assert {
        s.metadata[b"cq:table_name"].decode(): incremental_flag(s) for s in migrated
    } == EXPECTED
