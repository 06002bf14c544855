"""Cursors on the sync's state: per table and client, advanced only behind their rows."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from headwater.incremental import Cursor
from headwater.testing import run_sync

ID = hw.Column("id", pa.int64(), primary_key=True)
EVENTS = [
    {
        "id": i,
        "updated_at": (dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i)).isoformat(),
    }
    for i in range(1, 101)
]


class Account:
    def __init__(self, name: str) -> None:
        self.id = name


@hw.table("inc_events", columns=[ID, hw.Column("updated_at", pa.timestamp("us", tz="UTC"))])
def events(client: Account, state: hw.State) -> Iterator[list[dict[str, Any]]]:
    cursor = Cursor(state, "updated_at")
    since = cursor.since
    changed = [
        e for e in EVENTS if since is None or dt.datetime.fromisoformat(e["updated_at"]) > since
    ]
    pages = [changed[i : i + 10] for i in range(0, len(changed), 10)]
    yield from cursor.track(pages, field="updated_at")


PLUGIN = hw.Plugin(
    name="inc",
    version="1",
    tables=[events],
    connect=lambda spec: None,
    clients=lambda client: [Account("eu"), Account("us")],
)


def test_a_second_sync_fetches_only_what_changed() -> None:
    first = run_sync(PLUGIN, batch_max_rows=10)
    assert first.summary.rows == {"inc_events": 200}
    assert first.state == {
        "inc_events/eu/updated_at": "2026-03-05T04:00:00Z",
        "inc_events/us/updated_at": "2026-03-05T04:00:00Z",
    }
    EVENTS.append({"id": 101, "updated_at": "2026-03-06T00:00:00+00:00"})
    try:
        second = run_sync(PLUGIN, state=first.state)
    finally:
        EVENTS.pop()
    assert (
        second.rows("inc_events")
        == [{"id": 101, "updated_at": dt.datetime(2026, 3, 6, tzinfo=dt.UTC)}] * 2
    )
    assert set(second.state.values()) == {"2026-03-06T00:00:00Z"}


def test_each_update_follows_the_rows_it_covers() -> None:
    messages = list(PLUGIN.sync(batch_max_rows=7, batch_max_latency=0.001))
    delivered: set[str] = set()
    updates = 0
    for message in messages:
        if isinstance(message, hw.Insert):
            for stamp in message.batch.column("updated_at").to_pylist():
                delivered.add(stamp.isoformat().replace("+00:00", "Z"))
        elif isinstance(message, hw.StateUpdate):
            # The row the cursor points at came in an earlier insert (both clients' rows are
            # alike, so checking by value is enough).
            assert message.value in delivered
            updates += 1
    assert updates == 20  # 10 pages x 2 clients


def test_kinds_start_and_lookback() -> None:
    class FakeState:
        table_name = "t"
        client_id = "c"

        def __init__(self, values: dict[str, str]) -> None:
            self.values = values

        def stored_key(self, key: str) -> str:
            return f"t/c/{key}"

        def get(self, key: str, default: str | None = None) -> str | None:
            return self.values.get(self.stored_key(key), default)

        def set(self, key: str, value: str) -> None:
            self.values[self.stored_key(key)] = value

    state = FakeState({"t/c/seq": "41", "t/c/when": "2026-01-01T10:00:00Z"})
    seq = Cursor(state, "seq", kind="int")  # type: ignore[arg-type]
    assert seq.since == 41 and seq.since_text == "41"
    seq.observe_rows([{"seq": 50}, {"seq": 45}, {"seq": None}], "seq")
    seq.commit()
    assert state.values["t/c/seq"] == "50"
    when = Cursor(state, "when", lookback=dt.timedelta(minutes=5))  # type: ignore[arg-type]
    assert when.since_text == "2026-01-01T09:55:00Z"
    when.observe(dt.datetime(2026, 1, 1, 9, 0))  # older (naive: UTC): no change
    when.commit()
    assert state.values["t/c/when"] == "2026-01-01T10:00:00Z"
    fresh = Cursor(state, "new", kind="str", start="a")  # type: ignore[arg-type]
    assert fresh.since == "a"
    fresh.observe("b")
    fresh.commit()
    assert state.values["t/c/new"] == "b"
    state.values["t/c/broken"] = "yesterday"
    with pytest.raises(
        ValueError,
        match=r"cursor 't/c/broken': the stored state 'yesterday' is not a valid datetime",
    ):
        Cursor(state, "broken")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a valid int"):
        seq.observe(True)
    with pytest.raises(ValueError, match="cursor kind must be"):
        Cursor(state, "x", kind="float")  # type: ignore[arg-type]


def test_commit_at_the_end_for_unsorted_apis() -> None:
    @hw.table("unsorted", columns=[ID])
    def unsorted(client: Any, state: hw.State) -> Iterator[list[dict[str, int]]]:
        cursor = Cursor(state, "id", kind="int")
        yield from cursor.track(
            [[{"id": 5}], [{"id": 3}], [{"id": 9}]], "id", commit_each_page=False
        )

    result = run_sync(hw.Plugin(name="u", version="1", tables=[unsorted]))
    assert [(u.key, u.value) for u in result.state_updates] == [("unsorted/default/id", "9")]


def test_a_failed_resolver_keeps_the_last_committed_page() -> None:
    @hw.table("partial", columns=[ID])
    def partial(client: Any, state: hw.State) -> Iterator[list[dict[str, int]]]:
        def pages() -> Iterator[list[dict[str, int]]]:
            yield [{"id": 1}, {"id": 2}]
            yield [{"id": 3}]
            raise ConnectionError("the API went away")

        yield from Cursor(state, "id", kind="int").track(pages(), "id")

    result = run_sync(hw.Plugin(name="p", version="1", tables=[partial]))
    assert result.state == {"partial/default/id": "3"}
    assert [e.table_name for e in result.errors] == ["partial"]


def test_async_resolvers_track_async_pages() -> None:
    @hw.table("async_inc", columns=[ID])
    async def async_inc(client: Any, state: hw.State) -> AsyncIterator[list[dict[str, int]]]:
        async def pages() -> AsyncIterator[list[dict[str, int]]]:
            for start in (1, 4):
                await asyncio.sleep(0)
                yield [{"id": start}, {"id": start + 1}, {"id": start + 2}]

        async for page in Cursor(state, "id", kind="int").track_async(pages(), "id"):
            yield page

    result = run_sync(hw.Plugin(name="a", version="1", tables=[async_inc]))
    assert [u.value for u in result.state_updates] == ["3", "6"]
    assert result.summary.rows == {"async_inc": 6}
