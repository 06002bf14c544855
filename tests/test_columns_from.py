# String annotations on purpose: columns_from must resolve them.
from __future__ import annotations

import dataclasses
import datetime
import enum
import ipaddress
import typing
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal, NewType, Optional, Union

import pyarrow as pa
import pydantic
import pytest
from pydantic import BaseModel, Field, SecretStr, condecimal

from headwater import types
from headwater.columns import columns_from
from headwater.errors import SchemaError
from headwater.schema import Column, Table

UTC_MICROS = pa.timestamp("us", tz="UTC")


class Color(str, enum.Enum):  # noqa: UP042 - the str mix-in is what users write
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


class Plain(enum.Enum):
    A = object()


class Address(BaseModel):
    city: str


@dataclasses.dataclass
class Point:
    x: float


UserId = NewType("UserId", int)


class Everything(BaseModel):
    flag: bool
    count: int
    name: str
    ratio: float
    at: datetime.datetime
    day: datetime.date
    clock: datetime.time
    took: datetime.timedelta
    amount: Decimal
    id: uuid.UUID
    blob: bytes
    tags: list[str]
    scores: tuple[float, ...]
    ids: set[uuid.UUID]
    levels: frozenset[int]
    attrs: dict[str, int]
    address: Address
    point: Point
    anything: Any
    addresses: list[Address]
    docs: list[dict[str, Any]]
    v4: ipaddress.IPv4Address
    v6: ipaddress.IPv6Address
    net4: ipaddress.IPv4Network
    net6: ipaddress.IPv6Network
    if4: ipaddress.IPv4Interface
    if6: ipaddress.IPv6Interface
    any_ip: pydantic.IPvAnyAddress
    any_net: pydantic.IPvAnyNetwork
    any_if: pydantic.IPvAnyInterface
    color: Color
    level: Level
    kind: Literal["a", "b"]
    size: Literal[1, 2, 3]
    user: UserId
    aware: pydantic.AwareDatetime
    version4: pydantic.UUID4
    positive: pydantic.PositiveInt


EXPECTED = {
    "flag": pa.bool_(),
    "count": pa.int64(),
    "name": pa.string(),
    "ratio": pa.float64(),
    "at": UTC_MICROS,
    "day": pa.date32(),
    "clock": pa.time64("us"),
    "took": pa.duration("us"),
    "amount": pa.decimal128(38, 9),
    "id": types.uuid(),
    "blob": pa.binary(),
    "tags": pa.list_(pa.string()),
    "scores": pa.list_(pa.float64()),
    "ids": pa.list_(types.uuid()),
    "levels": pa.list_(pa.int64()),
    "attrs": types.json(),
    "address": types.json(),
    "point": types.json(),
    "anything": types.json(),
    "addresses": types.json(),
    "docs": types.json(),
    "v4": types.inet(),
    "v6": types.inet(),
    "net4": types.inet(),
    "net6": types.inet(),
    "if4": types.inet(),
    "if6": types.inet(),
    "any_ip": types.inet(),
    "any_net": types.inet(),
    "any_if": types.inet(),
    "color": pa.string(),
    "level": pa.int64(),
    "kind": pa.string(),
    "size": pa.int64(),
    "user": pa.int64(),
    "aware": UTC_MICROS,
    "version4": types.uuid(),
    "positive": pa.int64(),
}


def by_name(columns: list[Column]) -> dict[str, Column]:
    return {column.name: column for column in columns}


def test_pydantic_type_mapping() -> None:
    columns = columns_from(Everything)
    assert [c.name for c in columns] == list(Everything.model_fields)
    assert {c.name: c.type for c in columns} == EXPECTED
    assert all(c.not_null for c in columns)
    assert not any(c.primary_key or c.unique or c.incremental_key for c in columns)


@dataclasses.dataclass
class EverythingDataclass:
    flag: bool
    count: int
    at: datetime.datetime
    amount: Decimal
    id: uuid.UUID
    tags: tuple[str, ...]
    point: Point
    address: Address
    color: Color
    kind: Literal["x"]
    maybe: int | None = None


def test_dataclass_type_mapping() -> None:
    assert {c.name: (c.type, c.not_null) for c in columns_from(EverythingDataclass)} == {
        "flag": (pa.bool_(), True),
        "count": (pa.int64(), True),
        "at": (UTC_MICROS, True),
        "amount": (pa.decimal128(38, 9), True),
        "id": (types.uuid(), True),
        "tags": (pa.list_(pa.string()), True),
        "point": (types.json(), True),
        "address": (types.json(), True),
        "color": (pa.string(), True),
        "kind": (pa.string(), True),
        "maybe": (pa.int64(), False),
    }


@dataclasses.dataclass
class Unparameterized:
    items: list  # type: ignore[type-arg]
    pairs: typing.Tuple  # type: ignore[type-arg]  # noqa: UP006
    mapping: dict  # type: ignore[type-arg]
    sequence: typing.Sequence[str]
    nested: list[list[int]]
    nested_docs: list[list[dict[str, int]]]


def test_bare_and_nested_collections() -> None:
    assert {c.name: c.type for c in columns_from(Unparameterized)} == {
        "items": types.json(),
        "pairs": types.json(),
        "mapping": types.json(),
        "sequence": pa.list_(pa.string()),
        "nested": pa.list_(pa.list_(pa.int64())),
        "nested_docs": types.json(),
    }


class Nullables(BaseModel):
    a: Optional[int] = None  # noqa: UP045
    b: int | None = None
    c: Union[None, str] = None  # noqa: RUF036, UP007
    d: Annotated[datetime.date | None, "note"] = None
    e: Optional[Annotated[uuid.UUID, "note"]] = None  # noqa: UP045
    f: list[int | None]
    g: list[str | None] | None = None
    h: int


def test_optional_makes_nullable_columns() -> None:
    columns = by_name(columns_from(Nullables))
    assert {name: c.not_null for name, c in columns.items()} == {
        "a": False,
        "b": False,
        "c": False,
        "d": False,
        "e": False,
        "f": True,
        "g": False,
        "h": True,
    }
    assert columns["d"].type == pa.date32()
    assert columns["e"].type == types.uuid()
    assert columns["f"].type == pa.list_(pa.int64())
    assert columns["g"].type == pa.list_(pa.string())


class Money(BaseModel):
    price: Decimal = Field(max_digits=10, decimal_places=2)
    tax: condecimal(max_digits=7, decimal_places=3)  # type: ignore[valid-type]
    maybe: Annotated[Decimal, Field(max_digits=5, decimal_places=1)] | None = None
    places_only: Decimal = Field(decimal_places=4)
    digits_only: Decimal = Field(max_digits=20)
    small: Decimal = Field(max_digits=5)
    history: list[Annotated[Decimal, Field(max_digits=12, decimal_places=0)]]


def test_decimal_precision_and_scale_from_constraints() -> None:
    assert {c.name: c.type for c in columns_from(Money)} == {
        "price": pa.decimal128(10, 2),
        "tax": pa.decimal128(7, 3),
        "maybe": pa.decimal128(5, 1),
        "places_only": pa.decimal128(38, 4),
        "digits_only": pa.decimal128(20, 9),
        "small": pa.decimal128(5, 5),
        "history": pa.list_(pa.decimal128(12, 0)),
    }


class TooPrecise(BaseModel):
    value: Decimal = Field(max_digits=40, decimal_places=2)


def test_decimal_too_precise() -> None:
    with pytest.raises(
        SchemaError,
        match=r"columns_from\(TooPrecise\), field 'value': annotation Decimal has no Arrow "
        r"mapping \(Decimal is constrained to max_digits=40, decimal_places=2, which decimal128 "
        r"cannot hold.*overrides=\{'value'",
    ):
        columns_from(TooPrecise)


class Flags(BaseModel):
    id: int = Field(json_schema_extra={"primary_key": True}, description="The id")
    email: str = Field(json_schema_extra={"unique": True})
    updated: datetime.datetime = Field(json_schema_extra={"incremental_key": True})
    region: str
    note: str = Field(json_schema_extra={"examples": ["x"]})


def test_pydantic_field_options() -> None:
    columns = by_name(columns_from(Flags))
    assert columns["id"] == Column(
        "id", pa.int64(), primary_key=True, not_null=True, description="The id"
    )
    assert columns["email"].unique
    assert columns["updated"].incremental_key
    assert not columns["region"].primary_key
    assert columns["note"] == Column("note", pa.string(), not_null=True)


def test_primary_keys_argument_adds_to_metadata() -> None:
    columns = columns_from(Flags, primary_keys=["region"])
    assert [c.name for c in columns if c.primary_key] == ["id", "region"]


@dataclasses.dataclass
class Tagged:
    id: int = dataclasses.field(metadata={"primary_key": True, "description": "Tag id"})
    label: str = dataclasses.field(metadata={"unique": True, "other_library": 1})
    seen: datetime.datetime | None = dataclasses.field(
        default=None, metadata={"incremental_key": True}
    )


def test_dataclass_field_options() -> None:
    assert columns_from(Tagged) == [
        Column("id", pa.int64(), primary_key=True, not_null=True, description="Tag id"),
        Column("label", pa.string(), unique=True, not_null=True),
        Column("seen", UTC_MICROS, incremental_key=True),
    ]


@pydantic.dataclasses.dataclass
class PydanticDataclass:
    id: int = dataclasses.field(metadata={"primary_key": True})
    name: str = Field(default="", description="Name", json_schema_extra={"unique": True})
    price: Decimal = Field(default=Decimal(0), max_digits=6, decimal_places=2)


def test_pydantic_dataclass() -> None:
    assert columns_from(PydanticDataclass) == [
        Column("id", pa.int64(), primary_key=True, not_null=True),
        Column("name", pa.string(), unique=True, not_null=True, description="Name"),
        Column("price", pa.decimal128(6, 2), not_null=True),
    ]


class Secretive(BaseModel):
    id: int
    token: SecretStr
    maybe_token: SecretStr | None = None


def test_override_with_a_type_keeps_nullability_and_options() -> None:
    columns = columns_from(
        Secretive,
        primary_keys=("id",),
        overrides={"id": pa.int32(), "token": pa.string(), "maybe_token": pa.string()},
    )
    assert columns == [
        Column("id", pa.int32(), primary_key=True, not_null=True),
        Column("token", pa.string(), not_null=True),
        Column("maybe_token", pa.string()),
    ]


def test_override_with_a_column_is_used_as_is() -> None:
    custom = Column("secret", pa.large_string(), description="Redacted")
    columns = columns_from(Secretive, overrides={"token": custom}, exclude=["maybe_token"])
    assert columns == [Column("id", pa.int64(), not_null=True), custom]


def test_override_column_can_be_made_a_primary_key() -> None:
    columns = columns_from(
        Secretive,
        primary_keys=["token"],
        overrides={"token": Column("token", pa.string())},
        exclude=["maybe_token"],
    )
    assert columns[1] == Column("token", pa.string(), primary_key=True)


def test_exclude() -> None:
    assert [c.name for c in columns_from(Secretive, exclude={"token", "maybe_token"})] == ["id"]


def test_columns_make_a_table() -> None:
    table = Table("flags", columns_from(Flags))
    assert table.primary_keys == ("id",)
    assert Table.from_arrow_schema(table.arrow_schema).columns == table.columns


# --- bad input: one test per kind ---


def test_unsupported_annotation() -> None:
    with pytest.raises(SchemaError) as caught:
        columns_from(Secretive)
    assert str(caught.value) == (
        "columns_from(Secretive), field 'token': annotation SecretStr has no Arrow mapping "
        "(SecretStr is a class headwater has no Arrow type for); pass "
        "overrides={'token': <a pyarrow type>} to columns_from, or exclude=('token',)"
    )


class Ambiguous(BaseModel):
    value: int | str


def test_union_of_two_types() -> None:
    with pytest.raises(
        SchemaError,
        match=r"columns_from\(Ambiguous\), field 'value': annotation int \| str has no Arrow "
        r"mapping \(int \| str is a union of several types\); pass overrides=",
    ):
        columns_from(Ambiguous)


def test_optional_union_of_two_types_can_be_overridden() -> None:
    class Model(BaseModel):
        value: Optional[Union[int, str]] = None  # noqa: UP007, UP045

    with pytest.raises(SchemaError, match="union of several types"):
        columns_from(Model)
    assert columns_from(Model, overrides={"value": pa.string()}) == [Column("value", pa.string())]


class Unknown:
    pass


@dataclasses.dataclass
class HoldsUnknown:
    thing: list[Unknown]


def test_class_without_mapping_inside_a_list() -> None:
    with pytest.raises(
        SchemaError,
        match=r"columns_from\(HoldsUnknown\), field 'thing': annotation list\[.*Unknown\] has no "
        r"Arrow mapping \(Unknown is a class headwater has no Arrow type for\); pass "
        r"overrides=\{'thing'",
    ):
        columns_from(HoldsUnknown)


class FixedTuple(BaseModel):
    pair: tuple[int, str]


def test_fixed_length_tuple() -> None:
    with pytest.raises(
        SchemaError, match=r"field 'pair'.*a fixed-length tuple \(tuple\[T, \.\.\.\]"
    ):
        columns_from(FixedTuple)


class PlainEnum(BaseModel):
    value: Plain


def test_enum_that_is_neither_str_nor_int() -> None:
    with pytest.raises(
        SchemaError,
        match=r"field 'value'.*Plain is an Enum whose values are not all str or all int",
    ):
        columns_from(PlainEnum)


class MixedLiteral(BaseModel):
    value: Literal["a", 1]


def test_literal_of_mixed_types() -> None:
    with pytest.raises(SchemaError, match=r"field 'value'.*not all str, all int or all bool"):
        columns_from(MixedLiteral)


class GenericField(BaseModel):
    value: typing.Callable[[], int]


def test_unknown_generic() -> None:
    with pytest.raises(
        SchemaError,
        match=r"field 'value'.*Callable.*is a generic type headwater has no Arrow type for\); pass",
    ):
        columns_from(GenericField)


@pytest.mark.parametrize("value", [42, "Everything", Unknown])
def test_not_a_model(value: object) -> None:
    with pytest.raises(SchemaError, match="expected a pydantic BaseModel subclass or a dataclass"):
        columns_from(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("instance", [Address(city="x"), Point(x=1.0)])
def test_an_instance_instead_of_the_class(instance: object) -> None:
    name = type(instance).__qualname__
    with pytest.raises(SchemaError, match=rf"got an instance; pass the class {name} itself"):
        columns_from(instance)  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", ["primary_keys", "overrides", "exclude"])
def test_unknown_field_names(argument: str) -> None:
    value: object = {"nope": pa.int64()} if argument == "overrides" else ["id", "nope"]
    with pytest.raises(
        SchemaError,
        match=rf"columns_from\(Flags\): {argument} names \['nope'\], which are not fields of the "
        r"model; its fields are id, email, updated, region, note",
    ):
        columns_from(Flags, **{argument: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", ["primary_keys", "exclude"])
def test_a_str_instead_of_a_collection_of_names(argument: str) -> None:
    with pytest.raises(
        SchemaError, match=rf"{argument} must be a collection of field names, not the str 'id'"
    ):
        columns_from(Flags, **{argument: "id"})  # type: ignore[arg-type]


def test_override_of_the_wrong_kind() -> None:
    with pytest.raises(
        SchemaError,
        match=r"columns_from\(Flags\): overrides\['id'\] must be a pyarrow DataType or a Column, "
        r"got str 'int64'",
    ):
        columns_from(Flags, overrides={"id": "int64"})  # type: ignore[dict-item]


def test_excluded_field_also_named_elsewhere() -> None:
    with pytest.raises(SchemaError, match=r"fields \['id'\] are excluded but also named in"):
        columns_from(Flags, primary_keys=["id"], exclude=["id"])


def test_override_type_that_is_not_supported() -> None:
    with pytest.raises(
        SchemaError,
        match=r"columns_from\(Flags\), field 'id': column 'id': unsupported Arrow type halffloat",
    ):
        columns_from(Flags, overrides={"id": pa.float16()})


@dataclasses.dataclass
class BadOption:
    id: int = dataclasses.field(metadata={"primary_key": "yes"})


def test_option_that_is_not_a_bool() -> None:
    with pytest.raises(
        SchemaError,
        match=r"columns_from\(BadOption\), field 'id': column 'id': primary_key must be a bool, "
        r"got str 'yes'",
    ):
        columns_from(BadOption)


@dataclasses.dataclass
class ReservedName:
    _cq_id: int


def test_field_with_a_reserved_name() -> None:
    with pytest.raises(SchemaError, match=r"field '_cq_id': column '_cq_id': names starting with"):
        columns_from(ReservedName)


def test_dataclass_with_unresolvable_annotation() -> None:
    @dataclasses.dataclass
    class Local:
        value: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(
        SchemaError,
        match=r"columns_from\(.*Local\): cannot resolve the field annotations \(name "
        r"'NotDefinedAnywhere' is not defined\)",
    ):
        columns_from(Local)


def test_pydantic_model_not_fully_defined() -> None:
    class Later(BaseModel):
        value: DefinedLater  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(SchemaError, match=r"call .*Later.model_rebuild\(\) once they are"):
        columns_from(Later)
