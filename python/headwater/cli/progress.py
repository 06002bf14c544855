"""The live progress display of ``headwater sync`` and its final summary table (rich).

The display shows, per table, the rows written, rows/s, errors and the elapsed time. It is
redrawn by rich's own refresh thread from counters the sync updates, so a slow resolver does not
freeze it.

Registered secrets (:mod:`headwater.redaction`) never show: every text the display and the
summary draw is redacted, and so is whatever is written to ``sys.stdout`` and ``sys.stderr``
while the display runs (log lines, a resolver's ``print``), before rich lays it out above the
table (where wrapping could split a secret over two lines).
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from rich.console import Console
from rich.live import Live
from rich.table import Table as RichTable

from headwater.redaction import redact

if TYPE_CHECKING:
    from headwater.destinations.run import LocalSyncResult

__all__ = ["LiveProgress", "summary_table"]


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


class _Redacting:
    """A text stream that writes through to another with registered secrets masked.

    Put over rich's redirection of ``sys.stdout``/``sys.stderr``: rich's console finds the
    real stream through ``rich_proxied_file`` and so never writes into this one.
    """

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    @property
    def inner(self) -> TextIO:
        """The stream written to."""
        return self._inner

    def write(self, text: str) -> int:
        """Write ``text``, secrets masked; returns the length of ``text``."""
        self._inner.write(redact(text))
        return len(text)

    @property
    def rich_proxied_file(self) -> Any:
        """The stream rich's console draws on (the terminal behind rich's proxy)."""
        return getattr(self._inner, "rich_proxied_file", self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # flush, fileno, isatty, encoding...


class LiveProgress:
    """A :class:`~headwater.destinations.run.ProgressListener` drawing a live table.

    Use it as a context manager around the sync.

    Args:
        console: Where to draw (a terminal).
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._rows: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._started = time.perf_counter()
        self._live = Live(
            self, console=console, refresh_per_second=4, transient=True, redirect_stderr=True
        )

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        # After rich has put its proxies in place, so that text is redacted before rich
        # wraps it to the terminal's width.
        sys.stdout = cast(TextIO, _Redacting(sys.stdout))
        sys.stderr = cast(TextIO, _Redacting(sys.stderr))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _Redacting):
                setattr(sys, name, stream.inner)
        self._live.__exit__(None, None, None)

    def started(self, tables: list[str]) -> None:
        """Show a line per table."""
        self._started = time.perf_counter()
        for name in tables:
            self._rows.setdefault(name, 0)
            self._errors.setdefault(name, 0)

    def wrote(self, table: str, rows: int) -> None:
        """Count rows written."""
        now = time.perf_counter()
        self._first.setdefault(table, now)
        self._last[table] = now
        self._rows[table] = self._rows.get(table, 0) + rows

    def failed(self, table: str, message: str) -> None:
        """Count a failed resolver."""
        self._errors[table] = self._errors.get(table, 0) + 1

    def __rich__(self) -> RichTable:
        elapsed = time.perf_counter() - self._started
        table = RichTable(title=f"syncing ({elapsed:,.1f} s)", title_justify="left")
        for column in ("table", "rows", "rows/s", "errors", "elapsed"):
            table.add_column(column, justify="left" if column == "table" else "right")
        for name, rows in list(self._rows.items()):
            errors = self._errors.get(name, 0)
            # A table's time runs from the sync's start to its latest rows.
            seconds = self._last.get(name, self._started) - self._started
            table.add_row(
                redact(name),
                f"{rows:,}",
                _rate(rows, seconds),
                f"[red]{errors}[/red]" if errors else "0",
                f"{seconds:,.1f} s",
            )
        return table


def summary_table(result: LocalSyncResult) -> RichTable:
    """The final summary: rows, rows/s, errors and skipped rows per table, and the totals."""
    seconds = result.duration
    table = RichTable(
        title=redact(f"synced into {result.url} in {seconds:,.2f} s"), title_justify="left"
    )
    for column in ("table", "rows", "rows/s", "errors", "skipped rows"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name in result.tables:
        errors = result.errors.get(name, 0)
        table.add_row(
            redact(name),
            f"{result.rows.get(name, 0):,}",
            _rate(result.rows.get(name, 0), seconds),
            f"[red]{errors}[/red]" if errors else "0",
            f"{result.skipped_rows.get(name, 0):,}",
        )
    table.add_section()
    table.add_row(
        "total",
        f"{result.total_rows:,}",
        _rate(result.total_rows, seconds),
        str(sum(result.errors.values())),
        f"{sum(result.skipped_rows.values()):,}",
    )
    return table


def print_summary(result: LocalSyncResult, stream: IO[str]) -> None:
    """Print :func:`summary_table` to ``stream`` (plain text when it is not a terminal)."""
    Console(file=stream, highlight=False, width=max(100, Console(file=stream).width)).print(
        summary_table(result)
    )
