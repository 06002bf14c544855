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


BROKEN_PLUGINS = {
    "syntax.py": (
        "import headwater as hw\n\ndef f(:\n    pass\n",
        3,
        "SyntaxError: invalid syntax",
    ),
    "indent.py": ("x = 1\n  y = 2\n", 2, "IndentationError: unexpected indent"),
    "raises.py": (
        "import headwater as hw\n\ndef settings():\n    raise RuntimeError('no config')\n\n"
        "SETTINGS = settings()\n",
        4,
        "RuntimeError: no config",
    ),
    # Raised inside headwater: the line is the plugin's call.
    "bad_name.py": (
        "import headwater as hw\n\nplugin = hw.Plugin(name='Bad Name', version='1', tables=[])\n",
        3,
        "PluginError: plugin name must be lowercase letters, digits, '-' and '_', got 'Bad Name'",
    ),
    "missing_dependency.py": (
        "import headwater as hw\nimport not_installed_anywhere_xyz\n",
        2,
        "ModuleNotFoundError: No module named 'not_installed_anywhere_xyz'",
    ),
}


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    for name, (source, _, _) in BROKEN_PLUGINS.items():
        (tmp_path / name).write_text(source)
    (tmp_path / "helper_divides.py").write_text("X = 1\nY = X / 0\n")
    (tmp_path / "uses_helper.py").write_text("import helper_divides\n")
    (tmp_path / "calls_main.py").write_text(
        "import headwater as hw\nplugin = hw.Plugin(name='p', version='1', tables=[])\n"
        "plugin.main()\n"
    )
    yield tmp_path
    for name in [*BROKEN_PLUGINS, "helper_divides", "uses_helper", "calls_main"]:
        sys.modules.pop(name.removesuffix(".py"), None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("name", sorted(BROKEN_PLUGINS))
def test_a_plugin_that_fails_to_import_is_named_with_file_and_line(
    broken_dir: Path, name: str
) -> None:
    _, line, error = BROKEN_PLUGINS[name]
    with pytest.raises(PluginLoadError) as info:
        load_plugin(str(broken_dir / name))
    assert str(info.value) == f"cannot load plugin {broken_dir / name}:{line}: {error}"
    assert info.value.__cause__ is not None  # the original, for --log-level debug
    assert name.removesuffix(".py") not in sys.modules  # no half-run module left behind


def test_an_error_in_a_sibling_module_names_that_module(broken_dir: Path) -> None:
    with pytest.raises(PluginLoadError) as info:
        load_plugin(str(broken_dir / "uses_helper.py"))
    assert str(info.value) == (
        f"cannot load plugin {broken_dir / 'helper_divides.py'}:2: "
        "ZeroDivisionError: division by zero"
    )
    sys.path.insert(0, str(broken_dir))  # and as a module reference
    with pytest.raises(PluginLoadError, match=r"helper_divides\.py:2: ZeroDivisionError"):
        load_plugin("uses_helper:plugin")


def test_a_plugin_calling_main_at_import_is_explained(
    broken_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["headwater", "tables", str(broken_dir / "calls_main.py")])
    with pytest.raises(PluginLoadError) as info:
        load_plugin(str(broken_dir / "calls_main.py"))
    assert str(info.value) == (
        f"cannot load plugin {broken_dir / 'calls_main.py'}: importing it called sys.exit(2); "
        'is plugin.main() called outside `if __name__ == "__main__":`?'
    )


@pytest.mark.parametrize(
    "command",
    [
        ["sync"],
        ["tables"],
        ["spec"],
        ["check"],
        ["serve"],
        ["package", "v1.0.0", ".", "-m", "new"],
    ],
)
def test_every_command_reports_a_broken_plugin_in_one_line(
    broken_dir: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from headwater import cli

    path = broken_dir / "raises.py"
    argv = [command[0], str(path), *command[1:]]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"headwater: error: cannot load plugin {path}:4: RuntimeError: no config\n"
    assert cli.main([*argv, "--log-level", "debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "raise RuntimeError('no config')" in err
    assert err.endswith(f"headwater: error: cannot load plugin {path}:4: RuntimeError: no config\n")


def test_the_command_exits_2_with_one_line(broken_dir: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "headwater.cli", "serve", str(broken_dir / "syntax.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"headwater: error: cannot load plugin {broken_dir / 'syntax.py'}:3: "
        "SyntaxError: invalid syntax\n"
    )


def test_version(plugin_dir: Path) -> None:
    import subprocess

    script = plugin_dir / "main_plugin.py"
    script.write_text(PLUGIN_SOURCE + "\nif __name__ == '__main__':\n    plugin.main()\n")

    done = subprocess.run(
        [sys.executable, "-m", "headwater.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == f"headwater {hw.__version__}\n"
    done = subprocess.run(
        [sys.executable, str(script), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fromfile 1 (headwater {hw.__version__})\n"
