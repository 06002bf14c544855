"""headwater's pytest plugin (entry point ``pytest11``): fixtures for plugin tests.

Installed with headwater, it gives every test suite:

- ``http_server``: a started :class:`~headwater.testing.MockServer` on 127.0.0.1, verified
  (unexpected requests, unmet expectations) and stopped after the test;
- ``cassette``: a :class:`~headwater.testing.Cassette` at
  ``cassettes/<test module>/<test name>.json`` next to the test file, through which every
  :mod:`headwater.http` client made during the test sends; the mode comes from
  ``--headwater-record`` (``once`` by default, ``none`` to forbid recording, as in CI);
- ``schema_snapshot``: ``schema_snapshot(plugin)`` checks the plugin's schemas against
  ``__snapshots__/<test module>/<test name>.json``; ``--headwater-update-snapshots`` writes
  them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from headwater.testing.cassette import Cassette
    from headwater.testing.server import MockServer


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--headwater-record`` and ``--headwater-update-snapshots``."""
    group = parser.getgroup("headwater")
    group.addoption(
        "--headwater-record",
        choices=("once", "none", "all"),
        default=None,
        help="cassette mode: once (record missing cassettes, the default; 'none' when the "
        "CI environment variable is set), none (replay only), all (record again)",
    )
    group.addoption(
        "--headwater-update-snapshots",
        action="store_true",
        default=False,
        help="write schema snapshots instead of checking them",
    )


def _file_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")


@pytest.fixture
def http_server() -> Iterator[MockServer]:
    """A started mock HTTP server on 127.0.0.1; verified and stopped after the test."""
    from headwater.testing.server import MockServer

    server = MockServer().start()
    try:
        yield server
    finally:
        server.stop()
    server.verify()


@pytest.fixture
def cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """Record or replay the test's HTTP interactions (see the module documentation)."""
    from headwater.testing.cassette import use_cassette

    mode = request.config.getoption("--headwater-record")
    if mode is None:
        mode = "none" if os.environ.get("CI") else "once"
    module = Path(str(request.node.path))
    path = module.parent / "cassettes" / module.stem / f"{_file_name(request)}.json"
    with use_cassette(path, mode) as recorded:
        yield recorded


@pytest.fixture
def schema_snapshot(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """``schema_snapshot(plugin_or_tables)``: check the schemas against the test's snapshot."""
    from headwater.testing.sync import assert_schema_snapshot

    update = bool(request.config.getoption("--headwater-update-snapshots"))
    module = Path(str(request.node.path))
    path = module.parent / "__snapshots__" / module.stem / f"{_file_name(request)}.json"

    def check(tables: Any) -> None:
        assert_schema_snapshot(tables, path, update=update or None)

    return check
