"""headwater: write data source plugins in Python, run their hot path in Rust.

Tables and columns describe CloudQuery-compatible Arrow schemas; :func:`build_batch` turns rows
or Arrow data into record batches with ``_cq_id``/``_cq_parent_id``; :func:`encode_ipc` encodes
them for the wire.
"""

from headwater import types
from headwater._core import __version__
from headwater.batch import DEFAULT_MAX_MESSAGE_BYTES, build_batch, encode_ipc
from headwater.columns import columns_from
from headwater.errors import HeadwaterError, IpcError, RowError, SchemaError
from headwater.schema import Column, Table

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Column",
    "HeadwaterError",
    "IpcError",
    "RowError",
    "SchemaError",
    "Table",
    "__version__",
    "build_batch",
    "columns_from",
    "encode_ipc",
    "types",
]
