"""The fast paths for dict rows store exactly what the general conversion stores.

A list of dicts whose keys are the column names in column order is read by a fast path that
reads exact built-in values in place (and reads rows ahead); dicts in another order go by key;
other iterables go row by row; tuples take the general conversion alone. For every value
here, all four must give the same batch, or the same error.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import uuid
import zoneinfo
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from headwater import types

UTC = dt.UTC


def table(**columns: pa.DataType) -> hw.Table:
    return hw.Table("fast", [hw.Column(name, column_type) for name, column_type in columns.items()])


def build(t: hw.Table, rows: Iterable[Any], **options: Any) -> pa.RecordBatch | str:
    """The batch without its random ids, or the error raised, as text."""
    try:
        batch = hw.build_batch(t, rows, deterministic_cq_id=False, **options)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    batch.validate(full=True)
    return batch.drop_columns(["_cq_id", "_cq_parent_id"])


def every_way(t: hw.Table, rows: list[dict[str, Any]], **options: Any) -> list[Any]:
    names = [c.name for c in t.columns]
    reordered = [dict(reversed(list(row.items()))) for row in rows]
    tuples = [tuple(row.get(name) for name in names) for row in rows]
    return [
        build(t, rows, **options),  # the read-ahead fast path
        build(t, reordered, **options),  # by key
        build(t, iter(rows), **options),  # row by row
        build(t, tuples, **options),  # the general conversion only
    ]


def assert_same_every_way(t: hw.Table, rows: list[dict[str, Any]]) -> Any:
    results = every_way(t, rows)
    first = results[0]
    for other in results[1:]:
        if isinstance(first, str) or isinstance(other, str):
            assert first == other
        else:
            assert first.equals(other), f"{first.to_pylist()} != {other.to_pylist()}"
    return first


class Color(enum.IntEnum):
    RED = 1


class MyInt(int):
    def __index__(self) -> int:  # never consulted for an int subclass
        return 99


class MyFloat(float):
    pass


class MyStr(str):
    pass


class MyBytes(bytes):
    pass


class MyList(list):  # type: ignore[type-arg]
    pass


class MyDateTime(dt.datetime):
    pass


class MyDate(dt.date):
    pass


class Plus2(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=2)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)


class MyUUID(uuid.UUID):
    pass


def tampered_uuid(value: object) -> uuid.UUID:
    """A UUID whose `int` was replaced behind its back."""
    u = uuid.UUID(int=1)
    object.__setattr__(u, "int", value)
    return u


def deep_list(depth: int) -> list[Any]:
    """A list nested `depth` levels below the outermost one."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


VALUES: dict[str, tuple[pa.DataType, list[Any]]] = {
    "int64": (
        pa.int64(),
        [
            0,
            -1,
            2**63 - 1,
            -(2**63),
            2**63,
            -(2**63) - 1,
            2**100,
            True,
            False,
            3.0,
            3.5,
            Color.RED,
            MyInt(7),
            "3",
            None,
        ],
    ),
    "int8": (pa.int8(), [127, -128, 128, -129, True, 2**70, None]),
    "uint64": (pa.uint64(), [0, 2**63, 2**64 - 1, 2**64, -1, True, None]),
    "uint8": (pa.uint8(), [255, 256, -1, None]),
    "float64": (
        pa.float64(),
        [
            1.5,
            -0.0,
            float("inf"),
            3,
            2**53,
            2**53 + 1,
            2**63,
            2**64,
            True,
            MyFloat(2.5),
            "1.0",
            None,
        ],
    ),
    "float32": (pa.float32(), [0.5, 3.4e38, 1e39, -1e39, float("inf"), 2**24, 2**24 + 1, None]),
    "bool": (pa.bool_(), [True, False, 1, 0, None, "true"]),
    "string": (
        pa.string(),
        [
            "",
            "ascii",
            "é",
            "ÿ€",
            "€",
            "😀 wave 🌊",
            "\ud800",
            "a\udfffb",
            MyStr("sub"),
            5,
            b"bytes",
            None,
        ],
    ),
    "large_string": (pa.large_string(), ["x" * 100, "é", "\ud800", None]),
    "binary": (pa.binary(), [b"", b"\x00\xff", bytearray(b"ab"), MyBytes(b"s"), "str", None]),
    "fixed": (pa.binary(3), [b"abc", b"ab", MyBytes(b"xyz"), None]),
    "json": (
        types.json(),
        [
            b'{"a": [1, 2.5e3, true, null]}',
            '{"b": "\\u00e9"}',
            '"text"',
            "not json",
            b"\xff",
            b'"\xc3"',
            '"\xe9"',
            "[" * 100 + "]" * 100,
            "[" * 600 + "]" * 600,
            b"  1  ",
            b"",
            {"dict": [1, "two"]},
            MyStr("[1]"),
            MyBytes(b"[2]"),
            5,
            -2.5,
            True,
            (1, "tuple"),
            {"nested": {"deeper": [1, 2.5, None, True, False, "x", [], {}]}},
            {"escapes": 'quote" backslash\\ newline\n tab\t \x01 é 😀', "long key " * 5: 1},
            {1: "int key", -(2**63): "min"},
            {2**70: "big int key"},
            {True: "bool key"},
            {(1,): "tuple key"},
            {"\ud800": "surrogate key"},
            {"big": 2**70},
            {"nan": float("nan")},
            {"inf": float("-inf")},
            {"enum": Color.RED},
            {"sub": MyStr("s"), "float sub": MyFloat(1.5)},
            [MyList([1])],
            {"set": {1}},
            deep_list(256),
            deep_list(257),
            None,
        ],
    ),
    "uuid": (
        types.uuid(),
        [
            bytes(range(16)),
            bytes(15),
            uuid.UUID(int=5),
            uuid.UUID(int=2**128 - 1),
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            MyUUID(int=9),
            # The fast path reads a UUID's `int` slot in place; object.__setattr__ can put
            # anything there.
            tampered_uuid(-1),
            tampered_uuid(2**128),
            tampered_uuid(2**200),
            tampered_uuid("not an int"),
            tampered_uuid(MyInt(3)),
            "00000000-0000-0000-0000-000000000007",
            MyBytes(bytes(16)),
            None,
        ],
    ),
    "timestamp_us": (
        pa.timestamp("us", tz="UTC"),
        [
            dt.datetime(2024, 1, 2, 3, 4, 5, 6),
            dt.datetime(1, 1, 1, tzinfo=UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Oslo")),
            dt.datetime(2024, 1, 1, tzinfo=Plus2()),
            MyDateTime(2024, 5, 6, tzinfo=UTC),
            dt.date(2024, 1, 1),
            "2024-01-01T00:00:00Z",
            None,
        ],
    ),
    "timestamp_s": (
        pa.timestamp("s"),
        [dt.datetime(2024, 1, 1, 0, 0, 1), dt.datetime(2024, 1, 1, 0, 0, 1, 5), None],
    ),
    "timestamp_ns": (
        pa.timestamp("ns", tz="UTC"),
        [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2300, 1, 1, tzinfo=UTC), None],
    ),
    "date32": (
        pa.date32(),
        [
            dt.date(2024, 2, 29),
            dt.date(1, 1, 1),
            dt.datetime(2024, 1, 1),
            MyDate(2000, 1, 1),
            "2024-01-01",
            None,
        ],
    ),
    "list_string": (
        pa.list_(pa.string()),
        [
            ["a", "b"],
            ("a",),
            [],
            ["a", None],
            ["a", 5],
            ["\ud800"],
            ["é", "😀"],
            MyList(["m"]),
            {"a"},
            "ab",
            None,
        ],
    ),
    "list_int": (pa.list_(pa.int64()), [[1, 2], [1, None], [1, 2**63], (True,), [], None]),
    "large_list_nested": (
        pa.large_list(pa.list_(pa.string())),
        [[["a"], [], None], [["a", 1]], None],
    ),
}


@pytest.mark.parametrize("kind", VALUES)
def test_every_value_alone_gives_the_same_result_every_way(kind: str) -> None:
    column_type, values = VALUES[kind]
    t = table(v=column_type)
    for value in values:
        assert_same_every_way(t, [{"v": value}])


@pytest.mark.parametrize("kind", VALUES)
def test_every_value_amid_fast_rows_gives_the_same_result_every_way(kind: str) -> None:
    # The value in the middle of a run of plain rows, between two other columns, so a decline
    # or a fault happens half-way through a row that the read-ahead already looked past.
    column_type, values = VALUES[kind]
    t = table(before=pa.int64(), v=column_type, after=pa.string())
    plain = next(v for v in values if v is not None)
    rows = [{"before": i, "v": plain, "after": f"r{i}"} for i in range(100)]
    for value in values:
        rows[50] = {"before": 50, "v": value, "after": "middle"}
        assert_same_every_way(t, rows)
        errors: list[hw.RowError] = []
        skipped = build(t, rows, on_error="skip", errors=errors)
        by_row = build(t, iter(rows), on_error="skip")
        assert not isinstance(skipped, str) and not isinstance(by_row, str)
        assert skipped.equals(by_row)
        assert skipped.num_rows == 100 - len(errors)


def test_runs_of_rows_that_need_the_general_path_in_between() -> None:
    # Rows the fast path declines (a non-UTC datetime), rows it cannot read ahead (other key
    # order, missing keys, subclasses) and bad rows, scattered over several chunks.
    t = table(id=pa.int64(), at=pa.timestamp("us", tz="UTC"), tags=pa.list_(pa.string()))
    rows: list[Any] = []
    for i in range(20_000):
        row: Any = {"id": i, "at": dt.datetime(2024, 1, 1, tzinfo=UTC), "tags": ["a", f"t{i}"]}
        if i % 97 == 0:
            row["at"] = dt.datetime(2024, 1, 1, tzinfo=Plus2())
        if i % 301 == 0:
            row = {"tags": row["tags"], "id": i}
        if i % 1009 == 0:
            row = collections.OrderedDict(row)
        if i % 2003 == 0:
            row["id"] = "bad"
        if 5000 <= i < 9000:  # a long stretch the fast path always declines
            row["at"] = dt.datetime(2024, 1, 1, tzinfo=Plus2())
        rows.append(row)
    errors: list[hw.RowError] = []
    fast = build(t, rows, on_error="skip", errors=errors)
    by_row = build(t, iter(rows), on_error="skip")
    assert not isinstance(fast, str) and not isinstance(by_row, str)
    assert fast.equals(by_row)
    assert [e.row for e in errors] == [i for i in range(20_000) if i % 2003 == 0]
    assert build(t, rows) == build(t, iter(rows))  # the same first error when raising


def test_dict_subclasses_are_read_as_dicts() -> None:
    class Loud(dict):  # type: ignore[type-arg]
        def __getitem__(self, key: Any) -> Any:
            raise AssertionError("not consulted")

        def items(self) -> Any:
            raise AssertionError("not consulted")

    t = table(id=pa.int64(), name=pa.string())
    rows: list[Any] = [
        collections.OrderedDict([("id", 1), ("name", "a")]),
        collections.defaultdict(lambda: "default", {"id": 2}),  # a missing key is null
        Loud(id=3, name="c"),
    ]
    batch = build(t, rows)
    assert not isinstance(batch, str)
    assert batch.to_pylist() == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": None},
        {"id": 3, "name": "c"},
    ]
    assert batch.equals(build(t, iter(rows)))


def test_keys_equal_to_the_column_names_but_not_the_same_objects() -> None:
    t = table(id=pa.int64(), name=pa.string())
    key = "".join(["na", "me"])  # equal, not interned
    rows = [{"id": i, key: str(i)} for i in range(10)]
    batch = build(t, rows)
    assert not isinstance(batch, str)
    assert batch.column("name").to_pylist() == [str(i) for i in range(10)]


def test_a_row_dict_changed_by_user_code_mid_row() -> None:
    rows: list[dict[str, Any]] = []

    class Shrinking(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            rows[0].pop("name", None)
            return dt.timedelta(0)

    t = table(id=pa.int64(), at=pa.timestamp("us", tz="UTC"), name=pa.string())
    rows.append({"id": 1, "at": dt.datetime(2024, 1, 1, tzinfo=Shrinking()), "name": "x"})
    with pytest.raises(RuntimeError, match="dictionary changed size during iteration"):
        hw.build_batch(t, rows)

    class Replacing(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            rows[0]["name"] = "replaced"  # same size: the walk reads the new value
            return dt.timedelta(0)

    rows[0] = {"id": 1, "at": dt.datetime(2024, 1, 1, tzinfo=Replacing()), "name": "x"}
    assert hw.build_batch(t, rows).column("name").to_pylist() == ["replaced"]


def test_the_rows_list_changed_by_user_code() -> None:
    rows: list[dict[str, Any]] = []

    class Clearing(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            del rows[1:]
            return dt.timedelta(0)

    t = table(id=pa.int64(), at=pa.timestamp("us", tz="UTC"))
    plain = dt.datetime(2024, 1, 1, tzinfo=UTC)
    rows.extend({"id": i, "at": plain} for i in range(100))
    rows[3] = {"id": 3, "at": dt.datetime(2024, 1, 1, tzinfo=Clearing())}
    batch = hw.build_batch(t, rows)
    # Rows 0-3 were read (row 3 was held while it was read); then the list ends.
    assert batch.column("id").to_pylist() == [0, 1, 2, 3]


def test_a_key_whose_eq_changes_the_dict_during_a_lookup() -> None:
    class Meddler:
        def __init__(self, victim: dict[Any, Any]) -> None:
            self.victim = victim

        def __hash__(self) -> int:
            return hash("name")

        def __eq__(self, other: object) -> bool:
            self.victim.clear()
            self.victim.update(id=7, name="after")
            return False

    t = table(id=pa.int64(), name=pa.string())
    row: dict[Any, Any] = {"name": "before", "id": 1}
    row[Meddler(row)] = "meddler"
    batch = hw.build_batch(t, [row])
    assert batch.num_rows == 1
    assert batch.column("name").to_pylist()[0] in ("before", "after")


def test_lone_surrogates_in_str_are_row_errors() -> None:
    for column_type, value in [
        (pa.string(), "a\ud800"),
        (pa.list_(pa.string()), ["ok", "\udc00"]),
        (types.json(), '"\ud800"'),
    ]:
        t = table(v=column_type)
        with pytest.raises(hw.RowError, match="lone surrogate"):
            hw.build_batch(t, [{"v": value}])


def test_json_text_deeper_than_the_scanner_goes_is_still_checked_exactly() -> None:
    t = table(v=types.json())
    deep = "[" * 512 + "]" * 512
    assert hw.build_batch(t, [{"v": deep}]).num_rows == 1
    with pytest.raises(hw.RowError, match="nested too deeply"):
        hw.build_batch(t, [{"v": "[" * 513 + "]" * 513}])
    with pytest.raises(hw.RowError, match=r"not valid JSON text \(expected a value at byte 100\)"):
        hw.build_batch(t, [{"v": "[" * 100 + "}" + "]" * 100}])


def test_the_benchmark_rows_every_way() -> None:
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    t = hw.Table(
        "bench_like",
        [
            hw.Column("id", pa.int64(), primary_key=True),
            hw.Column("name", pa.string()),
            hw.Column("score", pa.float64()),
            hw.Column("active", pa.bool_()),
            hw.Column("updated_at", pa.timestamp("us", tz="UTC")),
            hw.Column("tags", pa.list_(pa.string())),
            hw.Column("attributes", types.json()),
            hw.Column("external_id", types.uuid()),
        ],
    )
    rows = [
        {
            "id": i,
            "name": f"item-{i}",
            "score": i / 3,
            "active": i % 2 == 0,
            "updated_at": start + dt.timedelta(seconds=i),
            "tags": ["alpha", f"t{i % 10}"],
            "attributes": json.dumps({"size": i % 100}).encode(),
            "external_id": uuid.UUID(int=i).bytes,
        }
        for i in range(3000)
    ]
    batch = hw.build_batch(t, rows)
    one_pass = hw.build_batch(t, iter(rows))
    assert batch.equals(one_pass)
    assert batch.column("name")[2999].as_py() == "item-2999"
    assert batch.column("updated_at")[1].as_py() == start + dt.timedelta(seconds=1)


def test_dicts_of_every_table_layout_read_in_place_as_by_the_c_api() -> None:
    # Row and JSON dicts are read straight from their entry table when it is combined with
    # str keys; holes left by deletions, wide index arrays, non-str keys (another layout) and
    # split tables (an instance's __dict__, read through the C API) must all read the same.
    class Attributes:
        def __init__(self) -> None:
            self.env = "prod"
            self.tier = 2

    def with_hole(**entries: Any) -> dict[str, Any]:
        row = {"dropped": 0, **entries}
        del row["dropped"]
        return row

    wide = {f"key{i}": i for i in range(300)}  # 2-byte indices
    del wide["key7"]
    shrunk = {f"k{i}": i for i in range(40)}
    for i in range(38):
        del shrunk[f"k{i}"]
    json_values = [
        wide,
        shrunk,
        with_hole(a=1, b=[1, {"c": None}]),
        {1: "int key", "s": "str key"},
        vars(Attributes()),
        {},
    ]
    t = table(n=pa.int64(), doc=types.json(), name=pa.string())
    rows = [with_hole(n=i, doc=doc, name=f"row{i}") for i, doc in enumerate(json_values)]
    rows.append({"n": 99, "doc": wide, "name": "plain"})
    result = assert_same_every_way(t, rows)
    docs = result.column("doc").to_pylist()
    assert docs[0] == wide
    assert docs[1] == {"k38": 38, "k39": 39}
    assert docs[3] == {"1": "int key", "s": "str key"}
    assert docs[4] == {"env": "prod", "tier": 2}
    assert result.column("name").to_pylist() == [f"row{i}" for i in range(6)] + ["plain"]
