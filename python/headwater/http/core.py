"""What :class:`~headwater.http.Client` and :class:`~headwater.http.AsyncClient` share.

All of it but the waiting. :class:`ClientCore` holds a client's configuration and its logic:
building requests, the attempts of one request (auth, hooks, limits, retries, the refresh of
credentials after a 401), decoding answers, pagination and the errors a failure ends in. The
attempts are a generator (:meth:`ClientCore._attempts`) that does no I/O itself: it yields
each piece of I/O it needs as an :class:`_Io` step (apply the auth, run a hook, take a
request slot, sleep, send) and is sent back the step's result. :mod:`headwater.http.client`
drives it, in a thread (:meth:`_Io.run`) or on an event loop (:meth:`_Io.arun`): the only
places where the two clients differ.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
import ssl
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, ClassVar, Literal

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
from headwater.http.pagination import Paginator
from headwater.http.ratelimit import RateLimit, RateLimiter
from headwater.http.retry import RetryPolicy, parse_retry_after
from headwater.http.transport import (
    DEFAULT_MAX_DECOMPRESSION_RATIO,
    DEFAULT_MAX_RESPONSE_BYTES,
    LIMITS,
    BodyLimits,
    ResponseTooLarge,
    TLSError,
    TotalTimeout,
    choose_transport,
)
from headwater.redaction import (
    is_secret_header,
    is_secret_param,
    redact,
    redact_url,
    register_header_secrets,
    register_query_secrets,
    register_secret,
)

__all__ = ["ClientCore", "RequestHook", "ResponseHook", "register_request_secrets"]

logger = logging.getLogger("headwater.http")

#: ``hook(request)``: runs before each attempt, in declaration order; may return a new request.
RequestHook = Callable[[httpx.Request], Any]
#: ``hook(response)``: runs on each answer, in declaration order, before its status is
#: checked; may return a new response.
ResponseHook = Callable[[httpx.Response], Any]

_EXCERPT = 200
_JSON_TYPES = ("application/json", "text/json")
# A wait for a rate limit at least this long is logged, so an idle sync says why.
_LONG_WAIT = 5.0
# What the transports decode themselves, in bounded steps (see headwater.http.transport).
_ACCEPT_ENCODING = "gzip, deflate"


def register_request_secrets(request: httpx.Request) -> None:
    """Register the secret query parameters and headers ``request`` sends, as transient secrets.

    Called by the clients before each request goes out, so that an answer echoing the request
    (an error body, a debug endpoint) is masked by the values, whatever the names it uses.
    It runs for every request, so it reads httpx's raw forms and decodes only what it keeps.
    """
    url = request.url
    if url.query:
        register_query_secrets(url.query.decode("ascii", errors="replace"))
    if url.userinfo:
        register_secret(url.password, transient=True)
    secret = []
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1")
        if is_secret_header(name):
            secret.append((name, raw_value.decode("latin-1")))
    if secret:
        register_header_secrets(secret)


# -- the I/O steps the attempts yield


class _Io(abc.ABC):
    """One piece of I/O an attempt needs; its result is sent back into the attempt."""

    __slots__ = ()

    @abc.abstractmethod
    def run(self, http: httpx.Client) -> Any:
        """Do it in this thread, blocking."""

    @abc.abstractmethod
    async def arun(self, http: httpx.AsyncClient) -> Any:
        """Do it on the event loop, never blocking it."""


class _ApplyAuth(_Io):
    __slots__ = ("auth", "request")

    def __init__(self, auth: Auth, request: httpx.Request) -> None:
        self.auth = auth
        self.request = request

    def run(self, http: httpx.Client) -> None:
        self.auth.apply(self.request)

    async def arun(self, http: httpx.AsyncClient) -> None:
        await self.auth.apply_async(self.request)


class _RefreshAuth(_Io):
    """The API answered 401: whether the auth renewed its credentials."""

    __slots__ = ("auth", "request")

    def __init__(self, auth: Auth, request: httpx.Request) -> None:
        self.auth = auth
        self.request = request

    def run(self, http: httpx.Client) -> bool:
        return self.auth.refresh(self.request)

    async def arun(self, http: httpx.AsyncClient) -> bool:
        return await self.auth.refresh_async(self.request)


class _Hook(_Io):
    """A request or response hook; async clients accept coroutine functions too."""

    __slots__ = ("hook", "value")

    def __init__(self, hook: Callable[[Any], Any], value: httpx.Request | httpx.Response) -> None:
        self.hook = hook
        self.value = value

    def run(self, http: httpx.Client) -> Any:
        return self.hook(self.value)

    async def arun(self, http: httpx.AsyncClient) -> Any:
        result = self.hook(self.value)
        return await result if inspect.isawaitable(result) else result


class _TakeSlot(_Io):
    """Whether a request slot of ``key`` freed within ``timeout`` seconds (then it is held)."""

    __slots__ = ("key", "limiter", "timeout")

    def __init__(self, limiter: RateLimiter, key: str, timeout: float) -> None:
        self.limiter = limiter
        self.key = key
        self.timeout = timeout

    def run(self, http: httpx.Client) -> bool:
        return self.limiter.acquire_slot(self.key, self.timeout)

    async def arun(self, http: httpx.AsyncClient) -> bool:
        return await self.limiter.acquire_slot_async(self.key, self.timeout)


class _Sleep(_Io):
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, http: httpx.Client) -> None:
        time.sleep(self.seconds)

    async def arun(self, http: httpx.AsyncClient) -> None:
        await asyncio.sleep(self.seconds)


class _Send(_Io):
    """Send through httpx: the answer, or the ``httpx.RequestError`` that came instead."""

    __slots__ = ("request",)

    def __init__(self, request: httpx.Request) -> None:
        self.request = request

    def run(self, http: httpx.Client) -> httpx.Response | httpx.RequestError:
        try:
            return http.send(self.request)
        except httpx.RequestError as exc:
            return exc

    async def arun(self, http: httpx.AsyncClient) -> httpx.Response | httpx.RequestError:
        try:
            return await http.send(self.request)
        except httpx.RequestError as exc:
            return exc


#: The attempts at one request: yields I/O steps, is sent their results, returns the answer.
Attempts = Generator[_Io, Any, httpx.Response]


class ClientCore(abc.ABC):
    """A client's configuration and logic; the two faces only drive its I/O steps.

    See :class:`~headwater.http.Client` for the arguments.
    """

    http: httpx.Client | httpx.AsyncClient
    #: Whether the face awaits its I/O (and so takes httpx's async transports).
    is_async: ClassVar[bool]

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
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        native_transport: bool = True,
        id: str = "default",
    ) -> None:
        self.id = id
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
        chosen = choose_transport(
            transport,
            is_async=self.is_async,
            native=native_transport,
            verify=verify,
            max_connections=max_connections,
        )
        options: dict[str, Any] = {
            "base_url": base_url,
            "headers": self._default_headers,
            "params": self._params,
            "timeout": timeout,
            "follow_redirects": follow_redirects,
            "max_redirects": max_redirects,
            "transport": chosen,
        }
        self.http = httpx.AsyncClient(**options) if self.is_async else httpx.Client(**options)
        if self.auth is not None:
            self._bind(self.auth)

    @abc.abstractmethod
    def _bind(self, auth: Auth) -> None:
        """Give ``auth`` the face's way of fetching tokens."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.http.base_url)!r})"

    def _build(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json: Any,
        data: Mapping[str, Any] | None,
        content: bytes | str | None,
        timeout: float | httpx.Timeout | None,
    ) -> httpx.Request:
        """The request :meth:`Client.request` sends, the client's defaults merged in."""
        url, params = self._split_query(url, params)
        return self.http.build_request(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            data=data,
            content=content,
            timeout=timeout if timeout is not None else self.http.timeout,
        )

    def _attempts(
        self,
        request: httpx.Request,
        policy: RetryPolicy,
        authenticate: bool,
        max_response_bytes: int | None,
        hooks: bool = True,
    ) -> Attempts:
        """Send ``request`` until it succeeds or fails for good; see :meth:`Client.request`.

        A slot taken is given back whatever happens, the face closing this generator on
        an exception of its own (a hook's, a cancellation).
        """
        key = self._key(request)
        started = time.monotonic()
        limits = self._limits(policy, max_response_bytes, started)
        auth = self.auth if authenticate else None
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if auth is not None:
                yield _ApplyAuth(auth, request)
            for request_hook in self.request_hooks if hooks else ():
                replaced = yield _Hook(request_hook, request)
                if isinstance(replaced, httpx.Request):
                    request = replaced
            register_request_secrets(request)  # an answer echoing the request is masked
            request.extensions[LIMITS] = limits
            assert limits.deadline is not None
            left = max(0.0, limits.deadline - time.monotonic())
            if not (yield _TakeSlot(self.limiter, key, left)):
                raise self._timeout_error(
                    request,
                    policy,
                    attempt,
                    started,
                    "no request slot freed "
                    f"(RateLimit(max_concurrent={self.limiter.max_concurrent}))",
                )
            try:
                wait = self._book(key, request, policy, limits, attempt, started)
                if wait > 0:
                    yield _Sleep(wait)
                outcome = yield _Send(request)
            finally:
                self.limiter.release(key)
            response: httpx.Response | None = None
            error: httpx.RequestError | None = None
            if isinstance(outcome, httpx.Response):
                response = outcome
                self._observe(key, response)
                for response_hook in self.response_hooks if hooks else ():
                    replaced = yield _Hook(response_hook, response)
                    if isinstance(replaced, httpx.Response):
                        response = replaced
                status = response.status_code
                if status < 400:
                    return response
                if status == 401 and auth is not None and not refreshed:
                    refreshed = True
                    if (yield _RefreshAuth(auth, request)):
                        attempt -= 1  # the credentials failed, not the request
                        continue
            else:
                error = outcome
            yield _Sleep(
                self._wait_or_raise(
                    request, attempt, started, response=response, error=error, retry=policy
                )
            )

    def _token_attempts(
        self, url: str, data: Mapping[str, str], headers: Mapping[str, str]
    ) -> Attempts:
        """POST to an OAuth2 token endpoint: see :meth:`_token_request`."""
        request = self._token_request(url, data, headers)
        return self._attempts(request, self.retry, False, None, hooks=False)

    def _rows(self, paginator: Paginator, response: httpx.Response) -> tuple[Any, list[Any]]:
        """A page's decoded body and its rows."""
        body = self.decode(response)
        return body, paginator.rows(body, response)

    @staticmethod
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
