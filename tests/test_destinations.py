"""Every destination and mode, against real DuckDB files, Parquet/JSON-lines files read back
with pyarrow, and a real PostgreSQL server: modes, migrations, delete-stale, state, types."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import headwater as hw
from headwater.destinations import parse_url
from headwater.destinations.run import sync_to
from headwater.errors import DestinationError, MigrationError
from local_helpers import (
    ITEM_COLUMNS,
    KINDS,
    column_types,
    ids_of,
    items_plugin,
    read_rows,
    stored_state,
    url_for,
)


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    def postgres() -> str:
        value: str = request.getfixturevalue("postgres_url")
        return value

    return url_for(request.param, tmp_path, postgres)


def test_append_writes_every_row_with_sync_columns_and_parent_links(url: str) -> None:
    result = sync_to(items_plugin(), url)
    assert result.rows == {"items": 10, "item_parts": 20}
    assert result.complete and result.failed_tables == []
    items = read_rows(url, "items")
    assert [r["id"] for r in items] == list(range(10))
    assert {r["_cq_source_name"] for r in items} == {"items"}
    assert all(r["_cq_sync_time"] is not None for r in items)
    assert items[3]["name"] == "item-3-v1"
    parts = read_rows(url, "item_parts")
    by_id = {str(r["_cq_id"]): r["id"] for r in items}
    assert all(by_id[str(p["_cq_parent_id"])] == p["item_id"] for p in parts)
    sync_to(items_plugin(), url, mode="append")
    assert ids_of(url) == sorted(list(range(10)) * 2)


def test_a_large_arrow_batch_arrives_whole_and_in_order(url: str) -> None:
    # PostgreSQL sends it as several COPY chunks; every destination must keep every row.
    n = 25_000
    data = pa.table({"id": pa.array(range(n), pa.int64()), "name": [f"n{i}" for i in range(n)]})
    table = hw.Table(
        "items",
        [hw.Column("id", pa.int64(), primary_key=True), hw.Column("name", pa.string())],
        resolver=lambda client: data,
    )
    result = sync_to(hw.Plugin(name="items", version="1", tables=[table]), url)
    assert result.rows == {"items": n} and result.complete
    rows = read_rows(url, "items")
    assert len(rows) == n
    assert sorted((r["id"], r["name"]) for r in rows) == [(i, f"n{i}") for i in range(n)]


def test_overwrite_replaces_the_rows_of_earlier_syncs(url: str) -> None:
    sync_to(items_plugin(range(10)), url, mode="overwrite")
    sync_to(items_plugin(range(5, 8), version=2), url, mode="overwrite")
    rows = read_rows(url, "items")
    assert [r["id"] for r in rows] == [5, 6, 7]
    assert {r["name"] for r in rows} == {"item-5-v2", "item-6-v2", "item-7-v2"}
    assert len(read_rows(url, "item_parts")) == 6


def test_overwrite_keeps_the_old_rows_of_a_table_that_failed(url: str) -> None:
    sync_to(items_plugin(range(10), parts=False), url, mode="overwrite")
    result = sync_to(items_plugin(range(20, 30), fail_after=3, parts=False), url, mode="overwrite")
    assert result.failed_tables == ["items"]
    assert ids_of(url) == list(range(10))


def test_upsert_replaces_rows_with_the_same_primary_key(url: str) -> None:
    if url.startswith("jsonl"):
        with pytest.raises(DestinationError, match="mode 'upsert' is not supported here"):
            sync_to(items_plugin(), url, mode="upsert")
        return
    sync_to(items_plugin(range(10)), url, mode="upsert")
    # The same key twice within one sync: the last one wins.
    sync_to(items_plugin([*range(5, 15), 7], version=2), url, mode="upsert")
    rows = read_rows(url, "items")
    assert [r["id"] for r in rows] == list(range(15))
    assert [r["name"].endswith("v2") for r in rows] == [False] * 5 + [True] * 10
    parts = read_rows(url, "item_parts")
    # item 7 came twice, its parts too: each is stored once
    assert len({(p["item_id"], p["part"]) for p in parts}) == len(parts) == 30


def test_a_plain_rerun_of_a_full_refresh_sync_leaves_one_copy(url: str) -> None:
    # The default mode: tables with a primary key are upserted (JSON lines, which cannot
    # upsert, are overwritten), so running the same sync again does not double them.
    first = sync_to(items_plugin(range(10)), url)
    assert first.rows == {"items": 10, "item_parts": 20} and first.complete
    sync_to(items_plugin(range(10)), url)
    sync_to(items_plugin(range(10), version=2), url)
    rows = read_rows(url, "items")
    assert [r["id"] for r in rows] == list(range(10))
    assert {r["name"] for r in rows} == {f"item-{i}-v2" for i in range(10)}
    parts = read_rows(url, "item_parts")
    assert sorted((p["item_id"], p["part"]) for p in parts) == [
        (i, part) for i in range(10) for part in (1, 2)
    ]


def test_the_default_appends_to_a_table_without_a_primary_key(url: str) -> None:
    # Its _cq_id is random, so nothing identifies a row again; JSON lines overwrite instead.
    table = hw.Table(
        "events",
        [hw.Column("n", pa.int64())],
        resolver=lambda client: ({"n": n} for n in range(3)),
    )
    plugin = hw.Plugin(name="items", version="1", tables=[table])
    sync_to(plugin, url)
    sync_to(plugin, url)
    copies = 1 if url.startswith("jsonl") else 2
    assert ids_of(url, "events", "n") == sorted(list(range(3)) * copies)


def test_delete_stale_removes_this_sources_rows_of_earlier_syncs(url: str) -> None:
    sync_to(items_plugin(range(10)), url, mode="append")
    sync_to(items_plugin(range(100, 103)), url, mode="append", source_name="other")
    sync_to(items_plugin(range(5, 8)), url, mode="append", delete_stale=True)
    assert ids_of(url) == [5, 6, 7, 100, 101, 102]
    # A table that failed keeps its stale rows: its sync did not see them all.
    plugin = items_plugin(range(50, 60), fail_after=2, parts=False)
    sync_to(plugin, url, mode="append", delete_stale=True)
    assert ids_of(url) == [5, 6, 7, 50, 51, 100, 101, 102]


def family(version: int, fail: str | None = None) -> hw.Plugin:
    """``accounts`` (clients ``a`` and ``b``) -> ``projects`` -> ``tasks``, ``accounts`` ->
    ``notes``, and ``labels`` on its own; every value says the sync's ``version``.

    Args:
        version: Written into every row.
        fail: A table whose resolver fails for client ``b`` after its first row, or
            ``"bad-row"``: ``accounts`` yields a row that does not fit it for client ``b``.
    """
    columns = [hw.Column("name", pa.string())]

    def rows(table: str, client: str, prefix: str, count: int) -> Iterator[dict[str, Any]]:
        for n in range(count):
            if client == "b" and n == 1:
                if table == fail:
                    raise RuntimeError(f"{table} failed for client b")
                if fail == "bad-row" and table == "accounts":
                    yield {"name": object()}  # no string: a row error
            yield {"name": f"{prefix}.{n}-v{version}"}

    def under(row: dict[str, Any]) -> str:
        return str(row["name"]).rsplit("-v", 1)[0]

    accounts = hw.Table(
        "accounts",
        columns,
        resolver=lambda client: rows("accounts", client, client, 2),
        clients=lambda client: ["a", "b"],
    )
    projects = hw.Table(
        "projects",
        columns,
        parent=accounts,
        resolver=lambda client, row: rows("projects", client, under(row), 2),
    )
    hw.Table(
        "tasks",
        columns,
        parent=projects,
        resolver=lambda client, row: rows("tasks", client, under(row), 2),
    )
    hw.Table(
        "notes",
        columns,
        parent=accounts,
        resolver=lambda client, row: rows("notes", client, under(row), 1),
    )
    labels = hw.Table("labels", columns, resolver=lambda client: rows("labels", "-", "l", 3))
    return hw.Plugin(name="family", version="1", tables=[accounts, labels])


def names(url: str, table: str) -> list[str]:
    return sorted(row["name"] for row in read_rows(url, table))


FAMILY = ("accounts", "projects", "tasks", "notes", "labels")


@pytest.mark.parametrize(
    ("fail", "on_row_error", "protected"),
    [
        # a parent fails: its child keeps its rows, the parent's sibling is replaced
        ("projects", "skip", {"projects", "tasks"}),
        # a grandparent fails: everything below it keeps its rows
        ("accounts", "skip", {"accounts", "projects", "tasks", "notes"}),
        # a row that does not fit fails its resolver under on_row_error="fail"
        ("bad-row", "fail", {"accounts", "projects", "tasks", "notes"}),
    ],
)
def test_overwrite_keeps_the_rows_of_tables_below_a_failed_one(
    url: str, fail: str, on_row_error: str, protected: set[str]
) -> None:
    sync_to(family(1), url, mode="overwrite")
    before = {table: names(url, table) for table in FAMILY}
    assert len(before["tasks"]) == 16
    result = sync_to(family(2, fail), url, mode="overwrite", on_row_error=on_row_error)
    assert not set(result.failed_tables) - protected
    assert set(result.incomplete_tables) == protected
    for table in FAMILY:
        if table in protected:
            assert names(url, table) == before[table], table
        else:  # replaced, whole
            assert names(url, table) == [n.replace("-v1", "-v2") for n in before[table]], table


@pytest.mark.parametrize(
    ("fail", "protected"),
    [("projects", {"projects", "tasks"}), ("accounts", {"accounts", "projects", "tasks", "notes"})],
)
def test_delete_stale_keeps_the_rows_of_tables_below_a_failed_one(
    url: str, fail: str, protected: set[str]
) -> None:
    sync_to(family(1), url)
    before = {table: names(url, table) for table in FAMILY}
    sync_to(family(2, fail), url, delete_stale=True)
    for table in FAMILY:
        after = names(url, table)
        if table in protected:  # the old rows stay, beside what the failed sync wrote
            assert set(before[table]) <= set(after), table
            assert any(n.endswith("-v2") for n in after), table
        else:  # the stale rows are gone
            assert after == [n.replace("-v1", "-v2") for n in before[table]], table


def test_incremental_state_is_stored_with_the_data_and_resumed(url: str) -> None:
    @hw.table("events", columns=[hw.Column("id", pa.int64(), primary_key=True)])
    def events(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        start = int(state.get("events", "0"))
        for i in range(start, start + 50):
            yield {"id": i}
            if i % 10 == 9:
                state.set("events", str(i + 1))

    plugin = hw.Plugin(name="items", version="1", tables=[events])
    first = sync_to(plugin, url, commit_interval=0)
    assert first.state == {"events/default/events": "50"}
    assert stored_state(url) == {"events/default/events": "50"}
    sync_to(plugin, url, delete_stale=True)  # incremental tables keep their rows
    assert ids_of(url, "events") == list(range(100))
    assert stored_state(url) == {"events/default/events": "100"}
    # overwrite syncs from scratch, and replaces the state with its own
    sync_to(plugin, url, mode="overwrite")
    assert ids_of(url, "events") == list(range(50))
    assert stored_state(url) == {"events/default/events": "50"}


def test_new_columns_are_added_and_type_changes_refused(url: str) -> None:
    # Appends, so that rows from before the new column stay beside those after it.
    sync_to(items_plugin(range(3), parts=False), url, mode="append")
    wider = [*ITEM_COLUMNS, hw.Column("extra", pa.int64())]
    sync_to(items_plugin(range(3, 5), columns=wider, version=9, parts=False), url, mode="append")
    rows = read_rows(url, "items")
    assert [r.get("extra") for r in rows] == [None, None, None, 9, 9]

    changed = [*ITEM_COLUMNS[:1], hw.Column("name", pa.int64()), *ITEM_COLUMNS[2:]]
    with pytest.raises(MigrationError) as info:
        sync_to(items_plugin(range(3), columns=changed, parts=False), url)
    assert info.value.table == "items" and info.value.column == "name"
    assert "--migrate-force" in str(info.value)
    assert ids_of(url) == list(range(5))  # nothing written
    result = sync_to(
        items_plugin(range(7, 9), columns=changed, version=4, parts=False), url, migrate_force=True
    )
    assert result.rows == {"items": 2}
    assert [(r["id"], r["name"]) for r in read_rows(url, "items")] == [(7, 4), (8, 4)]


def test_types_map_faithfully(url: str) -> None:
    sync_to(items_plugin(range(3), parts=False), url)
    rows = read_rows(url, "items")
    if url.startswith("duckdb") or url.startswith("postgresql"):
        found = column_types(url, "items")
        if url.startswith("duckdb"):
            expected = {
                "_cq_id": "UUID",
                "owner": "UUID",
                "attrs": "JSON",
                "tags": "VARCHAR[]",
                "seen_at": "TIMESTAMP WITH TIME ZONE",
                "_cq_sync_time": "TIMESTAMP WITH TIME ZONE",
                "address": "VARCHAR",
                "mac": "VARCHAR",
            }
        else:
            expected = {
                "_cq_id": "uuid",
                "owner": "uuid",
                "attrs": "jsonb",
                "tags": "text[]",
                "seen_at": "timestamp with time zone",
                "address": "inet",
                "mac": "text",
            }
        assert {k: found[k] for k in expected} == expected
    row = rows[2]
    owner = row["owner"]
    owner = uuid.UUID(bytes=owner) if isinstance(owner, bytes) else uuid.UUID(str(owner))
    assert owner == uuid.UUID(int=3)
    assert row["tags"] == ["a", "t2"]
    if url.startswith("parquet"):
        schema = pq.read_schema(next((Path(parse_url(url).path) / "items").glob("*.parquet")))
        assert schema.field("owner").type == pa.uuid()
        assert schema.field("attrs").type == pa.json_()
        assert schema.field("seen_at").type == pa.timestamp("us", tz="UTC")
        assert schema.metadata[b"cq:table_name"] == b"items"
    elif url.startswith("jsonl"):
        assert row["attrs"] == {"i": 2, "nested": {"v": 1}}
        assert row["address"] == "192.0.2.2/24"
        assert row["mac"] == "aa:bb:cc:00:00:02"
        assert row["owner"] == str(uuid.UUID(int=3))
    elif url.startswith("duckdb"):
        assert row["mac"] == "aa:bb:cc:00:00:02"
        assert row["address"] == "192.0.2.2/24"


def test_file_rotation_by_rows(tmp_path: Path) -> None:
    url = f"parquet://{tmp_path / 'out'}?max_file_rows=4&row_group_rows=2"
    sync_to(items_plugin(range(10), parts=False), url, batch_max_rows=2, coalesce_rows=1)
    files = sorted((tmp_path / "out" / "items").glob("*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [4, 4, 2]
    assert pq.read_table(tmp_path / "out" / "items").num_rows == 10
    url = f"parquet://{tmp_path / 'bytes'}?max_file_bytes=1&row_group_rows=5"
    sync_to(items_plugin(range(10), parts=False), url, batch_max_rows=5, coalesce_rows=1)
    files = sorted((tmp_path / "bytes" / "items").glob("*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [5, 5]
    url = f"jsonl://{tmp_path / 'lines'}?max_file_rows=3"
    sync_to(items_plugin(range(10), parts=False), url, batch_max_rows=3, coalesce_rows=1)
    files = sorted((tmp_path / "lines" / "items").glob("*.jsonl"))
    assert [len(f.read_text().splitlines()) for f in files] == [3, 3, 3, 1]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("mysql://x@localhost/db", "unknown URL scheme 'mysql'"),
        ("headwater.duckdb", "is not a URL"),
        ("duckdb://", "names no file"),
        ("parquet:///tmp/x?rows=3", "bad options"),
        ("duckdb:///tmp/x.duckdb?threads=3", "takes no options"),
    ],
)
def test_bad_urls_are_refused(bad: str, message: str) -> None:
    with pytest.raises(DestinationError, match=message):
        sync_to(items_plugin(), bad)


def test_urls_and_passwords() -> None:
    assert parse_url("duckdb:///./x.duckdb").path == "./x.duckdb"
    assert parse_url("duckdb:///abs/x.duckdb").path == "/abs/x.duckdb"
    assert parse_url("duckdb://rel.duckdb").path == "rel.duckdb"
    assert parse_url("duckdb:///:memory:").path == ":memory:"
    assert sync_to(items_plugin(range(4)), "duckdb:///:memory:").rows["items"] == 4
    assert parse_url("parquet:///d?max_file_rows=5").query == {"max_file_rows": "5"}
    with pytest.raises(DestinationError, match="cannot connect") as info:
        sync_to(items_plugin(), "postgresql://me:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(info.value)
    assert "me:***@127.0.0.1:1" in str(info.value)


def test_a_users_exception_passes_through_and_nothing_is_committed(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def connect(spec: Any) -> Any:
        raise Boom("from the plugin's own code")

    plugin = items_plugin()
    plugin.connect = connect
    url = f"duckdb://{tmp_path / 'x.duckdb'}"
    with pytest.raises(Boom):
        sync_to(plugin, url)


def test_postgres_table_locked_by_another_session(postgres_url: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    sync_to(items_plugin(range(2), parts=False), postgres_url)
    locker = pg.connect(postgres_url)
    try:
        with locker.cursor() as cur:
            cur.execute('LOCK TABLE "items" IN ACCESS EXCLUSIVE MODE')
            url = postgres_url + "?options=-c%20lock_timeout%3D500"
            with pytest.raises(DestinationError, match="locked by another session"):
                sync_to(items_plugin(range(2), parts=False), url)
    finally:
        locker.rollback()
        locker.close()
    assert ids_of(postgres_url) == [0, 1]


def test_nested_values(url: str) -> None:
    point = pa.struct([("x", pa.int64()), ("owner", hw.types.uuid())])
    columns = [
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("point", point),
        hw.Column("points", pa.list_(point)),
        hw.Column("owners", pa.list_(hw.types.uuid())),
        hw.Column("docs", pa.list_(hw.types.json())),
    ]
    owner = uuid.UUID(int=7)

    @hw.table("shapes", columns=columns)
    def shapes(client: Any) -> Iterator[dict[str, Any]]:
        for i in range(3):
            yield {
                "id": i,
                "point": {"x": i, "owner": owner},
                "points": [{"x": i, "owner": owner}, {"x": -i, "owner": None}],
                "owners": [owner, None],
                "docs": [{"a": i}, [1, 2]],
            }
        yield {"id": 3, "point": None, "points": None, "owners": None, "docs": None}

    sync_to(hw.Plugin(name="shapes", version="1", tables=[shapes]), url)
    rows = read_rows(url, "shapes")
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    assert rows[3]["point"] is None and rows[3]["points"] is None
    point_value = rows[1]["point"]
    if isinstance(point_value, str):  # PostgreSQL: jsonb text
        point_value = json.loads(point_value)
    assert point_value["x"] == 1
    assert point_value["owner"] in (owner, owner.bytes, str(owner))
    if url.startswith("postgresql"):
        found = column_types(url, "shapes")
        assert found["point"] == "jsonb" and found["points"] == "jsonb"
        assert found["owners"] == "jsonb" and found["docs"] == "jsonb"
    elif url.startswith("duckdb"):
        found = column_types(url, "shapes")
        assert found["owners"] == "UUID[]"
        assert found["docs"] == "JSON[]"
        assert found["point"].startswith("STRUCT(x BIGINT") and "UUID" in found["point"]


def test_tables_waiting_to_be_written_share_one_byte_budget(tmp_path: Path) -> None:
    import datetime as dt

    from headwater.destinations import open_destination
    from headwater.destinations.base import DestinationTable, WriteOptions
    from headwater.destinations.run import _Coalescer

    def rows(client: Any) -> Iterator[dict[str, Any]]:
        yield from ({"id": i, "text": "x" * 100} for i in range(2_000))

    tables = [
        hw.Table(
            f"wide_{n}",
            [hw.Column("id", pa.int64()), hw.Column("text", pa.string())],
            resolver=rows,
        )
        for n in range(6)
    ]
    plugin = hw.Plugin(name="wide", version="1", tables=tables)
    url = f"duckdb://{tmp_path / 'wide.duckdb'}"
    destination = open_destination(url)
    destination.write_batch_bytes = budget = 100_000  # a 2,000-row table holds ~250 kB
    options = WriteOptions(source_name="wide", sync_time=dt.datetime.now(dt.UTC))
    destination.prepare([DestinationTable(t, t.arrow_schema, False) for t in tables], options)
    batches = _Coalescer(destination, rows=1_000_000)  # only bytes make it write
    held, largest = 0, 0
    for message in plugin.sync(batch_max_rows=50, strategy="round-robin"):
        if isinstance(message, hw.Insert):
            batches.write(message.table_name, message.batch)
            held, largest = max(held, batches.held_bytes), max(largest, message.batch.nbytes)
    batches.flush()
    destination.finish([t.name for t in tables], [])
    destination.close()
    assert batches.held_bytes == 0
    assert 0 < held < budget, (held, budget)  # each table alone never reached the budget
    assert largest * 6 < budget  # batches were small: tables filled side by side
    for table in tables:
        assert len(read_rows(url, table.name)) == 2_000


@pytest.mark.parametrize("scheme", ["parquet", "jsonl"])
def test_a_directory_another_sync_writes_into_is_refused(scheme: str, tmp_path: Path) -> None:
    from headwater.destinations import open_destination

    url = f"{scheme}://{tmp_path / 'out'}"
    first = open_destination(url)
    try:
        with pytest.raises(DestinationError, match="another sync is writing into") as refused:
            open_destination(url)
        assert "lock file" in str(refused.value)
    finally:
        first.close()
    open_destination(url).close()  # free again once the first is closed


def test_a_table_with_a_reserved_name_is_refused_before_anything_is_written(url: str) -> None:
    # Table() refuses the name; a table that got one anyway (here by hand) meets the
    # destination's own guard, before it touches the state table or the manifest.
    sync_to(items_plugin(range(3), parts=False), url)
    scheme, _, rest = url.partition("://")
    manifest = Path(rest) / "_headwater_state.json"
    before = (
        manifest.read_bytes()
        if scheme in ("parquet", "jsonl")
        else column_types(url, "_headwater_state")
    )
    sneaky = hw.Table("sneaky", [hw.Column("key", pa.string())], resolver=lambda client: [])
    sneaky._name = "_headwater_state"
    plugin = hw.Plugin(name="items", version="1", tables=[sneaky])
    with pytest.raises(
        DestinationError,
        match=r"table '_headwater_state' cannot be written: names starting with '_headwater_' "
        r"are reserved for headwater's internal tables \(incremental state, staging\); nothing "
        r"was written",
    ):
        sync_to(plugin, url)
    after = (
        manifest.read_bytes()
        if scheme in ("parquet", "jsonl")
        else column_types(url, "_headwater_state")
    )
    assert after == before
    assert not (Path(rest) / "_headwater_state").exists()
    assert ids_of(url) == [0, 1, 2]
