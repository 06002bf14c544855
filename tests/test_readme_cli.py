"""Every command the README documents for local syncs runs as shown, and does what it says."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from local_helpers import ids_of, read_rows

ROOT = Path(__file__).resolve().parent.parent


def section(name: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"## {name}\n(.*?)\n## ", readme, re.S)
    assert match is not None
    return match.group(1)


def test_every_documented_command_runs(tmp_path: Path, postgres_url: str) -> None:
    text = section("Local sync")
    spec = re.search(r"```yaml\n# spec.yaml\n(.*?)```", text, re.S)
    commands = re.search(r"```bash\n(.*?)```", text, re.S)
    assert spec is not None and commands is not None
    (tmp_path / "spec.yaml").write_text(spec.group(1))
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "demo_plugin.py", tmp_path / "examples")
    env = {
        **os.environ,
        "DEMO_ORG": "acme",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    lines = [line.split("  #")[0].strip() for line in commands.group(1).splitlines()]
    outputs = {}
    for line in lines:
        argv = shlex.split(
            line.replace("postgresql://postgres@localhost:5432/postgres", postgres_url)
        )
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        outputs[line] = done
    duckdb_url = f"duckdb://{tmp_path / 'headwater.duckdb'}"
    # The default spec's five repositories, an upsert of the three spec.yaml asks for, then
    # the default spec again through plugin.main(), whose default mode upserts too: one copy
    # of each repository, as the last sync saw it.
    repos = read_rows(duckdb_url, "demo_repos")
    assert [r["id"] for r in repos] == [1, 2, 3, 4, 5]
    assert all(r["full_name"].startswith("demo/") for r in repos)
    assert ids_of(f"parquet://{tmp_path / 'out'}", "demo_repos") == [1, 2, 3, 4, 5]
    assert len(read_rows(postgres_url, "demo_issues")) == 30
    assert ids_of(f"jsonl://{tmp_path / 'lines'}", "demo_repos") == [1, 2, 3, 4, 5]
    assert not (tmp_path / "lines" / "demo_issues").exists()
    markdown = next(o.stdout for line, o in outputs.items() if "--format markdown" in line)
    assert "## demo_issues" in markdown
    schema = next(o.stdout for line, o in outputs.items() if line.startswith("headwater spec"))
    assert json.loads(schema)["title"] == "Spec"
    check = next(o.stdout for line, o in outputs.items() if line.startswith("headwater check"))
    assert "spec valid" in check


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
