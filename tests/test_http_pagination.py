"""Every paginator and stop condition, against a real server."""

from __future__ import annotations

from typing import Any

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
    with pytest.raises(http.HttpResponseError, match="page 2 points to itself as the next page"):
        paged(http_server, http.CursorPaginator(items_path="data"))


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
