"""Kill ``headwater sync`` at random moments, rerun it to the end, and judge what was written.

:func:`kill_and_rerun` runs ``python -m headwater.cli sync`` on :mod:`fault_plugins` as a
subprocess, SIGKILLs it at a seeded random moment (a random delay after its first resolver
started, or after a random number of commits), and reruns it, a bounded number of times, then
once more without a kill. :func:`read_destination` reads every table back the way a user would
(SQL, or the usual ``*.parquet``/``*.jsonl`` globs), and :func:`diagnose` compares it with
:func:`fault_plugins.expected_rows`:

- every table and client resumed from a cursor of its own: never past the rows it had fetched
  in earlier runs, never before where an earlier run resumed;
- every expected row is there, with the payload the API served, under its parent's ``_cq_id``;
- nothing else is there;
- ``upsert``: every row exactly once;
- ``append``: the at-least-once window. A killed run may have committed rows beyond the state
  it committed (rows yielded after the last state update a commit included, and, while a
  parent's state waits for its children, that parent's subtree); the rerun resumes from the
  committed state and fetches those rows again, so they are stored twice. So: a row is stored
  at most once per run that fetched it (the plugin journals every page before yielding it),
  and two copies of a row never come from the same run (they differ in ``_cq_sync_time``).

A failure is described precisely: which parents lost which children, which runs resumed a
table past rows that were never stored (a cursor that ran ahead), and which rows are doubled.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import fault_plugins as fp
import pyarrow.parquet as pq

import headwater

PLUGIN = f"{Path(fp.__file__).resolve()}:plugin"
#: How long a run may take to start its first resolver, or to finish; generous for a loaded
#: 2-core machine: reaching either means the run hangs.
STARTUP_TIMEOUT = 60.0
RUN_TIMEOUT = 180.0
#: Lines of a run's output shown in a failure.
LOG_TAIL = 15


@dataclasses.dataclass(frozen=True)
class Kill:
    """When to kill a run: ``delay`` seconds after its ``commits``-th commit (0: after its
    first resolver started)."""

    commits: int
    delay: float

    def __str__(self) -> str:
        anchor = f"commit {self.commits}" if self.commits else "its first resolver started"
        return f"{self.delay:.3f} s after {anchor}"


@dataclasses.dataclass
class Run:
    """One ``headwater sync`` process.

    Attributes:
        number: Its position, from 1.
        kill: When it was to be killed (``None``: left to finish).
        killed: It was killed (it had not exited by then).
        returncode: Its exit status (negative: the signal that ended it).
        journal: The lines its resolvers journaled, in order.
        log: Its stdout and stderr.
        seconds: How long it ran, for the report.
    """

    number: int
    kill: Kill | None
    killed: bool = False
    returncode: int | None = None
    journal: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    log: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        """A one-line account of the run."""
        how = f"killed {self.kill}" if self.killed else f"exited {self.returncode}"
        return f"run {self.number}: {how} ({len(self.journal)} journal lines, {self.seconds:.1f} s)"

    def tail(self) -> str:
        """The last lines of its output."""
        return "\n".join(self.log.strip().splitlines()[-LOG_TAIL:])


class _Lines:
    """Reads a pipe's lines on a thread, so the harness can wait for what they say."""

    def __init__(self, fd: int, name: str, parse: Callable[[bytes], Any]) -> None:
        self.items: list[Any] = []
        self.ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(fd, parse), name=name, daemon=True)
        self._thread.start()

    def _pump(self, fd: int, parse: Callable[[bytes], Any]) -> None:
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                item = parse(line)
                with self._changed:
                    self.items.append(item)
                    self._changed.notify_all()
        with self._changed:
            self.ended = True  # every writer is gone: the process ended
            self._changed.notify_all()

    def wait(self, enough: Callable[[list[Any]], bool], timeout: float) -> bool:
        """Waits until ``enough(items)`` or the end of the pipe; False on a timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.ended or enough(self.items), timeout)

    def join(self) -> None:
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise AssertionError(f"{self._thread.name}: the pipe stayed open after the run ended")


def _commits(lines: list[str]) -> int:
    # The local sync logs every commit at debug level.
    return sum(" committed " in f" {line} " for line in lines)


def subprocess_env() -> dict[str, str]:
    """The environment of a run: this process's, importing the same headwater as the tests."""
    env = dict(os.environ)
    python_dir = str(Path(headwater.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(
        [python_dir, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    env.pop(fp.JOURNAL_FD_ENV, None)
    return env


def run_sync(command: Sequence[str], number: int, kill: Kill | None) -> Run:
    """Runs ``command`` once, SIGKILLed as ``kill`` says; reaped and drained whatever happens."""
    run = Run(number, kill)
    read_end, write_end = os.pipe()
    env = subprocess_env()
    env[fp.JOURNAL_FD_ENV] = str(write_end)
    began = time.monotonic()
    try:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=(write_end,),
            start_new_session=True,  # so a kill takes anything it started along
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    assert process.stdout is not None
    journal = _Lines(read_end, f"run {number} journal", json.loads)
    output = _Lines(
        os.dup(process.stdout.fileno()),
        f"run {number} output",
        lambda b: b.decode(errors="replace"),
    )
    process.stdout.close()
    try:
        if not journal.wait(bool, STARTUP_TIMEOUT):
            raise AssertionError(f"run {number}: no resolver started in {STARTUP_TIMEOUT} s")
        if kill is None:
            try:
                process.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"run {number} did not end in {RUN_TIMEOUT} s") from None
        else:
            if not output.wait(lambda lines: _commits(lines) >= kill.commits, RUN_TIMEOUT):
                raise AssertionError(f"run {number}: {kill.commits} commits took too long")
            try:
                # The random moment of the kill: the point of the suite, not a synchronisation.
                process.wait(timeout=kill.delay)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                run.killed = True
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        run.returncode = process.wait()
        journal.join()
        output.join()
    run.seconds = time.monotonic() - began
    run.journal = journal.items
    run.log = "".join(output.items)
    return run


def kill_and_rerun(
    command: Sequence[str], *, seed: int, kills: int, max_commits: int, max_delay: float
) -> list[Run]:
    """Kills ``kills`` runs of ``command`` at seeded random moments, then lets one finish.

    Each kill comes a random delay (up to ``max_delay`` seconds) after a random number of
    commits (up to ``max_commits``; none: after the first resolver started), so kills land
    both before anything was committed and between commits, whatever a destination's commits
    cost. Stops early if a run finishes before its kill: the caller sees fewer killed runs than
    it asked for.
    """
    rng = random.Random(seed)
    runs: list[Run] = []
    for _ in range(kills):
        kill = Kill(rng.randint(0, max_commits), rng.uniform(0.0, max_delay))
        run = run_sync(command, len(runs) + 1, kill)
        runs.append(run)
        if not run.killed:
            return runs
    runs.append(run_sync(command, len(runs) + 1, None))
    return runs


# --- reading a destination back ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stored:
    """One stored row, as the suite compares it."""

    key: fp.Key
    payload: str | None
    cq_id: str
    parent_id: str | None
    sync_time: str


def _uuid_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return str(uuid.UUID(bytes=value))
    return str(uuid.UUID(str(value)))


def _stored(table: str, rows: Iterable[dict[str, Any]]) -> list[Stored]:
    return [
        Stored(
            key=tuple(row[column] for column in fp.KEYS[table]),
            payload=row["payload"],
            cq_id=str(_uuid_text(row["_cq_id"])),
            parent_id=_uuid_text(row["_cq_parent_id"]),
            sync_time=str(row["_cq_sync_time"]),
        )
        for row in rows
    ]


def _columns(table: str) -> list[str]:
    return [*fp.KEYS[table], "payload", "_cq_id", "_cq_parent_id", "_cq_sync_time"]


def read_destination(url: str, tables: Iterable[str] = fp.KEYS) -> dict[str, list[Stored]]:
    """Every row of ``tables`` (of :mod:`fault_plugins`) at ``url``, read as a user would."""
    scheme, _, rest = url.partition("://")
    found: dict[str, list[Stored]] = {}
    for table in tables:
        # A table that is not there has no rows: the diagnosis then says what is missing.
        select = ", ".join(f'"{c}"' for c in _columns(table))
        rows: list[dict[str, Any]] = []
        if scheme == "duckdb":
            if not Path(rest).exists():
                found[table] = []
                continue
            with duckdb.connect(rest, read_only=True) as con:
                [(exists,)] = con.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
                ).fetchall()
                if exists:
                    rows = con.sql(f'SELECT {select} FROM "{table}"').to_arrow_table().to_pylist()
        elif scheme == "postgresql":
            import adbc_driver_postgresql.dbapi as pg

            with pg.connect(url) as con, con.cursor() as cur:
                cur.execute(f"SELECT to_regclass('\"{table}\"') IS NOT NULL")
                [(exists,)] = cur.fetchall()
                if exists:
                    cur.execute(f'SELECT {select} FROM "{table}"')
                    rows = cur.fetch_arrow_table().to_pylist()
        elif scheme == "parquet":
            files = sorted((Path(rest) / table).glob("*.parquet"))
            rows = [r for f in files for r in pq.read_table(f, columns=_columns(table)).to_pylist()]
        else:
            files = sorted((Path(rest) / table).glob("*.jsonl"))
            rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        found[table] = _stored(table, rows)
    return found


# --- judging it ------------------------------------------------------------------------------


def _ranges(numbers: Iterable[int]) -> str:
    """``1-4, 7, 9-10`` for the sorted distinct ``numbers``."""
    spans: list[list[int]] = []
    for n in sorted(set(numbers)):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _top(table: str) -> str:
    while table in fp.PARENTS:
        table = fp.PARENTS[table]
    return table


class Journal:
    """What the runs' resolvers said they fetched, and where they resumed."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = runs
        #: (table, key) -> the runs that fetched that row.
        self.fetched: dict[tuple[str, fp.Key], list[int]] = collections.defaultdict(list)
        #: (table, client) -> [(run, the cursor it resumed from)].
        self.starts: dict[tuple[str, str], list[tuple[int, int]]] = collections.defaultdict(list)
        for run in runs:
            for entry in run.journal:
                if "start" in entry:
                    start = int(entry["start"] or 0)
                    self.starts[entry["table"], entry["client"]].append((run.number, start))
                else:
                    for key in entry["rows"]:
                        self.fetched[entry["table"], tuple(key)].append(run.number)

    def killed(self, number: int) -> bool:
        return self.runs[number - 1].killed

    def runs_text(self, numbers: Iterable[int]) -> str:
        shown = [f"{n}{' (killed)' if self.killed(n) else ''}" for n in numbers]
        return ", ".join(shown) or "none"

    def resumed_past(self, table: str, client: str, key: int) -> list[tuple[int, int]]:
        """The runs that resumed ``table``/``client`` at a cursor at or past ``key``."""
        return [(run, start) for run, start in self.starts[table, client] if start >= key]


def diagnose(
    expected: dict[str, dict[fp.Key, str]],
    found: dict[str, list[Stored]],
    runs: Sequence[Run],
    mode: str,
    limit: int = 12,
) -> list[str]:
    """What is wrong with ``found``, one problem a line (empty: nothing)."""
    journal = Journal(runs)
    problems: list[str] = []

    def cap(lines: list[str], what: str) -> list[str]:
        more = len(lines) - limit
        return lines[:limit] + ([f"    ... and {more} more {what}"] if more > 0 else [])

    problems += _cursor_problems(journal)
    for table, rows in expected.items():
        stored = found.get(table, [])
        counts = collections.Counter(row.key for row in stored)
        missing = sorted(set(rows) - set(counts))
        extra = sorted(set(counts) - set(rows))
        wrong = sorted({r.key for r in stored if r.key in rows and r.payload != rows[r.key]})
        headline = f"{table}: {len(rows)} rows expected, {len(set(counts))} distinct stored"
        if missing or extra or wrong:
            problems.append(
                f"{headline}: {len(missing)} missing, {len(extra)} unexpected, "
                f"{len(wrong)} with a wrong payload"
            )
        if missing and table in fp.PARENTS:
            problems += cap(_lost_children(table, missing, expected, counts, journal), "parents")
        elif missing:
            problems += _missing_top(table, missing, journal)
        problems += cap([f"  unexpected row {key}" for key in extra], "rows")
        problems += cap([f"  wrong payload of {key}" for key in wrong], "rows")
        problems += cap(_duplicates(table, stored, counts, journal, mode), "rows")
        if table in fp.PARENTS:
            problems += cap(_bad_links(table, stored, found), "rows")
    return problems


def _cursor_problems(journal: Journal) -> list[str]:
    """Resume points no table and client could have committed for itself.

    A table and client resume from their own committed cursor: never past the rows they had
    fetched in earlier runs, and never before where an earlier run resumed (state only moves
    forward). Either means they read a cursor another table or client set.
    """
    lines = []
    for (table, client), starts in sorted(journal.starts.items()):
        previous: tuple[int, int] | None = None
        for run, start in starts:
            reached = max(
                (
                    key[1]
                    for (t, key), fetched in journal.fetched.items()
                    if t == table and key[0] == client and min(fetched) < run
                ),
                default=0,
            )
            if start > reached:
                lines.append(
                    f"{table}/{client}: run {run} resumed from cursor {start}, past the last id "
                    f"it had fetched ({reached}): it read a cursor another table or client set"
                )
            elif previous is not None and start < previous[1]:
                lines.append(
                    f"{table}/{client}: run {run} resumed from cursor {start}, before run "
                    f"{previous[0]} resumed ({previous[1]}): the state went backwards (another "
                    "table's or client's cursor?)"
                )
            previous = (run, start)
    return lines


def _missing_top(table: str, missing: list[fp.Key], journal: Journal) -> list[str]:
    lines = []
    by_client: dict[str, list[int]] = collections.defaultdict(list)
    for client, number in missing:
        by_client[client].append(number)
    for client, numbers in sorted(by_client.items()):
        resumed = ", ".join(f"run {r}: {s}" for r, s in journal.starts[table, client])
        ahead = journal.resumed_past(table, client, min(numbers))
        cause = (
            f"; the state ran ahead: {', '.join(f'run {r} resumed at {s}' for r, s in ahead)}"
            if ahead
            else ""
        )
        fetched = sorted(
            {r for n in numbers for r in journal.fetched.get((table, (client, n)), [])}
        )
        lines.append(
            f"  {table}/{client}: ids {_ranges(numbers)} missing; fetched by runs "
            f"{journal.runs_text(fetched)}; resumed from ({resumed}){cause}"
        )
    return lines


def _lost_children(
    table: str,
    missing: list[fp.Key],
    expected: dict[str, dict[fp.Key, str]],
    counts: collections.Counter[fp.Key],
    journal: Journal,
) -> list[str]:
    """One line per parent with missing children, saying what became of it."""
    parent_table = fp.PARENTS[table]
    width = len(fp.KEYS[parent_table])
    by_parent: dict[fp.Key, list[fp.Key]] = collections.defaultdict(list)
    for key in missing:
        by_parent[key[:width]].append(key)
    top = _top(table)
    lines = [
        f"  {len(by_parent)} parents in {parent_table} lost children in {table} "
        f"({len(missing)} rows):"
    ]
    for parent, lost in sorted(by_parent.items()):
        of = sum(1 for key in expected[table] if key[:width] == parent)
        fetched = sorted({r for key in lost for r in journal.fetched.get((table, key), [])})
        client, top_id = parent[0], parent[1]
        ahead = journal.resumed_past(top, client, top_id)
        cause = (
            f"; {top}/{client} resumed past it: "
            + ", ".join(f"run {r} at {s}" for r, s in ahead)
            + " (its state covered the parent before these children were durable)"
            if ahead
            else ""
        )
        lines.append(
            f"    {parent_table} {parent}: {of - len(lost)} of {of} {table} stored; "
            f"fetched by runs {journal.runs_text(fetched)}{cause}"
        )
    return lines


def _duplicates(
    table: str,
    stored: list[Stored],
    counts: collections.Counter[fp.Key],
    journal: Journal,
    mode: str,
) -> list[str]:
    lines = []
    times: dict[fp.Key, list[str]] = collections.defaultdict(list)
    for row in stored:
        times[row.key].append(row.sync_time)
    for key, copies in sorted(counts.items()):
        if copies == 1:
            continue
        fetched = journal.fetched.get((table, key), [])
        same_run = len(set(times[key])) < copies
        if mode != "append":
            lines.append(f"  {table} {key}: {copies} copies under {mode}")
        elif copies > len(fetched) or same_run:
            why = "two copies from one run (equal _cq_sync_time)" if same_run else ""
            lines.append(
                f"  {table} {key}: {copies} copies, more than the runs that fetched it "
                f"({journal.runs_text(fetched)}) allow {why}".rstrip()
            )
    return lines


def _bad_links(table: str, stored: list[Stored], found: dict[str, list[Stored]]) -> list[str]:
    parent_table = fp.PARENTS[table]
    width = len(fp.KEYS[parent_table])
    ids: dict[fp.Key, set[str]] = collections.defaultdict(set)
    for row in found.get(parent_table, []):
        ids[row.key].add(row.cq_id)
    return [
        f"  {table} {row.key}: _cq_parent_id {row.parent_id} is not the _cq_id of "
        f"{parent_table} {row.key[:width]} ({', '.join(sorted(ids[row.key[:width]])) or 'absent'})"
        for row in stored
        if ids[row.key[:width]] and row.parent_id not in ids[row.key[:width]]
    ]


def report(problems: list[str], runs: Sequence[Run]) -> str:
    """The failure message: the problems, what each run did, and the last run's output."""
    lines = ["the destination is not what a complete sync delivers:", *problems, "runs:"]
    lines += [f"  {run.describe()}" for run in runs]
    if runs and not runs[-1].killed:
        lines += [f"output of run {runs[-1].number}:", runs[-1].tail()]
    return "\n".join(lines)


def python_command(*args: str) -> list[str]:
    """``python -m headwater.cli`` with ``args``, on this interpreter."""
    return [sys.executable, "-m", "headwater.cli", *args]
