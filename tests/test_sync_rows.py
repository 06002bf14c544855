"""What a resolver yields, and what becomes of it: the row its children receive, what is not
a row (a forgotten ``yield from`` or ``await``), strict tables, enum members, and how the
client shows in messages and logs."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import types as pytypes
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa
import pydantic
import pytest

import headwater as hw
from headwater.errors import NotARowError, PluginError, SchemaError
from sync_helpers import run_all

ID = hw.Column("id", pa.int64(), primary_key=True)
NAME = hw.Column("name", pa.string())


def plugin_of(*tables: hw.Table, **options: Any) -> hw.Plugin:
    return hw.Plugin(name="rows", version="1", tables=list(tables), **options)


# --- children receive the row as the resolver yielded it ---------------------------------------


class Repo:
    """An API object: two columns, and an attribute that is not one."""

    def __init__(self, id: int, name: str, api_url: str) -> None:
        self.id, self.name, self.api_url = id, name, api_url


def repos_with_child(resolver: Any, received: list[Any], **hooks: Any) -> tuple[hw.Table, hw.Table]:
    repos = hw.Table(
        "repos",
        [
            ID,
            NAME,
            hw.Column("slug", pa.string(), resolver=lambda client, row: f"{row.name}-{row.id}"),
        ],
        resolver=resolver,
        **hooks,
    )

    @repos.child("issues", columns=[hw.Column("url", pa.string())])
    def issues(client: Any, repo: Any) -> Iterator[dict[str, str]]:
        received.append(repo)
        yield {"url": f"{repo.api_url}/issues"}

    return repos, issues


def test_children_receive_the_yielded_object_despite_column_resolvers_and_post_row() -> None:
    yielded = [Repo(1, "one", "https://api/1"), Repo(2, "two", "https://api/2")]
    posted: list[Any] = []

    def post_row(client: Any, row: dict[str, Any]) -> dict[str, Any]:
        posted.append(row)
        return {**row, "name": row["name"].upper()}

    received: list[Any] = []
    repos, _ = repos_with_child(lambda client: iter(yielded), received, post_row=post_row)
    _, tables, errors = run_all(plugin_of(repos).sync())
    assert errors == []
    # The very objects yielded, with the attribute that is no column, not the dict of column
    # values the column resolvers and post_row made to store.
    assert sorted(map(id, received)) == sorted(map(id, yielded))
    assert sorted(tables["issues"]["url"].to_pylist()) == [
        "https://api/1/issues",
        "https://api/2/issues",
    ]
    assert sorted(tables["repos"]["slug"].to_pylist()) == ["one-1", "two-2"]
    assert sorted(tables["repos"]["name"].to_pylist()) == ["ONE", "TWO"]
    assert all(isinstance(row, dict) for row in posted)


def test_children_receive_dict_rows_as_yielded_in_pages_and_from_async_resolvers() -> None:
    first = {"id": 1, "name": "one", "api_url": "u1"}
    second = {"id": 2, "name": "two", "api_url": "u2"}

    async def resolve(client: Any) -> AsyncIterator[list[dict[str, Any]]]:
        await asyncio.sleep(0)
        yield [first, second]  # one page

    received: list[Any] = []
    repos = hw.Table(
        "repos",
        [ID, hw.Column("upper", pa.string(), resolver=lambda client, row: row["name"].upper())],
        resolver=resolve,
    )

    @repos.child("issues", columns=[hw.Column("url", pa.string())])
    def issues(client: Any, repo: dict[str, Any]) -> Iterator[dict[str, str]]:
        received.append(repo)
        yield {"url": repo["api_url"]}

    _, tables, errors = run_all(plugin_of(repos).sync())
    assert errors == []
    assert sorted(map(id, received)) == sorted([id(first), id(second)])
    assert all("upper" not in row for row in received)  # derived values are not added
    assert sorted(tables["issues"]["url"].to_pylist()) == ["u1", "u2"]
    assert sorted(tables["repos"]["upper"].to_pylist()) == ["ONE", "TWO"]


def test_a_row_pre_row_replaces_is_what_children_receive() -> None:
    replaced: list[Any] = []

    def pre_row(client: Any, row: Repo) -> Repo:
        normalised = Repo(row.id, row.name.strip(), row.api_url.rstrip("/"))
        replaced.append(normalised)
        return normalised

    def post_row(client: Any, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "name": "stored only"}

    received: list[Any] = []
    repos, _ = repos_with_child(
        lambda client: [Repo(1, " one ", "https://api/1/")],
        received,
        pre_row=pre_row,
        post_row=post_row,
    )
    _, tables, errors = run_all(plugin_of(repos).sync())
    assert errors == []
    assert received == replaced  # pre_row's object itself; post_row's dict stays in the table
    assert tables["issues"]["url"].to_pylist() == ["https://api/1/issues"]
    assert tables["repos"].select(["name", "slug"]).to_pylist() == [
        {"name": "stored only", "slug": "one-1"}
    ]


def test_a_pre_row_returning_none_keeps_the_row_for_children() -> None:
    yielded = Repo(1, "one", "u")
    touched: list[Any] = []
    received: list[Any] = []
    repos, _ = repos_with_child(
        lambda client: [yielded], received, pre_row=lambda client, row: touched.append(row)
    )
    _, _, errors = run_all(plugin_of(repos).sync())
    assert errors == []
    assert touched == [yielded] and received == [yielded]


# --- what is not a row: a forgotten yield from or await ----------------------------------------


def rows() -> Iterator[dict[str, int]]:
    yield {"id": 1}


@pytest.mark.parametrize("column", [ID, hw.Column("id", pa.int64(), not_null=True)])
@pytest.mark.parametrize("on_row_error", ["skip", "fail"])
def test_a_generator_yielded_as_a_row_fails_the_resolver_saying_yield_from(
    column: hw.Column, on_row_error: Any
) -> None:
    @hw.table("forgetful", columns=[column])
    def forgetful(client: Any) -> Iterator[Any]:
        yield rows()  # meant: yield from rows()

    run = plugin_of(forgetful).sync(on_row_error=on_row_error)
    _, tables, errors = run_all(run)
    [error] = errors
    assert isinstance(error.error, NotARowError) and isinstance(error.error, TypeError)
    assert str(error.error) == (
        "table 'forgetful', row 0: got a generator object of rows(...) where a row belongs; "
        "to yield the rows of another generator, write `yield from rows(...)` (or `yield "
        "list(rows(...))` to yield them as one page)"
    )
    # Never a row of nulls (a nullable column), never a skipped row: a failed resolver.
    assert tables["forgetful"].num_rows == 0
    assert run.summary.skipped_rows == {"forgetful": 0}
    assert run.summary.errors == {"forgetful": 1}


def test_a_forgotten_yield_from_in_a_table_with_row_hooks() -> None:
    def forgetful(client: Any) -> Iterator[Any]:
        yield rows()

    table = hw.Table(
        "hooked",
        [ID, hw.Column("twice", pa.int64(), resolver=lambda client, row: 2)],
        resolver=forgetful,
        pre_row=lambda client, row: None,
    )
    _, _, errors = run_all(plugin_of(table).sync())
    [error] = errors
    assert isinstance(error.error, NotARowError)
    assert "got a generator object of rows(...)" in str(error.error)


async def fetch() -> dict[str, int]:
    return {"id": 1}


async def arows() -> AsyncIterator[dict[str, int]]:
    yield {"id": 1}


def test_a_coroutine_yielded_as_a_row_says_await_it() -> None:
    async def forgetful(client: Any) -> AsyncIterator[Any]:
        yield fetch()  # meant: yield await fetch()

    # Closed by the engine: no "coroutine was never awaited" warning (an error here).
    _, _, errors = run_all(plugin_of(hw.Table("t", [ID], resolver=forgetful)).sync())
    [error] = errors
    assert isinstance(error.error, NotARowError)
    assert str(error.error) == (
        "table 't', row 0: got a coroutine object of fetch(...) where a row belongs; it was "
        "never awaited: write `yield await fetch(...)`"
    )


def test_an_async_generator_yielded_as_a_row_says_async_for() -> None:
    async def forgetful(client: Any) -> AsyncIterator[Any]:
        yield arows()

    _, _, errors = run_all(plugin_of(hw.Table("t", [ID], resolver=forgetful)).sync())
    [error] = errors
    assert isinstance(error.error, NotARowError)
    assert "got an async generator object of arows(...) where a row belongs" in str(error.error)
    assert "write `async for row in arows(...): yield row`" in str(error.error)


def test_an_iterator_in_a_page_or_in_build_batch() -> None:
    page_of_iterators = hw.Table("t", [ID], resolver=lambda client: [[map(dict, [])]])
    _, _, errors = run_all(plugin_of(page_of_iterators).sync())
    [error] = errors
    assert isinstance(error.error, NotARowError)
    assert "got an iterator (map) where a row belongs; to yield its rows" in str(error.error)
    with pytest.raises(NotARowError, match=r"table 't', row 1: got a generator object of rows"):
        hw.build_batch(hw.Table("t", [ID]), [{"id": 1}, rows()])
    # A code mistake, not bad data: not skipped either.
    with pytest.raises(NotARowError):
        hw.build_batch(hw.Table("t", [ID]), [rows()], on_error="skip")


def test_what_a_coroutine_resolver_returns_is_classified_as_a_threaded_ones() -> None:
    async def returns_str(client: Any) -> str:
        return "not rows"

    async def returns_pages(client: Any) -> list[list[dict[str, int]]]:
        return [[{"id": 1}, {"id": 2}], [{"id": 3}]]

    async def returns_one_row(client: Any) -> dict[str, int]:
        return {"id": 4}

    tables = [
        hw.Table("returns_str", [ID], resolver=returns_str),
        hw.Table("returns_pages", [ID], resolver=returns_pages),
        hw.Table("returns_one_row", [ID], resolver=returns_one_row),
    ]
    _, synced, errors = run_all(plugin_of(*tables).sync())
    [error] = errors
    assert error.table_name == "returns_str" and isinstance(error.error, NotARowError)
    assert "the resolver of table 'returns_str' returned a str" in str(error.error)
    assert sorted(synced["returns_pages"]["id"].to_pylist()) == [1, 2, 3]
    assert synced["returns_one_row"]["id"].to_pylist() == [4]


# --- strict tables -----------------------------------------------------------------------------


@dataclasses.dataclass
class Item:
    id: int
    name: str
    colour: str = "red"
    _cache: int = 0  # private: never reported


class ItemModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    id: int
    name: str


STRICT = hw.Table("items", [ID, NAME], strict=True)


def test_by_default_keys_that_match_no_column_are_dropped() -> None:
    lenient = hw.Table("items", [ID, NAME])
    batch = hw.build_batch(lenient, [{"id": 1, "name": "a", "nmae": "typo"}, Item(2, "b")])
    assert batch.select(["id", "name"]).to_pylist() == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
    ]


def test_a_strict_table_names_the_unknown_keys_and_its_columns() -> None:
    with pytest.raises(hw.RowError) as caught:
        hw.build_batch(STRICT, [{"id": 1, "name": "a"}, {"id": 2, "nmae": "b", "size": 3}])
    error = caught.value
    assert (error.table, error.column, error.row) == ("items", None, 1)
    assert str(error) == (
        "table 'items', row 1: expected only the table's columns, got dict "
        "{'id': 2, 'nmae': 'b', 'size': 3}: the table is strict, and keys 'nmae', 'size' match "
        "no column; its columns are id, name"
    )


def test_a_strict_table_checks_object_attributes_and_model_fields() -> None:
    with pytest.raises(hw.RowError, match=r"attribute 'colour' matches no column"):
        hw.build_batch(STRICT, [Item(1, "a")])
    with pytest.raises(hw.RowError, match=r"attribute 'size' matches no column"):
        hw.build_batch(STRICT, [ItemModel(id=1, name="a", size=3)])
    # Only the columns, or private attributes besides: fine.
    exact = dataclasses.make_dataclass("Exact", [("id", int), ("name", str), ("_seen", int)])
    assert hw.build_batch(STRICT, [exact(1, "a", 0), ItemModel(id=2, name="b")]).num_rows == 2
    # A mapping that is not a dict.
    with pytest.raises(hw.RowError, match=r"key 'other' matches no column"):
        hw.build_batch(STRICT, [pytypes.MappingProxyType({"id": 1, "other": 2})])
    # A row with a key missing is still fine: it is null.
    assert hw.build_batch(STRICT, [{"id": 1}]).column("name").to_pylist() == [None]


def test_a_strict_table_lists_at_most_ten_unknown_keys() -> None:
    row = {"id": 1, **{f"k{i:02}": i for i in range(12)}}
    with pytest.raises(hw.RowError, match=r"keys 'k00', .*'k09' and 2 more match no column"):
        hw.build_batch(STRICT, [row])


def test_strict_rows_follow_on_row_error(caplog: pytest.LogCaptureFixture) -> None:
    table = hw.Table(
        "items",
        [ID, NAME],
        resolver=lambda client: [{"id": 1, "name": "a"}, {"id": 2, "nmae": "b"}],
        strict=True,
    )
    with caplog.at_level(logging.WARNING, logger="headwater.sync"):
        run = plugin_of(table).sync()
        _, tables, errors = run_all(run)
    assert errors == [] and tables["items"]["id"].to_pylist() == [1]
    assert run.summary.skipped_rows == {"items": 1}
    assert "key 'nmae' matches no column; its columns are id, name" in caplog.text
    _, tables, errors = run_all(plugin_of(table).sync(on_row_error="fail"))
    [error] = errors
    assert isinstance(error.error, hw.RowError)
    assert "key 'nmae' matches no column" in str(error.error)


def test_the_plugin_sets_the_default_and_a_table_overrides_it() -> None:
    rows_with_extra = [{"id": 1, "name": "a", "extra": True}]
    inherits = hw.Table("inherits", [ID, NAME], resolver=lambda client: rows_with_extra)
    lenient = hw.Table("lenient", [ID, NAME], resolver=lambda client: rows_with_extra, strict=False)
    run = plugin_of(inherits, lenient, strict=True).sync()
    _, tables, _ = run_all(run)
    assert run.summary.skipped_rows == {"inherits": 1, "lenient": 0}
    assert tables["lenient"].num_rows == 1
    run = plugin_of(inherits).sync()  # the plugin's default: lenient
    run_all(run)
    assert run.summary.skipped_rows == {"inherits": 0}
    with pytest.raises(PluginError, match=r"strict must be a bool, got 'yes'"):
        plugin_of(inherits, strict="yes")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"table 't': strict must be a bool \(or None\)"):
        hw.Table("t", [ID], strict=1)  # type: ignore[arg-type]


def test_a_strict_table_refuses_arrow_data_with_other_columns() -> None:
    data = pa.table({"id": [1], "name": ["a"], "size": [3], "_cq_id": [None]})
    lenient = hw.Table("items", [ID, NAME])
    assert hw.build_batch(lenient, data).num_rows == 1
    message = (
        "table 'items' is strict, and the Arrow data's column 'size' matches no column; its "
        "columns are id, name"
    )
    with pytest.raises(SchemaError) as caught:
        hw.build_batch(STRICT, data)
    assert str(caught.value) == message
    table = hw.Table("items", [ID, NAME], resolver=lambda client: [data], strict=True)
    _, tables, errors = run_all(plugin_of(table).sync())
    [error] = errors
    assert isinstance(error.error, SchemaError) and str(error.error) == message
    assert tables["items"].num_rows == 0


def test_strict_with_column_resolvers_sees_the_rows_own_keys_and_attributes() -> None:
    columns = [ID, hw.Column("label", pa.string(), resolver=lambda client, row: "x")]
    for yielded, unknown in (({"id": 1, "extra": 2}, "key 'extra'"), (Item(1, "a"), "'name'")):
        table = hw.Table("t", columns, resolver=lambda client, r=yielded: [r], strict=True)
        run = plugin_of(table).sync(on_row_error="fail")
        _, _, errors = run_all(run)
        [error] = errors
        assert unknown in str(error.error) and "match" in str(error.error)


# --- enum members are stored as their value ----------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.Enum):
    SMALL = 1
    LARGE = 3


class Point(enum.Enum):
    ORIGIN = pytypes.SimpleNamespace(x=0, y=0)


def test_plain_enum_members_are_stored_as_their_value() -> None:
    table = hw.Table(
        "enums",
        [
            hw.Column("colour", pa.string()),
            hw.Column("size", pa.int64()),
            hw.Column("ratio", pa.float64()),
            hw.Column("colours", pa.list_(pa.string())),
            hw.Column("sizes", pa.map_(pa.string(), pa.int64())),
            hw.Column("point", pa.struct([("x", pa.int64()), ("y", pa.int64())])),
            hw.Column("shape", pa.struct([("size", pa.int64())])),
            hw.Column("doc", hw.types.json()),
        ],
    )
    row = {
        "colour": Colour.RED,
        "size": Size.LARGE,
        "ratio": Size.SMALL,
        "colours": [Colour.GREEN, Colour.RED],
        "sizes": {"a": Size.SMALL},
        "point": Point.ORIGIN,
        "shape": {"size": Size.LARGE},
        "doc": {"colour": Colour.GREEN},
    }
    # As a dict (the fast path declines enums), as an object (the general path), and as a
    # tuple.
    as_object = pytypes.SimpleNamespace(**row)
    batch = hw.build_batch(table, [row, as_object, tuple(row.values())])
    expected = {
        "colour": "red",
        "size": 3,
        "ratio": 1.0,
        "colours": ["green", "red"],
        "sizes": [("a", 1)],
        "point": {"x": 0, "y": 0},
        "shape": {"size": 3},
        "doc": {"colour": "green"},
    }
    assert batch.drop_columns(["_cq_id", "_cq_parent_id"]).to_pylist() == [expected] * 3


def test_an_enum_whose_value_does_not_fit_is_a_row_error_naming_the_member() -> None:
    table = hw.Table(
        "enums", [hw.Column("size", pa.int64()), hw.Column("tags", pa.list_(pa.string()))]
    )
    with pytest.raises(hw.RowError) as caught:
        hw.build_batch(table, [{"size": Colour.RED}])
    assert str(caught.value) == (
        "table 'enums', column 'size', row 0: expected int64, got Colour <Colour.RED: 'red'>: "
        "an Enum member is stored as its value, 'red', which does not fit: a str is not "
        "converted to a number; parse it first"
    )
    with pytest.raises(hw.RowError, match=r"column 'tags\[1\]'.*got Size <Size.SMALL: 1>"):
        hw.build_batch(table, [{"tags": ["a", Size.SMALL]}])


def test_a_model_with_a_plain_enum_syncs_through_columns_from_or_an_override() -> None:
    class Pull(pydantic.BaseModel):
        id: int
        colour: Colour
        size: Size

    derived = hw.columns_from(Pull)
    assert [c.type for c in derived] == [pa.int64(), pa.string(), pa.int64()]
    overridden = hw.columns_from(Pull, overrides={"size": pa.int32()})
    pulls = [Pull(id=1, colour=Colour.GREEN, size=Size.LARGE)]
    for columns in (derived, overridden):
        table = hw.Table("pulls", columns, resolver=lambda client: pulls)
        _, tables, errors = run_all(plugin_of(table).sync(on_row_error="fail"))
        assert errors == []
        assert tables["pulls"].select(["id", "colour", "size"]).to_pylist() == [
            {"id": 1, "colour": "green", "size": 3}
        ]


# --- the client in messages, logs and state keys -----------------------------------------------


class Spec(hw.Spec):
    region: str = "eu"


class Account:
    def __init__(self, id: str | None = None) -> None:
        if id is not None:
            self.id = id


def test_the_only_client_without_an_id_goes_unnamed(caplog: pytest.LogCaptureFixture) -> None:
    def fails(client: Any) -> Iterator[dict[str, int]]:
        yield {"id": 1}
        raise RuntimeError("boom")

    plugin = hw.Plugin(
        name="p", version="1", tables=[hw.Table("t", [ID], resolver=fails)], spec=Spec
    )
    with caplog.at_level(logging.DEBUG, logger="headwater.sync"):
        _, _, errors = run_all(plugin.sync({}))
    [error] = errors
    assert error.client_id is None
    assert error.message == "table 't': RuntimeError: boom"
    table_records = [r for r in caplog.records if getattr(r, "table", None) == "t"]
    assert table_records and all(not hasattr(r, "client") for r in table_records)
    assert "Spec#0" not in caplog.text


def test_clients_with_ids_or_several_clients_are_named(caplog: pytest.LogCaptureFixture) -> None:
    def fails(client: Any) -> Iterator[dict[str, int]]:
        raise RuntimeError("boom")
        yield

    table = hw.Table("t", [ID], resolver=fails)
    one_named = hw.Plugin(name="p", version="1", tables=[table], connect=lambda s: Account("acme"))
    _, _, errors = run_all(one_named.sync())
    assert [e.client_id for e in errors] == ["acme"]
    # Several clients without ids keep their positional names, which tell them apart.
    several = hw.Plugin(
        name="p",
        version="1",
        tables=[table],
        connect=lambda s: Account(),
        clients=lambda c: [Account(), Account()],
    )
    _, _, errors = run_all(several.sync())
    assert sorted(str(e.client_id) for e in errors) == ["Account#0", "Account#1"]


def test_state_stored_under_the_positional_id_still_resumes() -> None:
    seen: list[str | None] = []

    @hw.table("events", columns=[ID])
    def events(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        cursor = state.get("cursor")
        seen.append(cursor)
        assert state.stored_key("cursor") == "events/Spec#0/cursor"
        yield {"id": int(cursor or 0) + 1}
        state.set("cursor", str(int(cursor or 0) + 1))

    plugin = hw.Plugin(name="p", version="1", tables=[events], spec=Spec)
    # As an earlier headwater stored it, with the spec as the only client.
    run = plugin.sync({}, state={"events/Spec#0/cursor": "41"})
    messages, tables, errors = run_all(run)
    assert errors == [] and seen == ["41"]
    assert tables["events"]["id"].to_pylist() == [42]
    updates = [m for m in messages if isinstance(m, hw.StateUpdate)]
    assert [(u.key, u.value) for u in updates] == [("events/Spec#0/cursor", "42")]
    assert run.state == {"events/Spec#0/cursor": "42"}
