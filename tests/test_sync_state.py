"""Incremental state: resolvers read and set keys; updates follow the rows they cover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from sync_helpers import run_all

ID = hw.Column("id", pa.int64(), primary_key=True)


def covered(messages: list[Any], table: str) -> list[tuple[int, int]]:
    """For every state update of `table`: (its value, the highest id delivered before it)."""
    seen = -1
    checks = []
    for message in messages:
        if isinstance(message, hw.Insert) and message.table_name == table:
            ids = message.batch.column("id").to_pylist()
            seen = max([seen, *ids])
        elif isinstance(message, hw.StateUpdate) and message.table_name == table:
            checks.append((int(message.value), seen))
    return checks


def test_a_state_update_follows_the_rows_before_it() -> None:
    @hw.table("events", columns=[ID])
    def events(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        start = int(state.get("events_cursor", "-1")) + 1
        for i in range(start, start + 5000):
            yield {"id": i}
            if i % 100 == 99:
                state.set("events_cursor", str(i))

    plugin = hw.Plugin(name="s", version="1", tables=[events])
    # Small batches and a short latency, so the timer flushes concurrently with the updates.
    run = plugin.sync(batch_max_rows=64, batch_max_latency=0.001)
    messages, tables, errors = run_all(run)
    assert errors == []
    checks = covered(messages, "events")
    assert len(checks) == 50
    assert all(value <= seen for value, seen in checks), checks
    assert run.state == {"events/default/events_cursor": "4999"}
    # A second sync resumes from the cursor it is given.
    run = plugin.sync(state=run.state)
    _, tables, _ = run_all(run)
    assert tables["events"]["id"].to_pylist()[0] == 5000
    assert run.state == {"events/default/events_cursor": "9999"}


def test_state_with_async_and_child_resolvers() -> None:
    @hw.table("parents", columns=[ID])
    async def parents(client: Any, state: hw.State) -> AsyncIterator[dict[str, int]]:
        for i in range(300):
            await asyncio.sleep(0)
            yield {"id": i}
            if i % 50 == 49:
                state.set("parents", str(i))

    @parents.child("kids", columns=[ID])
    def kids(client: Any, parent: dict[str, int], state: hw.State) -> Iterator[dict[str, int]]:
        yield {"id": parent["id"]}
        state.set(f"kid-{parent['id']}", str(parent["id"]))
        assert state.table_name == "kids"
        assert state.client_id == "default"

    run = hw.Plugin(name="s", version="1", tables=[parents]).sync(batch_max_rows=32)
    messages, _, errors = run_all(run)
    assert errors == []
    assert all(value <= seen for value, seen in covered(messages, "parents"))
    for message in messages:
        if isinstance(message, hw.StateUpdate) and message.table_name == "kids":
            assert message.key == f"kids/default/kid-{message.value}"
    assert len(run.state) == 300 + 1
    assert run.state["parents/default/parents"] == "299"


def test_initial_state_is_readable() -> None:
    seen: dict[str, Any] = {}

    @hw.table("reader", columns=[ID])
    def reader(client: Any, *, state: hw.State) -> Iterator[dict[str, int]]:
        seen["cursor"] = state.get("cursor")
        seen["missing"] = state.get("missing")
        seen["default"] = state.get("missing", "fallback")
        seen["stored_as"] = state.stored_key("cursor")
        yield {"id": 1}

    start = {"reader/default/cursor": "41"}
    run = hw.Plugin(name="s", version="1", tables=[reader]).sync(state=start)
    run_all(run)
    assert seen == {
        "cursor": "41",
        "missing": None,
        "default": "fallback",
        "stored_as": "reader/default/cursor",
    }
    assert run.state == start


def test_state_values_must_be_strings() -> None:
    @hw.table("typed", columns=[ID])
    def typed(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        yield {"id": 1}
        state.set("cursor", 42)

    _, _, errors = run_all(hw.Plugin(name="s", version="1", tables=[typed]).sync())
    [error] = errors
    assert isinstance(error.error, TypeError)
    assert "state values are str, got int 42 for key 'cursor'" in str(error.error)
    plugin = hw.Plugin(name="s", version="1", tables=[typed])
    with pytest.raises(TypeError, match="state keys and values are str"):
        plugin.sync(state={"cursor": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="state must be a mapping"):
        plugin.sync(state=[("a", "b")])  # type: ignore[arg-type]


def test_a_resolver_without_state_gets_none_passed() -> None:
    @hw.table("plain", columns=[ID])
    def plain(client: Any) -> Iterator[dict[str, int]]:
        yield {"id": 1}

    assert not plain.resolver_wants_state
    run = hw.Plugin(name="s", version="1", tables=[plain]).sync(state={"k": "v"})
    messages, _, _ = run_all(run)
    assert not any(isinstance(m, hw.StateUpdate) for m in messages)
    assert run.state == {"k": "v"}


# --- keys belong to a table and a client ---------------------------------------------------


def test_two_tables_and_two_clients_keep_their_own_cursor() -> None:
    """One table's cursor never skips another's rows, nor one client's another client's."""
    seen: list[tuple[str, str, str | None]] = []

    def resolver(name: str) -> Any:
        def resolve(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
            seen.append((name, client.id, state.get("cursor")))
            start = int(state.get("cursor", "0"))
            step = 10 if name == "fast" else 3
            yield from ({"id": i} for i in range(start, start + step))
            state.set("cursor", str(start + step))

        return resolve

    fast = hw.table("fast", columns=[ID])(resolver("fast"))
    slow = hw.table("slow", columns=[ID])(resolver("slow"))

    class Client:
        def __init__(self, id: str) -> None:
            self.id = id

    plugin = hw.Plugin(
        name="s",
        version="1",
        tables=[fast, slow],
        connect=lambda spec: Client("root"),
        clients=lambda client: [Client("a"), Client("b")],
    )
    run = plugin.sync()
    _, tables, errors = run_all(run)
    assert errors == []
    assert run.state == {
        "fast/a/cursor": "10",
        "fast/b/cursor": "10",
        "slow/a/cursor": "3",
        "slow/b/cursor": "3",
    }
    assert all(cursor is None for _, _, cursor in seen)

    seen.clear()
    run = plugin.sync(state=run.state)
    _, tables, _ = run_all(run)
    assert sorted(seen) == [
        ("fast", "a", "10"),
        ("fast", "b", "10"),
        ("slow", "a", "3"),
        ("slow", "b", "3"),
    ]
    assert sorted(tables["slow"]["id"].to_pylist()) == [3, 3, 4, 4, 5, 5]


def test_get_never_returns_another_tasks_write() -> None:
    """`get` reads the start value or what this table and client set, not a sibling's write."""
    import threading

    wrote = threading.Event()
    seen: dict[str, str | None] = {}

    @hw.table("writer", columns=[ID])
    def writer(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        yield {"id": 1}
        state.set("cursor", "from-writer")
        state.set("token", "shared-value", shared=True)
        wrote.set()

    @hw.table("reader", columns=[ID])
    def reader(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        assert wrote.wait(10)
        seen["cursor"] = state.get("cursor")
        seen["shared"] = state.get("token", shared=True)
        state.set("cursor", "mine")
        seen["own"] = state.get("cursor")
        yield {"id": 2}

    plugin = hw.Plugin(name="s", version="1", tables=[writer, reader])
    run = plugin.sync(state={"reader/default/cursor": "start"}, concurrency=2)
    _, _, errors = run_all(run)
    assert errors == []
    assert seen == {"cursor": "start", "shared": "shared-value", "own": "mine"}
    assert run.state == {
        "writer/default/cursor": "from-writer",
        "reader/default/cursor": "mine",
        "token": "shared-value",
    }


def test_state_stored_unscoped_by_an_earlier_version_is_still_read() -> None:
    """A key stored as given (the old layout) is read until the scoped one is written."""
    seen: list[str | None] = []

    @hw.table("events", columns=[ID])
    def events(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        seen.append(state.get("cursor"))
        start = int(state.get("cursor", "0"))
        yield {"id": start}
        state.set("cursor", str(start + 1))

    plugin = hw.Plugin(name="s", version="1", tables=[events])
    run = plugin.sync(state={"cursor": "7"})
    run_all(run)
    assert run.state == {"cursor": "7", "events/default/cursor": "8"}
    run_all(plugin.sync(state=run.state))
    assert seen == ["7", "8"]


def test_set_after_the_resolver_returned_is_an_error() -> None:
    kept: list[hw.State] = []

    @hw.table("events", columns=[ID])
    def events(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        kept.append(state)
        yield {"id": 1}

    run_all(hw.Plugin(name="s", version="1", tables=[events]).sync())
    with pytest.raises(RuntimeError, match=r"after the resolver of table 'events' returned"):
        kept[0].set("cursor", "1")


# --- a parent's update waits for its children ----------------------------------------------


def _position(messages: list[Any]) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """When each parent's last child row arrived, and (position, value) of parent updates."""
    last_child: dict[int, int] = {}
    updates: list[tuple[int, int]] = []
    for position, message in enumerate(messages):
        if isinstance(message, hw.Insert) and message.table_name in ("kids", "grandkids"):
            for parent in message.batch.column("root").to_pylist():
                last_child[parent] = position
        elif isinstance(message, hw.StateUpdate) and message.table_name == "parents":
            updates.append((position, int(message.value)))
    return last_child, updates


ROOT = hw.Column("root", pa.int64())


def _family(*, slow_kids: bool, fail_kid: int | None = None, asynchronous: bool = False) -> Any:
    """parents (incremental, a state update every 10 rows) -> kids -> grandkids."""
    import time

    @hw.table("parents", columns=[ID])
    def parents(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        start = int(state.get("cursor", "-1")) + 1
        for i in range(start, start + 100):
            yield {"id": i}
            if i % 10 == 9:
                state.set("cursor", str(i))

    kid_columns = [hw.Column("id", pa.int64(), primary_key=True), ROOT]

    if asynchronous:

        @parents.child("kids", columns=kid_columns)
        async def kids(client: Any, parent: dict[str, int]) -> AsyncIterator[dict[str, int]]:
            for n in range(3):
                await asyncio.sleep(0.001 if slow_kids else 0)
                if parent["id"] == fail_kid:
                    raise RuntimeError("kid resolver failed")
                yield {"id": parent["id"] * 10 + n, "root": parent["id"]}

    else:

        @parents.child("kids", columns=kid_columns)
        def kids(client: Any, parent: dict[str, int]) -> Iterator[dict[str, int]]:
            for n in range(3):
                if slow_kids:
                    time.sleep(0.001)
                if parent["id"] == fail_kid:
                    raise RuntimeError("kid resolver failed")
                yield {"id": parent["id"] * 10 + n, "root": parent["id"]}

    @kids.child("grandkids", columns=kid_columns)
    def grandkids(client: Any, kid: dict[str, int]) -> Iterator[dict[str, int]]:
        if slow_kids:
            time.sleep(0.002)
        yield {"id": kid["id"], "root": kid["root"]}

    return hw.Plugin(name="s", version="1", tables=[parents])


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threaded", "async"])
def test_a_parents_update_follows_every_row_of_its_children(asynchronous: bool) -> None:
    """A cursor over parents never becomes durable before their children's rows (any depth)."""
    plugin = _family(slow_kids=True, asynchronous=asynchronous)
    run = plugin.sync(batch_max_rows=8, batch_max_latency=0.001, concurrency=8)
    messages, tables, errors = run_all(run)
    assert errors == []
    assert tables["kids"].num_rows == 300
    assert tables["grandkids"].num_rows == 300
    last_child, updates = _position(messages)
    assert [value for _, value in updates] == list(range(9, 100, 10))
    for position, value in updates:
        late = [p for p in range(value + 1) if last_child[p] > position]
        assert not late, f"update {value} came before the children of parents {late}"
    assert run.state == {"parents/default/cursor": "99"}


def test_a_failed_child_withholds_the_parents_updates_from_then_on() -> None:
    """A child that failed lost rows: no update covering its parent (or later) is saved."""
    plugin = _family(slow_kids=False, fail_kid=42)
    run = plugin.sync(batch_max_rows=8, batch_max_latency=0.001, concurrency=4)
    messages, _, errors = run_all(run)
    assert [(e.table_name, str(e.error)) for e in errors] == [("kids", "kid resolver failed")]
    updates = [int(m.value) for m in messages if isinstance(m, hw.StateUpdate)]
    # Updates before the parent of the failed child leave; from its epoch on, none does.
    assert updates == [9, 19, 29, 39]
    assert run.summary.withheld_states == {"parents": 6, "kids": 0, "grandkids": 0}
    assert run.state == {"parents/default/cursor": "39"}  # what a next sync starts from

    # The rerun starts after the last saved update, so the failed parent is fetched again.
    again = _family(slow_kids=False)
    _, tables, errors = run_all(again.sync(state={"parents/default/cursor": "39"}))
    assert errors == []
    assert 42 in tables["parents"]["id"].to_pylist()
    assert tables["kids"].num_rows == 300


def test_a_failed_parent_keeps_its_earlier_updates() -> None:
    """Rows before a failure are delivered, and so are the updates that cover only them."""

    @hw.table("events", columns=[ID])
    def events(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        for i in range(30):
            yield {"id": i}
            if i % 10 == 9:
                state.set("cursor", str(i))
        raise RuntimeError("page 4 failed")

    @events.child("details", columns=[hw.Column("id", pa.int64(), primary_key=True)])
    def details(client: Any, event: dict[str, int]) -> Iterator[dict[str, int]]:
        yield {"id": event["id"]}

    run = hw.Plugin(name="s", version="1", tables=[events]).sync(batch_max_rows=4)
    messages, tables, errors = run_all(run)
    assert [e.table_name for e in errors] == ["events"]
    assert [m.value for m in messages if isinstance(m, hw.StateUpdate)] == ["9", "19", "29"]
    assert tables["details"].num_rows == 30


def test_an_arrow_parents_update_follows_its_childrens_rows() -> None:
    """Parent rows yielded as Arrow data start their children the same way."""
    import time

    @hw.table("parents", columns=[ID])
    def parents(client: Any, state: hw.State) -> Iterator[pa.RecordBatch]:
        for page in range(5):
            yield pa.record_batch({"id": pa.array(range(page * 10, page * 10 + 10), pa.int64())})
            state.set("cursor", str(page * 10 + 9))

    @parents.child("kids", columns=[hw.Column("id", pa.int64(), primary_key=True), ROOT])
    def kids(client: Any, parent: dict[str, int]) -> Iterator[dict[str, int]]:
        time.sleep(0.002)
        yield {"id": parent["id"], "root": parent["id"]}

    run = hw.Plugin(name="s", version="1", tables=[parents]).sync(batch_max_rows=4)
    messages, tables, errors = run_all(run)
    assert errors == []
    assert tables["kids"].num_rows == 50
    last_child, updates = _position(messages)
    assert [value for _, value in updates] == [9, 19, 29, 39, 49]
    for position, value in updates:
        assert all(last_child[p] < position for p in range(value + 1))
