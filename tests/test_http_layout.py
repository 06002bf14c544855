"""The modules of headwater.http import each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

import headwater.http

PACKAGE = Path(headwater.http.__file__).parent


def imports_at_run_time(path: Path) -> set[str]:
    """The ``headwater.http.*`` modules ``path`` imports, leaving out ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "headwater.http":
                found.update(f"headwater.http.{alias.name}" for alias in node.names)
            elif node.module.startswith("headwater.http."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("headwater.http."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def test_no_module_of_headwater_http_imports_itself_back() -> None:
    modules = {
        f"headwater.http.{path.stem}": imports_at_run_time(path)
        for path in PACKAGE.glob("*.py")
        if path.stem != "__init__"
    }
    # The scan sees imports at all: the sync and async faces sit on the core.
    assert "headwater.http.core" in modules["headwater.http.client"]
    # Depth-first search for a path back to where it started, imports inside functions
    # included: a lazy import that only hides a cycle is a cycle all the same.
    for start in modules:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            module, path = stack.pop()
            for target in modules.get(module, ()):
                assert target != start, f"import cycle: {' -> '.join([*path, target])}"
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
