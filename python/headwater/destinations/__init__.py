"""Destinations of a local sync: DuckDB (the default), PostgreSQL, Parquet and JSON-lines files.

A destination is named by a URL:

- ``duckdb:///path/to/file.duckdb`` (absolute), ``duckdb:///./file.duckdb`` or
  ``duckdb://file.duckdb`` (relative to the working directory), ``duckdb:///:memory:``; the
  default is ``duckdb:///./headwater.duckdb``;
- ``postgresql://user:password@host:port/database`` (any libpq connection URI; needs
  ``pip install 'headwater[postgres]'``); its password (in the user info, or a ``password``
  or ``sslpassword`` parameter) is registered as a secret (:mod:`headwater.redaction`) and
  shown as ``***`` in every message, log line and summary;
- ``parquet:///path/to/dir`` and ``jsonl:///path/to/dir``: one sub-directory of files per table,
  with ``?max_file_rows=N&max_file_bytes=N`` to rotate files.

Example:
    >>> from headwater.destinations import parse_url
    >>> parse_url("duckdb:///./headwater.duckdb")
    DestinationURL(scheme='duckdb', path='./headwater.duckdb', query={})
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from headwater.destinations.base import (
    CQ_SOURCE_NAME,
    CQ_SYNC_TIME,
    Destination,
    DestinationTable,
    StateEntry,
    WriteMode,
    WriteOptions,
)
from headwater.errors import DestinationError
from headwater.redaction import redact, redact_url, register_url_secrets

__all__ = [
    "CQ_SOURCE_NAME",
    "CQ_SYNC_TIME",
    "DEFAULT_URL",
    "SCHEMES",
    "Destination",
    "DestinationTable",
    "DestinationURL",
    "StateEntry",
    "WriteMode",
    "WriteOptions",
    "open_destination",
    "parse_url",
]

#: Where ``headwater sync`` writes unless told otherwise.
DEFAULT_URL = "duckdb:///./headwater.duckdb"

#: The URL schemes of the destinations, with what each is.
SCHEMES = {
    "duckdb": "a DuckDB database file",
    "postgresql": "a PostgreSQL database (also postgres://)",
    "parquet": "a directory of Parquet files",
    "jsonl": "a directory of JSON-lines files",
}


@dataclasses.dataclass(frozen=True)
class DestinationURL:
    """A parsed destination URL.

    Attributes:
        scheme: ``duckdb``, ``postgresql``, ``parquet`` or ``jsonl``.
        path: The file or directory (file destinations), or the whole URL (PostgreSQL).
        query: Options from the query string (file destinations).
    """

    scheme: str
    path: str
    query: dict[str, str]

    def __repr__(self) -> str:
        return redact(
            f"DestinationURL(scheme={self.scheme!r}, path={redact_url(self.path)!r}, "
            f"query={self.query!r})"
        )


def parse_url(url: str) -> DestinationURL:
    """Parse a destination URL (see the module docs).

    Raises:
        DestinationError: The URL has no scheme or an unknown one, or no path.
    """
    if not isinstance(url, str) or "://" not in url:
        # Without a scheme there is no telling a password apart: show what follows the '@'.
        shown = f"...@{url.rpartition('@')[2]}" if isinstance(url, str) and "@" in url else url
        raise DestinationError(
            f"destination {shown!r} is not a URL; use one of "
            + ", ".join(f"{scheme}://... ({what})" for scheme, what in SCHEMES.items())
        )
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        # Before anything can show the URL: an error, a log line, the summary.
        register_url_secrets(url, transient=False)
        return DestinationURL("postgresql", url, {})
    if scheme not in SCHEMES:
        raise DestinationError(
            f"destination {redact_url(url)!r}: unknown URL scheme {scheme!r}; use one of "
            + ", ".join(f"{name}:// ({what})" for name, what in SCHEMES.items())
        )
    location, _, query_text = rest.partition("?")
    path = urllib.parse.unquote(location)
    if path in ("/:memory:", ":memory:") and scheme == "duckdb":
        return DestinationURL(scheme, ":memory:", {})
    if path.startswith(("/./", "/../", "/~")) or path in ("/.", "/.."):
        path = path[1:]  # duckdb:///./file.duckdb: relative to the working directory
    if not path or path == "/":
        raise DestinationError(f"destination {redact_url(url)!r} names no file or directory")
    query = dict(urllib.parse.parse_qsl(query_text, keep_blank_values=True, strict_parsing=False))
    return DestinationURL(scheme, path, query)


def open_destination(url: str) -> Destination:
    """Connect to the destination at ``url``.

    Raises:
        DestinationError: The URL is invalid, or the destination cannot be reached, opened or
            locked; the message says which and where.
    """
    parsed = parse_url(url)
    shown = redact_url(url)
    if parsed.scheme == "duckdb":
        _no_options(parsed, shown)
        from headwater.destinations.duckdb import DuckDBDestination

        return DuckDBDestination(str(_expand(parsed.path)), shown)
    if parsed.scheme == "postgresql":
        from headwater.destinations.postgres import PostgresDestination

        return PostgresDestination(parsed.path, shown)
    from headwater.destinations.files import FileDestination

    return FileDestination(_expand(parsed.path), parsed.scheme, parsed.query, shown)


def _expand(path: str) -> str:
    import os

    return os.path.expanduser(path)


def _no_options(parsed: DestinationURL, url: str) -> None:
    if parsed.query:
        raise DestinationError(
            f"destination {url!r}: {parsed.scheme} takes no options, got "
            + ", ".join(sorted(parsed.query))
        )
