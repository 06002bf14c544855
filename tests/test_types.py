from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater import types
from headwater.errors import SchemaError

# (factory, name, storage type, serialized metadata, a storage value, its as_py())
CASES = [
    (
        types.uuid,
        "uuid",
        pa.binary(16),
        b"uuid-serialized",
        uuid.UUID("8efb8158-fd03-5c3b-8e04-4df9c21be81d").bytes,
        uuid.UUID("8efb8158-fd03-5c3b-8e04-4df9c21be81d"),
    ),
    (
        types.json,
        "json",
        pa.binary(),
        b"json-serialized",
        b'{"a": [1, 2.5, null, "x"], "b": {"c": true}}',
        {"a": [1, 2.5, None, "x"], "b": {"c": True}},
    ),
    (
        types.inet,
        "inet",
        pa.binary(),
        b"inet-serialized",
        b"192.0.2.1/24",
        ipaddress.ip_interface("192.0.2.1/24"),
    ),
    (
        types.mac,
        "mac",
        pa.binary(),
        b"mac-serialized",
        bytes.fromhex("0a1b2c3d4e5f"),
        "0a:1b:2c:3d:4e:5f",
    ),
]
IDS = [case[1] for case in CASES]


def ext_array(data_type: pa.ExtensionType, values: list[bytes | None]) -> pa.ExtensionArray:
    return pa.ExtensionArray.from_storage(data_type, pa.array(values, data_type.storage_type))


def ipc_round_trip(batch: pa.RecordBatch) -> pa.Table:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    with pa.ipc.open_stream(sink.getvalue()) as reader:
        return reader.read_all()


@pytest.fixture
def unregistered() -> Iterator[None]:
    """Read IPC data as a reader that does not know headwater's types (e.g. another language)."""
    for case in CASES:
        pa.unregister_extension_type(case[1])
    try:
        yield
    finally:
        for case in CASES:
            pa.register_extension_type(case[0]())


@pytest.mark.parametrize(("factory", "name", "storage", "serialized", "raw", "py"), CASES, ids=IDS)
def test_type_definition(factory, name, storage, serialized, raw, py) -> None:
    data_type = factory()
    assert data_type.extension_name == name
    assert data_type.storage_type == storage
    assert data_type.__arrow_ext_serialize__() == serialized
    assert types.extension_name(data_type) == name


@pytest.mark.parametrize("factory", [case[0] for case in CASES], ids=IDS)
def test_factories_return_one_equal_hashable_instance(factory) -> None:
    assert factory() is factory()
    assert factory() == type(factory())()
    assert hash(factory()) == hash(type(factory())())
    assert len({factory(), type(factory())()}) == 1


def test_types_are_distinct() -> None:
    assert types.json() != types.inet()
    assert types.inet() != types.mac()
    assert len({types.uuid(), types.json(), types.inet(), types.mac()}) == 4


@pytest.mark.parametrize(("factory", "name", "storage", "serialized", "raw", "py"), CASES, ids=IDS)
def test_ipc_round_trip_keeps_type_and_values(factory, name, storage, serialized, raw, py) -> None:
    array = ext_array(factory(), [raw, None])
    batch = pa.record_batch([array], names=["value"])
    table = ipc_round_trip(batch)
    assert table.schema.field("value").type == factory()
    assert table.column("value").to_pylist() == [py, None]
    assert table.column("value").chunk(0).storage.to_pylist() == [raw, None]


@pytest.mark.parametrize(("factory", "name", "storage", "serialized", "raw", "py"), CASES, ids=IDS)
def test_serialized_field_metadata_is_cloudquerys(
    factory, name, storage, serialized, raw, py, unregistered
) -> None:
    buffer = pa.schema([pa.field("value", factory())]).serialize()
    field = pa.ipc.read_schema(buffer).field("value")
    assert field.type == storage
    assert field.metadata == {
        b"ARROW:extension:name": name.encode(),
        b"ARROW:extension:metadata": serialized,
    }


@pytest.mark.parametrize(("factory", "name", "storage", "serialized", "raw", "py"), CASES, ids=IDS)
def test_serialized_values_are_the_storage_bytes(
    factory, name, storage, serialized, raw, py
) -> None:
    sink = pa.BufferOutputStream()
    batch = pa.record_batch([ext_array(factory(), [raw])], names=["value"])
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    pa.unregister_extension_type(name)
    try:
        table = pa.ipc.open_stream(sink.getvalue()).read_all()
    finally:
        pa.register_extension_type(factory())
    assert table.column("value").to_pylist() == [raw]


def test_deserialize_rejects_wrong_storage_type() -> None:
    field = pa.field(
        "id",
        pa.binary(),
        metadata={"ARROW:extension:name": "uuid", "ARROW:extension:metadata": "uuid-serialized"},
    )
    buffer = pa.schema([field]).serialize()
    with pytest.raises(SchemaError, match=r"'uuid' must be stored as fixed_size_binary\[16\]"):
        pa.ipc.read_schema(buffer)


def test_pyarrow_canonical_types_are_not_ours() -> None:
    assert types.extension_name(pa.uuid()) == "arrow.uuid"
    assert pa.uuid() != types.uuid()
    assert types.extension_name(pa.json_()) == "arrow.json"


def test_extension_name_of_a_plain_type_is_none() -> None:
    assert types.extension_name(pa.int64()) is None
    assert types.extension_name(pa.binary(16)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"192.0.2.1/24", ipaddress.IPv4Interface("192.0.2.1/24")),
        (b"192.0.2.1", ipaddress.IPv4Interface("192.0.2.1/32")),
        (b"2001:db8::1/128", ipaddress.IPv6Interface("2001:db8::1/128")),
        (b"2001:db8::/32", ipaddress.IPv6Interface("2001:db8::/32")),
    ],
)
def test_inet_as_py(text: bytes, expected: object) -> None:
    assert ext_array(types.inet(), [text])[0].as_py() == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (bytes.fromhex("AABBCCDDEEFF"), "aa:bb:cc:dd:ee:ff"),
        (bytes.fromhex("0001020304050607"), "00:01:02:03:04:05:06:07"),
        (bytes(range(20)), ":".join(f"{i:02x}" for i in range(20))),
    ],
    ids=["eui48", "eui64", "infiniband"],
)
def test_mac_as_py(raw: bytes, expected: str) -> None:
    assert ext_array(types.mac(), [raw])[0].as_py() == expected


@pytest.mark.parametrize("document", [b"null", b"1", b'"text"', b"[1, 2]", b'{"a": {}}'])
def test_json_as_py(document: bytes) -> None:
    assert ext_array(types.json(), [document])[0].as_py() == json.loads(document)


@pytest.mark.parametrize("factory", [case[0] for case in CASES], ids=IDS)
def test_null_scalar_as_py_is_none(factory) -> None:
    scalar = ext_array(factory(), [None])[0]
    assert not scalar.is_valid
    assert scalar.as_py() is None


def test_scalar_classes() -> None:
    assert isinstance(ext_array(types.uuid(), [bytes(16)])[0], types.UUIDScalar)
    assert isinstance(ext_array(types.json(), [b"1"])[0], types.JSONScalar)
    assert isinstance(ext_array(types.inet(), [b"::1"])[0], types.InetScalar)
    assert isinstance(ext_array(types.mac(), [bytes(6)])[0], types.MACScalar)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(values=st.lists(st.uuids() | st.none()))
def test_uuid_values_survive_ipc(values: list[uuid.UUID | None]) -> None:
    array = ext_array(types.uuid(), [v.bytes if v is not None else None for v in values])
    table = ipc_round_trip(pa.record_batch([array], names=["id"]))
    assert table.column("id").to_pylist() == values


@given(values=st.lists(json_values))
def test_json_values_survive_ipc(values: list[object]) -> None:
    array = ext_array(types.json(), [json.dumps(v).encode() for v in values])
    table = ipc_round_trip(pa.record_batch([array], names=["doc"]))
    assert table.column("doc").to_pylist() == values


@given(values=st.lists(st.ip_addresses().map(ipaddress.ip_interface)))
def test_inet_values_survive_ipc(values: list[ipaddress.IPv4Interface]) -> None:
    array = ext_array(types.inet(), [v.with_prefixlen.encode() for v in values])
    table = ipc_round_trip(pa.record_batch([array], names=["addr"]))
    assert table.column("addr").to_pylist() == values


def test_module_reload_reregisters() -> None:
    script = """
import importlib
import pyarrow as pa
from headwater import types
importlib.reload(types)
importlib.reload(types)
schema = pa.ipc.read_schema(pa.schema([pa.field("id", types.uuid())]).serialize())
assert type(schema.field("id").type) is types.UUIDType, schema
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
