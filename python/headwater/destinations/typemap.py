"""Arrow types of CloudQuery schemas, as each destination stores them.

Every conversion here works on whole Arrow arrays (a zero-copy reinterpretation, an Arrow cast or
an Arrow compute kernel), never value by value in Python. A conversion plan is made once per
table; batches of tables without extension columns pass through untouched.

- DuckDB and Parquet: CloudQuery ``uuid`` becomes Arrow's canonical ``arrow.uuid`` and ``json``
  becomes ``arrow.json`` (DuckDB reads them as ``UUID`` and ``JSON``; Parquet writes the UUID and
  JSON logical types); ``inet`` becomes text. DuckDB formats ``mac`` as ``aa:bb:...`` text in
  SQL; Parquet keeps CloudQuery's ``inet`` and ``mac`` types for readers that know them.
- PostgreSQL: see :func:`postgres_type`; values go over COPY BINARY through ADBC in the wire
  form of their column type (``uuid`` as its 16 bytes, ``jsonb`` with its version byte).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from headwater import types

__all__ = [
    "Converter",
    "batch_converter",
    "postgres_cast",
    "postgres_type",
    "postgres_wire_type",
]

#: Converts one column (an Arrow array) to the form a destination stores.
Converter = Callable[[pa.Array], pa.Array]
Target = Literal["duckdb", "parquet", "postgres"]

_JSONB_VERSION = pa.scalar(b"\x01", pa.binary())
_EMPTY = pa.scalar(b"", pa.binary())


def _canonical_uuid(array: pa.Array) -> pa.Array:
    return pa.ExtensionArray.from_storage(pa.uuid(), array.storage)


def _canonical_json(array: pa.Array) -> pa.Array:
    # The engine checked the JSON text already; view the bytes as UTF-8 without copying.
    return pa.ExtensionArray.from_storage(pa.json_(), array.storage.view(pa.string()))


def _text(array: pa.Array) -> pa.Array:
    return array.storage.view(pa.string())


def _storage(array: pa.Array) -> pa.Array:
    return array.storage


def _jsonb(array: pa.Array) -> pa.Array:
    # jsonb's binary form is a version byte (1) followed by the JSON text.
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array
    return pc.binary_join_element_wise(_JSONB_VERSION, storage.cast(pa.binary()), _EMPTY)


def _is_simple(data_type: pa.DataType) -> bool:
    """Neither nested nor an extension type."""
    return not (
        isinstance(data_type, pa.BaseExtensionType)
        or pa.types.is_nested(data_type)
        or pa.types.is_dictionary(data_type)
    )


def _nested(data_type: pa.DataType, target: Target) -> Converter | None:
    """A converter rebuilding a list or struct whose children need converting."""
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        inner = column_converter(data_type.value_type, target)
        if inner is None:
            return None
        list_type = pa.LargeListArray if pa.types.is_large_list(data_type) else pa.ListArray

        def convert_list(array: pa.Array) -> pa.Array:
            assert inner is not None
            values = inner(array.values)
            return list_type.from_arrays(array.offsets, values, mask=array.is_null())

        return convert_list
    if pa.types.is_struct(data_type):
        children = [
            column_converter(data_type.field(i).type, target) for i in range(data_type.num_fields)
        ]
        if all(child is None for child in children):
            return None

        def convert_struct(array: pa.Array) -> pa.Array:
            fields = [array.field(i) for i in range(len(children))]
            converted = [
                child(field) if child is not None else field
                for child, field in zip(children, fields, strict=True)
            ]
            names = [data_type.field(i).name for i in range(len(children))]
            return pa.StructArray.from_arrays(converted, names=names, mask=array.is_null())

        return convert_struct
    return None


def column_converter(data_type: pa.DataType, target: Target) -> Converter | None:
    """How a column of ``data_type`` converts for ``target``; ``None`` if it is stored as is."""
    name = types.extension_name(data_type)
    if target in ("duckdb", "parquet"):
        if name == "uuid":
            return _canonical_uuid
        if name == "json":
            return _canonical_json
        if name == "inet" and target == "duckdb":
            return _text
        if name == "mac" and target == "duckdb":
            return _storage  # formatted as text in SQL
        return _nested(data_type, target)
    # PostgreSQL
    if name in ("uuid", "mac"):
        return _storage
    if name == "json":
        return _jsonb
    if name == "inet":
        return _text
    wire = postgres_wire_type(data_type)
    if wire is None:
        return None
    if wire == pa.binary():  # nested values as JSON: see postgres_type
        return _json_text_jsonb
    # Nanoseconds are truncated to the microseconds PostgreSQL keeps; other casts are exact.
    safe = not (
        (pa.types.is_timestamp(data_type) or pa.types.is_time(data_type)) and data_type.unit == "ns"
    )
    return lambda array: array.cast(wire, safe=safe)


def batch_converter(
    schema: pa.Schema, target: Target
) -> Callable[[pa.RecordBatch], pa.RecordBatch]:
    """A function converting batches of ``schema`` for ``target``, column by column."""
    plan = [
        (index, converter)
        for index, field in enumerate(schema)
        if (converter := column_converter(field.type, target)) is not None
    ]
    if not plan:
        return lambda batch: batch

    converted: list[pa.Schema] = []

    def convert(batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = list(batch.columns)
        for index, converter in plan:
            columns[index] = converter(columns[index])
        if not converted:  # the same fields and metadata, with the new types
            fields = [batch.schema.field(i).with_type(c.type) for i, c in enumerate(columns)]
            converted.append(pa.schema(fields, metadata=batch.schema.metadata))
        return pa.RecordBatch.from_arrays(columns, schema=converted[0])

    return convert


# --- PostgreSQL -------------------------------------------------------------------------------

_PG_SIMPLE: list[tuple[Callable[[pa.DataType], bool], str]] = [
    (pa.types.is_int8, "smallint"),
    (pa.types.is_int16, "smallint"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_int64, "bigint"),
    (pa.types.is_uint8, "smallint"),
    (pa.types.is_uint16, "integer"),
    (pa.types.is_uint32, "bigint"),
    (pa.types.is_uint64, "numeric(20,0)"),
    (pa.types.is_float32, "real"),
    (pa.types.is_float64, "double precision"),
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_string, "text"),
    (pa.types.is_large_string, "text"),
    (pa.types.is_binary, "bytea"),
    (pa.types.is_large_binary, "bytea"),
    (pa.types.is_fixed_size_binary, "bytea"),
    (pa.types.is_date, "date"),
    (pa.types.is_time, "time without time zone"),
    (pa.types.is_duration, "interval"),
]


def postgres_type(data_type: pa.DataType) -> str:
    """The PostgreSQL column type of an Arrow type, as ``format_type`` spells it.

    ``uuid`` -> ``uuid``, ``json`` -> ``jsonb``, ``inet`` -> ``inet``, ``mac`` -> ``text``
    (``aa:bb:cc:dd:ee:ff``; ``macaddr`` holds only 6-byte addresses); timestamps with a time
    zone -> ``timestamp with time zone``; lists of scalars -> arrays; structs, maps and lists of
    nested or extension values -> ``jsonb``; unsigned integers widen to the next signed type
    (``uint64`` -> ``numeric(20,0)``).
    """
    name = types.extension_name(data_type)
    if name is not None:
        return {"uuid": "uuid", "json": "jsonb", "inet": "inet", "mac": "text"}.get(name, "bytea")
    if pa.types.is_timestamp(data_type):
        zone = "with" if data_type.tz is not None else "without"
        return f"timestamp {zone} time zone"
    if pa.types.is_decimal(data_type):
        return f"numeric({data_type.precision},{data_type.scale})"
    for check, sql in _PG_SIMPLE:
        if check(data_type):
            return sql
    if (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)) and _is_simple(
        data_type.value_type
    ):
        return postgres_type(data_type.value_type) + "[]"
    return "jsonb"


def postgres_wire_type(data_type: pa.DataType) -> pa.DataType | None:
    """The Arrow type a non-extension column is cast to before COPY; ``None`` if none.

    ``pa.binary()`` means the values go as ``jsonb`` (nested values).
    """
    if pa.types.is_uint8(data_type):
        return pa.int16()
    if pa.types.is_uint16(data_type):
        return pa.int32()
    if pa.types.is_uint32(data_type):
        return pa.int64()
    if pa.types.is_uint64(data_type):
        return pa.decimal128(20, 0)
    if pa.types.is_date64(data_type):
        return pa.date32()
    if pa.types.is_time(data_type) and data_type.unit == "ns":
        return pa.time64("us")  # PostgreSQL keeps microseconds
    if pa.types.is_timestamp(data_type) and data_type.unit == "ns":
        return pa.timestamp("us", tz=data_type.tz)
    if postgres_type(data_type) == "jsonb":
        return pa.binary()
    return None


def postgres_cast(column: str, data_type: pa.DataType) -> str | None:
    """SQL turning a staged wire value into the column's type; ``None`` when COPY stores it."""
    name = types.extension_name(data_type)
    if name == "inet":
        return f"{column}::inet"
    if name == "mac":
        return f"rtrim(regexp_replace(encode({column}, 'hex'), '(..)', '\\1:', 'g'), ':')"
    return None


def postgres_staged_type(data_type: pa.DataType) -> str:
    """The column type of a staging table: what COPY writes before :func:`postgres_cast`."""
    name = types.extension_name(data_type)
    if name == "inet":
        return "text"
    if name == "mac":
        return "bytea"
    return postgres_type(data_type)


def _json_text_jsonb(array: pa.Array) -> pa.Array:
    """Nested values as ``jsonb``: JSON text made by DuckDB's ``to_json`` over the Arrow data."""
    import duckdb

    prepared = column_converter(array.type, "duckdb")
    values = prepared(array) if prepared is not None else array
    source = pa.table({"v": values})
    with duckdb.connect() as con:
        con.register("source", source)
        text = con.sql("SELECT CAST(to_json(v) AS VARCHAR) AS v FROM source").to_arrow_table()
    return _jsonb(text.column("v").combine_chunks())
