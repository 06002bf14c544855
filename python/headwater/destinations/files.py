"""Directories of files: ``parquet:///dir`` and ``jsonl:///dir``.

Each table gets a sub-directory of files (``dir/<table>/<sync>-<n>.parquet``), rotated after
``max_file_rows`` rows or ``max_file_bytes`` bytes. ``dir/_headwater_state.json`` is the manifest:
the files of each table that are committed, the column types, and the incremental state.

Files are written in ``dir/.headwater-staging/`` under names ending in ``.tmp``, never in a table's
directory: readers globbing the tables (``dir/<table>/*.parquet``, ``dir/**/*.parquet``,
``read_json_auto('dir/<table>/*.jsonl')``, ``pyarrow.dataset``, hive-style layouts) see only
files that are complete. DuckDB's globs match names starting with ``.`` or ``_`` and ``**``
descends into hidden directories, so neither a name prefix nor the hidden directory alone would
hide them; ``pyarrow.dataset`` skips the directory for its leading dot. A commit closes the open
files, fsyncs them, renames them into their table's directory (the staging directory is on the
same filesystem, so the rename is atomic), then replaces the manifest atomically. So the state
in the manifest never runs ahead of the files it lists. A crash leaves at most files in the
staging directory, and complete files the manifest does not list yet (killed between the
renames and the manifest update); the next sync removes both before it writes anything.

Parquet files keep the CloudQuery schema's metadata, with ``uuid`` and ``json`` written as
Parquet's UUID and JSON logical types. JSON-lines files hold one object per row, made by DuckDB
from the Arrow batch (``uuid`` as text, ``json`` embedded, timestamps in UTC, binary as base64).

Modes: ``append``, ``overwrite`` (new files replace the old ones in one manifest update) and, for
Parquet, ``upsert`` (at the end of the sync, rows replaced by a newer row with the same
``_cq_id``, which is derived from the primary key, are removed by rewriting their files). By
default Parquet upserts tables with a primary key and appends to the others; JSON lines, which
cannot upsert, append and delete stale rows (a full-refresh table keeps the rows of its last
complete sync; incremental tables are appended to).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pydantic

from headwater import types
from headwater.destinations.base import (
    CQ_SOURCE_NAME,
    CQ_SYNC_TIME,
    DestinationTable,
    StateEntry,
    SyncColumns,
    Unstorable,
    WriteOptions,
    batches_of,
    check_modes,
    check_table_names,
    empty_batch,
    latest,
    state_of,
)
from headwater.destinations.typemap import batch_converter
from headwater.errors import DestinationError, MigrationError

__all__ = ["MANIFEST", "FileDestination", "FileOptions"]

MANIFEST = "_headwater_state.json"
_LOCK = ".headwater.lock"
#: Where files are written until a commit renames them into their table's directory.
STAGING = ".headwater-staging"
#: The suffix of a staged file, so that no ``*.parquet`` or ``*.jsonl`` glob matches it.
_STAGED = ".tmp"
#: How earlier versions named a file they were still writing, beside its final place.
_OLD_STAGED_PREFIX = "_tmp-"
#: Our data files; the ``_tmp-`` prefix is how earlier versions staged files in the table's
#: directory, left there by a crash.
_OURS = re.compile(r"^(_tmp-)?\d{8}T\d{6}Z-[0-9a-f]{8}-\d{5}\.(parquet|jsonl)$")


class FileOptions(pydantic.BaseModel):
    """Options of a file destination, from its URL's query string.

    Attributes:
        max_file_rows: Start a new file after this many rows.
        max_file_bytes: Start a new file once a file reaches this many bytes.
        row_group_rows: Parquet: rows buffered into one row group.
        compression: Parquet: the codec (``zstd``, ``snappy``, ``gzip``, ``none``).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    max_file_rows: int = pydantic.Field(default=1_000_000, ge=1)
    max_file_bytes: int = pydantic.Field(default=256 * 1024 * 1024, ge=1)
    row_group_rows: int = pydantic.Field(default=100_000, ge=1)
    compression: str = "zstd"


@dataclasses.dataclass
class _File:
    """A file written by this sync: staged until committed."""

    table: str
    name: str
    rows: int = 0
    committed: bool = False

    def entry(self, options: WriteOptions) -> dict[str, Any]:
        return {
            "file": self.name,
            "rows": self.rows,
            "source": options.source_name,
            "sync_time": options.sync_time.isoformat(),
        }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Writer:
    """The open file of one table, rotated by rows and bytes."""

    def __init__(
        self,
        destination: FileDestination,
        plan: DestinationTable,
        options: WriteOptions,
    ) -> None:
        self._dest = destination
        self._plan = plan
        self._options = options
        self._convert = batch_converter(plan.schema, "parquet")
        self._columns = SyncColumns(options)
        self.files: list[_File] = []
        self._handle: IO[bytes] | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._current: _File | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        fmt = self._dest.format
        limits = self._dest.file_options
        if fmt == "parquet":
            data = self._columns.add(self._convert(batch))
            self._buffer.append(data)
            self._buffered += data.num_rows
            if self._buffered >= limits.row_group_rows:
                self._flush()
        else:
            self._open()
            assert self._handle is not None and self._current is not None
            self._handle.write(self._dest.json_lines(self._plan, batch))
            self._current.rows += batch.num_rows
        if self._current is not None and (
            self._current.rows >= limits.max_file_rows
            or (self._handle is not None and self._handle.tell() >= limits.max_file_bytes)
        ):
            self.close_file()

    def _open(self) -> None:
        if self._current is not None:
            return
        name = self._dest.new_file_name()
        self._current = _File(self._plan.name, name)
        self.files.append(self._current)
        self._handle = open(self._dest.staged(name), "wb")  # noqa: SIM115 (closed in close_file)

    def _flush(self) -> None:
        if not self._buffer:
            return
        self._open()
        assert self._current is not None
        table = pa.Table.from_batches(self._buffer)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(
                self._handle,
                table.schema,
                compression=self._dest.file_options.compression,
            )
        self._parquet.write_table(table, row_group_size=len(table))
        self._current.rows += len(table)
        self._buffer, self._buffered = [], 0

    def close_file(self) -> None:
        """Finish the open file (footer written, data on disk); it stays staged until commit."""
        self._flush()
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
        self._current = None

    def discard(self) -> None:
        """Close and delete every file not committed yet."""
        with contextlib.suppress(Exception):
            if self._parquet is not None:
                self._parquet.close()
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        self._parquet, self._handle, self._current = None, None, None
        self._buffer, self._buffered = [], 0
        for file in self.files:
            if not file.committed:
                with contextlib.suppress(FileNotFoundError):
                    self._dest.staged(file.name).unlink()
        self.files = [f for f in self.files if f.committed]


class FileDestination:
    """Writes a sync into a directory of Parquet or JSON-lines files (see the module docs).

    Args:
        root: The directory (created if missing).
        format: ``parquet`` or ``jsonl``.
        query: Options from the URL (:class:`FileOptions`).
        url: The destination URL, for messages.

    Raises:
        DestinationError: Bad options, the directory cannot be created, or another sync holds
            its lock.
    """

    def __init__(self, root: str, format: str, query: dict[str, str], url: str) -> None:
        self.url = url
        self.write_batch_rows = 10_000
        self.write_batch_bytes = 64 * 1024 * 1024
        self.format = format
        try:
            self.file_options = FileOptions.model_validate(query)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
            )
            known = ", ".join(FileOptions.model_fields)
            raise DestinationError(f"{url}: bad options ({problems}); known: {known}") from None
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock: IO[bytes] | None = open(self.root / _LOCK, "ab")  # noqa: SIM115
        except OSError as exc:
            raise DestinationError(f"{url}: cannot use directory {root!r}: {exc}") from None
        try:
            _lock_exclusively(self._lock)
        except OSError:
            self._lock.close()
            self._lock = None
            raise DestinationError(
                f"{url}: another sync is writing into {root!r} (its lock file "
                f"{str(self.root / _LOCK)!r} is held); wait for it to finish"
            ) from None
        self._manifest: dict[str, Any] = {"version": 1, "tables": {}, "state": {}}
        self._options: WriteOptions | None = None
        self._plans: dict[str, DestinationTable] = {}
        self._writers: dict[str, _Writer] = {}
        self._pending_state: list[StateEntry] = []
        self._sequence = 0
        self._sync_id = ""
        self._duckdb: Any = None
        self._json_select: dict[str, str] = {}

    # --- protocol ------------------------------------------------------------------------------

    def prepare(self, tables: Sequence[DestinationTable], options: WriteOptions) -> dict[str, str]:
        """Read the manifest, remove files a crash left behind, check the column types."""
        check_table_names(tables, self.url)
        if options.mode is None and self.format == "jsonl":
            # JSON lines cannot replace a row by its key. Dropping this source's rows of
            # earlier syncs from each full-refresh table that synced completely keeps a rerun
            # from doubling it; incremental tables only fetch what is new, and keep resuming.
            options = options.model_copy(update={"mode": "append", "delete_stale": True})
        check_modes(
            options,
            tables,
            {"append": True, "overwrite": True, "upsert": self.format == "parquet"},
            self.url,
        )
        self._options = options
        self._plans = {plan.name: plan for plan in tables}
        self._sync_id = options.sync_time.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
        path = self.root / MANIFEST
        if path.exists():
            try:
                self._manifest = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise DestinationError(f"{self.url}: cannot read {str(path)!r}: {exc}") from None
        try:
            self._remove_strays()
        except OSError as exc:
            raise self._os_error("removing the files an interrupted sync left", exc) from None
        changed_manifest = False
        for plan in tables:
            changed_manifest |= self._migrate(plan, options)
        if changed_manifest:
            self._write_manifest()
        for plan in tables:
            self._writers[plan.name] = _Writer(self, plan, options)
        stored = self._manifest["state"].get(options.source_name, {})
        rows = [(entry["table"], key, entry["value"]) for key, entry in stored.items()]
        return state_of(rows, tables, options)

    def unstorable(self, table: str, batch: pa.RecordBatch) -> list[Unstorable]:
        """Nothing: Parquet and JSON lines store every value the engine accepts (NUL included)."""
        return []

    def write(self, table: str, data: pa.RecordBatch | pa.Table) -> None:
        """Append ``data`` to the table's open (staged) file."""
        try:
            for batch in batches_of(data):
                self._writers[table].write(batch)
        except OSError as exc:
            raise self._os_error(f"writing table {table!r}", exc) from None

    def commit(self, state: Sequence[StateEntry]) -> None:
        """Publish the files written so far and ``state`` (``overwrite``: at the end only)."""
        options = self._require_options()
        if options.mode == "overwrite":
            self._pending_state.extend(state)
            return
        try:
            for writer in self._writers.values():
                writer.close_file()
            self._publish(self._writers.keys())
            self._store_state(state, options)
            self._write_manifest()
        except OSError as exc:
            raise self._os_error("committing", exc) from None

    def finish(self, completed: Collection[str], state: Sequence[StateEntry]) -> None:
        """Publish the last files; ``overwrite``, ``delete_stale`` and ``upsert`` take effect."""
        options = self._require_options()
        obsolete: list[str] = []
        try:
            for writer in self._writers.values():
                writer.close_file()
            if options.mode == "overwrite":
                state = [*self._pending_state, *state]
                for name, writer in self._writers.items():
                    if name not in completed:
                        writer.discard()  # the table keeps its old files
                        continue
                    entries = self._table(name)["files"]
                    obsolete += [entry["file"] for entry in entries]
                    entries.clear()
                self._publish([name for name in self._writers if name in completed])
                stored = self._manifest["state"].setdefault(options.source_name, {})
                for key in [k for k, e in stored.items() if e["table"] in completed]:
                    del stored[key]
                state = [entry for entry in state if entry.table_name in completed]
            else:
                self._publish(self._writers.keys())
                if options.delete_stale:
                    for name, plan in self._plans.items():
                        if name in completed and not plan.incremental:
                            obsolete += self._drop_stale(name, options)
                for name, plan in self._plans.items():
                    if options.mode_of(plan) == "upsert":
                        obsolete += self._compact(name, options)
            self._store_state(state, options)
            self._write_manifest()
        except OSError as exc:
            raise self._os_error("committing the end of the sync", exc) from None
        for name in obsolete:
            with contextlib.suppress(FileNotFoundError):
                (self.root / name).unlink()

    def abort(self) -> None:
        """Delete every file not committed; the manifest stays as it was."""
        for writer in self._writers.values():
            writer.discard()

    def close(self) -> None:
        """Discard what was not committed and release the directory's lock."""
        self.abort()
        if self._duckdb is not None:
            self._duckdb.close()
            self._duckdb = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- helpers -------------------------------------------------------------------------------

    def _require_options(self) -> WriteOptions:
        if self._options is None:
            raise DestinationError(f"{self.url}: prepare() must come first")
        return self._options

    def _os_error(self, action: str, exc: OSError) -> DestinationError:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return DestinationError(
                f"{self.url}: out of disk space while {action} ({exc.strerror}: "
                f"{exc.filename or self.root}); nothing of the failed commit was published"
            )
        return DestinationError(f"{self.url}: {action} failed: {exc}")

    def new_file_name(self) -> str:
        """A fresh file name of this sync."""
        self._sequence += 1
        return f"{self._sync_id}-{self._sequence:05d}.{self.format}"

    def staged(self, name: str) -> Path:
        """Where the file ``name`` (or the manifest) is written until it is committed."""
        return self.root / STAGING / (name + _STAGED)

    def _table(self, name: str) -> dict[str, Any]:
        tables: dict[str, Any] = self._manifest["tables"]
        return tables.setdefault(name, {"columns": {}, "files": []})  # type: ignore[no-any-return]

    def _columns(self, plan: DestinationTable) -> dict[str, str]:
        schema = batch_converter(plan.schema, "parquet")(empty_batch(plan.schema)).schema
        columns = {field.name: _type_name(field.type) for field in schema}
        columns[CQ_SYNC_TIME] = str(pa.timestamp("us", tz="UTC"))
        columns[CQ_SOURCE_NAME] = str(pa.string())
        return columns

    def _migrate(self, plan: DestinationTable, options: WriteOptions) -> bool:
        expected = self._columns(plan)
        table = self._table(plan.name)
        existing: dict[str, str] = table["columns"]
        changed = [
            (column, existing[column], wanted)
            for column, wanted in expected.items()
            if column in existing and existing[column] != wanted
        ]
        if changed and not options.migrate_force:
            column, old, new = changed[0]
            raise MigrationError(plan.name, column, old, new, self.url)
        if changed:
            for entry in table["files"]:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / entry["file"]).unlink()
            table["files"] = []
            existing.clear()
            stored = self._manifest["state"].get(options.source_name, {})
            for key in [k for k, e in stored.items() if e["table"] == plan.name]:
                del stored[key]
        before = dict(existing)
        existing.update(expected)  # columns the plugin dropped stay: older files have them
        return before != existing

    def _remove_strays(self) -> None:
        """Delete what a crash left behind: staged files, and our files not in the manifest.

        The directory's lock is held: no other sync is staging files meanwhile.
        """
        staging = self.root / STAGING
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
        staging.mkdir()
        # Earlier versions staged the manifest beside it.
        (self.root / (_OLD_STAGED_PREFIX + MANIFEST)).unlink(missing_ok=True)
        listed = {
            entry["file"] for table in self._manifest["tables"].values() for entry in table["files"]
        }
        for directory in self.root.iterdir():
            if not directory.is_dir() or directory.name == STAGING:
                continue
            for path in directory.iterdir():
                relative = f"{directory.name}/{path.name}"
                if _OURS.match(path.name) and relative not in listed:
                    path.unlink()

    def _publish(self, tables: Collection[str]) -> None:
        """Rename the closed files of ``tables`` to their final names and list them."""
        options = self._require_options()
        touched: set[Path] = set()
        for name in tables:
            writer = self._writers[name]
            for file in writer.files:
                if file.committed:
                    continue
                directory = self.root / name
                directory.mkdir(exist_ok=True)
                os.replace(self.staged(file.name), directory / file.name)
                touched.add(directory)
                file.committed = True
                entry = file.entry(options)
                entry["file"] = f"{name}/{file.name}"
                self._table(name)["files"].append(entry)
        for directory in touched:
            _fsync_dir(directory)

    def _drop_stale(self, name: str, options: WriteOptions) -> list[str]:
        entries = self._table(name)["files"]
        stale = [
            e
            for e in entries
            if e["source"] == options.source_name
            and dt.datetime.fromisoformat(e["sync_time"]) < options.sync_time
        ]
        self._table(name)["files"] = [e for e in entries if e not in stale]
        return [e["file"] for e in stale]

    def _compact(self, name: str, options: WriteOptions) -> list[str]:
        """Upsert: drop rows replaced by a later row with the same ``_cq_id``.

        Reads only the ``_cq_id`` column of every file, then rewrites the files that lose rows.
        """
        entries = self._table(name)["files"]
        if len(entries) == 0:
            return []
        ids = []
        for index, entry in enumerate(entries):
            column = pq.read_table(self.root / entry["file"], columns=["_cq_id"]).column(0)
            column = pa.chunked_array(
                [c.storage if isinstance(c, pa.ExtensionArray) else c for c in column.chunks],
                type=pa.binary(16),
            )
            ids.append(
                pa.table(
                    {
                        "id": column,
                        "file": pa.repeat(pa.scalar(index, pa.int32()), len(column)),
                        "row": pa.array(range(len(column)), pa.int64()),
                    }
                )
            )
        every = pa.concat_tables(ids)
        every = every.append_column("position", pa.array(range(every.num_rows), pa.int64()))
        last = every.group_by("id", use_threads=False).aggregate([("position", "max")])
        if last.num_rows == every.num_rows:
            return []
        keep = pc.is_in(every.column("position"), value_set=last.column("position_max"))
        obsolete: list[str] = []
        for index, entry in enumerate(entries):
            in_file = pc.equal(every.column("file"), index)
            kept = pc.and_(in_file, keep)
            total = pc.sum(in_file).as_py() or 0
            kept_rows = pc.sum(kept).as_py() or 0
            if kept_rows == total:
                continue
            rows = every.filter(kept).column("row")
            data = pq.read_table(self.root / entry["file"]).take(rows)
            obsolete.append(entry["file"])
            if data.num_rows == 0:
                entry["file"] = None
                continue
            new_name = self.new_file_name()
            tmp = self.staged(new_name)
            pq.write_table(data, tmp, compression=self.file_options.compression)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.root / name / new_name)
            entry["file"] = f"{name}/{new_name}"
            entry["rows"] = data.num_rows
        self._table(name)["files"] = [e for e in entries if e["file"] is not None]
        _fsync_dir(self.root / name)
        return obsolete

    def _store_state(self, state: Sequence[StateEntry], options: WriteOptions) -> None:
        stored = self._manifest["state"].setdefault(options.source_name, {})
        for key, entry in latest(state).items():
            stored[key] = {"table": entry.table_name, "value": entry.value}

    def _write_manifest(self) -> None:
        path = self.root / MANIFEST
        tmp = self.staged(MANIFEST)
        with open(tmp, "w") as handle:
            json.dump(self._manifest, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.root)

    def json_lines(self, plan: DestinationTable, batch: pa.RecordBatch) -> pa.Buffer:
        """The rows of ``batch`` as JSON lines, made by DuckDB from the Arrow data."""
        import duckdb

        if self._duckdb is None:
            self._duckdb = duckdb.connect()
            with contextlib.suppress(duckdb.Error):
                self._duckdb.execute("SET TimeZone = 'UTC'")
        select = self._json_select.get(plan.name)
        if select is None:
            select = self._json_select[plan.name] = _json_select(plan, self._require_options())
        con = self._duckdb
        con.register("_headwater_batch", batch_converter(plan.schema, "duckdb")(batch))
        try:
            lines = con.sql(select).to_arrow_table().column(0).combine_chunks()
        finally:
            con.unregister("_headwater_batch")
        lines = pc.binary_join_element_wise(lines, pa.scalar("\n"), pa.scalar(""))
        if len(lines) == 0:
            return pa.py_buffer(b"")
        # The values buffer of the lines is the file's content: no per-row Python.
        _, offsets_buffer, data = lines.buffers()
        offsets = pa.Array.from_buffers(
            pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset
        )
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        return data.slice(start, end - start)


def _lock_exclusively(file: IO[bytes]) -> None:
    """Takes an exclusive lock on ``file`` without waiting (released when it is closed).

    Raises:
        OSError: Another process holds the lock.
    """
    if sys.platform == "win32":
        import msvcrt

        os.lseek(file.fileno(), 0, os.SEEK_SET)  # msvcrt locks bytes from the position on
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _json_select(plan: DestinationTable, options: WriteOptions) -> str:
    from headwater.destinations.sql import literal, quote, timestamp_literal

    expressions = []
    for field in plan.schema:
        column = quote(field.name)
        name = types.extension_name(field.type)
        if name == "mac":
            expressions.append(
                f"rtrim(regexp_replace(lower(hex({column})), '(..)', '\\1:', 'g'), ':') AS {column}"
            )
        elif name is None and (
            pa.types.is_binary(field.type)
            or pa.types.is_large_binary(field.type)
            or pa.types.is_fixed_size_binary(field.type)
        ):
            expressions.append(f"to_base64({column}) AS {column}")
        else:
            expressions.append(column)
    expressions.append(f"{timestamp_literal(options.sync_time)} AS {quote(CQ_SYNC_TIME)}")
    expressions.append(f"{literal(options.source_name)} AS {quote(CQ_SOURCE_NAME)}")
    return (
        "SELECT CAST(to_json(t) AS VARCHAR) FROM "
        f"(SELECT {', '.join(expressions)} FROM _headwater_batch) AS t"
    )


def _type_name(data_type: pa.DataType) -> str:
    name = types.extension_name(data_type)
    return f"extension<{name}>" if name is not None else str(data_type)
