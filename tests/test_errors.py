from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from headwater.errors import HeadwaterError, IpcError, RowError, SchemaError
from headwater.schema import Column, Table


def row_error(column: str | None = "id") -> RowError:
    return RowError(
        table="items",
        column=column,
        row=3,
        expected="int64",
        value_type="str",
        value_repr="'3'",
        reason="strings are not converted to numbers",
    )


@pytest.mark.parametrize("error", [SchemaError, RowError, IpcError])
def test_every_error_is_a_headwater_error(error: type[Exception]) -> None:
    assert issubclass(error, HeadwaterError)


@pytest.mark.parametrize("error", [SchemaError, RowError])
def test_bad_input_errors_are_value_errors(error: type[Exception]) -> None:
    assert issubclass(error, ValueError)


def test_ipc_error_is_not_a_value_error() -> None:
    assert not issubclass(IpcError, ValueError)


def test_row_error_message_and_attributes() -> None:
    error = row_error()
    assert str(error) == (
        "table 'items', column 'id', row 3: expected int64, got str '3': "
        "strings are not converted to numbers"
    )
    assert (error.table, error.column, error.row) == ("items", "id", 3)
    assert (error.expected, error.value_type, error.value_repr) == ("int64", "str", "'3'")


def test_row_error_without_column() -> None:
    assert str(row_error(column=None)).startswith("table 'items', row 3: expected int64")


def test_row_error_survives_pickling() -> None:
    error = row_error()
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is RowError
    assert str(restored) == str(error)
    assert restored.__dict__ == error.__dict__


def test_schema_error_survives_pickling() -> None:
    restored = pickle.loads(pickle.dumps(SchemaError("table 'x': bad")))
    assert type(restored) is SchemaError
    assert str(restored) == "table 'x': bad"


def test_schema_errors_from_the_api_are_caught_as_headwater_errors() -> None:
    with pytest.raises(HeadwaterError):
        Column("bad name", pa.int64())
    with pytest.raises(ValueError, match="a table needs at least one column"):
        Table("empty", [])
