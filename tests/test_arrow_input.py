"""build_batch from Arrow data: pyarrow, DuckDB and any `__arrow_c_stream__` producer.

Columns are matched by name, kept zero-copy when the type is already right, and cast only
where the cast is exact; pyarrow's own casts are the reference for the values.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest

import headwater as hw
from headwater import types


def single(column_type: pa.DataType, *, not_null: bool = False) -> hw.Table:
    return hw.Table("things", [hw.Column("v", column_type, not_null=not_null)])


def build_single(column_type: pa.DataType, array: pa.Array, **flags: Any) -> pa.RecordBatch:
    table = single(column_type, **flags)
    batch = hw.build_batch(table, pa.record_batch({"v": array}))
    assert batch.schema.equals(table.arrow_schema, check_metadata=True)
    return batch


def data_addresses(array: pa.Array) -> list[int | None]:
    return [buffer.address if buffer is not None else None for buffer in array.buffers()]


ITEMS = hw.Table(
    "items",
    [
        hw.Column("id", pa.int64(), not_null=True),
        hw.Column("name", pa.string()),
        hw.Column("seen_at", pa.timestamp("us", tz="UTC")),
    ],
)

ITEMS_INPUT = pa.record_batch(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "name": pa.array(["a", "bb", None], pa.string()),
        "seen_at": pa.array([0, 1_000_000, None], pa.timestamp("us", tz="UTC")),
    }
)


def assert_items(batch: pa.RecordBatch, expected: pa.RecordBatch = ITEMS_INPUT) -> None:
    assert batch.schema.equals(ITEMS.arrow_schema, check_metadata=True)
    assert batch.num_rows == expected.num_rows
    for name in ("id", "name", "seen_at"):
        assert batch.column(name).equals(expected.column(name)), name


# --- sources ----------------------------------------------------------------------------------


def test_record_batch_columns_of_the_right_type_are_zero_copy() -> None:
    batch = hw.build_batch(ITEMS, ITEMS_INPUT)
    assert_items(batch)
    # The same validity, offsets and data buffers: the arrays were handed over, not copied.
    for name in ("id", "name"):
        assert data_addresses(batch.column(name)) == data_addresses(ITEMS_INPUT.column(name))
    assert batch.column("id").buffers()[1].address == ITEMS_INPUT.column("id").buffers()[1].address
    name_data = batch.column("name").buffers()[2]
    assert name_data.address == ITEMS_INPUT.column("name").buffers()[2].address


def test_multi_chunk_table_is_concatenated_in_order() -> None:
    second = pa.record_batch(
        {
            "id": pa.array([4, 5], pa.int64()),
            "name": pa.array(["d", None]),
            "seen_at": pa.array([None, 5], pa.timestamp("us", tz="UTC")),
        }
    )
    source = pa.Table.from_batches([ITEMS_INPUT, second, ITEMS_INPUT.slice(0, 0)])
    assert source.column("id").num_chunks == 3
    batch = hw.build_batch(ITEMS, source)
    assert_items(
        batch, pa.Table.from_batches([ITEMS_INPUT, second]).combine_chunks().to_batches()[0]
    )


def test_record_batch_reader_is_drained() -> None:
    reader = pa.RecordBatchReader.from_batches(
        ITEMS_INPUT.schema, [ITEMS_INPUT.slice(0, 1), ITEMS_INPUT.slice(1, 2)]
    )
    batch = hw.build_batch(ITEMS, reader)
    assert_items(batch)


def test_empty_table_and_empty_reader_give_empty_batches() -> None:
    for source in (
        pa.Table.from_batches([], schema=ITEMS_INPUT.schema),
        pa.RecordBatchReader.from_batches(ITEMS_INPUT.schema, []),
        ITEMS_INPUT.slice(0, 0),
    ):
        batch = hw.build_batch(ITEMS, source)
        assert batch.num_rows == 0
        assert batch.schema.equals(ITEMS.arrow_schema, check_metadata=True)


def test_duckdb_result() -> None:
    result = duckdb.sql(
        """
        select * from (values
            (1::bigint, 'a', timestamptz '1970-01-01 00:00:00+00'),
            (2::bigint, 'bb', timestamptz '1970-01-01 00:00:01+00'),
            (3::bigint, null, null)
        ) as t(id, name, seen_at)
        order by id
        """
    ).arrow()
    batch = hw.build_batch(ITEMS, result)
    assert_items(batch)


def test_duckdb_narrower_types_are_widened() -> None:
    table = hw.Table(
        "widened",
        [
            hw.Column("small", pa.int64()),
            hw.Column("day", pa.date64()),
            hw.Column("price", pa.decimal128(20, 4)),
        ],
    )
    result = duckdb.sql(
        "select 7::integer as small, date '2024-02-29' as day, 12.5::decimal(9, 2) as price"
    ).arrow()
    batch = hw.build_batch(table, result)
    assert batch.schema.equals(table.arrow_schema, check_metadata=True)
    assert batch.select(["small", "day", "price"]).to_pylist() == [
        {"small": 7, "day": dt.date(2024, 2, 29), "price": decimal.Decimal("12.5000")}
    ]


class StreamOnly:
    """Implements nothing but the Arrow PyCapsule stream protocol."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._table.__arrow_c_stream__(requested_schema)


def test_any_arrow_c_stream_producer() -> None:
    source = StreamOnly(pa.Table.from_batches([ITEMS_INPUT.slice(0, 2), ITEMS_INPUT.slice(2)]))
    assert not hasattr(source, "__arrow_c_array__")
    batch = hw.build_batch(ITEMS, source)
    assert_items(batch)


# --- exact casts ------------------------------------------------------------------------------

EXACT_CASTS = [
    (pa.array([1, -(2**31), None], pa.int32()), pa.int64()),
    (pa.array([0, 255], pa.uint8()), pa.int16()),
    (pa.array([2**32 - 1], pa.uint32()), pa.uint64()),
    (pa.array([-5, 7], pa.int16()), pa.float32()),
    (pa.array([2**31 - 1], pa.int32()), pa.float64()),
    (pa.array([1.5, None], pa.float32()), pa.float64()),
    (pa.array([0, 1_700_000_000, None], pa.timestamp("s")), pa.timestamp("us")),
    (pa.array([1_700_000_000], pa.timestamp("ms", tz="UTC")), pa.timestamp("ns", tz="UTC")),
    (pa.array([1_700_000_000], pa.timestamp("s", tz="Asia/Tokyo")), pa.timestamp("us")),
    (pa.array([1_700_000_000], pa.timestamp("s", tz="Asia/Tokyo")), pa.timestamp("us", tz="UTC")),
    (pa.array([0, 1_700_000_000], pa.timestamp("s")), pa.timestamp("us", tz="UTC")),
    (pa.array([0, 1_700_000_000], pa.timestamp("s")), pa.timestamp("us", tz="Asia/Tokyo")),
    (pa.array([3_600], pa.duration("s")), pa.duration("ns")),
    (pa.array([dt.time(1, 2, 3)], pa.time32("s")), pa.time64("us")),
    (pa.array([dt.time(1, 2, 3, 4000)], pa.time32("ms")), pa.time64("ns")),
    (pa.array([dt.date(1969, 12, 31), None], pa.date32()), pa.date64()),
    (pa.array(["a", "héllo", None], pa.string()), pa.large_string()),
    (pa.array(["a", None], pa.large_string()), pa.string()),
    (pa.array(["a", "a longer string than twelve bytes", None], pa.string_view()), pa.string()),
    (pa.array(["x", "y", "x", None]).dictionary_encode(), pa.string()),
    (pa.array([b"\x00\xff"], pa.binary()), pa.large_binary()),
    (pa.array([b"abc"], pa.binary(3)), pa.binary()),
    (pa.array([decimal.Decimal("-1.25"), None], pa.decimal128(5, 2)), pa.decimal128(12, 4)),
    (pa.array([-12_345], pa.int32()), pa.decimal128(10, 0)),
    (pa.array([[1, None], None, []], pa.list_(pa.int32())), pa.large_list(pa.int64())),
    (pa.array([[1, 2]], pa.list_(pa.int32(), 2)), pa.list_(pa.int64())),
    (
        pa.array([{"a": 1, "b": "x"}, None], pa.struct([("a", pa.int8()), ("b", pa.string())])),
        pa.struct([("a", pa.int64()), ("b", pa.large_string())]),
    ),
    (
        pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int32())),
        pa.map_(pa.string(), pa.int64()),
    ),
]


@pytest.mark.parametrize(
    ("array", "column_type"),
    EXACT_CASTS,
    ids=[f"{array.type}->{column_type}" for array, column_type in EXACT_CASTS],
)
def test_exact_casts_match_pyarrow(array: pa.Array, column_type: pa.DataType) -> None:
    batch = build_single(column_type, array)
    expected = array.cast(column_type)
    assert batch.column("v").type == column_type
    assert batch.column("v").equals(expected), (batch.column("v"), expected)


def test_extension_columns_pass_through_and_accept_their_storage() -> None:
    ids = [uuid.uuid4().bytes, None]
    storage = pa.array(ids, pa.binary(16))
    extension = pa.ExtensionArray.from_storage(types.uuid(), storage)
    for source in (storage, extension):
        column = build_single(types.uuid(), source).column("v")
        assert column.type == types.uuid()
        assert column.storage.equals(storage)

    document = pa.array([b'{"a":1}', None], pa.binary())
    json_column = build_single(types.json(), document).column("v")
    assert json_column.type == types.json()
    assert json_column.storage.equals(document)


def test_extension_column_of_another_extension_type_is_refused() -> None:
    source = pa.ExtensionArray.from_storage(types.json(), pa.array([b"{}"], pa.binary()))
    with pytest.raises(hw.SchemaError) as caught:
        build_single(types.inet(), source)
    message = str(caught.value)
    for part in ("things", "v", "json", "inet"):
        assert part in message, message


# --- lossy casts and overflow -----------------------------------------------------------------

LOSSY_CASTS = [
    # (input, column type, spellings of the input type, spellings of the column type)
    (pa.array([1.0], pa.float64()), pa.int64(), ("double", "Float64"), ("int64", "Int64")),
    (pa.array([1], pa.int64()), pa.float64(), ("int64", "Int64"), ("double", "Float64")),
    (pa.array([1], pa.uint64()), pa.float64(), ("uint64", "UInt64"), ("double", "Float64")),
    (pa.array([1], pa.int32()), pa.float32(), ("int32", "Int32"), ("float", "Float32")),
    (pa.array([0.5], pa.float64()), pa.float32(), ("double", "Float64"), ("float", "Float32")),
    (
        pa.array([1_000_000_000], pa.timestamp("ns")),
        pa.timestamp("s"),
        ("timestamp[ns]", "Timestamp(ns", "Timestamp(Nanosecond"),
        ("timestamp[s]", "Timestamp(s", "Timestamp(Second"),
    ),
    (
        pa.array([dt.time(1)], pa.time64("ns")),
        pa.time64("us"),
        ("time64[ns]", "Time64(ns", "Time64(Nanosecond"),
        ("time64[us]", "Time64(µs", "Time64(us", "Time64(Microsecond"),
    ),
    (
        pa.array([1_000], pa.duration("ms")),
        pa.duration("s"),
        ("duration[ms]", "Duration(ms", "Duration(Millisecond"),
        ("duration[s]", "Duration(s", "Duration(Second"),
    ),
    (
        pa.array([decimal.Decimal("1.25")], pa.decimal128(10, 2)),
        pa.decimal128(10, 1),
        ("decimal128(10, 2)", "Decimal128(10, 2)"),
        ("decimal128(10, 1)", "Decimal128(10, 1)"),
    ),
    (pa.array(["1"], pa.string()), pa.int64(), ("string", "Utf8"), ("int64", "Int64")),
    (pa.array([b"x"], pa.binary()), pa.string(), ("binary", "Binary"), ("string", "Utf8")),
    (
        pa.array([[1.5]], pa.list_(pa.float64())),
        pa.list_(pa.int64()),
        ("double", "Float64"),
        ("int64", "Int64"),
    ),
]


@pytest.mark.parametrize(
    ("array", "column_type", "from_names", "to_names"),
    LOSSY_CASTS,
    ids=[f"{case[0].type}->{case[1]}" for case in LOSSY_CASTS],
)
def test_lossy_casts_are_schema_errors_naming_table_column_and_types(
    array: pa.Array,
    column_type: pa.DataType,
    from_names: tuple[str, ...],
    to_names: tuple[str, ...],
) -> None:
    with pytest.raises(hw.SchemaError) as caught:
        build_single(column_type, array)
    message = str(caught.value)
    assert "things" in message, message
    assert '"v"' in message or "'v'" in message, message
    assert any(name in message for name in from_names), message
    assert any(name in message for name in to_names), message


@pytest.mark.parametrize(
    ("array", "column_type"),
    [
        (pa.array([0, 2**64 - 1], pa.uint64()), pa.int64()),
        (pa.array([-1], pa.int64()), pa.uint64()),
        (pa.array([1_000], pa.int64()), pa.int8()),
        (pa.array([2**31], pa.int64()), pa.int32()),
        (pa.array([1_000], pa.int64()), pa.decimal128(3, 0)),
        (pa.array([decimal.Decimal("123.45")], pa.decimal128(5, 2)), pa.decimal128(4, 2)),
        (pa.array([[1, 300]], pa.list_(pa.int64())), pa.list_(pa.uint8())),
    ],
    ids=[
        "uint64-max->int64",
        "negative->uint64",
        "int64->int8",
        "int64->int32",
        "int64->decimal-precision",
        "decimal-precision",
        "list-item-overflow",
    ],
)
def test_overflow_during_a_cast_is_an_error_never_a_null(
    array: pa.Array, column_type: pa.DataType
) -> None:
    with pytest.raises(hw.SchemaError) as caught:
        build_single(column_type, array)
    message = str(caught.value)
    assert "things" in message, message
    assert '"v"' in message or "'v'" in message, message


# --- missing, extra and null columns ----------------------------------------------------------


def test_missing_nullable_column_becomes_nulls_and_extra_columns_are_ignored() -> None:
    source = pa.record_batch(
        {
            "unknown": pa.array([1.5, 2.5]),
            "id": pa.array([10, 20], pa.int64()),
            "another": pa.array(["x", "y"]),
        }
    )
    batch = hw.build_batch(ITEMS, source)
    assert batch.schema.equals(ITEMS.arrow_schema, check_metadata=True)
    assert batch.select(["id", "name", "seen_at"]).to_pylist() == [
        {"id": 10, "name": None, "seen_at": None},
        {"id": 20, "name": None, "seen_at": None},
    ]
    assert "unknown" not in batch.schema.names


def test_missing_not_null_column_is_a_schema_error_naming_it() -> None:
    source = pa.record_batch({"name": pa.array(["a"])})
    with pytest.raises(hw.SchemaError, match=r"items.*id.*not nullable"):
        hw.build_batch(ITEMS, source)


def test_null_value_in_a_not_null_column_is_a_schema_error_naming_the_row() -> None:
    with pytest.raises(hw.SchemaError, match=r"things.*v.*not nullable.*row 2"):
        build_single(pa.int64(), pa.array([1, 2, None]), not_null=True)


def test_null_typed_input_column_fills_a_nullable_column() -> None:
    batch = build_single(pa.timestamp("ms"), pa.array([None, None], pa.null()))
    assert batch.column("v").type == pa.timestamp("ms")
    assert batch.column("v").null_count == 2


# --- parent ids and output schema -------------------------------------------------------------


def test_one_parent_id_for_every_row() -> None:
    parent = uuid.uuid4()
    for given in (parent, str(parent), parent.bytes):
        batch = hw.build_batch(ITEMS, ITEMS_INPUT, parent_cq_ids=given)
        assert batch.column("_cq_parent_id").to_pylist() == [parent] * 3


def test_one_parent_id_per_row() -> None:
    parents = [uuid.uuid4() for _ in range(3)]
    batch = hw.build_batch(ITEMS, ITEMS_INPUT, parent_cq_ids=parents)
    assert batch.column("_cq_parent_id").to_pylist() == parents
    assert batch.schema.equals(ITEMS.arrow_schema, check_metadata=True)


def test_parent_ids_of_the_wrong_length_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="parent_cq_ids has 2 ids but there are 3 rows"):
        hw.build_batch(ITEMS, ITEMS_INPUT, parent_cq_ids=[uuid.uuid4(), uuid.uuid4()])


def test_without_parent_ids_the_parent_column_is_null() -> None:
    batch = hw.build_batch(ITEMS, ITEMS_INPUT)
    assert batch.column("_cq_parent_id").null_count == 3
    assert batch.column("_cq_id").null_count == 0
    assert batch.column("_cq_id").type == types.uuid()


def test_output_schema_is_the_table_schema_whatever_the_input_metadata() -> None:
    table = hw.Table(
        "documented",
        [
            hw.Column("id", pa.int64(), primary_key=True, not_null=True),
            hw.Column("tag", pa.string()),
        ],
        title="Documented",
        description="has metadata",
    )
    source = pa.record_batch(
        [pa.array([1], pa.int32()), pa.array(["t"])],
        schema=pa.schema(
            [pa.field("id", pa.int32(), metadata={"foreign": "yes"}), pa.field("tag", pa.string())],
            metadata={"cq:table_name": "something_else", "pandas": "{}"},
        ),
    )
    batch = hw.build_batch(table, source)
    assert batch.schema.equals(table.arrow_schema, check_metadata=True)
    assert batch.schema.metadata == table.arrow_schema.metadata
    assert batch.schema.field("id").metadata == table.arrow_schema.field("id").metadata


def test_text_into_extension_columns_is_checked_and_canonicalised() -> None:
    table = hw.Table(
        "ext_from_text",
        [
            hw.Column("doc", hw.types.json()),
            hw.Column("ip", hw.types.inet()),
            hw.Column("mac", hw.types.mac()),
        ],
    )
    data = pa.record_batch(
        {
            "doc": pa.array(['{"a": 1}', None]),
            "ip": pa.array(["10.0.0.1", "2001:0db8::1/64"]),
            "mac": pa.array(["AA-BB-CC-DD-EE-FF", None]),
        }
    )
    batch = hw.build_batch(table, data)
    assert batch.column("doc").storage.to_pylist() == [b'{"a": 1}', None]
    assert batch.column("ip").storage.to_pylist() == [b"10.0.0.1/32", b"2001:db8::1/64"]
    assert batch.column("mac").storage.to_pylist() == [bytes.fromhex("aabbccddeeff"), None]


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("doc", pa.array(["{}", "not json"]), 'row 1: "not json" is not valid JSON text'),
        ("ip", pa.array(["garbage"]), 'row 0: "garbage" is not an IP address'),
        ("mac", pa.array(["zz"]), 'row 0: "zz" is not a MAC address'),
        ("mac", pa.array([b"\x01"], pa.binary()), "has 1 bytes; a MAC address has 6, 8 or 20"),
    ],
)
def test_bad_text_into_extension_columns_names_the_row(
    column: str, values: pa.Array, message: str
) -> None:
    column_type = {"doc": types.json(), "ip": types.inet(), "mac": types.mac()}[column]
    table = hw.Table("ext_bad", [hw.Column(column, column_type)])
    with pytest.raises(hw.SchemaError, match=re.escape(message)) as caught:
        hw.build_batch(table, pa.record_batch({column: values}))
    assert f"column {column!r}" in str(caught.value).replace('"', "'")


def test_polars_frames_round_trip() -> None:
    # polars exports string_view and large lists over the C stream interface; both convert
    # exactly, and the batch reads back into an equal frame.
    table = hw.Table(
        "from_polars",
        [
            hw.Column("id", pa.int64(), primary_key=True),
            hw.Column("name", pa.string()),
            hw.Column("tags", pa.list_(pa.string())),
            hw.Column("at", pa.timestamp("us", tz="UTC")),
            hw.Column("score", pa.float64()),
        ],
    )
    at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    frame = pl.DataFrame(
        {
            "id": [1, 2],
            "name": ["a", None],
            "tags": [["x"], []],
            "at": [at, at],
            "score": [1.5, 2.0],
        }
    )
    batch = hw.build_batch(table, frame)
    assert batch.schema.equals(table.arrow_schema, check_metadata=True)
    assert pl.from_arrow(batch.select(frame.columns)).equals(frame)
