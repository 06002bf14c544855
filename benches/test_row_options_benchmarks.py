"""What a strict table costs, against the same rows in a lenient table, measured in one run.

Run timed with ``pytest benches/test_row_options_benchmarks.py --benchmark-only -s``; in the
test suite each runs once on small inputs with ``--benchmark-disable`` and checks results only.

Targets (issue 16): a strict table whose rows hold only its columns costs at most 1.1x the
lenient table's time, for dict rows of the 10-column shape through ``build_batch`` and through
``plugin.sync``, and for dataclass rows of that shape through ``build_batch``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

import headwater as hw
from shapes import TEN_COLUMNS, make_rows, timed

LENIENT = TEN_COLUMNS
STRICT = hw.Table(TEN_COLUMNS.name, TEN_COLUMNS.columns, strict=True)
Row = dataclasses.make_dataclass("Row", [column.name for column in TEN_COLUMNS.columns])


def sync_rows(table: hw.Table, rows: list[Any]) -> int:
    resolving = hw.Table(table.name, table.columns, resolver=lambda client: iter(rows))
    plugin = hw.Plugin(name="bench", version="1", tables=[resolving], strict=table.strict is True)
    count = 0
    for message in plugin.sync():
        if isinstance(message, hw.Insert):
            count += message.batch.num_rows
        elif isinstance(message, hw.SyncError):
            raise AssertionError(message.message)
    return count


def build(table: hw.Table, rows: list[Any]) -> int:
    return int(hw.build_batch(table, rows).num_rows)


def alternate(run: Callable[[hw.Table], object], rounds: int) -> list[float]:
    """Strict over lenient for each round, the two run back to back in turn: this VM's speed
    drifts by a third between minutes."""
    ratios = []
    for _ in range(rounds):
        seconds = {}
        for table in (LENIENT, STRICT):
            start = time.perf_counter()
            run(table)
            seconds[table.strict] = time.perf_counter() - start
        ratios.append(seconds[True] / seconds[None])
    return ratios


@pytest.mark.parametrize(
    ("path", "shape"),
    [("build_batch", "dicts"), ("build_batch", "dataclasses"), ("sync", "dicts")],
)
def test_strict_costs_nothing_for_rows_of_only_the_columns(
    benchmark: Any, path: str, shape: str
) -> None:
    n = 100_000 if timed(benchmark) else 2_000
    rows: list[Any] = make_rows(n)
    if shape == "dataclasses":
        rows = [Row(**row) for row in rows]
    run = build if path == "build_batch" else sync_rows
    assert benchmark(run, STRICT, rows) == n
    if not timed(benchmark):
        assert run(LENIENT, rows) == n
        return
    ratios = alternate(lambda table: run(table, rows), rounds=9)
    ratio = statistics.median(ratios)
    benchmark.extra_info.update(ratio=ratio, ratios=ratios)
    print(
        f"\n{path} of {shape}: strict over lenient, each round: "
        f"{', '.join(f'{r:.3f}' for r in ratios)}; median {ratio:.3f}"
    )
    assert ratio <= 1.1
