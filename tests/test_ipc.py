"""encode_ipc: schema-only streams and batches split under a message size limit."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

import headwater as hw
from headwater import types

TABLE = hw.Table(
    "ipc_things",
    [
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("name", pa.string()),
        hw.Column("tags", pa.list_(pa.string())),
        hw.Column("owner", types.uuid()),
        hw.Column("doc", types.json()),
        hw.Column("ip", types.inet()),
        hw.Column("mac", types.mac()),
    ],
)


def sample(n: int) -> pa.RecordBatch:
    rows = [
        {
            "id": i,
            "name": f"name-{i}" * (1 + i % 5),
            "tags": ["a", "b"][: i % 3],
            "owner": uuid.UUID(int=i),
            "doc": {"i": i},
            "ip": f"10.0.{i % 256}.1/24",
            "mac": "aa:bb:cc:dd:ee:ff",
        }
        for i in range(n)
    ]
    return hw.build_batch(TABLE, rows)


def decode(message: bytes) -> pa.Table:
    return pa.ipc.open_stream(message).read_all()


def test_schema_only_stream_keeps_metadata_and_extension_types() -> None:
    [message] = hw.encode_ipc(TABLE.arrow_schema)
    reader = pa.ipc.open_stream(message)
    assert reader.schema.equals(TABLE.arrow_schema, check_metadata=True)
    assert reader.read_all().num_rows == 0
    assert isinstance(reader.schema.field("owner").type, types.UUIDType)


def test_one_message_round_trips_exactly() -> None:
    batch = sample(100)
    [message] = hw.encode_ipc(batch)
    decoded = decode(message)
    assert decoded.schema.equals(batch.schema, check_metadata=True)
    assert decoded.to_batches()[0].equals(batch)


def test_batches_split_under_the_limit_in_order() -> None:
    batch = sample(2_000)
    limit = 16 * 1024
    messages = hw.encode_ipc(batch, max_message_bytes=limit)
    assert len(messages) > 4
    assert all(len(m) <= limit for m in messages)
    rebuilt = pa.concat_tables([decode(m) for m in messages]).combine_chunks()
    assert rebuilt.equals(pa.Table.from_batches([batch]))


def test_tables_and_streams_encode_every_batch() -> None:
    table = pa.Table.from_batches([sample(10), sample(20)])
    messages = hw.encode_ipc(table)
    assert [decode(m).num_rows for m in messages] == [10, 20]


def test_a_row_larger_than_the_limit_is_an_ipc_error() -> None:
    batch = sample(10)
    with pytest.raises(
        hw.IpcError, match=r"row 0 alone encodes to \d+ bytes, more than the 100-byte"
    ):
        hw.encode_ipc(batch, max_message_bytes=100)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        hw.encode_ipc(TABLE.arrow_schema, max_message_bytes=0)
    with pytest.raises(TypeError, match="must be an int"):
        hw.encode_ipc(TABLE.arrow_schema, max_message_bytes="1MB")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a pyarrow Schema"):
        hw.encode_ipc([1, 2, 3])
