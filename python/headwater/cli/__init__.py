"""The command line: ``headwater <command> PLUGIN ...`` and a plugin's own ``plugin.main()``.

Each command lives in a module of this package that defines ``add_commands(subparsers,
with_plugin_argument)``: it adds its sub-parsers and sets ``handler`` on each, a function
``handler(args, plugin) -> int`` returning the exit code. ``headwater`` commands take the
plugin as their first argument (``module:attr`` or ``path/to/file.py[:attr]``); under
``plugin.main()`` the plugin is given, so they do not.

A plugin that fails to import (a syntax error, an exception at import time) is reported in
one line naming the file and line, with exit code 2; ``--log-level debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

from headwater._core import __version__
from headwater.errors import HeadwaterError

if TYPE_CHECKING:
    from headwater.plugin import Plugin

__all__ = ["CommandLineTarget", "PluginLoadError", "load_plugin", "main"]

#: The modules defining commands, in the order their commands are listed in ``--help``.
COMMAND_MODULES: tuple[str, ...] = ("headwater.cli.local", "headwater.cli.serve")


class CommandLineTarget:
    """What the command line runs: :class:`headwater.Plugin` derives from it.

    The command line finds plugins in a module by this base class, so it never imports
    :mod:`headwater.plugin` at run time: ``Plugin.main`` runs the command line, and the two
    importing each other would be a cycle.
    """

    __slots__ = ()


class PluginLoadError(HeadwaterError, ValueError):
    """``PLUGIN`` does not name a module, a file or a :class:`headwater.Plugin` in it."""


def load_plugin(reference: str) -> Plugin:
    """Import the plugin named by ``reference``.

    Args:
        reference: ``package.module:attribute``, ``path/to/file.py:attribute``, or either
            without ``:attribute`` to take the module's only :class:`~headwater.Plugin`. A
            file's directory goes first on ``sys.path``, as with ``python file.py``, so the
            plugin can import its sibling modules.

    Returns:
        The plugin.

    Raises:
        PluginLoadError: No such module, file or attribute, the attribute is not a plugin,
            or importing the module failed: a syntax error, or an exception raised while it
            ran. The message says which, with the file and line of the plugin's code where
            it happened; the exception is chained as the cause.
    """
    target, _, attribute = reference.partition(":")
    if not target:
        raise PluginLoadError(f"plugin reference {reference!r} names no module or file")
    try:
        module = _import(target)
    except PluginLoadError:
        raise
    except (Exception, SystemExit) as exc:
        raise PluginLoadError(_load_failure(target, exc)) from exc
    if attribute:
        try:
            plugin = getattr(module, attribute)
        except AttributeError:
            raise PluginLoadError(f"{target!r} has no attribute {attribute!r}") from None
        if not isinstance(plugin, CommandLineTarget):
            raise PluginLoadError(
                f"{reference!r} is a {type(plugin).__name__}, not a headwater.Plugin"
            )
        return _as_plugin(plugin)
    found = {
        name: value for name, value in vars(module).items() if isinstance(value, CommandLineTarget)
    }
    if len(found) != 1:
        which = f"plugins {', '.join(sorted(found))}" if found else "no headwater.Plugin"
        raise PluginLoadError(f"{target!r} has {which}; name one as {target}:attribute")
    return _as_plugin(next(iter(found.values())))


def _as_plugin(target: CommandLineTarget) -> Plugin:
    """``target`` typed as the plugin it is (``Plugin`` is its only subclass)."""
    return cast("Plugin", target)


def _import(target: str) -> ModuleType:
    """The module ``target`` names: a file path or a dotted module name."""
    if not (target.endswith(".py") or "/" in target or "\\" in target):
        try:
            return importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name is not None and target.startswith(exc.name):
                raise PluginLoadError(
                    f"no module named {target!r} (is the package installed, or did you mean "
                    f"a file path like {target.replace('.', '/')}.py?)"
                ) from None
            raise
    path = Path(target).expanduser()
    if not path.is_file():
        raise PluginLoadError(f"plugin file {str(path)!r} does not exist")
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == (
        path.resolve()
    ):
        return loaded  # imported already, as `import` would find it
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"cannot import plugin file {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        # As a failed `import` does: no half-run module stays behind.
        sys.modules.pop(name, None)
        raise
    return module


#: Where Python's and installed packages' code lives (headwater's own included): a frame
#: there is not the plugin's.
_LIBRARY_DIRECTORIES = tuple(
    os.path.join(os.path.realpath(directory), "")
    for directory in {
        *(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")),
        str(Path(__file__).resolve().parent.parent),
    }
)


def _load_failure(target: str, exc: BaseException) -> str:
    """One line: where importing the plugin failed (file and line) and with what."""
    if isinstance(exc, SystemExit):
        return (
            f"cannot load plugin {target}: importing it called sys.exit({exc.code!r}); "
            'is plugin.main() called outside `if __name__ == "__main__":`?'
        )
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"cannot load plugin {exc.filename}:{exc.lineno}: {type(exc).__name__}: {exc.msg}"
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<")  # importlib's frozen frames
    ]
    # The innermost line of the plugin's own code; failing that (a plugin installed as a
    # package), the innermost module being imported.
    own = [f for f in frames if not os.path.realpath(f.filename).startswith(_LIBRARY_DIRECTORIES)]
    top_level = [f for f in frames if f.name == "<module>"]
    where = target
    for candidates in (own, top_level):
        if candidates:
            where = f"{candidates[-1].filename}:{candidates[-1].lineno}"
            break
    return f"cannot load plugin {where}: {type(exc).__name__}: {exc}"


def build_parser(plugin: Plugin | None = None) -> argparse.ArgumentParser:
    """The argument parser: one sub-command per command of :data:`COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog=Path(sys.argv[0]).name if plugin is not None else "headwater",
        description=(
            f"{plugin.name} {plugin.version}: {plugin.description}"
            if plugin is not None
            else "Run headwater plugins: sync them locally, serve them to CloudQuery."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=(
            f"{plugin.name} {plugin.version} (headwater {__version__})"
            if plugin is not None
            else f"headwater {__version__}"
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers, plugin is None)
    return parser


def main(argv: Sequence[str] | None = None, *, plugin: Plugin | None = None) -> int:
    """Run a command; returns its exit code.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).
        plugin: The plugin, under ``plugin.main()``; ``None`` for the ``headwater`` command,
            whose commands take the plugin as their first argument.
    """
    args = build_parser(plugin).parse_args(argv)
    try:
        target = plugin if plugin is not None else load_plugin(args.plugin)
    except PluginLoadError as exc:
        if exc.__cause__ is not None and getattr(args, "log_level", "") in ("trace", "debug"):
            traceback.print_exception(exc.__cause__)
        print(f"headwater: error: {exc}", file=sys.stderr)
        return 2
    try:
        exit_code: int = args.handler(args, target)
    except BrokenPipeError:
        # The reader went away (`headwater tables ... | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return exit_code
