"""The API toolkit: an HTTP client with auth, hooks, retries, rate limits and pagination.

Most sources are HTTP APIs. :class:`Client` (threads) and :class:`AsyncClient` (asyncio) send
requests with what those need: a base URL and connection pool (httpx), an auth (API key,
bearer, basic, OAuth2 client credentials or refresh token, any callable), request and response
hooks, retries with backoff that honour ``Retry-After``, rate and concurrency limits enforced
in Rust and shared by every thread of a sync, JSON decoding with orjson, and paginators whose
pages a resolver yields as they come. A hostile server cannot make a request take longer than
its ``total_time`` nor grow past ``max_response_bytes`` (decompressed). Errors name the
request with its secrets redacted.

Example:
    >>> import headwater as hw
    >>> from headwater import http
    >>> def connect(spec):
    ...     return http.Client(
    ...         spec.base_url,
    ...         auth=http.BearerAuth(spec.token),
    ...         rate_limit=http.RateLimit(requests_per_second=10, burst=10, max_concurrent=8),
    ...     )
    >>> @hw.table("issues", columns=[hw.Column("id", "int64", primary_key=True)])  # doctest: +SKIP
    ... def issues(client):
    ...     yield from client.paginate("issues", http.CursorPaginator(items_path="data"))
"""

from headwater.errors import (
    AuthError,
    HttpError,
    HttpResponseError,
    HttpStatusError,
    HttpTimeoutError,
    HttpTransportError,
    PaginationError,
    RateLimitError,
    ResponseTooLargeError,
)
from headwater.http.auth import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    CallableAuth,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    Token,
)
from headwater.http.client import AsyncClient, Client, RequestHook, ResponseHook
from headwater.http.pagination import (
    Claim,
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
    PageRequest,
    Paginator,
)
from headwater.http.ratelimit import RateLimit, RateLimiter, parse_rate_limit_headers
from headwater.http.retry import RetryPolicy, parse_retry_after
from headwater.redaction import redact, redact_url, register_secret

__all__ = [
    "ApiKeyAuth",
    "AsyncClient",
    "Auth",
    "AuthError",
    "BasicAuth",
    "BearerAuth",
    "CallableAuth",
    "Claim",
    "Client",
    "CursorPaginator",
    "HttpError",
    "HttpResponseError",
    "HttpStatusError",
    "HttpTimeoutError",
    "HttpTransportError",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OAuth2ClientCredentials",
    "OAuth2RefreshToken",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "PaginationError",
    "Paginator",
    "RateLimit",
    "RateLimitError",
    "RateLimiter",
    "RequestHook",
    "ResponseHook",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Token",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "redact",
    "redact_url",
    "register_secret",
]
