"""Authentication for :mod:`headwater.http` clients.

An auth adds credentials to every request a client sends: :class:`ApiKeyAuth` (a header or a
query parameter), :class:`BearerAuth`, :class:`BasicAuth`, :class:`OAuth2ClientCredentials`
and :class:`OAuth2RefreshToken` (tokens fetched from the token endpoint, refreshed shortly
before they expire and once when the API answers 401), or any callable taking the
``httpx.Request`` (:class:`CallableAuth`). Every secret an auth holds or obtains is
registered with :func:`headwater.redaction.register_secret`, so it never shows in logs,
errors or cassettes.

Example:
    >>> from headwater.http import ApiKeyAuth, Client
    >>> client = Client("https://api.example.com", auth=ApiKeyAuth("k3y-value", param="api_key"))
    >>> client.close()
"""

from __future__ import annotations

import abc
import asyncio
import base64
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from headwater.errors import AuthError, HttpError
from headwater.redaction import redact, redact_url, register_secret

__all__ = [
    "ApiKeyAuth",
    "AsyncTokenFetch",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "CallableAuth",
    "OAuth2ClientCredentials",
    "OAuth2RefreshToken",
    "Token",
    "TokenFetch",
]

Secret = str | SecretStr

#: ``fetch(url, form, headers)``: POSTs ``form`` to the token endpoint at ``url`` through a
#: :class:`~headwater.http.Client` (its transport, retries, time and size limits, but none of
#: its default headers, query parameters or hooks) and returns the successful answer.
TokenFetch = Callable[[str, Mapping[str, str], Mapping[str, str]], httpx.Response]
#: :data:`TokenFetch` through an :class:`~headwater.http.AsyncClient`.
AsyncTokenFetch = Callable[[str, Mapping[str, str], Mapping[str, str]], Awaitable[httpx.Response]]


def _reveal(secret: Secret | None) -> str | None:
    if secret is None:
        return None
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


class Auth:
    """Base class of authentications: override :meth:`apply` (and :meth:`refresh`)."""

    def apply(self, request: httpx.Request) -> None:
        """Add credentials to ``request`` (in place), before each attempt is sent."""

    async def apply_async(self, request: httpx.Request) -> None:
        """:meth:`apply` for an :class:`~headwater.http.AsyncClient`; by default the same."""
        self.apply(request)

    def refresh(self, request: httpx.Request) -> bool:
        """The API answered 401 to ``request``: renew the credentials if possible.

        Returns:
            Whether the request should be sent once more with new credentials.
        """
        return False

    async def refresh_async(self, request: httpx.Request) -> bool:
        """:meth:`refresh` for an :class:`~headwater.http.AsyncClient`."""
        return self.refresh(request)

    def bind(self, fetch: TokenFetch) -> None:
        """Take the token fetching of the :class:`~headwater.http.Client` given this auth.

        Called by the client; OAuth2 fetches its tokens with ``fetch``.
        """

    def bind_async(self, fetch: AsyncTokenFetch) -> None:
        """:meth:`bind`, called by an :class:`~headwater.http.AsyncClient`."""


class ApiKeyAuth(Auth):
    """An API key in a header (default ``X-API-Key``) or a query parameter.

    Args:
        key: The API key.
        header: The header to send it in.
        param: The query parameter to send it in instead of a header.
        prefix: Text before the key in the header, e.g. ``"Token "``.
    """

    def __init__(
        self, key: Secret, *, header: str = "X-API-Key", param: str | None = None, prefix: str = ""
    ) -> None:
        self._key = _reveal(key) or ""
        self.header = header
        self.param = param
        self.prefix = prefix
        register_secret(self._key, param=param, header=None if param else header)

    def __repr__(self) -> str:
        where = f"param={self.param!r}" if self.param else f"header={self.header!r}"
        return f"ApiKeyAuth(***, {where})"

    def apply(self, request: httpx.Request) -> None:
        """Set the header, or add the query parameter."""
        if self.param:
            request.url = request.url.copy_set_param(self.param, self._key)
        else:
            request.headers[self.header] = self.prefix + self._key


class BearerAuth(Auth):
    """``Authorization: Bearer <token>``."""

    def __init__(self, token: Secret) -> None:
        self._token = _reveal(token) or ""
        register_secret(self._token)

    def __repr__(self) -> str:
        return "BearerAuth(***)"

    def apply(self, request: httpx.Request) -> None:
        """Set the ``Authorization`` header."""
        request.headers["Authorization"] = f"Bearer {self._token}"


class BasicAuth(Auth):
    """HTTP basic authentication: ``Authorization: Basic base64(user:password)``."""

    def __init__(self, username: str, password: Secret) -> None:
        self.username = username
        self._password = _reveal(password) or ""
        self._header = "Basic " + base64.b64encode(f"{username}:{self._password}".encode()).decode(
            "ascii"
        )
        register_secret(self._password)
        register_secret(self._header.removeprefix("Basic "))

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, ***)"

    def apply(self, request: httpx.Request) -> None:
        """Set the ``Authorization`` header."""
        request.headers["Authorization"] = self._header


class CallableAuth(Auth):
    """Any callable as an auth: ``function(request)`` modifies the request or returns a new one.

    The returned request's headers and URL replace the original's.
    """

    def __init__(self, function: Callable[[httpx.Request], httpx.Request | None]) -> None:
        self.function = function

    def __repr__(self) -> str:
        return f"CallableAuth({getattr(self.function, '__qualname__', 'function')})"

    def apply(self, request: httpx.Request) -> None:
        """Call the function, and take over what it returned."""
        result = self.function(request)
        if isinstance(result, httpx.Request) and result is not request:
            request.url = result.url
            request.headers = result.headers


@dataclasses.dataclass
class Token:
    """An OAuth2 access token and when it expires.

    Attributes:
        access_token: The token.
        expires_at: When it expires, on the auth's clock; ``None`` if the server did not say.
        refresh_token: The refresh token that came with it, if any.
        token_type: Usually ``Bearer``.
        generation: Counts tokens fetched, so that concurrent 401s refresh only once.
    """

    access_token: str
    expires_at: float | None
    refresh_token: str | None = None
    token_type: str = "Bearer"
    generation: int = 0

    def __repr__(self) -> str:
        return f"Token(***, expires_at={self.expires_at}, generation={self.generation})"


class _OAuth2(Auth, abc.ABC):
    """What both grants share: fetching, caching and refreshing the token."""

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str | None,
        client_secret: Secret | None,
        scope: str | None,
        extra: Mapping[str, str] | None,
        client_auth: str,
        refresh_margin: float,
        clock: Callable[[], float],
    ) -> None:
        if client_auth not in ("body", "basic"):
            raise ValueError(f"client_auth must be 'body' or 'basic', not {client_auth!r}")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = _reveal(client_secret)
        self.scope = scope
        self.extra = dict(extra or {})
        self.client_auth = client_auth
        self.refresh_margin = refresh_margin
        self.clock = clock
        self.token: Token | None = None
        self.fetches = 0
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self._fetch_with: TokenFetch | None = None
        self._afetch_with: AsyncTokenFetch | None = None
        register_secret(self._client_secret)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({redact_url(self.token_url)!r}, client_id={self.client_id!r})"
        )

    def bind(self, fetch: TokenFetch) -> None:
        """Fetch tokens with ``fetch``: through the client's transport, retries and limits.

        Token requests carry none of the client's default headers, query parameters or
        hooks, which are meant for the API, not for the token endpoint.
        """
        self._fetch_with = fetch

    def bind_async(self, fetch: AsyncTokenFetch) -> None:
        """:meth:`bind` for an :class:`~headwater.http.AsyncClient`."""
        self._afetch_with = fetch

    @abc.abstractmethod
    def _grant(self) -> dict[str, str]:
        """The grant's own form fields (``grant_type`` and what it needs)."""

    def _form(self) -> tuple[dict[str, str], dict[str, str]]:
        form = self._grant()
        if self.scope:
            form["scope"] = self.scope
        form.update(self.extra)
        headers = {"Accept": "application/json"}
        if self.client_id is not None:
            if self.client_auth == "basic":
                pair = f"{self.client_id}:{self._client_secret or ''}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
                register_secret(headers["Authorization"].removeprefix("Basic "))
            else:
                form["client_id"] = self.client_id
                if self._client_secret is not None:
                    form["client_secret"] = self._client_secret
        return form, headers

    def _fresh(self, token: Token | None) -> bool:
        if token is None:
            return False
        if token.expires_at is None:
            return True
        return self.clock() < token.expires_at - self.refresh_margin

    def _take(self, response: httpx.Response, requested_at: float) -> Token:
        where = f"POST {redact_url(self.token_url)}"
        try:
            body = response.json()
        except ValueError:
            raise AuthError(
                f"{where}: the OAuth2 token endpoint answered HTTP {response.status_code} "
                f"with a body that is not JSON: {redact(response.text[:200])!r}",
                method="POST",
                url=redact_url(self.token_url),
                status=response.status_code,
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            keys = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise AuthError(
                f"{where}: the OAuth2 token response has no access_token (it has {keys})",
                method="POST",
                url=redact_url(self.token_url),
                status=response.status_code,
            )
        register_secret(body["access_token"])
        refresh_token = body.get("refresh_token")
        if isinstance(refresh_token, str):
            register_secret(refresh_token)
            self._rotated(refresh_token)
        expires_in = body.get("expires_in")
        expires_at = None
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
            expires_at = requested_at + float(expires_in)
        self.fetches += 1
        self.token = Token(
            body["access_token"],
            expires_at,
            refresh_token if isinstance(refresh_token, str) else None,
            str(body.get("token_type") or "Bearer"),
            self.fetches,
        )
        return self.token

    def _rotated(self, refresh_token: str) -> None:
        """A new refresh token came with the access token."""

    def _failed(self, error: HttpError) -> AuthError:
        return AuthError(
            f"could not get an OAuth2 token: {error}",
            method="POST",
            url=redact_url(self.token_url),
            status=error.status,
            attempts=error.attempts,
        )

    def _header(self, request: httpx.Request, token: Token) -> None:
        kind = "Bearer" if token.token_type.lower() == "bearer" else token.token_type
        request.headers["Authorization"] = f"{kind} {token.access_token}"
        request.extensions["headwater_token_generation"] = token.generation

    # -- sync
    def _fetch(self) -> Token:
        if self._fetch_with is None:
            raise RuntimeError(f"{self!r} is not bound to a client: pass it as Client(auth=...)")
        form, headers = self._form()
        requested_at = self.clock()
        try:
            response = self._fetch_with(self.token_url, form, headers)
        except HttpError as exc:
            raise self._failed(exc) from None
        return self._take(response, requested_at)

    def apply(self, request: httpx.Request) -> None:
        """Send the current token, fetching a new one when it is missing or about to expire."""
        token = self.token
        if not self._fresh(token):
            with self._lock:
                token = self.token
                if not self._fresh(token):
                    token = self._fetch()
        assert token is not None
        self._header(request, token)

    def refresh(self, request: httpx.Request) -> bool:
        """After a 401: fetch a new token, unless another request already did."""
        used = request.extensions.get("headwater_token_generation")
        with self._lock:
            if self.token is not None and self.token.generation == used:
                self.token = None
                self._fetch()
        return True

    # -- async
    async def _fetch_async(self) -> Token:
        if self._afetch_with is None:
            raise RuntimeError(
                f"{self!r} is not bound to an async client: pass it as AsyncClient(auth=...)"
            )
        form, headers = self._form()
        requested_at = self.clock()
        try:
            response = await self._afetch_with(self.token_url, form, headers)
        except HttpError as exc:
            raise self._failed(exc) from None
        return self._take(response, requested_at)

    def _get_async_lock(self) -> asyncio.Lock:
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        return self._async_lock

    async def apply_async(self, request: httpx.Request) -> None:
        """:meth:`apply` without blocking the event loop."""
        token = self.token
        if not self._fresh(token):
            async with self._get_async_lock():
                token = self.token
                if not self._fresh(token):
                    token = await self._fetch_async()
        assert token is not None
        self._header(request, token)

    async def refresh_async(self, request: httpx.Request) -> bool:
        """:meth:`refresh` without blocking the event loop."""
        used = request.extensions.get("headwater_token_generation")
        async with self._get_async_lock():
            if self.token is not None and self.token.generation == used:
                self.token = None
                await self._fetch_async()
        return True


class OAuth2ClientCredentials(_OAuth2):
    """OAuth2 client credentials grant: a token for the client itself.

    The token is fetched on the first request, fetched again ``refresh_margin`` seconds
    before it expires, and once more when the API answers 401 (then the request is sent
    again, once).

    Args:
        token_url: The token endpoint.
        client_id: The client id.
        client_secret: The client secret.
        scope: Space-separated scopes to ask for.
        extra: More form fields of the token request (``audience``, ``resource`` ...).
        client_auth: ``body``: id and secret in the form; ``basic``: in a basic
            ``Authorization`` header.
        refresh_margin: Seconds before expiry at which a new token is fetched.
        clock: Monotonic clock, in seconds (for tests).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        *,
        scope: str | None = None,
        extra: Mapping[str, str] | None = None,
        client_auth: str = "body",
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            token_url,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            extra=extra,
            client_auth=client_auth,
            refresh_margin=refresh_margin,
            clock=clock,
        )

    def _grant(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}


class OAuth2RefreshToken(_OAuth2):
    """OAuth2 refresh token grant: a user's long-lived refresh token buys access tokens.

    Refreshes as :class:`OAuth2ClientCredentials` does. When the server rotates the refresh
    token, the new one is used from then on and ``on_rotate(new_refresh_token)`` is called, so
    you can store it.

    Args:
        token_url: The token endpoint.
        refresh_token: The refresh token.
        client_id: The client id, if the server wants one.
        client_secret: The client secret, if the server wants one.
        access_token: A current access token to start with (optional).
        expires_at: When ``access_token`` expires, on ``clock``.
        scope: Space-separated scopes to ask for.
        extra: More form fields of the token request.
        client_auth: ``body`` or ``basic``, as for :class:`OAuth2ClientCredentials`.
        refresh_margin: Seconds before expiry at which a new token is fetched.
        on_rotate: Called with a new refresh token the server issued.
        clock: Monotonic clock, in seconds (for tests).
    """

    def __init__(
        self,
        token_url: str,
        refresh_token: Secret,
        *,
        client_id: str | None = None,
        client_secret: Secret | None = None,
        access_token: Secret | None = None,
        expires_at: float | None = None,
        scope: str | None = None,
        extra: Mapping[str, str] | None = None,
        client_auth: str = "body",
        refresh_margin: float = 30.0,
        on_rotate: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            token_url,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            extra=extra,
            client_auth=client_auth,
            refresh_margin=refresh_margin,
            clock=clock,
        )
        self._refresh_token = _reveal(refresh_token) or ""
        self.on_rotate = on_rotate
        register_secret(self._refresh_token)
        current = _reveal(access_token)
        if current:
            register_secret(current)
            self.token = Token(current, expires_at, self._refresh_token)

    def _grant(self) -> dict[str, str]:
        return {"grant_type": "refresh_token", "refresh_token": self._refresh_token}

    def _rotated(self, refresh_token: str) -> None:
        if refresh_token != self._refresh_token:
            self._refresh_token = refresh_token
            if self.on_rotate is not None:
                self.on_rotate(refresh_token)
