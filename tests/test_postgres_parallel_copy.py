"""PostgreSQL appends split over two connections, against a real server: both halves commit
together with the state that covers them, roll back together, and fail together; modes that
must not double a row stay on one connection."""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from headwater.destinations import open_destination
from headwater.destinations.base import DestinationTable, StateEntry, WriteMode, WriteOptions
from headwater.destinations.postgres import PARALLEL_MIN_ROWS, PostgresDestination
from headwater.errors import DestinationError

ROWS = PARALLEL_MIN_ROWS * 2


def wide_rows(rows: int = ROWS) -> tuple[DestinationTable, pa.Table]:
    """A table plan and its rows as the sync engine hands them over (with ``_cq_id``)."""
    data = pa.table(
        {"id": pa.array(range(rows), pa.int64()), "name": [f"n{i}" for i in range(rows)]}
    )
    table = hw.Table(
        "wide",
        [hw.Column("id", pa.int64(), primary_key=True), hw.Column("name", pa.string())],
        resolver=lambda client: data,
    )
    plugin = hw.Plugin(name="wide", version="1", tables=[table])
    batches = [m.batch for m in plugin.sync() if isinstance(m, hw.Insert)]
    return DestinationTable(table, table.arrow_schema, False), pa.Table.from_batches(batches)


def options(mode: WriteMode = "append") -> WriteOptions:
    return WriteOptions(source_name="wide", sync_time=dt.datetime.now(dt.UTC), mode=mode)


@pytest.fixture
def observer(postgres_url: str) -> Iterator[Any]:
    """A cursor of another session: it sees only what was committed."""
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(postgres_url, autocommit=True) as con, con.cursor() as cur:
        yield cur


def query(cur: Any, sql: str) -> list[tuple[Any, ...]]:
    cur.execute(sql)
    rows: list[tuple[Any, ...]] = cur.fetchall()
    return rows


def committed_ids(cur: Any) -> list[int]:
    return [row[0] for row in query(cur, 'SELECT id FROM "wide" ORDER BY id')]


def other_sessions(cur: Any) -> int:
    """Sessions on this database other than the observer's own."""
    rows = query(
        cur,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return int(rows[0][0])


def destination(url: str) -> PostgresDestination:
    opened = open_destination(url)
    assert isinstance(opened, PostgresDestination)
    return opened


def test_a_large_append_goes_over_two_connections_and_commits_with_its_state(
    postgres_url: str, observer: Any
) -> None:
    plan, data = wide_rows()
    dest = destination(postgres_url)
    try:
        dest.prepare([plan], options())
        dest.write("wide", data)
        assert other_sessions(observer) == 2
        assert committed_ids(observer) == []  # neither half is visible before the commit
        dest.commit([StateEntry("wide", "cursor", str(ROWS))])
        assert committed_ids(observer) == list(range(ROWS))
        state = query(observer, "SELECT key, value FROM _headwater_state")
        assert state == [("cursor", str(ROWS))]
        # A small write after it stays on the first connection; the end commits both.
        dest.write("wide", data.slice(0, 10))
        dest.finish(["wide"], [])
    finally:
        dest.close()
    assert committed_ids(observer) == sorted([*range(ROWS), *range(10)])
    assert other_sessions(observer) == 0  # both connections closed


def test_abort_rolls_back_both_halves(postgres_url: str, observer: Any) -> None:
    plan, data = wide_rows()
    dest = destination(postgres_url)
    try:
        dest.prepare([plan], options())
        dest.write("wide", data)
        dest.abort()
    finally:
        dest.close()
    assert committed_ids(observer) == []


@pytest.mark.parametrize(
    ("check", "failing_half"),
    [("id < 30000", "the second"), ("id >= 10000", "the first")],
)
def test_a_half_that_fails_fails_the_write_and_neither_half_is_kept(
    postgres_url: str, observer: Any, check: str, failing_half: str
) -> None:
    plan, data = wide_rows()
    dest = destination(postgres_url)
    try:
        dest.prepare([plan], options())
        observer.execute(f'ALTER TABLE "wide" ADD CONSTRAINT only_some CHECK ({check})')
        with pytest.raises(DestinationError, match=r"writing table 'wide' failed.*only_some"):
            dest.write("wide", data)
        dest.abort()
    finally:
        dest.close()
    assert committed_ids(observer) == [], f"{failing_half} half failed, yet rows were kept"


@pytest.mark.parametrize("mode", ["overwrite", "upsert"])
def test_overwrite_and_upsert_stay_on_one_connection(
    postgres_url: str, observer: Any, mode: WriteMode
) -> None:
    # Overwrite must replace atomically and upsert must not race itself over a key: both keep
    # every row in the one transaction.
    plan, data = wide_rows()
    dest = destination(postgres_url)
    try:
        dest.prepare([plan], options(mode))
        dest.write("wide", data)
        assert other_sessions(observer) == 1
        dest.finish(["wide"], [])
    finally:
        dest.close()
    assert committed_ids(observer) == list(range(ROWS))


def test_a_refused_second_connection_leaves_every_row_on_the_first(
    postgres_url: str, observer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Superusers pass any connection limit: this runs as a role allowed one connection.
    observer.execute("CREATE ROLE headwater_one LOGIN CONNECTION LIMIT 1")
    observer.execute("GRANT CREATE ON SCHEMA public TO headwater_one")
    parts = urllib.parse.urlsplit(postgres_url)
    url = urllib.parse.urlunsplit(
        parts._replace(netloc="headwater_one@" + parts.netloc.split("@")[-1])
    )
    plan, data = wide_rows()
    dest = destination(url)
    try:
        dest.prepare([plan], options())
        with caplog.at_level(logging.WARNING, logger="headwater.local"):
            dest.write("wide", data)
        dest.finish(["wide"], [])
        assert committed_ids(observer) == list(range(ROWS))
    finally:
        dest.close()
        observer.execute('DROP TABLE IF EXISTS "wide", _headwater_state')
        observer.execute("REVOKE CREATE ON SCHEMA public FROM headwater_one")
        observer.execute("DROP ROLE headwater_one")
    warnings = [r for r in caplog.records if "writing on one connection" in r.getMessage()]
    assert len(warnings) == 1
    assert "too many connections" in str(getattr(warnings[0], "error", ""))
