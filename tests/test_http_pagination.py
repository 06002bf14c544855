"""Every paginator and stop condition, against a real server."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pydantic
import pytest

from headwater import http
from headwater.testing import MockRequest, MockServer

ROWS = [{"id": i} for i in range(1, 24)]  # 23 rows: 5 pages of 5, the last one short


def paged(http_server: MockServer, paginator: http.Paginator, **params: Any) -> list[list[Any]]:
    with http.Client(http_server.url) as client:
        return list(client.paginate("/items", paginator, params=params or None))


def ids(pages: list[list[dict[str, int]]]) -> list[list[int]]:
    return [[row["id"] for row in page] for page in pages]


def offset_of(request: MockRequest, size: int = 5) -> int:
    if "cursor" in request.params:
        return int(request.params["cursor"])
    if "offset" in request.params:
        return int(request.params["offset"])
    return (int(request.params.get("page", "1")) - 1) * size


def test_cursor_in_the_body(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start = offset_of(request)
        end = start + 5
        return {
            "result": {"items": ROWS[start:end]},
            "meta": {"next": str(end) if end < len(ROWS) else None},
        }

    http_server.route("GET", "/items", handler)
    paginator = http.CursorPaginator(items_path="result.items", cursor_path="meta.next")
    pages = paged(http_server, paginator, filter="open")
    assert ids(pages) == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15],
                          [16, 17, 18, 19, 20], [21, 22, 23]]  # fmt: skip
    assert [r.params for r in http_server.requests][:2] == [
        {"filter": "open"},
        {"filter": "open", "cursor": "5"},
    ]


def test_cursor_with_a_has_more_flag(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start = offset_of(request)
        # Slack-style: the cursor is always there, has_more says whether to follow it.
        return {"data": ROWS[start : start + 5], "cursor": start + 5, "has_more": start + 5 < 12}

    http_server.route("GET", "/items", handler)
    paginator = http.CursorPaginator(
        items_path="data", cursor_path="cursor", has_more_path="has_more"
    )
    assert ids(paged(http_server, paginator)) == [
        [1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10],
        [11, 12, 13, 14, 15],
    ]


def test_next_url_in_the_body(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start = int(request.params.get("start", "0"))
        following = f"/items?start={start + 10}" if start + 10 < len(ROWS) else None
        return {"results": ROWS[start : start + 10], "next": following}

    http_server.route("GET", "/items", handler)
    pages = paged(http_server, http.NextUrlPaginator(items_path="results"))
    assert [len(p) for p in pages] == [10, 10, 3]


def test_link_header(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> Any:
        from headwater.testing import MockResponse

        page = int(request.params.get("page", "1"))
        headers = {}
        if page * 10 < len(ROWS):
            headers["Link"] = (
                f'<{http_server.url}/items?page={page + 1}>; rel="next", '
                f'<{http_server.url}/items?page=3>; rel="last"'
            )
        return MockResponse(json=ROWS[(page - 1) * 10 : page * 10], headers=headers)

    http_server.route("GET", "/items", handler)
    assert [len(p) for p in paged(http_server, http.LinkHeaderPaginator())] == [10, 10, 3]


def test_offset_and_limit(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start, limit = int(request.params["offset"]), int(request.params["limit"])
        return {"rows": ROWS[start : start + limit], "total": len(ROWS)}

    http_server.route("GET", "/items", handler)
    # Stops at the short page...
    pages = paged(http_server, http.OffsetPaginator(items_path="rows", limit=5))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    # ... or, with the total known, without asking for a page past it.
    http_server.requests.clear()
    pages = paged(
        http_server, http.OffsetPaginator(items_path="rows", limit=23, total_path="total")
    )
    assert [len(p) for p in pages] == [23]
    assert [r.params for r in http_server.requests] == [{"offset": "0", "limit": "23"}]


def test_page_numbers(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        page, size = int(request.params["page"]), int(request.params.get("per_page", "5"))
        return {"items": ROWS[(page - 1) * size : page * size], "pages": -(-len(ROWS) // size)}

    http_server.route("GET", "/items", handler)
    sized = http.PageNumberPaginator(items_path="items", page_size=10)
    assert [len(p) for p in paged(http_server, sized)] == [10, 10, 3]
    # Without a size: until an empty page.
    http_server.requests.clear()
    assert [len(p) for p in paged(http_server, http.PageNumberPaginator(items_path="items"))] == [
        5
    ] * 4 + [3]
    assert len(http_server.requests) == 6
    # With the page count: no request for the empty page.
    http_server.requests.clear()
    counted = http.PageNumberPaginator(items_path="items", total_pages_path="pages")
    assert len(paged(http_server, counted)) == 5
    assert len(http_server.requests) == 5


def test_stop_conditions(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> list[dict[str, int]]:
        page = int(request.params["page"])
        return ROWS[(page - 1) * 5 : page * 5]

    http_server.route("GET", "/items", handler)
    assert len(paged(http_server, http.PageNumberPaginator(max_pages=2))) == 2

    def older_than_12(page: http.Page) -> bool:
        return page.rows[-1]["id"] >= 12

    pages = paged(http_server, http.PageNumberPaginator(stop_when=older_than_12))
    assert ids(pages)[-1] == [11, 12, 13, 14, 15]
    # An empty page in the middle ends the listing unless told otherwise.
    http_server.reset()
    http_server.route("GET", "/items", json=[], query={"page": "2"})
    http_server.route("GET", "/items", handler)
    assert len(paged(http_server, http.PageNumberPaginator())) == 1
    assert len(paged(http_server, http.PageNumberPaginator(stop_on_empty=False, max_pages=4))) == 3


def test_a_next_page_that_repeats_the_current_one_is_an_error(http_server: MockServer) -> None:
    http_server.route("GET", "/items", json={"data": [1], "next_cursor": "same"})
    with pytest.raises(http.PaginationError, match="page 2 points to itself as the next page"):
        paged(http_server, http.CursorPaginator(items_path="data"))


def test_a_cursor_that_cycles_back_to_an_earlier_page_is_an_error(
    http_server: MockServer,
) -> None:
    following = {None: "a", "a": "b", "b": "a"}  # a -> b -> a: every page differs from the last
    http_server.route(
        "GET",
        "/items",
        lambda request: {"data": [1], "next_cursor": following[request.params.get("cursor")]},
    )
    with pytest.raises(
        http.PaginationError,
        match=r"GET http://127\.0\.0\.1:\d+/items\?cursor=b: page 3 points to page 2's "
        r"request as the next page \(CursorPaginator\)",
    ):
        paged(http_server, http.CursorPaginator(items_path="data"))
    assert len(http_server.requests) == 3


# When the API tells how much there is, that decides where the listing ends; when its
# signals disagree, the listing fails (naming the request, the page and both signals)
# instead of ending early without a word.


def short_pages(sizes: list[int]) -> list[list[dict[str, int]]]:
    """Consecutive rows cut into pages of ``sizes``: an API that caps or filters its pages."""
    pages, first = [], 1
    for size in sizes:
        pages.append([{"id": i} for i in range(first, first + size)])
        first += size
    return pages


def test_a_short_page_before_the_page_count_does_not_end_the_listing(
    http_server: MockServer,
) -> None:
    pages = short_pages([10, 7, 10, 3])  # page 2 is short, the count says 4 pages

    def handler(request: MockRequest) -> dict[str, Any]:
        return {"items": pages[int(request.params["page"]) - 1], "meta": {"pages": len(pages)}}

    http_server.route("GET", "/items", handler)
    paginator = http.PageNumberPaginator(
        items_path="items", page_size=10, total_pages_path="meta.pages"
    )
    assert [len(p) for p in paged(http_server, paginator)] == [10, 7, 10, 3]
    assert [r.params["page"] for r in http_server.requests] == ["1", "2", "3", "4"]


def test_a_short_page_before_the_row_total_does_not_end_the_listing(
    http_server: MockServer,
) -> None:
    pages = short_pages([10, 4, 10, 6])

    def handler(request: MockRequest) -> dict[str, Any]:
        return {"items": pages[int(request.params["page"]) - 1], "total": "30"}

    http_server.route("GET", "/items", handler)
    paginator = http.PageNumberPaginator(items_path="items", page_size=10, total_path="total")
    assert [len(p) for p in paged(http_server, paginator)] == [10, 4, 10, 6]
    assert len(http_server.requests) == 4  # not a fifth, past the total


def test_an_empty_page_before_the_page_count_is_an_error(http_server: MockServer) -> None:
    pages = short_pages([10, 0, 10])

    def handler(request: MockRequest) -> dict[str, Any]:
        return {"items": pages[int(request.params["page"]) - 1], "meta": {"pages": 3}}

    http_server.route("GET", "/items", handler)
    paginator = http.PageNumberPaginator(
        items_path="items", page_size=10, total_pages_path="meta.pages"
    )
    with pytest.raises(
        http.PaginationError,
        match=r"GET http://127\.0\.0\.1:\d+/items\?page=2&per_page=10: page 2: it has no rows, "
        r"but the page count at 'meta\.pages' is 3, this is page 2; failing rather than ending "
        r"the "
        r"listing early or guessing \(set stop_on_empty=False",
    ):
        paged(http_server, paginator)
    # An API that does send empty pages mid-listing is followed to the count.
    unstopped = paginator.model_copy(update={"stop_on_empty": False})
    assert [len(p) for p in paged(http_server, unstopped)] == [10, 10]


def test_page_count_and_row_total_that_contradict_each_other_are_an_error(
    http_server: MockServer,
) -> None:
    http_server.route("GET", "/items", json={"items": ROWS[:10], "pages": 1, "total": 23})
    paginator = http.PageNumberPaginator(
        items_path="items", total_pages_path="pages", total_path="total"
    )
    with pytest.raises(
        http.PaginationError,
        match=r"page 1: the page count at 'pages' is 1, this is page 1, but the row total at "
        r"'total' is 23, 10 rows read so far",
    ):
        paged(http_server, paginator)


@pytest.mark.parametrize("pages", ["many", "\u00b2", -1, 2.5, True, [3]])
def test_a_total_that_is_not_a_count_is_an_error(http_server: MockServer, pages: Any) -> None:
    http_server.route("GET", "/items", json={"items": ROWS[:5], "pages": pages})
    paginator = http.PageNumberPaginator(items_path="items", total_pages_path="pages")
    shown = "a list" if isinstance(pages, list) else re.escape(repr(pages))
    with pytest.raises(
        http.PaginationError, match=rf"/items\?page=1: the count at 'pages' is {shown}, not a whole"
    ):
        paged(http_server, paginator)


def test_an_offset_api_that_caps_its_limit_is_read_to_the_total(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start = int(request.params["offset"])
        limit = min(int(request.params["limit"]), 4)  # the server's own cap
        return {"rows": ROWS[start : start + limit], "total": len(ROWS)}

    http_server.route("GET", "/items", handler)
    paginator = http.OffsetPaginator(items_path="rows", limit=10, total_path="total")
    assert [row for page in paged(http_server, paginator) for row in page] == ROWS
    assert [r.params["offset"] for r in http_server.requests][-2:] == ["16", "20"]


def test_an_empty_page_before_the_offset_total_is_an_error(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start = int(request.params["offset"])
        return {"rows": ROWS[start : min(start + 5, 10)], "total": len(ROWS)}  # 13 rows gone

    http_server.route("GET", "/items", handler)
    paginator = http.OffsetPaginator(items_path="rows", limit=5, total_path="total")
    with pytest.raises(
        http.PaginationError,
        match=r"/items\?offset=10&limit=5: page 3: it has no rows, but the row total at "
        r"'total' is 23, 10 rows read so far",
    ):
        paged(http_server, paginator)


def test_a_cursor_that_ends_before_the_total_is_an_error(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start = offset_of(request)
        # The cursor disappears after 10 rows while the total says 23.
        return {"data": ROWS[start : start + 5], "next": str(start + 5) if start < 5 else None,
                "count": len(ROWS)}  # fmt: skip

    http_server.route("GET", "/items", handler)
    paginator = http.CursorPaginator(items_path="data", cursor_path="next", total_path="count")
    with pytest.raises(
        http.PaginationError,
        match=r"/items\?cursor=5: page 2: the cursor at 'next' is None, but the row total "
        r"at 'count' is 23, 10 rows read so far",
    ):
        paged(http_server, paginator)


def test_a_cursor_past_a_stale_total_is_followed(http_server: MockServer) -> None:
    def handler(request: MockRequest) -> dict[str, Any]:
        start = offset_of(request)
        end = start + 5
        # Rows were added during the listing: the total lags, the cursor knows better.
        return {"data": ROWS[start:end], "next": str(end) if end < len(ROWS) else None,
                "count": 10}  # fmt: skip

    http_server.route("GET", "/items", handler)
    paginator = http.CursorPaginator(items_path="data", cursor_path="next", total_path="count")
    assert [row for page in paged(http_server, paginator) for row in page] == ROWS


def test_has_more_without_a_cursor_is_an_error(http_server: MockServer) -> None:
    http_server.route("GET", "/items", json={"data": [1, 2], "has_more": True, "cursor": None})
    paginator = http.CursorPaginator(
        items_path="data", cursor_path="cursor", has_more_path="has_more"
    )
    with pytest.raises(
        http.PaginationError,
        match=r"page 1: the cursor at 'cursor' is None, but 'has_more' is True",
    ):
        paged(http_server, paginator)


def test_has_more_false_while_the_total_says_more_is_an_error(http_server: MockServer) -> None:
    http_server.route(
        "GET", "/items", json={"data": [1, 2], "has_more": False, "cursor": "x", "total": 5}
    )
    paginator = http.CursorPaginator(
        items_path="data", cursor_path="cursor", has_more_path="has_more", total_path="total"
    )
    with pytest.raises(
        http.PaginationError,
        match=r"page 1: 'has_more' is False, but the row total at 'total' is 5, 2 rows read so far",
    ):
        paged(http_server, paginator)


def test_a_next_url_that_ends_before_the_total_is_an_error(http_server: MockServer) -> None:
    http_server.route(
        "GET", "/items", json={"results": ROWS[10:20], "next": None, "count": 23}, query={"p": "2"}
    )
    http_server.route(
        "GET", "/items", json={"results": ROWS[:10], "next": "/items?p=2", "count": 23}
    )
    paginator = http.NextUrlPaginator(items_path="results", total_path="count")
    with pytest.raises(
        http.PaginationError,
        match=r"/items\?p=2: page 2: the next URL at 'next' is None, but the row total "
        r"at 'count' is 23, 20 rows read so far",
    ):
        paged(http_server, paginator)


def test_a_link_header_without_next_before_its_last_page_is_an_error(
    http_server: MockServer,
) -> None:
    def handler(request: MockRequest) -> Any:
        from headwater.testing import MockResponse

        page = int(request.params.get("page", "1"))
        last = f'<{http_server.url}/items?per_page=10&page=3>; rel="last"'
        # Page 2 lost its next link, yet still names page 3 as the last.
        following = (
            f'<{http_server.url}/items?page=2&per_page=10>; rel="next", ' if page == 1 else ""
        )
        return MockResponse(
            json=ROWS[(page - 1) * 10 : page * 10], headers={"Link": following + last}
        )

    http_server.route("GET", "/items", handler)
    with pytest.raises(
        http.PaginationError,
        match=r'/items\?page=2&per_page=10: page 2: the Link header has no rel="next" link, but '
        r"the Link header's rel=\"last\" is <http://127\.0\.0\.1:\d+/items\?per_page=10&page=3>",
    ):
        paged(http_server, http.LinkHeaderPaginator(), per_page=10)


def test_the_async_client_checks_the_same_signals(http_server: MockServer) -> None:
    http_server.route("GET", "/items", json={"data": [1, 2], "has_more": True})
    paginator = http.CursorPaginator(items_path="data", has_more_path="has_more")

    async def main() -> list[list[Any]]:
        async with http.AsyncClient(http_server.url) as client:
            return [page async for page in client.paginate("/items", paginator)]

    with pytest.raises(http.PaginationError, match="but 'has_more' is True"):
        asyncio.run(main())


def test_rows_not_where_the_paginator_looks(http_server: MockServer) -> None:
    http_server.route("GET", "/items", json={"results": [1, 2], "next": None})
    with pytest.raises(
        http.HttpResponseError,
        match=r"GET http://.*/items: the body has no 'data' \(no key 'data'\); it is an object "
        r"with keys 'results', 'next'",
    ):
        paged(http_server, http.CursorPaginator(items_path="data"))
    with pytest.raises(
        http.HttpResponseError,
        match="expected a list of rows as its body, got an object with keys 'results', 'next'; "
        "set items_path",
    ):
        paged(http_server, http.CursorPaginator())
    http_server.reset()
    http_server.route("GET", "/items", json={"data": [1], "next_cursor": {"a": 1}})
    with pytest.raises(http.HttpResponseError, match="the cursor at 'next_cursor' is an object"):
        paged(http_server, http.CursorPaginator(items_path="data"))


def test_lookup_paths() -> None:
    from headwater.http.pagination import lookup

    body = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert lookup(body, "a.b.1.c") == 2
    assert lookup(body, "a.b.-1.c") == 2
    assert lookup(body, None) is body
    assert lookup(body, "a.x", None) is None
    with pytest.raises(KeyError):
        lookup(body, "a.b.5")


def test_a_paginator_without_its_rule_is_refused_when_made() -> None:
    class NoRule(http.Paginator):
        pass

    with pytest.raises(TypeError, match="next_request"):
        NoRule()


PAGINATORS = [
    http.Paginator,
    http.CursorPaginator,
    http.NextUrlPaginator,
    http.LinkHeaderPaginator,
    http.OffsetPaginator,
    http.PageNumberPaginator,
]


@pytest.mark.parametrize("kind", PAGINATORS, ids=lambda kind: kind.__name__)
def test_help_shows_what_a_user_needs(kind: type[http.Paginator]) -> None:
    import pydoc

    text = pydoc.render_doc(kind, renderer=pydoc.plaintext)
    # It leads with the signature and the class's own description ...
    summary = (kind.__dict__["__doc__"] or "").strip().splitlines()[0]
    assert text.index(summary) < text.index("Fields (keyword arguments):")
    assert f"{kind.__name__}(*, items_path: str | None = None, max_pages: int | None = None" in (
        text
    )
    # ... lists every field with its type, default and meaning ...
    for name, field in kind.model_fields.items():
        assert f"    {name}: " in text
        assert field.description, name
        assert field.description.split()[0] in text
    if kind is not http.Paginator:
        assert "Example:" in text
        assert "Fields of every paginator:" in text
    # ... and leaves pydantic's machinery out, which still works.
    for internal in ("__pydantic", "model_dump", "model_config", "BaseModel:", "Annotated"):
        assert internal not in text, internal
    assert len(text.splitlines()) < 150


def test_paginators_still_are_pydantic_models() -> None:
    pages = http.CursorPaginator(items_path="data", max_pages=2)
    assert pages.model_copy(update={"max_pages": 3}).max_pages == 3
    assert pages.model_dump()["cursor_param"] == "cursor"
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 1"):
        http.CursorPaginator(max_pages=0)
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        http.CursorPaginator(cursor="x")  # type: ignore[call-arg]


def test_the_pagination_examples_run() -> None:
    import doctest

    from headwater.http import pagination

    results = doctest.testmod(pagination)
    assert results.attempted > 10
    assert results.failed == 0
