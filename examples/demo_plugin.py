"""A small example plugin, synced into DuckDB: repositories and their issues.

Run it with ``python examples/demo_plugin.py [headwater.duckdb]``. It shows the pieces a plugin
is made of today:

- tables declared with :class:`headwater.Column` lists, or derived from a pydantic model with
  :func:`headwater.columns_from`, a child table linked to its parent;
- resolvers: plain generators yielding dicts or model instances;
- :func:`headwater.build_batch` turning what they yield into Arrow record batches with
  CloudQuery ``_cq_id``/``_cq_parent_id`` columns, in Rust;
- the batches loaded into the embedded DuckDB file through Arrow, without a row-by-row path.

The sync engine (scheduling, ``headwater sync``) will drive the same tables and resolvers.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pydantic

import headwater as hw
from headwater import types

REPOS = hw.Table(
    "demo_repos",
    [
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("full_name", pa.string(), not_null=True),
        hw.Column("stars", pa.int64()),
        hw.Column("topics", pa.list_(pa.string())),
        hw.Column("created_at", pa.timestamp("us", tz="UTC")),
    ],
    title="Demo repositories",
    description="Repositories of the demo organisation.",
)


class Issue(pydantic.BaseModel):
    """One issue, as the (imaginary) API returns it."""

    repo_id: int = pydantic.Field(json_schema_extra={"primary_key": True})
    number: int = pydantic.Field(json_schema_extra={"primary_key": True})
    title: str
    state: str
    labels: list[str]
    opened_at: dt.datetime
    author_id: uuid.UUID
    reactions: dict[str, int]
    closed_at: dt.datetime | None = None


ISSUES = hw.Table(
    "demo_issues",
    hw.columns_from(Issue),
    parent=REPOS,
    description="Issues of each repository.",
)

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def fetch_repos() -> Iterator[dict[str, Any]]:
    """Resolver of ``demo_repos``: yields one dict per repository."""
    for i in range(1, 6):
        yield {
            "id": i,
            "full_name": f"demo/project-{i}",
            "stars": i * 42,
            "topics": ["python", "rust"][: i % 3],
            "created_at": EPOCH + dt.timedelta(days=30 * i),
        }


def fetch_issues(repo: dict[str, Any]) -> Iterator[Issue]:
    """Resolver of ``demo_issues``: yields the issues of one repository as models."""
    for number in range(1, 4 + repo["id"]):
        opened = repo["created_at"] + dt.timedelta(hours=number)
        yield Issue(
            repo_id=repo["id"],
            number=number,
            title=f"Issue {number} of {repo['full_name']}",
            state="closed" if number % 3 == 0 else "open",
            labels=["bug"] if number % 2 else [],
            opened_at=opened,
            author_id=uuid.UUID(int=repo["id"] * 1000 + number),
            reactions={"+1": number},
            closed_at=opened + dt.timedelta(days=2) if number % 3 == 0 else None,
        )


def duckdb_ready(batch: pa.RecordBatch) -> pa.Table:
    """Present CloudQuery extension columns as text DuckDB can cast (uuid, json, inet)."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if isinstance(field.type, types.UUIDType):
            column = pa.array([None if u is None else str(u) for u in column.to_pylist()])
        elif isinstance(field.type, types.JSONType | types.InetType):
            column = column.storage.cast(pa.string())
        columns.append(column)
    return pa.table(columns, names=batch.schema.names)


SQL_TYPES = {"uuid": "UUID", "json": "JSON"}


def load(con: duckdb.DuckDBPyConnection, table: hw.Table, batch: pa.RecordBatch) -> None:
    """Append ``batch`` to ``table`` in DuckDB, creating it with proper SQL types first."""
    data = duckdb_ready(batch)
    select = ", ".join(
        f'CAST("{f.name}" AS {SQL_TYPES[types.extension_name(f.type) or ""]}) AS "{f.name}"'
        if types.extension_name(f.type) in SQL_TYPES
        else f'"{f.name}"'
        for f in batch.schema
    )
    con.register("incoming", data)
    con.execute(
        f'CREATE TABLE IF NOT EXISTS "{table.name}" AS SELECT {select} FROM incoming LIMIT 0'
    )
    con.execute(f'INSERT INTO "{table.name}" SELECT {select} FROM incoming')
    con.unregister("incoming")


def sync(path: Path) -> dict[str, int]:
    """Sync both tables into the DuckDB file at ``path``; returns rows per table."""
    con = duckdb.connect(str(path))
    try:
        for table in (ISSUES, REPOS):
            con.execute(f'DROP TABLE IF EXISTS "{table.name}"')
        repos = list(fetch_repos())
        repo_batch = hw.build_batch(REPOS, repos)
        load(con, REPOS, repo_batch)
        counts = {REPOS.name: repo_batch.num_rows, ISSUES.name: 0}
        # Each child batch carries its parent row's _cq_id in _cq_parent_id.
        for repo, repo_cq_id in zip(repos, repo_batch.column("_cq_id").to_pylist(), strict=True):
            issue_batch = hw.build_batch(ISSUES, fetch_issues(repo), parent_cq_ids=repo_cq_id)
            load(con, ISSUES, issue_batch)
            counts[ISSUES.name] += issue_batch.num_rows
        return counts
    finally:
        con.close()


def main(argv: list[str]) -> None:
    """Sync into ``argv[0]`` (default ``headwater.duckdb``) and print a few rows back."""
    path = Path(argv[0] if argv else "headwater.duckdb")
    counts = sync(path)
    print(f"synced {counts} into {path}")
    with duckdb.connect(str(path), read_only=True) as con:
        print(
            con.sql(
                "SELECT r.full_name, i.number, i.title, i.state, i.labels, "
                "i._cq_parent_id = r._cq_id AS linked "
                "FROM demo_issues i JOIN demo_repos r ON i.repo_id = r.id "
                "ORDER BY r.id, i.number LIMIT 8"
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
