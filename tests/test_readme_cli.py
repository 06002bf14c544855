"""The demo script the README opens with syncs the example plugin and prints rows back.

The commands the docs show (the local-sync page's among them) run in ``test_docs.py``, which
also checks what each of them wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from local_helpers import ids_of

ROOT = Path(__file__).resolve().parent.parent


def test_demo_script_syncs_with_the_command_and_prints_rows(tmp_path: Path) -> None:
    script = (ROOT / "scripts" / "demo.sh").read_text()
    assert "headwater sync examples/demo_plugin.py" in script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The script's last two commands, as it runs them after installing headwater.
    body = script[script.index('DB="${1:-headwater.duckdb}"') :]
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "demo_plugin.py", tmp_path / "examples")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body, "demo", "demo.duckdb"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "demo/project-1" in done.stdout
    assert ids_of(f"duckdb://{tmp_path / 'demo.duckdb'}", "demo_repos") == [1, 2, 3, 4, 5]
