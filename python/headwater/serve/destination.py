"""A destination plugin over the CloudQuery protocol: ``Write`` and ``Read`` on a store.

Served with :class:`DestinationServicer`, any :class:`TableStore` can take CloudQuery's
writes; :class:`MemoryTableStore` keeps tables in memory, upserting on the primary key. It is
what headwater's tests run as a CloudQuery state backend, and the base of a public destination
plugin API.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

import grpc
import pyarrow as pa
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

from headwater.batch import encode_ipc
from headwater.metadata import TABLE_NAME, ColumnDescription, table_name_of
from headwater.serve.servicer import abort

__all__ = ["DestinationServicer", "MemoryTableStore", "TableStore"]


class TableStore(Protocol):
    """Where a destination plugin keeps tables: what :class:`DestinationServicer` writes to.

    Not a local sync's :class:`headwater.destinations.Destination`, which also commits
    incremental state and is opened from a URL.
    """

    def migrate(self, schema: pa.Schema, *, force: bool) -> None:
        """Create the table ``cq:table_name`` of ``schema``, or bring it to ``schema``."""

    def write(self, batch: pa.RecordBatch) -> None:
        """Store rows of the table named in ``batch.schema``'s metadata."""

    def read(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Every row of the table of ``schema``."""


def table_name(schema: pa.Schema) -> str:
    """The CloudQuery table name of a schema (``cq:table_name``).

    Raises:
        ValueError: The schema has none.
    """
    name = table_name_of(schema)
    if not name:
        raise ValueError(f"schema with fields {schema.names} has no {TABLE_NAME} metadata")
    return name


class MemoryTableStore:
    """Tables in memory, upserted on their primary key (or appended without one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schemas: dict[str, pa.Schema] = {}
        self._rows: dict[str, dict[object, dict[str, object]]] = {}

    def migrate(self, schema: pa.Schema, *, force: bool) -> None:
        """Create the table, or replace its schema (keeping the rows' common columns)."""
        name = table_name(schema)
        with self._lock:
            self._schemas[name] = schema
            self._rows.setdefault(name, {})

    def write(self, batch: pa.RecordBatch) -> None:
        """Upsert the rows on the table's primary key.

        Raises:
            KeyError: The table was never migrated.
        """
        name = table_name(batch.schema)
        with self._lock:
            if name not in self._schemas:
                raise KeyError(f"table {name!r} was not migrated before it was written")
            keys = [f.name for f in self._schemas[name] if ColumnDescription.of(f).primary_key]
            rows = self._rows[name]
            for row in batch.to_pylist():
                key = tuple(row.get(k) for k in keys) if keys else len(rows)
                rows[key] = row

    def read(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Every row of the table, with ``schema``'s columns."""
        name = table_name(schema)
        with self._lock:
            rows = list(self._rows.get(name, {}).values())
        if rows:
            yield pa.RecordBatch.from_pylist(
                [{f.name: row.get(f.name) for f in schema} for row in rows], schema=schema
            )

    def rows(self, name: str) -> list[dict[str, object]]:
        """The rows of table ``name``, for inspection."""
        with self._lock:
            return list(self._rows.get(name, {}).values())


class DestinationServicer(plugin_pb2_grpc.PluginServicer):  # type: ignore[misc]
    """Plugin protocol v3 for a destination plugin: ``Write`` and ``Read`` on a store."""

    def __init__(self, name: str, version: str, destination: TableStore) -> None:
        self._name = name
        self._version = version
        self._destination = destination

    def GetName(
        self, request: plugin_pb2.GetName.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.GetName.Response:
        """The plugin's name."""
        return plugin_pb2.GetName.Response(name=self._name)

    def GetVersion(
        self, request: plugin_pb2.GetVersion.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.GetVersion.Response:
        """The plugin's version."""
        return plugin_pb2.GetVersion.Response(version=self._version)

    def Init(
        self, request: plugin_pb2.Init.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.Init.Response:
        """Nothing to set up: the store is ready."""
        return plugin_pb2.Init.Response()

    def Write(
        self, request_iterator: Iterator[plugin_pb2.Write.Request], context: grpc.ServicerContext
    ) -> plugin_pb2.Write.Response:
        """Applies migrations and inserts in order; other messages are refused."""
        for request in request_iterator:
            kind = request.WhichOneof("message")
            try:
                if kind == "migrate_table":
                    schema = pa.ipc.open_stream(request.migrate_table.table).schema
                    self._destination.migrate(schema, force=request.migrate_table.migrate_force)
                elif kind == "insert":
                    with pa.ipc.open_stream(request.insert.record) as reader:
                        for batch in reader:
                            self._destination.write(batch)
                else:
                    abort(context, grpc.StatusCode.UNIMPLEMENTED, f"Write: {kind} is not supported")
            except (KeyError, ValueError, pa.ArrowException) as exc:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Write {kind}: {exc}")
        return plugin_pb2.Write.Response()

    def Read(
        self, request: plugin_pb2.Read.Request, context: grpc.ServicerContext
    ) -> Iterator[plugin_pb2.Read.Response]:
        """Streams every row of the requested table."""
        try:
            schema = pa.ipc.open_stream(request.table).schema
            batches = list(self._destination.read(schema))
        except (KeyError, ValueError, pa.ArrowException) as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Read: {exc}")
        for batch in batches:
            for record in encode_ipc(batch):
                yield plugin_pb2.Read.Response(record=record)

    def Close(
        self, request: plugin_pb2.Close.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.Close.Response:
        """Nothing to release."""
        return plugin_pb2.Close.Response()
