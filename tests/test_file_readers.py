"""Readers of a Parquet or JSON-lines destination see only committed files: while a sync writes
more (held back until its next commit), after it is killed with SIGKILL, and after the rerun
that removes what the killed sync left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

import headwater
from headwater.destinations.files import MANIFEST, STAGING

PLUGIN_FILE = textwrap.dedent(
    """
    import time
    import pyarrow as pa
    import headwater as hw

    BATCH = 10_000

    class Spec(hw.Spec):
        hang: bool = False

    @hw.table("events", columns=[hw.Column("id", pa.int64(), primary_key=True)])
    def events(client, state: hw.State):
        start = int(state.get("cursor", "0"))
        for first in range(start, 50_000, BATCH):
            yield pa.record_batch({"id": pa.array(range(first, first + BATCH), pa.int64())})
            if first + BATCH == 20_000:
                state.set("cursor", "20000")  # committed: 20,000 rows
        if client.hang:  # the last 30,000 rows wait for a commit that never comes
            time.sleep(600)

    plugin = hw.Plugin(name="events", version="1", tables=[events], spec=Spec)
    """
)

#: The worktree's (or installed) package, for the ``headwater sync`` subprocess.
PACKAGE_ROOT = str(Path(headwater.__file__).resolve().parents[1])


def glob_counts(root: Path, fmt: str) -> dict[str, int]:
    """Rows each usual reader sees in ``root``: DuckDB globs and ``pyarrow.dataset``."""
    read = "read_parquet" if fmt == "parquet" else "read_json_auto"
    counts = {}
    with duckdb.connect() as con:
        for pattern in (f"events/*.{fmt}", f"*/*.{fmt}", f"**/*.{fmt}", "events/*"):
            query = f"SELECT count(*) FROM {read}('{root / pattern}')"
            row = con.execute(query).fetchone()
            assert row is not None
            counts[pattern] = row[0]
    for directory in (root / "events", root):  # it skips the manifest: a name starting "_"
        dataset = ds.dataset(directory, format="parquet" if fmt == "parquet" else "json")
        counts[f"pyarrow.dataset({directory.name})"] = dataset.count_rows()
    return counts


def data_files(root: Path, fmt: str) -> int:
    """Files holding rows anywhere under ``root``, staged or committed."""
    return sum(1 for path in root.rglob(f"*.{fmt}*") if path.is_file())


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_readers_see_only_committed_rows_during_a_sync_and_after_a_kill(
    tmp_path: Path, fmt: str
) -> None:
    plugin = tmp_path / "events_plugin.py"
    plugin.write_text(PLUGIN_FILE)
    root = tmp_path / "out"
    # Every 10,000 rows go into a file of their own, closed at once.
    url = f"{fmt}://{root}?max_file_rows=10000&row_group_rows=10000"

    def sync(spec: str) -> list[str]:
        return [
            sys.executable, "-m", "headwater.cli", "sync", str(plugin), "--spec", spec,
            "--to", url, "--commit-interval", "0", "--no-progress",
        ]  # fmt: skip

    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    with subprocess.Popen(
        sync('{"hang": true}'), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as process:
        try:
            deadline = time.monotonic() + 120
            while data_files(root, fmt) < 5:  # 2 committed, 3 written since and not
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the sync did not write its files in time"
                time.sleep(0.05)
            manifest = json.loads((root / MANIFEST).read_text())
            assert manifest["state"]["events"]["events/Spec#0/cursor"]["value"] == "20000"
            # During the sync, from another process: the committed rows only.
            assert set(glob_counts(root, fmt).values()) == {20_000}
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    # After the kill: still the committed rows only; the rest waits in the staging directory.
    assert set(glob_counts(root, fmt).values()) == {20_000}
    assert len(list((root / STAGING).iterdir())) == 3
    # What an earlier version left when killed while writing its manifest.
    (root / f"_tmp-{MANIFEST}").write_text("{")

    rerun = subprocess.run(sync("{}"), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert list((root / STAGING).iterdir()) == []  # leftovers removed, nothing left staged
    assert not (root / f"_tmp-{MANIFEST}").exists()
    assert set(glob_counts(root, fmt).values()) == {50_000}
    with duckdb.connect() as con:
        read = "read_parquet" if fmt == "parquet" else "read_json_auto"
        ids = con.execute(f"SELECT id FROM {read}('{root}/events/*.{fmt}') ORDER BY id").fetchall()
    assert [row[0] for row in ids] == list(range(50_000))  # the leftovers were not published
