"""DuckDB, the embedded default: ``duckdb:///path/to/file.duckdb``.

Batches go in through DuckDB's Arrow scan (``INSERT INTO t BY NAME SELECT ... FROM batch``),
with CloudQuery's extension columns presented as Arrow's canonical ``uuid``/``json`` types so
DuckDB stores ``UUID`` and ``JSON`` without a cast. A sync runs in a transaction committed with
the state it covers (``_headwater_state``), so a crash rolls back to the last commit.

Rows are gathered into large INSERTs, which DuckDB writes on all its threads; the order of rows
within a table is not kept (SQL tables have none: use ``ORDER BY``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from headwater import types
from headwater.destinations.base import (
    CQ_SOURCE_NAME,
    CQ_SYNC_TIME,
    DestinationTable,
    StateEntry,
    Unstorable,
    WriteOptions,
    batches_of,
    check_table_names,
    empty_batch,
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
    timestamp_literal,
)
from headwater.destinations.typemap import batch_converter
from headwater.errors import DestinationError, MigrationError

__all__ = ["DuckDBDestination"]

STATE_TABLE = "_headwater_state"
_BATCH_VIEW = "_headwater_batch"
#: How the end-of-sync statements name tables and pass values in DuckDB.
DUCKDB_DIALECT = SqlDialect(table=quote, state_table=STATE_TABLE, bind=True)


def _error(url: str, action: str, exc: BaseException) -> DestinationError:
    message = str(exc).strip()
    if isinstance(exc, duckdb.IOException) and "lock" in message.lower():
        return DestinationError(
            f"{url}: the DuckDB file is locked by another process (close the other "
            f"connection or sync into another file): {message}"
        )
    if "No space left" in message or "File too large" in message or "disk" in message.lower():
        return DestinationError(f"{url}: out of disk space while {action}: {message}")
    return DestinationError(f"{url}: {action} failed: {type(exc).__name__}: {message}")


def _unregister(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """Drop a registered Arrow view, quietly.

    After a failed statement the transaction is aborted and this would fail too, hiding the
    error that explains it (a full disk, say).
    """
    with contextlib.suppress(duckdb.Error):
        con.unregister(view)


class DuckDBDestination:
    """Writes a sync into a DuckDB database file.

    Args:
        path: The database file (created if missing); ``:memory:`` for an in-memory database.
        url: The destination URL, for messages.

    Raises:
        DestinationError: The file cannot be opened: locked by another process, in a missing
            directory, not a DuckDB file.
    """

    def __init__(self, path: str, url: str) -> None:
        self.url = url
        # DuckDB compresses and writes the row groups of one INSERT on all its threads only
        # when the INSERT is large and need not keep the input's order; a smaller one runs on
        # one thread and its rows are compressed again at commit. Rows held for that, all
        # tables together, are bounded in bytes beside the engine's own buffer.
        self.write_batch_rows = 500_000
        self.write_batch_bytes = 128 * 1024 * 1024
        self._path = path
        if path != ":memory:":
            parent = Path(path).expanduser().parent
            if not parent.is_dir():
                raise DestinationError(f"{url}: directory {str(parent)!r} does not exist")
        try:
            self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(path)
            # A table's rows have no order in SQL; not keeping the input's lets DuckDB insert
            # on all its threads (see write_batch_rows).
            self._con.execute("SET preserve_insertion_order = false")
        except duckdb.Error as exc:
            raise _error(url, "opening the database", exc) from exc
        self._options: WriteOptions | None = None
        self._plans: dict[str, DestinationTable] = {}
        self._writers: dict[str, Callable[[pa.RecordBatch], None]] = {}
        self._in_transaction = False
        self._pending_overwrite_state: list[StateEntry] = []

    # --- protocol ------------------------------------------------------------------------------

    def prepare(self, tables: Sequence[DestinationTable], options: WriteOptions) -> dict[str, str]:
        """Create or migrate ``tables``, then open the sync's transaction.

        Returns:
            The stored incremental state of this source (without the tables an ``overwrite``
            sync rebuilds).
        """
        check_table_names(tables, self.url)
        self._options = options
        self._plans = {plan.name: plan for plan in tables}
        con = self._connection()
        self._begin()
        try:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (source_name VARCHAR NOT NULL, "
                "table_name VARCHAR NOT NULL, key VARCHAR NOT NULL, value VARCHAR NOT NULL, "
                "updated_at TIMESTAMPTZ NOT NULL)"
            )
            for plan in tables:
                self._migrate(plan, options)
            rows = con.execute(
                f"SELECT table_name, key, value FROM {STATE_TABLE} WHERE source_name = ?",
                [options.source_name],
            ).fetchall()
            self._commit()
        except MigrationError:
            self.abort()
            raise
        except duckdb.Error as exc:
            self.abort()
            raise _error(self.url, "creating the tables", exc) from exc
        for plan in tables:
            self._writers[plan.name] = self._writer(plan, options)
        self._begin()
        return state_of(rows, tables, options)

    def unstorable(self, table: str, batch: pa.RecordBatch) -> list[Unstorable]:
        """Nothing: DuckDB stores every value the engine accepts (NUL characters included)."""
        return []

    def write(self, table: str, data: pa.RecordBatch | pa.Table) -> None:
        """Insert ``data`` (upsert: replace the rows with the same key) in the transaction."""
        try:
            self._writers[table](data)
        except duckdb.Error as exc:
            raise _error(self.url, f"writing table {table!r}", exc) from exc

    def commit(self, state: Sequence[StateEntry]) -> None:
        """Commit the rows written so far with ``state``; ``overwrite`` keeps both for the end."""
        options = self._require_options()
        if options.mode == "overwrite":
            self._pending_overwrite_state.extend(state)
            return
        try:
            self._store_state(state, options)
            self._commit()
        except duckdb.Error as exc:
            raise _error(self.url, "committing", exc) from exc
        self._begin()

    def finish(self, completed: Collection[str], state: Sequence[StateEntry]) -> None:
        """The last commit: ``overwrite`` replaces, ``delete_stale`` deletes, state is stored."""
        options = self._require_options()
        con = self._connection()
        if options.mode == "overwrite":
            state = [*self._pending_overwrite_state, *state]
        end = end_of_sync(DUCKDB_DIALECT, self._plans.values(), completed, options, state)
        try:
            for statement in end.statements:
                con.execute(statement.sql, list(statement.params))
            self._store_state(end.state, options)
            self._commit()
        except duckdb.Error as exc:
            raise _error(self.url, "committing the end of the sync", exc) from exc

    def abort(self) -> None:
        """Roll back the open transaction."""
        if self._con is not None and self._in_transaction:
            self._in_transaction = False
            # The connection may be gone (e.g. the disk filled up): nothing was committed then.
            with contextlib.suppress(duckdb.Error):
                self._con.execute("ROLLBACK")

    def close(self) -> None:
        """Roll back anything uncommitted and close the database."""
        if self._con is None:
            return
        self.abort()
        try:
            self._con.close()
        finally:
            self._con = None

    # --- helpers -------------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise DestinationError(f"{self.url}: the destination is closed")
        return self._con

    def _require_options(self) -> WriteOptions:
        if self._options is None:
            raise DestinationError(f"{self.url}: prepare() must come first")
        return self._options

    def _begin(self) -> None:
        self._connection().execute("BEGIN TRANSACTION")
        self._in_transaction = True

    def _commit(self) -> None:
        self._connection().execute("COMMIT")
        self._in_transaction = False

    def _store_state(self, state: Sequence[StateEntry], options: WriteOptions) -> None:
        entries = latest(state)
        if not entries:
            return
        con = self._connection()
        rows = pa.table(
            {
                "table_name": [e.table_name for e in entries.values()],
                "key": [e.key for e in entries.values()],
                "value": [e.value for e in entries.values()],
            }
        )
        con.register("_headwater_state_rows", rows)
        try:
            con.execute(
                f"DELETE FROM {STATE_TABLE} WHERE source_name = ? "
                "AND key IN (SELECT key FROM _headwater_state_rows)",
                [options.source_name],
            )
            con.execute(
                f"INSERT INTO {STATE_TABLE} SELECT ?, table_name, key, value, now() "
                "FROM _headwater_state_rows",
                [options.source_name],
            )
        finally:
            _unregister(con, "_headwater_state_rows")

    def _select_list(self, schema: pa.Schema) -> list[str]:
        """Expressions of the converted batch's columns, named as the table's columns."""
        expressions = []
        for field in schema:
            column = quote(field.name)
            if types.extension_name(field.type) == "mac":
                expressions.append(
                    f"rtrim(regexp_replace(lower(hex({column})), '(..)', '\\1:', 'g'), ':') "
                    f"AS {column}"
                )
            else:
                expressions.append(column)
        return expressions

    def _expected_types(self, plan: DestinationTable) -> dict[str, str]:
        """The DuckDB column types of ``plan``, as DuckDB names them."""
        con = self._connection()
        empty = batch_converter(plan.schema, "duckdb")(empty_batch(plan.schema))
        con.register(_BATCH_VIEW, empty)
        try:
            described = con.execute(
                f"DESCRIBE SELECT {', '.join(self._select_list(plan.schema))}, "
                f"CAST(NULL AS TIMESTAMPTZ) AS {quote(CQ_SYNC_TIME)}, "
                f"CAST(NULL AS VARCHAR) AS {quote(CQ_SOURCE_NAME)} FROM {_BATCH_VIEW}"
            ).fetchall()
        finally:
            _unregister(con, _BATCH_VIEW)
        return {row[0]: row[1] for row in described}

    def _migrate(self, plan: DestinationTable, options: WriteOptions) -> None:
        con = self._connection()
        expected = self._expected_types(plan)
        existing = dict(
            con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' "
                "AND table_name = ? AND database_name = current_database() ORDER BY column_index",
                [plan.name],
            ).fetchall()
        )
        if existing:
            changed = [
                (column, existing[column], wanted)
                for column, wanted in expected.items()
                if column in existing and existing[column] != wanted
            ]
            if changed and not options.migrate_force:
                column, old, new = changed[0]
                raise MigrationError(plan.name, column, old, new, self.url)
            if not changed:
                for column, wanted in expected.items():
                    if column not in existing:
                        con.execute(
                            f"ALTER TABLE {quote(plan.name)} ADD COLUMN {quote(column)} {wanted}"
                        )
                return
            con.execute(f"DROP TABLE {quote(plan.name)}")
            forget = forget_table_state(DUCKDB_DIALECT, options.source_name, plan.name)
            con.execute(forget.sql, list(forget.params))
        columns = ", ".join(f"{quote(name)} {sql}" for name, sql in expected.items())
        con.execute(f"CREATE TABLE {quote(plan.name)} ({columns})")

    def _writer(
        self, plan: DestinationTable, options: WriteOptions
    ) -> Callable[[pa.RecordBatch], None]:
        con = self._connection()
        convert = batch_converter(plan.schema, "duckdb")
        select = ", ".join(
            [
                *self._select_list(plan.schema),
                f"{timestamp_literal(options.sync_time)} AS {quote(CQ_SYNC_TIME)}",
                f"{literal(options.source_name)} AS {quote(CQ_SOURCE_NAME)}",
            ]
        )
        table = quote(plan.name)
        insert = f"INSERT INTO {table} BY NAME SELECT {select} FROM {_BATCH_VIEW}"
        delete: str | None = None
        if options.mode_of(plan) == "upsert":
            # _cq_id is derived from the primary key (or is the key), so matching on it is
            # matching on the primary key, with one never-null column.
            delete = f'DELETE FROM {table} WHERE "_cq_id" IN (SELECT "_cq_id" FROM {_BATCH_VIEW})'

        def write(data: pa.RecordBatch | pa.Table) -> None:
            # One INSERT over several batches: DuckDB scans them on all its threads and writes
            # whole row groups as it goes.
            batches = [dedupe_last(one_batch(data))] if delete is not None else batches_of(data)
            converted = [convert(batch) for batch in batches]
            scan: Any = converted[0] if len(converted) == 1 else pa.Table.from_batches(converted)
            con.register(_BATCH_VIEW, scan)
            try:
                if delete is not None:
                    con.execute(delete)
                con.execute(insert)
            finally:
                _unregister(con, _BATCH_VIEW)

        return write
