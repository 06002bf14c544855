"""Rows of the benchmark shape (see :mod:`shapes`), in plain Python.

Nothing here imports headwater, so the same rows feed the other SDKs' benchmark environments.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


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
