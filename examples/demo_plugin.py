"""A small example plugin, synced into DuckDB: repositories and their issues.

Run it with ``headwater sync examples/demo_plugin.py`` (or ``python examples/demo_plugin.py
[headwater.duckdb]``). It shows what a plugin is made of:

- a spec (a pydantic model; secrets would be ``hw.SecretStr``) and a client made from it;
- a top-level table declared with ``@hw.table`` and :class:`headwater.Column` lists, whose
  resolver is a plain generator yielding dicts;
- a child table declared with ``@repos.child`` from a pydantic model, whose resolver is an
  async generator called once per repository (the engine runs it on an event loop);
- a local sync (``headwater sync examples/demo_plugin.py``, or :func:`sync` below): the
  resolvers run on Rust worker threads, their rows become Arrow record batches with CloudQuery
  ``_cq_id``/``_cq_parent_id`` columns, and the batches go into the embedded DuckDB file
  through Arrow, without a row-by-row path.

``python examples/demo_plugin.py sync --to parquet:///./out`` runs the same command line
through :meth:`headwater.Plugin.main`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pydantic

import headwater as hw
from headwater.destinations.run import sync_to

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class Spec(hw.Spec):
    """What a user configures: which organisation, and how many repositories to fetch."""

    org: str = "demo"
    repositories: int = pydantic.Field(default=5, ge=1)


class Client:
    """Made once per sync from the spec; every resolver receives it."""

    def __init__(self, spec: Spec) -> None:
        self.id = spec.org
        self.spec = spec


@hw.table(
    "demo_repos",
    columns=[
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("full_name", pa.string(), not_null=True),
        hw.Column("stars", pa.int64()),
        hw.Column("topics", pa.list_(pa.string())),
        hw.Column("created_at", pa.timestamp("us", tz="UTC")),
    ],
    title="Demo repositories",
    description="Repositories of the demo organisation.",
)
def repos(client: Client) -> Iterator[dict[str, Any]]:
    """Yields one dict per repository."""
    for i in range(1, client.spec.repositories + 1):
        yield {
            "id": i,
            "full_name": f"{client.spec.org}/project-{i}",
            "stars": i * 42,
            "topics": ["python", "rust"][: i % 3],
            "created_at": EPOCH + dt.timedelta(days=30 * i),
        }


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


@repos.child("demo_issues", model=Issue, description="Issues of each repository.")
async def issues(client: Client, repo: dict[str, Any]) -> AsyncIterator[Issue]:
    """Yields the issues of one repository (the row ``repos`` yielded) as models."""
    await asyncio.sleep(0.01)  # an API call's latency: the other repositories go meanwhile
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


plugin = hw.Plugin(
    name="demo",
    version="0.1.0",
    tables=[repos],
    spec=Spec,
    connect=Client,
    description="Repositories and issues of an imaginary code host.",
)


def sync(path: Path, spec: dict[str, Any] | None = None) -> dict[str, int]:
    """Sync every table into the DuckDB file at ``path``, replacing earlier data.

    This is what ``headwater sync examples/demo_plugin.py --mode overwrite`` does: batches go
    into DuckDB through Arrow, ``uuid``/``json`` columns become ``UUID``/``JSON``.

    Returns:
        Rows per table.
    """
    result = sync_to(plugin, f"duckdb://{path.resolve()}", spec, mode="overwrite")
    return result.rows


def show(path: Path) -> None:
    """Print a few synced rows back: each issue with its repository."""
    with duckdb.connect(str(path), read_only=True) as con:
        print(
            con.sql(
                "SELECT r.full_name, i.number, i.title, i.state, i.labels, "
                "i._cq_parent_id = r._cq_id AS linked "
                "FROM demo_issues i JOIN demo_repos r ON i.repo_id = r.id "
                "ORDER BY r.id, i.number LIMIT 8"
            )
        )


def main(argv: list[str]) -> None:
    """Sync into ``argv[0]`` (default ``headwater.duckdb``) and print rows back.

    ``--show FILE`` only prints; a headwater command (``sync``, ``tables``, ...) runs
    :meth:`headwater.Plugin.main`.
    """
    if argv and argv[0] == "--show":
        show(Path(argv[1] if len(argv) > 1 else "headwater.duckdb"))
        return
    if argv and not argv[0].endswith(".duckdb") and not argv[0].startswith("-"):
        plugin.main(argv)
    path = Path(argv[0] if argv else "headwater.duckdb")
    counts = sync(path)
    print(f"synced {counts} into {path}")
    show(path)


if __name__ == "__main__":
    main(sys.argv[1:])
