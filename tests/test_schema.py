from __future__ import annotations

import dataclasses
import pickle
import re

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import headwater as hw
from headwater import types
from headwater.errors import SchemaError
from headwater.schema import Column, Table, validate_arrow_type

FALSE_FLAGS = {
    b"cq:extension:primary_key": b"false",
    b"cq:extension:unique": b"false",
    b"cq:extension:incremental": b"false",
}

SUPPORTED = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
    pa.float32(),
    pa.float64(),
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.large_binary(),
    pa.binary(7),
    pa.date32(),
    pa.date64(),
    pa.time32("s"),
    pa.time32("ms"),
    pa.time64("us"),
    pa.time64("ns"),
    pa.timestamp("s"),
    pa.timestamp("ms", tz="+01:00"),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ns", tz="America/New_York"),
    pa.duration("s"),
    pa.duration("ns"),
    pa.decimal128(38, 9),
    pa.decimal128(5, 0),
    pa.list_(pa.string()),
    pa.large_list(pa.int64()),
    pa.list_(pa.list_(types.uuid())),
    pa.struct([("a", pa.int64()), ("b", pa.list_(types.json()))]),
    pa.map_(pa.string(), pa.struct([("x", types.inet())])),
    types.uuid(),
    types.json(),
    types.inet(),
    types.mac(),
]


class OtherExtension(pa.ExtensionType):
    def __init__(self) -> None:
        super().__init__(pa.binary(), "other.thing")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()


UNSUPPORTED = [
    (pa.float16(), "halffloat", "use pa.float32()"),
    (pa.null(), "null", ""),
    (pa.dictionary(pa.int32(), pa.string()), "dictionary", "use its value type, string"),
    (pa.dense_union([pa.field("a", pa.int8())]), "dense_union", ""),
    (pa.sparse_union([pa.field("a", pa.int8())]), "sparse_union", ""),
    (pa.string_view(), "string_view", ""),
    (pa.binary_view(), "binary_view", ""),
    (pa.list_view(pa.int8()), "list_view", ""),
    (pa.list_(pa.int8(), 3), "fixed_size_list", "use pa.list_(int8)"),
    (pa.month_day_nano_interval(), "month_day_nano_interval", ""),
    (pa.decimal256(40, 2), "decimal256(40, 2)", ""),
    (pa.decimal256(20, 2), "decimal256(20, 2)", "use pa.decimal128(20, 2)"),
    (pa.run_end_encoded(pa.int32(), pa.string()), "run_end_encoded", ""),
    (pa.uuid(), "arrow.uuid", "headwater.types.uuid()"),
    (pa.json_(), "arrow.json", "headwater.types.json()"),
    (OtherExtension(), "other.thing", ""),
]


def test_column_defaults() -> None:
    column = Column("id", pa.int64())
    assert (column.name, column.type) == ("id", pa.int64())
    assert not column.primary_key
    assert not column.unique
    assert not column.not_null
    assert not column.incremental_key
    assert column.description == ""


def test_column_is_immutable_and_hashable() -> None:
    column = Column("id", types.uuid(), primary_key=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        column.name = "other"  # type: ignore[misc]
    assert column == Column("id", types.uuid(), primary_key=True)
    assert len({column, Column("id", types.uuid(), primary_key=True)}) == 1


def test_column_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Column("id", pa.int64(), True)  # type: ignore[misc]


def test_column_repr() -> None:
    column = Column("id", types.uuid(), primary_key=True, not_null=True, description="The id")
    assert (
        repr(column) == "Column('id', uuid, primary_key=True, not_null=True, description='The id')"
    )
    assert repr(Column("n", pa.int64())) == "Column('n', int64)"


def test_to_arrow_field() -> None:
    field = Column(
        "id", pa.int64(), primary_key=True, unique=True, incremental_key=True, description="Id"
    ).to_arrow_field()
    assert field.name == "id"
    assert field.type == pa.int64()
    assert field.nullable
    assert field.metadata == {
        b"cq:extension:primary_key": b"true",
        b"cq:extension:unique": b"true",
        b"cq:extension:incremental": b"true",
        b"headwater:description": b"Id",
    }


def test_to_arrow_field_not_null_and_no_description() -> None:
    field = Column("name", pa.string(), not_null=True).to_arrow_field()
    assert not field.nullable
    assert field.metadata == FALSE_FLAGS


def test_primary_key_is_not_implicitly_not_null() -> None:
    assert Column("id", pa.int64(), primary_key=True).to_arrow_field().nullable


def test_from_arrow_field_round_trip() -> None:
    column = Column("at", pa.timestamp("us", tz="UTC"), unique=True, not_null=True, description="é")
    assert Column.from_arrow_field(column.to_arrow_field()) == column


def test_from_arrow_field_without_metadata() -> None:
    column = Column.from_arrow_field(pa.field("n", pa.int32(), nullable=False))
    assert column == Column("n", pa.int32(), not_null=True)


def test_from_arrow_field_rejects_non_field() -> None:
    with pytest.raises(SchemaError, match="expected a pyarrow Field, got str 'n'"):
        Column.from_arrow_field("n")  # type: ignore[arg-type]


def items_table(**kwargs: object) -> Table:
    return Table(
        "items",
        [
            Column("id", pa.int64(), primary_key=True, not_null=True),
            Column("name", pa.string(), description="Display name"),
        ],
        **kwargs,  # type: ignore[arg-type]
    )


def test_table_attributes() -> None:
    table = items_table(title="Items", description="All items")
    assert table.name == "items"
    assert table.title == "Items"
    assert table.description == "All items"
    assert [c.name for c in table.columns] == ["id", "name"]
    assert isinstance(table.columns, tuple)
    assert table.primary_keys == ("id",)
    assert table.parent is None
    assert table.parent_name is None
    assert table.children == []


def test_title_and_description_default_to_empty() -> None:
    table = items_table()
    assert table.title == ""
    assert table.description == ""


def test_parent_and_children() -> None:
    parent = items_table()
    child = Table("item_parts", [Column("part", pa.string())], parent=parent)
    other = Table("item_tags", [Column("tag", pa.string())], parent=parent)
    assert child.parent is parent
    assert child.parent_name == "items"
    assert parent.children == [child, other]
    assert child.arrow_schema.metadata[b"cq:table_depends_on"] == b"items"


def test_column_lookup() -> None:
    table = items_table()
    assert table.column("name").description == "Display name"
    with pytest.raises(
        KeyError, match=r"table 'items' has no column 'nme'; its columns are id, name"
    ):
        table.column("nme")


def test_table_repr() -> None:
    parent = items_table()
    child = Table("item_parts", [Column("part", pa.string())], parent=parent)
    assert repr(child) == "Table('item_parts', [Column('part', string)], parent='items')"
    assert repr(parent).startswith("Table('items', [Column('id', int64, primary_key=True")


def test_arrow_schema_with_primary_keys() -> None:
    schema = items_table(title="Items", description="All items").arrow_schema
    assert schema.names == ["_cq_id", "_cq_parent_id", "id", "name"]
    cq_id, cq_parent_id = schema.field("_cq_id"), schema.field("_cq_parent_id")
    assert cq_id.type == types.uuid()
    assert not cq_id.nullable
    assert cq_id.metadata == {**FALSE_FLAGS, b"cq:extension:unique": b"true"}
    assert cq_parent_id.type == types.uuid()
    assert cq_parent_id.nullable
    assert cq_parent_id.metadata == FALSE_FLAGS
    assert schema.field("id").metadata[b"cq:extension:primary_key"] == b"true"
    assert not schema.field("id").nullable
    assert schema.field("name").metadata[b"headwater:description"] == b"Display name"
    assert schema.metadata == {
        b"cq:table_name": b"items",
        b"cq:table_title": b"Items",
        b"cq:table_description": b"All items",
        b"cq:table_depends_on": b"",
        b"cq:extension:incremental": b"false",
    }


def test_cq_id_is_the_primary_key_of_a_table_without_one() -> None:
    schema = Table("events", [Column("at", pa.timestamp("us"))]).arrow_schema
    assert schema.field("_cq_id").metadata == {
        b"cq:extension:primary_key": b"true",
        b"cq:extension:unique": b"true",
        b"cq:extension:incremental": b"false",
    }


def test_arrow_schema_is_cached() -> None:
    table = items_table()
    assert table.arrow_schema is table.arrow_schema


def test_from_arrow_schema_round_trip() -> None:
    parent = items_table(title="Items", description="All items")
    child = Table(
        "item_parts",
        [
            Column("item_id", pa.int64(), primary_key=True, not_null=True),
            Column("ip", types.inet(), unique=True, incremental_key=True, description="Addr"),
        ],
        parent=parent,
    )
    for table in (parent, child):
        restored = Table.from_arrow_schema(table.arrow_schema)
        assert restored.arrow_schema.equals(table.arrow_schema, check_metadata=True)
        assert restored.columns == table.columns
        assert restored.parent is None
        assert restored.parent_name == table.parent_name
        assert (restored.title, restored.description) == (table.title, table.description)


def test_columns_and_tables_pickle() -> None:
    column = Column("ids", pa.list_(types.uuid()), primary_key=True, description="Ids")
    assert pickle.loads(pickle.dumps(column)) == column
    parent = Table("items", [column])
    child = Table("item_parts", [Column("ip", types.inet())], parent=parent)
    restored = pickle.loads(pickle.dumps(parent))
    assert restored.children[0].parent is restored
    assert restored.children[0].arrow_schema.equals(child.arrow_schema, check_metadata=True)


def test_from_arrow_schema_through_ipc() -> None:
    table = items_table(title="Items")
    schema = pa.ipc.read_schema(table.arrow_schema.serialize())
    assert Table.from_arrow_schema(schema).arrow_schema.equals(
        table.arrow_schema, check_metadata=True
    )


def test_from_arrow_schema_without_internal_columns_or_optional_metadata() -> None:
    schema = pa.schema([pa.field("n", pa.int64())], metadata={"cq:table_name": "numbers"})
    table = Table.from_arrow_schema(schema)
    assert table.columns == (Column("n", pa.int64()),)
    assert (table.title, table.description, table.parent_name) == ("", "", None)


def test_from_arrow_schema_requires_a_table_name() -> None:
    schema = pa.schema([pa.field("n", pa.int64())])
    with pytest.raises(SchemaError, match="fields n has no 'cq:table_name' metadata"):
        Table.from_arrow_schema(schema)


def test_from_arrow_schema_rejects_non_schema() -> None:
    with pytest.raises(SchemaError, match="expected a pyarrow Schema, got dict"):
        Table.from_arrow_schema({})  # type: ignore[arg-type]


def test_from_arrow_schema_names_table_and_column_of_a_bad_field() -> None:
    schema = pa.schema([pa.field("n", pa.float16())], metadata={"cq:table_name": "numbers"})
    with pytest.raises(
        SchemaError, match=r"^table 'numbers', column 'n': unsupported .* halffloat"
    ):
        Table.from_arrow_schema(schema)


def test_from_arrow_schema_rejects_other_internal_columns() -> None:
    schema = pa.schema(
        [pa.field("_cq_sync_time", pa.timestamp("us"))], metadata={"cq:table_name": "numbers"}
    )
    with pytest.raises(SchemaError, match=r"table 'numbers', column '_cq_sync_time'.*reserved"):
        Table.from_arrow_schema(schema)


# --- validation: one test per kind of bad input ---


@pytest.mark.parametrize("name", ["Items", "1items", "my-items", "items ", "", "ïtems", "items\n"])
def test_bad_table_name(name: str) -> None:
    with pytest.raises(
        SchemaError, match=rf"table {re.escape(repr(name))}: invalid name; use lowercase letters"
    ):
        Table(name, [Column("id", pa.int64())])


def test_table_name_not_a_str() -> None:
    with pytest.raises(SchemaError, match="table name must be a str, got int 5"):
        Table(5, [Column("id", pa.int64())])  # type: ignore[arg-type]


def test_table_name_too_long() -> None:
    Table("t" * 63, [Column("id", pa.int64())])
    with pytest.raises(SchemaError, match=r"64 characters long; the limit is 63, PostgreSQL"):
        Table("t" * 64, [Column("id", pa.int64())])


@pytest.mark.parametrize("name", ["1id", "my-id", "my id", "", "naïve", "id\n"])
def test_bad_column_name(name: str) -> None:
    with pytest.raises(
        SchemaError, match=rf"column {re.escape(repr(name))}: invalid name; use letters, digits"
    ):
        Column(name, pa.int64())


def test_column_name_not_a_str() -> None:
    with pytest.raises(SchemaError, match="column name must be a str, got NoneType None"):
        Column(None, pa.int64())  # type: ignore[arg-type]


def test_column_name_too_long() -> None:
    Column("C" * 63, pa.int64())
    with pytest.raises(SchemaError, match=r"column 'CCC.*64 characters long.*PostgreSQL"):
        Column("C" * 64, pa.int64())


def test_duplicate_column_names() -> None:
    columns = [Column("id", pa.int64()), Column("name", pa.string()), Column("id", pa.string())]
    with pytest.raises(
        SchemaError,
        match=r"table 'items', column 'id': duplicate column name 'id' at columns\[0\] and "
        r"columns\[2\]",
    ):
        Table("items", columns)


@pytest.mark.parametrize("name", ["_cq_id", "_cq_parent_id", "_cq_sync_time", "_cq_anything"])
def test_reserved_column_names(name: str) -> None:
    with pytest.raises(SchemaError, match=rf"column {name!r}: names starting with '_cq_' are"):
        Column(name, pa.int64())


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("_headwater_state", "_headwater_"),  # DuckDB's and PostgreSQL's state table
        ("_headwater_batch", "_headwater_"),  # the Arrow view DuckDB writes from
        ("_headwater_anything_later", "_headwater_"),
        ("_hw_key_0a1b2c3d", "_hw_"),  # PostgreSQL's key index of a table
        ("_hw_stage_0a1b2c3d", "_hw_"),  # PostgreSQL's staging table of a table
    ],
)
def test_reserved_table_names_are_refused_when_the_table_is_made(name: str, prefix: str) -> None:
    message = rf"table {name!r}: names starting with {prefix!r} are reserved for headwater's"
    with pytest.raises(SchemaError, match=message):
        Table(name, [Column("id", pa.int64())])
    with pytest.raises(SchemaError, match=message):
        hw.table(name, columns=[Column("id", pa.int64())])(lambda client: [])
    parent = Table("parents", [Column("id", pa.int64())])
    with pytest.raises(SchemaError, match=message):
        parent.child(name, columns=[Column("id", pa.int64())])(lambda client, row: [])
    assert parent.children == []
    schema = pa.schema([pa.field("id", pa.int64())], metadata={"cq:table_name": name})
    with pytest.raises(SchemaError, match=message):
        Table.from_arrow_schema(schema)


def test_names_near_the_reserved_prefixes_are_fine() -> None:
    for name in ("headwater_state", "_headwater", "_hw", "hw_stage", "_hwx_items"):
        assert Table(name, [Column("id", pa.int64())]).name == name


def test_uppercase_and_underscore_column_names_are_fine() -> None:
    assert Column("_Private9", pa.int64()).name == "_Private9"
    assert Column("_cq", pa.int64()).name == "_cq"


def test_table_without_columns() -> None:
    with pytest.raises(SchemaError, match="table 'items': a table needs at least one column"):
        Table("items", [])


def test_columns_not_a_list() -> None:
    with pytest.raises(SchemaError, match="table 'items': columns must be a list of Column, got"):
        Table("items", "id")  # type: ignore[arg-type]


def test_column_entry_not_a_column() -> None:
    with pytest.raises(
        SchemaError, match=r"table 'items': columns\[1\] must be a Column, got str 'name'"
    ):
        Table("items", [Column("id", pa.int64()), "name"])  # type: ignore[list-item]


@pytest.mark.parametrize("value", ["int64", int, None])
def test_type_not_a_data_type(value: object) -> None:
    with pytest.raises(SchemaError, match=r"column 'id': the type must be a pyarrow DataType"):
        Column("id", value)


@pytest.mark.parametrize(
    ("data_type", "label", "hint"), UNSUPPORTED, ids=[u[1] for u in UNSUPPORTED]
)
def test_unsupported_type(data_type: pa.DataType, label: str, hint: str) -> None:
    with pytest.raises(SchemaError) as caught:
        Column("value", data_type)
    message = str(caught.value)
    assert message.startswith("column 'value': unsupported Arrow type ")
    assert label in message
    assert hint in message
    assert "Supported types: int8/16/32/64" in message
    assert "headwater.types.uuid(), json(), inet() and mac()" in message


@pytest.mark.parametrize(
    ("data_type", "path"),
    [
        (pa.list_(pa.float16()), "column 'value', list item: "),
        (pa.large_list(pa.list_(pa.null())), "column 'value', list item, list item: "),
        (
            pa.struct([("ok", pa.int8()), ("bad", pa.float16())]),
            "column 'value', struct field 'bad': ",
        ),
        (pa.map_(pa.string_view(), pa.int8()), "column 'value', map key: "),
        (pa.map_(pa.string(), pa.list_(pa.uuid())), "column 'value', map value, list item: "),
    ],
)
def test_unsupported_nested_type_names_its_path(data_type: pa.DataType, path: str) -> None:
    with pytest.raises(SchemaError, match="unsupported Arrow type") as caught:
        Column("value", data_type)
    assert str(caught.value).startswith(path)


@pytest.mark.parametrize("data_type", SUPPORTED, ids=str)
def test_supported_type(data_type: pa.DataType) -> None:
    validate_arrow_type(data_type, where="anything")
    assert Column("value", data_type).type == data_type


def test_validate_arrow_type_uses_where() -> None:
    with pytest.raises(SchemaError, match=r"^table 't', column 'c': unsupported Arrow type null"):
        validate_arrow_type(pa.null(), where="table 't', column 'c'")


def test_parent_not_a_table() -> None:
    with pytest.raises(SchemaError, match="table 'parts': parent must be a Table, got str 'items'"):
        Table("parts", [Column("id", pa.int64())], parent="items")  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["primary_key", "unique", "not_null", "incremental_key"])
def test_column_option_not_a_bool(option: str) -> None:
    with pytest.raises(SchemaError, match=rf"column 'id': {option} must be a bool, got str 'yes'"):
        Column("id", pa.int64(), **{option: "yes"})  # type: ignore[arg-type]


def test_column_description_not_a_str() -> None:
    with pytest.raises(SchemaError, match="column 'id': description must be a str, got int 1"):
        Column("id", pa.int64(), description=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["title", "description"])
def test_table_title_or_description_not_a_str(option: str) -> None:
    with pytest.raises(SchemaError, match=rf"table 'items': {option} must be a str, got int 1"):
        items_table(**{option: 1})


# --- properties ---

primitive_types = st.sampled_from(
    [
        pa.int8(),
        pa.uint64(),
        pa.float32(),
        pa.float64(),
        pa.bool_(),
        pa.string(),
        pa.large_binary(),
        pa.binary(16),
        pa.date32(),
        pa.time64("ns"),
        pa.timestamp("ms", tz="Europe/Paris"),
        pa.duration("us"),
        pa.decimal128(12, 3),
        types.uuid(),
        types.json(),
        types.inet(),
        types.mac(),
    ]
)
map_keys = st.sampled_from([pa.string(), pa.int64(), types.uuid()])
struct_field_names = st.text(min_size=1, max_size=8)


def nested(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
    return st.one_of(
        children.map(pa.list_),
        children.map(pa.large_list),
        st.lists(
            st.tuples(struct_field_names, children),
            min_size=1,
            max_size=3,
            unique_by=lambda f: f[0],
        ).map(pa.struct),
        st.builds(pa.map_, map_keys, children),
    )


arrow_types = st.recursive(primitive_types, nested, max_leaves=6)
column_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,62}", fullmatch=True).filter(
    lambda name: not name.startswith("_cq_")
)
columns = st.builds(
    Column,
    name=column_names,
    type=arrow_types,
    primary_key=st.booleans(),
    unique=st.booleans(),
    not_null=st.booleans(),
    incremental_key=st.booleans(),
    description=st.text(max_size=20),
)
tables = st.builds(
    Table,
    name=st.from_regex(r"[a-z_][a-z0-9_]{0,62}", fullmatch=True),
    columns=st.lists(columns, min_size=1, max_size=6, unique_by=lambda c: c.name),
    title=st.none() | st.text(max_size=20),
    description=st.none() | st.text(max_size=20),
)


@given(arrow_types)
def test_generated_types_are_supported(data_type: pa.DataType) -> None:
    validate_arrow_type(data_type, where="generated")


@given(columns)
def test_column_field_round_trip(column: Column) -> None:
    assert Column.from_arrow_field(column.to_arrow_field()) == column


@given(tables)
def test_table_schema_round_trip(table: Table) -> None:
    restored = Table.from_arrow_schema(pa.ipc.read_schema(table.arrow_schema.serialize()))
    assert restored.arrow_schema.equals(table.arrow_schema, check_metadata=True)
    assert restored.columns == table.columns
    assert restored.primary_keys == table.primary_keys
    has_primary_key = b"true" if not table.primary_keys else b"false"
    assert (
        table.arrow_schema.field("_cq_id").metadata[b"cq:extension:primary_key"] == has_primary_key
    )


@given(tables, st.from_regex(r"[a-z_][a-z0-9_]{0,62}", fullmatch=True))
def test_child_schema_round_trip_keeps_parent_name(parent: Table, child_name: str) -> None:
    child = Table(child_name, [Column("n", pa.int64())], parent=parent)
    restored = Table.from_arrow_schema(child.arrow_schema)
    assert restored.parent_name == parent.name
    assert restored.arrow_schema.equals(child.arrow_schema, check_metadata=True)
