"""The exception hierarchy of headwater, rooted at :class:`HeadwaterError`.

The Rust extension raises these same classes, so ``except headwater.HeadwaterError`` catches
everything headwater itself reports. Exceptions raised by your own code (a resolver, a
``__getattr__``) pass through unchanged.
"""

from __future__ import annotations

from typing import Any

from headwater.redaction import redact

__all__ = [
    "AuthError",
    "DestinationError",
    "HeadwaterError",
    "HttpError",
    "HttpResponseError",
    "HttpStatusError",
    "HttpTimeoutError",
    "HttpTransportError",
    "IpcError",
    "MigrationError",
    "NotARowError",
    "PaginationError",
    "PluginError",
    "RateLimitError",
    "ResolverCancelled",
    "ResolverTimeoutError",
    "ResponseTooLargeError",
    "RowError",
    "SchemaError",
    "SpecError",
    "SyncInterrupted",
    "SyncOptionsError",
    "SyncTimeoutError",
    "TableSelectionError",
]


class HeadwaterError(Exception):
    """Base class of every error headwater raises.

    Its text (``str`` and ``repr``) masks every registered secret (see
    :mod:`headwater.redaction`) as ``***``, whatever the message was built from: a value
    from an API's answer, a URL, a row.
    """

    def __str__(self) -> str:
        return redact(super().__str__())

    def __repr__(self) -> str:
        return redact(super().__repr__())


class SchemaError(HeadwaterError, ValueError):
    """A table, column or Arrow schema is invalid, or data does not fit the table's schema."""


class PluginError(HeadwaterError, ValueError):
    """A plugin is defined wrongly.

    For example a table without a resolver, a duplicate table name, or a child table listed
    among the top-level ones.
    """


class SpecError(HeadwaterError, ValueError):
    """A plugin spec failed validation.

    The message lists every field error. Values of secret fields (``SecretStr``) and of
    unknown fields never appear in it.

    Attributes:
        errors: One line per field error, as in the message.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        super().__init__(message)


class SyncOptionsError(HeadwaterError, ValueError):
    """A sync option is unknown or out of range (see :class:`headwater.SyncOptions`).

    The message names the option, the value and what the option takes.
    """


class TableSelectionError(HeadwaterError, ValueError):
    """A table pattern (``tables`` or ``skip_tables``) matches no table of the plugin."""


class HttpError(HeadwaterError):
    """An HTTP request of :mod:`headwater.http` failed for good (retries included).

    The message names the request (method and URL, secrets redacted), what went wrong, the
    status when there was an answer, and how many attempts were made. Its subclasses say
    what kind of failure it was::

        HttpError
        ├── HttpStatusError        the API answered with an error status
        │   ├── AuthError          401/403, or the OAuth2 token endpoint failed
        │   └── RateLimitError     the API's rate limit would hold the request too long
        ├── HttpTransportError     no usable answer (connection, TLS, redirects)
        │   └── HttpTimeoutError   a time limit ran out
        └── HttpResponseError      an answer that cannot be used (not JSON ...)
            ├── PaginationError
            └── ResponseTooLargeError

    Attributes:
        method: The request method.
        url: The request URL, secrets redacted.
        status: The HTTP status of the last answer, or ``None`` without one.
        attempts: How many times the request was sent.
    """

    def __init__(
        self, message: str, *, method: str, url: str, status: int | None = None, attempts: int = 1
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.attempts = attempts
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_http_error, (type(self), str(self), self.__dict__.copy()))


class HttpStatusError(HttpError):
    """The API answered with an error status (4xx, or 429/5xx once retries ran out)."""


class AuthError(HttpStatusError):
    """Credentials were refused (401/403), or the OAuth2 token endpoint failed.

    ``status`` is the status of the refusal; when the token endpoint could not be reached
    at all (no status), the message says why.
    """


class RateLimitError(HttpStatusError):
    """The API's rate limit would keep a request waiting past its time limit.

    Raised at once rather than waiting: when ``X-RateLimit-Remaining: 0`` (or
    ``RateLimit-Remaining``) with a reset, or a ``Retry-After``, asks for a wait that ends
    after the request's ``total_time`` (:class:`~headwater.http.RetryPolicy`) or is longer
    than its ``max_wait``. The message names the request, the wait asked for and the header
    that asked for it.

    Attributes:
        wait: Seconds the API asked to wait.
        source: The header(s) that asked for it, as received.
    """

    def __init__(
        self, message: str, *, wait: float = 0.0, source: str = "", **request: Any
    ) -> None:
        self.wait = wait
        self.source = source
        super().__init__(message, **request)  # method, url, status, attempts


class HttpTransportError(HttpError):
    """No usable answer arrived.

    The connection was refused or reset, timed out or failed its TLS handshake, the body was
    cut short, or redirects looped.
    """


class HttpTimeoutError(HttpTransportError):
    """A time limit of the request ran out.

    Attributes:
        limit: Which one: ``"total_time"`` (the request's :class:`~headwater.http.RetryPolicy`
            ``total_time``, which covers every attempt from connecting to the last byte of
            the body, and the waits between them), ``"read"``, ``"connect"`` or ``"write"``
            (the client's ``timeout``, for each network operation), or ``"pool"``.
        seconds: The limit, in seconds, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str = "total_time",
        seconds: float | None = None,
        **request: Any,
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        super().__init__(message, **request)  # method, url, status, attempts


class HttpResponseError(HttpError):
    """An answer arrived but cannot be used.

    Invalid JSON, an HTML page, a wrong content type, a ``Content-Encoding`` that cannot be
    undone, a body too large, or a body without the fields a paginator reads.
    """


class PaginationError(HttpResponseError):
    """The pages of a listing contradict each other, so it cannot end without losing rows.

    For example, a page shorter than expected or without a next cursor while the API's
    total says more pages follow, or a next page that repeats an earlier one. The message
    names the request, the page number and both signals.
    """


class ResponseTooLargeError(HttpResponseError):
    """An answer's body is larger than the client accepts, or decompresses suspiciously far.

    Raised as soon as it is known, without reading further: from a declared
    ``Content-Length`` before the body is read, otherwise while the body streams in or is
    decompressed. Not retried. Raise the limit with ``max_response_bytes`` (per client or
    per request) or ``max_decompression_ratio`` on the client.

    Attributes:
        limit: The limit that was crossed: bytes, or the ratio for ``"ratio"``.
        kind: ``"declared"`` (``Content-Length``), ``"received"`` (bytes on the wire),
            ``"decoded"`` (bytes after decompression) or ``"ratio"`` (decoded per
            compressed byte).
        size: The declared length, or the bytes read when the limit was crossed.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: float = 0,
        kind: str = "decoded",
        size: int | None = None,
        **request: Any,
    ) -> None:
        self.limit = limit
        self.kind = kind
        self.size = size
        super().__init__(message, **request)  # method, url, status, attempts


def _rebuild_http_error(kind: type[HttpError], message: str, state: dict[str, object]) -> HttpError:
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class IpcError(HeadwaterError):
    """Arrow IPC encoding failed, e.g. a single row is larger than the message size limit."""


class ResolverTimeoutError(HeadwaterError, TimeoutError):
    """A resolver invocation ran longer than ``resolver_timeout``.

    It is the ``error`` of the :class:`~headwater.SyncError` recorded for that table and
    client: the sync stopped waiting for the resolver, delivers nothing it yields afterwards,
    and goes on with the rest. The table counts as failed, so ``overwrite`` and
    ``delete_stale`` keep its old rows.
    """


class SyncTimeoutError(HeadwaterError, TimeoutError):
    """The sync ran longer than ``sync_timeout`` and was cancelled.

    The message names the resolvers that were still running. A local sync rolls back what it
    had not committed.
    """


class ResolverCancelled(BaseException):
    """Raised inside a resolver's thread that a cancelled (or timed-out) sync stopped waiting for.

    The engine cannot interrupt a resolver blocked in C code (``time.sleep``, a socket read),
    so it asks the thread to raise this as soon as it runs Python again. Like
    :class:`asyncio.CancelledError` it derives from :class:`BaseException`, so a resolver's
    ``except Exception`` (a retry loop) does not swallow it; ``finally`` blocks still run.
    """


class SyncInterrupted(KeyboardInterrupt):
    """A local sync was interrupted (Ctrl-C, or SIGTERM under ``headwater sync``).

    Raised by :func:`headwater.destinations.run.sync_to` from the ``KeyboardInterrupt`` that
    stopped it, once the destination has rolled back what it had not committed.

    Attributes:
        running: The ``(table, client_id)`` pairs whose resolvers were running (the client
            ``None`` when the sync has one client without an ``id`` of its own).
    """

    def __init__(self, running: list[tuple[str, str | None]]) -> None:
        self.running = running
        names = ", ".join(
            f"table {table!r}" + ("" if client is None else f" (client {client})")
            for table, client in running
        )
        super().__init__(f"interrupted while running {names}" if running else "interrupted")


class DestinationError(HeadwaterError):
    """A destination of a local sync failed: unreachable, locked, full, or of the wrong shape.

    The message names the destination (its URL, without a password), the table and the value
    at fault.
    """


class MigrationError(DestinationError):
    """A destination table cannot take the plugin's schema without losing data.

    Raised for an incompatible column type change (pass ``migrate_force`` to rebuild the table).

    Attributes:
        table: The destination table.
        column: The column whose type changed.
        old_type: Its type in the destination.
        new_type: The type the plugin's schema needs.
    """

    def __init__(self, table: str, column: str, old_type: str, new_type: str, where: str) -> None:
        self.table = table
        self.column = column
        self.old_type = old_type
        self.new_type = new_type
        self.where = where
        super().__init__(
            f"{where}: table {table!r}, column {column!r} is {old_type} but the plugin now "
            f"needs {new_type}; this change would lose data, so the sync is refused "
            "(rerun with --migrate-force to drop and rebuild the table)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (MigrationError, (self.table, self.column, self.old_type, self.new_type, self.where))


class NotARowError(HeadwaterError, TypeError):
    """A resolver yielded (or ``build_batch`` was given) something that can never be a row.

    A generator, coroutine, async generator or other iterator where a row belongs (a resolver
    that forgot ``yield from`` or ``await``), or a resolver that returned a ``str`` or
    ``bytes``. It is a mistake in the code, not in the data, so it fails the resolver (or
    ``build_batch``) whatever ``on_row_error`` says; the message names the table and the row
    and says what to write instead.
    """


class RowError(HeadwaterError, ValueError):
    """One value of one row cannot be stored in its column.

    Attributes:
        table: Name of the table being built.
        column: Name of the column, or ``None`` when the row itself is malformed.
        row: Index of the row in the input.
        expected: The Arrow type the column expects.
        value_type: The Python type name of the offending value.
        value_repr: A truncated ``repr`` of the offending value (secrets are never included:
            pydantic ``SecretStr`` values show as ``'**********'``).
        reason: What is wrong with the value.
    """

    def __init__(
        self,
        *,
        table: str,
        column: str | None,
        row: int,
        expected: str,
        value_type: str,
        value_repr: str,
        reason: str,
    ) -> None:
        self.table = table
        self.column = column
        self.row = row
        self.expected = expected
        self.value_type = value_type
        self.value_repr = value_repr
        self.reason = reason
        where = f"table {table!r}" + (f", column {column!r}" if column is not None else "")
        super().__init__(
            f"{where}, row {row}: expected {expected}, got {value_type} {value_repr}: {reason}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_row_error, (self.__dict__.copy(),))


def _rebuild_row_error(state: dict[str, object]) -> RowError:
    return RowError(**state)  # type: ignore[arg-type]
