"""Paginators: how to get from one page of an API listing to the next.

Give one to :meth:`headwater.http.Client.paginate`, which requests page after page and yields
each page's rows as a list, which a resolver yields on (the engine converts a page at a time):

- :class:`CursorPaginator`: a cursor or token in the body (``{"data": [...], "next": "abc"}``)
  goes into a query parameter of the next request;
- :class:`NextUrlPaginator`: the body holds the next page's URL;
- :class:`LinkHeaderPaginator`: the ``Link: <...>; rel="next"`` header (GitHub's style);
- :class:`OffsetPaginator`: ``offset``/``limit`` parameters;
- :class:`PageNumberPaginator`: a page number parameter.

Every paginator finds the rows at ``items_path`` (dotted keys into the body, e.g.
``"data.items"``; the body itself when ``None``) and stops when there is no next page, and also
at ``max_pages``, at an empty page (``stop_on_empty``), or when ``stop_when(page)`` is true. A
next page that repeats the current one is an error rather than an endless loop.

Example:
    >>> from headwater.http import CursorPaginator
    >>> paginator = CursorPaginator(items_path="data", cursor_path="meta.next_cursor")
    >>> paginator.cursor_param
    'cursor'
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pydantic

from headwater.errors import HttpResponseError
from headwater.http.redaction import redact_url

__all__ = [
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "Paginator",
]

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class PageRequest:
    """The request for one page.

    Attributes:
        url: Absolute, or relative to the client's base URL.
        params: Its query parameters.
    """

    url: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Page:
    """One page as a paginator sees it, to decide on the next.

    Attributes:
        number: 1 for the first page.
        request: What was asked for.
        response: The answer.
        body: The decoded JSON body.
        rows: The rows found at ``items_path``.
    """

    number: int
    request: PageRequest
    response: httpx.Response
    body: Any
    rows: list[Any]


def lookup(body: Any, path: str | None, default: Any = _MISSING) -> Any:
    """The value at dotted ``path`` in ``body`` (``None`` or ``""``: the body itself).

    Returns ``default`` when a key is missing; without one, raises ``KeyError``.
    """
    if not path:
        return body
    value = body
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            if default is _MISSING:
                raise KeyError(part)
            return default
    return value


def _error(response: httpx.Response, message: str) -> HttpResponseError:
    request = response.request
    url = redact_url(request.url)
    return HttpResponseError(
        f"{request.method} {url}: {message}",
        method=request.method,
        url=url,
        status=response.status_code,
    )


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = ", ".join(repr(k) for k in list(value)[:10])
        return f"an object with keys {keys}" if keys else "an empty object"
    return f"a {type(value).__name__}"


class Paginator(pydantic.BaseModel):
    """Base class of paginators: where the rows are, and when to stop.

    Attributes:
        items_path: Dotted path of the rows in the body; ``None``: the body is the list.
        max_pages: Stop after this many pages.
        stop_on_empty: Stop at a page without rows.
        stop_when: ``stop_when(page)``: stop after ``page`` when it returns true.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    items_path: str | None = None
    max_pages: int | None = pydantic.Field(default=None, ge=1)
    stop_on_empty: bool = True
    stop_when: Callable[[Page], bool] | None = None

    def first(self, url: str, params: Mapping[str, Any] | None) -> PageRequest:
        """The request of the first page."""
        return PageRequest(url, dict(params or {}))

    def rows(self, body: Any, response: httpx.Response) -> list[Any]:
        """The rows of a page's body.

        Raises:
            HttpResponseError: ``items_path`` is not in the body, or holds no list.
        """
        try:
            rows = lookup(body, self.items_path)
        except KeyError as missing:
            raise _error(
                response,
                f"the body has no {self.items_path!r} (no key {missing}); it is {_describe(body)}",
            ) from None
        if rows is None:
            return []
        if not isinstance(rows, list):
            where = f"at {self.items_path!r}" if self.items_path else "as its body"
            hint = "" if self.items_path else "; set items_path to where the rows are"
            raise _error(response, f"expected a list of rows {where}, got {_describe(rows)}{hint}")
        return rows

    def next(self, page: Page) -> PageRequest | None:
        """The request of the page after ``page``, or ``None`` to stop."""
        if self.max_pages is not None and page.number >= self.max_pages:
            return None
        if self.stop_on_empty and not page.rows:
            return None
        if self.stop_when is not None and self.stop_when(page):
            return None
        following = self.next_request(page)
        if following is not None and following == page.request:
            raise _error(
                page.response,
                f"page {page.number} points to itself as the next page "
                f"({type(self).__name__}); stopping instead of looping",
            )
        return following

    @abc.abstractmethod
    def next_request(self, page: Page) -> PageRequest | None:
        """The next page's request by this paginator's own rule; ``None`` at the end."""


class CursorPaginator(Paginator):
    """A cursor (or page token) in the body is sent back as a query parameter.

    Stops when the cursor is missing, null or empty, or when ``has_more_path`` is given and
    false.

    Attributes:
        cursor_path: Dotted path of the next cursor in the body.
        cursor_param: The query parameter to send it in.
        has_more_path: Dotted path of a "more pages" flag, if the API has one.
    """

    cursor_path: str = "next_cursor"
    cursor_param: str = "cursor"
    has_more_path: str | None = None

    def next_request(self, page: Page) -> PageRequest | None:
        """Send the body's cursor as ``cursor_param``."""
        if self.has_more_path is not None and not lookup(page.body, self.has_more_path, False):
            return None
        cursor = lookup(page.body, self.cursor_path, None)
        if cursor is None or cursor == "" or cursor is False:
            return None
        if not isinstance(cursor, (str, int)):
            raise _error(
                page.response,
                f"the cursor at {self.cursor_path!r} is {_describe(cursor)}, not a str or int",
            )
        return PageRequest(page.request.url, {**page.request.params, self.cursor_param: cursor})


class NextUrlPaginator(Paginator):
    """The body holds the URL of the next page (absolute, or relative to the current one).

    Attributes:
        next_path: Dotted path of the next URL in the body.
    """

    next_path: str = "next"

    def next_request(self, page: Page) -> PageRequest | None:
        """Follow the body's next URL (its query string replaces the parameters)."""
        following = lookup(page.body, self.next_path, None)
        if not following:
            return None
        if not isinstance(following, str):
            raise _error(
                page.response,
                f"the next URL at {self.next_path!r} is {_describe(following)}, not a str",
            )
        return PageRequest(str(page.response.url.join(following)), {})


class LinkHeaderPaginator(Paginator):
    """The ``Link`` header names the next page (``<https://...>; rel="next"``).

    Attributes:
        rel: The relation of the next page's link.
    """

    rel: str = "next"

    def next_request(self, page: Page) -> PageRequest | None:
        """Follow the ``Link`` header's ``rel`` link."""
        link = page.response.links.get(self.rel, {}).get("url")
        if not link:
            return None
        return PageRequest(str(page.response.url.join(link)), {})


class OffsetPaginator(Paginator):
    """``offset``/``limit`` parameters: the next page starts where this one ended.

    Stops at a page shorter than ``limit``, or at ``total`` rows when ``total_path`` says
    how many there are.

    Attributes:
        limit: Rows per page.
        offset_param: The offset's query parameter.
        limit_param: The page size's query parameter.
        start: The first offset.
        total_path: Dotted path of the total row count in the body, if the API sends one.
    """

    limit: int = pydantic.Field(default=100, ge=1)
    offset_param: str = "offset"
    limit_param: str = "limit"
    start: int = pydantic.Field(default=0, ge=0)
    total_path: str | None = None

    def first(self, url: str, params: Mapping[str, Any] | None) -> PageRequest:
        """Ask for ``limit`` rows from ``start``."""
        return PageRequest(
            url, {**(params or {}), self.offset_param: self.start, self.limit_param: self.limit}
        )

    def next_request(self, page: Page) -> PageRequest | None:
        """Move the offset past this page."""
        if len(page.rows) < self.limit:
            return None
        offset = int(page.request.params.get(self.offset_param, self.start)) + len(page.rows)
        if self.total_path is not None:
            total = lookup(page.body, self.total_path, None)
            if isinstance(total, int) and offset >= total:
                return None
        return PageRequest(page.request.url, {**page.request.params, self.offset_param: offset})


class PageNumberPaginator(Paginator):
    """A page number parameter, counting from ``start``.

    Stops at an empty page, at a page shorter than ``page_size`` (when given), or after the
    last page when ``total_pages_path`` says how many there are.

    Attributes:
        page_param: The page number's query parameter.
        start: The first page's number.
        page_size: Rows per page, sent as ``size_param`` when given.
        size_param: The page size's query parameter.
        total_pages_path: Dotted path of the number of pages in the body, if the API sends it.
    """

    page_param: str = "page"
    start: int = 1
    page_size: int | None = pydantic.Field(default=None, ge=1)
    size_param: str = "per_page"
    total_pages_path: str | None = None

    def first(self, url: str, params: Mapping[str, Any] | None) -> PageRequest:
        """Ask for page ``start``."""
        first = {**(params or {}), self.page_param: self.start}
        if self.page_size is not None:
            first[self.size_param] = self.page_size
        return PageRequest(url, first)

    def next_request(self, page: Page) -> PageRequest | None:
        """Ask for the following page number."""
        if self.page_size is not None and len(page.rows) < self.page_size:
            return None
        number = int(page.request.params.get(self.page_param, self.start))
        if self.total_pages_path is not None:
            total = lookup(page.body, self.total_pages_path, None)
            if isinstance(total, int) and number - self.start + 1 >= total:
                return None
        return PageRequest(page.request.url, {**page.request.params, self.page_param: number + 1})
