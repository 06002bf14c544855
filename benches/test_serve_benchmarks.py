"""Benchmark of a sync through the gRPC server, against baselines measured in the same run.

The server runs in its own process, as under the CloudQuery CLI; the client here decodes every
record with pyarrow. Run timed with ``scripts/bench.sh benches/test_serve_benchmarks.py``.

Targets (issue #4): 1M rows of the 10-column shape through the gRPC server >= 0.7x the
in-process ``plugin.sync`` throughput, and >= 100x the official CloudQuery Python SDK's server
measured the same way; the server's peak RSS stays bounded.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

import headwater as hw
from shapes import TEN_COLUMNS, best_of, generate, peak_rss, timed
from test_sync_benchmarks import cloudquery_python, drain

HERE = Path(__file__).parent

HEADWATER_SERVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    import headwater as hw
    from shapes import TEN_COLUMNS, generate

    n = int(sys.argv[1])
    table = hw.Table(TEN_COLUMNS.name, TEN_COLUMNS.columns, resolver=lambda client: generate(n))
    plugin = hw.Plugin(name="bench", version="1", tables=[table])
    plugin.main(["serve", "--address", sys.argv[3], "--log-level", "error"])
    """
)

CLOUDQUERY_SERVER = textwrap.dedent(
    """
    # The same resolver as a plugin of the official CloudQuery Python SDK, served by its server.
    import sys
    sys.path.insert(0, sys.argv[2])
    from cloudquery.sdk import plugin, serve
    from cloudquery.sdk.scheduler import Scheduler
    from cloudquery_shape import TABLE, Client, Resolver

    n = int(sys.argv[1])

    class BenchPlugin(plugin.Plugin):
        def __init__(self):
            super().__init__("bench", "1")
            self._scheduler = Scheduler(concurrency=1)

        def init(self, spec, no_connection=False):
            pass

        def get_tables(self, options):
            return [TABLE]

        def sync(self, options):
            return self._scheduler.sync(Client(), [Resolver(n)])

        def close(self):
            self._scheduler.shutdown()

    serve.PluginCommand(BenchPlugin()).run(["serve", "--address", sys.argv[3]])
    """
)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class Server:
    """A plugin server process, and a client for it."""

    def __init__(self, python: str, script: str, rows: int) -> None:
        self.address = free_address()
        self.process = subprocess.Popen(
            [python, "-c", script, str(rows), str(HERE), self.address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.channel = grpc.insecure_channel(
            self.address, options=[("grpc.max_receive_message_length", 200 * 1024 * 1024)]
        )
        try:
            grpc.channel_ready_future(self.channel).result(timeout=120)
        except grpc.FutureTimeoutError:
            self.stop()
            raise AssertionError(f"server did not start: {self.process.communicate()[1]}") from None
        self.stub = plugin_pb2_grpc.PluginStub(self.channel)
        self.stub.Init(plugin_pb2.Init.Request(spec=b"{}"))

    def sync(self) -> int:
        """Sync every table, decoding every record; returns the rows."""
        rows = 0
        for response in self.stub.Sync(plugin_pb2.Sync.Request(tables=["*"]), timeout=3600):
            if response.HasField("insert"):
                with pa.ipc.open_stream(response.insert.record) as reader:
                    rows += reader.read_all().num_rows
        return rows

    def peak_rss(self) -> int:
        """The server process's peak resident memory, in bytes."""
        return peak_rss(self.process.pid)

    def stop(self) -> None:
        self.channel.close()
        self.process.terminate()
        try:
            self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def headwater_server(benchmark: Any) -> Iterator[tuple[Server, int]]:
    n = 1_000_000 if timed(benchmark) else 20_000
    server = Server(sys.executable, HEADWATER_SERVER, n)
    yield server, n
    server.stop()


def test_grpc_sync_vs_in_process(benchmark: Any, headwater_server: tuple[Server, int]) -> None:
    server, n = headwater_server
    rows = benchmark.pedantic(server.sync, rounds=3, iterations=1)
    assert rows == n
    peak = server.peak_rss()
    if not timed(benchmark):
        return
    over_grpc = benchmark.stats.stats.min
    table = hw.Table(TEN_COLUMNS.name, TEN_COLUMNS.columns, resolver=lambda client: generate(n))
    plugin = hw.Plugin(name="bench", version="1", tables=[table])
    in_process = best_of(lambda: drain(plugin.sync()), rounds=3)
    benchmark.extra_info.update(
        in_process_seconds=in_process,
        ratio=in_process / over_grpc,
        rows_per_second=n / over_grpc,
        server_peak_rss=peak,
    )
    print(
        f"\ngRPC {n / over_grpc / 1e6:.2f}M rows/s ({over_grpc:.2f} s), in process "
        f"{n / in_process / 1e6:.2f}M rows/s: {in_process / over_grpc:.2f}x; server peak RSS "
        f"{peak / 2**20:.0f} MiB"
    )
    assert in_process / over_grpc >= 0.7
    # The buffer budget (64 MiB) and batches in flight, not the row count, bound it.
    assert peak <= 400 * 2**20


def test_grpc_sync_vs_cloudquery_python_sdk_server(
    benchmark: Any, headwater_server: tuple[Server, int]
) -> None:
    server, n = headwater_server
    rows = benchmark.pedantic(server.sync, rounds=1, iterations=1)
    assert rows == n
    if not timed(benchmark):
        return
    python = cloudquery_python()
    if python is None:
        pytest.fail(
            "the baseline is not installed: scripts/bench.sh creates "
            ".venv-bench-cq with cloudquery-plugin-sdk"
        )
    theirs_rows = 20_000
    theirs = Server(python, CLOUDQUERY_SERVER, theirs_rows)
    try:
        start = time.perf_counter()
        assert theirs.sync() == theirs_rows
        their_rate = theirs_rows / (time.perf_counter() - start)
    finally:
        theirs.stop()
    our_rate = n / benchmark.stats.stats.min
    benchmark.extra_info.update(
        rows_per_second=our_rate,
        cloudquery_rows_per_second=their_rate,
        speedup=our_rate / their_rate,
    )
    print(
        f"\ngRPC: headwater {our_rate / 1e6:.2f}M rows/s, CloudQuery Python SDK "
        f"{their_rate / 1e3:.2f}k rows/s: {our_rate / their_rate:.0f}x"
    )
    assert our_rate >= 100 * their_rate
