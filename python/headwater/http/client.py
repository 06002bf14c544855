"""HTTP clients for API sources: :class:`Client` (threads) and :class:`AsyncClient` (asyncio).

Both have the same API: a base URL, default headers and query parameters, timeouts and a
connection pool (httpx underneath), an auth, request and response hooks, retries
(:class:`~headwater.http.RetryPolicy`), rate and concurrency limits enforced in Rust
(:class:`~headwater.http.RateLimit`), JSON decoded with orjson, and pagination
(:meth:`Client.paginate`) that yields a page of rows at a time. Every failure ends in a
:class:`~headwater.HttpError` naming the request (secrets redacted), the status and the
attempts made; a resolver that lets it propagate fails its table while the sync goes on.
Both keep their configuration and logic in :class:`~headwater.http.core.ClientCore`; they
differ only in how they wait for I/O.

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

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar

import httpx

from headwater.http.auth import Auth
from headwater.http.core import Attempts, ClientCore, RequestHook, ResponseHook
from headwater.http.pagination import PageWalk, Paginator
from headwater.http.retry import RetryPolicy

__all__ = ["AsyncClient", "Client", "RequestHook", "ResponseHook"]


class Client(ClientCore):
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
    is_async: ClassVar[bool] = False

    def _drive(self, attempts: Attempts) -> httpx.Response:
        """Do the I/O steps of ``attempts`` in this thread; its answer."""
        result: Any = None
        try:
            while True:
                try:
                    step = attempts.send(result)
                except StopIteration as done:
                    answer: httpx.Response = done.value
                    return answer
                result = step.run(self.http)
        finally:
            attempts.close()

    def _bind(self, auth: Auth) -> None:
        auth.bind(self._fetch_token)

    def _fetch_token(
        self, url: str, data: Mapping[str, str], headers: Mapping[str, str]
    ) -> httpx.Response:
        return self._drive(self._token_attempts(url, data, headers))

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
        request = self._build(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            data=data,
            content=content,
            timeout=timeout,
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
        policy = retry or self.retry
        return self._drive(self._attempts(request, policy, authenticate, max_response_bytes))

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
            body, rows = self._rows(paginator, response)
            if rows:
                yield rows
            walk.advance(response, body, rows)


class AsyncClient(ClientCore):
    """The asyncio flavour of :class:`Client`: the same arguments and methods, awaited.

    Waits (limits, retries) never block the event loop. Use it from async resolvers; the
    hooks and a callable auth may be coroutine functions.
    """

    http: httpx.AsyncClient
    is_async: ClassVar[bool] = True

    async def _drive(self, attempts: Attempts) -> httpx.Response:
        """Await the I/O steps of ``attempts``; its answer."""
        result: Any = None
        try:
            while True:
                try:
                    step = attempts.send(result)
                except StopIteration as done:
                    answer: httpx.Response = done.value
                    return answer
                result = await step.arun(self.http)
        finally:
            attempts.close()

    def _bind(self, auth: Auth) -> None:
        auth.bind_async(self._fetch_token)

    async def _fetch_token(
        self, url: str, data: Mapping[str, str], headers: Mapping[str, str]
    ) -> httpx.Response:
        return await self._drive(self._token_attempts(url, data, headers))

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
        request = self._build(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            data=data,
            content=content,
            timeout=timeout,
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
        policy = retry or self.retry
        return await self._drive(self._attempts(request, policy, authenticate, max_response_bytes))

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
            body, rows = self._rows(paginator, response)
            if rows:
                yield rows
            walk.advance(response, body, rows)
