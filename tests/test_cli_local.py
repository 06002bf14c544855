"""``headwater sync|tables|spec|check``: every command and flag, bad input, and crash safety
(a ``headwater sync`` killed with SIGKILL mid-way, then rerun)."""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import headwater as hw
from headwater import cli
from headwater.destinations.files import STAGING
from local_helpers import ids_of, items_plugin, read_rows, stored_state

HEADWATER = [sys.executable, "-m", "headwater.cli"]


class Lines:
    """Reads a pipe's lines on a thread, so waiting for one can time out."""

    def __init__(self, stream: Any) -> None:
        self._queue: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in stream:
                self._queue.put(line)
            self._queue.put("")

        threading.Thread(target=pump, daemon=True).start()

    def next(self, timeout: float = 60) -> str:
        """The next line ("" at the end); fails after ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output for {timeout} s") from None


PLUGIN_FILE = textwrap.dedent(
    """
    import os, time
    import pyarrow as pa
    import headwater as hw
    from sibling_settings import TOTAL  # the file's directory is on sys.path

    class Spec(hw.Spec):
        token: hw.SecretStr
        pause: float = 0.0
        fail: bool = False

    @hw.table("slow_events", columns=[
        hw.Column("id", pa.int64(), primary_key=True), hw.Column("label", pa.string())])
    def slow_events(client, state: hw.State):
        start = int(state.get("cursor", "0"))
        for i in range(start, TOTAL):
            yield {"id": i, "label": f"event-{i}"}
            if i % 10 == 9:
                state.set("cursor", str(i + 1))
                if client.pause:
                    time.sleep(client.pause)

    @hw.table("broken", columns=[hw.Column("id", pa.int64())])
    def broken(client):
        yield {"id": 1}
        if client.fail:
            raise RuntimeError("the API said no")

    def test_connection(client):
        if client.token.get_secret_value() != "good":
            raise PermissionError("token rejected")

    plugin = hw.Plugin(name="events", version="2.0.0", tables=[slow_events, broken], spec=Spec,
                       test_connection=test_connection, description="Slow events.")
    """
)


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    (tmp_path / "sibling_settings.py").write_text("TOTAL = 400\n")
    path = tmp_path / "events_plugin.py"
    path.write_text(PLUGIN_FILE)
    return path


def headwater(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEADWATER, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_sync_into_the_default_duckdb_file(plugin_file: Path, tmp_path: Path) -> None:
    done = headwater("sync", str(plugin_file), "--spec", '{"token": "good"}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "slow_events" in done.stdout and "400" in done.stdout  # the summary table
    url = f"duckdb://{tmp_path / 'headwater.duckdb'}"
    assert ids_of(url, "slow_events") == list(range(400))
    assert stored_state(url, "events") == {"slow_events/Spec#0/cursor": "400"}
    assert "token" not in done.stderr or "good" not in done.stderr


def test_sync_flags_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = items_plugin(range(6))
    url = f"parquet://{tmp_path / 'pq'}"
    base = ["sync", "--to", url, "--no-progress", "--log-level", "warn"]
    assert cli.main([*base, "--tables", "items", "--skip-tables", "item_parts"], plugin=plugin) == 0
    assert (tmp_path / "pq" / "items").is_dir() and not (tmp_path / "pq" / "item_parts").exists()
    assert cli.main([*base, "--mode", "overwrite", "--concurrency", "2"], plugin=plugin) == 0
    assert len(read_rows(url, "items")) == 6 and len(read_rows(url, "item_parts")) == 12
    assert cli.main([*base, "--mode", "upsert", "--commit-interval", "0"], plugin=plugin) == 0
    assert len(read_rows(url, "items")) == 6
    assert cli.main([*base, "--delete-stale", "--source-name", "items"], plugin=plugin) == 0
    assert len(read_rows(url, "items")) == 6
    assert cli.main([*base, "--skip-dependent-tables", "--tables", "items"], plugin=plugin) == 0
    capsys.readouterr()
    assert cli.main([*base, "--log-format", "json", "--log-level", "info"], plugin=plugin) == 0
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    summary = next(entry for entry in logged if entry["message"] == "sync summary")
    assert summary["rows"] == {"items": 6, "item_parts": 12}


def test_a_plain_rerun_does_not_double_and_mode_append_still_appends(tmp_path: Path) -> None:
    plugin = items_plugin(range(6))
    url = f"duckdb://{tmp_path / 'rerun.duckdb'}"
    base = ["sync", "--to", url, "--no-progress", "--log-level", "warn"]
    assert cli.main(base, plugin=plugin) == 0
    assert cli.main(base, plugin=plugin) == 0
    assert ids_of(url) == list(range(6)) and len(read_rows(url, "item_parts")) == 12
    assert cli.main([*base, "--mode", "append"], plugin=plugin) == 0
    assert ids_of(url) == sorted(list(range(6)) * 2)


def test_a_failed_table_exits_non_zero_and_the_rest_is_written(
    plugin_file: Path, tmp_path: Path
) -> None:
    url = f"duckdb://{tmp_path / 'f.duckdb'}"
    done = headwater(
        "sync", str(plugin_file), "--spec", '{"token": "x", "fail": true}', "--to", url
    )
    assert done.returncode == 1
    assert "1 table(s) failed: broken" in done.stderr
    assert "the API said no" in done.stderr
    assert ids_of(url, "slow_events") == list(range(400))


def test_tables_below_a_failed_one_are_named_as_keeping_their_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb://{tmp_path / 'o.duckdb'}"
    args = ["sync", "--to", url, "--no-progress", "--mode", "overwrite"]
    assert cli.main(args, plugin=items_plugin(range(5))) == 0
    capsys.readouterr()
    assert cli.main(args, plugin=items_plugin(range(20, 25), fail_after=2)) == 1
    assert (
        "1 table(s) failed: items (see the errors above); the rest was written; tables below "
        "a failed one kept their earlier rows: item_parts"
    ) in capsys.readouterr().err
    assert ids_of(url, "item_parts", "item_id") == sorted([*range(5)] * 2)


def test_migrate_force_flag(tmp_path: Path) -> None:
    import pyarrow as pa

    import headwater as hw
    from local_helpers import ITEM_COLUMNS

    url = f"duckdb://{tmp_path / 'm.duckdb'}"
    args = ["sync", "--to", url, "--no-progress"]
    assert cli.main(args, plugin=items_plugin(range(3), parts=False)) == 0
    changed = [ITEM_COLUMNS[0], hw.Column("name", pa.int64()), *ITEM_COLUMNS[2:]]
    retyped = items_plugin(range(3), columns=changed, parts=False)
    assert cli.main(args, plugin=retyped) == 1
    assert cli.main([*args, "--migrate-force"], plugin=retyped) == 0
    assert {r["name"] for r in read_rows(url, "items")} == {1}


def test_tables_spec_and_check(plugin_file: Path, tmp_path: Path) -> None:
    listed = headwater("tables", str(plugin_file))
    assert listed.returncode == 0 and "slow_events" in listed.stdout
    document = json.loads(headwater("tables", str(plugin_file), "--format", "json").stdout)
    assert [t["name"] for t in document] == ["slow_events", "broken"]
    assert document[0]["columns"][2] == {
        "name": "id",
        "type": "int64",
        "primary_key": True,
        "unique": False,
        "not_null": False,
        "incremental_key": False,
        "description": "",
    }
    markdown = headwater("tables", str(plugin_file), "--format", "markdown").stdout
    assert "## slow_events" in markdown and "| id (PK) | `int64` |" in markdown
    schema = json.loads(headwater("spec", str(plugin_file)).stdout)
    assert schema["required"] == ["token"]
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("token: ${EVENTS_TOKEN}\npause: 0\n")
    ok = headwater(
        "check", str(plugin_file), "--spec", str(spec_file), env={"EVENTS_TOKEN": "good"}
    )
    assert ok.returncode == 0 and "connection ok" in ok.stdout
    bad = headwater("check", str(plugin_file), "--spec", str(spec_file), env={"EVENTS_TOKEN": "no"})
    assert bad.returncode == 1 and "token rejected" in bad.stderr
    unreachable = headwater(
        "check",
        str(plugin_file),
        "--spec",
        '{"token": "good"}',
        "--to",
        "postgresql://u@127.0.0.1:1/x",
    )
    assert unreachable.returncode == 1 and "cannot connect" in unreachable.stderr


def test_spec_files_yaml_json_and_variables(tmp_path: Path) -> None:
    from headwater.errors import SpecError
    from headwater.specfile import load_spec

    (tmp_path / "a.json").write_text('{"token": "${T}", "pause": 1}')
    assert load_spec(str(tmp_path / "a.json"), {"T": "x"}) == {"token": "x", "pause": 1}
    (tmp_path / "b.yml").write_text("token: 'a$${literal}'\n")
    assert load_spec(str(tmp_path / "b.yml"), {}) == {"token": "a${literal}"}
    assert load_spec(None) == {}
    with pytest.raises(SpecError, match=r"field 'token' uses \$\{T\}, but .* T is not set"):
        load_spec(str(tmp_path / "a.json"), {})
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(SpecError, match="must hold a mapping"):
        load_spec(str(tmp_path / "list.yaml"))


def test_an_unparsable_spec_file_writes_nothing(plugin_file: Path, tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("token: good\npause: [1, 2\n")
    done = headwater("sync", str(plugin_file), "--spec", str(spec), cwd=tmp_path)
    assert done.returncode == 2
    assert "is not valid YAML" in done.stderr and "line 3" in done.stderr
    assert not (tmp_path / "headwater.duckdb").exists()
    invalid = headwater("sync", str(plugin_file), "--spec", '{"pause": 1}', cwd=tmp_path)
    assert invalid.returncode == 2 and "token: Field required" in invalid.stderr
    unknown = headwater(
        "sync", str(plugin_file), "--spec", '{"token": "x"}', "--tables", "nope", cwd=tmp_path
    )
    assert unknown.returncode == 2 and "matches no table" in unknown.stderr
    assert not (tmp_path / "headwater.duckdb").exists()


def test_wrong_destinations(plugin_file: Path, tmp_path: Path) -> None:
    spec = ["--spec", '{"token": "x"}']
    scheme = headwater("sync", str(plugin_file), *spec, "--to", "mysql://u@h/db")
    assert scheme.returncode == 1 and "unknown URL scheme 'mysql'" in scheme.stderr
    unreachable = headwater(
        "sync", str(plugin_file), *spec, "--to", "postgresql://u:pw@127.0.0.1:1/db"
    )
    assert unreachable.returncode == 1
    assert "cannot connect" in unreachable.stderr and ":pw@" not in unreachable.stderr
    logged = headwater(
        "sync", str(plugin_file), *spec, "--to", "mysql://u@h/db", "--log-format", "json"
    )
    assert logged.returncode == 1
    error = json.loads(logged.stderr.strip().splitlines()[-1])
    assert error["level"] == "error" and "unknown URL scheme" in error["message"]
    missing_dir = headwater(
        "sync", str(plugin_file), *spec, "--to", f"duckdb://{tmp_path}/no/such/dir.duckdb"
    )
    assert missing_dir.returncode == 1 and "does not exist" in missing_dir.stderr


def test_a_duckdb_file_locked_by_another_process(plugin_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); "
            "print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and Lines(holder.stdout).next().strip() == "ready"
        done = headwater(
            "sync", str(plugin_file), "--spec", '{"token": "x"}', "--to", f"duckdb://{path}"
        )
        assert done.returncode == 1
        assert "locked by another process" in done.stderr
    finally:
        holder.communicate("", timeout=30)
    url = f"duckdb://{path}"
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)
    assert (
        headwater("sync", str(plugin_file), "--spec", '{"token": "x"}', "--to", url).returncode == 0
    )


def test_a_table_of_the_wrong_shape(plugin_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "shape.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE slow_events (id VARCHAR, label INTEGER)")
        con.execute("INSERT INTO slow_events VALUES ('kept', 1)")
    done = headwater(
        "sync", str(plugin_file), "--spec", '{"token": "x"}', "--to", f"duckdb://{path}"
    )
    assert done.returncode == 1
    assert "table 'slow_events', column 'id' is VARCHAR but the plugin now needs BIGINT" in (
        done.stderr
    )
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT * FROM slow_events").fetchall() == [("kept", 1)]


def _limit_file_size(limit: int) -> Any:
    def apply() -> None:
        # Writes past the limit fail with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_disk_full_leaves_nothing_half_written(
    plugin_file: Path, tmp_path: Path, kind: str
) -> None:
    (tmp_path / "sibling_settings.py").write_text("TOTAL = 200000\n")
    url = (
        f"duckdb://{tmp_path / 'full.duckdb'}"
        if kind == "duckdb"
        else f"parquet://{tmp_path / 'pq'}"
    )
    done = subprocess.run(
        [*HEADWATER, "sync", str(plugin_file), "--spec", '{"token": "x"}', "--to", url],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(2 * 1024 * 1024 if kind == "duckdb" else 100 * 1024),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    assert "disk space" in done.stderr or "File too large" in done.stderr
    # What was committed before the disk filled up is consistent: state never runs ahead.
    if (tmp_path / "full.duckdb").exists() or (tmp_path / "pq" / "_headwater_state.json").exists():
        cursor = int(stored_state(url, "events").get("slow_events/Spec#0/cursor", "0"))
        assert set(range(cursor)) <= set(ids_of(url, "slow_events"))
    # Rerun with room (upsert, so rows committed past the cursor are not doubled): all arrive.
    again = headwater(
        "sync", str(plugin_file), "--spec", '{"token": "x"}', "--to", url, "--mode", "upsert"
    )
    assert again.returncode == 0, again.stderr
    assert ids_of(url, "slow_events") == list(range(200000))
    if kind == "parquet":
        assert list((tmp_path / "pq" / STAGING).iterdir()) == []  # nothing left staged


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("duckdb", "upsert"), ("duckdb", "append"), ("parquet", "upsert"), ("postgresql", "upsert")],
)
def test_kill_9_mid_sync_then_rerun_loses_nothing(
    plugin_file: Path, tmp_path: Path, kind: str, mode: str, request: pytest.FixtureRequest
) -> None:
    if kind == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
    elif kind == "duckdb":
        url = f"duckdb://{tmp_path / 'crash.duckdb'}"
    else:
        url = f"parquet://{tmp_path / 'crash'}"
    command = [
        *HEADWATER,
        "sync",
        str(plugin_file),
        "--spec",
        '{"token": "x", "pause": 0.1}',
        "--to",
        url,
        "--mode",
        mode,
        "--commit-interval",
        "0.1",
        "--log-level",
        "debug",
        "--tables",
        "slow_events",
        "--no-progress",
    ]
    kill_after_commits(command, 3)
    # What survived is consistent: every row the stored cursor covers is there.
    cursor = int(stored_state(url, "events").get("slow_events/Spec#0/cursor", "0"))
    assert 0 < cursor < 400
    survived = set(ids_of(url, "slow_events"))
    assert set(range(cursor)) <= survived
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    ids = ids_of(url, "slow_events")
    assert set(ids) == set(range(400))  # no missing rows
    if mode == "upsert":
        assert ids == list(range(400))  # and no duplicates
    assert stored_state(url, "events") == {"slow_events/Spec#0/cursor": "400"}


def kill_after_commits(command: list[str], commits: int) -> None:
    """Runs a ``headwater sync`` (with debug logs) and kills it with SIGKILL after ``commits``."""
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            seen = 0
            deadline = time.monotonic() + 120
            assert process.stderr is not None
            lines = Lines(process.stderr)
            while seen < commits:  # a few commits are durable: kill it mid-way
                assert time.monotonic() < deadline, "timed out waiting for commits"
                line = lines.next()
                assert line, f"the sync ended early: {process.wait(timeout=30)}"
                seen += " committed " in f" {line} "
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


BULK_PLUGIN_FILE = textwrap.dedent(
    """
    import time
    import pyarrow as pa
    import headwater as hw

    BATCH = 25_000  # each write is split over two PostgreSQL connections

    @hw.table("bulk", columns=[hw.Column("id", pa.int64(), primary_key=True)])
    def bulk(client, state: hw.State):
        start = int(state.get("cursor", "0"))
        for first in range(start, 40 * BATCH, BATCH):
            yield pa.record_batch({"id": pa.array(range(first, first + BATCH), pa.int64())})
            state.set("cursor", str(first + BATCH))
            time.sleep(0.05)

    plugin = hw.Plugin(name="bulk", version="1", tables=[bulk])
    """
)


def test_kill_9_during_appends_over_two_postgres_connections_loses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    plugin = tmp_path / "bulk_plugin.py"
    plugin.write_text(BULK_PLUGIN_FILE)
    total = 40 * 25_000
    command = [
        *HEADWATER,
        "sync",
        str(plugin),
        "--to",
        postgres_url,
        "--commit-interval",
        "0",
        "--log-level",
        "debug",
        "--no-progress",
    ]
    kill_after_commits(command, 4)
    cursor = int(stored_state(postgres_url, "bulk").get("bulk/default/cursor", "0"))
    assert 0 < cursor < total
    assert set(range(cursor)) <= set(ids_of(postgres_url, "bulk"))  # state never runs ahead
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    # No row is missing. Append may store again what the killed run committed past its
    # cursor (half a batch at most, from the second connection).
    ids = ids_of(postgres_url, "bulk")
    assert set(ids) == set(range(total))
    assert len(ids) - total <= 12_500
    assert stored_state(postgres_url, "bulk") == {"bulk/default/cursor": str(total)}


def test_ctrl_c_rolls_back_what_was_not_committed(plugin_file: Path, tmp_path: Path) -> None:
    url = f"duckdb://{tmp_path / 'interrupted.duckdb'}"
    with subprocess.Popen(
        [
            *HEADWATER,
            "sync",
            str(plugin_file),
            "--spec",
            '{"token": "x", "pause": 0.1}',
            "--to",
            url,
            "--commit-interval",
            "0.1",
            "--log-level",
            "debug",
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        lines = Lines(process.stderr)
        while " committed " not in f" {lines.next()} ":
            pass
        process.send_signal(signal.SIGINT)
        rest = []
        while line := lines.next():
            rest.append(line)
        assert process.wait(timeout=60) == 130
    assert any("interrupted" in line for line in rest)
    cursor = int(stored_state(url, "events").get("slow_events/Spec#0/cursor", "0"))
    assert 0 < cursor < 400
    assert set(range(cursor)) <= set(ids_of(url, "slow_events"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--commit-interval", "inf"], "--commit-interval: must be a number of seconds from 0 to"),
        (["--commit-interval", "nan"], "--commit-interval: must be a number of seconds from 0 to"),
        (["--commit-interval", "-1"], "--commit-interval: must be a number of seconds from 0 to"),
        (["--commit-interval", "1e300"], "got '1e300'"),
        (["--resolver-timeout", "0"], "--resolver-timeout: must be a number of seconds above 0"),
        (["--resolver-timeout", "inf"], "got 'inf'"),
        (["--sync-timeout", "1e300"], "--sync-timeout: must be a number of seconds above 0"),
        (["--sync-timeout", "soon"], "got 'soon'"),
        (["--concurrency", "0"], "--concurrency: must be a whole number from 1 to 1000000"),
        (["--concurrency", "-4"], "got '-4'"),
        (["--concurrency", "inf"], "got 'inf'"),
        (["--concurrency", "2.5"], "got '2.5'"),
        (["--concurrency", str(10**30)], "--concurrency: must be a whole number from 1"),
        (["--log-level", "loud"], "--log-level: unknown log level 'loud'"),
    ],
)
def test_numeric_options_refuse_meaningless_values(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sync", "--to", f"jsonl://{tmp_path}", *argv], plugin=items_plugin(range(1)))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran


def test_serve_refuses_a_meaningless_max_syncs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--max-syncs", "0"], plugin=items_plugin(range(1)))
    assert exit_info.value.code == 2
    assert "--max-syncs: must be a whole number from 1 to 1000000, got '0'" in (
        capsys.readouterr().err
    )


def test_tables_shows_the_description_not_the_title(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    described = hw.Table(
        "described",
        [hw.Column("id", pa.int64())],
        title="Described Title",
        description="What the described table holds.",
        resolver=lambda: [],
    )
    titled = hw.Table(
        "titled", [hw.Column("id", pa.int64())], title="Only A Title", resolver=lambda: []
    )
    plugin = hw.Plugin(name="doc", version="1", tables=[described, titled])
    assert cli.main(["tables"], plugin=plugin) == 0
    out = capsys.readouterr().out
    assert "What the described table holds." in out
    assert "Described Title" not in out and "Only A Title" not in out


def _pair_plugin() -> hw.Plugin:
    """Two clients whose resolvers must run at the same time to meet at a barrier."""

    class Spec(hw.Spec):
        concurrency: int | None = None

    def pair(client: Any) -> list[Any]:
        barrier = threading.Barrier(2, timeout=3)
        return [("left", barrier), ("right", barrier)]

    @hw.table("meet", columns=[hw.Column("side", pa.string())], clients=pair)
    def meet(client: tuple[str, threading.Barrier]) -> Any:
        client[1].wait()  # BrokenBarrierError after 3 s if the other side never runs
        yield {"side": client[0]}

    return hw.Plugin(
        name="pair",
        version="1",
        tables=[meet],
        spec=Spec,
        sync_options=lambda spec: {"concurrency": spec.concurrency},
    )


def test_sync_options_from_the_spec_and_the_command_line_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = _pair_plugin()
    base = ["sync", "--to", f"jsonl://{tmp_path}", "--no-progress", "--log-level", "error"]
    # The spec's concurrency of 1 runs one side at a time: they never meet.
    assert cli.main([*base, "--spec", '{"concurrency": 1}'], plugin=plugin) == 1
    assert "BrokenBarrierError" in capsys.readouterr().err
    assert (
        cli.main([*base, "--spec", '{"concurrency": 1}', "--concurrency", "2"], plugin=plugin) == 0
    )
    assert cli.main([*base, "--spec", '{"concurrency": 2}'], plugin=plugin) == 0
    assert cli.main([*base], plugin=plugin) == 0  # None: the default
    capsys.readouterr()
    assert cli.main([*base, "--spec", '{"concurrency": 0}'], plugin=plugin) == 2
    assert capsys.readouterr().err == (
        "headwater: error: plugin 'pair': the spec sets the sync option concurrency to 0 "
        "(through sync_options); concurrency takes an int >= 1\n"
    )
    assert cli.main(["check", "--spec", '{"concurrency": -1}'], plugin=plugin) == 2
    assert "concurrency takes an int >= 1" in capsys.readouterr().err


def test_check_reports_a_failing_connect_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(spec: Any) -> Any:
        raise ConnectionError("refused by the API")

    plugin = hw.Plugin(
        name="refusing", version="1", tables=items_plugin(range(1)).tables, connect=refuse
    )
    assert cli.main(["check"], plugin=plugin) == 1
    assert capsys.readouterr().err == (
        "headwater: error: connecting plugin 'refusing' failed: ConnectionError: refused by the "
        "API\n"
    )
