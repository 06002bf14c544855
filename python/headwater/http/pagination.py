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
at ``max_pages``, at an empty page (``stop_on_empty``), or when ``stop_when(page)`` is true.

When the API says how much there is (a row total at ``total_path``, a page count at
``PageNumberPaginator.total_pages_path``, a "more" flag at ``CursorPaginator.has_more_path``,
a ``rel="last"`` link), that claim decides where the listing ends: a short page before the
total does not end it (APIs cap page sizes and filter rows after paging). When the signals
disagree (an empty page, or no next cursor or link, while the API says more follow; two
claims that contradict each other; a next page that repeats an earlier one), the listing
fails with a :class:`~headwater.errors.PaginationError` naming the request, the page and
both signals, rather than stop early and lose rows, or guess.

Example:
    >>> from headwater.http import CursorPaginator
    >>> paginator = CursorPaginator(items_path="data", cursor_path="meta.next_cursor")
    >>> paginator.cursor_param
    'cursor'
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import hashlib
import inspect
import re
import textwrap
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
import pydantic
from pydantic._internal._model_construction import ModelMetaclass

from headwater.errors import HttpResponseError, PaginationError
from headwater.redaction import redact_url

__all__ = [
    "Claim",
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "PageWalk",
    "Paginator",
]

_MISSING = object()
_E = TypeVar("_E", bound=HttpResponseError)


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
        rows_so_far: How many rows this page and the pages before it held.
    """

    number: int
    request: PageRequest
    response: httpx.Response
    body: Any
    rows: list[Any]
    rows_so_far: int


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
    return _error_of(HttpResponseError, response, message)


def _error_of(kind: type[_E], response: httpx.Response, message: str) -> _E:
    request = response.request
    url = redact_url(request.url)
    return kind(
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


def _whole_number(page: Page, path: str) -> int | None:
    """The count at ``path`` in the page's body; ``None`` when the body does not say."""
    value = lookup(page.body, path, None)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
        return int(value)  # some APIs send counts as strings
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    shown = repr(value) if isinstance(value, (int, float, str)) else _describe(value)
    raise _error_of(
        PaginationError, page.response, f"the count at {path!r} is {shown}, not a whole number"
    )


@dataclasses.dataclass(frozen=True)
class Claim:
    """What an API says about the pages after one.

    Attributes:
        more: Whether more pages follow.
        says: The claim in words, naming where it is (``"the row total at 'meta.total' is
            50, 30 rows read so far"``), for error messages.
    """

    more: bool
    says: str


# What pydantic adds to a model class; help() and dir() of a paginator class leave it out.
_MACHINERY = (frozenset(dir(pydantic.BaseModel)) | frozenset(vars(pydantic.BaseModel))) - {
    "__class__",
    "__doc__",
    "__module__",
} | {
    "__abstractmethods__",
    "__annotations__",
    "__class_vars__",
    "__dict__",
    "__private_attributes__",
    "__signature__",
    "__weakref__",
}


class _Documented(ModelMetaclass):
    """The metaclass of paginators: pydantic's, keeping its machinery out of ``help()``.

    ``help(CursorPaginator)`` then shows the class's description, its fields and the
    paginator methods, not the 40-odd attributes and methods every pydantic model has
    (they all still work: ``model_dump``, ``model_copy`` ...).
    """

    def __dir__(cls) -> list[str]:
        return [
            name
            for name in super().__dir__()
            if name not in _MACHINERY and not name.startswith("__pydantic")
        ]


def _shown(annotation: Any) -> str:
    """A field's type as a user writes it."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    text = inspect.formatannotation(annotation)
    return re.sub(r"\b(?:collections\.abc|typing|headwater\.http\.pagination)\.", "", text)


def _document(cls: type[pydantic.BaseModel]) -> None:
    """Append the fields (type, default, meaning) to the class's docstring, for ``help()``.

    The meaning of each field is written once, as the docstring under it in the class body.
    """
    lines = [inspect.cleandoc(cls.__dict__.get("__doc__") or "")]
    own = [name for name in cls.model_fields if name in inspect.get_annotations(cls)]
    groups = [("Fields (keyword arguments)", own)]
    shared = [name for name in cls.model_fields if name not in own]
    if shared:
        groups.append(("Fields of every paginator", shared))
    for title, names in groups:
        if not names:
            continue
        lines.append(f"\n{title}:")
        for name in names:
            field = cls.model_fields[name]
            default = "" if field.is_required() else f" = {field.default!r}"
            lines.append(f"    {name}: {_shown(field.annotation)}{default}")
            lines.extend(
                textwrap.wrap(
                    field.description or "",
                    width=92,
                    initial_indent=" " * 8,
                    subsequent_indent=" " * 8,
                )
            )
    cls.__doc__ = "\n".join(lines).strip() + "\n"
    # pydantic's signature spells constraints out (Annotated[int | None, Ge(ge=1)]).
    signature = inspect.signature(cls)
    cls.__signature__ = signature.replace(
        parameters=[
            parameter.replace(annotation=_plain(parameter.annotation))
            for parameter in signature.parameters.values()
        ]
    )


def _plain(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


class Paginator(pydantic.BaseModel, metaclass=_Documented):
    """Base class of paginators: where the rows are, and when to stop.

    Subclass it for an API none of the paginators here fits: declare fields as for any
    pydantic model (with a docstring under each), and implement :meth:`next_request` (and
    :meth:`first`, :meth:`claims` or :meth:`why_last` where needed).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    items_path: str | None = None
    """Dotted path of the rows in the body (``"data.items"``); ``None``: the body is the list."""
    max_pages: int | None = pydantic.Field(default=None, ge=1)
    """Stop after this many pages, whatever the API says."""
    stop_on_empty: bool = True
    """Stop at a page without rows. An empty page while the API says more follow is an error
    then; set ``False`` for APIs that send empty pages mid-listing."""
    stop_when: Callable[[Page], bool] | None = None
    """``stop_when(page)``: stop after ``page`` when it returns true."""
    total_path: str | None = None
    """Dotted path of the total number of rows in the body, if the API sends it: the listing
    ends once that many rows are read, and not before."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _document(cls)

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

    def claims(self, page: Page) -> list[Claim]:
        """What ``page`` says about the pages after it: row totals, page counts, flags.

        Subclasses add the signals of their own kind of API to the base's row total.

        Raises:
            PaginationError: A count is there but is not a whole number.
        """
        if self.total_path is None:
            return []
        total = _whole_number(page, self.total_path)
        if total is None:
            return []
        read = self.rows_read(page)
        says = f"the row total at {self.total_path!r} is {total}, {read} rows read so far"
        return [Claim(read < total, says)]

    def rows_read(self, page: Page) -> int:
        """How many of the listing's rows lie up to the end of ``page``."""
        return page.rows_so_far

    def more(self, page: Page) -> bool | None:
        """Whether the API says more pages follow ``page``; ``None`` when it does not say.

        Raises:
            PaginationError: The API's claims contradict each other.
        """
        claims = self.claims(page)
        if not claims:
            return None
        first = claims[0]
        for other in claims[1:]:
            if other.more != first.more:
                yes, no = (first, other) if first.more else (other, first)
                raise self._disagree(page, no.says, yes.says)
        return first.more

    def next(self, page: Page) -> PageRequest | None:
        """The request of the page after ``page``, or ``None`` to stop.

        Raises:
            PaginationError: The listing would end while the API says more follow, or the
                API's signals contradict each other.
        """
        if self.max_pages is not None and page.number >= self.max_pages:
            return None  # the caller's own limit, whatever the API says
        more = self.more(page)
        if self.stop_on_empty and not page.rows:
            if more:
                raise self._disagree(
                    page,
                    "it has no rows",
                    self._more_says(page),
                    "set stop_on_empty=False if this API sends empty pages before its last",
                )
            return None
        if self.stop_when is not None and self.stop_when(page):
            return None
        following = self.next_request(page)
        if following is None and more:
            raise self._disagree(page, self.why_last(page), self._more_says(page))
        return following

    @abc.abstractmethod
    def next_request(self, page: Page) -> PageRequest | None:
        """The next page's request by this paginator's own rule; ``None`` at the end."""

    def why_last(self, page: Page) -> str:
        """Why :meth:`next_request` found no page after ``page``, for error messages."""
        return f"{type(self).__name__} finds no page after page {page.number}"

    def _more_says(self, page: Page) -> str:
        return next(claim.says for claim in self.claims(page) if claim.more)

    def _disagree(self, page: Page, ends: str, more: str, hint: str = "") -> PaginationError:
        return _error_of(
            PaginationError,
            page.response,
            f"page {page.number}: {ends}, but {more}; failing rather than ending the listing "
            f"early or guessing{f' ({hint})' if hint else ''}",
        )


_document(Paginator)


class CursorPaginator(Paginator):
    """A cursor (or page token) in the body is sent back as a query parameter.

    For bodies like ``{"data": [...], "meta": {"next": "abc"}}``: the next request is the
    same with ``?cursor=abc``. Stops when the cursor is missing, null or empty, or when
    ``has_more_path`` is given and false. A cursor that ends while ``has_more_path`` or
    ``total_path`` says more rows follow is an error.

    Example:
        >>> from headwater.http import CursorPaginator
        >>> pages = CursorPaginator(items_path="data", cursor_path="meta.next")
        >>> pages.cursor_param
        'cursor'
        >>> for rows in client.paginate("issues", pages):  # doctest: +SKIP
        ...     print(len(rows))
    """

    cursor_path: str = "next_cursor"
    """Dotted path of the next cursor in the body."""
    cursor_param: str = "cursor"
    """The query parameter to send it in."""
    has_more_path: str | None = None
    """Dotted path of a "more pages" flag, if the API has one (missing or null: no more)."""

    def claims(self, page: Page) -> list[Claim]:
        """The row total, and the "more pages" flag."""
        claims = super().claims(page)
        if self.has_more_path is not None:
            flag = lookup(page.body, self.has_more_path, None)
            claims.append(Claim(bool(flag), f"{self.has_more_path!r} is {flag!r}"))
        return claims

    def next_request(self, page: Page) -> PageRequest | None:
        """Send the body's cursor as ``cursor_param``."""
        if self.has_more_path is not None and not lookup(page.body, self.has_more_path, None):
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

    def why_last(self, page: Page) -> str:
        """The body has no cursor."""
        cursor = lookup(page.body, self.cursor_path, None)
        return f"the cursor at {self.cursor_path!r} is {cursor!r}"


class NextUrlPaginator(Paginator):
    """The body holds the URL of the next page (absolute, or relative to the current one).

    For bodies like ``{"results": [...], "next": "https://api.example.com/items?page=2"}``
    (Django REST framework's style); the next URL's query string replaces the parameters.
    Stops when it is missing, null or empty.

    Example:
        >>> from headwater.http import NextUrlPaginator
        >>> pages = NextUrlPaginator(items_path="results")
        >>> pages.next_path
        'next'
        >>> for rows in client.paginate("items", pages):  # doctest: +SKIP
        ...     print(len(rows))
    """

    next_path: str = "next"
    """Dotted path of the next URL in the body."""

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

    def why_last(self, page: Page) -> str:
        """The body has no next URL."""
        return f"the next URL at {self.next_path!r} is {lookup(page.body, self.next_path, None)!r}"


def _same_page(a: httpx.URL, b: httpx.URL) -> bool:
    """Whether two URLs ask for the same page, whatever the order of their parameters."""
    return a.copy_with(query=None) == b.copy_with(query=None) and sorted(
        a.params.multi_items()
    ) == sorted(b.params.multi_items())


class LinkHeaderPaginator(Paginator):
    """The ``Link`` header names the next page (``<https://...>; rel="next"``).

    GitHub's style. When the header also names the last page (``rel="last"``), a page
    without a next link that is not the last one is an error.

    Example:
        >>> from headwater.http import LinkHeaderPaginator
        >>> pages = LinkHeaderPaginator()  # the body is the list of rows
        >>> pages.rel, pages.items_path
        ('next', None)
        >>> for rows in client.paginate("repos/o/r/issues", pages):  # doctest: +SKIP
        ...     print(len(rows))
    """

    rel: str = "next"
    """The relation of the next page's link."""
    last_rel: str = "last"
    """The relation of the last page's link."""

    def claims(self, page: Page) -> list[Claim]:
        """The row total, and whether this page is the one the last-page link names."""
        claims = super().claims(page)
        last = page.response.links.get(self.last_rel, {}).get("url")
        if last:
            here = page.response.url
            more = not _same_page(here, here.join(last))
            claims.append(Claim(more, f'the Link header\'s rel="{self.last_rel}" is <{last}>'))
        return claims

    def next_request(self, page: Page) -> PageRequest | None:
        """Follow the ``Link`` header's ``rel`` link."""
        link = page.response.links.get(self.rel, {}).get("url")
        if not link:
            return None
        return PageRequest(str(page.response.url.join(link)), {})

    def why_last(self, page: Page) -> str:
        """The header has no next link."""
        return f'the Link header has no rel="{self.rel}" link'


class OffsetPaginator(Paginator):
    """``offset``/``limit`` parameters: the next page starts where this one ended.

    With ``total_path``, stops once the offset reaches the total (a short page before it
    does not end the listing: APIs cap ``limit``); without, stops at a page shorter than
    ``limit``, so ``limit`` must not exceed the API's largest page: nothing in a capped
    answer tells it from the last page.

    Example:
        >>> from headwater.http import OffsetPaginator
        >>> pages = OffsetPaginator(items_path="items", limit=50, total_path="total")
        >>> pages.first("users", {"active": 1}).params
        {'active': 1, 'offset': 0, 'limit': 50}
    """

    limit: int = pydantic.Field(default=100, ge=1)
    """Rows per page, sent as ``limit_param``."""
    offset_param: str = "offset"
    """The offset's query parameter."""
    limit_param: str = "limit"
    """The page size's query parameter."""
    start: int = pydantic.Field(default=0, ge=0)
    """The first offset."""

    def first(self, url: str, params: Mapping[str, Any] | None) -> PageRequest:
        """Ask for ``limit`` rows from ``start``."""
        return PageRequest(
            url, {**(params or {}), self.offset_param: self.start, self.limit_param: self.limit}
        )

    def rows_read(self, page: Page) -> int:
        """The offset past this page: the total counts from offset 0, not from ``start``."""
        return int(page.request.params.get(self.offset_param, self.start)) + len(page.rows)

    def next_request(self, page: Page) -> PageRequest | None:
        """Move the offset past this page."""
        more = self.more(page)
        if more is False or (more is None and len(page.rows) < self.limit):
            return None
        offset = self.rows_read(page)
        return PageRequest(page.request.url, {**page.request.params, self.offset_param: offset})


class PageNumberPaginator(Paginator):
    """A page number parameter, counting from ``start``.

    With ``total_pages_path`` or ``total_path``, stops after the last page they count (a
    short page before it does not end the listing: APIs cap page sizes); without, stops at
    an empty page or at a page shorter than ``page_size`` (when given), so ``page_size``
    must not exceed the API's largest page.

    Example:
        >>> from headwater.http import PageNumberPaginator
        >>> pages = PageNumberPaginator(items_path="data", page_size=100)
        >>> pages.first("orders", None).params
        {'page': 1, 'per_page': 100}
    """

    page_param: str = "page"
    """The page number's query parameter."""
    start: int = 1
    """The first page's number."""
    page_size: int | None = pydantic.Field(default=None, ge=1)
    """Rows per page, sent as ``size_param`` when given."""
    size_param: str = "per_page"
    """The page size's query parameter."""
    total_pages_path: str | None = None
    """Dotted path of the number of pages in the body, if the API sends it."""

    def first(self, url: str, params: Mapping[str, Any] | None) -> PageRequest:
        """Ask for page ``start``."""
        first = {**(params or {}), self.page_param: self.start}
        if self.page_size is not None:
            first[self.size_param] = self.page_size
        return PageRequest(url, first)

    def _number(self, page: Page) -> int:
        return int(page.request.params.get(self.page_param, self.start))

    def claims(self, page: Page) -> list[Claim]:
        """The row total, and the page count."""
        claims = super().claims(page)
        if self.total_pages_path is not None:
            pages = _whole_number(page, self.total_pages_path)
            if pages is not None:
                counted = self._number(page) - self.start + 1
                says = f"the page count at {self.total_pages_path!r} is {pages}"
                claims.append(Claim(counted < pages, f"{says}, this is page {counted}"))
        return claims

    def next_request(self, page: Page) -> PageRequest | None:
        """Ask for the following page number."""
        more = self.more(page)
        if more is False:
            return None
        if more is None and self.page_size is not None and len(page.rows) < self.page_size:
            return None
        following = {**page.request.params, self.page_param: self._number(page) + 1}
        return PageRequest(page.request.url, following)


#: How many recent requests of a listing :class:`PageWalk` remembers to catch a cycle.
_REMEMBERED = 10_000


def _fingerprint(request: PageRequest) -> bytes:
    params = sorted((str(name), repr(value)) for name, value in request.params.items())
    return hashlib.blake2b(repr((request.url, params)).encode(), digest_size=16).digest()


class PageWalk:
    """One walk through a listing: the request to send next, and what the pages said so far.

    :meth:`~headwater.http.Client.paginate` drives it: send :attr:`request`, then
    :meth:`advance` with the answer, until :attr:`request` is ``None``. It numbers the
    pages, counts their rows, and catches a next page that repeats any of the last 10,000
    (a cursor or next link that cycles), which would otherwise loop or duplicate rows.

    Attributes:
        paginator: The paginator deciding each next page.
        request: The next page's request; ``None`` once the listing ended.
        pages: How many pages were read.
        rows: How many rows they held.
    """

    def __init__(self, paginator: Paginator, url: str, params: Mapping[str, Any] | None) -> None:
        self.paginator = paginator
        self.request: PageRequest | None = paginator.first(url, params)
        self.pages = 0
        self.rows = 0
        # A bounded memory of fingerprints, oldest first, so a listing of millions of pages
        # stays small.
        self._asked: collections.OrderedDict[bytes, int] = collections.OrderedDict()

    def advance(self, response: httpx.Response, body: Any, rows: list[Any]) -> Page:
        """Take the answer to :attr:`request` and decide the next one.

        Returns:
            The page, as the paginator saw it.

        Raises:
            PaginationError: The API's signals disagree, or the next page repeats an earlier
                one.
        """
        if self.request is None:
            raise RuntimeError("the listing has ended; there is no request to answer")
        self.pages += 1
        self.rows += len(rows)
        self._asked[_fingerprint(self.request)] = self.pages
        if len(self._asked) > _REMEMBERED:
            self._asked.popitem(last=False)
        page = Page(self.pages, self.request, response, body, rows, self.rows)
        following = self.paginator.next(page)
        if following is not None:
            earlier = self._asked.get(_fingerprint(following))
            if earlier is not None:
                what = "itself" if earlier == page.number else f"page {earlier}'s request"
                raise _error_of(
                    PaginationError,
                    response,
                    f"page {page.number} points to {what} as the next page "
                    f"({type(self.paginator).__name__}); stopping instead of looping",
                )
        self.request = following
        return page
