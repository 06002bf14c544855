"""CloudQuery's Arrow metadata: the keys a table schema and its fields carry, and reading them.

The one place that names them: :class:`~headwater.schema.Table` and
:class:`~headwater.column.Column` write them, the table listings (``headwater tables``, the
package's ``tables.json``) and the gRPC destination read them through
:class:`ColumnDescription` and :func:`table_name_of`. The keys are those of
``rust/headwater-core/src/schema.rs`` and CloudQuery's Go SDK.

Example:
    >>> import pyarrow as pa
    >>> from headwater.metadata import PRIMARY_KEY, ColumnDescription
    >>> field = pa.field("id", pa.int64(), nullable=False, metadata={PRIMARY_KEY: "true"})
    >>> description = ColumnDescription.of(field)
    >>> description.primary_key, description.unique, description.not_null
    (True, False, True)
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

__all__ = [
    "CQ_ID",
    "CQ_PARENT_ID",
    "DESCRIPTION",
    "INCREMENTAL",
    "PRIMARY_KEY",
    "TABLE_DEPENDS_ON",
    "TABLE_DESCRIPTION",
    "TABLE_NAME",
    "TABLE_TITLE",
    "UNIQUE",
    "ColumnDescription",
    "column_flags",
    "flag",
    "schema_metadata",
    "table_name_of",
]

#: The row's record ID: a uuid, derived from the primary key (random without one).
CQ_ID = "_cq_id"
#: The parent row's ``_cq_id`` in a child table; null in a top-level table.
CQ_PARENT_ID = "_cq_parent_id"

#: Schema metadata: the table's name.
TABLE_NAME = "cq:table_name"
#: Schema metadata: the table's human-readable title.
TABLE_TITLE = "cq:table_title"
#: Schema metadata: the table's description.
TABLE_DESCRIPTION = "cq:table_description"
#: Schema metadata: the parent table's name, ``""`` for a top-level table.
TABLE_DEPENDS_ON = "cq:table_depends_on"
#: Field metadata: part of the primary key (``"true"``/``"false"``).
PRIMARY_KEY = "cq:extension:primary_key"
#: Field metadata: values are unique (``"true"``/``"false"``).
UNIQUE = "cq:extension:unique"
#: Field metadata: an incremental cursor; schema metadata: the table syncs incrementally.
INCREMENTAL = "cq:extension:incremental"
#: Field metadata (headwater's own): the column's description.
DESCRIPTION = "headwater:description"

_TRUE = b"true"


def flag(value: bool) -> str:
    """``value`` as CloudQuery's metadata spells a boolean."""
    return "true" if value else "false"


def column_flags(*, primary_key: bool, unique: bool, incremental: bool) -> dict[str, str]:
    """The field metadata of CloudQuery's three column options."""
    return {PRIMARY_KEY: flag(primary_key), UNIQUE: flag(unique), INCREMENTAL: flag(incremental)}


def schema_metadata(schema: pa.Schema) -> dict[str, str]:
    """``schema``'s metadata decoded to text (bytes that are not UTF-8 replaced)."""
    return {
        key.decode(errors="replace"): value.decode(errors="replace")
        for key, value in (schema.metadata or {}).items()
    }


def table_name_of(schema: pa.Schema) -> str | None:
    """The table name a schema carries (``cq:table_name``), or ``None`` without one."""
    name = (schema.metadata or {}).get(TABLE_NAME.encode())
    return bytes(name).decode() if name else None


@dataclasses.dataclass(frozen=True)
class ColumnDescription:
    """What an Arrow field of a CloudQuery schema says about its column.

    Missing metadata reads as ``False`` and no description, as in CloudQuery's SDKs.

    Attributes:
        name: The field's name (``_cq_id`` and ``_cq_parent_id`` included).
        type: Its Arrow type.
        primary_key: ``cq:extension:primary_key`` is ``"true"``.
        unique: ``cq:extension:unique`` is ``"true"``.
        not_null: The field is not nullable.
        incremental_key: ``cq:extension:incremental`` is ``"true"``.
        description: ``headwater:description``, or ``""``.
    """

    name: str
    type: pa.DataType
    primary_key: bool
    unique: bool
    not_null: bool
    incremental_key: bool
    description: str

    @classmethod
    def of(cls, field: pa.Field) -> ColumnDescription:
        """Read the description of ``field``."""
        metadata = field.metadata or {}
        return cls(
            name=field.name,
            type=field.type,
            primary_key=metadata.get(PRIMARY_KEY.encode()) == _TRUE,
            unique=metadata.get(UNIQUE.encode()) == _TRUE,
            not_null=not field.nullable,
            incremental_key=metadata.get(INCREMENTAL.encode()) == _TRUE,
            description=metadata.get(DESCRIPTION.encode(), b"").decode(),
        )
