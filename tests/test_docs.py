"""Every code block of the documentation runs as a reader would run it.

The rules, for ``docs/**/*.md`` and ``README.md``:

- Each page runs in a process of its own, in a fresh temporary directory that holds a copy of
  ``examples/`` (so ``headwater sync examples/demo_plugin.py`` works as from a clone).
- A block with a title (```` ```python title="my_plugin.py" ````) is also written to that file
  before anything runs, so the page's commands can use it (a spec, a plugin, a test module).
- The ``python`` and ``bash`` blocks run in the order of the page. Python blocks share one
  namespace, so a block may use what an earlier block of the same page defined; pages never
  share anything. A bash block is one command a line (what follows two spaces and ``#`` is a
  comment), each of which must exit 0.
- ``postgresql://postgres@localhost:5432/postgres`` stands for the tests' PostgreSQL server.
- A block that cannot run here (it installs from PyPI, serves until stopped, takes an hour)
  has ``<!-- docs-test: skip: why -->`` on the line before its fence. :data:`SKIPPED` is how
  many there are: the test fails when a new one appears, so a block is never left out
  silently (and when one goes, so that the count is lowered with it).
- Blocks in other languages (``yaml``, ``text``, ``toml``, ``mermaid``) are not run, and no
  other language is allowed, so a Python block cannot hide as ``py``.

Some pages also check what their commands did (:data:`PAGE_CHECKS`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from local_helpers import ids_of, read_rows

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
RUNNER = Path(__file__).resolve().parent / "docs_runner.py"

#: Blocks marked ``docs-test: skip``: see the module documentation.
SKIPPED = 5

RUN = {"python", "bash"}
SHOWN = {"yaml", "text", "toml", "mermaid"}
LOCAL_POSTGRES = "postgresql://postgres@localhost:5432/postgres"

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[A-Za-z]*)(?P<info>[^`]*)$")
TITLE = re.compile(r'title="([^"]+)"')
SKIP = re.compile(r"^\s*<!-- docs-test: skip: (?P<why>.+?) -->\s*$")


@dataclasses.dataclass
class Block:
    lang: str
    code: str
    line: int
    title: str | None
    skip: str | None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with their first line and marker."""
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None or not fence["lang"]:
            assert fence is None, f"{path}:{i + 1}: a code block without a language"
            i += 1
            continue
        indent = len(fence["indent"])
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        title = TITLE.search(fence["info"])
        skip = SKIP.match(lines[i - 1]) if i else None
        found.append(
            Block(
                lang=fence["lang"],
                code="".join(line[indent:] + "\n" for line in lines[i + 1 : end]),
                line=i + 1,
                title=title.group(1) if title else None,
                skip=skip["why"] if skip else None,
            )
        )
        i = end + 1
    return found


def where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_pages_use_only_known_languages_and_count_their_skipped_blocks() -> None:
    skipped = []
    for page in PAGES:
        for block in blocks(page):
            assert block.lang in RUN | SHOWN, f"{where(page)}:{block.line}: ```{block.lang}"
            if block.skip is not None:
                assert block.lang in RUN, f"{where(page)}:{block.line}: skip on a shown block"
                skipped.append(f"{where(page)}:{block.line} ({block.skip})")
    assert len(skipped) == SKIPPED, (
        f"{len(skipped)} blocks are marked skip, SKIPPED says {SKIPPED}: make the new block "
        "run, or lower SKIPPED if one was made to run:\n" + "\n".join(skipped)
    )


def check_local_sync(tmp_path: Path, outputs: dict[str, str], postgres_url: str | None) -> None:
    """What the local-sync page's commands wrote, where they wrote it."""
    assert postgres_url is not None
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
    markdown = next(out for line, out in outputs.items() if "--format markdown" in line)
    assert "## demo_issues" in markdown
    schema = next(out for line, out in outputs.items() if line.startswith("headwater spec"))
    assert json.loads(schema)["title"] == "Spec"
    check = next(out for line, out in outputs.items() if line.startswith("headwater check"))
    assert "spec valid" in check


def check_getting_started(
    tmp_path: Path, outputs: dict[str, str], postgres_url: str | None
) -> None:
    """The first sync wrote the plugin's rows into the default DuckDB file and Parquet."""
    assert ids_of(f"duckdb://{tmp_path / 'headwater.duckdb'}", "hello_numbers", "n") == [1, 2, 3]
    assert ids_of(f"parquet://{tmp_path / 'out'}", "hello_numbers", "n") == [1, 2, 3]


PAGE_CHECKS: dict[str, Callable[[Path, dict[str, str], str | None], None]] = {
    "docs/local-sync.md": check_local_sync,
    "docs/getting-started.md": check_getting_started,
}


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in RUN and b.skip is None]


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=where)
def test_page_runs(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    page_blocks = blocks(page)
    text = page.read_text()
    postgres_url = request.getfixturevalue("postgres_url") if LOCAL_POSTGRES in text else None

    def local(code: str) -> str:
        return code.replace(LOCAL_POSTGRES, postgres_url) if postgres_url else code

    work = tmp_path / "work"
    shutil.copytree(
        ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    for block in page_blocks:
        if block.title is not None:
            (work / block.title).parent.mkdir(parents=True, exist_ok=True)
            (work / block.title).write_text(local(block.code))
    steps = [
        {"kind": b.lang, "code": local(b.code), "where": where(page), "line": b.line}
        for b in runnable(page)
    ]
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    env = {
        **os.environ,
        "DEMO_ORG": "acme",
        # The headwater command of this environment, as after `pip install headwater`.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(tmp_path / "steps.json"), str(tmp_path / "out.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{where(page)}:\n{done.stdout}\n{done.stderr}"
    check = PAGE_CHECKS.get(where(page))
    if check is not None:
        check(work, json.loads((tmp_path / "out.json").read_text()), postgres_url)
