"""Rows of the benchmark shape (see :mod:`shapes`), in plain Python.

Nothing here imports headwater, so the same rows feed the other SDKs' benchmark environments.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def make_row(i: int) -> dict[str, Any]:
    """Row `i` of the shape, built from scratch as a resolver parsing an API page would."""
    return {
        "id": i,
        "count": i * 7,
        "name": f"item-{i}",
        "description": "a short description of the item",
        "score": i / 3,
        "active": i % 2 == 0,
        "updated_at": START + dt.timedelta(seconds=i),
        "tags": ["alpha", "beta", f"t{i % 10}"],
        "attributes": {"size": i % 100, "labels": {"env": "prod", "tier": [1, 2]}},
        "external_id": uuid.UUID(int=i * 7919 + 1),
    }


def make_rows(n: int) -> list[dict[str, Any]]:
    """`n` rows of the shape."""
    return [make_row(i) for i in range(n)]


def generate(n: int) -> Iterator[dict[str, Any]]:
    """A resolver's generator: `n` rows, each built when it is yielded."""
    for i in range(n):
        yield make_row(i)


def make_arrow(n: int) -> Any:
    """`n` rows of the shape as one pyarrow table, as a resolver reading Arrow data would yield.

    ``attributes`` is JSON text and ``external_id`` the UUID's 16 bytes: what any Arrow
    producer holds for them.
    """
    import json

    import pyarrow as pa

    rows = make_rows(n)
    return pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "count": pa.array([r["count"] for r in rows], pa.int64()),
            "name": [r["name"] for r in rows],
            "description": [r["description"] for r in rows],
            "score": pa.array([r["score"] for r in rows], pa.float64()),
            "active": [r["active"] for r in rows],
            "updated_at": pa.array([r["updated_at"] for r in rows], pa.timestamp("us", tz="UTC")),
            "tags": pa.array([r["tags"] for r in rows], pa.list_(pa.string())),
            "attributes": [json.dumps(r["attributes"]) for r in rows],
            "external_id": pa.array([r["external_id"].bytes for r in rows], pa.binary(16)),
        }
    )
