"""The native module matches its hand-written stubs and every native symbol is wrapped."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import headwater
from headwater import _core

ROOT = Path(__file__).resolve().parent.parent


def test_stubs_match_the_binary() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "headwater._core",
            "--mypy-config-file",
            str(ROOT / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_native_symbol_has_a_python_wrapper() -> None:
    wrapped = {
        "BatchBuilder": "headwater.batch.build_batch",
        "encode_schema_ipc": "headwater.batch.encode_ipc",
        "encode_data_ipc": "headwater.batch.encode_ipc",
        "SyncEngine": "headwater.Plugin.sync",
        "AsyncTask": "headwater.sync.asyncio_driver.drive",
        "TaskState": "headwater.Plugin.sync (a resolver's state argument)",
        "RateLimiter": "headwater.http.RateLimiter",
        "HttpTransport": "headwater.http.transport.NativeTransport",
        "__version__": "headwater.__version__",
    }
    native = {name for name in dir(_core) if not name.startswith("__") or name == "__version__"}
    assert native == set(wrapped)
    assert headwater.__version__ == _core.__version__


def test_the_sink_methods_the_engine_calls_are_declared_and_implemented() -> None:
    from headwater.sync.events import RunSink

    stub = ast.parse((ROOT / "python" / "headwater" / "_core.pyi").read_text())
    (protocol,) = [
        node for node in stub.body if isinstance(node, ast.ClassDef) and node.name == "EngineSink"
    ]
    declared = {
        node.name: len(node.args.posonlyargs) + len(node.args.args) - 1  # without self
        for node in protocol.body
        if isinstance(node, ast.FunctionDef)
    }
    # The engine's own list: every name its sink wrapper (sync/sink.rs) can call.
    called = _core.SyncEngine.SINK_METHODS
    assert len(called) == len(set(called))
    assert set(called) == set(declared), "the engine calls a sink method the protocol lacks"
    for name in called:
        method = getattr(RunSink, name, None)
        assert callable(method), f"RunSink has no {name}()"
        taken = len(inspect.signature(method).parameters) - 1
        assert taken == declared[name], f"RunSink.{name} takes {taken} arguments"
