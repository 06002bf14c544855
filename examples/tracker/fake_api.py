"""A fake of the Tracker REST API, served on 127.0.0.1 for the plugin's tests.

It behaves like the real thing where it matters to a plugin: OAuth2 client credentials at
``POST /oauth/token`` (tokens expire, and :meth:`FakeTracker.revoke_tokens` makes the API
answer 401), cursor pagination (``{"data": [...], "next_cursor": "..."}``), ``updated_since``
filtering with issues sorted by ``updated_at``, ``X-RateLimit-*`` headers on every answer,
and, when asked to, 429s (``Retry-After: 0``) and 500s every few requests.

Run it on its own with ``python examples/tracker/fake_api.py`` to try the plugin by hand.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import threading
from collections import Counter
from typing import Any

from headwater.testing import MockRequest, MockResponse, MockServer

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "FakeTracker"]

CLIENT_ID = "tracker-test-client"
CLIENT_SECRET = "tracker-test-secret-0123"

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode(cursor: str) -> int:
    return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))


class FakeTracker:
    """The fake API: its data, its server, and knobs for tests.

    Args:
        projects: Number of projects.
        issues_per_project: Issues in each project.
        comments_per_issue: Comments on each issue.
        token_ttl: Seconds an access token lives (``expires_in``).
        fail_every: Answer every n-th API request with a failure, alternating a 429 with
            ``Retry-After: 0`` and a 500 (0: never).
        rate_limit: Requests per window the ``X-RateLimit-*`` headers announce.
        revoke_tokens_after: Revoke every token issued so far at this API request (as an
            administrator rotating credentials would), so the next requests get 401s.
    """

    def __init__(
        self,
        projects: int = 3,
        issues_per_project: int = 25,
        comments_per_issue: int = 2,
        *,
        token_ttl: int = 3600,
        fail_every: int = 0,
        rate_limit: int = 100_000,
        revoke_tokens_after: int | None = None,
    ) -> None:
        self.revoke_tokens_after = revoke_tokens_after
        self.token_ttl = token_ttl
        self.fail_every = fail_every
        self.rate_limit = rate_limit
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.served: Counter[str] = Counter()  # rows served per resource kind
        self.failures: Counter[int] = Counter()  # failures injected per status
        self._lock = threading.Lock()
        self._requests = 0
        self._token_ids = itertools.count(1)
        self._clock = EPOCH
        self.projects: list[dict[str, Any]] = []
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        comment_ids = itertools.count(1)
        for p in range(1, projects + 1):
            self.projects.append(
                {
                    "id": p,
                    "key": f"P{p}",
                    "name": f"Project {p}",
                    "created_at": _iso(self._tick()),
                }
            )
            for n in range(1, issues_per_project + 1):
                issue_id = p * 10_000 + n
                moment = _iso(self._tick())
                self.issues[issue_id] = {
                    "id": issue_id,
                    "project_id": p,
                    "number": n,
                    "title": f"Issue {n} of P{p}",
                    "state": "open" if n % 3 else "closed",
                    "labels": ["bug"] if n % 2 else ["feature", "ui"],
                    "assignee": None if n % 4 == 0 else f"user{n % 5}",
                    "created_at": moment,
                    "updated_at": moment,
                }
                self.comments[issue_id] = [
                    {
                        "id": next(comment_ids),
                        "issue_id": issue_id,
                        "author": f"user{c}",
                        "body": f"Comment {c} on {issue_id}",
                        "created_at": moment,
                    }
                    for c in range(comments_per_issue)
                ]
        self.server = MockServer()
        self.server.route("POST", "/oauth/token", self._token)
        self.server.route("GET", "/api/projects", self._guarded(self._projects))
        self.server.route(
            "GET", "/api/projects/{project_id}/issues", self._guarded(self._project_issues)
        )
        self.server.route(
            "GET", "/api/issues/{issue_id}/comments", self._guarded(self._issue_comments)
        )

    # -- running
    @property
    def url(self) -> str:
        """The base URL to put in the plugin's spec."""
        return self.server.url

    def start(self) -> FakeTracker:
        """Start serving."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()

    def __enter__(self) -> FakeTracker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- knobs
    def _tick(self) -> dt.datetime:
        self._clock += dt.timedelta(minutes=1)
        return self._clock

    def touch(self, issue_id: int, title: str | None = None) -> None:
        """Update an issue (and add a comment): it comes after every other in ``updated_at``."""
        with self._lock:
            issue = self.issues[issue_id]
            moment = _iso(self._tick())
            issue["updated_at"] = moment
            if title is not None:
                issue["title"] = title
            comments = self.comments[issue_id]
            comments.append(
                {
                    "id": 1_000_000 + sum(len(c) for c in self.comments.values()),
                    "issue_id": issue_id,
                    "author": "editor",
                    "body": f"Updated {issue_id}",
                    "created_at": moment,
                }
            )

    def revoke_tokens(self) -> None:
        """Make every access token issued so far invalid: the API answers 401 to them."""
        with self._lock:
            self.tokens.clear()

    # -- handlers
    def _token(self, request: MockRequest) -> MockResponse:
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return MockResponse(400, json={"error": "unsupported_grant_type"})
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return MockResponse(401, json={"error": "invalid_client"})
        with self._lock:
            self.token_requests += 1
            token = f"access-{next(self._token_ids):04d}-for-{CLIENT_ID}"
            self.tokens.add(token)
        return MockResponse(
            json={"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        )

    def _guarded(self, handler: Any) -> Any:
        """Authentication, rate-limit headers and injected failures around an API handler."""

        def guarded(request: MockRequest) -> MockResponse:
            with self._lock:
                self._requests += 1
                count = self._requests
                if count == self.revoke_tokens_after:
                    self.tokens.clear()
                authorized = (
                    request.headers.get("authorization", "").removeprefix("Bearer ") in self.tokens
                )
            remaining = max(0, self.rate_limit - count)
            headers = {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": "60",
            }
            if not authorized:
                return MockResponse(401, json={"error": "invalid_token"}, headers=headers)
            if self.fail_every and count % self.fail_every == 0:
                if (count // self.fail_every) % 2:
                    with self._lock:
                        self.failures[429] += 1
                    return MockResponse(
                        429,
                        json={"error": "rate_limited"},
                        headers={**headers, "Retry-After": "0"},
                    )
                with self._lock:
                    self.failures[500] += 1
                return MockResponse(500, body="<html><body>Internal error</body></html>")
            response: MockResponse = handler(request)
            response.headers.update(headers)
            return response

        return guarded

    def _page(self, kind: str, items: list[dict[str, Any]], request: MockRequest) -> MockResponse:
        limit = int(request.params.get("limit", "50"))
        cursor = request.params.get("cursor")
        offset = _decode(cursor) if cursor else 0
        page = items[offset : offset + limit]
        following = offset + limit
        with self._lock:
            self.served[kind] += len(page)
        return MockResponse(
            json={
                "data": page,
                "next_cursor": _encode(following) if following < len(items) else None,
            }
        )

    def _projects(self, request: MockRequest) -> MockResponse:
        return self._page("projects", self.projects, request)

    def _project_issues(self, request: MockRequest) -> MockResponse:
        project_id = int(request.path_params["project_id"])
        since = request.params.get("updated_since")
        with self._lock:
            items = sorted(
                (
                    dict(i)
                    for i in self.issues.values()
                    if i["project_id"] == project_id and (since is None or i["updated_at"] > since)
                ),
                key=lambda i: (i["updated_at"], i["id"]),
            )
        return self._page("issues", items, request)

    def _issue_comments(self, request: MockRequest) -> MockResponse:
        issue_id = int(request.path_params["issue_id"])
        with self._lock:
            items = [dict(c) for c in self.comments.get(issue_id, [])]
        return self._page("comments", items, request)


if __name__ == "__main__":
    import time

    with FakeTracker(fail_every=7) as fake:
        print(f"fake Tracker API on {fake.url} (client id {CLIENT_ID!r}); Ctrl-C stops it")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
