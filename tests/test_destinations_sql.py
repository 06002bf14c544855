"""The statements that end a sync, built once for DuckDB and PostgreSQL, delete the same rows.

Each case runs the statements the destinations' own dialects get for one plan against a real
DuckDB database and a real PostgreSQL database holding the same rows and state, and compares
what is left in both with what the write mode promises.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import headwater as hw
from headwater.destinations.base import DestinationTable, StateEntry, WriteMode, WriteOptions
from headwater.destinations.duckdb import DUCKDB_DIALECT
from headwater.destinations.duckdb import STATE_TABLE as DUCKDB_STATE_TABLE
from headwater.destinations.postgres import postgres_dialect
from headwater.destinations.sql import SqlDialect, Statement, end_of_sync, forget_table_state

EARLIER = dt.datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 1, 2, 10, 0, 0, 654321, tzinfo=dt.UTC)
SOURCE = "it's-a-source"  # a quote, so that an unescaped literal would fail

#: Rows of every table: (id, _cq_source_name, _cq_sync_time).
ROWS = [
    (1, SOURCE, EARLIER),  # this source, an earlier sync
    (2, SOURCE, NOW),  # this sync
    (3, "other", EARLIER),  # another source
    (4, "other", NOW),  # another source, the same instant
]
#: Stored state: (source_name, table_name, key, value).
STATE = [
    (SOURCE, "done", "done.cursor", "1"),
    (SOURCE, "cursor", "cursor.cursor", "1"),
    (SOURCE, "failed", "failed.cursor", "1"),
    ("other", "done", "done.cursor", "9"),
]


def plan(name: str, *, incremental: bool) -> DestinationTable:
    table = hw.Table(name, [hw.Column("id", pa.int64(), primary_key=True)])
    return DestinationTable(table, table.arrow_schema, incremental)


#: A completed table, a completed incremental one, and one that failed.
TABLES = [
    plan("done", incremental=False),
    plan("cursor", incremental=True),
    plan("failed", incremental=False),
]
COMPLETED = {"done", "cursor"}


class Database:
    """One database with the tables and state above, and the statements' runner."""

    def __init__(self, dialect: SqlDialect, execute: Any, query: Any) -> None:
        self.dialect = dialect
        self._execute = execute
        self._query = query
        self._execute(
            f"CREATE TABLE {dialect.state_table} (source_name text, table_name text, "
            "key text, value text)"
        )
        for row in STATE:
            self._execute(
                f"INSERT INTO {dialect.state_table} VALUES "
                + "("
                + ", ".join(_literal(v) for v in row)
                + ")"
            )
        for table in TABLES:
            name = dialect.table(table.name)
            self._execute(
                f'CREATE TABLE {name} (id bigint, "_cq_source_name" text, '
                '"_cq_sync_time" timestamp with time zone)'
            )
            for id_, source, time in ROWS:
                self._execute(
                    f"INSERT INTO {name} VALUES ({id_}, {_literal(source)}, "
                    f"TIMESTAMPTZ '{time.isoformat()}')"
                )

    def run(self, statements: list[Statement]) -> None:
        for statement in statements:
            self._execute(statement.sql, statement.params)

    def ids(self, table: str) -> list[int]:
        return sorted(row[0] for row in self._query(f"SELECT id FROM {self.dialect.table(table)}"))

    def state(self) -> list[tuple[str, str]]:
        return sorted(
            (row[0], row[1])
            for row in self._query(
                f"SELECT source_name, table_name FROM {self.dialect.state_table}"
            )
        )


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@pytest.fixture
def duckdb_database() -> Iterator[Database]:
    con = duckdb.connect(":memory:")

    def execute(sql: str, params: tuple[str, ...] = ()) -> None:
        con.execute(sql, list(params))

    def query(sql: str) -> list[tuple[Any, ...]]:
        return con.execute(sql).fetchall()

    yield Database(DUCKDB_DIALECT, execute, query)
    con.close()


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[Database]:
    import adbc_driver_postgresql.dbapi as pg

    con = pg.connect(postgres_url, autocommit=True)
    cur = con.cursor()

    def execute(sql: str, params: tuple[str, ...] = ()) -> None:
        assert params == (), "PostgreSQL's statements carry their values inline"
        cur.execute(sql)

    def query(sql: str) -> list[tuple[Any, ...]]:
        cur.execute(sql)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows

    yield Database(postgres_dialect("public"), execute, query)
    cur.close()
    con.close()


def options(mode: WriteMode, delete_stale: bool = False) -> WriteOptions:
    return WriteOptions(source_name=SOURCE, sync_time=NOW, mode=mode, delete_stale=delete_stale)


PENDING = [
    StateEntry("done", "done.cursor", "2"),
    StateEntry("failed", "failed.cursor", "2"),
]


@pytest.mark.parametrize(
    ("mode", "delete_stale", "left", "state"),
    [
        # overwrite: completed tables keep only this sync's rows; the failed table keeps
        # its old rows and loses this sync's.
        (
            "overwrite",
            False,
            {"done": [2], "cursor": [2], "failed": [1, 3, 4]},
            [StateEntry("done", "done.cursor", "2")],
        ),
        # delete_stale: this source's earlier rows go from completed, non-incremental tables.
        ("append", True, {"done": [2, 3, 4], "cursor": [1, 2, 3, 4], "failed": [1, 2, 3, 4]}, None),
        ("upsert", True, {"done": [2, 3, 4], "cursor": [1, 2, 3, 4], "failed": [1, 2, 3, 4]}, None),
        # neither: nothing is deleted.
        ("append", False, {t.name: [1, 2, 3, 4] for t in TABLES}, None),
    ],
)
def test_both_dialects_delete_the_same_rows(
    duckdb_database: Database,
    postgres_database: Database,
    mode: WriteMode,
    delete_stale: bool,
    left: dict[str, list[int]],
    state: list[StateEntry] | None,
) -> None:
    for database in (duckdb_database, postgres_database):
        end = end_of_sync(database.dialect, TABLES, COMPLETED, options(mode, delete_stale), PENDING)
        database.run(end.statements)
        assert {t.name: database.ids(t.name) for t in TABLES} == left
        assert end.state == (PENDING if state is None else state)
    # overwrite forgets the completed tables' stored state (theirs comes from this sync)
    forgotten = {(SOURCE, "done"), (SOURCE, "cursor")} if mode == "overwrite" else set()
    kept = sorted({(s, t) for s, t, _, _ in STATE} - forgotten)
    assert duckdb_database.state() == postgres_database.state() == kept


def test_both_dialects_forget_one_tables_state(
    duckdb_database: Database, postgres_database: Database
) -> None:
    for database in (duckdb_database, postgres_database):
        database.run([forget_table_state(database.dialect, SOURCE, "failed")])
    kept = sorted({(s, t) for s, t, _, _ in STATE} - {(SOURCE, "failed")})
    assert duckdb_database.state() == postgres_database.state() == kept


def test_duckdb_binds_state_values_and_postgres_inlines_them() -> None:
    statement = forget_table_state(DUCKDB_DIALECT, SOURCE, "done")
    assert statement.params == (SOURCE, "done")
    assert DUCKDB_STATE_TABLE in statement.sql and SOURCE not in statement.sql
    inline = forget_table_state(postgres_dialect("sales"), SOURCE, "done")
    assert inline.params == ()
    assert '"sales"."_headwater_state"' in inline.sql and "'it''s-a-source'" in inline.sql
