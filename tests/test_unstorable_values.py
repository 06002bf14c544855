"""Values the engine accepts but a destination cannot store: PostgreSQL refuses the NUL
character in ``text`` and ``jsonb`` (and NaN in JSON), which would fail the COPY and roll back
the whole sync. They are row errors under ``on_row_error``; DuckDB, Parquet and JSON lines
store them as they are."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import headwater as hw
from headwater import types
from headwater.destinations.run import sync_to
from headwater.destinations.typemap import postgres_refusals
from local_helpers import ids_of, read_rows, stored_state, url_for

META = pa.struct([("label", pa.string()), ("score", pa.float64())])
COLUMNS = [
    hw.Column("id", pa.int64(), primary_key=True),
    hw.Column("name", pa.string()),
    hw.Column("tags", pa.list_(pa.string())),
    hw.Column("attrs", types.json()),
    hw.Column("meta", META),
    hw.Column("props", pa.map_(pa.string(), pa.string())),
]
#: Rows PostgreSQL refuses, by id: the column and what its error says.
REFUSED = {
    3: ("name", "text", "PostgreSQL text cannot hold the NUL character"),
    5: ("tags", "text[]", "PostgreSQL text cannot hold the NUL character"),
    6: ("attrs", "jsonb", "PostgreSQL jsonb cannot hold the NUL character"),
    7: ("meta", "jsonb", "PostgreSQL jsonb cannot hold the NUL character"),
    8: ("props", "jsonb", "PostgreSQL jsonb cannot hold the NUL character"),
    9: ("meta", "jsonb", "PostgreSQL jsonb cannot hold NaN or infinity"),
}


def record(i: int, version: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": i,
        "name": f"r{i}-v{version}",
        "tags": ["a", "b"],
        "attrs": {"k": i},
        "meta": {"label": "m", "score": 1.5},
        "props": {"p": "q"},
    }
    if version == 1:
        return row
    if i == 3:
        row["name"] = "before\x00after" + "x" * 200  # long: the repr is cut around the NUL
    elif i == 4:  # no NUL: an escaped backslash, then the text u0000
        row["name"] = "\\u0000"
        row["attrs"] = {"k": "\\u0000"}
    elif i == 5:
        row["tags"] = ["ok", "t\x00"]
    elif i == 6:
        row["attrs"] = {"nested": {"k\x00ey": 1}}
    elif i == 7:
        row["meta"] = {"label": "\x00", "score": 2.0}
    elif i == 8:
        row["props"] = {"p\x00": "q"}
    elif i == 9:
        row["meta"] = {"label": "m", "score": math.nan}
    return row


def plugin(version: int) -> hw.Plugin:
    """``records`` (with the values above when ``version`` > 1) and ``healthy``."""

    def records(client: Any) -> Iterator[dict[str, Any]]:
        yield from (record(i, version) for i in range(10))

    def healthy(client: Any) -> Iterator[dict[str, Any]]:
        yield from ({"id": i, "name": f"h{i}-v{version}"} for i in range(5))

    return hw.Plugin(
        name="records",
        version="1",
        tables=[
            hw.Table("records", COLUMNS, resolver=records),
            hw.Table("healthy", COLUMNS[:2], resolver=healthy),
        ],
    )


def test_postgres_skips_rows_it_cannot_store_and_the_sync_goes_on(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="headwater.sync"):
        result = sync_to(plugin(2), postgres_url)
    assert result.complete and result.failed_tables == []
    assert result.skipped_rows == {"records": len(REFUSED), "healthy": 0}
    assert result.rows == {"records": 10 - len(REFUSED), "healthy": 5}
    assert ids_of(postgres_url, "records") == [i for i in range(10) if i not in REFUSED]
    assert ids_of(postgres_url, "healthy") == list(range(5))
    kept = {row["id"]: row for row in read_rows(postgres_url, "records")}
    assert kept[4]["name"] == "\\u0000"  # text that only looks like the escape is stored
    # Logged as the engine logs skipped rows: table, column, row, the value shown safely.
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("row skipped")]
    assert len(skipped) == len(REFUSED)
    for i, (column, expected, reason) in REFUSED.items():
        line = next(m for m in skipped if f", row {i}:" in m)
        assert f"table 'records', column '{column}', row {i}: expected {expected}" in line
        assert reason in line
        assert "_cq_id " in line
    name_line = next(m for m in skipped if ", row 3:" in m)
    assert "got str 'before\\x00after" in name_line and "xxx..." in name_line
    assert len(name_line) < 400  # the 200-character value is cut


def test_postgres_fails_the_table_under_on_row_error_fail_and_keeps_its_rows(
    postgres_url: str,
) -> None:
    sync_to(plugin(1), postgres_url, mode="overwrite")
    result = sync_to(plugin(2), postgres_url, mode="overwrite", on_row_error="fail")
    assert result.complete and result.failed_tables == ["records"]
    assert result.skipped_rows == {"records": 0, "healthy": 0}
    (message,) = result.error_messages
    assert message.startswith("table 'records': 6 rows cannot be stored and were left out")
    assert "column 'name', row 3: expected text" in message
    # The failed table keeps its earlier rows; the healthy one is replaced.
    assert {r["name"] for r in read_rows(postgres_url, "records")} == {
        f"r{i}-v1" for i in range(10)
    }
    assert {r["name"] for r in read_rows(postgres_url, "healthy")} == {f"h{i}-v2" for i in range(5)}


def test_a_refused_child_row_holds_its_parents_cursor_back(postgres_url: str) -> None:
    """Under ``fail``, rows left out are lost: no cursor above them may advance past them."""

    @hw.table("accounts", columns=[hw.Column("id", pa.int64(), primary_key=True)])
    def accounts(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
        start = int(state.get("cursor", "0"))
        for i in range(start, start + 10):
            yield {"id": i}
            state.set("cursor", str(i + 1))

    @accounts.child(
        "notes",
        columns=[hw.Column("id", pa.int64(), primary_key=True), hw.Column("text", pa.string())],
    )
    def notes(client: Any, account: dict[str, int]) -> Iterator[dict[str, Any]]:
        bad = "\x00" if account["id"] == 4 else ""
        yield {"id": account["id"], "text": f"note{bad}"}

    plugin = hw.Plugin(name="cursor_held", version="1", tables=[accounts])
    result = sync_to(plugin, postgres_url, on_row_error="fail", batch_max_rows=1)
    assert result.errors["notes"] == 1
    cursor = int(result.state.get("accounts/default/cursor", "0"))
    assert cursor <= 4  # never past the account whose note was refused
    assert stored_state(postgres_url, "cursor_held") == result.state
    assert set(range(cursor)) <= set(ids_of(postgres_url, "accounts"))


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "jsonl"])
def test_other_destinations_store_the_nul_character(kind: str, tmp_path: Path) -> None:
    url = url_for(kind, tmp_path, lambda: "")
    result = sync_to(plugin(2), url, on_row_error="fail")
    assert result.failed_tables == [] and result.skipped_rows["records"] == 0
    rows = {row["id"]: row for row in read_rows(url, "records")}
    assert rows[3]["name"].startswith("before\x00after")
    assert list(rows[5]["tags"]) == ["ok", "t\x00"]


def test_refusals_are_found_in_slices_and_not_under_nulls() -> None:
    schema = pa.schema(
        [
            pa.field("tags", pa.list_(pa.string())),
            pa.field("props", pa.map_(pa.string(), pa.string())),
            pa.field("meta", META),
            pa.field("codes", pa.dictionary(pa.int32(), pa.string())),
            pa.field("scores", pa.list_(pa.float64())),  # double precision[] takes NaN
        ]
    )
    batch = pa.record_batch(
        [
            pa.array([["\x00"], ["a"], ["b", "\x00"], None, []], pa.list_(pa.string())),
            pa.array([{"\x00": "a"}, None, {"b": "c"}, {"d": "\x00"}, {}], schema[1].type),
            pa.array([{"label": "\x00"}, None, None, {"score": math.inf}, None], META),
            pa.array(["\x00", "a", "\x00", "a", None]).dictionary_encode(),
            pa.array([[math.nan]] * 5, pa.list_(pa.float64())),
        ],
        schema=schema,
    )
    check = postgres_refusals(schema)
    assert check is not None
    found = {
        (u.column, u.reason.split(" cannot hold ")[1]): u.rows.to_pylist() for u in check(batch)
    }
    assert found == {
        ("tags", "the NUL character (\\x00)"): [0, 2],
        ("props", "the NUL character (\\u0000)"): [0, 3],
        ("meta", "the NUL character (\\u0000)"): [0],
        ("meta", "NaN or infinity"): [3],
        ("codes", "the NUL character (\\u0000)"): [0, 2],
    }
    # A slice counts its own rows.
    sliced = {u.column: u.rows.to_pylist() for u in check(batch.slice(1, 3))}
    assert sliced == {"tags": [1], "props": [2], "meta": [2], "codes": [1]}
    assert postgres_refusals(pa.schema([pa.field("n", pa.int64())])) is None
