"""Failure isolation, cancellation and backpressure of the sync engine."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from sync_helpers import run_all, thread_count

ID = hw.Column("id", pa.int64(), primary_key=True)


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    """Polls `condition` until true; fails (never hangs) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_failing_resolver_ends_only_its_table() -> None:
    @hw.table("broken", columns=[ID])
    def broken(client: Any) -> Iterator[dict[str, int]]:
        yield {"id": 1}
        raise RuntimeError("the API said no")

    @hw.table("healthy", columns=[ID])
    def healthy(client: Any) -> Iterator[dict[str, int]]:
        yield from ({"id": i} for i in range(100))

    run = hw.Plugin(name="f", version="1", tables=[broken, healthy]).sync()
    _, tables, errors = run_all(run)
    assert tables["healthy"].num_rows == 100
    assert tables["broken"].num_rows == 1  # the row before the failure is kept
    [error] = errors
    assert error.table_name == "broken"
    assert isinstance(error.error, RuntimeError)
    assert str(error.error) == "the API said no"
    assert error.client_id is None  # the sync's only client, which has no id, goes unnamed
    assert "the API said no" in error.message
    assert run.summary.errors == {"broken": 1, "healthy": 0}
    assert run.summary.failed_tables == ["broken"]
    assert run.summary.complete


def test_a_failing_child_invocation_spares_its_siblings() -> None:
    @hw.table("parents", columns=[ID])
    def parents(client: Any) -> Iterator[dict[str, int]]:
        yield from ({"id": i} for i in range(5))

    @parents.child("kids", columns=[ID])
    def kids(client: Any, row: dict[str, int]) -> Iterator[dict[str, int]]:
        if row["id"] == 3:
            raise ValueError("parent 3 is gone")
        yield {"id": row["id"]}

    run = hw.Plugin(name="f", version="1", tables=[parents]).sync()
    _, tables, errors = run_all(run)
    assert sorted(tables["kids"]["id"].to_pylist()) == [0, 1, 2, 4]
    assert [e.table_name for e in errors] == ["kids"]
    assert run.summary.errors["kids"] == 1


def test_resolver_call_and_async_failures_are_reported() -> None:
    @hw.table("bad_call", columns=[ID])
    def bad_call(client: Any) -> Iterator[dict[str, int]]:
        raise KeyError("at call time")

    @hw.table("bad_async", columns=[ID])
    async def bad_async(client: Any) -> AsyncIterator[dict[str, int]]:
        yield {"id": 1}
        await asyncio.sleep(0)
        raise ConnectionError("async failure")

    @hw.table("returns_str", columns=[ID])
    def returns_str(client: Any) -> str:
        return "not rows"

    plugin = hw.Plugin(name="f", version="1", tables=[bad_call, bad_async, returns_str])
    _, tables, errors = run_all(plugin.sync())
    by_table = {e.table_name: e.error for e in errors}
    assert isinstance(by_table["bad_async"], ConnectionError)
    assert tables["bad_async"].num_rows == 1
    assert isinstance(by_table["returns_str"], TypeError)
    assert "returned a str" in str(by_table["returns_str"])
    # A plain generator function raises on its first next(), not at call time.
    assert isinstance(by_table["bad_call"], KeyError)


def test_bad_rows_are_skipped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    @hw.table("mixed", columns=[ID, hw.Column("name", pa.string(), not_null=True)])
    def mixed(client: Any) -> Iterator[Any]:
        yield {"id": 1, "name": "ok"}
        yield {"id": "2", "name": "id is a str"}
        yield {"id": 3, "name": None}
        yield None
        yield [{"id": 4, "name": "page"}, {"id": 1.5, "name": "bad in a page"}]
        yield {"id": 5, "name": "ok"}

    with caplog.at_level(logging.WARNING, logger="headwater.sync"):
        run = hw.Plugin(name="r", version="1", tables=[mixed]).sync()
        _, tables, errors = run_all(run)
    assert errors == []
    assert sorted(tables["mixed"]["id"].to_pylist()) == [1, 4, 5]
    assert run.summary.skipped_rows == {"mixed": 4}
    assert run.summary.total_errors == 4
    skipped = [r for r in caplog.records if r.getMessage().startswith("row skipped")]
    assert len(skipped) == 4
    assert all(getattr(r, "table", None) == "mixed" for r in skipped)
    text = "\n".join(r.getMessage() for r in skipped)
    assert "column 'id', row 1: expected int64, got str '2'" in text
    assert "column 'name', row 2" in text and "not nullable" in text
    assert "row 3" in text
    assert "row 5: expected int64, got float 1.5" in text


def test_only_the_first_skipped_rows_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    @hw.table("noisy", columns=[ID])
    def noisy(client: Any) -> Iterator[Any]:
        yield from ({"id": "x"} for _ in range(50))

    with caplog.at_level(logging.WARNING, logger="headwater.sync"):
        run = hw.Plugin(name="r", version="1", tables=[noisy]).sync()
        run_all(run)
    assert run.summary.skipped_rows == {"noisy": 50}
    assert len([r for r in caplog.records if "row skipped" in r.getMessage()]) == 10


def test_on_row_error_fail_ends_the_table() -> None:
    closed = threading.Event()

    @hw.table("strict", columns=[ID])
    def strict(client: Any) -> Iterator[Any]:
        try:
            yield {"id": 1}
            yield {"id": "two"}
            yield {"id": 3}
        finally:
            closed.set()

    run = hw.Plugin(name="r", version="1", tables=[strict]).sync(on_row_error="fail")
    _, tables, errors = run_all(run)
    [error] = errors
    assert isinstance(error.error, hw.RowError)
    assert error.error.column == "id" and error.error.row == 1
    assert tables["strict"]["id"].to_pylist() == [1]
    assert closed.is_set()  # the generator was closed, its finally ran


def test_arrow_data_that_does_not_fit_fails_its_table() -> None:
    @hw.table("arrow_bad", columns=[ID])
    def arrow_bad(client: Any) -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"id": pa.array(["not", "ints"])})

    _, _, errors = run_all(hw.Plugin(name="r", version="1", tables=[arrow_bad]).sync())
    [error] = errors
    assert isinstance(error.error, hw.SchemaError)
    assert "id" in str(error.error)


def test_closing_early_closes_generators_and_joins_threads() -> None:
    before = thread_count()
    started: list[int] = []
    closed: list[int] = []
    lock = threading.Lock()

    def endless(client: int) -> Iterator[dict[str, int]]:
        with lock:
            started.append(client)
        try:
            i = 0
            while True:
                i += 1
                yield {"id": i}
        finally:
            with lock:
                closed.append(client)

    table = hw.table("endless", columns=[ID])(endless)
    plugin = hw.Plugin(name="c", version="1", tables=[table], clients=lambda _: [0, 1, 2, 3])
    run = plugin.sync(concurrency=4, batch_max_rows=100)
    with run:
        inserts = 0
        for message in run:
            if isinstance(message, hw.Insert):
                inserts += 1
                if inserts == 20:
                    break
    # Every generator that started was closed (a task still queued never starts).
    assert started
    assert sorted(closed) == sorted(started)
    assert not run.summary.complete
    # Joined threads can stay listed in /proc for a moment after the join returns.
    wait_for(lambda: thread_count() <= before, "the joined engine threads to leave /proc")
    assert list(run) == []  # a closed run yields nothing more


def test_dropping_an_unfinished_run_cancels_it() -> None:
    before = thread_count()
    finished = threading.Event()

    @hw.table("endless", columns=[ID])
    def endless(client: Any) -> Iterator[dict[str, int]]:
        try:
            i = 0
            while True:
                i += 1
                yield {"id": i}
        finally:
            finished.set()

    run = hw.Plugin(name="c", version="1", tables=[endless]).sync(batch_max_rows=10)
    for message in run:
        if isinstance(message, hw.Insert):
            break
    del run, message
    gc.collect()
    assert finished.wait(timeout=30)
    wait_for(lambda: thread_count() <= before, "the engine threads to exit")


def test_keyboard_interrupt_cancels_cleanly() -> None:
    before = thread_count()
    closed = threading.Event()
    started = threading.Event()

    @hw.table("sleepy", columns=[ID])
    def sleepy(client: Any) -> Iterator[dict[str, int]]:
        try:
            started.set()
            while True:
                time.sleep(0.01)
                yield {"id": 1}
        finally:
            closed.set()

    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def interrupt() -> None:
        started.wait(timeout=30)
        time.sleep(0.1)
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)

    killer = threading.Thread(target=interrupt)
    run = hw.Plugin(name="k", version="1", tables=[sleepy]).sync(batch_max_rows=1_000_000)
    killer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in run:
            pass
    killer.join()
    assert closed.wait(timeout=30)
    assert not run.summary.complete
    wait_for(lambda: thread_count() <= before + 0, "the engine threads to exit")


def test_closing_cancels_async_resolvers() -> None:
    cancelled = threading.Event()

    @hw.table("async_endless", columns=[ID])
    async def endless(client: Any) -> AsyncIterator[dict[str, int]]:
        try:
            while True:
                await asyncio.sleep(0.001)
                yield {"id": 1}
        finally:
            cancelled.set()

    run = hw.Plugin(name="c", version="1", tables=[endless]).sync(batch_max_rows=5)
    with run:
        for message in run:
            if isinstance(message, hw.Insert):
                break
    assert cancelled.is_set()


def test_a_slow_consumer_keeps_memory_within_the_budget() -> None:
    row = {"id": 0, "payload": "x" * 1000}

    @hw.table("big", columns=[hw.Column("id", pa.int64()), hw.Column("payload", pa.string())])
    def big(client: Any) -> Iterator[dict[str, Any]]:
        for i in range(20_000):
            yield {**row, "id": i}

    budget = 1 << 20
    run = hw.Plugin(name="b", version="1", tables=[big]).sync(
        max_buffer_bytes=budget, batch_max_rows=100
    )
    rows = 0
    largest = 0
    for message in run:
        if isinstance(message, hw.Insert):
            rows += message.batch.num_rows
            largest = max(largest, message.batch.get_total_buffer_size())
            time.sleep(0.001)
    assert rows == 20_000
    # Never more buffered than the budget, give or take one batch over the line.
    assert run.peak_buffer_bytes <= budget + largest
    assert run.peak_buffer_bytes > budget // 4  # the producer did run ahead


def test_exceptions_in_hooks_fail_the_table() -> None:
    table = hw.Table(
        "hooked",
        [ID, hw.Column("x", pa.int64(), resolver=lambda client, row: 1 // 0)],
        resolver=lambda client: [{"id": 1}],
    )
    _, _, errors = run_all(hw.Plugin(name="h", version="1", tables=[table]).sync())
    [error] = errors
    assert isinstance(error.error, ZeroDivisionError)


def test_errors_from_connect_and_clients_pass_through() -> None:
    @hw.table("t", columns=[ID])
    def t(client: Any) -> Iterator[dict[str, int]]:
        yield {"id": 1}

    class Boom(Exception):
        pass

    def connect(spec: Any) -> Any:
        raise Boom("no connection")

    with pytest.raises(Boom, match="no connection"):
        hw.Plugin(name="c", version="1", tables=[t], connect=connect).sync()

    def clients(client: Any) -> Any:
        raise Boom("no accounts")

    with pytest.raises(Boom, match="no accounts"):
        hw.Plugin(name="c", version="1", tables=[t], clients=clients).sync()

    with pytest.raises(hw.PluginError, match="iterable of clients"):
        hw.Plugin(name="c", version="1", tables=[t], clients=lambda c: "abc").sync()


def test_resolvers_run_in_parallel_while_blocked_in_io() -> None:
    # 16 resolvers that each wait for all the others: only possible if they truly overlap.
    barrier = threading.Barrier(16, timeout=30)

    def resolve(client: int) -> Iterator[dict[str, int]]:
        barrier.wait()
        yield {"id": client}

    table = hw.table("io", columns=[ID])(resolve)
    plugin = hw.Plugin(name="io", version="1", tables=[table], clients=lambda _: list(range(16)))
    _, tables, errors = run_all(plugin.sync(concurrency=16))
    assert errors == []
    assert tables["io"].num_rows == 16


def test_async_resolvers_run_concurrently_on_the_loop() -> None:
    arrived = 0
    everyone = None

    async def resolve(client: int) -> AsyncIterator[dict[str, int]]:
        nonlocal arrived, everyone
        if everyone is None:
            everyone = asyncio.Event()
        arrived += 1
        if arrived == 10:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), timeout=30)
        yield {"id": client}

    table = hw.table("aio", columns=[ID])(resolve)
    plugin = hw.Plugin(name="a", version="1", tables=[table], clients=lambda _: list(range(10)))
    _, tables, errors = run_all(plugin.sync(concurrency=10))
    assert errors == []
    assert tables["aio"].num_rows == 10


def test_engine_threads_do_not_leak_across_many_syncs() -> None:
    @hw.table("t", columns=[ID])
    def t(client: Any) -> Iterator[dict[str, int]]:
        yield {"id": 1}

    plugin = hw.Plugin(name="t", version="1", tables=[t])
    run_all(plugin.sync())
    before = thread_count()
    for _ in range(30):
        run_all(plugin.sync())
    # Joined threads can stay listed in /proc for a moment after the join returns; leaked
    # ones stay for good.
    wait_for(lambda: thread_count() <= before, "the joined engine threads to leave /proc", 5)
    assert os.getpid() > 0


def test_a_cancelled_sync_releases_every_row_and_generator() -> None:
    import weakref

    class Row:
        def __init__(self, i: int) -> None:
            self.id = i

    alive: weakref.WeakSet[Row] = weakref.WeakSet()

    @hw.table("objects", columns=[ID])
    def objects(client: Any) -> Iterator[Row]:
        i = 0
        while True:
            row = Row(i)
            alive.add(row)
            yield row
            i += 1

    @objects.child("details", columns=[ID])
    def details(client: Any, row: Row) -> Iterator[dict[str, int]]:
        time.sleep(0.001)
        yield {"id": row.id}

    run = hw.Plugin(name="c", version="1", tables=[objects]).sync(concurrency=4)
    with run:
        seen = 0
        for message in run:
            if isinstance(message, hw.Insert) and message.table_name == "details":
                seen += message.batch.num_rows
                if seen >= 50:
                    break
    del run, message
    gc.collect()
    # Parent rows held for their children's tasks are all released with the engine.
    wait_for(lambda: (gc.collect(), len(alive))[1] == 0, "every row to be released")
