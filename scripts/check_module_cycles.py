"""Finds import cycles between the modules of each Rust crate under rust/.

A module depends on another when its code names it by path: `crate::a::b`, `super::a`,
`self::a`, or `a::X` for a child module `a` (in `use` declarations, brace groups included,
and inline paths alike). `mod a;`
declarations are not dependencies; in-file `#[cfg(test)]` modules are left out, since they
only test the file they sit in. The modules of each crate and their dependencies form a
graph; every strongly connected component with more than one module is a cycle.

Usage: python scripts/check_module_cycles.py [ROOT]. Prints each crate's cycles and exits
with 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_LINE_COMMENT = re.compile(r"//[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
_INLINE_MODULE = re.compile(r"\bmod\s+(\w+)\s*\{")
_PATH_START = re.compile(r"(?<![:\w])(\w+)::")


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    """The module path of `file` inside the crate whose sources are in `src`."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts.pop()
    return tuple(parts)


def block_end(text: str, open_brace: int) -> int:
    """The index just past the brace that closes the one at `open_brace`."""
    depth = 0
    for pos in range(open_brace, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return pos + 1
    return len(text)


def code_of(file: Path) -> str:
    """The file's code without comments, string literals and in-file test modules."""
    text = file.read_text()
    text = _BLOCK_COMMENT.sub("", text)
    text = _LINE_COMMENT.sub("", text)
    text = _STRING.sub('""', text)
    while match := _TEST_MODULE.search(text):
        end = block_end(text, match.end() - 1)
        text = text[: match.start()] + text[end:]
    return text


def inline_modules(code: str) -> list[tuple[int, int, str]]:
    """The spans of the inline `mod name { ... }` blocks in `code`, with their names."""
    return [
        (match.start(), block_end(code, match.end() - 1), match.group(1))
        for match in _INLINE_MODULE.finditer(code)
    ]


def expand(text: str, start: int) -> list[list[str]]:
    """The paths written at `start` (after `crate::`, `super::` or `self::`), braces expanded."""
    paths: list[list[str]] = []

    def group(pos: int, prefix: list[str]) -> int:
        # `pos` is just past a `{`: each comma-separated path continues `prefix`.
        while True:
            pos = walk(pos, prefix)
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text) or text[pos] == "}":
                return pos + 1
            pos += 1  # the comma

    def walk(pos: int, prefix: list[str]) -> int:
        segment = ""
        current = list(prefix)
        while pos < len(text):
            char = text[pos]
            if char.isalnum() or char == "_":
                segment += char
            elif char == "{" and not segment:
                return group(pos + 1, current)
            elif text.startswith("::", pos):
                if segment:
                    current.append(segment)
                    segment = ""
                pos += 2
                continue
            elif char.isspace() and not segment:
                pass
            else:
                break
            pos += 1
        paths.append(current + ([segment] if segment else []))
        return pos

    walk(start, [])
    return paths


def dependencies(
    module: tuple[str, ...], code: str, modules: set[tuple[str, ...]]
) -> set[tuple[str, ...]]:
    """The modules of the crate that `module` names in `code`.

    A path names the deepest module it reaches: `super::a::X` names `a`, `super::X` the parent.
    """
    found: set[tuple[str, ...]] = set()
    inline = inline_modules(code)
    for match in _PATH_START.finditer(code):
        keyword = match.group(1)
        start = match.end()
        # Inside an inline `mod inner { }`, `super` and `self` are relative to `inner`.
        here = module + tuple(name for begin, end, name in inline if begin < start < end)
        if keyword == "crate":
            base: tuple[str, ...] = ()
        elif keyword == "super":
            base = here[:-1]
        elif keyword == "self":
            base = here
        elif (*module, keyword) in modules:
            # A relative path into a child module (`use accumulate::X` in `sync/mod.rs`).
            base = module
            start = match.start()
        else:
            continue
        for path in expand(code, start):
            # What resolves into this file's inline modules is this file.
            target = base if base[: len(module)] != module else module
            for segment in path:
                if segment == "super":
                    target = target[:-1]
                elif (*target, segment) in modules:
                    target = (*target, segment)
                else:
                    break
            if target != module:
                found.add(target)
    return found


def cycles(graph: dict[tuple[str, ...], set[tuple[str, ...]]]) -> list[list[tuple[str, ...]]]:
    """The strongly connected components of `graph` with more than one node (Tarjan)."""
    index: dict[tuple[str, ...], int] = {}
    low: dict[tuple[str, ...], int] = {}
    stack: list[tuple[str, ...]] = []
    on_stack: set[tuple[str, ...]] = set()
    found: list[list[tuple[str, ...]]] = []

    def visit(node: tuple[str, ...]) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def check_crate(src: Path) -> list[list[tuple[str, ...]]]:
    """The module cycles of the crate whose sources are in `src`."""
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f) for f in files}
    graph = {module_of(src, f): dependencies(module_of(src, f), code_of(f), modules) for f in files}
    return cycles(graph)


def main() -> int:
    """Checks every crate under `rust/`; returns the exit status."""
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    status = 0
    for src in sorted(root.glob("rust/*/src")):
        found = check_crate(src)
        name = src.parent.name
        if not found:
            print(f"{name}: no module cycles")
            continue
        status = 1
        for component in found:
            names = ", ".join("::".join(m) or "crate" for m in component)
            print(f"{name}: cycle between {names}")
    return status


if __name__ == "__main__":
    sys.exit(main())
