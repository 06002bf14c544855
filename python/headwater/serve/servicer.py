"""The CloudQuery plugin protocol v3, as a gRPC servicer over a :class:`headwater.Plugin`.

The CloudQuery CLI starts a source plugin with ``serve``, checks ``GetVersions`` (Discovery),
then calls ``Init`` with the JSON spec, ``GetTables`` and ``Sync``. ``Sync`` streams a
``migrate_table`` message per selected table, then ``insert`` messages, each an Arrow IPC stream
of one record batch under the message size limit, and ``error`` messages when the CLI asked
for them. A client that goes away mid-sync cancels it: resolvers stop, threads are joined.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc
from cloudquery.discovery_v1 import discovery_pb2, discovery_pb2_grpc
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

from headwater.batch import encode_ipc
from headwater.errors import HeadwaterError, SpecError, TableSelectionError
from headwater.plugin import Plugin
from headwater.serve.state import BackendState, StateBackendError
from headwater.sync import Insert, MigrateTable, StateUpdate, SyncError

__all__ = [
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


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the RPC with ``code`` and ``message`` (``context.abort`` raises)."""
    context.abort(code, message)
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


class SourceServicer(plugin_pb2_grpc.PluginServicer):  # type: ignore[misc]
    """Plugin protocol v3 for a source plugin: every RPC but ``Read``/``Write``."""

    def __init__(self, plugin: Plugin) -> None:
        self._plugin = plugin
        self._lock = threading.Lock()
        self._spec: Any = None
        self._client: Any = None
        self._connected = False
        self._initialised = False

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
        """Validates the spec and, unless ``no_connection``, makes the client."""
        try:
            spec = self._plugin.validate_spec(request.spec)
        except SpecError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        client = None
        if not request.no_connection:
            try:
                client = self._plugin.connect(spec) if self._plugin.connect else spec
            except Exception as exc:
                logger.exception("connecting failed")
                abort(context, grpc.StatusCode.UNAVAILABLE, f"connecting failed: {_describe(exc)}")
        with self._lock:
            self._close_client()
            self._spec, self._client = spec, client
            self._connected = not request.no_connection
            self._initialised = True
        logger.info(
            "plugin initialised",
            extra={"invocation_id": request.invocation_id, "connected": self._connected},
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
        with self._lock:
            initialised, connected = self._initialised, self._connected
            spec, client = self._spec, self._client
        if not initialised:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, "Sync was called before Init")
        if not connected:
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "Init was called with no_connection: call Init again with a connection to sync",
            )
        backend = _open_backend(request, context, self._plugin)
        shard = (request.shard.num, request.shard.total) if request.HasField("shard") else None
        try:
            run = self._plugin.sync(
                spec,
                client=client,
                tables=list(request.tables) or ["*"],
                skip_tables=list(request.skip_tables),
                skip_dependent_tables=request.skip_dependent_tables,
                deterministic_cq_id=request.deterministic_cq_id,
                state=backend.state if backend else None,
                shard=shard,
            )
        except (TableSelectionError, ValueError, TypeError) as exc:
            if backend:
                backend.close()
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # The CLI going away (or the server stopping) cancels the sync; the resolvers stop
        # at their next item and the loop below ends.
        context.add_callback(run.cancel)
        with_errors = request.withErrorMessages
        last_flush = time.monotonic()
        try:
            for message in run:
                if isinstance(message, Insert):
                    for record in encode_ipc(message.batch, MAX_RECORD_BYTES):
                        yield plugin_pb2.Sync.Response(
                            insert=plugin_pb2.Sync.MessageInsert(record=record)
                        )
                elif isinstance(message, MigrateTable):
                    table = encode_ipc(message.schema)[0]
                    yield plugin_pb2.Sync.Response(
                        migrate_table=plugin_pb2.Sync.MessageMigrateTable(table=table)
                    )
                elif isinstance(message, SyncError):
                    # Logged by the engine already; sent when the CLI asks for errors.
                    if with_errors:
                        yield plugin_pb2.Sync.Response(
                            error=plugin_pb2.Sync.MessageError(
                                table_name=message.table_name, error=message.message
                            )
                        )
                elif isinstance(message, StateUpdate) and backend:
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
        """Releases the client (:meth:`headwater.Plugin.release`)."""
        with self._lock:
            self._close_client()
            self._initialised = self._connected = False
        return plugin_pb2.Close.Response()

    def TestConnection(
        self, request: plugin_pb2.TestConnection.Request, context: grpc.ServicerContext
    ) -> plugin_pb2.TestConnection.Response:
        """Validates the spec, connects and runs the plugin's ``test_connection`` hook."""
        try:
            client = self._plugin.client(request.spec)
            try:
                if self._plugin.test_connection is not None:
                    self._plugin.test_connection(client)
            finally:
                self._release(client)
        except SpecError as exc:
            return _failed("INVALID_SPEC", str(exc))
        except ConnectionTestFailed as exc:
            return _failed(exc.code, exc.description)
        except Exception as exc:
            return _failed("UNKNOWN", _describe(exc))
        return plugin_pb2.TestConnection.Response(success=True)

    def _close_client(self) -> None:
        if self._client is not None and self._client is not self._spec:
            self._release(self._client)
        self._client = None

    def _release(self, client: Any) -> None:
        try:
            self._plugin.release(client)
        except Exception:
            logger.exception("releasing the client failed")


def _failed(code: str, description: str) -> plugin_pb2.TestConnection.Response:
    return plugin_pb2.TestConnection.Response(
        success=False, failure_code=code, failure_description=description
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
