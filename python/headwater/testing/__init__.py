"""The testing kit: a mock API server, HTTP cassettes, and running syncs in tests.

Also a pytest plugin (registered as ``headwater`` under ``pytest11``), with the fixtures
``http_server``, ``cassette`` and ``schema_snapshot``; see
:mod:`headwater.testing.pytest_plugin`.
"""

from headwater.testing.cassette import Cassette, CassetteError, RecordMode, use_cassette
from headwater.testing.server import MockRequest, MockResponse, MockServer, Route
from headwater.testing.sync import SyncResult, assert_schema_snapshot, run_sync, schema_snapshot

__all__ = [
    "Cassette",
    "CassetteError",
    "MockRequest",
    "MockResponse",
    "MockServer",
    "RecordMode",
    "Route",
    "SyncResult",
    "assert_schema_snapshot",
    "run_sync",
    "schema_snapshot",
    "use_cassette",
]
