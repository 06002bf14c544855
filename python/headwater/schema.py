"""Tables and columns as a plugin declares them, and their CloudQuery Arrow schema.

A :class:`Table` converts to the Arrow schema CloudQuery expects (:attr:`Table.arrow_schema`):
the internal ``_cq_id`` and ``_cq_parent_id`` columns first, then the table's own columns, with
CloudQuery's field and schema metadata. :meth:`Table.from_arrow_schema` reads one back.

Example:
    >>> import pyarrow as pa
    >>> from headwater.schema import Column, Table
    >>> Table("items", [Column("id", pa.int64(), primary_key=True), Column("name", pa.string())])
    Table('items', [Column('id', int64, primary_key=True), Column('name', string)])
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

import pyarrow as pa

from headwater import types
from headwater.column import Column, ColumnResolver, callable_name, check_name, validate_arrow_type
from headwater.columns import columns_from
from headwater.errors import SchemaError
from headwater.metadata import (
    CQ_ID,
    CQ_PARENT_ID,
    INCREMENTAL,
    TABLE_DEPENDS_ON,
    TABLE_DESCRIPTION,
    TABLE_NAME,
    TABLE_TITLE,
    ColumnDescription,
    column_flags,
    flag,
    schema_metadata,
)

__all__ = [
    "RESERVED_TABLE_PREFIXES",
    "Column",
    "ColumnResolver",
    "Resolver",
    "RowHook",
    "Table",
    "TableDescription",
    "describe_table",
    "reserved_table_prefix",
    "validate_arrow_type",
]

#: A table resolver: ``resolver(client)`` for a top-level table (or ``resolver()``), and
#: ``resolver(client, parent_row)`` for a child table. It yields (or returns) rows, pages of
#: rows, or Arrow data; it may be a generator, an async generator, or a function returning an
#: iterable.
Resolver = Callable[..., Any]
#: ``hook(client, row) -> row | None``: runs for every row; may return a replacement row.
RowHook = Callable[[Any, Any], Any]

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
#: Table name prefixes kept for headwater's own objects in a destination, which a plugin table
#: must not take: ``_headwater_`` (the state table ``_headwater_state`` of DuckDB and
#: PostgreSQL, the files destinations' manifest ``_headwater_state.json``, the Arrow views a
#: DuckDB write registers) and ``_hw_`` (PostgreSQL's key indexes and staging tables, which
#: share the table namespace). Reserving whole prefixes keeps names added later safe too.
RESERVED_TABLE_PREFIXES = ("_headwater_", "_hw_")


def reserved_table_prefix(name: str) -> str | None:
    """The reserved prefix ``name`` starts with (see :data:`RESERVED_TABLE_PREFIXES`), if any."""
    return next((prefix for prefix in RESERVED_TABLE_PREFIXES if name.startswith(prefix)), None)


class Table:
    """A table a plugin syncs: its name, columns and place in the table tree.

    Args:
        name: Table name: lowercase letters, digits and underscores, not starting with a digit
            or a reserved prefix (``_headwater_``, ``_hw_``), at most 63 characters.
        columns: The table's columns, in order; at least one, with distinct names.
        title: Human-readable title; ``""`` when omitted.
        description: Free text for documentation; ``""`` when omitted.
        parent: The parent table of a child (relation) table; the new table is appended to
            ``parent.children``.
        resolver: Fetches the table's rows in a sync (see :data:`Resolver`); usually set with
            the :func:`headwater.table` decorator or :meth:`child`.
        clients: ``clients(client) -> iterable of clients``: runs a top-level table once per
            client (accounts, regions), overriding the plugin's ``clients``.
        pre_row: ``pre_row(client, row)`` runs on every row before the column resolvers; a
            non-``None`` result replaces the row, for this table and for its children.
        post_row: ``post_row(client, row)`` runs on every row after the column resolvers,
            with the row as a dict of column values when there are column resolvers; a
            non-``None`` result replaces what is stored. Children still receive the row as
            the resolver yielded it (or as ``pre_row`` replaced it).
        is_incremental: Whether the table is synced incrementally (CloudQuery's table-level
            ``cq:extension:incremental``, which tells destinations not to delete its stale
            rows). By default, it is when a column is an ``incremental_key`` or the resolver
            takes ``state``.
        strict: Refuse rows with keys (or public instance attributes) that match no column:
            each is a row error naming the table, the unknown keys and the columns, handled
            as ``on_row_error`` says; Arrow data with such columns is a ``SchemaError``. By
            default (``None``: the plugin's ``strict``, else ``False``) such keys and columns
            are dropped silently.

    Attributes:
        children: Child tables, in the order they were created with ``parent=self``.

    Raises:
        SchemaError: An argument is invalid; the message names the table, the column and the
            offending value.
    """

    def __init__(
        self,
        name: str,
        columns: Iterable[Column],
        *,
        title: str | None = None,
        description: str | None = None,
        parent: Table | None = None,
        resolver: Resolver | None = None,
        clients: Callable[[Any], Iterable[Any]] | None = None,
        pre_row: RowHook | None = None,
        post_row: RowHook | None = None,
        is_incremental: bool | None = None,
        strict: bool | None = None,
    ) -> None:
        check_name(
            name,
            kind="table",
            pattern=_TABLE_NAME,
            rule="use lowercase letters, digits and underscores, not starting with a digit",
        )
        where = f"table {name!r}"
        reserved = reserved_table_prefix(name)
        if reserved is not None:
            # Checked before anything is written: such a table would alter headwater's own
            # state or staging tables in the destination.
            raise SchemaError(
                f"{where}: names starting with {reserved!r} are reserved for headwater's "
                "internal tables (incremental state, staging); rename the table"
            )
        self._columns = _check_columns(columns, where=where)
        for option, value in (("title", title), ("description", description)):
            if value is not None and not isinstance(value, str):
                raise SchemaError(
                    f"{where}: {option} must be a str, got {type(value).__name__} {value!r}"
                )
        if parent is not None and not isinstance(parent, Table):
            raise SchemaError(
                f"{where}: parent must be a Table, got {type(parent).__name__} {parent!r}"
            )
        for option, function in (
            ("clients", clients),
            ("pre_row", pre_row),
            ("post_row", post_row),
        ):
            if function is not None and not callable(function):
                raise SchemaError(
                    f"{where}: {option} must be callable, got {type(function).__name__} "
                    f"{function!r}"
                )
        for option, given in (("is_incremental", is_incremental), ("strict", strict)):
            if given is not None and not isinstance(given, bool):
                raise SchemaError(
                    f"{where}: {option} must be a bool (or None), got {type(given).__name__} "
                    f"{given!r}"
                )
        if clients is not None and parent is not None:
            raise SchemaError(
                f"{where}: clients applies to top-level tables; a child table runs with its "
                "parent row's client"
            )
        self._resolver_arity, self._resolver_wants_state = (
            _resolver_arity(resolver, child=parent is not None, where=where)
            if resolver is not None
            else (0, False)
        )
        self.resolver = resolver
        self.clients = clients
        self.pre_row = pre_row
        self.post_row = post_row
        self._strict = strict
        self._is_incremental = (
            is_incremental
            if is_incremental is not None
            else self._resolver_wants_state or any(c.incremental_key for c in self._columns)
        )
        self._name = name
        self._title = title or ""
        self._description = description or ""
        self._parent = parent
        self._parent_name = parent.name if parent is not None else None
        self._by_name = {column.name: column for column in self._columns}
        self.children: list[Table] = []
        if parent is not None:
            parent.children.append(self)

    @property
    def name(self) -> str:
        """The table name."""
        return self._name

    @property
    def columns(self) -> tuple[Column, ...]:
        """The table's own columns, in order (without ``_cq_id`` and ``_cq_parent_id``)."""
        return self._columns

    @property
    def title(self) -> str:
        """Human-readable title, ``""`` if none was given."""
        return self._title

    @property
    def description(self) -> str:
        """Description, ``""`` if none was given."""
        return self._description

    @property
    def parent(self) -> Table | None:
        """The parent table, or ``None`` for a top-level table."""
        return self._parent

    @property
    def parent_name(self) -> str | None:
        """Name of the parent table, or ``None`` for a top-level table.

        Set from ``cq:table_depends_on`` for a table built by :meth:`from_arrow_schema`, whose
        :attr:`parent` is ``None``.
        """
        return self._parent_name

    @property
    def strict(self) -> bool | None:
        """Whether rows with keys or attributes that match no column are refused.

        ``None`` (the default): as the plugin says (:class:`~headwater.Plugin`'s ``strict``),
        and in :func:`~headwater.build_batch`, not strict.
        """
        return self._strict

    @property
    def is_incremental(self) -> bool:
        """Whether the table is synced incrementally (``cq:extension:incremental``).

        As given to the constructor, else whether a column is an ``incremental_key`` or the
        resolver takes ``state``.
        """
        return self._is_incremental

    @property
    def primary_keys(self) -> tuple[str, ...]:
        """Names of the primary-key columns, in column order."""
        return tuple(column.name for column in self._columns if column.primary_key)

    def column(self, name: str) -> Column:
        """Return the column called ``name``.

        Raises:
            KeyError: The table has no such column; the message lists the ones it has.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"table {self._name!r} has no column {name!r}; "
                f"its columns are {', '.join(self._by_name)}"
            ) from None

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The CloudQuery Arrow schema of the table.

        ``_cq_id`` (``uuid``, not null, unique; also the primary key when the table has none)
        and ``_cq_parent_id`` (``uuid``, nullable) come first, then the columns as
        :meth:`Column.to_arrow_field` makes them. The schema metadata holds
        ``cq:table_name``, ``cq:table_title``, ``cq:table_description``,
        ``cq:table_depends_on`` (the parent's name, or ``""``) and, as the official
        CloudQuery SDKs set it, ``cq:extension:incremental`` (``"true"`` or ``"false"``, see
        :attr:`is_incremental`).
        """
        cq_id = pa.field(
            CQ_ID,
            types.uuid(),
            nullable=False,
            metadata=column_flags(
                primary_key=not self.primary_keys, unique=True, incremental=False
            ),
        )
        cq_parent_id = pa.field(
            CQ_PARENT_ID,
            types.uuid(),
            metadata=column_flags(primary_key=False, unique=False, incremental=False),
        )
        return pa.schema(
            [cq_id, cq_parent_id, *(column.to_arrow_field() for column in self._columns)],
            metadata={
                TABLE_NAME: self._name,
                TABLE_TITLE: self._title,
                TABLE_DESCRIPTION: self._description,
                TABLE_DEPENDS_ON: self._parent_name or "",
                INCREMENTAL: flag(self._is_incremental),
            },
        )

    @classmethod
    def from_arrow_schema(cls, schema: pa.Schema) -> Table:
        """Build a table from its CloudQuery Arrow schema, e.g. one of :attr:`arrow_schema`.

        The ``_cq_id`` and ``_cq_parent_id`` fields are dropped (:attr:`arrow_schema` adds them
        back). The table has no :attr:`parent` object, but :attr:`parent_name` is read from
        ``cq:table_depends_on``, and :attr:`is_incremental` from ``cq:extension:incremental``
        (when the schema lacks it, from its columns).

        Args:
            schema: An Arrow schema with at least ``cq:table_name`` metadata.

        Returns:
            The table; ``Table.from_arrow_schema(t.arrow_schema).arrow_schema`` equals
            ``t.arrow_schema``, metadata included.

        Raises:
            SchemaError: ``schema`` is not a ``pa.Schema``, has no table name, or describes an
                invalid table.
        """
        if not isinstance(schema, pa.Schema):
            raise SchemaError(f"expected a pyarrow Schema, got {type(schema).__name__} {schema!r}")
        metadata = schema_metadata(schema)
        name = metadata.get(TABLE_NAME, "")
        if not name:
            raise SchemaError(
                f"Arrow schema with fields {', '.join(schema.names)} has no "
                f"{TABLE_NAME!r} metadata; it is not a CloudQuery table schema"
            )
        columns: list[Column] = []
        for field in schema:
            if field.name in (CQ_ID, CQ_PARENT_ID):
                continue
            try:
                columns.append(Column.from_arrow_field(field))
            except SchemaError as exc:
                raise SchemaError(f"table {name!r}, {exc}") from exc
        incremental = metadata.get(INCREMENTAL)
        table = cls(
            name,
            columns,
            title=metadata.get(TABLE_TITLE),
            description=metadata.get(TABLE_DESCRIPTION),
            is_incremental=None if incremental is None else incremental == "true",
        )
        table._parent_name = metadata.get(TABLE_DEPENDS_ON) or None
        return table

    @property
    def resolver_arity(self) -> int:
        """How many arguments the resolver is called with.

        0 or 1 (the client) for a top-level table, 2 (client, parent row) for a child table.
        """
        return self._resolver_arity

    @property
    def resolver_wants_state(self) -> bool:
        """Whether the resolver takes a ``state`` argument (incremental state, by keyword)."""
        return self._resolver_wants_state

    @property
    def column_resolvers(self) -> tuple[Column, ...]:
        """The columns that have a :attr:`Column.resolver`."""
        return tuple(column for column in self._columns if column.resolver is not None)

    def walk(self) -> Iterable[Table]:
        """This table and all its descendants, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()

    def child(
        self,
        name: str,
        columns: Iterable[Column] | None = None,
        *,
        model: type[Any] | None = None,
        primary_keys: Iterable[str] = (),
        title: str | None = None,
        description: str | None = None,
        pre_row: RowHook | None = None,
        post_row: RowHook | None = None,
        is_incremental: bool | None = None,
        strict: bool | None = None,
    ) -> Callable[[Resolver], Table]:
        """Decorator: make the decorated function the resolver of a new child table.

        The resolver is called once per row of this table, as ``resolver(client, row)``,
        with the row exactly as this table's resolver yielded it: the same object, with its
        attributes that are not columns, whatever column resolvers and ``post_row`` derive
        from it to store. Only this table's ``pre_row`` comes first: a row it replaces is
        passed on replaced (it is the plugin's own normalisation). The child rows get that
        row's ``_cq_id`` as ``_cq_parent_id``.

        Args:
            name: The child table's name.
            columns: Its columns; or give ``model`` instead.
            model: A pydantic model or dataclass to derive the columns from
                (:func:`headwater.columns_from`).
            primary_keys: With ``model``: extra primary-key field names.
            title: Human-readable title.
            description: Free text for documentation.
            pre_row: See :class:`Table`.
            post_row: See :class:`Table`.
            is_incremental: See :class:`Table`.
            strict: See :class:`Table`.

        Returns:
            A decorator that returns the new :class:`Table`.
        """
        columns = table_columns(name, columns, model, primary_keys)

        def decorate(resolver: Resolver) -> Table:
            return Table(
                name,
                columns,
                title=title,
                description=description,
                parent=self,
                resolver=resolver,
                pre_row=pre_row,
                post_row=post_row,
                is_incremental=is_incremental,
                strict=strict,
            )

        return decorate

    def __repr__(self) -> str:
        parent = f", parent={self._parent_name!r}" if self._parent_name else ""
        return f"Table({self._name!r}, {list(self._columns)!r}{parent})"


def _check_columns(columns: Iterable[Column], *, where: str) -> tuple[Column, ...]:
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Iterable):
        raise SchemaError(
            f"{where}: columns must be a list of Column, got {type(columns).__name__} {columns!r}"
        )
    checked = tuple(columns)
    if not checked:
        raise SchemaError(f"{where}: a table needs at least one column, got none")
    positions: dict[str, int] = {}
    for index, column in enumerate(checked):
        if not isinstance(column, Column):
            raise SchemaError(
                f"{where}: columns[{index}] must be a Column, "
                f"got {type(column).__name__} {column!r}"
            )
        if column.name in positions:
            raise SchemaError(
                f"{where}, column {column.name!r}: duplicate column name {column.name!r} "
                f"at columns[{positions[column.name]}] and columns[{index}]"
            )
        positions[column.name] = index
    return checked


def table_columns(
    name: str,
    columns: Iterable[Column] | None,
    model: type[Any] | None,
    primary_keys: Iterable[str],
) -> list[Column]:
    """The columns of a table declared with either ``columns`` or a ``model``."""
    if (columns is None) == (model is None):
        raise SchemaError(
            f"table {name!r}: pass either columns=[...] or model=SomeModel, "
            + ("not both" if model is not None else "got neither")
        )
    if model is not None:
        return columns_from(model, primary_keys=primary_keys)
    primary_keys = list(primary_keys)
    if primary_keys:
        raise SchemaError(
            f"table {name!r}: primary_keys={primary_keys!r} applies to model=; mark columns "
            "with Column(..., primary_key=True)"
        )
    assert columns is not None
    return list(columns)


def _resolver_arity(resolver: object, *, child: bool, where: str) -> tuple[int, bool]:
    """How to call a resolver, checked against its signature.

    Returns:
        How many positional arguments it takes, and whether it takes ``state``.
    """
    if not callable(resolver):
        raise SchemaError(
            f"{where}: resolver must be callable, got {type(resolver).__name__} {resolver!r}"
        )
    expected = "resolver(client, parent_row)" if child else "resolver(client) or resolver()"
    try:
        signature = inspect.signature(resolver)
    except (TypeError, ValueError):
        return (2 if child else 1), False  # a builtin or C callable: trust it
    wants_state = "state" in signature.parameters and signature.parameters["state"].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "state"
    ]
    required = [p for p in positional if p.default is p.empty]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    wanted = 2 if child else (1 if positional or variadic else 0)
    if len(required) > wanted or (len(positional) < wanted and not variadic):
        raise SchemaError(
            f"{where}: the resolver {callable_name(resolver)}{signature} cannot be called as "
            f"{expected}"
        )
    return wanted, wants_state


@dataclasses.dataclass(frozen=True)
class TableDescription:
    """A table as listings show it (``headwater tables``, the package's ``tables.json``).

    Attributes:
        name: The table's name.
        title: Its title, ``""`` if none.
        description: Its description, ``""`` if none.
        is_incremental: Whether it syncs incrementally.
        parent: The parent table's name, ``None`` for a top-level table.
        children: The child tables' names, in order.
        columns: Every field of its CloudQuery Arrow schema (``_cq_id`` and ``_cq_parent_id``
            first), as its metadata describes it.
    """

    name: str
    title: str
    description: str
    is_incremental: bool
    parent: str | None
    children: tuple[str, ...]
    columns: tuple[ColumnDescription, ...]


def describe_table(table: Table) -> TableDescription:
    """Describe ``table`` from its CloudQuery Arrow schema (:attr:`Table.arrow_schema`)."""
    return TableDescription(
        name=table.name,
        title=table.title,
        description=table.description,
        is_incremental=table.is_incremental,
        parent=table.parent_name,
        children=tuple(child.name for child in table.children),
        columns=tuple(ColumnDescription.of(field) for field in table.arrow_schema),
    )
