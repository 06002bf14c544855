"""What a sync yields: the messages, and the summary of a run.

Iterating a :class:`~headwater.SyncRun` yields a :class:`MigrateTable` for every selected
table first, then :class:`Insert` messages (one ``pyarrow.RecordBatch`` each),
:class:`StateUpdate` messages (a resolver moved a cursor) and :class:`SyncError` messages (a
resolver failed; the rest of the sync goes on) as the engine produces them.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from headwater import _core
from headwater.redaction import redact
from headwater.schema import Table

__all__ = [
    "Insert",
    "MigrateTable",
    "State",
    "StateUpdate",
    "SyncError",
    "SyncMessage",
    "SyncSummary",
]


@dataclasses.dataclass(frozen=True, slots=True)
class MigrateTable:
    """A table the sync will write: create or migrate it before its first :class:`Insert`.

    Attributes:
        table: The table.
        schema: Its CloudQuery Arrow schema (``table.arrow_schema``).
    """

    table: Table
    schema: pa.Schema


@dataclasses.dataclass(frozen=True, slots=True)
class Insert:
    """A batch of rows of one table.

    Attributes:
        table_name: The table's name.
        batch: The rows, with the table's full schema (``_cq_id`` and ``_cq_parent_id``
            included).
    """

    table_name: str
    batch: pa.RecordBatch


@dataclasses.dataclass(frozen=True, slots=True)
class SyncError:
    """A resolver invocation failed (for one client or parent row); the sync goes on.

    Attributes:
        table_name: The table whose resolver failed.
        error: The exception it raised (or a description of an engine failure).
        client_id: The client it ran with, when the failure belongs to one and the sync has
            more than one client (or that client has an ``id`` of its own).
    """

    table_name: str
    error: BaseException | str
    client_id: str | None = None

    @property
    def message(self) -> str:
        """A one-line description: table, client and error, registered secrets masked."""
        client = f" (client {self.client_id})" if self.client_id is not None else ""
        error = self.error
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        return redact(f"table {self.table_name!r}{client}: {text}")


@dataclasses.dataclass(frozen=True, slots=True)
class StateUpdate:
    """A resolver set an incremental state key (a cursor): store it with the data.

    Every row the resolver yielded before setting the key is in an earlier :class:`Insert`,
    so a destination that stores the update in the same transaction as the rows before it
    never advances a cursor past data it does not hold.

    Attributes:
        table_name: The table whose resolver set it.
        key: The state key.
        value: Its new value.
    """

    table_name: str
    key: str
    value: str


#: The ``state`` argument a resolver receives: ``state.get(key, default=None)`` and
#: ``state.set(key, value)`` on string keys and values, scoped to the resolver's table and
#: client (stored as ``"{table}/{client}/{key}"``; ``shared=True`` stores ``key`` as given),
#: plus ``stored_key(key)``, ``table_name`` and ``client_id``.
State = _core.TaskState

#: What iterating a :class:`SyncRun` yields.
SyncMessage = MigrateTable | Insert | SyncError | StateUpdate


@dataclasses.dataclass(frozen=True)
class SyncSummary:
    """What a sync did, per table.

    Attributes:
        rows: Rows delivered per table.
        errors: Failed resolver invocations per table (with the batches that failed to build,
            and rows the consumer could not store under ``on_row_error="fail"``, see
            :meth:`SyncRun.refuse_rows`).
        skipped_rows: Rows left out per table because they did not fit it, or because the
            consumer could not store them (each logged, up to ten per table).
        duration: Seconds from the start of the sync to its end (or to now, while running).
        complete: The sync ran to its end (it was not cancelled).
        withheld_states: State updates per table that were not delivered because rows they
            cover were lost (a child resolver failed, say): the cursor stays where it was,
            so the next sync fetches those rows again.
    """

    rows: dict[str, int]
    errors: dict[str, int]
    skipped_rows: dict[str, int]
    duration: float
    complete: bool
    withheld_states: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        """Rows delivered in all."""
        return sum(self.rows.values())

    @property
    def total_errors(self) -> int:
        """Failed resolver invocations and skipped rows, in all."""
        return sum(self.errors.values()) + sum(self.skipped_rows.values())

    @property
    def failed_tables(self) -> list[str]:
        """Tables with at least one failed resolver invocation."""
        return [name for name, count in self.errors.items() if count]
