"""No Rust crate of the workspace has modules that import each other in a circle.

The check is `scripts/check_module_cycles.py`; it is first shown to find the cycles it is
meant to find, on small crates written here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_module_cycles", ROOT / "scripts" / "check_module_cycles.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _crate(root: Path, files: dict[str, str]) -> Path:
    src = root / "src"
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        (
            {
                "lib.rs": "mod a;\nmod b;\n",
                "a.rs": "use crate::b::B;\npub struct A;\n",
                "b.rs": "use crate::a::A;\npub struct B;\n",
            },
            [("a",), ("b",)],
        ),
        (
            {
                "lib.rs": "mod sync;\n",
                "sync/mod.rs": "mod worker;\nuse worker::run;\npub struct Shared;\n",
                "sync/worker.rs": "use super::Shared;\npub fn run(_: &Shared) {}\n",
            },
            [("sync",), ("sync", "worker")],
        ),
        (
            {
                "lib.rs": "mod a;\nmod b;\nmod c;\n",
                "a.rs": "use super::{b::B, c};\n",
                "b.rs": "pub struct B;\n",
                "c.rs": "pub fn f() { crate::a::g() }\n",
            },
            [("a",), ("c",)],
        ),
    ],
    ids=["crate-paths", "child-and-super", "brace-groups-and-inline-paths"],
)
def test_the_checker_finds_cycles(
    tmp_path: Path, files: dict[str, str], cycle: list[tuple[str, ...]]
) -> None:
    checker = _checker()
    assert checker.check_crate(_crate(tmp_path, files)) == [cycle]


def test_the_checker_ignores_test_modules_and_inline_modules_of_a_file(tmp_path: Path) -> None:
    files = {
        "lib.rs": "mod a;\nmod b;\n",
        "a.rs": (
            "use crate::b::B;\n"
            "mod inner {\n    use super::helper;\n}\n"
            "fn helper() {}\n"
            "#[cfg(test)]\nmod tests {\n    use crate::b::B;\n    use super::*;\n}\n"
        ),
        "b.rs": "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::a::helper;\n}\n",
    }
    checker = _checker()
    assert checker.check_crate(_crate(tmp_path, files)) == []


def test_no_crate_has_module_cycles() -> None:
    checker = _checker()
    crates = sorted((ROOT / "rust").glob("*/src"))
    assert crates, "no crates found under rust/"
    found = {src.parent.name: checker.check_crate(src) for src in crates}
    assert found == {name: [] for name in found}
