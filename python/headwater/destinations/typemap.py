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
from headwater.destinations.base import Unstorable

__all__ = [
    "Converter",
    "batch_converter",
    "postgres_cast",
    "postgres_refusals",
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


# --- Values PostgreSQL refuses ----------------------------------------------------------------

#: A NUL in JSON text: the raw byte, or a ``\u0000`` escape (after an even number of
#: backslashes: ``\\u0000`` is an escaped backslash followed by the text ``u0000``).
_JSON_NUL = r"\x00|(^|[^\\])(\\\\)*\\u0000"
_TEXT_NUL = "PostgreSQL text cannot hold the NUL character (\\x00)"
_JSONB_NUL = "PostgreSQL jsonb cannot hold the NUL character (\\u0000)"
_JSONB_NOT_FINITE = "PostgreSQL jsonb cannot hold NaN or infinity"
_EXAMPLES = 10
_SHOWN_CHARS = 80

#: Finds the values of an array PostgreSQL refuses: the indices of their rows (``int64``, in
#: any order, repeats allowed).
Finder = Callable[[pa.Array], pa.Array]


def _indices(mask: pa.Array) -> pa.Array:
    return pc.indices_nonzero(pc.fill_null(mask, False)).cast(pa.int64())


def _none() -> pa.Array:
    return pa.array([], pa.int64())


def _bytes_hold(array: pa.Array, *needles: bytes) -> bool:
    """Whether the values buffer of a string or binary array may hold one of ``needles``.

    One search of the array's bytes takes a few milliseconds per million values where the
    compute kernels take tens (a regular expression, hundreds): almost every batch has no
    NUL, and stops here. A hit is then checked value by value.
    """
    _, offsets_buffer, data = array.buffers()
    if data is None or len(array) == 0:
        return False
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    offsets = pa.Array.from_buffers(
        pa.int64() if large else pa.int32(),
        len(array) + 1,
        [None, offsets_buffer],
        offset=array.offset,
    )
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    content = data.slice(start, end - start).to_pybytes()
    return any(needle in content for needle in needles)


def _text_nul(array: pa.Array) -> pa.Array:
    if pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    if not _bytes_hold(array, b"\x00"):
        return _none()
    return _indices(pc.match_substring(array, "\x00"))


def _json_nul(array: pa.Array) -> pa.Array:
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array
    if not _bytes_hold(storage, b"\x00", b"\\u0000"):
        return _none()
    return _indices(pc.match_substring_regex(storage, _JSON_NUL))


def _not_finite(array: pa.Array) -> pa.Array:
    return _indices(pc.invert(pc.is_finite(array)))


def _in_lists(inner: Finder) -> Finder:
    """Finds the lists (and maps) holding a value ``inner`` finds."""

    def find(array: pa.Array) -> pa.Array:
        if len(array) == 0:
            return _none()
        if pa.types.is_fixed_size_list(array.type):
            array = array.cast(pa.list_(array.type.value_type))
        # The values of these lists only, from offset 0 (the array may be a slice), without
        # the validity bitmap that list_parent_indices does not take with an offset.
        offsets = array.offsets
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        values = array.values.slice(start, end - start)
        found = inner(values)
        if len(found) == 0:
            return found
        lists = pa.LargeListArray if pa.types.is_large_list(array.type) else pa.ListArray
        plain = lists.from_arrays(pc.subtract(offsets, start), values)
        rows = pc.take(pc.list_parent_indices(plain).cast(pa.int64()), found)
        return pc.filter(rows, pc.take(array.is_valid(), rows))  # not under a null list

    return find


def _in_fields(fields: list[tuple[int, Finder]]) -> Finder:
    """Finds the structs with a field holding a value its finder finds."""

    def find(array: pa.Array) -> pa.Array:
        children = array.flatten()  # sliced like the array, null under a null struct
        found = [finder(children[index]) for index, finder in fields]
        return pa.concat_arrays(found) if len(found) > 1 else found[0]

    return find


def _in_dictionary(inner: Finder) -> Finder:
    def find(array: pa.Array) -> pa.Array:
        refused = inner(array.dictionary)
        if len(refused) == 0:
            return refused
        return _indices(pc.is_in(array.indices, value_set=refused.cast(array.indices.type)))

    return find


Check = Literal["nul", "not_finite"]


def _finder(data_type: pa.DataType, check: Check) -> Finder | None:
    """How to find the values of ``data_type`` that ``check`` refuses; ``None`` if none can be.

    ``nul``: strings and JSON text holding a NUL; ``not_finite``: floats that are NaN or
    infinite (which only the JSON text of nested values cannot hold).
    """
    name = types.extension_name(data_type)
    if name == "json":
        return _json_nul if check == "nul" else None
    if name is not None:
        return None  # uuid, inet, mac: no text of the plugin's
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return _text_nul if check == "nul" else None
    if pa.types.is_string_view(data_type):
        return _text_nul if check == "nul" else None
    if pa.types.is_floating(data_type):
        return _not_finite if check == "not_finite" else None
    if pa.types.is_dictionary(data_type):
        inner = _finder(data_type.value_type, check)
        return _in_dictionary(inner) if inner is not None else None
    if pa.types.is_map(data_type):
        entries = pa.struct([data_type.key_field, data_type.item_field])
        inner = _finder(entries, check)
        return _in_lists(inner) if inner is not None else None
    if (
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
    ):
        inner = _finder(data_type.value_type, check)
        return _in_lists(inner) if inner is not None else None
    if pa.types.is_struct(data_type):
        fields = [
            (index, finder)
            for index in range(data_type.num_fields)
            if (finder := _finder(data_type.field(index).type, check)) is not None
        ]
        return _in_fields(fields) if fields else None
    return None


def _shown(value: object) -> str:
    """A truncated repr of ``value``, cut around the first part PostgreSQL refuses."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    found = [at for mark in ("\\x00", "\\u0000", "nan", "inf") if (at := text.find(mark)) >= 0]
    start = max(0, min(found, default=0) - _SHOWN_CHARS // 3)
    end = start + _SHOWN_CHARS
    return ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")


def postgres_refusals(schema: pa.Schema) -> Callable[[pa.RecordBatch], list[Unstorable]] | None:
    r"""How to find the values of batches of ``schema`` that PostgreSQL refuses.

    ``text`` (and ``text[]``) cannot hold the NUL character, nor can ``jsonb`` (as the raw
    byte or the ``\u0000`` escape, in ``json`` columns and in the JSON text of structs, maps
    and nested lists, keys included); that JSON text also cannot hold a float NaN or infinity.
    COPY would refuse the whole batch and roll back the transaction with every table in it.

    Returns:
        A function giving the refused values of a batch, checked with Arrow compute kernels
        over whole columns; ``None`` when no column of ``schema`` can hold such a value.
    """
    plan: list[tuple[int, str, Finder, str]] = []
    for index, field in enumerate(schema):
        expected = postgres_type(field.type)
        checks: list[tuple[Check, str]] = [
            ("nul", _TEXT_NUL if expected.startswith("text") else _JSONB_NUL)
        ]
        if expected == "jsonb":  # real and double precision (and arrays) take NaN and infinity
            checks.append(("not_finite", _JSONB_NOT_FINITE))
        for check, reason in checks:
            finder = _finder(field.type, check)
            if finder is not None:
                plan.append((index, expected, finder, reason))
    if not plan:
        return None

    def refused(batch: pa.RecordBatch) -> list[Unstorable]:
        found = []
        for index, expected, finder, reason in plan:
            rows = finder(batch.column(index))
            if len(rows) == 0:
                continue
            rows = pc.unique(rows).sort()
            column = batch.column(index)
            examples = [
                (type(value).__name__, _shown(value))
                for value in (column[row].as_py() for row in rows[:_EXAMPLES].to_pylist())
            ]
            name = batch.schema.field(index).name
            found.append(Unstorable(name, rows, expected, reason, examples))
        return found

    return refused
