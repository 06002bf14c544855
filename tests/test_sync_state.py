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
    assert run.state == {"events_cursor": "4999"}
    # A second sync resumes from the cursor it is given.
    run = plugin.sync(state=run.state)
    _, tables, _ = run_all(run)
    assert tables["events"]["id"].to_pylist()[0] == 5000
    assert run.state == {"events_cursor": "9999"}


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
            assert message.key == f"kid-{message.value}"
    assert len(run.state) == 300 + 1
    assert run.state["parents"] == "299"


def test_initial_state_is_readable_and_keys_are_shared() -> None:
    seen: dict[str, Any] = {}

    @hw.table("reader", columns=[ID])
    def reader(client: Any, *, state: hw.State) -> Iterator[dict[str, int]]:
        seen["cursor"] = state.get("cursor")
        seen["missing"] = state.get("missing")
        seen["default"] = state.get("missing", "fallback")
        yield {"id": 1}

    run = hw.Plugin(name="s", version="1", tables=[reader]).sync(state={"cursor": "41"})
    run_all(run)
    assert seen == {"cursor": "41", "missing": None, "default": "fallback"}
    assert run.state == {"cursor": "41"}


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
