"""Benchmarks of local syncs (issue #5), each against a baseline measured in the same run.

Run timed with ``scripts/bench.sh benches/test_local_sync_benchmarks.py``: it creates
``.venv-bench-dlt`` with dlt (installed only there), whose side runs in a subprocess of that
environment on rows from :mod:`rowgen`. In the test suite (``--benchmark-disable``) each runs
once on a small input and checks what was written, without the dlt environment.

Targets, 1M rows of the 10-column shape into DuckDB:
- resolvers yielding dicts: >= 5x the rows/s of dlt's fastest dict path (pages of dicts,
  ``max_table_nesting=0``, ``loader_file_format="parquet"``);
- resolvers yielding pyarrow tables: >= 2x the rows/s of dlt's arrow path;
- into DuckDB: >= 0.6x the rows/s of headwater's own in-process ``plugin.sync``;
- into PostgreSQL: >= 200k rows/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import headwater as hw
from headwater.destinations.run import sync_to
from rowgen import make_arrow
from shapes import TEN_COLUMNS, best_of, generate, timed

HERE = Path(__file__).parent
ARROW_CHUNK = 100_000


def dict_plugin(n: int) -> hw.Plugin:
    table = hw.Table(TEN_COLUMNS.name, TEN_COLUMNS.columns, resolver=lambda client: generate(n))
    return hw.Plugin(name="bench", version="1", tables=[table])


def arrow_plugin(n: int, chunk: pa.Table) -> hw.Plugin:
    def resolve(client: Any) -> Iterator[pa.Table]:
        for start in range(0, n, len(chunk)):
            yield chunk.slice(0, min(len(chunk), n - start))

    table = hw.Table(TEN_COLUMNS.name, TEN_COLUMNS.columns, resolver=resolve)
    return hw.Plugin(name="bench", version="1", tables=[table])


def fresh(path: Path) -> None:
    for leftover in (path, path.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)


def sync_into_duckdb(benchmark: Any, plugin: hw.Plugin, path: Path) -> int:
    """Times ``sync_to`` alone (as dlt's side times ``pipeline.run``); returns the rows stored."""

    def run() -> None:
        # Appends, as dlt's side does (its default without a merge key): the same work.
        result = sync_to(plugin, f"duckdb://{path}", mode="append")
        assert result.failed_tables == []

    benchmark.pedantic(run, setup=lambda: fresh(path), rounds=3, iterations=1)
    with duckdb.connect(str(path), read_only=True) as con:
        count = con.execute(f"SELECT count(*) FROM {TEN_COLUMNS.name}").fetchone()
    assert count is not None
    return int(count[0])


DLT_SIDE = textwrap.dedent(
    """
    # dlt into DuckDB, in its own environment: the same rows, its fastest paths.
    import itertools, json, os, sys, tempfile, time
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    sys.path.insert(0, sys.argv[3])
    import dlt
    from rowgen import generate, make_arrow

    kind, n = sys.argv[1], int(sys.argv[2])
    work = tempfile.mkdtemp(prefix="headwater-dlt-")
    if kind == "dicts":
        def pages():
            rows = generate(n)
            while page := list(itertools.islice(rows, 10_000)):
                yield page
        data = pages
    else:
        chunk = make_arrow(min(n, 100_000))
        def data():
            for start in range(0, n, len(chunk)):
                yield chunk.slice(0, min(len(chunk), n - start))
    resource = dlt.resource(data, name="bench_items", max_table_nesting=0)
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{kind}",
        pipelines_dir=os.path.join(work, "pipelines"),
        destination=dlt.destinations.duckdb(os.path.join(work, "dlt.duckdb")),
        dataset_name="bench",
    )
    start = time.perf_counter()
    pipeline.run(resource(), loader_file_format="parquet")
    seconds = time.perf_counter() - start
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM bench_items")[0][0]
    print(json.dumps({"rows": rows, "seconds": seconds}))
    """
)


def dlt_python() -> str | None:
    """The interpreter of the benchmark environment with dlt."""
    candidate = os.environ.get("HEADWATER_DLT_PYTHON") or str(
        HERE.parent / ".venv-bench-dlt" / "bin" / "python"
    )
    return candidate if Path(candidate).exists() else None


def dlt_rate(kind: str, n: int) -> float:
    python = dlt_python()
    if python is None:
        pytest.fail(
            "the baseline is not installed: scripts/bench.sh creates "
            ".venv-bench-dlt with dlt[duckdb]"
        )
    done = subprocess.run(
        [python, "-c", DLT_SIDE, kind, str(n), str(HERE)],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs["rows"] == n
    rate: float = n / theirs["seconds"]
    return rate


def test_duckdb_dict_rows_vs_dlt(benchmark: Any, tmp_path: Path) -> None:
    n = 1_000_000 if timed(benchmark) else 5_000
    plugin = dict_plugin(n)
    rows = sync_into_duckdb(benchmark, plugin, tmp_path / "dicts.duckdb")
    assert rows == n
    if not timed(benchmark):
        return
    ours = n / benchmark.stats.stats.min
    theirs = dlt_rate("dicts", n)
    benchmark.extra_info.update(rows_per_second=ours, dlt_rows_per_second=theirs)
    print(
        f"\ndicts into DuckDB: headwater {ours / 1e3:,.0f}k rows/s, dlt (parquet) "
        f"{theirs / 1e3:,.0f}k rows/s, ratio {ours / theirs:.1f}x"
    )
    assert ours >= 5 * theirs


def test_duckdb_arrow_vs_dlt(benchmark: Any, tmp_path: Path) -> None:
    n = 1_000_000 if timed(benchmark) else 5_000
    plugin = arrow_plugin(n, make_arrow(min(n, ARROW_CHUNK)))
    rows = sync_into_duckdb(benchmark, plugin, tmp_path / "arrow.duckdb")
    assert rows == n
    if not timed(benchmark):
        return
    ours = n / benchmark.stats.stats.min
    theirs = dlt_rate("arrow", n)
    benchmark.extra_info.update(rows_per_second=ours, dlt_rows_per_second=theirs)
    print(
        f"\nArrow into DuckDB: headwater {ours / 1e6:,.2f}M rows/s, dlt (arrow) "
        f"{theirs / 1e6:,.2f}M rows/s, ratio {ours / theirs:.1f}x"
    )
    assert ours >= 2 * theirs


def drain(run: hw.SyncRun) -> int:
    return sum(m.batch.num_rows for m in run if isinstance(m, hw.Insert))


def test_duckdb_vs_in_process_sync(benchmark: Any, tmp_path: Path) -> None:
    n = 1_000_000 if timed(benchmark) else 5_000
    plugin = dict_plugin(n)
    rows = sync_into_duckdb(benchmark, plugin, tmp_path / "same.duckdb")
    assert rows == n
    if not timed(benchmark):
        return
    ours = n / benchmark.stats.stats.min
    in_process = n / best_of(lambda: drain(plugin.sync()), rounds=3)
    benchmark.extra_info.update(rows_per_second=ours, in_process_rows_per_second=in_process)
    print(
        f"\ninto DuckDB {ours / 1e6:.2f}M rows/s, plugin.sync alone {in_process / 1e6:.2f}M "
        f"rows/s, ratio {ours / in_process:.2f}"
    )
    assert ours >= 0.6 * in_process


def test_postgres_rows_per_second(benchmark: Any, postgres_url: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    n = 1_000_000 if timed(benchmark) else 5_000
    plugin = arrow_plugin(n, make_arrow(min(n, ARROW_CHUNK)))

    def drop() -> None:
        with pg.connect(postgres_url, autocommit=True) as con, con.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TEN_COLUMNS.name}")
            # Each round starts from a checkpoint, with the WAL files the last one recycled.
            cur.execute("CHECKPOINT")

    def run() -> None:
        # The sync alone is timed, as dlt's side times its run; the count comes after.
        result = sync_to(plugin, postgres_url, mode="append")  # the COPY path this measures
        assert result.failed_tables == []

    # The server is a cluster created for the tests: until a checkpoint recycles them, it
    # creates and zero-fills a new 16 MiB WAL file for every 16 MiB it logs, which a server in
    # service does not (7.0-8.4 CPU-seconds of the server per 1M rows here, against 5.1 once
    # warm). The warm-up round makes the files the timed rounds reuse.
    warm_up = 1 if timed(benchmark) else 0
    benchmark.pedantic(run, setup=drop, rounds=3, iterations=1, warmup_rounds=warm_up)
    with pg.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {TEN_COLUMNS.name}")
        assert cur.fetchone()[0] == n
    if not timed(benchmark):
        return
    rate = n / benchmark.stats.stats.min
    benchmark.extra_info.update(rows_per_second=rate)
    print(f"\ninto PostgreSQL: {rate / 1e3:,.0f}k rows/s")
    assert rate >= 200_000
