"""No two modules of the headwater package import each other in a circle.

A cycle makes the import order matter and hides which module is the lower layer. The graph
counts every import in a module, including imports inside functions (a lazy import that only
hides a cycle is still a cycle); only ``if TYPE_CHECKING:`` imports, which never run, are left
out. The Rust crates have their own check (``test_module_cycles.py``).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "headwater"


def _load_checker() -> ModuleType:
    """`scripts/check_module_cycles.py`, whose cycle search serves the Rust check too."""
    spec = importlib.util.spec_from_file_location(
        "check_module_cycles", ROOT / "scripts" / "check_module_cycles.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a circle."""
    found = _load_checker().cycles(
        {
            tuple(name.split(".")): {tuple(t.split(".")) for t in targets}
            for name, targets in graph.items()
        }
    )
    return [[".".join(name) for name in group] for group in found]


# -- Python ---------------------------------------------------------------------------------


def python_modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (a directory)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    # A compiled extension is a module of its own, described by its stub.
    for stub in package.rglob("*.pyi"):
        parts = stub.relative_to(package.parent).with_suffix("").parts
        modules.setdefault(".".join(parts), stub)
    return modules


def _runtime_imports(node: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement except those under ``if TYPE_CHECKING:``."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for branch in child.orelse:
                yield from _runtime_imports(branch)
        else:
            yield from _runtime_imports(child)


def python_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at run time."""
    modules = python_modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if path.suffix == ".pyi":
            graph[name] = set()
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                candidates = [f"{base}.{alias.name}" for alias in node.names]
            for candidate in candidates:
                # `from pkg import name`: the submodule if `name` is one, else the package.
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def test_the_check_finds_lazy_cycles_and_ignores_type_checking_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("import os\n")
    (package / "a.py").write_text("from pkg import low\n\ndef f():\n    from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n"
    )
    (package / "d.py").write_text("from pkg.c import x\n")
    (package / "e.pyi").write_text("")
    graph = python_graph(package)
    assert graph["pkg.a"] == {"pkg.low", "pkg.sub.b"}
    assert graph["pkg.c"] == set()
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_headwater_has_no_import_cycles() -> None:
    graph = python_graph(PACKAGE)
    assert {"headwater.plugin", "headwater.sync", "headwater.http.client"} <= graph.keys()
    assert "headwater._core" in graph["headwater.batch"]
    assert cycles(graph) == []
