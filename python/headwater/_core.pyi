# Hand-written stubs for the Rust extension (rust/headwater-python), checked against the binary
# by mypy.stubtest in tests/test_native_module.py.
from collections.abc import Sequence
from typing import Any, Final, final

import pyarrow as pa

__all__ = [
    "AsyncTask",
    "BatchBuilder",
    "HttpTransport",
    "RateLimiter",
    "SyncEngine",
    "TaskState",
    "__version__",
    "encode_data_ipc",
    "encode_schema_ipc",
]

__version__: Final[str]

@final
class BatchBuilder:
    def __new__(cls, schema: Any, *, strict: bool = False) -> BatchBuilder: ...
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

@final
class SyncEngine:
    def __new__(
        cls,
        tables: Sequence[tuple[Any, Any, int | None, bool, Any, Any, bool]],
        roots: Sequence[tuple[int, Sequence[int]]],
        clients: Sequence[Any],
        client_ids: Sequence[str],
        *,
        insert_type: Any,
        error_type: Any,
        state_type: Any,
        events: Any,
        async_runner: Any,
        client_labels: Sequence[str | None] | None = None,
        state: dict[str, str] | None = None,
        shard: tuple[int, int] | None = None,
        strategy: str = "dfs",
        shuffle_seed: int = 0,
        concurrency: int = 64,
        table_concurrency: int | None = None,
        depth_concurrency: Sequence[int] | None = None,
        max_queued: int | None = None,
        max_buffer_bytes: int = 67108864,
        max_rows: int = 10000,
        max_bytes: int = 8388608,
        max_latency: float = 1.0,
        fail_on_row_error: bool = False,
        resolver_timeout: float | None = None,
        sync_timeout: float | None = None,
    ) -> SyncEngine: ...
    def start(self) -> None: ...
    def __iter__(self) -> SyncEngine: ...
    def __next__(self) -> Any: ...
    def cancel(self) -> None: ...
    def close(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def finished(self) -> bool: ...
    def stats(self) -> list[tuple[str, int, int, int, int]]: ...
    @property
    def peak_buffer_bytes(self) -> int: ...
    @property
    def max_buffer_bytes(self) -> int: ...
    @property
    def workers(self) -> int: ...
    def running(self) -> list[tuple[str, str | None]]: ...
    def interrupted(self) -> list[tuple[str, str | None]]: ...
    def state(self) -> dict[str, str]: ...

@final
class TaskState:
    def get(self, key: str, default: str | None = None, *, shared: bool = False) -> str | None: ...
    def set(self, key: str, value: str, *, shared: bool = False) -> None: ...
    def stored_key(self, key: str, *, shared: bool = False) -> str: ...
    @property
    def table_name(self) -> str: ...
    @property
    def client_id(self) -> str: ...

@final
class AsyncTask:
    def push(self, item: Any) -> bool: ...
    def push_all(self, result: Any) -> bool: ...
    def needs_room(self) -> bool: ...
    def suspend(self) -> None: ...
    def try_resume(self) -> bool: ...
    def finish(self, error: BaseException | None = None) -> None: ...
    @property
    def cancelled(self) -> bool: ...

@final
class RateLimiter:
    def __new__(
        cls, rate: float | None = None, burst: int = 1, max_concurrent: int | None = None
    ) -> RateLimiter: ...
    @property
    def rate(self) -> float | None: ...
    @property
    def burst(self) -> int: ...
    @property
    def max_concurrent(self) -> int | None: ...
    def reserve(self, key: str) -> float: ...
    def reserve_within(self, key: str, max_wait: float) -> tuple[bool, float]: ...
    def try_acquire_slot(self, key: str) -> bool: ...
    def acquire_slot(self, key: str, timeout: float | None = None) -> bool: ...
    def release(self, key: str) -> None: ...
    def observe(self, key: str, remaining: int | None, reset_after: float | None) -> None: ...
    def stats(self, key: str) -> tuple[int, int, int]: ...

@final
class HttpTransport:
    def __new__(
        cls, *, ca_pem: bytes | None = None, verify: bool = True, max_connections: int = 100
    ) -> HttpTransport: ...
    def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, bytes]],
        body: bytes,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        total_timeout: float | None = None,
        max_body: int = ...,
    ) -> tuple[int, list[tuple[str, bytes]], bytes]: ...
