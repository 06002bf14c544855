"""Proxies from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

httpx reads these variables only when it builds its own transport, and headwater's clients
always hand it one (to hold answers to their limits), so the clients route each request
themselves: through the proxy its URL's scheme names (or ``ALL_PROXY``), unless ``NO_PROXY``
lists its host, in which case it goes direct. Each proxy gets its own connection pool, made
on first use. The variables are read when a client is made, as httpx does.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import httpx

__all__ = ["AsyncProxyRouter", "ProxyRouter", "environment_proxies"]

_Transport = TypeVar("_Transport")


def environment_proxies() -> dict[str, str]:
    """The proxy variables set in the environment, by lower-case scheme (``no`` included).

    Empty when no proxy is set (``NO_PROXY`` alone routes nothing).
    """
    found = {scheme: url for scheme, url in urllib.request.getproxies().items() if url}
    return found if any(scheme != "no" for scheme in found) else {}


class _Routes(Generic[_Transport]):
    """Which transport a URL goes through: one pool per proxy, made on first use."""

    def __init__(
        self, proxies: Mapping[str, str], make: Callable[[str | None], _Transport]
    ) -> None:
        self._proxies = dict(proxies)
        self._make = make
        self.direct = make(None)
        self.via: dict[str, _Transport] = {}
        self._bypass: dict[str, bool] = {}
        self._lock = threading.Lock()

    def transport(self, url: httpx.URL) -> _Transport:
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if proxy is None or self._bypassed(url):
            return self.direct
        with self._lock:
            transport = self.via.get(proxy)
            if transport is None:
                transport = self.via[proxy] = self._make(proxy)
            return transport

    def _bypassed(self, url: httpx.URL) -> bool:
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        bypassed = self._bypass.get(host)
        if bypassed is None:
            bypassed = bool(urllib.request.proxy_bypass(host, self._proxies))
            self._bypass[host] = bypassed
        return bypassed


class ProxyRouter(httpx.BaseTransport):
    """Sends each request direct or through its proxy (see the module docstring).

    Args:
        proxies: The proxy variables, as :func:`environment_proxies` returns them.
        make: Makes a transport: direct for ``None``, else through the given proxy URL.
    """

    def __init__(
        self, proxies: Mapping[str, str], make: Callable[[str | None], httpx.BaseTransport]
    ) -> None:
        self._routes = _Routes(proxies, make)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its route."""
        return self._routes.transport(request.url).handle_request(request)

    def close(self) -> None:
        """Close every pool the router made."""
        self._routes.direct.close()
        for transport in self._routes.via.values():
            transport.close()


class AsyncProxyRouter(httpx.AsyncBaseTransport):
    """:class:`ProxyRouter` for :class:`~headwater.http.AsyncClient`."""

    def __init__(
        self,
        proxies: Mapping[str, str],
        make: Callable[[str | None], httpx.AsyncBaseTransport],
    ) -> None:
        self._routes = _Routes(proxies, make)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its route."""
        return await self._routes.transport(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        """Close every pool the router made."""
        await self._routes.direct.aclose()
        for transport in self._routes.via.values():
            await transport.aclose()
