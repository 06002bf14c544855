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
    HttpTransportError,
)
from headwater.http.auth import Auth, CallableAuth
from headwater.http.pagination import PageWalk, Paginator
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
    AsyncNativeTransport,
    NativeTransport,
    TLSError,
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


class _Core:
    """Configuration and the steps both clients share; the sending loop is theirs."""

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
    ) -> None:
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
            **(headers or {}),
        }
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
            if attempt >= retry.attempts:
                reason = ""
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
        raise _final_error(request, attempt, started, response, error, reason, retryable)


def _retryable(error: httpx.RequestError) -> bool:
    if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return False
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
) -> HttpError:
    url = redact_url(request.url)
    elapsed = time.monotonic() - started
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.2f} s"
    if not retryable:
        tries = f"{tries} (not retried)" if attempts > 1 else "(not retried)"
    if response is not None:
        body = _excerpt(response)
        kind = AuthError if response.status_code == 401 else HttpStatusError
        return kind(
            f"{request.method} {url}: {_status_text(response)} {tries}{reason}"
            + (f": {body}" if body else ""),
            method=request.method,
            url=url,
            status=response.status_code,
            attempts=attempts,
        )
    return HttpTransportError(
        f"{request.method} {url}: {_error_text(error)} {tries}{reason}",
        method=request.method,
        url=url,
        attempts=attempts,
    )


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
    ``native_transport``), else httpx's; wrapped by a cassette when one is recording or
    replaying.
    """
    if transport is None:
        if native and not isinstance(verify, ssl.SSLContext) and native_supported(verify):
            rust = AsyncNativeTransport if is_async else NativeTransport
            transport = rust(verify, max_connections)
        else:
            pooled = httpx.AsyncHTTPTransport if is_async else httpx.HTTPTransport
            transport = pooled(limits=_pool(max_connections), verify=_context(verify))
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
        timeout: Seconds (or an ``httpx.Timeout``) for connecting, reading and writing.
        retry: The retry policy; ``False`` never retries; default :class:`RetryPolicy()`.
        rate_limit: A :class:`RateLimit` for this client, or a :class:`RateLimiter` shared
            with other clients. Without one the API's ``X-RateLimit-*`` headers still apply.
        request_hooks: Run on each attempt's request, in order (after auth).
        response_hooks: Run on each answer, in order, before its status is checked.
        max_connections: Size of the connection pool.
        follow_redirects: Follow redirects (at most ``max_redirects``).
        max_redirects: Redirects followed before a request fails.
        verify: Verify TLS certificates (or a CA bundle path, or an ``ssl.SSLContext``).
        strict_content_type: Refuse to decode answers whose content type is not JSON.
        transport: An httpx transport to send through (tests, proxies).
        native_transport: Without ``transport``: do the network I/O in Rust with the GIL
            released (:class:`~headwater.http.transport.NativeTransport`), which is what
            lets many threads wait on an API at once; ``False``: httpx's own transport.
            ``verify`` given as an ``ssl.SSLContext``, proxies set in the environment, or
            ``SSL_CERT_DIR`` without ``SSL_CERT_FILE`` always use httpx's.
        id: Names the client in sync messages, logs and incremental state keys, when a
            plugin's ``connect`` returns the client itself.
    """

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
            retry: This request's retry policy, instead of the client's.
            authenticate: Apply the client's auth (``False`` for OAuth2 token requests).

        Returns:
            The answer, its body read, with a 2xx status (or 3xx when not following
            redirects).

        Raises:
            HttpStatusError: An error status, once retries ran out or when not retried.
            HttpTransportError: No usable answer (connection, timeout, TLS, redirect loop).
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
        return self.send(request, retry=retry, authenticate=authenticate)

    def send(
        self, request: httpx.Request, *, retry: RetryPolicy | None = None, authenticate: bool = True
    ) -> httpx.Response:
        """Send a built ``httpx.Request`` as :meth:`request` does."""
        policy = retry or self.retry
        key = self._key(request)
        started = time.monotonic()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if authenticate and self.auth is not None:
                self.auth.apply(request)
            for request_hook in self.request_hooks:
                replaced = request_hook(request)
                if isinstance(replaced, httpx.Request):
                    request = replaced
            register_request(request)  # an answer echoing the request is masked by value
            self.limiter.acquire(key)
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
                for response_hook in self.response_hooks:
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
        return await self.send(request, retry=retry, authenticate=authenticate)

    async def send(
        self, request: httpx.Request, *, retry: RetryPolicy | None = None, authenticate: bool = True
    ) -> httpx.Response:
        """See :meth:`Client.send`."""
        policy = retry or self.retry
        key = self._key(request)
        started = time.monotonic()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if authenticate and self.auth is not None:
                await self.auth.apply_async(request)
            for request_hook in self.request_hooks:
                replaced = await _maybe_await(request_hook(request))
                if isinstance(replaced, httpx.Request):
                    request = replaced
            register_request(request)  # an answer echoing the request is masked by value
            await self.limiter.acquire_async(key)
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
                for response_hook in self.response_hooks:
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
