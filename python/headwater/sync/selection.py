"""Which tables a sync resolves: :func:`select_tables`, as the CloudQuery Go SDK selects them."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from headwater.errors import TableSelectionError
from headwater.schema import Table

__all__ = ["select_tables"]


def select_tables(
    tables: Sequence[Table],
    include: Iterable[str] = ("*",),
    skip: Iterable[str] = (),
    skip_dependent_tables: bool = False,
) -> list[Table]:
    """The tables a sync resolves, as the CloudQuery Go SDK selects them.

    A table is selected if a pattern of ``include`` matches it, or its parent is selected
    (unless ``skip_dependent_tables``); a parent is selected with any selected child, since a
    child is resolved once per parent row; a table matching ``skip`` is dropped with all its
    children. Patterns are :mod:`fnmatch` globs (``*``, ``?``, ``[...]``).

    Args:
        tables: The plugin's top-level tables.
        include: Patterns of tables to sync.
        skip: Patterns of tables not to sync.
        skip_dependent_tables: Do not sync children of selected tables unless they match
            ``include`` themselves.

    Returns:
        The selected tables, parents before their children.

    Raises:
        TableSelectionError: A pattern matches no table; the message lists the tables.
        TypeError: A pattern is not a str.
    """
    include = _patterns(include, "tables")
    skip = _patterns(skip, "skip_tables")
    every = [t for top in tables for t in top.walk()]
    names = [t.name for t in every]
    for option, patterns in (("tables", include), ("skip_tables", skip)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise TableSelectionError(
                    f"{option} pattern {pattern!r} matches no table; the plugin's tables are "
                    f"{', '.join(names) or '(none)'}"
                )

    def matches(table: Table, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(table.name, p) for p in patterns)

    def visit(table: Table, parent_selected: bool) -> list[Table]:
        if matches(table, skip):
            return []
        selected = matches(table, include) or (parent_selected and not skip_dependent_tables)
        below = [t for child in table.children for t in visit(child, selected)]
        return [table, *below] if selected or below else []

    return [t for top in tables for t in visit(top, False)]


def _patterns(patterns: Iterable[str], option: str) -> list[str]:
    if isinstance(patterns, str):
        return [patterns]
    checked = list(patterns)
    for pattern in checked:
        if not isinstance(pattern, str):
            raise TypeError(
                f"{option} must be a list of table name patterns (str), "
                f"got {type(pattern).__name__} {pattern!r}"
            )
    return checked
