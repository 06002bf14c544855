"""Rows a resolver yields quickly are converted in groups (read-ahead, for the CPU's caches):
what arrives must not change — order, values, skipped rows, errors — and a row the resolver
still refers to, and may change, is read when it is yielded."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from sync_helpers import run_all

#: Many groups of 16: rows are held only after 64 quick ones.
N = 5_000
COLUMNS = [hw.Column("id", pa.int64()), hw.Column("name", pa.string())]


def sync_of(resolver: Any, **options: Any) -> tuple[dict[str, pa.Table], list[hw.SyncError], Any]:
    table = hw.Table("rows", COLUMNS, resolver=resolver)
    run = hw.Plugin(name="r", version="1", tables=[table]).sync(**options)
    _, tables, errors = run_all(run)
    return tables, errors, run.summary


def test_quick_rows_arrive_in_order_with_their_values() -> None:
    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        for i in range(N):
            yield {"id": i, "name": f"n{i}"}

    tables, errors, _ = sync_of(resolve)
    assert errors == []
    assert tables["rows"]["id"].to_pylist() == list(range(N))
    assert tables["rows"]["name"].to_pylist() == [f"n{i}" for i in range(N)]


def test_tuple_rows_arrive_in_order() -> None:
    def resolve(client: Any) -> Iterator[tuple[int, str]]:
        for i in range(N):
            yield (i, f"n{i}")

    tables, _, _ = sync_of(resolve)
    assert tables["rows"]["id"].to_pylist() == list(range(N))


def test_a_dict_yielded_again_and_again_is_read_each_time() -> None:
    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        row: dict[str, Any] = {}
        for i in range(N):
            row["id"] = i
            row["name"] = f"n{i}"
            yield row

    tables, _, _ = sync_of(resolve)
    assert tables["rows"]["id"].to_pylist() == list(range(N))
    assert tables["rows"]["name"].to_pylist() == [f"n{i}" for i in range(N)]


def test_rows_the_resolver_keeps_and_changes_later_are_read_as_yielded() -> None:
    kept: list[dict[str, Any]] = []

    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        for i in range(N):
            row = {"id": i, "name": "as yielded"}
            kept.append(row)
            yield row
            row["name"] = "changed after the yield"

    tables, _, _ = sync_of(resolve)
    assert set(tables["rows"]["name"].to_pylist()) == {"as yielded"}


def test_a_list_or_dict_reused_in_every_row_is_read_as_each_row_had_it() -> None:
    columns = [
        hw.Column("id", pa.int64()),
        hw.Column("tags", pa.list_(pa.string())),
        hw.Column("attrs", hw.types.json()),
    ]

    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        tags: list[str] = []
        attrs: dict[str, int] = {}
        for i in range(N):
            tags.clear()
            tags.append(f"t{i}")
            attrs["i"] = i
            yield {"id": i, "tags": tags, "attrs": attrs}

    def tuples(client: Any) -> Iterator[tuple[int, list[str], dict[str, int]]]:
        tags: list[str] = []
        for i in range(N):
            tags[:] = [f"t{i}"]
            yield (i, tags, {"i": i})

    for resolver in (resolve, tuples):
        table = hw.Table("nested", columns, resolver=resolver)
        run = hw.Plugin(name="r", version="1", tables=[table]).sync()
        _, tables, errors = run_all(run)
        assert errors == []
        assert tables["nested"]["tags"].to_pylist() == [[f"t{i}"] for i in range(N)]
        assert tables["nested"]["attrs"].to_pylist() == [{"i": i} for i in range(N)]


def test_rows_that_do_not_fit_are_skipped_with_their_own_index(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        for i in range(N):
            yield {"id": "bad" if i % 100 == 99 else i, "name": f"n{i}"}

    with caplog.at_level(logging.WARNING, logger="headwater.sync"):
        tables, _, summary = sync_of(resolve)
    assert summary.skipped_rows == {"rows": N // 100}
    assert tables["rows"]["id"].to_pylist() == [i for i in range(N) if i % 100 != 99]
    logged = "\n".join(r.getMessage() for r in caplog.records if "row skipped" in r.getMessage())
    assert "row 99:" in logged and "row 999:" in logged


def test_on_row_error_fail_keeps_the_rows_before_the_bad_one() -> None:
    closed = threading.Event()

    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        try:
            for i in range(N):
                yield {"id": "bad" if i == 3000 else i, "name": f"n{i}"}
        finally:
            closed.set()

    tables, errors, _ = sync_of(resolve, on_row_error="fail")
    [error] = errors
    assert isinstance(error.error, hw.RowError) and error.error.row == 3000
    assert tables["rows"]["id"].to_pylist() == list(range(3000))
    assert closed.is_set()


def test_an_exception_after_a_quick_burst_keeps_every_row_before_it() -> None:
    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        for i in range(1000):
            yield {"id": i, "name": f"n{i}"}
        raise ValueError("the API went away")

    tables, errors, _ = sync_of(resolve)
    [error] = errors
    assert isinstance(error.error, ValueError)
    assert tables["rows"]["id"].to_pylist() == list(range(1000))


def test_rows_and_pages_mixed_keep_their_order() -> None:
    def resolve(client: Any) -> Iterator[Any]:
        for start in range(0, N, 100):
            if start % 1000 == 0:
                yield [{"id": i, "name": f"n{i}"} for i in range(start, start + 100)]
            else:
                for i in range(start, start + 100):
                    yield {"id": i, "name": f"n{i}"}

    tables, errors, _ = sync_of(resolve)
    assert errors == []
    assert tables["rows"]["id"].to_pylist() == list(range(N))


def test_arrow_data_between_quick_rows_loses_none_of_them() -> None:
    # Arrow data goes to the output without waiting for a batch of rows to fill up, so only
    # the rows' order among themselves is kept.
    def resolve(client: Any) -> Iterator[Any]:
        for start in range(0, N, 100):
            ids = list(range(start, start + 100))
            if start % 1000 == 500:
                yield pa.record_batch({"id": ids, "name": [f"n{i}" for i in ids]})
            else:
                yield from ({"id": i, "name": f"n{i}"} for i in ids)

    tables, errors, _ = sync_of(resolve)
    assert errors == []
    ids = tables["rows"]["id"].to_pylist()
    assert sorted(ids) == list(range(N))
    assert [i for i in ids if i % 1000 < 500 or i % 1000 >= 600] == [
        i for i in range(N) if i % 1000 < 500 or i % 1000 >= 600
    ]


def test_rows_held_when_a_resolver_stalls_arrive_once_it_goes_on() -> None:
    # A quick burst, then a stall: the few rows held back wait for it, and none is lost.
    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        for i in range(1000):
            yield {"id": i, "name": f"n{i}"}
        threading.Event().wait(0.3)
        yield {"id": 1000, "name": "n1000"}

    tables, _, _ = sync_of(resolve, batch_max_latency=0.05)
    assert tables["rows"]["id"].to_pylist() == list(range(1001))
