"""The benchmark shape as a table of the official CloudQuery Python SDK, for its baselines.

Imported only in ``.venv-bench-cq`` (see ``scripts/bench.sh``), by the scripts the benchmarks
run there; its rows come from :mod:`rowgen`, as headwater's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from cloudquery.sdk.scheduler import TableResolver
from cloudquery.sdk.schema import Column, Table
from cloudquery.sdk.types import JSONType, UUIDType

from rowgen import generate

TABLE = Table(
    "bench_items",
    [
        Column("id", pa.int64(), primary_key=True),
        Column("count", pa.int64()),
        Column("name", pa.string()),
        Column("description", pa.string()),
        Column("score", pa.float64()),
        Column("active", pa.bool_()),
        Column("updated_at", pa.timestamp("us", tz="UTC")),
        # The SDK's List scalar does not convert to Arrow (0.1.56): tags go as JSON.
        Column("tags", JSONType()),
        Column("attributes", JSONType()),
        Column("external_id", UUIDType()),
    ],
)


class Resolver(TableResolver):
    """Resolves :data:`TABLE` with `n` rows of the shape."""

    def __init__(self, n: int) -> None:
        super().__init__(TABLE)
        self.n = n

    def resolve(self, client: Any, parent_resource: Any) -> Iterator[dict[str, Any]]:
        yield from generate(self.n)


class Client:
    """The one client the SDK's scheduler needs."""

    def id(self) -> str:
        return "bench"
