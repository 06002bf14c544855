"""One column of a table: a name, an Arrow type and CloudQuery's column options.

:class:`Column` is re-exported by :mod:`headwater.schema` and :mod:`headwater`. It lives apart
from :class:`~headwater.schema.Table` so that :func:`headwater.columns_from`, which makes
columns, and ``Table``, which takes them from a model through it, import it without importing
each other.

Example:
    >>> import pyarrow as pa
    >>> from headwater.column import Column
    >>> Column("id", pa.int64(), primary_key=True)
    Column('id', int64, primary_key=True)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from headwater import types
from headwater.errors import SchemaError
from headwater.metadata import DESCRIPTION, ColumnDescription, column_flags

__all__ = ["Column", "ColumnResolver", "callable_name", "check_name", "validate_arrow_type"]

#: ``resolver(client, row) -> value``: computes a column's value from the row a table's
#: resolver yielded.
ColumnResolver = Callable[[Any, Any], Any]

# PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes.
_MAX_NAME_LENGTH = 63
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_PREFIX = "_cq_"

_SUPPORTED_TYPES = (
    "int8/16/32/64, uint8/16/32/64, float32, float64, bool, string, large_string, binary, "
    "large_binary, fixed_size_binary, date32, date64, time32, time64, timestamp, duration, "
    "decimal128, list and large_list of a supported type, struct of supported fields, map of "
    "supported key and value types, and headwater.types.uuid(), json(), inet() and mac()"
)
_HEADWATER_EXTENSIONS = {
    t.extension_name: t for t in (types.uuid(), types.json(), types.inet(), types.mac())
}


@dataclasses.dataclass(frozen=True, repr=False)
class Column:
    """One column of a table: a name, an Arrow type and CloudQuery's column options.

    Columns are immutable and validated on construction.

    Attributes:
        name: Column name: letters, digits and underscores, not starting with a digit, at most
            63 characters, not starting with the reserved ``_cq_``.
        type: The Arrow type, e.g. ``pa.int64()`` or ``headwater.types.uuid()``.
        primary_key: Part of the table's primary key (and of ``_cq_id``). As in CloudQuery, this
            does not make the column ``not_null``.
        unique: Values are unique.
        not_null: Values are never null; the Arrow field is then not nullable.
        incremental_key: The column is a cursor of incremental syncs.
        description: Free text for documentation; stored as ``headwater:description``.
        resolver: Computes the column from each row in a sync: ``resolver(client, row)``,
            where ``row`` is what the table's resolver yielded (or the table's ``pre_row``
            returned in its place). Its result replaces whatever the row holds for this column
            in what is stored; child tables still receive the row itself. Not part of the
            schema.
    """

    name: str
    type: pa.DataType
    _: dataclasses.KW_ONLY
    primary_key: bool = False
    unique: bool = False
    not_null: bool = False
    incremental_key: bool = False
    description: str = ""
    resolver: ColumnResolver | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_name(
            self.name,
            kind="column",
            pattern=_COLUMN_NAME,
            rule="use letters, digits and underscores, not starting with a digit",
        )
        where = f"column {self.name!r}"
        if self.name.startswith(_RESERVED_PREFIX):
            raise SchemaError(
                f"{where}: names starting with {_RESERVED_PREFIX!r} are reserved for "
                "CloudQuery's internal columns"
            )
        validate_arrow_type(self.type, where=where)
        for option in ("primary_key", "unique", "not_null", "incremental_key"):
            value = getattr(self, option)
            if not isinstance(value, bool):
                raise SchemaError(
                    f"{where}: {option} must be a bool, got {type(value).__name__} {value!r}"
                )
        if not isinstance(self.description, str):
            raise SchemaError(
                f"{where}: description must be a str, "
                f"got {type(self.description).__name__} {self.description!r}"
            )
        if self.resolver is not None and not callable(self.resolver):
            raise SchemaError(
                f"{where}: resolver must be callable as resolver(client, row), "
                f"got {type(self.resolver).__name__} {self.resolver!r}"
            )

    def __repr__(self) -> str:
        options = [
            f"{option}=True"
            for option in ("primary_key", "unique", "not_null", "incremental_key")
            if getattr(self, option)
        ]
        if self.description:
            options.append(f"description={self.description!r}")
        if self.resolver is not None:
            options.append(f"resolver={callable_name(self.resolver)}")
        type_label = types.extension_name(self.type) or str(self.type)
        return f"Column({', '.join([repr(self.name), type_label, *options])})"

    def to_arrow_field(self) -> pa.Field:
        """Return the column as an Arrow field carrying CloudQuery's metadata.

        Returns:
            A field that is nullable unless ``not_null``, with ``cq:extension:primary_key``,
            ``cq:extension:unique`` and ``cq:extension:incremental`` set to ``"true"`` or
            ``"false"``, and ``headwater:description`` when there is a description.
        """
        metadata = column_flags(
            primary_key=self.primary_key,
            unique=self.unique,
            incremental=self.incremental_key,
        )
        if self.description:
            metadata[DESCRIPTION] = self.description
        return pa.field(self.name, self.type, nullable=not self.not_null, metadata=metadata)

    @classmethod
    def from_arrow_field(cls, field: pa.Field) -> Column:
        """Build a column from an Arrow field, reading CloudQuery's metadata.

        Args:
            field: An Arrow field, e.g. one of :meth:`to_arrow_field`. Missing metadata means
                ``False`` and no description.

        Returns:
            The column.

        Raises:
            SchemaError: ``field`` is not a ``pa.Field``, or its name or type is invalid.
        """
        if not isinstance(field, pa.Field):
            raise SchemaError(f"expected a pyarrow Field, got {type(field).__name__} {field!r}")
        described = ColumnDescription.of(field)
        return cls(
            field.name,
            field.type,
            primary_key=described.primary_key,
            unique=described.unique,
            not_null=described.not_null,
            incremental_key=described.incremental_key,
            description=described.description,
        )


def validate_arrow_type(data_type: pa.DataType, *, where: str) -> None:
    """Check that CloudQuery destinations can store ``data_type``, nested types included.

    Args:
        data_type: The Arrow type of a column.
        where: What holds the type, to start the error message, e.g. ``"column 'tags'"``.

    Raises:
        SchemaError: ``data_type`` is not a ``pa.DataType``, or it (or a type nested in it) is
            not supported. The message names ``where``, the nested path and the offending type.
    """
    if not isinstance(data_type, pa.DataType):
        raise SchemaError(
            f"{where}: the type must be a pyarrow DataType such as pa.int64(), "
            f"got {type(data_type).__name__} {data_type!r}"
        )
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        validate_arrow_type(data_type.value_type, where=f"{where}, list item")
    elif pa.types.is_struct(data_type):
        for index in range(data_type.num_fields):
            field = data_type.field(index)
            validate_arrow_type(field.type, where=f"{where}, struct field {field.name!r}")
    elif pa.types.is_map(data_type):
        validate_arrow_type(data_type.key_type, where=f"{where}, map key")
        validate_arrow_type(data_type.item_type, where=f"{where}, map value")
    elif not (_is_supported_primitive(data_type) or _is_headwater_extension(data_type)):
        raise SchemaError(
            f"{where}: unsupported Arrow type {data_type}{_suggestion(data_type)}. "
            f"Supported types: {_SUPPORTED_TYPES}"
        )


def _is_headwater_extension(data_type: pa.DataType) -> bool:
    # Compared by what goes over the wire, not by class: a reloaded module or another SDK's
    # identical type serialises the same way.
    if not isinstance(data_type, pa.ExtensionType):
        return False
    ours = _HEADWATER_EXTENSIONS.get(data_type.extension_name)
    return (
        ours is not None
        and data_type.storage_type == ours.storage_type
        and data_type.__arrow_ext_serialize__() == ours.__arrow_ext_serialize__()
    )


def _is_supported_primitive(data_type: pa.DataType) -> bool:
    return any(
        check(data_type)
        for check in (
            pa.types.is_integer,
            pa.types.is_float32,
            pa.types.is_float64,
            pa.types.is_boolean,
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_fixed_size_binary,
            pa.types.is_date32,
            pa.types.is_date64,
            pa.types.is_time32,
            pa.types.is_time64,
            pa.types.is_timestamp,
            pa.types.is_duration,
            pa.types.is_decimal128,
        )
    )


def _suggestion(data_type: pa.DataType) -> str:
    name = types.extension_name(data_type)
    if name == "arrow.uuid":
        return " (pyarrow's canonical UUID; CloudQuery's is headwater.types.uuid())"
    if name == "arrow.json":
        return " (pyarrow's canonical JSON; CloudQuery's is headwater.types.json())"
    if pa.types.is_float16(data_type):
        return " (use pa.float32())"
    if pa.types.is_dictionary(data_type):
        return f" (use its value type, {data_type.value_type})"
    if pa.types.is_fixed_size_list(data_type):
        return f" (use pa.list_({data_type.value_type}))"
    if pa.types.is_decimal(data_type) and data_type.precision <= 38:
        return f" (use pa.decimal128({data_type.precision}, {data_type.scale}))"
    return ""


def check_name(name: object, *, kind: str, pattern: re.Pattern[str], rule: str) -> None:
    """Refuse a table or column name that does not match ``pattern`` or is too long."""
    if not isinstance(name, str):
        raise SchemaError(f"{kind} name must be a str, got {type(name).__name__} {name!r}")
    if pattern.fullmatch(name) is None:
        raise SchemaError(f"{kind} {name!r}: invalid name; {rule}")
    if len(name) > _MAX_NAME_LENGTH:
        raise SchemaError(
            f"{kind} {name!r}: name is {len(name)} characters long; the limit is "
            f"{_MAX_NAME_LENGTH}, PostgreSQL's identifier length limit"
        )


def callable_name(function: Callable[..., Any]) -> str:
    """How messages and reprs name a resolver or hook."""
    return getattr(function, "__qualname__", None) or type(function).__name__
