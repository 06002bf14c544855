"""The CloudQuery state backend: incremental state kept in a destination plugin over gRPC.

When ``Sync`` names a backend (``backend{table_name, connection}``), the CLI runs a destination
plugin for it. As the Go SDK's state client does, headwater checks its Discovery versions
(3 is required), migrates a ``key``/``value`` table (``key`` the primary key) with ``Write``,
reads every row back with ``Read``, and writes changed keys with ``Write`` inserts. The sync
engine hands over each update only after the rows it covers, and the servicer writes it only
after those rows' messages were handed to gRPC.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import pyarrow as pa
from cloudquery.discovery_v1 import discovery_pb2, discovery_pb2_grpc
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

from headwater.batch import encode_ipc
from headwater.errors import HeadwaterError
from headwater.metadata import PRIMARY_KEY, TABLE_NAME, flag

__all__ = ["BackendState", "StateBackendError", "state_schema"]

T = TypeVar("T")

#: How long connecting to the backend and each of its calls may take, in seconds.
BACKEND_TIMEOUT = 60.0
_MAX_MESSAGE_BYTES = 100 * 1024 * 1024


class StateBackendError(HeadwaterError):
    """The state backend plugin cannot be reached, speaks another protocol, or failed."""


def state_schema(table_name: str) -> pa.Schema:
    """The CloudQuery state table: ``key`` (string, primary key) and ``value`` (string)."""
    return pa.schema(
        [
            pa.field("key", pa.string(), metadata={PRIMARY_KEY: flag(True)}),
            pa.field("value", pa.string()),
        ],
        metadata={TABLE_NAME: table_name},
    )


class BackendState:
    """Incremental state in a CloudQuery backend plugin; see the module docstring.

    Use :meth:`open`, then :attr:`state` (what the backend holds), :meth:`set` and
    :meth:`flush`, and :meth:`close`.
    """

    def __init__(self, channel: grpc.Channel, table_name: str) -> None:
        self._channel = channel
        self._stub = plugin_pb2_grpc.PluginStub(channel)
        self._schema = state_schema(table_name)
        self._table = encode_ipc(self._schema)[0]
        self._lock = threading.Lock()
        self.state: dict[str, str] = {}
        self._changed: dict[str, str] = {}
        self._where = f"state backend table {table_name!r}"

    @classmethod
    def open(cls, connection: str, table_name: str) -> BackendState:
        """Connects, checks the protocol, migrates the state table and reads it.

        Args:
            connection: The backend's gRPC address, e.g. ``localhost:7778`` or
                ``unix:///tmp/backend.sock``.
            table_name: The state table.

        Raises:
            StateBackendError: The backend is unreachable, does not speak protocol 3, or
                refused a call; the message names the connection and the call.
        """
        channel = grpc.insecure_channel(
            connection,
            options=[
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ],
        )
        try:
            versions = _call(
                f"state backend at {connection!r}: GetVersions",
                lambda: discovery_pb2_grpc.DiscoveryStub(channel).GetVersions(
                    discovery_pb2.GetVersions.Request(), timeout=BACKEND_TIMEOUT
                ),
            ).versions
            if 3 not in versions:
                raise StateBackendError(
                    f"state backend at {connection!r} speaks protocol versions "
                    f"{list(versions)}; headwater needs 3: upgrade the backend plugin"
                )
            backend = cls(channel, table_name)
            backend._migrate()
            backend._read()
        except BaseException:
            channel.close()
            raise
        return backend

    def _migrate(self) -> None:
        migrate = plugin_pb2.Write.Request(
            migrate_table=plugin_pb2.Write.MessageMigrateTable(table=self._table)
        )
        _call(
            f"{self._where}: Write (migrate)",
            lambda: self._stub.Write(iter([migrate]), timeout=BACKEND_TIMEOUT),
        )

    def _read(self) -> None:
        def read() -> dict[str, str]:
            state: dict[str, str] = {}
            responses = self._stub.Read(
                plugin_pb2.Read.Request(table=self._table), timeout=BACKEND_TIMEOUT
            )
            for response in responses:
                with pa.ipc.open_stream(response.record) as reader:
                    for batch in reader:
                        keys = batch.column("key").to_pylist()
                        values = batch.column("value").to_pylist()
                        state.update(
                            (k, v)
                            for k, v in zip(keys, values, strict=True)
                            if k is not None and v is not None
                        )
            return state

        self.state = _call(f"{self._where}: Read", read)

    def set(self, key: str, value: str) -> None:
        """Records an update, written by the next :meth:`flush`."""
        with self._lock:
            if self.state.get(key) != value:
                self.state[key] = value
                self._changed[key] = value

    def flush(self) -> None:
        """Writes the keys changed since the last flush.

        Raises:
            StateBackendError: The backend refused the write.
        """
        with self._lock:
            changed, self._changed = self._changed, {}
        if not changed:
            return
        batch = pa.record_batch(
            [pa.array(list(changed), pa.string()), pa.array(list(changed.values()), pa.string())],
            schema=self._schema,
        )

        def requests() -> Iterator[plugin_pb2.Write.Request]:
            for record in encode_ipc(batch):
                yield plugin_pb2.Write.Request(insert=plugin_pb2.Write.MessageInsert(record=record))

        try:
            _call(
                f"{self._where}: Write",
                lambda: self._stub.Write(requests(), timeout=BACKEND_TIMEOUT),
            )
        except StateBackendError:
            with self._lock:  # keep them for the next flush
                self._changed = {**changed, **self._changed}
            raise

    def close(self) -> None:
        """Closes the connection."""
        self._channel.close()


def _call(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        name = code.name if code is not None else "ERROR"
        raise StateBackendError(f"{what} failed: {name}: {details}") from None
