"""The live progress display and the summary table of ``headwater sync``."""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

from rich.console import Console

from headwater.cli.progress import LiveProgress, summary_table
from headwater.destinations.run import LocalSyncResult
from local_helpers import run_on_terminal


def test_live_table_counts_rows_rates_and_errors() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with LiveProgress(console) as progress:
        progress.started(["repos", "issues"])
        progress.wrote("repos", 1500)
        progress.wrote("repos", 500)
        progress.failed("issues", "table 'issues': boom")
        console.print(progress)  # what the live display draws
    text = out.getvalue()
    assert "repos" in text and "2,000" in text and "issues" in text
    assert "syncing (" in text and "rows/s" in text


def test_summary_table_totals() -> None:
    result = LocalSyncResult(
        url="duckdb:///x.duckdb",
        tables=["a", "b"],
        rows={"a": 1000, "b": 10},
        errors={"a": 0, "b": 2},
        skipped_rows={"a": 3, "b": 0},
        error_messages=["x", "y"],
        duration=2.0,
        complete=True,
        state={},
    )
    out = io.StringIO()
    Console(file=out, width=120).print(summary_table(result))
    lines = out.getvalue().splitlines()
    assert any("a" in line and "1,000" in line and "500" in line for line in lines)
    assert any("total" in line and "1,010" in line and " 2 " in line for line in lines)
    assert result.failed_tables == ["b"]


def test_progress_shows_on_a_terminal_and_not_with_no_progress(tmp_path: Path) -> None:
    plugin = tmp_path / "slowish.py"
    plugin.write_text(
        textwrap.dedent(
            """
            import time
            import pyarrow as pa
            import headwater as hw

            @hw.table("ticks", columns=[hw.Column("id", pa.int64())])
            def ticks(client):
                for i in range(30):
                    time.sleep(0.05)
                    yield {"id": i}

            plugin = hw.Plugin(name="ticks", version="1", tables=[ticks])
            """
        )
    )

    def run(*extra: str) -> str:
        command = [sys.executable, "-m", "headwater.cli", "sync", str(plugin), *extra]
        code, screen = run_on_terminal(command, cwd=tmp_path, stdout_too=False, wait=120)
        assert code == 0
        return screen

    assert "syncing (" in run()
    assert "syncing (" not in run("--no-progress")
