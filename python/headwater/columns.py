"""Derive a table's columns from a pydantic model or a dataclass.

Example:
    >>> from pydantic import BaseModel, Field
    >>> from headwater.columns import columns_from
    >>> class Item(BaseModel):
    ...     id: int = Field(json_schema_extra={"primary_key": True})
    ...     name: str | None = None
    >>> columns_from(Item)
    [Column('id', int64, primary_key=True, not_null=True), Column('name', string)]
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import decimal
import enum
import ipaddress
import reprlib
import types as _pytypes
import typing
import uuid
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union

import pyarrow as pa
import pydantic
from pydantic.fields import FieldInfo

from headwater import types
from headwater.column import Column
from headwater.errors import SchemaError

__all__ = ["columns_from"]

# Checked in order, so that subclasses come before their bases (bool before int, datetime before
# date). Typed Any because pydantic declares IPvAny* as unions to type checkers; they are classes.
_CLASS_TYPES: tuple[tuple[Any, pa.DataType], ...] = (
    (bool, pa.bool_()),
    (int, pa.int64()),
    (float, pa.float64()),
    (str, pa.string()),
    (bytes, pa.binary()),
    (datetime.datetime, pa.timestamp("us", tz="UTC")),
    (pydantic.AwareDatetime, pa.timestamp("us", tz="UTC")),
    (pydantic.NaiveDatetime, pa.timestamp("us", tz="UTC")),
    (pydantic.PastDatetime, pa.timestamp("us", tz="UTC")),
    (pydantic.FutureDatetime, pa.timestamp("us", tz="UTC")),
    (datetime.date, pa.date32()),
    (pydantic.PastDate, pa.date32()),
    (pydantic.FutureDate, pa.date32()),
    (datetime.time, pa.time64("us")),
    (datetime.timedelta, pa.duration("us")),
    (uuid.UUID, types.uuid()),
    (ipaddress.IPv4Address, types.inet()),
    (ipaddress.IPv6Address, types.inet()),
    (ipaddress.IPv4Network, types.inet()),
    (ipaddress.IPv6Network, types.inet()),
    (pydantic.IPvAnyAddress, types.inet()),
    (pydantic.IPvAnyNetwork, types.inet()),
    (pydantic.IPvAnyInterface, types.inet()),
)
# ipaddress's Interface classes subclass its Address classes, so they need no entry above.

# Stored as JSON text: values that have no fixed Arrow shape.
_JSON_CLASSES: tuple[type, ...] = (pydantic.BaseModel, dict, list, tuple, set, frozenset)
_COLLECTIONS = (
    list,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_UNIONS = (Union, _pytypes.UnionType)
_DEFAULT_DECIMAL_PRECISION = 38
_DEFAULT_DECIMAL_SCALE = 9


def columns_from(
    model: type[Any],
    *,
    primary_keys: Iterable[str] = (),
    overrides: Mapping[str, pa.DataType | Column] | None = None,
    exclude: Iterable[str] = (),
) -> list[Column]:
    """Return one column per field of a pydantic model or a dataclass, in field order.

    Column names are the Python field names. Types map as follows: ``bool``, ``int`` (int64),
    ``float`` (float64), ``str``, ``bytes`` (binary), ``datetime`` (``timestamp[us, tz=UTC]``),
    ``date`` (date32), ``time`` (``time64[us]``), ``timedelta`` (``duration[us]``), ``Decimal``
    (``decimal128(max_digits, decimal_places)``, by default 38 and 9), ``UUID``
    (:func:`headwater.types.uuid`), ``ipaddress`` addresses, networks and interfaces and
    pydantic's ``IPvAny*`` (:func:`headwater.types.inet`), enums (str enums and enums whose
    values are all str: string; int enums and enums whose values are all int: int64; members
    are stored as their values) and ``Literal`` (string, int64),
    ``list``/``set``/``frozenset``/``tuple[T, ...]`` of those (an Arrow list); ``dict``,
    ``Any``, nested models and dataclasses, and lists of them go to
    :func:`headwater.types.json`. ``T | None`` makes a nullable column, anything else a
    ``not_null`` one.

    Column options come from field metadata: pydantic's
    ``Field(description=..., json_schema_extra={"primary_key": True})`` or a dataclass's
    ``field(metadata={"primary_key": True, "description": ...})``; the keys are
    ``primary_key``, ``unique`` and ``incremental_key``.

    Args:
        model: A pydantic ``BaseModel`` subclass or a dataclass (the class, not an instance).
        primary_keys: Field names to make primary keys, in addition to those marked in metadata.
        overrides: Field name to a pyarrow type (replacing the mapped type, keeping nullability
            and options), or to a complete :class:`~headwater.schema.Column` used as it is.
            Use it for annotations that have no mapping.
        exclude: Field names to leave out.

    Returns:
        The columns, ready for :class:`~headwater.schema.Table`.

    Raises:
        SchemaError: ``model`` is neither a pydantic model nor a dataclass, a name in
            ``primary_keys``, ``overrides`` or ``exclude`` is not a field, or a field's
            annotation has no Arrow mapping. The message names the model, the field and the
            annotation.
    """
    model_name = model.__qualname__ if isinstance(model, type) else type(model).__name__
    label = f"columns_from({model_name})"
    fields = _model_fields(model, label)
    known = [field.name for field in fields]
    overrides = dict(overrides or {})
    primary = _field_names(primary_keys, "primary_keys", known, label)
    excluded = _field_names(exclude, "exclude", known, label)
    _field_names(overrides, "overrides", known, label)
    for name, override in overrides.items():
        if not isinstance(override, (pa.DataType, Column)):
            raise SchemaError(
                f"{label}: overrides[{name!r}] must be a pyarrow DataType or a Column, "
                f"got {type(override).__name__} {override!r}"
            )
    conflicts = sorted(excluded & (primary | overrides.keys()))
    if conflicts:
        raise SchemaError(
            f"{label}: fields {conflicts} are excluded but also named in primary_keys or overrides"
        )
    return [
        _column(field, overrides.get(field.name), field.name in primary, label)
        for field in fields
        if field.name not in excluded
    ]


@dataclasses.dataclass(frozen=True)
class _Field:
    """What columns_from needs of one model field, whatever kind of model declares it."""

    name: str
    annotation: object
    constraints: tuple[object, ...]
    # User-supplied metadata, checked by Column.
    description: Any
    options: Mapping[str, Any]


class _Unmappable(Exception):
    """Part of an annotation has no Arrow mapping."""

    def __init__(self, part: object, reason: str) -> None:
        super().__init__(f"{_describe(part)} is {reason}")


def _model_fields(model: object, label: str) -> list[_Field]:
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        return _pydantic_fields(model, label)
    if isinstance(model, type) and dataclasses.is_dataclass(model):
        return _dataclass_fields(model, label)
    if isinstance(model, pydantic.BaseModel) or dataclasses.is_dataclass(model):
        raise SchemaError(
            f"{label}: got an instance; pass the class {type(model).__qualname__} itself"
        )
    raise SchemaError(
        f"{label}: expected a pydantic BaseModel subclass or a dataclass, "
        f"got {type(model).__name__} {reprlib.repr(model)}"
    )


def _pydantic_fields(model: type[pydantic.BaseModel], label: str) -> list[_Field]:
    if not model.__pydantic_complete__:
        raise SchemaError(
            f"{label}: the model refers to types that are not defined yet; "
            f"call {model.__qualname__}.model_rebuild() once they are"
        )
    return [
        _Field(
            name,
            info.annotation,
            tuple(info.metadata),
            info.description or "",
            _extra(info),
        )
        for name, info in model.model_fields.items()
    ]


def _dataclass_fields(model: type[Any], label: str) -> list[_Field]:
    try:
        hints = typing.get_type_hints(model, include_extras=True)
    except (NameError, TypeError) as exc:
        raise SchemaError(
            f"{label}: cannot resolve the field annotations ({exc}); the types they name must "
            "be importable from the dataclass's module"
        ) from exc
    fields = []
    for field in dataclasses.fields(model):
        options: dict[str, Any] = dict(field.metadata)
        description = options.get("description", "")
        constraints: tuple[object, ...] = ()
        # A pydantic dataclass may declare `x: int = Field(...)`.
        if isinstance(field.default, FieldInfo):
            options.update(_extra(field.default))
            description = field.default.description or description
            constraints = tuple(field.default.metadata)
        fields.append(_Field(field.name, hints[field.name], constraints, description, options))
    return fields


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _field_names(names: Iterable[str], argument: str, known: list[str], label: str) -> set[str]:
    if isinstance(names, str):
        raise SchemaError(
            f"{label}: {argument} must be a collection of field names, not the str {names!r}; "
            f"write {argument}=({names!r},)"
        )
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SchemaError(
            f"{label}: {argument} names {unknown}, which are not fields of the model; "
            f"its fields are {', '.join(known)}"
        )
    return set(names)


def _column(
    field: _Field, override: pa.DataType | Column | None, primary: bool, label: str
) -> Column:
    where = f"{label}, field {field.name!r}"
    if isinstance(override, Column):
        return dataclasses.replace(override, primary_key=True) if primary else override
    inner, nullable, constraints = _strip(field.annotation)
    try:
        if override is None:
            override = _arrow_type(inner, [*field.constraints, *constraints])
        return Column(
            field.name,
            override,
            primary_key=True if primary else field.options.get("primary_key", False),
            unique=field.options.get("unique", False),
            not_null=not nullable,
            incremental_key=field.options.get("incremental_key", False),
            description=field.description,
        )
    except _Unmappable as exc:
        raise SchemaError(
            f"{where}: annotation {_describe(field.annotation)} has no Arrow mapping ({exc}); "
            f"pass overrides={{{field.name!r}: <a pyarrow type>}} to columns_from, "
            f"or exclude=({field.name!r},)"
        ) from None
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from exc


def _strip(annotation: object) -> tuple[object, bool, list[object]]:
    """Peel ``Annotated``, ``NewType`` and ``Optional`` off an annotation.

    Returns:
        The remaining annotation, whether ``None`` was allowed, and the ``Annotated`` metadata.
    """
    nullable = False
    metadata: list[object] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata.extend(extra)
        elif origin in _UNIONS:
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                # Several non-None members: _arrow_type reports the union.
                nullable = nullable or len(members) < len(typing.get_args(annotation))
                return annotation, nullable, metadata
            nullable = True
            annotation = members[0]
        elif hasattr(annotation, "__supertype__"):
            annotation = annotation.__supertype__
        else:
            return annotation, nullable, metadata


def _arrow_type(annotation: object, constraints: list[object]) -> pa.DataType:
    if annotation is Any:
        return types.json()
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return _literal_type(annotation)
    if origin in _UNIONS:
        raise _Unmappable(annotation, "a union of several types")
    if origin is tuple:
        args = typing.get_args(annotation)
        if args and (len(args) != 2 or args[1] is not Ellipsis):
            raise _Unmappable(annotation, "a fixed-length tuple (tuple[T, ...] maps to a list)")
        return _list_type(args[0] if args else Any)
    if origin in _COLLECTIONS:
        args = typing.get_args(annotation)
        return _list_type(args[0] if args else Any)
    if origin in _MAPPINGS:
        return types.json()
    if origin is not None:
        raise _Unmappable(annotation, "a generic type headwater has no Arrow type for")
    if not isinstance(annotation, type):
        raise _Unmappable(annotation, "not a type")
    return _class_type(annotation, constraints)


def _list_type(element: object) -> pa.DataType:
    inner, _, constraints = _strip(element)
    item = _arrow_type(inner, constraints)
    return item if item == types.json() else pa.list_(item)


def _literal_type(annotation: object) -> pa.DataType:
    values = typing.get_args(annotation)
    if all(isinstance(value, str) for value in values):
        return pa.string()
    if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return pa.int64()
    if all(isinstance(value, bool) for value in values):
        return pa.bool_()
    raise _Unmappable(annotation, "a Literal whose values are not all str, all int or all bool")


def _class_type(cls: type, constraints: list[object]) -> pa.DataType:
    if issubclass(cls, enum.Enum):
        if issubclass(cls, str):
            return pa.string()
        if issubclass(cls, int):
            return pa.int64()
        # A plain Enum's members are stored as their values.
        values = [member.value for member in cls]
        if values and all(isinstance(value, str) for value in values):
            return pa.string()
        if values and all(type(value) is int for value in values):
            return pa.int64()
        raise _Unmappable(
            cls, "an Enum whose values are not all str or all int (and that derives from neither)"
        )
    if issubclass(cls, decimal.Decimal):
        return _decimal_type(constraints)
    for python_type, arrow_type in _CLASS_TYPES:
        if issubclass(cls, python_type):
            return arrow_type
    if issubclass(cls, _JSON_CLASSES) or dataclasses.is_dataclass(cls):
        return types.json()
    raise _Unmappable(cls, "a class headwater has no Arrow type for")


def _decimal_type(constraints: list[object]) -> pa.DataType:
    max_digits = decimal_places = None
    for constraint in constraints:
        # Annotated[Decimal, Field(max_digits=...)] leaves a FieldInfo holding the constraints.
        nested = constraint.metadata if isinstance(constraint, FieldInfo) else [constraint]
        for item in nested:
            max_digits = getattr(item, "max_digits", None) or max_digits
            places = getattr(item, "decimal_places", None)
            decimal_places = decimal_places if places is None else places
    precision = max_digits or _DEFAULT_DECIMAL_PRECISION
    scale = min(_DEFAULT_DECIMAL_SCALE, precision) if decimal_places is None else decimal_places
    if not 1 <= precision <= 38 or not 0 <= scale <= precision:
        raise _Unmappable(
            decimal.Decimal,
            f"constrained to max_digits={max_digits}, decimal_places={decimal_places}, which "
            "decimal128 cannot hold (at most 38 digits, decimal_places <= max_digits)",
        )
    return pa.decimal128(precision, scale)


def _describe(annotation: object) -> str:
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")
