"""The Tracker plugin against its fake API: full and incremental syncs, failures, DuckDB."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from fake_api import CLIENT_ID, CLIENT_SECRET, FakeTracker

from headwater.testing import SyncResult, run_sync
from tracker import plugin

HERE = Path(__file__).resolve().parent


@pytest.fixture
def fake() -> Iterator[FakeTracker]:
    with FakeTracker(projects=3, issues_per_project=25, comments_per_issue=2) as api:
        yield api
    api.server.verify()


def spec(api: FakeTracker, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": api.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "page_size": 10,
        **overrides,
    }


def test_schema(schema_snapshot: Any) -> None:
    schema_snapshot(plugin)


def test_a_full_sync(fake: FakeTracker) -> None:
    result = run_sync(plugin, spec(fake))
    assert result.errors == []
    assert result.summary.rows == {
        "tracker_projects": 3,
        "tracker_issues": 75,
        "tracker_comments": 150,
    }
    issues = result.tables["tracker_issues"]
    projects = result.tables["tracker_projects"]
    # Every issue hangs off its project's row, every comment off its issue's.
    by_id = dict(zip(projects["id"].to_pylist(), projects["_cq_id"].to_pylist(), strict=True))
    for project_id, parent in zip(
        issues["project_id"].to_pylist(), issues["_cq_parent_id"].to_pylist(), strict=True
    ):
        assert by_id[project_id] == parent
    assert issues.schema.field("labels").type == pa.list_(pa.string())
    assert fake.token_requests == 1  # one token for the whole sync, shared by every thread
    assert set(result.state) == {f"tracker_issues/{CLIENT_ID}/project-{p}" for p in (1, 2, 3)}


def test_the_second_sync_fetches_only_updated_issues(fake: FakeTracker) -> None:
    first = run_sync(plugin, spec(fake))
    served = fake.served["issues"]
    assert served == 75
    fake.touch(10_005, title="Renamed")
    fake.touch(30_020)
    second = run_sync(plugin, spec(fake), state=first.state)
    assert second.errors == []
    assert fake.served["issues"] - served == 2
    assert sorted(r["id"] for r in second.rows("tracker_issues")) == [10_005, 30_020]
    assert [r["title"] for r in second.rows("tracker_issues") if r["id"] == 10_005] == ["Renamed"]
    # Comments only of the updated issues: their two, plus the one each update added.
    assert second.summary.rows["tracker_comments"] == 6
    assert (
        second.state[f"tracker_issues/{CLIENT_ID}/project-1"]
        > first.state[f"tracker_issues/{CLIENT_ID}/project-1"]
    )
    # A project without changes keeps its cursor.
    key = f"tracker_issues/{CLIENT_ID}/project-2"
    assert second.state[key] == first.state[key]
    # And a third sync with nothing new fetches no issue at all.
    third = run_sync(plugin, spec(fake), state=second.state)
    assert third.summary.rows["tracker_issues"] == 0
    assert third.state == second.state


def test_a_sync_survives_429s_and_500s() -> None:
    with FakeTracker(projects=2, issues_per_project=30, fail_every=5) as api:
        result = run_sync(plugin, spec(api, max_attempts=6))
    assert result.errors == []
    assert result.summary.rows == {
        "tracker_projects": 2,
        "tracker_issues": 60,
        "tracker_comments": 120,
    }
    assert api.failures[429] > 5 and api.failures[500] > 5


def test_a_revoked_token_is_renewed_mid_sync() -> None:
    with FakeTracker(projects=2, issues_per_project=10, revoke_tokens_after=15) as api:
        result = run_sync(plugin, spec(api))
    assert result.errors == []
    assert result.summary.rows["tracker_comments"] == 40
    assert api.token_requests == 2


def test_wrong_credentials_fail_every_table_clearly(fake: FakeTracker) -> None:
    result = run_sync(plugin, spec(fake, client_secret="wrong-secret-value"))
    [error] = result.errors
    assert error.table_name == "tracker_projects"
    message = str(error.error)
    assert "could not get an OAuth2 token: POST" in message and "HTTP 401" in message
    assert "wrong-secret-value" not in message
    assert "invalid_client" in message


def load_into_duckdb(result: SyncResult, path: Path) -> None:
    """Store what a sync delivered in DuckDB, as a local sync's destination does."""
    with duckdb.connect(str(path)) as con:
        for name, table in result.tables.items():
            plain = table.select([c for c in table.column_names if not c.startswith("_cq_")])
            con.register("incoming", plain)
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM incoming')
            con.unregister("incoming")


def test_end_to_end_into_duckdb(fake: FakeTracker, tmp_path: Path) -> None:
    path = tmp_path / "tracker.duckdb"
    load_into_duckdb(run_sync(plugin, spec(fake)), path)
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT p.key, count(DISTINCT i.id), count(c.id) FROM tracker_projects p "
            "JOIN tracker_issues i ON i.project_id = p.id "
            "JOIN tracker_comments c ON c.issue_id = i.id GROUP BY p.key ORDER BY p.key"
        ).fetchall()
        assert rows == [("P1", 25, 50), ("P2", 25, 50), ("P3", 25, 50)]
        kinds = dict(
            con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE table_name = 'tracker_issues'"
            ).fetchall()
        )
        assert kinds["updated_at"] == "TIMESTAMP WITH TIME ZONE"
        assert kinds["labels"] == "VARCHAR[]"


def headwater_sync(api: FakeTracker, database: Path) -> subprocess.CompletedProcess[str]:
    """``headwater sync examples/tracker/tracker.py --to duckdb:///...``, as a user runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "headwater.cli",
            "sync",
            str(HERE / "tracker.py"),
            "--spec",
            json.dumps(spec(api)),
            "--to",
            f"duckdb:///{database}",
            "--mode",
            "upsert",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_headwater_sync_into_duckdb_then_incrementally(tmp_path: Path) -> None:
    database = tmp_path / "tracker.duckdb"
    with FakeTracker(projects=3, issues_per_project=25, fail_every=9) as api:
        first = headwater_sync(api, database)
        assert first.returncode == 0, first.stderr
        assert CLIENT_SECRET not in first.stdout + first.stderr
        served = api.served["issues"]
        api.touch(20_007, title="Changed upstream")
        second = headwater_sync(api, database)
        assert second.returncode == 0, second.stderr
        # Only the changed issue came again: the cursors were stored with the rows.
        assert api.served["issues"] - served == 1
        assert api.failures[429] + api.failures[500] > 0
    with duckdb.connect(str(database), read_only=True) as con:
        counts = con.execute(
            "SELECT (SELECT count(*) FROM tracker_projects), (SELECT count(*) FROM tracker_issues),"
            " (SELECT count(*) FROM tracker_comments)"
        ).fetchone()
        assert counts == (3, 75, 151)  # upserted on the primary key; one comment was added
        title = con.execute("SELECT title FROM tracker_issues WHERE id = 20007").fetchone()
        assert title == ("Changed upstream",)
        orphans = con.execute(
            "SELECT count(*) FROM tracker_comments c LEFT JOIN tracker_issues i "
            "ON c._cq_parent_id = i._cq_id WHERE i.id IS NULL"
        ).fetchone()
        assert orphans == (0,)
