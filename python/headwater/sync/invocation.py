"""How the engine calls a table's code: its resolver and its row hooks.

:func:`invoker` passes a resolver the arguments its signature takes; :func:`row_hooks` makes
the hooks the engine runs on each row (``pre_row``, the column resolvers, ``post_row``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from headwater.schema import RowHook, Table

__all__ = ["invoker", "row_hooks"]


def invoker(table: Table) -> Callable[..., Any]:
    """The function the engine calls to run a table's resolver.

    ``invoke(client, parent_row)``, or ``invoke(client, parent_row, state)`` when the resolver
    takes ``state``: it passes the resolver the arguments its signature takes. The engine
    applies the row hooks (:func:`row_hooks`) to each row it yields.
    """
    resolver = table.resolver
    if resolver is None:
        raise ValueError(f"table {table.name!r} has no resolver")
    call: Callable[..., Any]
    if table.resolver_wants_state:
        if table.resolver_arity == 0:

            def call(client: Any, parent: Any, state: Any) -> Any:
                return resolver(state=state)

        elif table.resolver_arity == 1:

            def call(client: Any, parent: Any, state: Any) -> Any:
                return resolver(client, state=state)

        else:

            def call(client: Any, parent: Any, state: Any) -> Any:
                return resolver(client, parent, state=state)

    elif table.resolver_arity == 0:

        def call(client: Any, parent: Any) -> Any:
            return resolver()

    elif table.resolver_arity == 1:

        def call(client: Any, parent: Any) -> Any:
            return resolver(client)

    else:
        call = resolver
    return call


def row_hooks(table: Table, *, strict: bool = False) -> tuple[RowHook | None, RowHook | None]:
    """The hooks the engine runs on each row of ``table``: ``(pre_row, derive)``.

    Each is called as ``hook(client, row)``, and a result other than ``None`` replaces the
    row. ``pre_row`` is the table's own: what it returns is stored and passed to the children.
    ``derive`` makes what is stored from that: the column resolvers' values (see
    :class:`_ColumnValues`), then ``post_row``; the children still receive the row.
    """
    if table.column_resolvers:
        return table.pre_row, _ColumnValues(table, strict=strict).derive
    return table.pre_row, table.post_row


class _ColumnValues:
    """A table's column resolvers and ``post_row``, applied to a row."""

    def __init__(self, table: Table, *, strict: bool) -> None:
        self._post = table.post_row
        self._resolvers = table.column_resolvers
        self._names = [column.name for column in table.columns]
        self._strict = strict

    def derive(self, client: Any, row: Any) -> Any:
        """What to store for ``row``: its column values with the resolvers' (post_row applied)."""
        values = self._values(row)
        if values is not None:
            for column in self._resolvers:
                assert column.resolver is not None
                values[column.name] = column.resolver(client, row)
            row = values
        if self._post is not None:
            replaced = self._post(client, row)
            if replaced is not None:
                row = replaced
        return row

    def _values(self, row: Any) -> dict[str, Any] | None:
        """The row as a dict of column values; ``None`` if it is no row.

        The engine then reports the row as it is. For a strict table, an object's public
        instance attributes come along, so that those matching no column are reported.
        """
        if isinstance(row, dict):
            return dict(row)
        if isinstance(row, (tuple, list)):
            if len(row) != len(self._names):
                return None
            return dict(zip(self._names, row, strict=True))
        if row is None or isinstance(row, (str, bytes, int, float)):
            return None
        values = {name: getattr(row, name, None) for name in self._names}
        if self._strict:
            attributes = getattr(row, "__dict__", None)
            if isinstance(attributes, dict):
                extra = {k: v for k, v in attributes.items() if not str(k).startswith("_")}
                values = {**extra, **values}
        return values
