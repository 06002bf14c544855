"""build_batch from Python rows: row shapes, every value conversion, and every kind of bad input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import ipaddress
import json
import uuid
import zoneinfo
from typing import Any

import pyarrow as pa
import pydantic
import pytest

import headwater as hw
from headwater import types

UTC = dt.UTC


def table(*columns: hw.Column, name: str = "things") -> hw.Table:
    return hw.Table(name, list(columns))


def one(column_type: pa.DataType, value: Any, **flags: Any) -> Any:
    """Build a one-column, one-row batch and return the stored value as Python."""
    batch = hw.build_batch(table(hw.Column("v", column_type, **flags)), [{"v": value}])
    return batch.column("v")[0].as_py()


def raw(column_type: pa.DataType, value: Any) -> Any:
    """Like `one`, but the storage value of extension columns."""
    batch = hw.build_batch(table(hw.Column("v", column_type)), [{"v": value}])
    column = batch.column("v")
    if isinstance(column, pa.ExtensionArray):
        column = column.storage
    return column[0].as_py()


def row_error(column_type: pa.DataType, value: Any, **flags: Any) -> hw.RowError:
    with pytest.raises(hw.RowError) as caught:
        hw.build_batch(table(hw.Column("v", column_type, **flags)), [{"v": value}])
    return caught.value


# --- row shapes -------------------------------------------------------------------------------

ITEMS = table(
    hw.Column("id", pa.int64(), primary_key=True),
    hw.Column("name", pa.string()),
    hw.Column("score", pa.float64()),
)


@dataclasses.dataclass
class ItemDataclass:
    id: int
    name: str | None
    score: float


class ItemModel(pydantic.BaseModel):
    id: int
    name: str | None
    score: float


class ItemObject:
    def __init__(self, id: int, name: str) -> None:
        self.id = id
        self.name = name

    @property
    def score(self) -> float:
        return 1.5


@dataclasses.dataclass(slots=True)
class ItemSlots:
    id: int
    name: str
    score: float


@pytest.mark.parametrize(
    "row",
    [
        {"id": 1, "name": "a", "score": 1.5},
        (1, "a", 1.5),
        [1, "a", 1.5],
        ItemDataclass(1, "a", 1.5),
        ItemModel(id=1, name="a", score=1.5),
        ItemObject(1, "a"),
        ItemSlots(1, "a", 1.5),
    ],
    ids=["dict", "tuple", "list", "dataclass", "pydantic", "object+property", "slots"],
)
def test_every_row_shape_gives_the_same_batch(row: Any) -> None:
    batch = hw.build_batch(ITEMS, [row])
    assert batch.schema.equals(ITEMS.arrow_schema, check_metadata=True)
    assert batch.select(["id", "name", "score"]).to_pylist() == [
        {"id": 1, "name": "a", "score": 1.5}
    ]


def test_missing_keys_and_attributes_are_null_and_unknown_keys_ignored() -> None:
    class Partial:
        id = 2

    batch = hw.build_batch(ITEMS, [{"id": 1, "extra": object()}, Partial()])
    assert batch.select(["id", "name", "score"]).to_pylist() == [
        {"id": 1, "name": None, "score": None},
        {"id": 2, "name": None, "score": None},
    ]


def test_rows_from_a_generator_and_an_empty_input() -> None:
    batch = hw.build_batch(ITEMS, ({"id": i} for i in range(5)))
    assert batch.column("id").to_pylist() == [0, 1, 2, 3, 4]
    empty = hw.build_batch(ITEMS, [])
    assert empty.num_rows == 0
    assert empty.schema.equals(ITEMS.arrow_schema, check_metadata=True)


def test_mapping_rows_that_are_not_dicts() -> None:
    from types import MappingProxyType

    batch = hw.build_batch(ITEMS, [MappingProxyType({"id": 7, "name": "m"})])
    assert batch.column("name").to_pylist() == ["m"]


# --- value conversions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        (pa.int8(), -128, -128),
        (pa.int16(), 32767, 32767),
        (pa.int32(), -(2**31), -(2**31)),
        (pa.int64(), 2**63 - 1, 2**63 - 1),
        (pa.uint8(), 255, 255),
        (pa.uint16(), 65535, 65535),
        (pa.uint32(), 2**32 - 1, 2**32 - 1),
        (pa.uint64(), 2**64 - 1, 2**64 - 1),
        (pa.int64(), 3.0, 3),
        (pa.float64(), 3, 3.0),
        (pa.float64(), 2**53, float(2**53)),
        (pa.float32(), 0.5, 0.5),
        (pa.float64(), float("inf"), float("inf")),
        (pa.bool_(), True, True),
        (pa.string(), "héllo 🌊", "héllo 🌊"),
        (pa.large_string(), "x" * 1000, "x" * 1000),
        (pa.binary(), b"\x00\xff", b"\x00\xff"),
        (pa.binary(), bytearray(b"ab"), b"ab"),
        (pa.large_binary(), b"abc", b"abc"),
        (pa.binary(3), b"abc", b"abc"),
        (pa.date32(), dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
        (pa.date32(), "2024-02-29", dt.date(2024, 2, 29)),
        (pa.date64(), dt.date(1969, 12, 31), dt.date(1969, 12, 31)),
        (pa.time32("s"), dt.time(23, 59, 59), dt.time(23, 59, 59)),
        (pa.time32("ms"), dt.time(1, 2, 3, 4000), dt.time(1, 2, 3, 4000)),
        (pa.time64("us"), dt.time(1, 2, 3, 4), dt.time(1, 2, 3, 4)),
        (pa.time64("ns"), "01:02:03.000004", dt.time(1, 2, 3, 4)),
        (pa.duration("s"), dt.timedelta(days=-1, seconds=5), dt.timedelta(days=-1, seconds=5)),
        (pa.duration("us"), dt.timedelta(microseconds=7), dt.timedelta(microseconds=7)),
        (pa.decimal128(5, 2), decimal.Decimal("-123.45"), decimal.Decimal("-123.45")),
        (pa.decimal128(5, 2), decimal.Decimal("1.5"), decimal.Decimal("1.50")),
        (pa.decimal128(5, 2), 7, decimal.Decimal("7.00")),
        (pa.decimal128(5, 2), "0.01", decimal.Decimal("0.01")),
        (pa.list_(pa.int64()), [1, None, 3], [1, None, 3]),
        (pa.list_(pa.int64()), (1, 2), [1, 2]),
        (pa.large_list(pa.list_(pa.string())), [["a"], [], None], [["a"], [], None]),
        (
            pa.struct([("a", pa.int64()), ("b", pa.string())]),
            {"a": 1},
            {"a": 1, "b": None},
        ),
        (pa.map_(pa.string(), pa.int64()), {"x": 1, "y": 2}, [("x", 1), ("y", 2)]),
        (pa.map_(pa.string(), pa.int64()), [("x", 1)], [("x", 1)]),
    ],
)
def test_values_convert_exactly(column_type: pa.DataType, value: Any, expected: Any) -> None:
    assert one(column_type, value) == expected


def test_struct_from_objects_and_models() -> None:
    class Address(pydantic.BaseModel):
        city: str
        zip: int

    struct = pa.struct([("city", pa.string()), ("zip", pa.int64())])
    assert one(struct, Address(city="Oslo", zip=150)) == {"city": "Oslo", "zip": 150}


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_aware_datetimes_are_converted_exactly(unit: str) -> None:
    oslo = zoneinfo.ZoneInfo("Europe/Oslo")
    local = dt.datetime(2024, 7, 1, 14, 0, 0, tzinfo=oslo)  # 12:00 UTC in summer
    fixed = dt.datetime(2024, 7, 1, 9, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    expected = dt.datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)
    column_type = pa.timestamp(unit, tz="UTC")
    assert one(column_type, local) == expected
    assert one(column_type, fixed) == expected
    assert one(column_type, "2024-07-01T14:00:00+02:00") == expected


def test_naive_datetimes_are_utc_and_tz_free_columns_hold_utc_wall_time() -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5, 678901)
    assert one(pa.timestamp("us", tz="UTC"), naive) == naive.replace(tzinfo=UTC)
    assert one(pa.timestamp("us"), naive) == naive
    aware = dt.datetime(2024, 1, 2, 4, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert one(pa.timestamp("us"), aware) == naive


def test_extension_values() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert one(types.uuid(), u) == u
    assert one(types.uuid(), str(u)) == u
    assert one(types.uuid(), u.bytes) == u
    assert one(types.uuid(), "{12345678-1234-5678-1234-567812345678}") == u

    assert raw(types.json(), {"b": [1, 2.5, None, True], "a": "é\n"}) == (
        '{"b":[1,2.5,null,true],"a":"é\\n"}'.encode()
    )
    assert raw(types.json(), '{"already": "json"}') == b'{"already": "json"}'
    assert raw(types.json(), [1, "x"]) == b'[1,"x"]'
    assert raw(types.json(), {1: "int keys like json.dumps"}) == b'{"1":"int keys like json.dumps"}'
    assert raw(types.json(), 2**70) == str(2**70).encode()

    class Inner(pydantic.BaseModel):
        when: dt.date

    assert json.loads(raw(types.json(), Inner(when=dt.date(2024, 1, 2)))) == {"when": "2024-01-02"}

    assert raw(types.inet(), ipaddress.ip_address("192.0.2.1")) == b"192.0.2.1/32"
    assert raw(types.inet(), ipaddress.ip_interface("192.0.2.1/24")) == b"192.0.2.1/24"
    assert raw(types.inet(), ipaddress.ip_network("2001:db8::/32")) == b"2001:db8::/32"
    assert raw(types.inet(), "2001:0db8:0000::0001") == b"2001:db8::1/128"

    assert raw(types.mac(), "AA:BB:CC:DD:EE:FF") == bytes.fromhex("aabbccddeeff")
    assert raw(types.mac(), "aa-bb-cc-dd-ee-ff") == bytes.fromhex("aabbccddeeff")
    assert raw(types.mac(), bytes(6)) == bytes(6)


def test_str_and_int_enums_store_their_value() -> None:
    import enum

    class Color(str, enum.Enum):  # noqa: UP042 - the str mix-in is what users write
        RED = "red"

    assert one(pa.string(), Color.RED) == "red"


# --- bad input: one test per kind -------------------------------------------------------------


def test_error_names_table_column_row_type_and_value() -> None:
    with pytest.raises(hw.RowError) as caught:
        hw.build_batch(ITEMS, [{"id": 1}, {"id": "3"}])
    error = caught.value
    assert (error.table, error.column, error.row) == ("things", "id", 1)
    assert error.expected == "int64"
    assert error.value_type == "str"
    assert error.value_repr == "'3'"
    assert str(error) == (
        "table 'things', column 'id', row 1: expected int64, got str '3': "
        "a str is not converted to a number; parse it first"
    )
    assert isinstance(error, hw.HeadwaterError)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("column_type", "value", "reason"),
    [
        (pa.int64(), "3", "str is not converted"),
        (pa.int64(), True, "bool is not an integer"),
        (pa.int64(), 2**63, "out of range"),
        (pa.int8(), 128, "128 is out of range for int8"),
        (pa.uint8(), -1, "out of range for uint8"),
        (pa.uint64(), -1, "negative"),
        (pa.int64(), float("nan"), "NaN cannot be stored in an integer column"),
        (pa.int64(), 1.5, "not an integral value"),
        (pa.int64(), decimal.Decimal("1"), "expected an int"),
        (pa.float64(), 2**53 + 1, "cannot be represented exactly"),
        (pa.float64(), "1.5", "str is not converted"),
        (pa.float32(), 1e39, "beyond the range of a 32-bit float"),
        (pa.bool_(), 1, "expected a bool"),
        (pa.string(), 3, "expected a str"),
        (pa.string(), b"x", "expected a str"),
        (pa.string(), "\ud800", "lone surrogate"),
        (pa.binary(), "x", "encode the str first"),
        (pa.binary(4), b"abc", "has 3 bytes, the column holds exactly 4"),
        (pa.date32(), dt.datetime(2024, 1, 1, 12), "would lose its time of day"),
        (pa.date32(), "01/02/2024", "not an ISO 8601 date"),
        (pa.time64("us"), dt.time(1, tzinfo=UTC), "tzinfo"),
        (pa.time32("s"), dt.time(1, 0, 0, 5), "sub-s precision"),
        (pa.timestamp("s"), dt.datetime(2024, 1, 1, 0, 0, 0, 5), "sub-s precision"),
        (pa.timestamp("ns"), dt.datetime(3000, 1, 1), "out of range"),
        (pa.timestamp("us"), dt.date(2024, 1, 1), "a date is not an instant"),
        (pa.timestamp("us"), "next tuesday", "RFC 3339"),
        (pa.timestamp("us"), 1700000000, "expected a datetime"),
        (pa.duration("s"), dt.timedelta(microseconds=1), "sub-s precision"),
        (pa.duration("us"), 5, "expected a datetime.timedelta"),
        (pa.decimal128(5, 2), decimal.Decimal("1.234"), "scale"),
        (pa.decimal128(5, 2), decimal.Decimal("12345"), "precision"),
        (pa.decimal128(5, 2), 1.5, "a float is inexact"),
        (pa.decimal128(5, 2), decimal.Decimal("NaN"), "NaN"),
        (types.uuid(), "not-a-uuid", "not a valid UUID"),
        (types.uuid(), b"short", "has 5 bytes, a UUID has 16"),
        (types.uuid(), 5, "expected a uuid.UUID"),
        (types.json(), object(), "not JSON-serialisable"),
        (types.json(), {"x": float("nan")}, "no JSON representation"),
        (types.json(), {(1, 2): "x"}, "keys must be str or int"),
        (types.json(), "not json", "is not valid JSON text"),
        (types.inet(), "300.1.1.1", "300.1.1.1"),
        (types.inet(), "10.0.0.0/33", "33"),
        (types.inet(), 5, "expected an ipaddress"),
        (types.mac(), "zz:bb:cc:dd:ee:ff", "zz:bb:cc:dd:ee:ff"),
        (types.mac(), b"\x00\x01", "has 2 bytes"),
        (pa.list_(pa.int64()), "abc", "expected a list"),
        (pa.list_(pa.int64()), {"a": 1}, "expected a list"),
        (pa.struct([("a", pa.int64())]), 5, "expected a dict or an object"),
        (pa.map_(pa.string(), pa.int64()), 5, "expected a dict or a list of (key, value)"),
        (pa.map_(pa.string(), pa.int64()), [("a", 1, 2)], "(key, value) tuples"),
    ],
)
def test_bad_values_raise_row_error_with_reason(
    column_type: pa.DataType, value: Any, reason: str
) -> None:
    error = row_error(column_type, value)
    assert reason in str(error), str(error)
    assert error.column == "v"
    assert error.row == 0


def test_null_in_a_not_null_column() -> None:
    error = row_error(pa.int64(), None, not_null=True)
    assert "not nullable" in error.reason
    assert error.value_type == "NoneType"


def test_nested_faults_name_their_path() -> None:
    error = row_error(pa.list_(pa.int64()), [1, "two"])
    assert error.column == "v[1]"
    assert error.expected == "int64"
    assert error.value_repr == "'two'"

    struct = pa.struct([("address", pa.struct([("city", pa.string())]))])
    error = row_error(struct, {"address": {"city": 9}})
    assert error.column == "v.address.city"

    error = row_error(pa.map_(pa.string(), pa.int64()), {"k": "x"})
    assert error.column == "v['k']"


def test_map_keys_cannot_be_null() -> None:
    error = row_error(pa.map_(pa.string(), pa.int64()), {None: 1})
    assert "map keys cannot be None" in error.reason


def test_rows_of_the_wrong_shape() -> None:
    with pytest.raises(hw.RowError, match=r"expected a row of 3 values, got tuple .* it has 2"):
        hw.build_batch(ITEMS, [(1, "a")])
    with pytest.raises(hw.RowError, match="this is not a row") as caught:
        hw.build_batch(ITEMS, ["not a row"])
    assert caught.value.column is None
    for not_rows in ({"id": 1}, None, 5, "abc"):
        with pytest.raises(TypeError, match="must be an iterable of rows"):
            hw.build_batch(ITEMS, not_rows)


def test_long_values_are_truncated_in_errors() -> None:
    error = row_error(pa.int64(), "x" * 10_000)
    assert len(error.value_repr) < 260
    assert error.value_repr.endswith("...")


def test_secrets_never_appear_in_errors() -> None:
    secret = pydantic.SecretStr("hunter2")
    error = row_error(pa.string(), secret)
    assert "hunter2" not in str(error)
    assert "hunter2" not in repr(error)


def test_exceptions_from_user_code_pass_through_unchanged() -> None:
    class Boom(Exception):
        pass

    class Exploding:
        id = 1

        @property
        def name(self) -> str:
            raise Boom("from the property")

    with pytest.raises(Boom, match="from the property"):
        hw.build_batch(ITEMS, [Exploding()])


def test_bad_rows_are_all_or_nothing_and_can_be_skipped() -> None:
    rows = [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b", "score": "bad"},  # fails after two values were appended
        {"id": 3, "name": "c"},
        {"id": "x"},
    ]
    errors: list[hw.RowError] = []
    batch = hw.build_batch(ITEMS, rows, on_error="skip", errors=errors)
    assert batch.select(["id", "name"]).to_pylist() == [
        {"id": 1, "name": "a"},
        {"id": 3, "name": "c"},
    ]
    assert [(e.row, e.column) for e in errors] == [(1, "score"), (3, "id")]
    # Without an errors list, skipping still works.
    assert hw.build_batch(ITEMS, rows, on_error="skip").num_rows == 2


def test_skipping_rows_inside_nested_columns_leaves_no_debris() -> None:
    t = table(hw.Column("tags", pa.list_(pa.struct([("k", pa.string())]))))
    rows = [{"tags": [{"k": "a"}]}, {"tags": [{"k": "b"}, {"k": 5}]}, {"tags": [{"k": "c"}]}]
    batch = hw.build_batch(t, rows, on_error="skip")
    assert batch.column("tags").to_pylist() == [[{"k": "a"}], [{"k": "c"}]]
    batch.validate(full=True)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        hw.build_batch(ITEMS, [], on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="errors must be a list"):
        hw.build_batch(ITEMS, [], errors=())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"table must be a headwater\.Table, not str"):
        hw.build_batch("things", [])  # type: ignore[arg-type]


# --- _cq_id and _cq_parent_id -----------------------------------------------------------------


def test_cq_id_matches_the_go_sdk_vectors() -> None:
    accounts = table(
        hw.Column("account_id", pa.string(), primary_key=True),
        hw.Column("id", pa.int64(), primary_key=True),
        name="example_accounts",
    )
    batch = hw.build_batch(accounts, [{"account_id": "acct-123", "id": 42}])
    assert batch.column("_cq_id")[0].as_py() == uuid.UUID("8efb8158-fd03-5c3b-8e04-4df9c21be81d")

    buckets = table(
        hw.Column("arn", pa.string(), primary_key=True),
        hw.Column("region", pa.string(), primary_key=True),
        name="aws_s3_buckets",
    )
    batch = hw.build_batch(buckets, [("arn:aws:s3:::my-bucket", "us-east-1")])
    assert batch.column("_cq_id")[0].as_py() == uuid.UUID("aefcc7cb-024e-5b0e-ab66-2e99c3657615")


def test_cq_id_is_random_v4_without_keys_or_when_not_deterministic() -> None:
    no_keys = table(hw.Column("x", pa.int64()))
    ids = hw.build_batch(no_keys, [{"x": 1}, {"x": 1}]).column("_cq_id").to_pylist()
    assert ids[0] != ids[1]
    assert all(i.version == 4 for i in ids)

    random = hw.build_batch(ITEMS, [{"id": 1}, {"id": 1}], deterministic_cq_id=False)
    ids = random.column("_cq_id").to_pylist()
    assert ids[0] != ids[1]
    same = hw.build_batch(ITEMS, [{"id": 1}, {"id": 1}]).column("_cq_id").to_pylist()
    assert same[0] == same[1]
    assert same[0].version == 5


def test_parent_cq_ids() -> None:
    parent = uuid.uuid4()
    batch = hw.build_batch(ITEMS, [{"id": 1}, {"id": 2}], parent_cq_ids=parent)
    assert batch.column("_cq_parent_id").to_pylist() == [parent, parent]

    ids = [uuid.uuid4() for _ in range(3)]
    rows = [{"id": 1}, {"id": "bad"}, {"id": 3}]
    batch = hw.build_batch(ITEMS, rows, parent_cq_ids=[str(i) for i in ids], on_error="skip")
    assert batch.column("_cq_parent_id").to_pylist() == [ids[0], ids[2]]

    assert hw.build_batch(ITEMS, [{"id": 1}]).column("_cq_parent_id").to_pylist() == [None]


def test_bad_parent_cq_ids() -> None:
    with pytest.raises(ValueError, match="parent_cq_ids has 1 ids but there are 2 rows"):
        hw.build_batch(ITEMS, [{"id": 1}, {"id": 2}], parent_cq_ids=[uuid.uuid4()])
    with pytest.raises(ValueError, match=r"parent_cq_ids\[0\] = 'nope' is not a valid UUID"):
        hw.build_batch(ITEMS, [{"id": 1}], parent_cq_ids=["nope"])
    with pytest.raises(TypeError, match="parent_cq_ids must be one UUID"):
        hw.build_batch(ITEMS, [{"id": 1}], parent_cq_ids=42)  # type: ignore[arg-type]


def test_large_lists_hash_keys_while_reading_with_the_same_result() -> None:
    # Lists of 32k+ rows hash primary keys on a second thread chunk by chunk; the ids must be
    # exactly those of the one-pass path (a generator), bad rows skipped in between included.
    keyed = table(
        hw.Column("region", pa.string(), primary_key=True),
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("note", pa.string()),
    )
    rows: list[dict[str, Any]] = [
        {"region": None if i % 1000 == 0 else f"r{i % 7}", "id": i, "note": "x"}
        for i in range(50_000)
    ]
    for i in (5, 8191, 8192, 20_000, 49_999):
        rows[i] = {"region": "r", "id": "not an int"}
    errors: list[hw.RowError] = []
    pipelined = hw.build_batch(keyed, rows, on_error="skip", errors=errors)
    one_pass = hw.build_batch(keyed, iter(rows), on_error="skip")
    assert [e.row for e in errors] == [5, 8191, 8192, 20_000, 49_999]
    assert pipelined.num_rows == 50_000 - 5
    assert pipelined.column("_cq_id").equals(one_pass.column("_cq_id"))
    assert pipelined.column("_cq_id")[1].as_py() == one_pass.column("_cq_id")[1].as_py()
