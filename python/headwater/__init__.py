"""headwater: write data source plugins in Python, run their hot path in Rust.

Tables and columns describe CloudQuery-compatible Arrow schemas; :func:`table` and
:class:`Plugin` turn resolvers into a plugin whose :meth:`Plugin.sync` runs them on a Rust
scheduler; :func:`build_batch` turns rows or Arrow data into record batches with
``_cq_id``/``_cq_parent_id``; :func:`encode_ipc` encodes them for the wire.
"""

from headwater import types
from headwater._core import __version__
from headwater.batch import DEFAULT_MAX_MESSAGE_BYTES, build_batch, encode_ipc
from headwater.columns import columns_from
from headwater.errors import (
    HeadwaterError,
    IpcError,
    NotARowError,
    PluginError,
    RowError,
    SchemaError,
    SpecError,
    SyncOptionsError,
    TableSelectionError,
)
from headwater.logs import configure_logging
from headwater.plugin import Plugin, table
from headwater.schema import Column, Table
from headwater.spec import SecretStr, Spec
from headwater.sync import (
    Insert,
    MigrateTable,
    State,
    StateUpdate,
    SyncError,
    SyncMessage,
    SyncOptions,
    SyncRun,
    SyncSummary,
    select_tables,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Column",
    "HeadwaterError",
    "Insert",
    "IpcError",
    "MigrateTable",
    "NotARowError",
    "Plugin",
    "PluginError",
    "RowError",
    "SchemaError",
    "SecretStr",
    "Spec",
    "SpecError",
    "State",
    "StateUpdate",
    "SyncError",
    "SyncMessage",
    "SyncOptions",
    "SyncOptionsError",
    "SyncRun",
    "SyncSummary",
    "Table",
    "TableSelectionError",
    "__version__",
    "build_batch",
    "columns_from",
    "configure_logging",
    "encode_ipc",
    "select_tables",
    "table",
    "types",
]
