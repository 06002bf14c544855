"""HTTP clients for API sources: :class:`Client` (threads) and :class:`AsyncClient` (asyncio).

Both have the same API: a base URL, default headers and query parameters, timeouts and a
connection pool (httpx underneath), an auth, request and response hooks, retries
(:class:`~headwater.http.RetryPolicy`), rate and concurrency limits enforced in Rust
(:class:`~headwater.http.RateLimit`), JSON decoded with orjson, and pagination
(:meth:`Client.paginate`) that yields a page of rows at a time. Every failure ends in a
:class:`~headwater.HttpError` naming the request (secrets redacted), the status and the
attempts made; a resolver that lets it propagate fails its table while the sync goes on.

One client serves every thread of a sync (make it in the plugin's ``connect``); its limits
are shared by all of them.

Example:
    >>> from headwater.http import Client, CursorPaginator, RateLimit
    >>> client = Client(
    ...     "https://api.example.com/v1/",
    ...     rate_limit=RateLimit(requests_per_second=10, burst=5, max_concurrent=4),
    ... )
    >>> pages = client.paginate("issues", CursorPaginator(items_path="data"))  # doctest: +SKIP
    >>> client.close()
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import httpx
import orjson

from headwater import __version__
from headwater.errors import (
    AuthError,
    HttpError,
    HttpResponseError,
    HttpStatusError,
    HttpTimeoutError,
    HttpTransportError,
    RateLimitError,
    ResponseTooLargeError,
)
from headwater.http.auth import Auth, CallableAuth
from headwater.http.pagination import PageWalk, Paginator
from headwater.http.proxies import AsyncProxyRouter, ProxyRouter, environment_proxies
from headwater.http.ratelimit import RateLimit, RateLimiter
from headwater.http.redaction import (
    is_secret_header,
    is_secret_param,
    redact,
    redact_url,
    register_request,
    register_secret,
)
from headwater.http.retry import RetryPolicy, parse_retry_after
from headwater.http.transport import (
    DEFAULT_MAX_DECOMPRESSION_RATIO,
    DEFAULT_MAX_RESPONSE_BYTES,
    LIMITS,
    AsyncLimitedTransport,
    AsyncNativeTransport,
    BodyLimits,
    LimitedTransport,
    NativeTransport,
    ResponseTooLarge,
    TLSError,
    TotalTimeout,
    httpx_transport,
    native_supported,
)

__all__ = ["AsyncClient", "Client", "RequestHook", "ResponseHook"]

logger = logging.getLogger("headwater.http")

#: ``hook(request)``: runs before each attempt, in declaration order; may return a new request.
RequestHook = Callable[[httpx.Request], Any]
#: ``hook(response)``: runs on each answer, in declaration order, before its status is
#: checked; may return a new response.
ResponseHook = Callable[[httpx.Response], Any]

T = TypeVar("T")

# Set by headwater.testing (cassettes): wraps the transport of every client made afterwards.
_transport_wrapper: Callable[[Any, bool], Any] | None = None

_EXCERPT = 200
_JSON_TYPES = ("application/json", "text/json")
# A wait for a rate limit at least this long is logged, so an idle sync says why.
_LONG_WAIT = 5.0
# What the transports decode themselves, in bounded steps (see headwater.http.transport).
_ACCEPT_ENCODING = "gzip, deflate"


class _Core:
    """Configuration and the steps both clients share; the sending loop is theirs."""

    http: httpx.Client | httpx.AsyncClient

    def __init__(
        self,
        *,
        auth: Auth | Callable[[httpx.Request], Any] | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        retry: RetryPolicy | Literal[False] | None,
        rate_limit: RateLimit | RateLimiter | None,
        request_hooks: Iterable[RequestHook],
        response_hooks: Iterable[ResponseHook],
        strict_content_type: bool,
        max_response_bytes: int,
        max_decompression_ratio: float,
    ) -> None:
        self.max_response_bytes = _check_max_bytes(max_response_bytes, "max_response_bytes")
        if not (
            isinstance(max_decompression_ratio, (int, float))
            and not isinstance(max_decompression_ratio, bool)
            and max_decompression_ratio >= 1
        ):
            raise ValueError(
                "max_decompression_ratio must be a number of at least 1 (decompressed bytes "
                f"per compressed byte), got {max_decompression_ratio!r}"
            )
        self.max_decompression_ratio = float(max_decompression_ratio)
        if auth is not None and not isinstance(auth, Auth):
            if not callable(auth):
                raise TypeError(
                    f"auth must be a headwater.http Auth or a callable taking the request, "
                    f"got {type(auth).__name__}"
                )
            auth = CallableAuth(auth)
        self.auth: Auth | None = auth
        if retry is False:
            retry = RetryPolicy(attempts=1)
        self.retry: RetryPolicy = retry if retry is not None else RetryPolicy()
        self._respect_headers = True
        self._per_client = False
        if isinstance(rate_limit, RateLimiter):
            self.limiter = rate_limit
        elif isinstance(rate_limit, RateLimit):
            self.limiter = RateLimiter.from_config(rate_limit)
            self._respect_headers = rate_limit.respect_headers
            self._per_client = rate_limit.per == "client"
        elif rate_limit is None:
            # No limits of our own, but still the API's: X-RateLimit-Remaining: 0 pauses.
            self.limiter = RateLimiter()
        else:
            raise TypeError(
                f"rate_limit must be a RateLimit or a RateLimiter, got {type(rate_limit).__name__}"
            )
        self.request_hooks = list(request_hooks)
        self.response_hooks = list(response_hooks)
        self.strict_content_type = strict_content_type
        self._default_headers = {
            "User-Agent": f"headwater/{__version__}",
            "Accept": "application/json",
            "Accept-Encoding": _ACCEPT_ENCODING,
            **(headers or {}),
        }
        # One log line per key and cause of a long rate-limit wait, not one per request.
        self._told: dict[str, str] = {}
        self._params = dict(params or {})
        # Credentials passed as plain default headers or parameters are secrets all the same.
        for name, value in self._default_headers.items():
            if is_secret_header(name):
                register_secret(value)
                register_secret(value.partition(" ")[2])  # "Bearer <token>"
        for name, value in self._params.items():
            if is_secret_param(name) and isinstance(value, str):
                register_secret(value)

    @staticmethod
    def _split_query(
        url: str | httpx.URL, params: Mapping[str, Any] | None
    ) -> tuple[str | httpx.URL, httpx.QueryParams | Mapping[str, Any] | None]:
        """Move a URL's own query string into ``params``.

        httpx drops a URL's query string when ``params`` are given (the client's defaults
        count), and next-page URLs carry theirs.
        """
        if isinstance(url, str) and "?" not in url:
            return url, params  # the common case, without parsing the URL twice
        parsed = httpx.URL(url)
        if not parsed.query:
            return parsed, params
        return parsed.copy_with(query=None), httpx.QueryParams(parsed.params).merge(params or {})

    def _key(self, request: httpx.Request) -> str:
        return "client" if self._per_client else request.url.host

    def _observe(self, key: str, response: httpx.Response) -> None:
        if self._respect_headers:
            self.limiter.observe(key, response.headers)

    def decode(self, response: httpx.Response) -> Any:
        """The JSON body of ``response``, decoded with orjson.

        Raises:
            HttpResponseError: The body is empty, not JSON (an HTML error page, say), or has a
                content type other than JSON (unless ``strict_content_type=False``); the
                message names the request and shows the start of the body.
        """
        content = response.content
        kind = response.headers.get("content-type", "")
        mime = kind.partition(";")[0].strip().lower()
        if (
            self.strict_content_type
            and mime
            and not (mime in _JSON_TYPES or mime.endswith("+json"))
        ):
            raise _response_error(
                response, f"expected JSON, got content type {kind!r}", show_body=True
            )
        if not content.strip():
            raise _response_error(response, "expected JSON, got an empty body")
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _response_error(
                response, f"invalid JSON ({len(content)} bytes): {exc}", show_body=True
            ) from None

    def _limits(
        self, policy: RetryPolicy, max_response_bytes: int | None, started: float
    ) -> BodyLimits:
        """What one request's answers may cost, and its deadline."""
        return BodyLimits(
            max_bytes=(
                self.max_response_bytes
                if max_response_bytes is None
                else _check_max_bytes(max_response_bytes, "max_response_bytes")
            ),
            max_ratio=self.max_decompression_ratio,
            deadline=started + policy.total_time,
        )

    def _token_request(
        self, url: str, data: Mapping[str, str], headers: Mapping[str, str]
    ) -> httpx.Request:
        """A POST to an OAuth2 token endpoint, with only what that endpoint needs.

        None of the client's default headers, query parameters or hooks: those are meant for
        the API (an API key among them), and the token endpoint is often another host's.
        """
        target = httpx.URL(url)
        base = self.http.base_url
        if target.is_relative_url:
            # As httpx resolves relative URLs against a client's base URL.
            target = base.copy_with(raw_path=base.raw_path + target.raw_path.lstrip(b"/"))
        return httpx.Request(
            "POST",
            target,
            headers={"User-Agent": self._default_headers["User-Agent"], **headers},
            data=dict(data),
            extensions={"timeout": self.http.timeout.as_dict()},
        )

    def _book(
        self,
        key: str,
        request: httpx.Request,
        policy: RetryPolicy,
        limits: BodyLimits,
        attempt: int,
        started: float,
    ) -> float:
        """Book the request's turn under the rate limits; the seconds to wait for it.

        Raises:
            RateLimitError: The turn comes after the deadline, or after ``max_wait``.
        """
        assert limits.deadline is not None
        left = max(0.0, limits.deadline - time.monotonic())
        allowed = left if policy.max_wait is None else min(left, policy.max_wait)
        booked, wait = self.limiter.reserve(key, allowed)
        said = self.limiter.said(key)
        if said is not None:
            cause, source = "the API's rate limit", said
        else:
            cause = "the client's rate limit"
            source = f"RateLimit(requests_per_second={self.limiter.requests_per_second})"
        if not booked:
            raise _rate_limited(request, policy, attempt, started, wait, cause, source, status=None)
        if wait >= _LONG_WAIT and self._told.get(key) != source:
            self._told[key] = source
            logger.log(
                logging.WARNING if said is not None else logging.INFO,
                "waiting %.0f s before %s %s: %s (%s)",
                wait,
                request.method,
                redact_url(request.url),
                cause,
                source,
                extra={"url": redact_url(request.url), "wait": wait},
            )
        return wait

    def _timeout_error(
        self, request: httpx.Request, policy: RetryPolicy, attempt: int, started: float, what: str
    ) -> HttpTimeoutError:
        url = redact_url(request.url)
        return HttpTimeoutError(
            f"{request.method} {url}: {what}, past the total time limit of "
            f"{policy.total_time:g} s (RetryPolicy.total_time) "
            f"{_tries(attempt, started)}",
            method=request.method,
            url=url,
            attempts=attempt,
            limit="total_time",
            seconds=policy.total_time,
        )

    def _wait_or_raise(
        self,
        request: httpx.Request,
        attempt: int,
        started: float,
        *,
        response: httpx.Response | None = None,
        error: httpx.RequestError | None = None,
        retry: RetryPolicy,
    ) -> float:
        """Seconds to wait before the next attempt, or raise the final error."""
        reason = ""
        retryable = False
        retry_after: float | None = None
        if response is not None:
            retryable = retry.retries_status(response.status_code)
            retry_after = parse_retry_after(response.headers)
        elif error is not None:
            retryable = _retryable(error)
        if retryable:
            wait = retry.wait(attempt, retry_after)
            elapsed = time.monotonic() - started
            asked = retry_after is not None and retry.respect_retry_after
            if attempt >= retry.attempts:
                reason = ""
            elif asked and (
                elapsed + wait > retry.total_time
                or (retry.max_wait is not None and wait > retry.max_wait)
            ):
                assert response is not None
                header = f"Retry-After: {response.headers.get('retry-after')}"
                raise _rate_limited(
                    request,
                    retry,
                    attempt,
                    started,
                    wait,
                    "the API",
                    header,
                    status=response.status_code,
                )
            elif elapsed + wait > retry.total_time:
                reason = (
                    f"; a retry in {wait:.2f} s would pass the total time limit of "
                    f"{retry.total_time:g} s"
                )
            else:
                logger.warning(
                    "retrying %s %s in %.2f s (attempt %d of %d): %s",
                    request.method,
                    redact_url(request.url),
                    wait,
                    attempt + 1,
                    retry.attempts,
                    _status_text(response) if response is not None else _error_text(error),
                    extra={"url": redact_url(request.url), "attempt": attempt},
                )
                return wait
        raise _final_error(request, attempt, started, response, error, reason, retryable, retry)


def _check_max_bytes(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of bytes of at least 1, got {value!r}")
    return value


def _tries(attempts: int, started: float) -> str:
    elapsed = time.monotonic() - started
    return f"after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.2f} s"


def _rate_limited(
    request: httpx.Request,
    policy: RetryPolicy,
    attempt: int,
    started: float,
    wait: float,
    cause: str,
    source: str,
    *,
    status: int | None,
) -> RateLimitError:
    url = redact_url(request.url)
    left = policy.total_time - (time.monotonic() - started)
    if policy.max_wait is not None and wait > policy.max_wait:
        over = f"longer than max_wait={policy.max_wait:g} s (RetryPolicy.max_wait)"
    else:
        over = (
            f"past the total time limit of {policy.total_time:g} s (RetryPolicy.total_time; "
            f"{max(0.0, left):.2f} s left)"
        )
    return RateLimitError(
        f"{request.method} {url}: {cause} asks to wait {wait:.2f} s ("
        + (f"HTTP {status}, " if status is not None else "")
        + f"{source}), {over}; failing now instead of waiting, {_tries(attempt, started)}. "
        "Raise total_time or max_wait to wait it out",
        method=request.method,
        url=url,
        status=status,
        attempts=attempt,
        wait=wait,
        source=source,
    )


def _retryable(error: httpx.RequestError) -> bool:
    if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, TotalTimeout)):
        return False  # TotalTimeout: no time is left for another attempt
    if _is_tls(error):
        return False  # certificates and protocol mismatches do not fix themselves
    return isinstance(error, httpx.TransportError)


def _is_tls(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (ssl.SSLError, TLSError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "SSL" in str(error) and isinstance(error, httpx.ConnectError)


def _status_text(response: httpx.Response) -> str:
    phrase = response.reason_phrase or ""
    return f"HTTP {response.status_code}{(' ' + phrase) if phrase else ''}"


def _error_text(error: httpx.RequestError | None) -> str:
    if error is None:
        return "no answer"
    detail = redact(str(error)) or "no detail"
    if isinstance(error, httpx.TooManyRedirects):
        return f"too many redirects, a redirect loop? ({detail})"
    if _is_tls(error):
        what = "TLS error"
    elif isinstance(error, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(error, httpx.RemoteProtocolError):
        what = "the server broke the HTTP protocol or closed the connection mid-answer"
    elif isinstance(error, httpx.ConnectError):
        what = "could not connect"
    elif isinstance(error, httpx.DecodingError):
        what = "could not decode the body"
    else:
        what = "request failed"
    return f"{what} ({type(error).__name__}: {detail})"


def _excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError, httpx.ResponseNotRead):
        return ""
    text = " ".join(text[: _EXCERPT * 2].split())
    if len(text) > _EXCERPT:
        text = text[: _EXCERPT - 3] + "..."
    return redact(text)


def _response_error(
    response: httpx.Response, message: str, *, show_body: bool = False
) -> HttpResponseError:
    request = response.request
    url = redact_url(request.url)
    body = _excerpt(response) if show_body else ""
    return HttpResponseError(
        f"{request.method} {url}: {message} (HTTP {response.status_code})"
        + (f"; the body starts {body!r}" if body else ""),
        method=request.method,
        url=url,
        status=response.status_code,
    )


def _final_error(
    request: httpx.Request,
    attempts: int,
    started: float,
    response: httpx.Response | None,
    error: httpx.RequestError | None,
    reason: str,
    retryable: bool,
    policy: RetryPolicy,
) -> HttpError:
    url = redact_url(request.url)
    tries = _tries(attempts, started)
    if not retryable:
        tries = f"{tries} (not retried)" if attempts > 1 else "(not retried)"
    if response is not None:
        body = _excerpt(response)
        kind = AuthError if response.status_code in (401, 403) else HttpStatusError
        return kind(
            f"{request.method} {url}: {_status_text(response)} {tries}{reason}"
            + (f": {body}" if body else ""),
            method=request.method,
            url=url,
            status=response.status_code,
            attempts=attempts,
        )
    if isinstance(error, ResponseTooLarge):
        what = "decompression ratio" if error.kind == "ratio" else "size"
        return ResponseTooLargeError(
            f"{request.method} {url}: {redact(str(error))}; stopped reading it {tries}. If the "
            f"answer is genuine, raise the {what} limit: "
            + (
                "Client(max_decompression_ratio=...)"
                if error.kind == "ratio"
                else "Client(max_response_bytes=...), or max_response_bytes= on the request"
            ),
            method=request.method,
            url=url,
            attempts=attempts,
            limit=error.limit,
            kind=error.kind,
            size=error.size,
        )
    if isinstance(error, httpx.DecodingError):
        # An answer came, but its Content-Encoding cannot be undone.
        return HttpResponseError(
            f"{request.method} {url}: {_error_text(error)} {tries}{reason}",
            method=request.method,
            url=url,
            attempts=attempts,
        )
    if isinstance(error, TotalTimeout):
        return HttpTimeoutError(
            f"{request.method} {url}: no complete answer within the total time limit of "
            f"{policy.total_time:g} s (RetryPolicy.total_time, which covers connecting, the "
            f"headers and the whole body of every attempt) {tries}{reason}",
            method=request.method,
            url=url,
            attempts=attempts,
            limit="total_time",
            seconds=policy.total_time,
        )
    if isinstance(error, httpx.TimeoutException):
        limit = _TIMEOUTS.get(type(error), "read")
        seconds = request.extensions.get("timeout", {}).get(limit)
        return HttpTimeoutError(
            f"{request.method} {url}: {_error_text(error)}, the {limit} timeout of "
            f"{seconds if seconds is None else format(seconds, 'g')} s (Client(timeout=...)) "
            f"{tries}{reason}",
            method=request.method,
            url=url,
            attempts=attempts,
            limit=limit,
            seconds=seconds,
        )
    return HttpTransportError(
        f"{request.method} {url}: {_error_text(error)} {tries}{reason}",
        method=request.method,
        url=url,
        attempts=attempts,
    )


_TIMEOUTS: dict[type[httpx.TimeoutException], str] = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}


def _context(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """``verify`` as httpx takes it (a CA file path became deprecated there)."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def _choose_transport(
    transport: Any,
    *,
    is_async: bool,
    native: bool,
    verify: bool | str | ssl.SSLContext,
    max_connections: int,
) -> Any:
    """The transport a client sends through.

    ``transport`` if given, else the Rust transport where it can serve (see :class:`Client`'s
    ``native_transport``), else httpx's; read through :class:`LimitedTransport`, which holds
    every answer to the request's size and time limits; wrapped by a cassette when one is
    recording or replaying.
    """
    if transport is None:
        proxies = environment_proxies()
        context = _context(verify)
        if native and not isinstance(verify, ssl.SSLContext) and native_supported(verify):
            rust = AsyncNativeTransport if is_async else NativeTransport
            transport = rust(verify, max_connections)
        elif is_async:

            def make_async(proxy: str | None) -> httpx.AsyncBaseTransport:
                return httpx.AsyncHTTPTransport(
                    limits=_pool(max_connections), verify=context, proxy=proxy
                )

            transport = AsyncProxyRouter(proxies, make_async) if proxies else make_async(None)
        else:

            def make(proxy: str | None) -> httpx.BaseTransport:
                return httpx_transport(context, max_connections, proxy)

            transport = ProxyRouter(proxies, make) if proxies else make(None)
    transport = AsyncLimitedTransport(transport) if is_async else LimitedTransport(transport)
    if _transport_wrapper is not None:
        transport = _transport_wrapper(transport, is_async)
    return transport


def _pool(max_connections: int) -> httpx.Limits:
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


class Client(_Core):
    """A synchronous API client, safe to share between threads.

    Args:
        base_url: Prepended to relative request URLs.
        auth: An :class:`~headwater.http.Auth`, or a callable taking (and modifying or
            replacing) the ``httpx.Request``.
        headers: Default headers of every request.
        params: Default query parameters of every request.
        timeout: Seconds (or an ``httpx.Timeout``) for each network operation: connecting,
            and each read and write (an idle connection fails after that long). The whole
            request, however slowly the server trickles its answer, is bounded by the
            retry policy's ``total_time``.
        retry: The retry policy, which also sets each request's deadline (``total_time``);
            ``False`` never retries; default :class:`RetryPolicy()`.
        rate_limit: A :class:`RateLimit` for this client, or a :class:`RateLimiter` shared
            with other clients. Without one the API's ``X-RateLimit-*`` headers still apply.
        request_hooks: Run on each attempt's request, in order (after auth).
        response_hooks: Run on each answer, in order, before its status is checked.
        max_connections: Size of the connection pool.
        follow_redirects: Follow redirects (at most ``max_redirects``).
        max_redirects: Redirects followed before a request fails.
        verify: Verify TLS certificates (or a CA bundle path, or an ``ssl.SSLContext``).
        strict_content_type: Refuse to decode answers whose content type is not JSON.
        max_response_bytes: The largest answer body accepted, in bytes, as received and
            after decompression (default 256 MiB); a larger one fails with
            :class:`~headwater.errors.ResponseTooLargeError` without being read further (a
            larger declared ``Content-Length``, before any of it is read).
        max_decompression_ratio: The most bytes a compressed body may decompress to per
            byte received (default 200), checked past 8 MiB decompressed: a decompression
            bomb fails early with :class:`~headwater.errors.ResponseTooLargeError`.
        transport: An httpx transport to send through (tests, proxies).
        native_transport: Without ``transport``: do the network I/O in Rust with the GIL
            released (:class:`~headwater.http.transport.NativeTransport`), which is what
            lets many threads wait on an API at once; ``False``: httpx's own transport.
            ``verify`` given as an ``ssl.SSLContext``, proxies set in the environment (see
            :mod:`headwater.http.proxies`), or
            ``SSL_CERT_DIR`` without ``SSL_CERT_FILE`` always use httpx's.
        id: Names the client in sync messages, logs and incremental state keys, when a
            plugin's ``connect`` returns the client itself.
    """

    http: httpx.Client

    def __init__(
        self,
        base_url: str | httpx.URL = "",
        *,
        auth: Auth | Callable[[httpx.Request], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | Literal[False] | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        request_hooks: Iterable[RequestHook] = (),
        response_hooks: Iterable[ResponseHook] = (),
        max_connections: int = 100,
        follow_redirects: bool = True,
        max_redirects: int = 20,
        verify: bool | str | ssl.SSLContext = True,
        strict_content_type: bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_decompression_ratio: float = DEFAULT_MAX_DECOMPRESSION_RATIO,
        transport: httpx.BaseTransport | None = None,
        native_transport: bool = True,
        id: str = "default",
    ) -> None:
        self.id = id
        super().__init__(
            auth=auth,
            headers=headers,
            params=params,
            retry=retry,
            rate_limit=rate_limit,
            request_hooks=request_hooks,
            response_hooks=response_hooks,
            strict_content_type=strict_content_type,
            max_response_bytes=max_response_bytes,
            max_decompression_ratio=max_decompression_ratio,
        )
        transport = _choose_transport(
            transport,
            is_async=False,
            native=native_transport,
            verify=verify,
            max_connections=max_connections,
        )
        self.http = httpx.Client(
            base_url=base_url,
            headers=self._default_headers,
            params=self._params,
            timeout=timeout,
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            transport=transport,
        )
        if self.auth is not None:
            self.auth.bind(self)

    def __repr__(self) -> str:
        return f"Client({redact_url(self.http.base_url)!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        authenticate: bool = True,
        max_response_bytes: int | None = None,
    ) -> httpx.Response:
        """Send a request, with auth, hooks, limits and retries; return the successful answer.

        Args:
            method: ``GET``, ``POST`` ...
            url: Absolute, or relative to the base URL.
            params: Query parameters (added to the client's).
            headers: Headers (added to the client's).
            json: A body to send as JSON.
            data: A form to send.
            content: A raw body.
            timeout: This request's timeout, instead of the client's.
            retry: This request's retry policy (and deadline, ``total_time``), instead of
                the client's.
            authenticate: Apply the client's auth.
            max_response_bytes: This request's largest answer body, instead of the client's.

        Returns:
            The answer, its body read (and decompressed), with a 2xx status (or 3xx when not
            following redirects).

        Raises:
            HttpStatusError: An error status, once retries ran out or when not retried;
                among them :class:`~headwater.errors.AuthError` (401, 403) and
                :class:`~headwater.errors.RateLimitError` (the API asks to wait past the
                deadline or ``max_wait``).
            HttpTransportError: No usable answer (connection, TLS, redirect loop); among
                them :class:`~headwater.errors.HttpTimeoutError` (a timeout, or the
                deadline).
            HttpResponseError: An answer that cannot be used: among them
                :class:`~headwater.errors.ResponseTooLargeError` (over
                ``max_response_bytes`` or ``max_decompression_ratio``), or a
                ``Content-Encoding`` other than gzip or deflate.
        """
        url, params = self._split_query(url, params)
        request = self.http.build_request(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            data=data,
            content=content,
            timeout=timeout if timeout is not None else self.http.timeout,
        )
        return self.send(
            request,
            retry=retry,
            authenticate=authenticate,
            max_response_bytes=max_response_bytes,
        )

    def send(
        self,
        request: httpx.Request,
        *,
        retry: RetryPolicy | None = None,
        authenticate: bool = True,
        max_response_bytes: int | None = None,
    ) -> httpx.Response:
        """Send a built ``httpx.Request`` as :meth:`request` does."""
        return self._send(request, retry or self.retry, authenticate, max_response_bytes)

    def _send(
        self,
        request: httpx.Request,
        policy: RetryPolicy,
        authenticate: bool,
        max_response_bytes: int | None,
        hooks: bool = True,
    ) -> httpx.Response:
        key = self._key(request)
        started = time.monotonic()
        limits = self._limits(policy, max_response_bytes, started)
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if authenticate and self.auth is not None:
                self.auth.apply(request)
            for request_hook in self.request_hooks if hooks else ():
                replaced = request_hook(request)
                if isinstance(replaced, httpx.Request):
                    request = replaced
            register_request(request)  # an answer echoing the request is masked by value
            request.extensions[LIMITS] = limits
            self._acquire(key, request, policy, limits, attempt, started)
            response: httpx.Response | None = None
            error: httpx.RequestError | None = None
            try:
                response = self.http.send(request)
            except httpx.RequestError as exc:
                error = exc
            finally:
                self.limiter.release(key)
            if response is not None:
                self._observe(key, response)
                for response_hook in self.response_hooks if hooks else ():
                    replaced = response_hook(response)
                    if isinstance(replaced, httpx.Response):
                        response = replaced
                status = response.status_code
                if status < 400:
                    return response
                if status == 401 and authenticate and self.auth is not None and not refreshed:
                    refreshed = True
                    if self.auth.refresh(request):
                        attempt -= 1  # the credentials failed, not the request
                        continue
            time.sleep(
                self._wait_or_raise(
                    request, attempt, started, response=response, error=error, retry=policy
                )
            )

    def _acquire(
        self,
        key: str,
        request: httpx.Request,
        policy: RetryPolicy,
        limits: BodyLimits,
        attempt: int,
        started: float,
    ) -> None:
        """Take a request slot and wait for the request's turn, both within its deadline."""
        assert limits.deadline is not None
        if not self.limiter.acquire_slot(key, max(0.0, limits.deadline - time.monotonic())):
            raise self._timeout_error(
                request,
                policy,
                attempt,
                started,
                f"no request slot freed (RateLimit(max_concurrent={self.limiter.max_concurrent}))",
            )
        try:
            wait = self._book(key, request, policy, limits, attempt, started)
            if wait > 0:
                time.sleep(wait)
        except BaseException:
            self.limiter.release(key)
            raise

    def _fetch_token(
        self, url: str, data: Mapping[str, str], headers: Mapping[str, str]
    ) -> httpx.Response:
        """POST to an OAuth2 token endpoint: see :meth:`_Core._token_request`."""
        request = self._token_request(url, data, headers)
        return self._send(request, self.retry, False, None, hooks=False)

    def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``request("POST", url, ...)``."""
        return self.request("POST", url, **kwargs)

    def get_json(self, url: str | httpx.URL, **kwargs: Any) -> Any:
        """``GET`` and decode the JSON answer (see :meth:`decode`)."""
        return self.decode(self.request("GET", url, **kwargs))

    def request_json(self, method: str, url: str | httpx.URL, **kwargs: Any) -> Any:
        """:meth:`request` and decode the JSON answer (see :meth:`decode`)."""
        return self.decode(self.request(method, url, **kwargs))

    def paginate(
        self,
        url: str | httpx.URL,
        paginator: Paginator,
        *,
        params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[list[Any]]:
        """Yield the rows of every page, one list per page, as ``paginator`` walks the pages.

        Args:
            url: The listing's URL.
            paginator: How to find the rows and the next page.
            params: Query parameters of the first request (the paginator adds its own).
            **kwargs: More arguments of :meth:`request` (headers, timeout, retry).

        Raises:
            HttpError: A page failed; the pages before it were yielded.
            PaginationError: The API's signals disagree about whether more pages follow
                (see :mod:`headwater.http.pagination`); the pages before were yielded.
        """
        walk = PageWalk(paginator, str(url), params)
        while (following := walk.request) is not None:
            response = self.request("GET", following.url, params=following.params, **kwargs)
            body = self.decode(response)
            rows = paginator.rows(body, response)
            if rows:
                yield rows
            walk.advance(response, body, rows)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class AsyncClient(_Core):
    """The asyncio flavour of :class:`Client`: the same arguments and methods, awaited.

    Waits (limits, retries) never block the event loop. Use it from async resolvers; the
    hooks and a callable auth may be coroutine functions.
    """

    http: httpx.AsyncClient

    def __init__(
        self,
        base_url: str | httpx.URL = "",
        *,
        auth: Auth | Callable[[httpx.Request], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | Literal[False] | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        request_hooks: Iterable[RequestHook] = (),
        response_hooks: Iterable[ResponseHook] = (),
        max_connections: int = 100,
        follow_redirects: bool = True,
        max_redirects: int = 20,
        verify: bool | str | ssl.SSLContext = True,
        strict_content_type: bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_decompression_ratio: float = DEFAULT_MAX_DECOMPRESSION_RATIO,
        transport: httpx.AsyncBaseTransport | None = None,
        native_transport: bool = True,
        id: str = "default",
    ) -> None:
        self.id = id
        super().__init__(
            auth=auth,
            headers=headers,
            params=params,
            retry=retry,
            rate_limit=rate_limit,
            request_hooks=request_hooks,
            response_hooks=response_hooks,
            strict_content_type=strict_content_type,
            max_response_bytes=max_response_bytes,
            max_decompression_ratio=max_decompression_ratio,
        )
        transport = _choose_transport(
            transport,
            is_async=True,
            native=native_transport,
            verify=verify,
            max_connections=max_connections,
        )
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers=self._default_headers,
            params=self._params,
            timeout=timeout,
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            transport=transport,
        )
        if self.auth is not None:
            self.auth.bind(self)

    def __repr__(self) -> str:
        return f"AsyncClient({redact_url(self.http.base_url)!r})"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        authenticate: bool = True,
        max_response_bytes: int | None = None,
    ) -> httpx.Response:
        """See :meth:`Client.request`."""
        url, params = self._split_query(url, params)
        request = self.http.build_request(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            data=data,
            content=content,
            timeout=timeout if timeout is not None else self.http.timeout,
        )
        return await self.send(
            request,
            retry=retry,
            authenticate=authenticate,
            max_response_bytes=max_response_bytes,
        )

    async def send(
        self,
        request: httpx.Request,
        *,
        retry: RetryPolicy | None = None,
        authenticate: bool = True,
        max_response_bytes: int | None = None,
    ) -> httpx.Response:
        """See :meth:`Client.send`."""
        return await self._send(request, retry or self.retry, authenticate, max_response_bytes)

    async def _send(
        self,
        request: httpx.Request,
        policy: RetryPolicy,
        authenticate: bool,
        max_response_bytes: int | None,
        hooks: bool = True,
    ) -> httpx.Response:
        key = self._key(request)
        started = time.monotonic()
        limits = self._limits(policy, max_response_bytes, started)
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if authenticate and self.auth is not None:
                await self.auth.apply_async(request)
            for request_hook in self.request_hooks if hooks else ():
                replaced = await _maybe_await(request_hook(request))
                if isinstance(replaced, httpx.Request):
                    request = replaced
            register_request(request)  # an answer echoing the request is masked by value
            request.extensions[LIMITS] = limits
            await self._acquire(key, request, policy, limits, attempt, started)
            response: httpx.Response | None = None
            error: httpx.RequestError | None = None
            try:
                response = await self.http.send(request)
            except httpx.RequestError as exc:
                error = exc
            finally:
                self.limiter.release(key)
            if response is not None:
                self._observe(key, response)
                for response_hook in self.response_hooks if hooks else ():
                    replaced = await _maybe_await(response_hook(response))
                    if isinstance(replaced, httpx.Response):
                        response = replaced
                status = response.status_code
                if status < 400:
                    return response
                if status == 401 and authenticate and self.auth is not None and not refreshed:
                    refreshed = True
                    if await self.auth.refresh_async(request):
                        attempt -= 1
                        continue
            await asyncio.sleep(
                self._wait_or_raise(
                    request, attempt, started, response=response, error=error, retry=policy
                )
            )

    async def _acquire(
        self,
        key: str,
        request: httpx.Request,
        policy: RetryPolicy,
        limits: BodyLimits,
        attempt: int,
        started: float,
    ) -> None:
        """See :meth:`Client._acquire`; waits without blocking the event loop."""
        assert limits.deadline is not None
        left = max(0.0, limits.deadline - time.monotonic())
        if not await self.limiter.acquire_slot_async(key, left):
            raise self._timeout_error(
                request,
                policy,
                attempt,
                started,
                f"no request slot freed (RateLimit(max_concurrent={self.limiter.max_concurrent}))",
            )
        try:
            wait = self._book(key, request, policy, limits, attempt, started)
            if wait > 0:
                await asyncio.sleep(wait)
        except BaseException:
            self.limiter.release(key)
            raise

    async def _fetch_token(
        self, url: str, data: Mapping[str, str], headers: Mapping[str, str]
    ) -> httpx.Response:
        """See :meth:`Client._fetch_token`."""
        request = self._token_request(url, data, headers)
        return await self._send(request, self.retry, False, None, hooks=False)

    async def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """``request("POST", url, ...)``."""
        return await self.request("POST", url, **kwargs)

    async def get_json(self, url: str | httpx.URL, **kwargs: Any) -> Any:
        """``GET`` and decode the JSON answer."""
        return self.decode(await self.request("GET", url, **kwargs))

    async def request_json(self, method: str, url: str | httpx.URL, **kwargs: Any) -> Any:
        """:meth:`request` and decode the JSON answer."""
        return self.decode(await self.request(method, url, **kwargs))

    async def paginate(
        self,
        url: str | httpx.URL,
        paginator: Paginator,
        *,
        params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[list[Any]]:
        """See :meth:`Client.paginate`; iterate with ``async for``."""
        walk = PageWalk(paginator, str(url), params)
        while (following := walk.request) is not None:
            response = await self.request("GET", following.url, params=following.params, **kwargs)
            body = self.decode(response)
            rows = paginator.rows(body, response)
            if rows:
                yield rows
            walk.advance(response, body, rows)
