"""Helpers of the local-sync tests: a small plugin, and reading each destination back."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

import headwater as hw
from headwater import types

KINDS = ("duckdb", "parquet", "jsonl", "postgresql")
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def item(i: int, version: int = 1) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"item-{i}-v{version}",
        "tags": ["a", f"t{i % 3}"],
        "attrs": {"i": i, "nested": {"v": version}},
        "owner": uuid.UUID(int=i + 1),
        "address": ipaddress.ip_interface(f"192.0.2.{i % 250}/24"),
        "mac": bytes([0xAA, 0xBB, 0xCC, 0, 0, i % 256]),
        "seen_at": START + dt.timedelta(minutes=i),
    }


ITEM_COLUMNS = [
    hw.Column("id", pa.int64(), primary_key=True),
    hw.Column("name", pa.string()),
    hw.Column("tags", pa.list_(pa.string())),
    hw.Column("attrs", types.json()),
    hw.Column("owner", types.uuid()),
    hw.Column("address", types.inet()),
    hw.Column("mac", types.mac()),
    hw.Column("seen_at", pa.timestamp("us", tz="UTC")),
]


def items_plugin(
    ids: Sequence[int] = range(10),
    *,
    version: int = 1,
    columns: Sequence[hw.Column] = ITEM_COLUMNS,
    fail_after: int | None = None,
    parts: bool = True,
) -> hw.Plugin:
    """``items`` (one row per id) and its child ``item_parts`` (two rows per item)."""

    def resolve(client: Any) -> Iterator[dict[str, Any]]:
        for n, i in enumerate(ids):
            if fail_after is not None and n == fail_after:
                raise RuntimeError("the API went away")
            row = item(i, version)
            # A column the test added or retyped to an integer holds the version number.
            yield {
                c.name: version
                if pa.types.is_integer(c.type) and not isinstance(row.get(c.name), int)
                else row[c.name]
                for c in columns
            }

    items = hw.Table("items", list(columns), resolver=resolve, description="Items.")
    if parts:
        hw.Table(
            "item_parts",
            [
                hw.Column("item_id", pa.int64(), primary_key=True),
                hw.Column("part", pa.int64(), primary_key=True),
            ],
            parent=items,
            resolver=lambda client, row: ({"item_id": row["id"], "part": p} for p in (1, 2)),
        )
    return hw.Plugin(name="items", version="1", tables=[items])


def url_for(kind: str, tmp_path: Path, postgres_url: Callable[[], str]) -> str:
    if kind == "duckdb":
        return f"duckdb://{tmp_path / 'out.duckdb'}"
    if kind == "postgresql":
        return postgres_url()
    return f"{kind}://{tmp_path / kind}"


def read_rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` as dicts, sorted by the first column that is not internal."""
    scheme, _, rest = url.partition("://")
    if scheme == "duckdb":
        with duckdb.connect(rest, read_only=True) as con:
            rows = con.sql(f'SELECT * FROM "{table}"').to_arrow_table().to_pylist()
    elif scheme == "postgresql":
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(url) as con, con.cursor() as cur:
            cur.execute(f'SELECT * FROM "{table}"')
            rows = cur.fetch_arrow_table().to_pylist()
    elif scheme == "parquet":
        files = sorted((Path(rest) / table).glob("*.parquet"))
        rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    else:
        files = sorted((Path(rest) / table).glob("*.jsonl"))
        rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    key = next(k for k in (rows[0] if rows else {}) if not k.startswith("_cq_")) if rows else ""
    return sorted(rows, key=lambda r: (r[key], r.get("part", 0))) if rows else []


def ids_of(url: str, table: str = "items", column: str = "id") -> list[int]:
    return sorted(row[column] for row in read_rows(url, table))


def column_types(url: str, table: str) -> dict[str, str]:
    """Column types as the database reports them."""
    scheme, _, rest = url.partition("://")
    if scheme == "duckdb":
        with duckdb.connect(rest, read_only=True) as con:
            return dict(
                con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?",
                    [table],
                ).fetchall()
            )
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(url) as con, con.cursor() as cur:
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            f"WHERE a.attrelid = '\"{table}\"'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        )
        return dict(cur.fetchall())


def stored_state(url: str, source: str = "items") -> dict[str, str]:
    scheme, _, rest = url.partition("://")
    if scheme == "duckdb":
        with duckdb.connect(rest, read_only=True) as con:
            return dict(
                con.execute(
                    "SELECT key, value FROM _headwater_state WHERE source_name = ?", [source]
                ).fetchall()
            )
    if scheme == "postgresql":
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(url) as con, con.cursor() as cur:
            cur.execute(f"SELECT key, value FROM _headwater_state WHERE source_name = '{source}'")
            return dict(cur.fetchall())
    manifest = json.loads((Path(rest) / "_headwater_state.json").read_text())
    return {k: v["value"] for k, v in manifest["state"].get(source, {}).items()}


def run_on_terminal(
    command: Sequence[str], *, cwd: Path, stdout_too: bool = True, wait: float = 180
) -> tuple[int, str]:
    """Run ``command`` with stderr (and stdout) on a pseudo-terminal, so a live display runs.

    Returns:
        The exit code and everything the process wrote to the terminal.
    """
    leader, follower = os.openpty()
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=follower if stdout_too else subprocess.DEVNULL,
            stderr=follower,
            stdin=subprocess.DEVNULL,
        )
        os.close(follower)
        chunks = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=60)
    finally:
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")
