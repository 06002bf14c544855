"""Property tests of build_batch from Python rows, with pyarrow as the oracle.

Random tables over every supported column type (nested up to two levels) and random rows:
``build_batch`` must store exactly what ``pa.RecordBatch.from_pylist`` stores for the same
values in the plain storage schema. pyarrow cannot take the Python values of CloudQuery's
extension types, so every value is generated as a pair: what a plugin hands to headwater, and
what pyarrow stores for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import ipaddress
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headwater as hw
from headwater import types

Pair = tuple[Any, Any]  # (value given to headwater, value pyarrow stores)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclasses.dataclass(frozen=True)
class Kind:
    """A column type and a strategy for its non-null values, as (headwater, pyarrow) pairs."""

    column_type: pa.DataType
    storage_type: pa.DataType
    values: st.SearchStrategy[Pair]
    # Maps a non-null Python value of the storage type to a comparable form; only JSON needs
    # it (equal documents may be formatted differently), and the containers that hold JSON.
    canonical: Callable[[Any], Any] | None = None

    def canonical_value(self, value: Any) -> Any:
        if value is None or self.canonical is None:
            return value
        return self.canonical(value)


def same(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Pair]:
    return values.map(lambda v: (v, v))


def plain(data_type: pa.DataType, values: st.SearchStrategy[Any]) -> Kind:
    return Kind(data_type, data_type, same(values))


# --- leaf kinds -------------------------------------------------------------------------------

INTEGERS = [
    plain(pa.int8(), st.integers(-(2**7), 2**7 - 1)),
    plain(pa.int16(), st.integers(-(2**15), 2**15 - 1)),
    plain(pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    plain(pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    plain(pa.uint8(), st.integers(0, 2**8 - 1)),
    plain(pa.uint16(), st.integers(0, 2**16 - 1)),
    plain(pa.uint32(), st.integers(0, 2**32 - 1)),
    plain(pa.uint64(), st.integers(0, 2**64 - 1)),
]

# NaN is left out only because NaN != NaN; ints are exact in a float column up to the mantissa.
FLOATS = [
    plain(pa.float32(), st.floats(width=32, allow_nan=False) | st.integers(-(2**24), 2**24)),
    plain(pa.float64(), st.floats(allow_nan=False) | st.integers(-(2**53), 2**53)),
]

TEXT = st.text(max_size=12)
BYTES = st.binary(max_size=12)


def bytes_like(size: st.SearchStrategy[bytes]) -> st.SearchStrategy[Pair]:
    return size.flatmap(lambda b: st.sampled_from([(b, b), (bytearray(b), b)]))


SCALARS = [
    plain(pa.bool_(), st.booleans()),
    plain(pa.string(), TEXT),
    plain(pa.large_string(), TEXT),
    Kind(pa.binary(), pa.binary(), bytes_like(BYTES)),
    Kind(pa.large_binary(), pa.large_binary(), bytes_like(BYTES)),
    plain(pa.date32(), st.dates()),
    plain(pa.date64(), st.dates()),
]


@st.composite
def fixed_size_binary_kinds(draw: st.DrawFn) -> Kind:
    size = draw(st.integers(1, 20))
    return Kind(
        pa.binary(size), pa.binary(size), bytes_like(st.binary(min_size=size, max_size=size))
    )


def truncate_micros(unit: str) -> Callable[[int], int]:
    """Microseconds rounded down to what ``unit`` holds, so the value is exact in it."""
    step = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[unit]
    return lambda micros: micros - micros % step


@st.composite
def time_kinds(draw: st.DrawFn) -> Kind:
    data_type = draw(
        st.sampled_from([pa.time32("s"), pa.time32("ms"), pa.time64("us"), pa.time64("ns")])
    )
    exact = truncate_micros(data_type.unit)
    times = st.times().map(lambda t: t.replace(microsecond=exact(t.microsecond)))
    return plain(data_type, times)


# Any whole-second UTC offset, and every zone of the tz database (historical ones have odd
# offsets such as Amsterdam's +00:19:32), so conversion to UTC is checked beyond whole hours.
FIXED_OFFSETS = st.integers(-86_399, 86_399).map(
    lambda seconds: dt.timezone(dt.timedelta(seconds=seconds))
)
ZONES = st.timezones()
COLUMN_TIME_ZONES = st.sampled_from([None, "UTC", "+05:30", "-03:00", "Asia/Tokyo"])


@st.composite
def timestamp_kinds(draw: st.DrawFn) -> Kind:
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    data_type = pa.timestamp(unit, tz=draw(COLUMN_TIME_ZONES))
    # int64 nanoseconds span 1677-2262; the other units hold every datetime, even aware ones
    # whose UTC instant falls just outside years 1-9999.
    if unit == "ns":
        low, high = dt.datetime(1900, 1, 1), dt.datetime(2200, 12, 31)
    else:
        low, high = dt.datetime.min, dt.datetime.max
    exact = truncate_micros(unit)
    naive = st.datetimes(low, high)
    aware = st.datetimes(low, high, timezones=FIXED_OFFSETS | ZONES)
    datetimes = (naive | aware).map(lambda d: d.replace(microsecond=exact(d.microsecond)))
    return plain(data_type, datetimes)


@st.composite
def duration_kinds(draw: st.DrawFn) -> Kind:
    unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
    # int64 nanoseconds reach about 106,751 days, microseconds about 106,751,991 days;
    # timedelta itself reaches 999,999,999 days.
    if unit == "ns":
        low, high = -dt.timedelta(days=106_751), dt.timedelta(days=106_751)
    elif unit == "us":
        low, high = -dt.timedelta(days=106_751_991), dt.timedelta(days=106_751_991)
    else:
        low, high = dt.timedelta.min, dt.timedelta.max
    exact = truncate_micros(unit)
    deltas = st.timedeltas(low, high).map(
        lambda d: dt.timedelta(microseconds=exact(d // dt.timedelta(microseconds=1)))
    )
    return plain(pa.duration(unit), deltas)


EXACT = decimal.Context(prec=80)  # wider than any decimal128, so nothing rounds


@st.composite
def decimal_kinds(draw: st.DrawFn) -> Kind:
    precision = draw(st.integers(1, 38))
    scale = draw(st.integers(0, precision))
    # Built from integers: Decimal arithmetic (even negation) rounds to the 28 digits of
    # Python's default context, too few for decimal128's 38.
    largest = 10**precision - 1
    decimals = st.integers(-largest, largest).map(
        lambda n: decimal.Decimal(n).scaleb(-scale, EXACT)
    )
    # The same number with trailing zeros stripped (1.50 -> 1.5, 100 -> 1E+2), or as an int.
    spellings = decimals.flatmap(
        lambda d: st.sampled_from(
            [(d, d), (d.normalize(EXACT), d)]
            + ([(int(d), d)] if d == d.to_integral_value(context=EXACT) else [])
        )
    )
    return Kind(pa.decimal128(precision, scale), pa.decimal128(precision, scale), spellings)


# --- extension kinds --------------------------------------------------------------------------


def uuid_pairs() -> st.SearchStrategy[Pair]:
    return st.uuids().flatmap(
        lambda u: st.sampled_from([(u, u.bytes), (str(u), u.bytes), (u.bytes, u.bytes)])
    )


def canonical_json(document: bytes) -> str:
    # Re-serialised by Python on both sides: floats print alike, and 1 and true stay distinct.
    return json.dumps(json.loads(document), sort_keys=True, ensure_ascii=False)


JSON_LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
# At the top, None is a null and a str is taken as JSON text; both are generated separately.
JSON_DOCUMENTS = (
    st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(JSON_VALUES, max_size=3)
    | st.dictionaries(TEXT, JSON_VALUES, max_size=3)
)


def json_pairs() -> st.SearchStrategy[Pair]:
    def encoded(document: Any) -> bytes:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    as_objects = JSON_DOCUMENTS.map(lambda d: (d, encoded(d)))
    as_text = JSON_VALUES.map(lambda d: json.dumps(d, indent=1)).map(lambda t: (t, t.encode()))
    return as_objects | as_text


def go_inet_text(address: IPAddress, prefix: int) -> bytes:
    """The text CloudQuery's Go SDK stores for an address with a prefix length (net.IPNet)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        # Go prints an IPv4-mapped IPv6 address as IPv4, with the last 32 bits of the mask.
        return f"{mapped}/{max(prefix - 96, 0)}".encode()
    return f"{address}/{prefix}".encode()


def inet_pairs() -> st.SearchStrategy[Pair]:
    def address(a: IPAddress) -> Pair:
        return a, go_inet_text(a, a.max_prefixlen)

    def interface(a: IPAddress, prefix: int) -> Pair:
        value = ipaddress.ip_interface((a, prefix))
        return value, go_inet_text(value.ip, prefix)

    def network(a: IPAddress, prefix: int) -> Pair:
        value = ipaddress.ip_network((a, prefix), strict=False)
        return value, go_inet_text(value.network_address, prefix)

    def with_prefix(version: int) -> st.SearchStrategy[Pair]:
        addresses = st.ip_addresses(v=version)
        prefixes = st.integers(0, 32 if version == 4 else 128)
        return (
            addresses.map(address)
            | st.builds(interface, addresses, prefixes)
            | st.builds(network, addresses, prefixes)
        )

    # IPv4-mapped IPv6 addresses are rare among random ones; draw them on purpose too.
    mapped = st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}"))
    return with_prefix(4) | with_prefix(6) | mapped.map(address)


def mac_pairs() -> st.SearchStrategy[Pair]:
    def spellings(raw: bytes) -> st.SearchStrategy[Pair]:
        text = ":".join(f"{octet:02x}" for octet in raw)
        return st.sampled_from(
            [(text, raw), (text.upper(), raw), (text.replace(":", "-"), raw), (raw, raw)]
        )

    sizes = st.sampled_from([6, 8, 20])
    return sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n)).flatmap(spellings)


EXTENSIONS = [
    Kind(types.uuid(), pa.binary(16), uuid_pairs()),
    Kind(types.json(), pa.binary(), json_pairs(), canonical=canonical_json),
    Kind(types.inet(), pa.binary(), inet_pairs()),
    Kind(types.mac(), pa.binary(), mac_pairs()),
]

LEAF_KINDS: st.SearchStrategy[Kind] = st.one_of(
    st.sampled_from(INTEGERS + FLOATS + SCALARS + EXTENSIONS),
    fixed_size_binary_kinds(),
    time_kinds(),
    timestamp_kinds(),
    duration_kinds(),
    decimal_kinds(),
)


# --- nested kinds -----------------------------------------------------------------------------


def optional(kind: Kind) -> st.SearchStrategy[Pair]:
    return st.one_of(st.just((None, None)), kind.values)


def nested_canonical(kind: Kind, walk: Callable[[Any], Any]) -> Callable[[Any], Any] | None:
    return walk if kind.canonical is not None else None


@st.composite
def list_kinds(draw: st.DrawFn, items: st.SearchStrategy[Kind]) -> Kind:
    item = draw(items)
    make = draw(st.sampled_from([pa.list_, pa.large_list]))
    sequence = draw(st.sampled_from([list, tuple]))

    def values(pairs: list[Pair]) -> Pair:
        return sequence(p[0] for p in pairs), [p[1] for p in pairs]

    return Kind(
        make(item.column_type),
        make(item.storage_type),
        st.lists(optional(item), max_size=4).map(values),
        nested_canonical(item, lambda v: [item.canonical_value(x) for x in v]),
    )


@st.composite
def struct_kinds(draw: st.DrawFn, members: st.SearchStrategy[Kind]) -> Kind:
    fields = draw(st.lists(members, min_size=1, max_size=3))
    names = [f"f{index}" for index in range(len(fields))]

    @st.composite
    def values(draw_value: st.DrawFn) -> Pair:
        ours: dict[str, Any] = {}
        theirs: dict[str, Any] = {}
        for name, field in zip(names, fields, strict=True):
            ours_value, theirs_value = draw_value(optional(field))
            theirs[name] = theirs_value
            # A missing key is a null, for pyarrow and headwater alike.
            if ours_value is not None or draw_value(st.booleans()):
                ours[name] = ours_value
        # A struct is read from a dict, or by attribute from any other object.
        if draw_value(st.booleans()):
            return SimpleNamespace(**ours), theirs
        return ours, theirs

    def walk(value: dict[str, Any]) -> dict[str, Any]:
        return {n: f.canonical_value(value[n]) for n, f in zip(names, fields, strict=True)}

    has_json = any(f.canonical is not None for f in fields)
    return Kind(
        pa.struct(list(zip(names, (f.column_type for f in fields), strict=True))),
        pa.struct(list(zip(names, (f.storage_type for f in fields), strict=True))),
        values(),
        walk if has_json else None,
    )


@st.composite
def map_kinds(draw: st.DrawFn, items: st.SearchStrategy[Kind]) -> Kind:
    item = draw(items)
    as_pairs = draw(st.booleans())

    def values(entries: dict[str, Pair]) -> Pair:
        theirs = [(key, pair[1]) for key, pair in entries.items()]
        if as_pairs:
            return [(key, pair[0]) for key, pair in entries.items()], theirs
        return {key: pair[0] for key, pair in entries.items()}, theirs

    return Kind(
        pa.map_(pa.string(), item.column_type),
        pa.map_(pa.string(), item.storage_type),
        st.dictionaries(TEXT, optional(item), max_size=3).map(values),
        nested_canonical(item, lambda v: [(k, item.canonical_value(x)) for k, x in v]),
    )


def containers_of(inner: st.SearchStrategy[Kind]) -> st.SearchStrategy[Kind]:
    return st.one_of(list_kinds(inner), struct_kinds(inner), map_kinds(inner))


ONE_LEVEL = containers_of(LEAF_KINDS)
TWO_LEVELS = containers_of(LEAF_KINDS | ONE_LEVEL)
KINDS: st.SearchStrategy[Kind] = st.one_of(LEAF_KINDS, ONE_LEVEL, TWO_LEVELS)


# --- tables and rows --------------------------------------------------------------------------


class Case:
    """A random table, its plain storage schema, and rows for headwater and for pyarrow."""

    def __init__(
        self,
        table: hw.Table,
        kinds: list[Kind],
        storage_schema: pa.Schema,
        rows: list[dict[str, Any]],
        expected_rows: list[dict[str, Any]],
    ) -> None:
        self.table = table
        self.kinds = kinds
        self.storage_schema = storage_schema
        self.rows = rows  # for headwater; a missing key is a null
        self.expected_rows = expected_rows  # for pyarrow, every key present

    def full_rows(self) -> list[list[Any]]:
        return [[row.get(c.name) for c in self.table.columns] for row in self.rows]

    def as_dicts(self) -> list[dict[str, Any]]:
        return self.rows

    def as_full_dicts(self) -> list[dict[str, Any]]:
        # Every key, in column order: the rows the read-ahead fast path takes.
        names = [c.name for c in self.table.columns]
        return [dict(zip(names, values, strict=True)) for values in self.full_rows()]

    def as_tuples(self) -> list[tuple[Any, ...]]:
        return [tuple(values) for values in self.full_rows()]

    def as_dataclasses(self) -> list[Any]:
        names = [c.name for c in self.table.columns]
        row_class = dataclasses.make_dataclass("GeneratedRow", [(n, Any) for n in names])
        return [row_class(*values) for values in self.full_rows()]

    def __repr__(self) -> str:
        # What a failure report needs: the columns and the values headwater was given.
        columns = ", ".join(
            f"{c.name}: {c.type}{' not null' if c.not_null else ''}" for c in self.table.columns
        )
        return f"Case(columns=[{columns}], rows={self.rows!r})"


@st.composite
def cases(draw: st.DrawFn, kinds: st.SearchStrategy[Kind] = KINDS, max_columns: int = 5) -> Case:
    column_kinds = draw(st.lists(kinds, min_size=1, max_size=max_columns))
    not_null = draw(st.lists(st.booleans(), min_size=len(column_kinds), max_size=len(column_kinds)))
    names = [f"c{index}" for index in range(len(column_kinds))]
    table = hw.Table(
        "generated",
        [
            hw.Column(name, kind.column_type, not_null=flag)
            for name, kind, flag in zip(names, column_kinds, not_null, strict=True)
        ],
    )
    storage_schema = pa.schema(
        [
            pa.field(name, kind.storage_type, nullable=not flag)
            for name, kind, flag in zip(names, column_kinds, not_null, strict=True)
        ]
    )
    rows: list[dict[str, Any]] = []
    expected_rows: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 6))):
        row: dict[str, Any] = {}
        expected: dict[str, Any] = {}
        for name, kind, flag in zip(names, column_kinds, not_null, strict=True):
            ours, theirs = draw(kind.values if flag else optional(kind))
            expected[name] = theirs
            if ours is not None or draw(st.booleans()):
                row[name] = ours
        rows.append(row)
        expected_rows.append(expected)
    return Case(table, column_kinds, storage_schema, rows, expected_rows)


def as_storage(array: pa.Array, storage_type: pa.DataType) -> pa.Array:
    """The array with every extension type, nested ones included, seen as its storage type."""
    return array.view(storage_type)


def assert_matches_pyarrow(batch: pa.RecordBatch, case: Case) -> None:
    assert batch.schema.equals(case.table.arrow_schema, check_metadata=True)
    expected = pa.RecordBatch.from_pylist(case.expected_rows, schema=case.storage_schema)
    assert batch.num_rows == expected.num_rows
    for column, kind in zip(case.table.columns, case.kinds, strict=True):
        got = as_storage(batch.column(column.name), kind.storage_type)
        want = expected.column(column.name)
        if kind.canonical is None:
            assert got.equals(want), f"column {column.name}: {column.type}\n{got}\n!=\n{want}"
        else:
            assert got.null_count == want.null_count, column.name
            assert [kind.canonical_value(v) for v in got.to_pylist()] == [
                kind.canonical_value(v) for v in want.to_pylist()
            ], f"column {column.name}: {column.type}"


# --- properties -------------------------------------------------------------------------------

ROW_SHAPES: dict[str, Callable[[Case], list[Any]]] = {
    "dicts": Case.as_dicts,
    "full dicts": Case.as_full_dicts,
    "tuples": Case.as_tuples,
    "dataclasses": Case.as_dataclasses,
}


@pytest.mark.parametrize("shape", ROW_SHAPES)
@settings(max_examples=100, deadline=None)
@given(case=cases())
def test_rows_are_stored_exactly_as_pyarrow_stores_them(shape: str, case: Case) -> None:
    batch = hw.build_batch(case.table, ROW_SHAPES[shape](case))
    assert_matches_pyarrow(batch, case)


@settings(max_examples=100, deadline=None)
@given(case=cases(kinds=LEAF_KINDS, max_columns=8))
def test_every_leaf_type_is_stored_exactly_as_pyarrow_stores_it(case: Case) -> None:
    # More columns and no nesting: each scalar conversion gets many more draws than above.
    assert_matches_pyarrow(hw.build_batch(case.table, case.as_dicts()), case)


@settings(max_examples=50, deadline=None)
@given(case=cases())
def test_arrow_input_gives_the_same_batch_as_the_rows(case: Case) -> None:
    from_rows = hw.build_batch(case.table, case.as_dicts())
    from_arrow = hw.build_batch(case.table, from_rows.select(case.storage_schema.names))
    assert from_arrow.schema.equals(case.table.arrow_schema, check_metadata=True)
    for name in case.storage_schema.names:
        assert from_arrow.column(name).equals(from_rows.column(name)), name


EXTENSION_KINDS: st.SearchStrategy[Kind] = st.sampled_from(EXTENSIONS)
EXTENSION_TYPES = (types.UUIDType, types.JSONType, types.InetType, types.MACType)


def extension_leaves(data_type: pa.DataType) -> list[pa.DataType]:
    if isinstance(data_type, pa.BaseExtensionType):
        return [data_type]
    return [
        leaf
        for index in range(data_type.num_fields)
        for leaf in extension_leaves(data_type.field(index).type)
    ]


@settings(max_examples=50, deadline=None)
@given(case=cases(kinds=EXTENSION_KINDS | containers_of(EXTENSION_KINDS)))
def test_extension_types_round_trip_through_pyarrow_ipc(case: Case) -> None:
    batch = hw.build_batch(case.table, case.as_dicts())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    with pa.ipc.open_stream(sink.getvalue()) as reader:
        read = reader.read_all()

    assert read.schema.equals(case.table.arrow_schema, check_metadata=True)
    for name in case.storage_schema.names:
        column = read.column(name).combine_chunks()
        leaves = extension_leaves(column.type)
        assert leaves, column.type
        assert all(isinstance(leaf, EXTENSION_TYPES) for leaf in leaves), column.type
        assert column.type == batch.column(name).type
        assert column.equals(batch.column(name)), name
        assert column.to_pylist() == batch.column(name).to_pylist(), name


# --- discrepancies the properties found, pinned as plain examples -----------------------------


@pytest.mark.parametrize(
    ("unit", "value"),
    [
        ("s", dt.timedelta(days=106_751_992)),
        ("s", dt.timedelta.min),
        ("ms", dt.timedelta(days=999_999_999)),
        ("ms", dt.timedelta(days=-200_000_000)),
    ],
)
def test_durations_beyond_int64_microseconds_fit_coarser_units(
    unit: str, value: dt.timedelta
) -> None:
    # int64 microseconds end at about 106,751,991 days; seconds and milliseconds go further.
    table = hw.Table("durations", [hw.Column("d", pa.duration(unit))])
    expected = pa.array([value], pa.duration(unit))
    assert hw.build_batch(table, [{"d": value}]).column("d").equals(expected)
