"""The examples run as documented and produce what they claim."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import duckdb

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_demo_plugin_syncs_into_duckdb(tmp_path: Path) -> None:
    demo = load_example("demo_plugin")
    path = tmp_path / "demo.duckdb"
    assert demo.sync(path) == {"demo_repos": 5, "demo_issues": 30}
    # Syncing again replaces the data rather than duplicating it.
    assert demo.sync(path) == {"demo_repos": 5, "demo_issues": 30}
    with duckdb.connect(str(path), read_only=True) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE table_name = 'demo_issues'"
            ).fetchall()
        )
        assert types["_cq_id"] == "UUID"
        assert types["reactions"] == "JSON"
        assert types["opened_at"] == "TIMESTAMP WITH TIME ZONE"
        orphans = con.execute(
            "SELECT count(*) FROM demo_issues i LEFT JOIN demo_repos r "
            "ON i._cq_parent_id = r._cq_id WHERE r.id IS NULL OR r.id <> i.repo_id"
        ).fetchone()
        assert orphans == (0,)
        ids = [row[0] for row in con.execute("SELECT _cq_id FROM demo_repos").fetchall()]
        assert all(isinstance(i, uuid.UUID) and i.version == 5 for i in ids)


def test_demo_plugin_command_line(tmp_path: Path) -> None:
    path = tmp_path / "cli.duckdb"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo_plugin.py"), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "synced {'demo_repos': 5, 'demo_issues': 30}" in result.stdout
    assert "demo/project-1" in result.stdout


def test_readme_starts_with_the_two_commands_and_its_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    assert (ROOT / ".ci" / "run").read_text().count("scripts/test.sh") == 1
    # The README's longer examples moved to the docs' plugin page.
    plugin_page = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    plugin_example = re.search(r"## A short example\n\n```python\n(.*?)```", plugin_page, re.S)
    assert plugin_example is not None
    script = tmp_path / "readme_plugin.py"
    script.write_text(plugin_example.group(1))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["{'demo_repos': 6, 'demo_issues': 12}"]
    example = re.search(r"## Batches without a sync\n\n```python\n(.*?)```", plugin_page, re.S)
    assert example is not None
    script = tmp_path / "readme_example.py"
    script.write_text(example.group(1) + "\nprint(batch.num_rows, len(children), len(messages))\n")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["2", "1", "1"]


def test_readme_api_example_runs(tmp_path: Path) -> None:
    http_page = (ROOT / "docs" / "http.md").read_text()
    example = re.search(r"# The HTTP toolkit\n.*?```python\n(.*?)```", http_page, re.S)
    assert example is not None
    script = tmp_path / "readme_api.py"
    script.write_text(example.group(1))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=120
    )
    expected = "{'demo_events': 2} {'demo_events/default/updated_at': '2026-05-02T08:30:00Z'}"
    assert result.stdout.splitlines() == [expected]
