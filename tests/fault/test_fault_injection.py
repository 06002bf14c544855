"""Never lose a row: ``headwater sync`` killed with SIGKILL at random moments, then rerun.

Every destination and write mode gets its own test: :data:`KILLS` runs killed at seeded random
moments, one rerun to the end, then the destination compared with the exact rows of
:mod:`fault_plugins` (see :mod:`fault_harness` for what is checked and the at-least-once window
of ``append``). Seeds are fixed; ``HEADWATER_FAULT_SEED=n`` tries another set of moments.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import fault_plugins as fp
import pytest
from fault_harness import PLUGIN, diagnose, kill_and_rerun, python_command, read_destination, report

#: Kills per destination and mode (seven cases: 35 in all).
KILLS = 5
#: A kill comes up to MAX_DELAY seconds after up to MAX_COMMITS commits of its run (or after
#: its first resolver started). A full sync of :class:`fault_plugins.Spec` takes about 2.5 s
#: (its children's calls are slow) and commits its parents early, so five kills leave work
#: for the last run whatever the killed runs got to commit.
MAX_COMMITS = 1
MAX_DELAY = 0.5
BASE_SEED = int(os.environ.get("HEADWATER_FAULT_SEED", "15"))

#: More data where commits are slow: JSON lines commits take about 0.6 s each, so a kill
#: anchored on one lands late in its run, and with the default sizes two killed runs sometimes
#: fetched everything, leaving no work for the remaining kills.
LARGER: dict[str, dict[str, int]] = {"jsonl": {"accounts": 48, "events": 120, "flaky": 48}}

CASES = [
    ("duckdb", "append"),
    ("duckdb", "upsert"),
    ("postgresql", "append"),
    ("postgresql", "upsert"),
    ("parquet", "append"),
    ("parquet", "upsert"),
    ("jsonl", "append"),  # JSON lines do not upsert
]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory for the destination's files, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="headwater-fault-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.fault
@pytest.mark.parametrize(("kind", "mode"), CASES, ids=[f"{k}-{m}" for k, m in CASES])
def test_killed_syncs_rerun_to_exactly_the_expected_rows(
    kind: str, mode: str, workdir: Path, request: pytest.FixtureRequest
) -> None:
    seed = BASE_SEED * 1000 + zlib.crc32(f"{kind}-{mode}".encode()) % 1000
    spec = fp.Spec(seed=seed, **LARGER.get(kind, {}))
    if kind == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
    elif kind == "duckdb":
        url = f"duckdb://{workdir / 'fault.duckdb'}"
    else:
        url = f"{kind}://{workdir / kind}"
    command = python_command(
        "sync",
        PLUGIN,
        "--spec",
        spec.model_dump_json(),
        "--to",
        url,
        "--mode",
        mode,
        "--commit-interval",
        "0.05",  # many commits, so kills land between them
        "--concurrency",
        "16",
        "--no-progress",
        "--log-level",
        "debug",  # the harness counts commits in the debug log
    )
    runs = kill_and_rerun(
        command, seed=seed, kills=KILLS, max_commits=MAX_COMMITS, max_delay=MAX_DELAY
    )

    problems = []
    killed = sum(run.killed for run in runs)
    if killed < KILLS:
        problems.append(
            f"only {killed} of {KILLS} kills landed: run {runs[-1].number} ended first, so the "
            "data is too small for the kill schedule (or a cursor skipped most of it)"
        )
    last = runs[-1]
    # The failing parent fails every run that reaches its failing page (exit status 1); any
    # other failure shows in the rows.
    if last.returncode != 1 or fp.FAILURE not in last.log:
        problems.append(
            f"run {last.number} exited {last.returncode}: expected 1, with the injected failure "
            "of fault_flaky"
        )
    problems += diagnose(fp.expected_rows(spec), read_destination(url), runs, mode)
    assert not problems, report(problems, runs) + f"\n(seed {seed}; {kind} {mode})"
