"""PostgreSQL: ``postgresql://user:password@host:port/database``, through ADBC.

Batches go to the server with COPY BINARY (``adbc-driver-postgresql`` bulk ingest), each column
in the wire form of its PostgreSQL type (see :mod:`headwater.destinations.typemap`): ``uuid`` as
its 16 bytes, ``jsonb`` with its version byte, arrays, ``timestamp with time zone``. Columns
that need a server-side cast (``inet``, ``mac`` text) and upserts go through a temporary staging
table. A sync runs in one transaction per commit, with the state it covers
(``_headwater_state``), so a crash rolls back to the last commit.

Values the engine accepts but PostgreSQL refuses (the NUL character in ``text`` and ``jsonb``,
NaN inside JSON) are found before COPY, over whole columns
(:func:`~headwater.destinations.typemap.postgres_refusals`), and their rows left out as row
errors by the sync: one refused value would otherwise fail the COPY and roll back every table.

Large appends are split over a second connection, whose half is COPYed at the same time: one
backend parses and stores rows on one core, so a single COPY stream leaves the server's other
cores idle and is bound by that one backend. The second connection commits first, then the
first commits the state with its half: state never covers rows that are not durable. A crash
between the two commits leaves the second half of the last batch stored, and the rerun appends
it again; ``upsert`` and ``overwrite`` stay on one connection, so they never double a row and
``overwrite`` replaces atomically.

Needs ``pip install 'headwater[postgres]'``.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from headwater.destinations.base import (
    CQ_SOURCE_NAME,
    CQ_SYNC_TIME,
    DestinationTable,
    StateEntry,
    SyncColumns,
    Unstorable,
    WriteOptions,
    batches_of,
    check_table_names,
    latest,
    one_batch,
    state_of,
)
from headwater.destinations.sql import (
    SqlDialect,
    dedupe_last,
    end_of_sync,
    forget_table_state,
    literal,
    quote,
)
from headwater.destinations.typemap import (
    batch_converter,
    postgres_cast,
    postgres_refusals,
    postgres_staged_type,
    postgres_type,
)
from headwater.errors import DestinationError, MigrationError
from headwater.redaction import redact

__all__ = ["PostgresDestination"]

logger = logging.getLogger("headwater.local")

STATE_TABLE = "_headwater_state"
#: How long a statement waits for a lock held by another session before failing.
DEFAULT_LOCK_TIMEOUT = "30s"
DEFAULT_CONNECT_TIMEOUT = 10
#: Rows per batch handed to the driver. It encodes a batch, sends it and only then encodes the
#: next, so with batches this size the server parses one while the next is encoded; with one
#: large batch the server and the client would take turns, each idle while the other works.
COPY_CHUNK_ROWS = 10_000
#: Appends of at least this many rows are split over two connections (see the module doc).
PARALLEL_MIN_ROWS = 2 * COPY_CHUNK_ROWS


def postgres_dialect(schema: str) -> SqlDialect:
    """How the end-of-sync statements name tables (in ``schema``) and pass values."""

    def table(name: str) -> str:
        return f"{quote(schema)}.{quote(name)}"

    return SqlDialect(table=table, state_table=table(STATE_TABLE), bind=False)


def _short_name(prefix: str, table: str) -> str:
    # PostgreSQL truncates identifiers at 63 bytes; table names may use all of them.
    return f"_hw_{prefix}_{zlib.crc32(table.encode()):08x}"


class PostgresDestination:
    """Writes a sync into a PostgreSQL database.

    Args:
        uri: A libpq connection URI.
        url: The URI without its password, for messages.

    Raises:
        DestinationError: The ADBC driver is not installed, or the server cannot be reached
            or refuses the connection.
    """

    def __init__(self, uri: str, url: str) -> None:
        self.url = url
        # Each COPY costs a catalog query and a round trip: fewer, larger ones go faster.
        self.write_batch_rows = 100_000
        self.write_batch_bytes = 64 * 1024 * 1024
        try:
            import adbc_driver_manager
            import adbc_driver_postgresql.dbapi as pg
        except ImportError as exc:
            raise DestinationError(
                f"{url}: PostgreSQL needs the ADBC driver: pip install 'headwater[postgres]' "
                f"({exc})"
            ) from None
        self._driver_error: type[Exception] = adbc_driver_manager.Error
        if "connect_timeout" not in uri:
            uri += ("&" if "?" in uri else "?") + f"connect_timeout={DEFAULT_CONNECT_TIMEOUT}"
        if uri.startswith("postgres://"):
            uri = "postgresql://" + uri[len("postgres://") :]
        self._connect: Callable[[], Any] = lambda: pg.connect(uri)
        try:
            self._con: Any = self._connect()
        except self._driver_error as exc:
            raise DestinationError(f"{url}: cannot connect: {_first_line(exc)}") from None
        self._cur: Any = self._con.cursor()
        self._second: _SecondConnection | None = None
        self._second_refused = False
        self._options: WriteOptions | None = None
        self._plans: dict[str, DestinationTable] = {}
        self._writers: dict[str, Callable[[pa.RecordBatch], None]] = {}
        self._refusals: dict[str, Callable[[pa.RecordBatch], list[Unstorable]] | None] = {}
        self._pending_overwrite_state: list[StateEntry] = []
        with self._errors("setting up the session"):
            self._schema: str = _set_up_session(self._cur)
            self._con.commit()
        self._dialect = postgres_dialect(self._schema)

    # --- protocol ------------------------------------------------------------------------------

    def prepare(self, tables: Sequence[DestinationTable], options: WriteOptions) -> dict[str, str]:
        """Create or migrate ``tables`` and read the stored state, in one transaction."""
        check_table_names(tables, self.url)
        self._options = options
        self._plans = {plan.name: plan for plan in tables}
        try:
            with self._errors("creating the tables"):
                self._execute(
                    f"CREATE TABLE IF NOT EXISTS {self._name(STATE_TABLE)} ("
                    "source_name text NOT NULL, table_name text NOT NULL, key text NOT NULL, "
                    "value text NOT NULL, updated_at timestamp with time zone NOT NULL, "
                    "PRIMARY KEY (source_name, key))"
                )
                for plan in tables:
                    self._migrate(plan, options)
                rows = self._query(
                    f"SELECT table_name, key, value FROM {self._name(STATE_TABLE)} "
                    f"WHERE source_name = {literal(options.source_name)}"
                )
                for plan in tables:
                    self._writers[plan.name] = self._writer(plan, options)
                    self._refusals[plan.name] = postgres_refusals(plan.schema)
                self._con.commit()
        except BaseException:
            self.abort()
            raise
        return state_of([(r[0], r[1], r[2]) for r in rows], tables, options)

    def unstorable(self, table: str, batch: pa.RecordBatch) -> list[Unstorable]:
        """Values COPY would refuse, failing the transaction: NUL in text and JSON, and more.

        See :func:`headwater.destinations.typemap.postgres_refusals`; tables without a
        column that can hold such a value are not checked.
        """
        refusals = self._refusals.get(table)
        return refusals(batch) if refusals is not None else []

    def write(self, table: str, data: pa.RecordBatch | pa.Table) -> None:
        """COPY ``data`` into ``table`` (upsert: replacing rows with the same key)."""
        with self._errors(f"writing table {table!r}"):
            self._writers[table](data)

    def commit(self, state: Sequence[StateEntry]) -> None:
        """Commit the rows written so far with ``state``; ``overwrite`` keeps both for the end."""
        options = self._require_options()
        if options.mode == "overwrite":
            self._pending_overwrite_state.extend(state)
            return
        with self._errors("committing"):
            self._commit_second()
            self._store_state(state, options)
            self._con.commit()

    def finish(self, completed: Collection[str], state: Sequence[StateEntry]) -> None:
        """The last commit: ``overwrite`` replaces, ``delete_stale`` deletes, state is stored."""
        options = self._require_options()
        if options.mode == "overwrite":
            state = [*self._pending_overwrite_state, *state]
        end = end_of_sync(self._dialect, self._plans.values(), completed, options, state)
        with self._errors("committing the end of the sync"):
            self._commit_second()
            for statement in end.statements:
                self._execute(statement.sql)
            self._store_state(end.state, options)
            self._con.commit()

    def abort(self) -> None:
        """Roll back the open transactions."""
        if self._con is None:
            return
        # A connection that is gone was rolled back by the server already.
        for con in (self._second.con if self._second else None, self._con):
            if con is not None:
                with contextlib.suppress(self._driver_error):
                    con.rollback()

    def close(self) -> None:
        """Roll back anything uncommitted and close the connections."""
        if self._con is None:
            return
        self.abort()
        try:
            if self._second is not None:
                with contextlib.suppress(self._driver_error):
                    self._second.close()
            self._cur.close()
            self._con.close()
        except self._driver_error:
            pass
        finally:
            self._con = None
            self._second = None

    # --- helpers -------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except self._driver_error as exc:
            text = _first_line(exc)
            if "lock timeout" in text:
                raise DestinationError(
                    f"{self.url}: {action}: a table is locked by another session and the lock "
                    f"was not released in time (lock_timeout): {text}"
                ) from None
            if "No space left" in text or "could not extend" in text:
                raise DestinationError(
                    f"{self.url}: out of disk space while {action}: {text}"
                ) from None
            raise DestinationError(f"{self.url}: {action} failed: {text}") from None

    def _require_options(self) -> WriteOptions:
        if self._options is None:
            raise DestinationError(f"{self.url}: prepare() must come first")
        return self._options

    def _name(self, table: str) -> str:
        return self._dialect.table(table)

    def _execute(self, sql: str) -> None:
        self._cur.execute(sql)

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        self._cur.execute(sql)
        rows: list[tuple[Any, ...]] = self._cur.fetchall()
        return rows

    def _second_connection(self) -> _SecondConnection | None:
        """The connection that COPYs half of large appends, opened at the first one.

        A server that refuses it (``max_connections`` reached) gets every write on one.
        """
        if self._second is None and not self._second_refused:
            try:
                self._second = _SecondConnection(self._connect())
            except self._driver_error as exc:
                self._second_refused = True
                logger.warning(
                    "writing on one connection: a second was refused",
                    extra={"destination": self.url, "error": _first_line(exc)},
                )
        return self._second

    def _commit_second(self) -> None:
        # First: the state the other connection commits next may cover these rows.
        if self._second is not None:
            self._second.con.commit()

    def _store_state(self, state: Sequence[StateEntry], options: WriteOptions) -> None:
        entries = latest(state)
        if not entries:
            return
        values = ", ".join(
            f"({literal(options.source_name)}, {literal(e.table_name)}, {literal(e.key)}, "
            f"{literal(e.value)}, now())"
            for e in entries.values()
        )
        self._execute(
            f"INSERT INTO {self._name(STATE_TABLE)} VALUES {values} "
            "ON CONFLICT (source_name, key) DO UPDATE SET table_name = EXCLUDED.table_name, "
            "value = EXCLUDED.value, updated_at = EXCLUDED.updated_at"
        )

    def _expected_types(self, plan: DestinationTable) -> dict[str, str]:
        expected = {field.name: postgres_type(field.type) for field in plan.schema}
        expected[CQ_SYNC_TIME] = "timestamp with time zone"
        expected[CQ_SOURCE_NAME] = "text"
        return expected

    def _migrate(self, plan: DestinationTable, options: WriteOptions) -> None:
        expected = self._expected_types(plan)
        table = self._name(plan.name)
        existing = {
            row[0]: (row[1], row[2])
            for row in self._query(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
                "FROM pg_attribute a WHERE a.attrelid = to_regclass("
                f"{literal(table)}) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
            )
        }
        if existing:
            changed = [
                (column, existing[column][0], wanted)
                for column, wanted in expected.items()
                if column in existing and existing[column][0] != wanted
            ]
            if changed and not options.migrate_force:
                column, old, new = changed[0]
                raise MigrationError(plan.name, column, old, new, self.url)
            if changed:
                self._execute(f"DROP TABLE {table}")
                self._execute(forget_table_state(self._dialect, options.source_name, plan.name).sql)
                existing = {}
            else:
                for column, wanted in expected.items():
                    if column not in existing:
                        self._execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} {wanted}")
                for column, (_, not_null) in existing.items():
                    if column not in expected and not_null:
                        # A column the plugin dropped: rows from now on leave it empty.
                        self._execute(
                            f"ALTER TABLE {table} ALTER COLUMN {quote(column)} DROP NOT NULL"
                        )
        if not existing:
            columns = ", ".join(f"{quote(name)} {sql}" for name, sql in expected.items())
            self._execute(f"CREATE TABLE {table} ({columns})")
        if options.mode_of(plan) == "upsert":
            self._execute(
                f"CREATE INDEX IF NOT EXISTS {quote(_short_name('key', plan.name))} "
                f'ON {table} ("_cq_id")'
            )

    def _writer(
        self, plan: DestinationTable, options: WriteOptions
    ) -> Callable[[pa.RecordBatch], None]:
        convert = batch_converter(plan.schema, "postgres")
        constants = SyncColumns(options)
        casts = {field.name: postgres_cast(quote(field.name), field.type) for field in plan.schema}
        columns = [*(field.name for field in plan.schema), CQ_SYNC_TIME, CQ_SOURCE_NAME]
        mode = options.mode_of(plan)
        upsert = mode == "upsert"
        cur = self._cur

        def wire(data: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
            """The rows as COPY sends them, with the sync's two columns."""
            batches = [
                constants.add(convert(chunk))
                for batch in batches_of(data)
                for chunk in chunks_of(batch, COPY_CHUNK_ROWS)
            ]
            return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches)

        if not upsert and not any(casts.values()):

            def copy_with(cursor: Any, data: pa.RecordBatch | pa.Table) -> None:
                cursor.adbc_ingest(plan.name, wire(data), "append", db_schema_name=self._schema)

            def copy(data: pa.RecordBatch | pa.Table) -> None:
                second = None
                if mode == "append" and data.num_rows >= PARALLEL_MIN_ROWS:
                    second = self._second_connection()
                if second is None:
                    copy_with(cur, data)
                    return
                half = data.num_rows // 2
                other = second.submit(copy_with, data.slice(half))
                try:
                    copy_with(cur, data.slice(0, half))
                finally:
                    # Waited for even when this half failed: the transaction it is in rolls
                    # back next, and a COPY still running on the other would outlive it.
                    failed = other.exception()
                if failed is not None:
                    raise failed

            return copy

        stage = _short_name("stage", plan.name)
        staged_types = {field.name: postgres_staged_type(field.type) for field in plan.schema}
        staged_types[CQ_SYNC_TIME] = "timestamp with time zone"
        staged_types[CQ_SOURCE_NAME] = "text"
        self._execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(stage)} ("
            + ", ".join(f"{quote(name)} {sql}" for name, sql in staged_types.items())
            + ")"
        )
        select = ", ".join(casts.get(name) or quote(name) for name in columns)
        column_list = ", ".join(quote(name) for name in columns)
        table = self._name(plan.name)
        statements = [
            f"INSERT INTO {table} ({column_list}) SELECT {select} FROM {quote(stage)}",
            f"TRUNCATE {quote(stage)}",
        ]
        if upsert:
            # Not `DELETE ... USING stage`: without statistics on the temporary table the
            # planner merge-joins it with a full scan of the table's key index, so every batch
            # read the whole table. An array of the batch's ids is looked up in the index.
            statements.insert(
                0,
                f'DELETE FROM {table} WHERE "_cq_id" = ANY(ARRAY(SELECT "_cq_id" FROM '
                f"{quote(stage)}))",
            )

        def staged(data: pa.RecordBatch | pa.Table) -> None:
            if upsert:
                data = dedupe_last(one_batch(data))
            cur.adbc_ingest(stage, wire(data), "append", temporary=True)
            for statement in statements:
                cur.execute(statement)

        return staged


class _SecondConnection:
    """A connection with the one thread that runs its COPYs next to the first connection's."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self._cur = con.cursor()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="headwater-postgres")
        try:
            _set_up_session(self._cur)
            con.commit()
        except BaseException:
            self.close()
            raise

    def submit(
        self,
        copy: Callable[[Any, pa.RecordBatch | pa.Table], None],
        data: pa.RecordBatch | pa.Table,
    ) -> Future[None]:
        """Runs ``copy(cursor, data)`` on this connection's thread; returns its future."""
        return self._thread.submit(copy, self._cur, data)

    def close(self) -> None:
        """Waits for the thread, then closes the connection."""
        self._thread.shutdown()
        self._cur.close()
        self.con.close()


def _set_up_session(cur: Any) -> str:
    """Settings every connection of a sync needs; returns the session's schema."""
    cur.execute("SET standard_conforming_strings = on")
    cur.execute("SELECT current_setting('lock_timeout'), current_schema()")
    timeout, schema = cur.fetchall()[0]
    if timeout == "0":
        cur.execute(f"SET lock_timeout = '{DEFAULT_LOCK_TIMEOUT}'")
    return str(schema or "public")


def chunks_of(batch: pa.RecordBatch, rows: int) -> list[pa.RecordBatch]:
    """``batch`` cut into slices of at most ``rows`` rows (no copy); an empty batch stays."""
    if batch.num_rows <= rows:
        return [batch]
    return [batch.slice(start, rows) for start in range(0, batch.num_rows, rows)]


def _first_line(exc: BaseException) -> str:
    # Redacted here, not only in the error: it also goes into log records' extra fields.
    text = redact(str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(exc).__name__
