"""The benchmark data shape shared by the suites: the 10-column table of the issues.

int64 primary key, int64, two strings, float64, bool, tz-aware timestamp, list<string>, json (a
nested dict) and uuid (a ``uuid.UUID``). Its rows come from :mod:`rowgen`, which other SDKs'
benchmark environments import too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

import headwater as hw
from headwater import types
from rowgen import generate, make_row, make_rows

__all__ = ["TEN_COLUMNS", "best_of", "generate", "make_row", "make_rows", "peak_rss", "timed"]

TEN_COLUMNS = hw.Table(
    "bench_items",
    [
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("count", pa.int64()),
        hw.Column("name", pa.string()),
        hw.Column("description", pa.string()),
        hw.Column("score", pa.float64()),
        hw.Column("active", pa.bool_()),
        hw.Column("updated_at", pa.timestamp("us", tz="UTC")),
        hw.Column("tags", pa.list_(pa.string())),
        hw.Column("attributes", types.json()),
        hw.Column("external_id", types.uuid()),
    ],
)


def best_of(fn: Callable[[], object], rounds: int) -> float:
    """Fastest of `rounds` runs of `fn`, in seconds."""
    fastest = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def timed(benchmark: Any) -> bool:
    """Whether pytest-benchmark is timing (``--benchmark-only``), not just running once."""
    return not getattr(benchmark, "disabled", False)


def peak_rss(pid: int | str = "self") -> int:
    """A process's peak resident memory in bytes: the kernel's high-water mark (``VmHWM``).

    Unlike ``ru_maxrss``, which Linux carries across ``exec``, it covers only the process's own
    memory, not that of the parent that spawned it.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")
