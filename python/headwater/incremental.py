"""Incremental syncs: high-water marks (``updated_since`` cursors) on top of the sync's state.

A :class:`Cursor` keeps the highest value of a field (``updated_at``, an id, a sequence
number) that a resolver delivered, in the sync's state under a key of its table and client
(state keys are scoped that way), so the next sync asks the API only for what changed since.
It advances only behind the rows it covers: :meth:`Cursor.track` yields each page first and
records the page's highest value after, and the engine delivers that state update only after
the page's rows and every row their child tables produced, so a destination (or the CloudQuery
state backend) that stores it with the rows never holds a cursor past data it lacks.
It works the same in a gRPC sync served to the CloudQuery CLI and in a local sync.

Example:
    >>> import pyarrow as pa
    >>> import headwater as hw
    >>> from headwater.incremental import Cursor
    >>> EVENTS = [{"id": i, "updated_at": f"2026-01-0{i}T00:00:00Z"} for i in (1, 2, 3)]
    >>> @hw.table("events", columns=[hw.Column("id", pa.int64(), primary_key=True)])
    ... def events(client, state):
    ...     cursor = Cursor(state, "updated_at")
    ...     since = cursor.since_text or ""
    ...     changed = [e for e in EVENTS if e["updated_at"] > since]
    ...     yield from cursor.track([changed] if changed else [], field="updated_at")
    >>> run = hw.Plugin(name="demo", version="1", tables=[events]).sync()
    >>> _ = list(run)
    >>> run.state
    {'events/default/updated_at': '2026-01-03T00:00:00Z'}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Literal

from headwater.sync import State

__all__ = ["Cursor", "CursorKind"]

#: How a cursor's values compare and are stored.
CursorKind = Literal["datetime", "int", "str"]


class Cursor:
    """A high-water mark of one table and client, kept in the sync's state.

    Args:
        state: The resolver's ``state`` argument.
        name: What the cursor tracks; part of its state key
            ``"{table}/{client}/{name}"``. Give distinct names to distinct listings of one
            resolver (one per parent row of a child table, say: ``f"issues-{project_id}"``).
        kind: ``datetime`` (timestamps, ISO 8601 strings or ``datetime`` objects; naive ones
            are UTC), ``int``, or ``str`` (compared as text).
        start: Where a first sync starts (``None``: from the beginning).
        lookback: For ``datetime`` cursors, how far before the mark :attr:`since` starts, for
            APIs whose updates become visible late (a ``timedelta`` or seconds).

    Raises:
        ValueError: The stored value does not parse as ``kind``; the message names the key.
    """

    def __init__(
        self,
        state: State,
        name: str = "cursor",
        *,
        kind: CursorKind = "datetime",
        start: Any = None,
        lookback: dt.timedelta | float = 0.0,
    ) -> None:
        if kind not in ("datetime", "int", "str"):
            raise ValueError(f"cursor kind must be 'datetime', 'int' or 'str', not {kind!r}")
        self.state = state
        self.kind: CursorKind = kind
        self.name = name
        #: The key the mark is stored under (see :data:`headwater.sync.State`).
        self.key = state.stored_key(name)
        self.lookback = (
            lookback if isinstance(lookback, dt.timedelta) else dt.timedelta(seconds=lookback)
        )
        stored = state.get(name)
        self.start: Any = (
            self._parse(stored, "the stored state")
            if stored is not None
            else (None if start is None else self._parse(start, "start"))
        )
        #: The highest value seen so far (recorded or not).
        self.value: Any = self.start
        self._recorded: Any = self.start

    def __repr__(self) -> str:
        return f"Cursor({self.key!r}, since={self.since_text!r}, value={self.format(self.value)!r})"

    @property
    def since(self) -> Any:
        """Where this sync starts: the stored mark (less ``lookback``), or ``start``."""
        if self.start is None:
            return None
        if self.kind == "datetime" and self.lookback:
            return self.start - self.lookback
        return self.start

    @property
    def since_text(self) -> str | None:
        """:attr:`since` as text for a query parameter (ISO 8601 with ``Z`` for datetimes)."""
        return self.format(self.since)

    def format(self, value: Any) -> str | None:
        """A value of the cursor as stored in the state."""
        if value is None:
            return None
        if self.kind == "datetime":
            text: str = value.astimezone(dt.UTC).isoformat()
            return text.removesuffix("+00:00") + "Z"
        return str(value)

    def _parse(self, value: Any, what: str) -> Any:
        try:
            if self.kind == "int":
                if isinstance(value, bool):
                    raise TypeError("a bool is not a cursor value")
                return int(value)
            if self.kind == "str":
                if not isinstance(value, str):
                    raise TypeError(f"expected str, got {type(value).__name__}")
                return value
            if isinstance(value, dt.datetime):
                moment = value
            elif isinstance(value, str):
                text = value.strip()
                if text.endswith(("Z", "z")):
                    text = text[:-1] + "+00:00"
                moment = dt.datetime.fromisoformat(text)
            else:
                raise TypeError(f"expected a datetime or ISO 8601 str, got {type(value).__name__}")
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        except (TypeError, ValueError) as exc:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ValueError(
                f"cursor {self.key!r}: {what} {shown} is not a valid {self.kind} ({exc})"
            ) from None

    def observe(self, value: Any) -> None:
        """Take in one row's value of the tracked field (``None`` is ignored)."""
        if value is None:
            return
        parsed = self._parse(value, "value")
        if self.value is None or parsed > self.value:
            self.value = parsed

    def observe_rows(self, rows: Iterable[Any], field: str) -> None:
        """Take in ``field`` of every row (dict keys or attributes)."""
        for row in rows:
            self.observe(row.get(field) if isinstance(row, Mapping) else getattr(row, field, None))

    def commit(self) -> None:
        """Record the highest value seen in the state, if it moved.

        The update reaches the destination after every row the resolver yielded before this
        call, so call it after yielding the rows it covers.
        """
        if self.value is not None and (self._recorded is None or self.value > self._recorded):
            text = self.format(self.value)
            assert text is not None
            self.state.set(self.name, text)
            self._recorded = self.value

    def track(
        self, pages: Iterable[Any], field: str, *, commit_each_page: bool = True
    ) -> Iterator[Any]:
        """Yield ``pages`` (lists of rows, or single rows), advancing the cursor behind them.

        With ``commit_each_page`` the mark is recorded after each page, which is right when
        the API returns rows in ascending order of ``field`` (ask it to sort); otherwise pass
        ``False`` and it is recorded once, after the last page.
        """
        for page in pages:
            yield page
            self.observe_rows(page if isinstance(page, list) else [page], field)
            if commit_each_page:
                self.commit()
        self.commit()

    async def track_async(
        self, pages: AsyncIterable[Any], field: str, *, commit_each_page: bool = True
    ) -> AsyncIterator[Any]:
        """:meth:`track` for an async iterable of pages (``AsyncClient.paginate``)."""
        async for page in pages:
            yield page
            self.observe_rows(page if isinstance(page, list) else [page], field)
            if commit_each_page:
                self.commit()
        self.commit()
