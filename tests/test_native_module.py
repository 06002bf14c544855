"""The native module matches its hand-written stubs and every native symbol is wrapped."""

from __future__ import annotations

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
        "AsyncTask": "headwater.sync._drive",
        "TaskState": "headwater.Plugin.sync (a resolver's state argument)",
        "RateLimiter": "headwater.http.RateLimiter",
        "HttpTransport": "headwater.http.transport.NativeTransport",
        "__version__": "headwater.__version__",
    }
    native = {name for name in dir(_core) if not name.startswith("__") or name == "__version__"}
    assert native == set(wrapped)
    assert headwater.__version__ == _core.__version__
