"""Serving a plugin to the CloudQuery CLI over gRPC (plugin protocol v3).

:func:`serve` is what ``python my_plugin.py serve`` and ``headwater serve PLUGIN`` run: a gRPC
server on a TCP address or a unix socket, with CloudQuery's message size limits, stopped
cleanly by SIGTERM or SIGINT (running syncs are cancelled, their threads joined). It runs at
most ``max_syncs`` syncs at once, on a pool of workers with room to spare for the other calls.
:class:`PluginServer` runs one in the background, for tests and embedding.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

import grpc
from cloudquery.discovery_v1 import discovery_pb2_grpc
from cloudquery.plugin_v3 import plugin_pb2_grpc

from headwater.errors import HeadwaterError
from headwater.serve.servicer import (
    DEFAULT_MAX_SYNCS,
    MAX_MESSAGE_BYTES,
    ConnectionTestFailed,
    DiscoveryServicer,
    SourceServicer,
)

if TYPE_CHECKING:
    from headwater.plugin import Plugin

__all__ = ["DEFAULT_MAX_SYNCS", "ConnectionTestFailed", "PluginServer", "ServeError", "serve"]

logger = logging.getLogger("headwater.serve")

#: Seconds running RPCs get to finish when the server stops.
STOP_GRACE = 5.0
#: Workers beyond the servicer's ``max_syncs``: the calls other than ``Sync`` always find one.
SPARE_WORKERS = 8


class ServeError(HeadwaterError):
    """The server cannot listen on the address it was given."""


def _target(address: str, network: str) -> str:
    if network == "tcp":
        if address.startswith("unix:"):
            raise ServeError(f"address {address!r} is a unix socket; pass --network unix")
        return address
    if network != "unix":
        raise ServeError(f"network must be 'tcp' or 'unix', not {network!r}")
    path = address.removeprefix("unix://").removeprefix("unix:")
    socket = Path(path).expanduser().resolve()
    if socket.exists():
        if not stat.S_ISSOCK(socket.stat().st_mode):
            raise ServeError(f"{str(socket)!r} exists and is not a unix socket")
        socket.unlink()  # left over by a server that died
    return f"unix:{socket}"


class PluginServer:
    """A gRPC server for a plugin servicer, in the background.

    Args:
        servicer: The plugin protocol servicer (e.g. :class:`SourceServicer` of a plugin).
        address: ``host:port`` (port 0 picks a free one) or, with ``network="unix"``, a socket
            path.
        network: ``tcp`` or ``unix``.
        max_workers: RPCs served at once (a running ``Sync`` holds one); by default the
            servicer's ``max_syncs`` (if it has one) plus :data:`SPARE_WORKERS`.

    Raises:
        ServeError: The address cannot be listened on, or ``max_workers`` leaves no worker
            beside the servicer's ``max_syncs`` syncs.
    """

    def __init__(
        self,
        servicer: Any,
        address: str = "localhost:7777",
        network: Literal["tcp", "unix"] = "tcp",
        *,
        max_workers: int | None = None,
    ) -> None:
        syncs: int = getattr(servicer, "max_syncs", 0)
        if max_workers is None:
            max_workers = syncs + SPARE_WORKERS
        elif max_workers <= syncs:
            raise ServeError(
                f"max_workers={max_workers} must exceed the servicer's max_syncs={syncs}: each "
                "running Sync holds a worker, and the other calls need a free one"
            )
        target = _target(address, network)
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="headwater-grpc"),
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        discovery_pb2_grpc.add_DiscoveryServicer_to_server(DiscoveryServicer(), self._server)
        plugin_pb2_grpc.add_PluginServicer_to_server(servicer, self._server)
        try:
            port = self._server.add_insecure_port(target)
        except RuntimeError as exc:
            raise ServeError(f"cannot listen on {address!r} ({network}): {exc}") from None
        if network == "tcp" and port == 0:
            raise ServeError(
                f"cannot listen on {address!r} (tcp): the address is in use or invalid"
            )
        if network == "unix":
            self.address = target
        else:
            host = address.rsplit(":", 1)[0]
            self.address = f"{host}:{port}"
        self._socket = target.removeprefix("unix:") if network == "unix" else None

    def start(self) -> PluginServer:
        """Start serving."""
        self._server.start()
        return self

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop: running RPCs are cancelled after ``grace`` seconds; waits for them."""
        self._server.stop(grace).wait()
        if self._socket is not None:
            Path(self._socket).unlink(missing_ok=True)

    def wait(self) -> None:
        """Block until the server stops."""
        self._server.wait_for_termination()

    def __enter__(self) -> PluginServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    plugin: Plugin,
    address: str = "localhost:7777",
    network: Literal["tcp", "unix"] = "tcp",
    *,
    max_syncs: int = DEFAULT_MAX_SYNCS,
) -> None:
    """Serve ``plugin`` until SIGTERM or SIGINT (from the main thread: installs handlers).

    Args:
        plugin: The plugin.
        address: ``host:port``, or a socket path with ``network="unix"``.
        network: ``tcp`` or ``unix``.
        max_syncs: ``Sync`` calls running at once; more are refused with
            ``RESOURCE_EXHAUSTED``.

    Raises:
        ServeError: The address cannot be listened on.
    """
    server = PluginServer(SourceServicer(plugin, max_syncs=max_syncs), address, network).start()
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            logger.info("stopping", extra={"signal": signal.Signals(signum).name})
            threading.Thread(target=server.stop, name="headwater-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    logger.info(
        "plugin server listening",
        extra={
            "address": server.address,
            "plugin": plugin.name,
            "version": plugin.version,
            "pid": os.getpid(),
            "max_syncs": max_syncs,
        },
    )
    try:
        server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("plugin server stopped")
