"""The plugin the fault-injection suite syncs, and the rows it must end up with.

A fake, append-only API generated from a seed stands behind every table, so the rows a
complete sync must deliver are known exactly (:func:`expected_rows`). Per client (three by
default):

- ``fault_accounts``: incremental, ``state.set("cursor", ...)`` after every page; slow pages.
  - ``fault_projects`` (a child, slower than its parent: a pause per account), 1-3 per account;
    - ``fault_tasks`` (a grandchild, async, slower still), 0-3 per project.
- ``fault_events``: incremental under the same key name ``"cursor"``, with more rows than
  ``fault_accounts``, so a key shared across tables or clients skips rows.
- ``fault_flaky``: incremental through :class:`headwater.incremental.Cursor`; for one client,
  chosen by the seed, its resolver raises before a page chosen by the seed, on every run.
  - ``fault_flaky_items``: 1-2 per flaky row.

Incremental tables resume strictly after the cursor their resolver reads at its start: the
API lists rows in ascending id order and a page's cursor is set right after it is yielded, so
a rerun continues exactly where the committed state left off.

When the environment names a journal file descriptor (:data:`JOURNAL_FD_ENV`), every resolver
writes one JSON line to it before each page it yields (``{"table", "client", "rows"}``, the
primary keys about to be yielded) and one when it starts (``"start"``: the cursor it read). The
harness reads those lines to know which run fetched which row: a row may be written at most once
per run that fetched it, so this bounds what an append may duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pyarrow as pa

import headwater as hw
from headwater.incremental import Cursor

#: Environment variable holding the file descriptor journal lines are written to.
JOURNAL_FD_ENV = "HEADWATER_FAULT_JOURNAL_FD"

#: A row's primary key as a tuple, in the table's primary-key column order.
Key = tuple[Any, ...]

ACCOUNTS = "fault_accounts"
PROJECTS = "fault_projects"
TASKS = "fault_tasks"
EVENTS = "fault_events"
FLAKY = "fault_flaky"
FLAKY_ITEMS = "fault_flaky_items"

#: Every table's primary-key columns (the suite compares rows on them), parents first.
KEYS: dict[str, tuple[str, ...]] = {
    ACCOUNTS: ("client", "id"),
    PROJECTS: ("client", "account_id", "project"),
    TASKS: ("client", "account_id", "project", "task"),
    EVENTS: ("client", "id"),
    FLAKY: ("client", "id"),
    FLAKY_ITEMS: ("client", "flaky_id", "item"),
}
#: Each child table's parent table.
PARENTS: dict[str, str] = {PROJECTS: ACCOUNTS, TASKS: PROJECTS, FLAKY_ITEMS: FLAKY}
#: The tables whose resolvers keep incremental state.
INCREMENTAL = (ACCOUNTS, EVENTS, FLAKY)
#: What the failing parent raises.
FAILURE = "injected failure of fault_flaky"


class Spec(hw.Spec):
    """The fake API's shape and pace; every value has a default the suite is sized for."""

    seed: int = 0
    clients: int = 3
    accounts: int = 16
    account_page: int = 2
    events: int = 40
    event_page: int = 4
    flaky: int = 16
    flaky_page: int = 4
    #: Seconds the parents' APIs take per page; the children's take longer per call.
    page_pause: float = 0.05
    child_pause: float = 0.06
    grandchild_pause: float = 0.08


class Client:
    """One account of the fake API; its ``id`` names it in state keys."""

    def __init__(self, spec: Spec, client_id: str) -> None:
        self.spec = spec
        self.id = client_id


def _draw(seed: int, *parts: object) -> int:
    """A deterministic pseudo-random number from the seed and ``parts``."""
    text = repr((seed, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def client_ids(spec: Spec) -> list[str]:
    """The clients' ids, in the order the plugin runs them."""
    return [f"c{i}" for i in range(spec.clients)]


def project_count(spec: Spec, client: str, account: int) -> int:
    """Projects of an account: 1 to 3."""
    return 1 + _draw(spec.seed, "projects", client, account) % 3


def task_count(spec: Spec, client: str, account: int, project: int) -> int:
    """Tasks of a project: 0 to 3 (a parent without children is a case too)."""
    return _draw(spec.seed, "tasks", client, account, project) % 4


def item_count(spec: Spec, client: str, flaky_id: int) -> int:
    """Items of a flaky row: 1 or 2."""
    return 1 + _draw(spec.seed, "items", client, flaky_id) % 2


def failing_client(spec: Spec) -> str:
    """The client whose ``fault_flaky`` resolver fails."""
    ids = client_ids(spec)
    return ids[_draw(spec.seed, "failing client") % len(ids)]


def failing_page(spec: Spec) -> int:
    """The page (from 0) before which the failing client's ``fault_flaky`` resolver raises.

    Never the first page, so some rows (and their children) come before the failure.
    """
    pages = -(-spec.flaky // spec.flaky_page)
    return 1 + _draw(spec.seed, "failing page") % max(pages - 1, 1)


def payload(table: str, key: Key, seed: int) -> str:
    """The non-key value of a row: checks that what arrived is what the API served."""
    return f"{table}:{'/'.join(map(str, key))}:{_draw(seed, table, key) % 1_000_000:06d}"


class _Journal:
    """Writes journal lines to the harness's pipe, if it gave one."""

    def __init__(self) -> None:
        text = os.environ.get(JOURNAL_FD_ENV)
        self._fd = int(text) if text else None
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        if self._fd is None:
            return
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        # One write of less than PIPE_BUF bytes reaches the pipe whole, even if the process
        # is killed right after; the lock keeps lines of concurrent resolvers apart anyway.
        assert len(line) < 4096, "a journal line must fit one atomic pipe write"
        with self._lock:
            os.write(self._fd, line)


_journal = _Journal()


def _page(table: str, client: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Journals ``rows`` as about to be yielded, and returns them."""
    keys = [[row[column] for column in KEYS[table]] for row in rows]
    _journal.write({"table": table, "client": client, "rows": keys})
    return rows


def _row(table: str, seed: int, **key: Any) -> dict[str, Any]:
    values = tuple(key[column] for column in KEYS[table])
    return {**key, "payload": payload(table, values, seed)}


def _columns(table: str) -> list[hw.Column]:
    types = {"client": pa.string()}
    return [
        *(hw.Column(name, types.get(name, pa.int64()), primary_key=True) for name in KEYS[table]),
        hw.Column("payload", pa.string()),
    ]


@hw.table(ACCOUNTS, columns=_columns(ACCOUNTS), description="Incremental parent, 'cursor' key.")
def accounts(client: Client, state: hw.State) -> Iterator[list[dict[str, Any]]]:
    """Accounts after the stored cursor, a page at a time, the cursor set behind each page."""
    spec = client.spec
    start = int(state.get("cursor") or 0)
    _journal.write({"table": ACCOUNTS, "client": client.id, "start": start})
    for first in range(start + 1, spec.accounts + 1, spec.account_page):
        time.sleep(spec.page_pause)
        ids = range(first, min(first + spec.account_page, spec.accounts + 1))
        rows = [_row(ACCOUNTS, spec.seed, client=client.id, id=i) for i in ids]
        yield _page(ACCOUNTS, client.id, rows)
        state.set("cursor", str(ids[-1]))


@accounts.child(PROJECTS, columns=_columns(PROJECTS), description="Child, slower than its parent.")
def projects(client: Client, account: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The account's projects, in one slow call."""
    spec = client.spec
    time.sleep(spec.child_pause)
    n = project_count(spec, client.id, account["id"])
    rows = [
        _row(PROJECTS, spec.seed, client=client.id, account_id=account["id"], project=p)
        for p in range(1, n + 1)
    ]
    yield _page(PROJECTS, client.id, rows)


@projects.child(TASKS, columns=_columns(TASKS), description="Grandchild, async and slowest.")
async def tasks(client: Client, project: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
    """The project's tasks, in one slower call (none for some projects)."""
    spec = client.spec
    await asyncio.sleep(spec.grandchild_pause)
    account_id, number = project["account_id"], project["project"]
    n = task_count(spec, client.id, account_id, number)
    rows = [
        _row(TASKS, spec.seed, client=client.id, account_id=account_id, project=number, task=t)
        for t in range(1, n + 1)
    ]
    if rows:
        yield _page(TASKS, client.id, rows)


@hw.table(EVENTS, columns=_columns(EVENTS), description="Incremental, the same 'cursor' key.")
def events(client: Client, state: hw.State) -> Iterator[list[dict[str, Any]]]:
    """Events after the stored cursor, under the key name ``fault_accounts`` uses too."""
    spec = client.spec
    start = int(state.get("cursor") or 0)
    _journal.write({"table": EVENTS, "client": client.id, "start": start})
    for first in range(start + 1, spec.events + 1, spec.event_page):
        time.sleep(spec.page_pause)
        ids = range(first, min(first + spec.event_page, spec.events + 1))
        yield _page(
            EVENTS, client.id, [_row(EVENTS, spec.seed, client=client.id, id=i) for i in ids]
        )
        state.set("cursor", str(ids[-1]))


@hw.table(FLAKY, columns=_columns(FLAKY), description="Incremental parent that fails part-way.")
def flaky(client: Client, state: hw.State) -> Iterator[list[dict[str, Any]]]:
    """Rows after a :class:`Cursor`; one client's API fails before the same page every time."""
    spec = client.spec
    cursor = Cursor(state, "cursor", kind="int", start=0)
    _journal.write({"table": FLAKY, "client": client.id, "start": cursor.since})

    def pages() -> Iterator[list[dict[str, Any]]]:
        for first in range(cursor.since + 1, spec.flaky + 1, spec.flaky_page):
            time.sleep(spec.page_pause)
            if client.id == failing_client(spec) and first > failing_page(spec) * spec.flaky_page:
                raise RuntimeError(FAILURE)
            ids = range(first, min(first + spec.flaky_page, spec.flaky + 1))
            rows = [_row(FLAKY, spec.seed, client=client.id, id=i) for i in ids]
            yield _page(FLAKY, client.id, rows)

    yield from cursor.track(pages(), field="id")


@flaky.child(FLAKY_ITEMS, columns=_columns(FLAKY_ITEMS), description="Child of the failing parent.")
def flaky_items(client: Client, row: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """A flaky row's items, in one slow call."""
    spec = client.spec
    time.sleep(spec.child_pause)
    n = item_count(spec, client.id, row["id"])
    items = [
        _row(FLAKY_ITEMS, spec.seed, client=client.id, flaky_id=row["id"], item=i)
        for i in range(1, n + 1)
    ]
    yield _page(FLAKY_ITEMS, client.id, items)


plugin = hw.Plugin(
    name="fault",
    version="1.0.0",
    tables=[accounts, events, flaky],
    spec=Spec,
    connect=lambda spec: Client(spec, "root"),
    clients=lambda root: [Client(root.spec, i) for i in client_ids(root.spec)],
)


def expected_rows(spec: Spec) -> dict[str, dict[Key, str]]:
    """Every row a complete sync delivers, per table: primary key -> payload.

    Everything the fake API serves, less the failing client's ``fault_flaky`` rows from the
    failing page on (and their items), which no run ever gets.
    """
    rows: dict[str, dict[Key, str]] = {table: {} for table in KEYS}

    def add(table: str, *key: Any) -> None:
        rows[table][key] = payload(table, key, spec.seed)

    cut = failing_page(spec) * spec.flaky_page
    for c in client_ids(spec):
        for a in range(1, spec.accounts + 1):
            add(ACCOUNTS, c, a)
            for p in range(1, project_count(spec, c, a) + 1):
                add(PROJECTS, c, a, p)
                for t in range(1, task_count(spec, c, a, p) + 1):
                    add(TASKS, c, a, p, t)
        for e in range(1, spec.events + 1):
            add(EVENTS, c, e)
        last = cut if c == failing_client(spec) else spec.flaky
        for f in range(1, last + 1):
            add(FLAKY, c, f)
            for i in range(1, item_count(spec, c, f) + 1):
                add(FLAKY_ITEMS, c, f, i)
    return rows
