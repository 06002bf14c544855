"""Tracker: a headwater source plugin for an issue tracker's REST API.

Three tables, each a child of the one before: ``tracker_projects`` -> ``tracker_issues`` ->
``tracker_comments``. It shows what a real API source needs, with headwater's API toolkit:

- OAuth2 client credentials (:class:`headwater.http.OAuth2ClientCredentials`): the token is
  fetched once, renewed before it expires and again if the API answers 401;
- cursor pagination (:class:`headwater.http.CursorPaginator`): each page is yielded as it
  comes, and the engine converts a page at a time;
- rate limits: the client sends at most ``requests_per_second`` with ``max_concurrent``
  requests in flight, shared by every thread of the sync, and follows the API's
  ``X-RateLimit-*`` headers; 429s and 500s are retried with backoff (``Retry-After`` honoured);
- incremental issues (:class:`headwater.incremental.Cursor`): a second sync asks for
  ``updated_since`` the last ``updated_at`` it stored, per project, and its comments are
  fetched only for those issues.

Sync it into DuckDB (README.md has the spec)::

    python examples/tracker/fake_api.py &     # or your real Tracker
    headwater sync examples/tracker/tracker.py --spec spec.yaml --to duckdb:///tracker.duckdb
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

import headwater as hw
from headwater import http
from headwater.incremental import Cursor

__all__ = ["TrackerClient", "TrackerSpec", "plugin"]

TIMESTAMP = pa.timestamp("us", tz="UTC")


class TrackerSpec(hw.Spec):
    """What a user configures: where the API is and how to log in."""

    base_url: str = "https://tracker.example.com"
    client_id: str
    client_secret: hw.SecretStr
    page_size: int = 50
    requests_per_second: float = 50.0
    max_concurrent: int = 8
    max_attempts: int = 5


class TrackerClient:
    """What every resolver receives: the HTTP client and the spec's settings."""

    def __init__(self, spec: TrackerSpec) -> None:
        self.id = spec.client_id  # names the client in messages, logs and state keys
        self.page_size = spec.page_size
        base = spec.base_url.rstrip("/")
        self.http = http.Client(
            f"{base}/api/",
            auth=http.OAuth2ClientCredentials(
                f"{base}/oauth/token", spec.client_id, spec.client_secret
            ),
            rate_limit=http.RateLimit(
                requests_per_second=spec.requests_per_second,
                burst=spec.max_concurrent,
                max_concurrent=spec.max_concurrent,
            ),
            retry=http.RetryPolicy(attempts=spec.max_attempts, backoff=0.1, max_backoff=5),
        )

    def close(self) -> None:
        """Close the connections: headwater calls this once a sync that connected is over."""
        self.http.close()

    def pages(self, path: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of a listing, as lists of rows."""
        return self.http.paginate(path, PAGES, params={"limit": self.page_size, **params})


#: The API's pagination: rows under "data", the next page's cursor in "next_cursor".
PAGES = http.CursorPaginator(items_path="data", cursor_path="next_cursor")


@hw.table(
    "tracker_projects",
    columns=[
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("key", pa.string(), not_null=True),
        hw.Column("name", pa.string()),
        hw.Column("created_at", TIMESTAMP),
    ],
    title="Tracker projects",
)
def projects(client: TrackerClient) -> Iterator[list[dict[str, Any]]]:
    """Every project, a page at a time."""
    yield from client.pages("projects")


@projects.child(
    "tracker_issues",
    columns=[
        hw.Column("project_id", pa.int64(), primary_key=True),
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("number", pa.int64()),
        hw.Column("title", pa.string()),
        hw.Column("state", pa.string()),
        hw.Column("labels", pa.list_(pa.string())),
        hw.Column("assignee", pa.string()),
        hw.Column("created_at", TIMESTAMP),
        hw.Column("updated_at", TIMESTAMP, incremental_key=True),
    ],
    title="Tracker issues",
)
def issues(
    client: TrackerClient, project: dict[str, Any], state: hw.State
) -> Iterator[list[dict[str, Any]]]:
    """The project's issues updated since the last sync (all of them the first time).

    The API sorts them by ``updated_at``, so the cursor advances after each page: a sync
    that stops half-way resumes after the last page the destination stored.
    """
    cursor = Cursor(state, f"project-{project['id']}", kind="datetime")
    since = {"updated_since": cursor.since_text} if cursor.since is not None else {}
    pages = client.pages(f"projects/{project['id']}/issues", **since)
    yield from cursor.track(pages, field="updated_at")


@issues.child(
    "tracker_comments",
    columns=[
        hw.Column("id", pa.int64(), primary_key=True),
        hw.Column("issue_id", pa.int64()),
        hw.Column("author", pa.string()),
        hw.Column("body", pa.string()),
        hw.Column("created_at", TIMESTAMP),
    ],
    title="Tracker issue comments",
)
def comments(client: TrackerClient, issue: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The comments of an issue the sync fetched (so only of updated issues, incrementally)."""
    yield from client.pages(f"issues/{issue['id']}/comments")


plugin = hw.Plugin(
    name="tracker",
    version="0.1.0",
    tables=[projects],
    spec=TrackerSpec,
    connect=TrackerClient,
    title="Tracker",
    description="Projects, issues and comments of a Tracker instance, incrementally.",
)

if __name__ == "__main__":
    plugin.main()
