"""Cancellation and time limits: a resolver blocked in C code (a sleep, a socket read) cannot
hold a sync, a closing run or the process hostage.

Every wait here is bounded by a generous timeout that fails the test if it hangs; nothing
asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import headwater as hw
from headwater.destinations.run import sync_to
from headwater.errors import (
    ResolverCancelled,
    ResolverTimeoutError,
    SyncInterrupted,
    SyncTimeoutError,
)

#: Upper bound of anything that should take seconds; only reached if something hangs.
BOUND = 60.0

ID = [hw.Column("id", pa.int64(), primary_key=True)]


def fast_table() -> hw.Table:
    @hw.table("fast", columns=ID)
    def fast(client: Any) -> Iterator[dict[str, Any]]:
        yield from ({"id": i} for i in range(10))

    return fast


def in_thread(action: Any) -> Any:
    """Runs ``action`` on a thread; fails the test if it does not return within BOUND."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "it did not return: a blocked resolver held it"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class Blocker:
    """A socket pair: a resolver blocks reading one end until the test writes to the other."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.blocked = threading.Event()
        self.came_back = threading.Event()
        self.outcome: list[str] = []

    def block(self) -> None:
        self.blocked.set()
        try:
            self.reader.recv(1)
            self.outcome.append("returned")
        except BaseException as exc:
            self.outcome.append(type(exc).__name__)
            raise
        finally:
            self.came_back.set()

    def release(self) -> None:
        self.writer.send(b"x")

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


@pytest.fixture
def blocker() -> Iterator[Blocker]:
    b = Blocker()
    yield b
    b.release()  # let a thread still blocked end before the next test
    b.came_back.wait(BOUND)
    b.close()


def blocking_plugin(blocker: Blocker, *extra: hw.Table) -> hw.Plugin:
    @hw.table("slow", columns=ID)
    def slow(client: Any, state: hw.State) -> Iterator[dict[str, Any]]:
        yield {"id": 1}
        state.set("slow_cursor", "1")
        try:
            blocker.block()
            yield {"id": 2}  # after the sync gave up on it: never delivered
        finally:
            try:
                state.set("slow_cursor", "2")
                blocker.outcome.append("state set")
            except RuntimeError:
                blocker.outcome.append("state refused")

    return hw.Plugin(name="blocking", version="1", tables=[fast_table(), slow, *extra])


def rows_of(messages: list[Any], table: str) -> list[int]:
    return sorted(
        i
        for m in messages
        if isinstance(m, hw.Insert) and m.table_name == table
        for i in m.batch.column("id").to_pylist()
    )


# --- the library: close and cancel ----------------------------------------------------------


def test_close_returns_while_a_resolver_thread_is_blocked(blocker: Blocker) -> None:
    run = blocking_plugin(blocker).sync(concurrency=4, batch_max_latency=0.05)
    messages = []
    for message in run:
        messages.append(message)
        if blocker.blocked.is_set() and rows_of(messages, "slow"):
            break
    in_thread(run.close)
    assert not run.summary.complete
    assert ("slow", None) in run.interrupted
    # The thread it stopped waiting for comes back later: it unwinds, and neither delivers
    # nor records anything.
    blocker.release()
    assert blocker.came_back.wait(BOUND)
    deadline = time.monotonic() + BOUND
    while "state set" not in blocker.outcome and "state refused" not in blocker.outcome:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert blocker.outcome[-1] == "state refused"
    assert run.state.get("slow/default/slow_cursor") == "1"
    assert rows_of(messages, "slow") == [1]


def test_cancel_from_another_thread_ends_the_iteration(blocker: Blocker) -> None:
    run = blocking_plugin(blocker).sync(concurrency=4)

    def consume() -> list[Any]:
        return list(run)

    canceller = threading.Thread(
        target=lambda: (blocker.blocked.wait(BOUND), run.cancel()), daemon=True
    )
    canceller.start()
    messages = in_thread(consume)
    run.close()
    assert not run.summary.complete
    assert ("slow", None) in run.interrupted
    assert not any(isinstance(m, hw.SyncError) for m in messages)


def test_a_thread_left_blocked_does_not_crash_the_interpreter_at_exit(tmp_path: Path) -> None:
    script = tmp_path / "left_blocked.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading, time
            import pyarrow as pa
            import headwater as hw

            blocked = threading.Event()

            @hw.table("stuck", columns=[hw.Column("id", pa.int64())])
            def stuck(client):
                yield {"id": 1}
                blocked.set()
                time.sleep(3600)
                yield {"id": 2}

            plugin = hw.Plugin(name="stuck", version="1", tables=[stuck])
            run = plugin.sync()
            next(run)
            assert blocked.wait(60)
            run.close()
            print("closed", run.interrupted, flush=True)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=BOUND,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr
    assert "closed [('stuck', None)]" in result.stdout
    assert "left to end on their own" in result.stderr
    assert "Fatal Python error" not in result.stderr


# --- time limits ----------------------------------------------------------------------------


def test_resolver_timeout_gives_up_on_a_blocked_thread_and_the_rest_goes_on(
    blocker: Blocker,
) -> None:
    @hw.table("waiter", columns=ID)
    def waiter(client: Any) -> Iterator[dict[str, Any]]:
        yield from ({"id": i} for i in range(100))

    @waiter.child("waiter_children", columns=ID)
    def waiter_children(client: Any, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # One at a time, each well within the limit: they keep the sync open until the
        # timed-out resolver came back and tried to go on.
        blocker.came_back.wait(0.1)
        yield {"id": row["id"]}

    plugin = blocking_plugin(blocker, waiter)
    run = plugin.sync(
        concurrency=8, depth_concurrency=[8, 1], resolver_timeout=0.5, batch_max_latency=0.05
    )
    messages = []

    def consume() -> None:
        for message in run:
            messages.append(message)
            if isinstance(message, hw.SyncError):
                blocker.release()

    in_thread(consume)
    errors = [m for m in messages if isinstance(m, hw.SyncError)]
    assert len(errors) == 1
    error = errors[0]
    assert error.table_name == "slow" and error.client_id is None
    assert isinstance(error.error, ResolverTimeoutError)
    assert "resolver_timeout=0.5s" in error.message and "'slow'" in error.message
    assert rows_of(messages, "fast") == list(range(10))
    assert rows_of(messages, "waiter_children") == list(range(100))
    assert rows_of(messages, "slow") == [1]  # what it yielded before the limit
    assert run.summary.complete
    assert run.summary.errors["slow"] == 1 and run.summary.failed_tables == ["slow"]
    assert "state set" not in blocker.outcome
    assert run.state.get("slow/default/slow_cursor") == "1"


def test_resolver_timeout_of_an_async_resolver() -> None:
    @hw.table("async_slow", columns=ID)
    async def async_slow(client: Any) -> Any:
        yield {"id": 1}
        await asyncio.sleep(3600)
        yield {"id": 2}

    plugin = hw.Plugin(name="asyncs", version="1", tables=[fast_table(), async_slow])
    run = plugin.sync(resolver_timeout=0.3)
    messages = in_thread(lambda: list(run))
    errors = [m for m in messages if isinstance(m, hw.SyncError)]
    assert [e.table_name for e in errors] == ["async_slow"]
    assert isinstance(errors[0].error, ResolverTimeoutError)
    assert "resolver_timeout=0.3s" in errors[0].message
    assert rows_of(messages, "fast") == list(range(10))
    assert rows_of(messages, "async_slow") == [1]
    assert run.summary.failed_tables == ["async_slow"]


def test_a_quick_sync_is_untouched_by_its_limits() -> None:
    plugin = hw.Plugin(name="quick", version="1", tables=[fast_table()])
    run = plugin.sync(resolver_timeout=60, sync_timeout=60)
    assert rows_of(list(run), "fast") == list(range(10))
    assert run.summary.complete and not run.interrupted


@pytest.mark.parametrize("option", ["resolver_timeout", "sync_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_time_limits_must_be_positive(option: str, value: float) -> None:
    plugin = hw.Plugin(name="quick", version="1", tables=[fast_table()])
    with pytest.raises(ValueError, match=f"{option} must be a number of seconds above 0"):
        plugin.sync(**{option: value})


def test_sync_timeout_cancels_the_sync_and_names_what_ran(blocker: Blocker) -> None:
    run = blocking_plugin(blocker).sync(sync_timeout=0.5)
    with pytest.raises(SyncTimeoutError, match=r"sync_timeout=0\.5s.*table \"slow\""):
        in_thread(lambda: list(run))
    assert not run.summary.complete
    assert ("slow", None) in run.interrupted


def duckdb_rows(path: Path, table: str) -> list[int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return sorted(r[0] for r in con.execute(f"SELECT id FROM {table}").fetchall())


def test_sync_to_rolls_back_on_sync_timeout(tmp_path: Path, blocker: Blocker) -> None:
    url = f"duckdb:///{tmp_path / 'x.duckdb'}"
    plugin = blocking_plugin(blocker)
    blocker.release()  # the first run goes through: rows 1 and 2 of slow
    sync_to(plugin, url)
    with pytest.raises(SyncTimeoutError, match="slow"):
        in_thread(lambda: sync_to(plugin, url, sync_timeout=0.5, commit_interval=0))
    assert duckdb_rows(tmp_path / "x.duckdb", "slow") == [1, 2]
    assert duckdb_rows(tmp_path / "x.duckdb", "fast") == list(range(10))


def test_a_timed_out_table_keeps_its_rows_under_overwrite(tmp_path: Path, blocker: Blocker) -> None:
    url = f"duckdb:///{tmp_path / 'x.duckdb'}"
    plugin = blocking_plugin(blocker)
    blocker.release()
    sync_to(plugin, url)
    result = in_thread(lambda: sync_to(plugin, url, mode="overwrite", resolver_timeout=0.5))
    assert result.failed_tables == ["slow"]
    assert any("resolver_timeout=0.5s" in m for m in result.error_messages)
    assert duckdb_rows(tmp_path / "x.duckdb", "slow") == [1, 2]  # kept, not replaced by [1]
    assert duckdb_rows(tmp_path / "x.duckdb", "fast") == list(range(10))


def test_sync_to_turns_ctrl_c_into_sync_interrupted(tmp_path: Path, blocker: Blocker) -> None:
    url = f"duckdb:///{tmp_path / 'x.duckdb'}"

    class Interrupting:
        def started(self, tables: list[str]) -> None:
            pass

        def wrote(self, table: str, rows: int) -> None:
            if table == "slow":
                assert blocker.blocked.wait(BOUND)
                raise KeyboardInterrupt

        def failed(self, table: str, message: str) -> None:
            pass

    with pytest.raises(SyncInterrupted) as caught:
        in_thread(lambda: sync_to(blocking_plugin(blocker), url, progress=Interrupting()))
    assert ("slow", None) in caught.value.running
    assert str(caught.value) == "interrupted while running table 'slow'"


def test_resolver_cancelled_is_not_an_exception() -> None:
    assert not issubclass(ResolverCancelled, Exception)


# --- the command line: SIGINT and SIGTERM ---------------------------------------------------

BLOCKING_PLUGIN = textwrap.dedent(
    """
    import os, socket, time
    from pathlib import Path
    import pyarrow as pa
    import headwater as hw

    ID = [hw.Column("id", pa.int64(), primary_key=True)]

    @hw.table("fast", columns=ID)
    def fast(client):
        yield from ({"id": i} for i in range(10))

    @hw.table("slow", columns=ID)
    def slow(client):
        yield {"id": 1}
        how = os.environ.get("BLOCK", "")
        if how:
            Path(os.environ["READY"]).touch()
        if how == "sleep":
            time.sleep(3600)
        elif how == "socket":  # a server that accepts and never answers
            socket.create_connection(("127.0.0.1", int(os.environ["PORT"]))).recv(1)
        yield {"id": 2}

    plugin = hw.Plugin(name="blocking", version="1", tables=[fast, slow])
    """
)


@pytest.fixture
def silent_server() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel completes the connection; nobody ever reads or writes
    yield server.getsockname()[1]
    server.close()


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    plugin = tmp_path / "blocking_plugin.py"
    plugin.write_text(BLOCKING_PLUGIN)
    return subprocess.Popen(
        [sys.executable, "-m", "headwater.cli", "sync", str(plugin), "--no-progress", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )


@pytest.mark.parametrize(
    ("sig", "code", "how"),
    [
        (signal.SIGINT, 130, "sleep"),
        (signal.SIGTERM, 143, "sleep"),
        (signal.SIGINT, 130, "socket"),
        (signal.SIGTERM, 143, "socket"),
    ],
)
def test_headwater_sync_stops_on_a_signal_while_a_resolver_is_blocked(
    tmp_path: Path, silent_server: int, sig: signal.Signals, code: int, how: str
) -> None:
    database = tmp_path / "x.duckdb"
    first = run_cli(tmp_path, "--to", f"duckdb:///{database}")
    _, first_stderr = first.communicate(timeout=BOUND)
    assert first.returncode == 0, first_stderr
    ready = tmp_path / "ready"
    env = {"BLOCK": how, "READY": str(ready), "PORT": str(silent_server)}
    process = run_cli(tmp_path, "--to", f"duckdb:///{database}", env=env)
    try:
        deadline = time.monotonic() + BOUND
        while not ready.exists():
            assert process.poll() is None, process.communicate(timeout=BOUND)
            assert time.monotonic() < deadline, "the resolver never started"
            time.sleep(0.02)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, stderr
    assert f"interrupted by {sig.name} while running table 'slow';" in stderr
    assert "rolled back" in stderr
    # Only what the first run committed: the second committed nothing.
    assert duckdb_rows(database, "slow") == [1, 2]
    assert duckdb_rows(database, "fast") == list(range(10))


def test_headwater_sync_fails_past_its_sync_timeout(tmp_path: Path) -> None:
    database = tmp_path / "x.duckdb"
    env = {"BLOCK": "sleep", "READY": str(tmp_path / "ready")}
    process = run_cli(tmp_path, "--to", f"duckdb:///{database}", "--sync-timeout", "1", env=env)
    _, stderr = process.communicate(timeout=BOUND)
    assert process.returncode == 1, stderr
    assert 'sync_timeout=1s and was cancelled; still running: table "slow"' in stderr
    assert "rolled back" in stderr
    with duckdb.connect(str(database), read_only=True) as con:
        query = "SELECT table_name FROM information_schema.tables"
        tables = {r[0] for r in con.execute(query).fetchall()}
        if "fast" in tables:
            assert con.execute("SELECT count(*) FROM fast").fetchone() == (0,)


def test_headwater_sync_resolver_timeout_fails_only_that_table(tmp_path: Path) -> None:
    database = tmp_path / "x.duckdb"
    env = {"BLOCK": "sleep", "READY": str(tmp_path / "ready")}
    process = run_cli(
        tmp_path, "--to", f"duckdb:///{database}", "--resolver-timeout", "0.5", env=env
    )
    _, stderr = process.communicate(timeout=BOUND)
    assert process.returncode == 1, stderr
    assert "1 table(s) failed: slow" in stderr
    assert "resolver_timeout=0.5s" in stderr
    assert duckdb_rows(database, "fast") == list(range(10))
    assert duckdb_rows(database, "slow") == [1]


def test_a_timed_out_child_holds_its_parents_cursor_back() -> None:
    """A child given up on lost rows: no update of its parent covering them is delivered."""
    released = threading.Event()

    @hw.table("accounts", columns=ID)
    def accounts(client: Any, state: hw.State) -> Iterator[dict[str, Any]]:
        for i in range(6):
            yield {"id": i}
            state.set("cursor", str(i))

    @accounts.child("notes", columns=ID)
    def notes(client: Any, account: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if account["id"] == 2:
            released.wait(BOUND)  # blocked past the limit until the test lets it go
        yield {"id": account["id"]}

    run = hw.Plugin(name="t", version="1", tables=[accounts]).sync(
        resolver_timeout=0.3, batch_max_rows=1
    )
    try:
        messages = list(run)
    finally:
        released.set()
    errors = [m for m in messages if isinstance(m, hw.SyncError)]
    assert [(e.table_name, type(e.error)) for e in errors] == [("notes", ResolverTimeoutError)]
    updates = [int(m.value) for m in messages if isinstance(m, hw.StateUpdate)]
    assert updates == [0, 1]  # from account 2 on, the cursor would pass its lost note
    assert run.summary.withheld_states["accounts"] == 4
    assert run.state == {"accounts/default/cursor": "1"}
