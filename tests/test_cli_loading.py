"""Loading a plugin from a module or a file, as the command line does."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import headwater as hw
from headwater.cli import PluginLoadError, load_plugin

PLUGIN_SOURCE = textwrap.dedent(
    """
    import pyarrow as pa
    import headwater as hw
    from helper_rows import ROWS  # a sibling module: the file's directory is on sys.path

    @hw.table("t", columns=[hw.Column("id", pa.int64())])
    def t(client):
        yield from ROWS

    plugin = hw.Plugin(name="fromfile", version="1", tables=[t])
    """
)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "helper_rows.py").write_text("ROWS = [{'id': 1}, {'id': 2}]\n")
    (tmp_path / "my_plugin.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "two_plugins.py").write_text(
        PLUGIN_SOURCE + "\nother = hw.Plugin(name='other', version='1', tables=[t])\n"
    )
    (tmp_path / "no_plugin.py").write_text("x = 1\n")
    yield tmp_path
    for name in ("my_plugin", "two_plugins", "no_plugin", "helper_rows"):
        sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_a_file_with_or_without_the_attribute(plugin_dir: Path) -> None:
    plugin = load_plugin(str(plugin_dir / "my_plugin.py"))
    assert plugin.name == "fromfile"
    assert load_plugin(f"{plugin_dir / 'my_plugin.py'}:plugin") is plugin
    rows = sum(m.batch.num_rows for m in plugin.sync() if isinstance(m, hw.Insert))
    assert rows == 2


def test_a_module_reference(plugin_dir: Path) -> None:
    sys.path.insert(0, str(plugin_dir))
    assert load_plugin("my_plugin:plugin").name == "fromfile"
    assert load_plugin("my_plugin").name == "fromfile"


def test_bad_references(plugin_dir: Path) -> None:
    with pytest.raises(PluginLoadError, match="does not exist"):
        load_plugin(str(plugin_dir / "missing.py"))
    with pytest.raises(PluginLoadError, match="has no attribute 'nope'"):
        load_plugin(f"{plugin_dir / 'my_plugin.py'}:nope")
    with pytest.raises(PluginLoadError, match=r"is a int, not a headwater\.Plugin"):
        load_plugin(f"{plugin_dir / 'no_plugin.py'}:x")
    with pytest.raises(PluginLoadError, match=r"has no headwater\.Plugin"):
        load_plugin(str(plugin_dir / "no_plugin.py"))
    with pytest.raises(PluginLoadError, match="has plugins other, plugin; name one"):
        load_plugin(str(plugin_dir / "two_plugins.py"))
    with pytest.raises(PluginLoadError, match="no module named 'not_a_module_anywhere'"):
        load_plugin("not_a_module_anywhere:plugin")
    with pytest.raises(PluginLoadError, match="names no module"):
        load_plugin(":plugin")
    assert issubclass(PluginLoadError, hw.HeadwaterError)


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    import subprocess

    script = tmp_path / "many_tables.py"
    script.write_text(
        "import pyarrow as pa\nimport headwater as hw\n"
        "tables = [hw.table(f't{i}', columns=[hw.Column('id', pa.int64())])(lambda c: [])"
        " for i in range(2000)]\n"
        "plugin = hw.Plugin(name='many', version='1', tables=tables)\n"
    )
    done = subprocess.run(
        f"{sys.executable} -m headwater.cli tables {script} --format json | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(done.stdout) == 10
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_logs_follow_a_replaced_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    handler = hw.configure_logging(level="info")
    try:
        replaced = io.StringIO()
        monkeypatch.setattr(sys, "stderr", replaced)
        logging.getLogger("headwater.test").info("hello", extra={"table": "t"})
        assert "hello table=t" in replaced.getvalue()
    finally:
        logging.getLogger("headwater").removeHandler(handler)
