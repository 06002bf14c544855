# Hand-written stubs for the Rust extension (rust/headwater-python), checked against the binary
# by mypy.stubtest in tests/test_native_module.py.
from typing import Any, Final, final

import pyarrow as pa

__all__ = ["BatchBuilder", "__version__", "encode_data_ipc", "encode_schema_ipc"]

__version__: Final[str]

@final
class BatchBuilder:
    def __new__(cls, schema: Any) -> BatchBuilder: ...
    @property
    def table_name(self) -> str: ...
    def build_rows(
        self,
        rows: Any,
        *,
        parent_cq_ids: Any = None,
        deterministic_cq_id: bool = True,
        skip_errors: bool = False,
        errors: list[Any] | None = None,
    ) -> pa.RecordBatch: ...
    def build_arrow(
        self,
        data: Any,
        *,
        parent_cq_ids: Any = None,
        deterministic_cq_id: bool = True,
    ) -> pa.RecordBatch: ...

def encode_schema_ipc(schema: Any) -> bytes: ...
def encode_data_ipc(data: Any, max_message_bytes: int) -> list[bytes]: ...
