"""The CloudQuery plugin protocol v3, as a gRPC servicer over a :class:`headwater.Plugin`.

The CloudQuery CLI starts a source plugin with ``serve``, checks ``GetVersions`` (Discovery),
then calls ``Init`` with the JSON spec, ``GetTables`` and ``Sync``. ``Sync`` streams a
``migrate_table`` message per selected table, then ``insert`` messages, each an Arrow IPC stream
of one record batch under the message size limit, and ``error`` messages when the CLI asked
for them. A client that goes away mid-sync cancels it: resolvers stop, threads are joined.

At most ``max_syncs`` syncs run at once (each holds one of the server's workers); more are
refused with ``RESOURCE_EXHAUSTED``, so the cheap calls (``GetName``, ``GetTables``...) always
find a free worker. A row that alone encodes larger than the message limit cannot be sent:
it becomes an error of its table (logged, counted, sent when the CLI asks for errors), the
rest is sent, and state that would cover it is withheld. A second ``Init`` keeps the client
running syncs use until they end, then releases it.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import pyarrow as pa
from cloudquery.discovery_v1 import discovery_pb2, discovery_pb2_grpc
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

from headwater.batch import encode_ipc
from headwater.errors import (
    HeadwaterError,
    IpcError,
    PluginError,
    RowError,
    SpecError,
    TableSelectionError,
)
from headwater.redaction import redact
from headwater.schema import Table
from headwater.serve.state import BackendState, StateBackendError
from headwater.specfile import parse_json_spec
from headwater.sync import Insert, MigrateTable, StateUpdate, SyncError, SyncOptions, SyncRun

if TYPE_CHECKING:
    from headwater.plugin import Plugin

__all__ = [
    "DEFAULT_MAX_SYNCS",
    "MAX_MESSAGE_BYTES",
    "ConnectionTestFailed",
    "DiscoveryServicer",
    "SourceServicer",
    "abort",
]

logger = logging.getLogger("headwater.serve")

#: The gRPC message size limit of the server and of the state backend client, as the Go SDK.
MAX_MESSAGE_BYTES = 100 * 1024 * 1024
#: Inserts are split so that a message, with its protobuf framing, stays well below it.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: State updates reach the backend at most this often (and at the end of the sync).
STATE_FLUSH_SECONDS = 1.0
#: ``Sync`` calls that run at once by default; more are refused with ``RESOURCE_EXHAUSTED``.
DEFAULT_MAX_SYNCS = 8


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the RPC with ``code`` and ``message``, secrets masked (``context.abort`` raises)."""
    context.abort(code, redact(message))
    raise AssertionError("grpc's context.abort returned")  # it raises; for the type checker


class ConnectionTestFailed(HeadwaterError):
    """Raise from a plugin's ``test_connection`` hook to report a failure with a code.

    Args:
        code: A short machine-readable code, e.g. ``"INVALID_CREDENTIALS"``,
            ``"UNREACHABLE"``.
        description: What went wrong, for the user.
    """

    def __init__(self, code: str, description: str) -> None:
        self.code = code
        self.description = description
        super().__init__(f"{code}: {description}")


class DiscoveryServicer(discovery_pb2_grpc.DiscoveryServicer):  # type: ignore[misc]
    """Discovery: the protocol versions the plugin speaks (3)."""

    def GetVersions(
        self, request: discovery_pb2.GetVersions.Request, context: grpc.ServicerContext
    ) -> discovery_pb2.GetVersions.Response:
        """Protocol version 3 only."""
        return discovery_pb2.GetVersions.Response(versions=[3])


class _Connection:
    """What one ``Init`` made (spec, client, sync options) and the syncs that use it.

    A later ``Init`` or ``Close`` retires it; its client is released once no sync uses it.
    """

    def __init__(self, spec: Any, client: Any, options: dict[str, Any], connected: bool) -> None:
        self.spec = spec
        self.client = client
        self.options = options
        self.connected = connected
        self.syncs = 0
        self.retired = False


class SourceServicer(plugin_pb2_grpc.PluginServicer):  # type: ignore[misc]
    """Plugin protocol v3 for a source plugin: every RPC but ``Read``/``Write``.

    Args:
        plugin: The plugin.
        max_syncs: ``Sync`` calls running at once; more are refused with
            ``RESOURCE_EXHAUSTED``. Each holds one of the server's workers, so keep it below
            their number (:class:`~headwater.serve.PluginServer` does).

    Raises:
        ValueError: ``max_syncs`` is not a positive int.
    """

    def __init__(self, plugin: Plugin, *, max_syncs: int = DEFAULT_MAX_SYNCS) -> None:
        if isinstance(max_syncs, bool) or not isinstance(max_syncs, int) or max_syncs < 1:
            raise ValueError(f"max_syncs must be an int >= 1, not {max_syncs!r}")
        self._plugin = plugin
        self.max_syncs = max_syncs
        self._syncs = threading.BoundedSemaphore(max_syncs)
        self._lock = threading.Lock()
        self._connection: _Connection | None = None

    def GetName(
        self, request: plugin_pb2.GetName.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.GetName.Response:
        """The plugin's name."""
        return plugin_pb2.GetName.Response(name=self._plugin.name)

    def GetVersion(
        self, request: plugin_pb2.GetVersion.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.GetVersion.Response:
        """The plugin's version."""
        return plugin_pb2.GetVersion.Response(version=self._plugin.version)

    def GetSpecSchema(
        self, request: plugin_pb2.GetSpecSchema.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.GetSpecSchema.Response:
        """The JSON Schema of the plugin's spec."""
        schema = json.dumps(self._plugin.spec_schema())
        return plugin_pb2.GetSpecSchema.Response(json_schema=schema)

    def Init(
        self, request: plugin_pb2.Init.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.Init.Response:
        """Validates the spec and, unless ``no_connection``, makes the client.

        Syncs still running keep the client of the previous ``Init``; it is released when
        the last of them ends.
        """
        try:
            spec = self._plugin.validate_spec(_parse_spec(request.spec))
            options = self._plugin.sync_options_from(spec)
        except (SpecError, PluginError) as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        client = None
        if not request.no_connection:
            try:
                client = self._plugin.connect(spec) if self._plugin.connect else spec
            except Exception as exc:
                logger.exception("connecting failed")
                abort(context, grpc.StatusCode.UNAVAILABLE, f"connecting failed: {_describe(exc)}")
        self._replace(_Connection(spec, client, options, not request.no_connection))
        logger.info(
            "plugin initialised",
            extra={"invocation_id": request.invocation_id, "connected": not request.no_connection},
        )
        return plugin_pb2.Init.Response()

    def GetTables(
        self, request: plugin_pb2.GetTables.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.GetTables.Response:
        """The selected tables' schemas (children included), one IPC stream each."""
        try:
            tables = self._plugin.select_tables(
                list(request.tables) or ["*"],
                list(request.skip_tables),
                request.skip_dependent_tables,
            )
        except TableSelectionError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        schemas = [encode_ipc(table.arrow_schema)[0] for table in tables]
        return plugin_pb2.GetTables.Response(tables=schemas)

    def Sync(
        self, request: plugin_pb2.Sync.Request, context: grpc.ServicerContext
    ) -> Iterator[plugin_pb2.Sync.Response]:
        """Runs the sync and streams its messages; see the module docstring."""
        if not self._syncs.acquire(blocking=False):
            abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.max_syncs} syncs are running already, the most this server runs at "
                "once (headwater serve --max-syncs); retry when one has finished",
            )
        try:
            with self._lock:
                connection = self._connection
                if connection is not None:
                    connection.syncs += 1
            try:
                yield from self._sync(request, context, connection)
            finally:
                if connection is not None:
                    self._leave(connection)
        finally:
            self._syncs.release()

    def _sync(
        self,
        request: plugin_pb2.Sync.Request,
        context: grpc.ServicerContext,
        connection: _Connection | None,
    ) -> Iterator[plugin_pb2.Sync.Response]:
        if connection is None:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, "Sync was called before Init")
        if not connection.connected:
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "Init was called with no_connection: call Init again with a connection to sync",
            )
        backend = _open_backend(request, context, self._plugin)
        shard = (request.shard.num, request.shard.total) if request.HasField("shard") else None
        try:
            # The request's options over the plugin's own (from the spec, at Init).
            options = SyncOptions(
                tables=list(request.tables) or ["*"],
                skip_tables=list(request.skip_tables),
                skip_dependent_tables=request.skip_dependent_tables,
                deterministic_cq_id=request.deterministic_cq_id,
                shard=shard,
            ).with_defaults(connection.options)
            run = self._plugin.sync(
                connection.spec,
                client=connection.client,
                options=options,
                state=backend.state if backend else None,
            )
        except (TableSelectionError, ValueError, TypeError) as exc:
            if backend:
                backend.close()
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # The CLI going away (or the server stopping) cancels the sync; the resolvers stop
        # at their next item and the loop below ends.
        context.add_callback(run.cancel)
        with_errors = request.withErrorMessages
        tables = {table.name: table for table in self._plugin.flat_tables()}
        sent: collections.Counter[str] = collections.Counter()
        # Tables whose state may no longer advance: a row of theirs, or below them, could not
        # be sent, and their later state updates would cover it.
        holding: set[str] = set()
        withheld: collections.Counter[str] = collections.Counter()
        last_flush = time.monotonic()
        try:
            for message in run:
                if isinstance(message, Insert):
                    name, batch = message.table_name, message.batch
                    limit = MAX_RECORD_BYTES
                    records, oversized = _encode_records(batch, limit)
                    for record in records:
                        yield plugin_pb2.Sync.Response(
                            insert=plugin_pb2.Sync.MessageInsert(record=record)
                        )
                    if oversized:
                        error = _refuse_oversized(run, name, batch, oversized, sent[name], limit)
                        holding.update(_lineage(tables[name]))
                        if with_errors and error is not None:
                            yield _error_message(error)
                    sent[name] += batch.num_rows
                elif isinstance(message, MigrateTable):
                    table = encode_ipc(message.schema)[0]
                    yield plugin_pb2.Sync.Response(
                        migrate_table=plugin_pb2.Sync.MessageMigrateTable(table=table)
                    )
                elif isinstance(message, SyncError):
                    # Logged by the engine already; sent when the CLI asks for errors.
                    if with_errors:
                        yield _error_message(message)
                elif isinstance(message, StateUpdate) and backend:
                    if message.table_name in holding:
                        withheld[message.table_name] += 1
                        continue
                    # Every response before this one has been handed to gRPC.
                    backend.set(message.key, message.value)
                    if time.monotonic() - last_flush >= STATE_FLUSH_SECONDS:
                        backend.flush()
                        last_flush = time.monotonic()
            if backend:
                backend.flush()
        except StateBackendError as exc:
            abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        finally:
            run.close()
            if backend:
                backend.close()
        for name, count in withheld.items():
            logger.warning(
                "table %r: %d state update(s) not saved because rows they cover could not be "
                "sent (see the errors above); the next sync fetches those rows again",
                name,
                count,
            )
        summary = run.summary
        extra: dict[str, Any] = {"rows": summary.total_rows, "errors": summary.total_errors}
        if run.interrupted:
            extra["interrupted"] = [f"{t} ({c})" if c else t for t, c in run.interrupted]
        logger.info("sync finished" if summary.complete else "sync cancelled", extra=extra)

    def Read(
        self, request: plugin_pb2.Read.Request, context: grpc.ServicerContext
    ) -> Iterator[plugin_pb2.Read.Response]:
        """Not supported: a source plugin has nothing to read back."""
        abort(context, grpc.StatusCode.UNIMPLEMENTED, "Read: this is a source plugin")

    def Write(
        self, request_iterator: Iterator[plugin_pb2.Write.Request], context: grpc.ServicerContext
    ) -> plugin_pb2.Write.Response:
        """Not supported: a source plugin is not a destination."""
        abort(context, grpc.StatusCode.UNIMPLEMENTED, "Write: this is a source plugin")

    def Close(
        self, request: plugin_pb2.Close.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.Close.Response:
        """Releases the client (:meth:`headwater.Plugin.release`) once no sync uses it."""
        self._replace(None)
        return plugin_pb2.Close.Response()

    def TestConnection(
        self, request: plugin_pb2.TestConnection.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.TestConnection.Response:
        """Validates the spec, connects and runs the plugin's ``test_connection`` hook.

        An invalid spec fails with ``INVALID_SPEC``. A plugin without the hook has nothing
        that could show the credentials work: once the spec is valid, the call ends with
        ``UNIMPLEMENTED``, as with the Go SDK (the CloudQuery CLI then reports neither
        success nor failure).
        """
        try:
            spec = self._plugin.validate_spec(_parse_spec(request.spec))
            self._plugin.sync_options_from(spec)
        except (SpecError, PluginError) as exc:
            return _failed("INVALID_SPEC", str(exc))
        hook = self._plugin.test_connection
        if hook is None:
            abort(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                f"plugin {self._plugin.name!r} has no test_connection hook: its spec is "
                "valid, but the connection was not tested",
            )
        try:
            client = self._plugin.client(spec)
            try:
                hook(client)
            finally:
                self._release(client)
        except ConnectionTestFailed as exc:
            return _failed(exc.code, exc.description)
        except Exception as exc:
            return _failed("UNKNOWN", _describe(exc))
        return plugin_pb2.TestConnection.Response(success=True)

    def _replace(self, connection: _Connection | None) -> None:
        """Makes ``connection`` the current one; retires the previous one."""
        with self._lock:
            previous, self._connection = self._connection, connection
            if previous is not None:
                previous.retired = True
            idle = previous is not None and previous.syncs == 0
        if idle:
            assert previous is not None
            self._close(previous)

    def _leave(self, connection: _Connection) -> None:
        """A sync using ``connection`` ended: the last one out of a retired one closes it."""
        with self._lock:
            connection.syncs -= 1
            idle = connection.retired and connection.syncs == 0
        if idle:
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        # Without connect, the client is the spec itself: nothing to release.
        if connection.client is not None and connection.client is not connection.spec:
            self._release(connection.client)

    def _release(self, client: Any) -> None:
        try:
            self._plugin.release(client)
        except Exception:
            logger.exception("releasing the client failed")


def _parse_spec(raw: bytes) -> Any:
    """The JSON spec of ``Init`` or ``TestConnection``: ``{}`` for none.

    The CloudQuery CLI sends ``null`` for a source whose spec is empty.
    """
    if not raw.strip():
        return {}
    data = parse_json_spec(raw, "the spec")
    return {} if data is None else data


def _encode_records(batch: pa.RecordBatch, limit: int) -> tuple[list[bytes], list[int]]:
    """IPC streams of ``batch``, each within ``limit`` bytes, and the rows that cannot fit.

    The engine splits a batch into messages that fit; a row that alone does not fit makes it
    fail, so the batch is halved around it until that row stands alone.

    Returns:
        The streams, in row order, and the indexes of the rows left out.
    """
    try:
        return encode_ipc(batch, limit), []
    except IpcError:
        if batch.num_rows <= 1:
            return [], list(range(batch.num_rows))
    half = batch.num_rows // 2
    head, head_out = _encode_records(batch.slice(0, half), limit)
    tail, tail_out = _encode_records(batch.slice(half), limit)
    return head + tail, head_out + [half + row for row in tail_out]


def _refuse_oversized(
    run: SyncRun, table: str, batch: pa.RecordBatch, rows: list[int], first_row: int, limit: int
) -> SyncError | None:
    """Reports rows too large to send as a failure of their table (see the module docstring)."""
    ids = batch.column("_cq_id")
    errors = [
        RowError(
            table=table,
            column=None,
            row=first_row + row,
            expected=f"a row that fits the {limit}-byte message limit",
            value_type="a row of",
            value_repr=f"{batch.slice(row, 1).nbytes} bytes",
            reason=f"it cannot be sent to the CloudQuery CLI and was left out (_cq_id {ids[row]})",
        )
        for row in rows
    ]
    return run.refuse_rows(table, errors, len(rows), fail=True)


def _error_message(error: SyncError) -> plugin_pb2.Sync.Response:
    return plugin_pb2.Sync.Response(
        error=plugin_pb2.Sync.MessageError(table_name=error.table_name, error=error.message)
    )


def _lineage(table: Table) -> list[str]:
    """The names of ``table`` and every table above it."""
    names = []
    current: Table | None = table
    while current is not None:
        names.append(current.name)
        current = current.parent
    return names


def _failed(code: str, description: str) -> plugin_pb2.TestConnection.Response:
    return plugin_pb2.TestConnection.Response(
        success=False, failure_code=code, failure_description=redact(description)
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _open_backend(
    request: plugin_pb2.Sync.Request, context: grpc.ServicerContext, plugin: Plugin
) -> BackendState | None:
    if not request.HasField("backend"):
        return None
    options = request.backend
    if not options.connection or not options.table_name:
        return None
    if options.table_name in {table.name for table in plugin.flat_tables()}:
        # The backend writes its rows (and migrates its schema) into that table of the
        # destination, where this plugin's rows of the same name go too.
        abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the state backend table {options.table_name!r} is also a table of plugin "
            f"{plugin.name!r}: its state would be written among that table's rows; give "
            "the backend another table_name",
        )
    try:
        return BackendState.open(options.connection, options.table_name)
    except StateBackendError as exc:
        abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
