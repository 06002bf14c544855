"""Running a sync: its options, the tables it selects, the messages it yields, its summary.

:meth:`headwater.Plugin.sync` returns a :class:`SyncRun`. Iterating it yields a
:class:`MigrateTable` for every selected table first, then :class:`Insert` messages (one
``pyarrow.RecordBatch`` each), :class:`StateUpdate` and :class:`SyncError` messages (a
resolver that failed; the rest of the sync goes on) as the engine produces them. When it is
exhausted, :attr:`SyncRun.summary` holds the rows and errors per table. Breaking out of the
loop and calling :meth:`SyncRun.close` (or leaving a ``with`` block, or pressing Ctrl-C)
cancels the sync cleanly: generators are closed and every thread is joined.

The modules, one job each:

- :mod:`~headwater.sync.options`: :class:`SyncOptions`, every option of a sync;
- :mod:`~headwater.sync.selection`: :func:`select_tables`;
- :mod:`~headwater.sync.messages`: what a run yields, and its :class:`SyncSummary`;
- :mod:`~headwater.sync.invocation`: how the engine calls resolvers and row hooks;
- :mod:`~headwater.sync.asyncio_driver`: the event loop that runs async resolvers;
- :mod:`~headwater.sync.events`: the sink, the engine's one way back into Python;
- :mod:`~headwater.sync.run`: :class:`SyncRun`, and building the engine.
"""

from headwater.sync.messages import (
    Insert,
    MigrateTable,
    State,
    StateUpdate,
    SyncError,
    SyncMessage,
    SyncSummary,
)
from headwater.sync.options import SyncOptions
from headwater.sync.run import SyncRun
from headwater.sync.selection import select_tables

__all__ = [
    "Insert",
    "MigrateTable",
    "State",
    "StateUpdate",
    "SyncError",
    "SyncMessage",
    "SyncOptions",
    "SyncRun",
    "SyncSummary",
    "select_tables",
]
