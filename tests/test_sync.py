"""The sync engine end to end: messages, ids, resolver kinds, hooks, clients, limits."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa
import pydantic
import pytest

import headwater as hw
from sync_helpers import run_all

ID = hw.Column("id", pa.int64(), primary_key=True)


def tree(depth: int, fan_out: int = 2) -> hw.Table:
    """A chain of `depth` tables, each row of one having `fan_out` children in the next."""
    top = hw.Table(
        "level_0",
        [ID, hw.Column("path", pa.string())],
        resolver=lambda client: ({"id": i, "path": str(i)} for i in range(fan_out)),
    )
    parent = top
    for level in range(1, depth):
        parent = hw.Table(
            f"level_{level}",
            [ID, hw.Column("path", pa.string())],
            parent=parent,
            resolver=lambda client, row: (
                {"id": i, "path": f"{row['path']}.{i}"} for i in range(fan_out)
            ),
        )
    return top


def test_messages_ids_and_parent_links_four_levels_deep() -> None:
    plugin = hw.Plugin(name="deep", version="1.0.0", tables=[tree(5)])
    run = plugin.sync()
    messages, tables, errors = run_all(run)
    assert errors == []
    names = [f"level_{i}" for i in range(5)]
    # A MigrateTable for every table, before any insert.
    first_insert = next(i for i, m in enumerate(messages) if isinstance(m, hw.Insert))
    assert [m.table.name for m in messages[:first_insert]] == names
    assert all(isinstance(m, hw.MigrateTable) for m in messages[:first_insert])
    assert all(m.schema.equals(m.table.arrow_schema, check_metadata=True) for m in messages[:5])
    for level, name in enumerate(names):
        assert tables[name].num_rows == 2 ** (level + 1)
        assert tables[name].schema.equals(plugin.get_table(name).arrow_schema)
    # Every child row points at its parent row: the parent with the path's prefix.
    for level in range(1, 5):
        parents = tables[f"level_{level - 1}"].to_pylist()
        by_path = {p["path"]: p["_cq_id"] for p in parents}
        for row in tables[f"level_{level}"].to_pylist():
            assert row["_cq_parent_id"] == by_path[row["path"].rsplit(".", 1)[0]]
    assert tables["level_0"].column("_cq_parent_id").null_count == 2
    assert run.summary.rows == {name: 2 ** (i + 1) for i, name in enumerate(names)}
    assert run.summary.complete
    assert run.summary.total_errors == 0


def test_primary_key_ids_are_deterministic_and_match_build_batch() -> None:
    top = tree(2)
    plugin = hw.Plugin(name="ids", version="1", tables=[top])
    _, first, _ = run_all(plugin.sync(deterministic_cq_id=False))
    _, second, _ = run_all(plugin.sync())
    for name in ("level_0", "level_1"):
        assert sorted(first[name].column("_cq_id").to_pylist()) == sorted(
            second[name].column("_cq_id").to_pylist()
        )
    expected = hw.build_batch(top, [{"id": 0, "path": "0"}, {"id": 1, "path": "1"}])
    assert sorted(first["level_0"].column("_cq_id").to_pylist()) == sorted(
        expected.column("_cq_id").to_pylist()
    )


def test_tables_without_primary_key_get_random_v4_ids() -> None:
    @hw.table("plain", columns=[hw.Column("x", pa.int64())])
    def plain(client: Any) -> Iterator[dict[str, int]]:
        yield from ({"x": 1} for _ in range(100))

    _, tables, _ = run_all(hw.Plugin(name="p", version="1", tables=[plain]).sync())
    ids = tables["plain"].column("_cq_id").to_pylist()
    assert len(set(ids)) == 100
    assert {i.version for i in ids} == {4}


class Repo(pydantic.BaseModel):
    id: int = pydantic.Field(json_schema_extra={"primary_key": True})
    name: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_every_kind_of_resolver_and_item() -> None:
    columns = [hw.Column("id", pa.int64()), hw.Column("name", pa.string())]

    @hw.table("from_generator", columns=columns)
    def from_generator(client: Any) -> Iterator[Any]:
        yield {"id": 1, "name": "dict"}
        yield (2, "tuple")
        yield [{"id": 3, "name": "page"}, (4, "page")]
        yield pa.record_batch({"id": [5], "name": ["batch"]})
        yield pa.table({"id": [6, 7], "name": ["table", "table"]})
        yield []  # an empty page

    @hw.table("from_list", columns=columns)
    def from_list() -> list[dict[str, Any]]:
        return [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]

    @hw.table("from_none", columns=columns)
    def from_none(client: Any) -> None:
        return None

    @hw.table("from_one_dict", columns=columns)
    def from_one_dict(client: Any) -> dict[str, Any]:
        return {"id": 1, "name": "one"}

    @hw.table("from_arrow", columns=columns)
    def from_arrow(client: Any) -> pa.Table:
        return pa.table({"id": [1, 2, 3], "name": ["x", "y", "z"]})

    @hw.table("from_models", model=Repo)
    def from_models(client: Any) -> Iterator[Repo]:
        yield Repo(id=1, name="model")
        yield Repo(id=2, name="model")

    @hw.table("from_one_model", model=Repo)
    def from_one_model(client: Any) -> Repo:
        return Repo(id=1, name="single")

    @hw.table("from_dataclasses", model=Point)
    def from_dataclasses(client: Any) -> Iterator[Point]:
        yield from (Point(i, -i) for i in range(3))

    @hw.table("from_async_gen", columns=columns)
    async def from_async_gen(client: Any) -> AsyncIterator[Any]:
        for i in range(3):
            await asyncio.sleep(0)
            yield {"id": i, "name": "async"}
        yield [(10, "page"), (11, "page")]
        yield pa.record_batch({"id": [12], "name": ["batch"]})

    @hw.table("from_coroutine", columns=columns)
    async def from_coroutine(client: Any) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return [{"id": 1, "name": "awaited"}, {"id": 2, "name": "awaited"}]

    plugin = hw.Plugin(
        name="kinds",
        version="1",
        tables=[
            from_generator,
            from_list,
            from_none,
            from_one_dict,
            from_arrow,
            from_models,
            from_one_model,
            from_dataclasses,
            from_async_gen,
            from_coroutine,
        ],
    )
    run = plugin.sync()
    _, tables, errors = run_all(run)
    assert errors == []
    assert sorted(tables["from_generator"].column("id").to_pylist()) == [1, 2, 3, 4, 5, 6, 7]
    assert tables["from_list"].num_rows == 2
    assert tables["from_none"].num_rows == 0
    assert tables["from_one_dict"].num_rows == 1
    assert tables["from_arrow"].num_rows == 3
    assert sorted(tables["from_models"].column("name").to_pylist()) == ["model", "model"]
    assert tables["from_one_model"].column("name").to_pylist() == ["single"]
    assert sorted(tables["from_dataclasses"].column("y").to_pylist()) == [-2, -1, 0]
    assert sorted(tables["from_async_gen"].column("id").to_pylist()) == [0, 1, 2, 10, 11, 12]
    assert tables["from_coroutine"].num_rows == 2
    assert run.summary.total_errors == 0


def test_arrow_data_in_a_parent_table_starts_children_with_ids() -> None:
    @hw.table("arrow_parent", columns=[ID])
    def parent(client: Any) -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"id": pa.array([1, 2, 3], pa.int64())})

    @parent.child("arrow_child", columns=[hw.Column("parent_id", pa.int64())])
    def child(client: Any, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        assert isinstance(row["_cq_id"], uuid.UUID)
        yield {"parent_id": row["id"]}

    _, tables, errors = run_all(hw.Plugin(name="a", version="1", tables=[parent]).sync())
    assert errors == []
    ids = {row["id"]: row["_cq_id"] for row in tables["arrow_parent"].to_pylist()}
    for row in tables["arrow_child"].to_pylist():
        assert row["_cq_parent_id"] == ids[row["parent_id"]]


def test_async_children_and_parents_with_many_rows() -> None:
    @hw.table("async_parent", columns=[ID])
    async def parent(client: Any) -> AsyncIterator[dict[str, int]]:
        for i in range(300):
            yield {"id": i}

    @parent.child("async_child", columns=[ID])
    async def child(client: Any, row: dict[str, int]) -> AsyncIterator[dict[str, int]]:
        await asyncio.sleep(0)
        yield {"id": row["id"] * 10}

    plugin = hw.Plugin(name="a", version="1", tables=[parent])
    # A small concurrency and task queue, so the parent has to wait for its children.
    _, tables, errors = run_all(plugin.sync(concurrency=2))
    assert errors == []
    assert sorted(tables["async_child"]["id"].to_pylist()) == [i * 10 for i in range(300)]


def test_children_receive_the_row_as_yielded() -> None:
    seen: list[Any] = []

    @hw.table("models", model=Repo)
    def models(client: Any) -> Iterator[Repo]:
        yield Repo(id=7, name="seven")

    @models.child("details", columns=[hw.Column("text", pa.string())])
    def details(client: Any, repo: Repo) -> Iterator[dict[str, str]]:
        seen.append(repo)
        yield {"text": repo.name}

    run_all(hw.Plugin(name="m", version="1", tables=[models]).sync())
    assert seen == [Repo(id=7, name="seven")]


def test_clients_multiplex_top_level_tables() -> None:
    @dataclasses.dataclass(frozen=True)
    class Account:
        id: str

    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def resolver_for(name: str) -> Any:
        def resolve(client: Account) -> Iterator[dict[str, str]]:
            with lock:
                calls.append((name, client.id))
            yield {"account": client.id}

        return resolve

    columns = [hw.Column("account", pa.string())]
    per_account = hw.table("per_account", columns=columns)(resolver_for("per_account"))
    global_table = hw.table("global", columns=columns, clients=lambda c: [Account("global")])(
        resolver_for("global")
    )
    plugin = hw.Plugin(
        name="multi",
        version="1",
        tables=[per_account, global_table],
        connect=lambda spec: "root",
        clients=lambda root: [Account("a"), Account("b"), Account("c")],
    )
    _, tables, _ = run_all(plugin.sync(concurrency=1))
    assert sorted(tables["per_account"]["account"].to_pylist()) == ["a", "b", "c"]
    assert tables["global"]["account"].to_pylist() == ["global"]
    assert calls == [
        ("per_account", "a"),
        ("per_account", "b"),
        ("per_account", "c"),
        ("global", "global"),
    ]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("dfs", ["t1:a", "t1:b", "t2:a", "t2:b", "t3:a", "t3:b"]),
        ("round-robin", ["t1:a", "t2:a", "t3:a", "t1:b", "t2:b", "t3:b"]),
    ],
)
def test_strategies_order_the_top_level_tasks(strategy: str, expected: list[str]) -> None:
    order: list[str] = []

    def make(name: str) -> hw.Table:
        def resolve(client: str) -> Iterator[dict[str, int]]:
            order.append(f"{name}:{client}")
            yield {"id": 1}

        return hw.table(name, columns=[ID])(resolve)

    plugin = hw.Plugin(
        name="s",
        version="1",
        tables=[make("t1"), make("t2"), make("t3")],
        clients=lambda _: ["a", "b"],
    )
    run_all(plugin.sync(strategy=strategy, concurrency=1))  # type: ignore[arg-type]
    assert order == expected


def test_shuffle_is_a_repeatable_permutation() -> None:
    order: list[str] = []

    def make(name: str) -> hw.Table:
        def resolve(client: str) -> Iterator[dict[str, int]]:
            order.append(f"{name}:{client}")
            yield {"id": 1}

        return hw.table(name, columns=[ID])(resolve)

    tables = [make(f"t{i}") for i in range(8)]
    plugin = hw.Plugin(name="s", version="1", tables=tables, clients=lambda _: ["a", "b"])
    orders = []
    for seed in (1, 1, 2):
        order.clear()
        run_all(plugin.sync(strategy="shuffle", shuffle_seed=seed, concurrency=1))
        orders.append(list(order))
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == sorted(orders[2])
    assert orders[0] != orders[2]


def test_column_resolvers_and_row_hooks() -> None:
    def pre_row(client: Any, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "name": row["name"].upper()}

    def post_row(client: Any, row: dict[str, Any]) -> None:
        row["checked"] = True

    table = hw.Table(
        "hooked",
        [
            ID,
            hw.Column("name", pa.string()),
            hw.Column("name_length", pa.int64(), resolver=lambda client, row: len(row["name"])),
            hw.Column("client", pa.string(), resolver=lambda client, row: client),
            hw.Column("checked", pa.bool_()),
        ],
        resolver=lambda client: iter([{"id": 1, "name": "abc"}, [{"id": 2, "name": "de"}]]),
        pre_row=pre_row,
        post_row=post_row,
    )
    plugin = hw.Plugin(name="h", version="1", tables=[table], connect=lambda spec: "the-client")
    _, tables, errors = run_all(plugin.sync())
    assert errors == []
    assert sorted(
        tables["hooked"].select(["id", "name", "name_length", "client", "checked"]).to_pylist(),
        key=lambda r: r["id"],
    ) == [
        {"id": 1, "name": "ABC", "name_length": 3, "client": "the-client", "checked": True},
        {"id": 2, "name": "DE", "name_length": 2, "client": "the-client", "checked": True},
    ]


def test_column_resolvers_read_objects_by_attribute() -> None:
    table = hw.Table(
        "points",
        [
            hw.Column("x", pa.int64()),
            hw.Column("y", pa.int64()),
            hw.Column("sum", pa.int64(), resolver=lambda client, p: p.x + p.y),
        ],
        resolver=lambda client: [Point(1, 2), Point(3, 4)],
    )
    _, tables, _ = run_all(hw.Plugin(name="p", version="1", tables=[table]).sync())
    assert sorted(tables["points"]["sum"].to_pylist()) == [3, 7]


def test_the_spec_is_the_default_client() -> None:
    class Spec(hw.Spec):
        prefix: str

    @hw.table("named", columns=[hw.Column("name", pa.string())])
    def named(spec: Spec) -> Iterator[dict[str, str]]:
        yield {"name": spec.prefix + "1"}

    plugin = hw.Plugin(name="p", version="1", tables=[named], spec=Spec)
    _, tables, _ = run_all(plugin.sync({"prefix": "x-"}))
    assert tables["named"]["name"].to_pylist() == ["x-1"]
    _, tables, _ = run_all(plugin.sync('{"prefix": "json-"}'))
    assert tables["named"]["name"].to_pylist() == ["json-1"]


def test_concurrency_limits_are_respected() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(3, timeout=10)

    def resolve(client: int) -> Iterator[dict[str, int]]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            if client < 3:
                gate.wait()  # the first three run together, proving 3 can
            yield {"id": client}
        finally:
            with lock:
                running -= 1

    table = hw.table("limited", columns=[ID])(resolve)
    plugin = hw.Plugin(name="c", version="1", tables=[table], clients=lambda _: list(range(12)))
    _, tables, errors = run_all(plugin.sync(concurrency=3))
    assert errors == []
    assert tables["limited"].num_rows == 12
    assert peak == 3


def test_table_concurrency_limit() -> None:
    running: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    def make(name: str) -> hw.Table:
        def resolve(client: int) -> Iterator[dict[str, int]]:
            with lock:
                running[name] += 1
                peak[name] = max(peak[name], running[name])
            threading.Event().wait(0.01)
            with lock:
                running[name] -= 1
            yield {"id": client}

        return hw.table(name, columns=[ID])(resolve)

    plugin = hw.Plugin(
        name="c", version="1", tables=[make("a"), make("b")], clients=lambda _: list(range(8))
    )
    run_all(plugin.sync(concurrency=8, table_concurrency=2))
    assert max(peak.values()) <= 2


def test_depth_concurrency_limit() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    @hw.table("roots", columns=[ID])
    def roots(client: Any) -> Iterator[dict[str, int]]:
        yield from ({"id": i} for i in range(20))

    @roots.child("leaves", columns=[ID])
    def leaves(client: Any, row: dict[str, int]) -> Iterator[dict[str, int]]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.005)
        with lock:
            running -= 1
        yield {"id": row["id"]}

    plugin = hw.Plugin(name="d", version="1", tables=[roots])
    _, tables, _ = run_all(plugin.sync(concurrency=8, depth_concurrency=[8, 2]))
    assert tables["leaves"].num_rows == 20
    assert peak <= 2


def test_a_slow_resolver_streams_rows_within_the_latency() -> None:
    received = threading.Event()

    @hw.table("slow", columns=[ID])
    def slow(client: Any) -> Iterator[dict[str, int]]:
        yield {"id": 1}
        # The batch holding row 1 must reach the consumer while this resolver still runs.
        assert received.wait(timeout=30), "the first row was not delivered while waiting"
        yield {"id": 2}

    run = hw.Plugin(name="s", version="1", tables=[slow]).sync(batch_max_latency=0.05)
    rows = []
    for message in run:
        if isinstance(message, hw.Insert):
            rows += message.batch["id"].to_pylist()
            received.set()
    assert rows == [1, 2]
    assert run.summary.errors == {"slow": 0}


def test_batches_are_cut_at_max_rows() -> None:
    @hw.table("many", columns=[ID])
    def many(client: Any) -> Iterator[dict[str, int]]:
        yield from ({"id": i} for i in range(2500))

    run = hw.Plugin(name="m", version="1", tables=[many]).sync(batch_max_rows=1000)
    sizes = [m.batch.num_rows for m in run if isinstance(m, hw.Insert)]
    assert sorted(sizes) == [500, 1000, 1000]


def test_batches_are_cut_at_max_bytes() -> None:
    text = "x" * 1000

    @hw.table("wide", columns=[ID, hw.Column("text", pa.string())])
    def wide(client: Any) -> Iterator[dict[str, Any]]:
        yield from ({"id": i, "text": text} for i in range(1000))

    run = hw.Plugin(name="w", version="1", tables=[wide]).sync(batch_max_bytes=100_000)
    sizes = [m.batch.num_rows for m in run if isinstance(m, hw.Insert)]
    assert sum(sizes) == 1000
    # About 100 rows of 1 kB make 100 kB; the size is checked every 64 rows.
    assert max(sizes) <= 128
    assert len(sizes) >= 8
