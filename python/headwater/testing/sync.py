"""Running a plugin's sync in a test, and snapshots of its schemas.

:func:`run_sync` runs :meth:`headwater.Plugin.sync` to the end and returns a
:class:`SyncResult`: a pyarrow Table per table, the errors and the final state.
:func:`assert_schema_snapshot` compares the plugin's table schemas with a JSON file kept next
to the tests, so a schema change shows up in review as a diff.

Example:
    >>> import pyarrow as pa
    >>> import headwater as hw
    >>> from headwater.testing import run_sync
    >>> @hw.table("numbers", columns=[hw.Column("n", pa.int64(), primary_key=True)])
    ... def numbers(client):
    ...     yield [{"n": 1}, {"n": 2}]
    >>> result = run_sync(hw.Plugin(name="demo", version="1", tables=[numbers]))
    >>> result.rows("numbers")
    [{'n': 1}, {'n': 2}]
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from headwater.plugin import Plugin
from headwater.schema import Table
from headwater.sync import Insert, MigrateTable, StateUpdate, SyncError, SyncOptions, SyncSummary
from headwater.sync.options import SyncOptionFields

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SyncResult", "assert_schema_snapshot", "run_sync", "schema_snapshot"]

_INTERNAL = ("_cq_id", "_cq_parent_id")


@dataclasses.dataclass
class SyncResult:
    """What a sync delivered.

    Attributes:
        tables: The rows of each selected table (empty tables included), with the table's
            full schema.
        errors: The failed resolver invocations.
        state: The final incremental state.
        state_updates: Every state update, in order.
        summary: The sync's summary.
    """

    tables: dict[str, pa.Table]
    errors: list[SyncError]
    state: dict[str, str]
    state_updates: list[StateUpdate]
    summary: SyncSummary

    def rows(self, table: str, *, internal: bool = False) -> list[dict[str, Any]]:
        """The rows of ``table`` as dicts (``_cq_id``/``_cq_parent_id`` only if ``internal``)."""
        data = self.tables[table]
        if not internal:
            data = data.drop_columns([c for c in _INTERNAL if c in data.column_names])
        rows: list[dict[str, Any]] = data.to_pylist()
        return rows

    def error_messages(self) -> list[str]:
        """One line per error: table, client and exception."""
        return [error.message for error in self.errors]


def run_sync(
    plugin: Plugin,
    spec: object = None,
    *,
    options: SyncOptions | None = None,
    state: Mapping[str, str] | None = None,
    raise_errors: bool = False,
    **overrides: Unpack[SyncOptionFields],
) -> SyncResult:
    """Run a sync of ``plugin`` to the end and collect what it delivered.

    The client is made from ``spec`` with the plugin's ``connect`` and released afterwards
    (:meth:`headwater.Plugin.release`), so tests leave no connections open; a failing
    ``disconnect`` raises here.

    Args:
        plugin: The plugin.
        spec: Its spec (a mapping, JSON text or a spec instance).
        options: The sync's options, passed to :meth:`headwater.Plugin.sync` unchanged
            (combined with the keyword options as there).
        state: The incremental state to start from.
        raise_errors: Raise the first resolver error instead of collecting it.
        **overrides: Fields of :class:`~headwater.SyncOptions` by name (``tables``,
            ``concurrency``...), each replacing that field of ``options``.

    Returns:
        The :class:`SyncResult`.
    """
    client = plugin.client(spec)
    try:
        given = (options if options is not None else SyncOptions()).replace(**overrides)
        with plugin.sync(client=client, options=given, state=state) as run:
            batches: dict[str, list[pa.RecordBatch]] = {}
            schemas: dict[str, pa.Schema] = {}
            errors: list[SyncError] = []
            updates: list[StateUpdate] = []
            for message in run:
                if isinstance(message, MigrateTable):
                    schemas[message.table.name] = message.schema
                    batches.setdefault(message.table.name, [])
                elif isinstance(message, Insert):
                    batches[message.table_name].append(message.batch)
                elif isinstance(message, SyncError):
                    if raise_errors and isinstance(message.error, BaseException):
                        raise message.error
                    errors.append(message)
                elif isinstance(message, StateUpdate):
                    updates.append(message)
            final_state = run.state
            summary = run.summary
    finally:
        # Here a failing disconnect raises, so that a plugin's tests catch it.
        plugin.release(client)
    return SyncResult(
        tables={
            name: pa.Table.from_batches(parts, schema=schemas[name])
            for name, parts in batches.items()
        },
        errors=errors,
        state=final_state,
        state_updates=updates,
        summary=summary,
    )


def schema_snapshot(tables: Plugin | Iterable[Table]) -> dict[str, Any]:
    """A JSON-ready description of every table's Arrow schema, metadata included."""
    flat = (
        tables.flat_tables()
        if isinstance(tables, Plugin)
        else [t for x in tables for t in x.walk()]
    )

    def metadata(meta: Mapping[bytes, bytes] | None) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in sorted((meta or {}).items())}

    return {
        table.name: {
            "metadata": metadata(table.arrow_schema.metadata),
            "columns": [
                {
                    "name": field.name,
                    "type": str(field.type),
                    "nullable": field.nullable,
                    "metadata": metadata(field.metadata),
                }
                for field in table.arrow_schema
            ],
        }
        for table in flat
    }


def assert_schema_snapshot(
    tables: Plugin | Iterable[Table], path: str | Path, *, update: bool | None = None
) -> None:
    """Check the tables' schemas against the snapshot at ``path``.

    Args:
        tables: A plugin (all its tables) or tables (with their children).
        path: The snapshot file (JSON).
        update: Write the snapshot instead of checking it. By default, when the
            ``HEADWATER_UPDATE_SNAPSHOTS`` environment variable is ``1``; the
            ``schema_snapshot`` fixture passes ``True`` under ``--headwater-update-snapshots``.

    Raises:
        AssertionError: The snapshot is missing or differs; the message shows the diff.
    """
    path = Path(path)
    text = json.dumps(schema_snapshot(tables), indent=2, sort_keys=False) + "\n"
    if update is None:
        update = os.environ.get("HEADWATER_UPDATE_SNAPSHOTS") == "1"
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        raise AssertionError(
            f"no schema snapshot at {str(path)!r}; create it with pytest "
            "--headwater-update-snapshots (and review it)"
        )
    stored = path.read_text()
    if stored != text:
        diff = "".join(
            difflib.unified_diff(
                stored.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (snapshot)",
                tofile="current schema",
            )
        )
        raise AssertionError(
            f"the schemas differ from the snapshot {str(path)!r}; if the change is intended, "
            f"update it with pytest --headwater-update-snapshots:\n{diff}"
        )
