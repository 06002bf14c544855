"""Helpers shared by the sync tests: running a sync to completion and counting threads."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

import headwater as hw


def run_all(
    run: Iterable[hw.SyncMessage],
) -> tuple[list[Any], dict[str, pa.Table], list[hw.SyncError]]:
    """Exhaust a sync: every message in order, the rows per table, the errors."""
    messages = list(run)
    batches: dict[str, list[pa.RecordBatch]] = {}
    schemas: dict[str, pa.Schema] = {}
    for message in messages:
        if isinstance(message, hw.MigrateTable):
            schemas[message.table.name] = message.schema
            batches.setdefault(message.table.name, [])
        elif isinstance(message, hw.Insert):
            batches[message.table_name].append(message.batch)
    tables = {
        name: pa.Table.from_batches(parts, schema=schemas[name]) for name, parts in batches.items()
    }
    errors = [m for m in messages if isinstance(m, hw.SyncError)]
    return messages, tables, errors


def thread_count() -> int:
    """OS threads of this process (engine threads are not Python threads).

    pyarrow's jemalloc starts a background thread of its own at some allocation, at a moment
    no test controls; it is not counted.
    """
    return sum(_thread_name(task) != "jemalloc_bg_thd" for task in os.listdir("/proc/self/task"))


def _thread_name(task: str) -> str:
    try:
        with open(f"/proc/self/task/{task}/comm") as comm:
            return comm.read().strip()
    except OSError:  # the thread ended meanwhile
        return ""
