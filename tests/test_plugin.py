"""Plugin definitions, specs, table selection and logging."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pydantic
import pytest

import headwater as hw
from sync_helpers import run_all

ID = hw.Column("id", pa.int64(), primary_key=True)


def rows(client: Any) -> Iterator[dict[str, int]]:
    yield {"id": 1}


def child_rows(client: Any, parent: Any) -> Iterator[dict[str, int]]:
    yield {"id": 1}


def family() -> list[hw.Table]:
    """accounts -> (users -> keys, groups), and a separate `regions` table."""
    accounts = hw.table("aws_accounts", columns=[ID])(rows)
    users = accounts.child("aws_users", columns=[ID])(child_rows)
    users.child("aws_user_keys", columns=[ID])(child_rows)
    accounts.child("aws_groups", columns=[ID])(child_rows)
    regions = hw.table("aws_regions", columns=[ID])(rows)
    return [accounts, regions]


def selected(tables: list[str], skip: list[str] = [], dependent: bool = False) -> list[str]:  # noqa: B006
    return [t.name for t in hw.select_tables(family(), tables, skip, dependent)]


def test_select_all_and_by_glob() -> None:
    everything = ["aws_accounts", "aws_users", "aws_user_keys", "aws_groups", "aws_regions"]
    assert selected(["*"]) == everything
    assert selected(["aws_*"]) == everything
    assert selected(["aws_regions"]) == ["aws_regions"]
    assert selected(["aws_re?ions"]) == ["aws_regions"]
    assert selected([]) == []


def test_a_selected_table_brings_its_children_and_its_parents() -> None:
    assert selected(["aws_accounts"]) == [
        "aws_accounts",
        "aws_users",
        "aws_user_keys",
        "aws_groups",
    ]
    # A child is synced only with its parent.
    assert selected(["aws_user_keys"]) == ["aws_accounts", "aws_users", "aws_user_keys"]


def test_skip_tables_drops_subtrees() -> None:
    assert selected(["*"], ["aws_users"]) == ["aws_accounts", "aws_groups", "aws_regions"]
    assert selected(["aws_user_keys"], ["aws_accounts"]) == []


def test_skip_dependent_tables() -> None:
    assert selected(["aws_accounts"], dependent=True) == ["aws_accounts"]
    assert selected(["aws_accounts", "aws_groups"], dependent=True) == [
        "aws_accounts",
        "aws_groups",
    ]
    assert selected(["*"], dependent=True) == selected(["*"])


def test_patterns_that_match_nothing_are_errors() -> None:
    with pytest.raises(hw.TableSelectionError) as info:
        selected(["aws_usrs"])
    message = str(info.value)
    assert "tables pattern 'aws_usrs' matches no table" in message
    assert "aws_accounts, aws_users, aws_user_keys, aws_groups, aws_regions" in message
    with pytest.raises(hw.TableSelectionError, match="skip_tables pattern 'nope'"):
        selected(["*"], ["nope"])
    assert issubclass(hw.TableSelectionError, hw.HeadwaterError)
    with pytest.raises(TypeError, match="got int 3"):
        hw.select_tables(family(), ["*", 3])  # type: ignore[list-item]


def test_sync_selects_tables_with_the_same_rules() -> None:
    plugin = hw.Plugin(name="aws", version="1", tables=family())
    run = plugin.sync(tables=["aws_user_keys"])
    _, tables, _ = run_all(run)
    assert list(tables) == ["aws_accounts", "aws_users", "aws_user_keys"]
    with pytest.raises(hw.TableSelectionError):
        plugin.sync(tables=["missing"])


class Nested(pydantic.BaseModel):
    password: hw.SecretStr
    port: int


class Spec(hw.Spec):
    token: hw.SecretStr
    accounts: list[str] = pydantic.Field(default_factory=lambda: ["a"])
    retries: int = 3
    nested: Nested | None = None
    headers: dict[str, hw.SecretStr] = pydantic.Field(default_factory=dict)


SECRET = "s3cr3t-value-never-shown"


def spec_plugin() -> hw.Plugin:
    return hw.Plugin(
        name="demo", version="1", tables=[hw.table("t", columns=[ID])(rows)], spec=Spec
    )


def test_spec_errors_list_every_field_and_hide_secrets() -> None:
    plugin = spec_plugin()
    bad = {
        "token": 12345,
        "accounts": "not-a-list",
        "retries": "many",
        "nested": {"password": ["x"], "port": "eighty"},
        "headers": {"Authorization": 99},
        "tokn": SECRET,
    }
    with pytest.raises(hw.SpecError) as info:
        plugin.sync(bad)
    error = info.value
    message = str(error)
    assert message.startswith("invalid spec (Spec): 7 errors:")
    assert len(error.errors) == 7
    assert "token: Input should be a valid string (got a int; the value is secret)" in message
    assert "accounts: Input should be a valid list (got str 'not-a-list')" in message
    assert "retries: Input should be a valid integer" in message and "'many'" in message
    assert "nested.password" in message and "the value is secret" in message
    assert "nested.port" in message and "'eighty'" in message
    assert "headers.Authorization" in message
    assert "tokn: unknown field" in message
    assert "12345" not in message and "99" not in message and SECRET not in message
    assert "['x']" not in message
    assert isinstance(error, ValueError) and isinstance(error, hw.HeadwaterError)


def test_missing_fields_json_specs_and_spec_instances() -> None:
    plugin = spec_plugin()
    with pytest.raises(hw.SpecError, match="token: Field required"):
        plugin.validate_spec({})
    with pytest.raises(hw.SpecError, match=r"not valid JSON: Expecting .* line 1, column"):
        plugin.validate_spec('{"token": "' + SECRET + '",')
    try:
        plugin.validate_spec('{"token": "' + SECRET + '",')
    except hw.SpecError as exc:
        assert SECRET not in str(exc)
    with pytest.raises(hw.SpecError, match="must be an object"):
        plugin.validate_spec("[1, 2]")
    spec = plugin.validate_spec(json.dumps({"token": SECRET}).encode())
    assert spec.token.get_secret_value() == SECRET
    assert SECRET not in repr(spec) and SECRET not in str(spec)
    assert plugin.validate_spec(spec) is spec


def test_a_plugin_without_a_spec_refuses_one() -> None:
    plugin = hw.Plugin(name="nospec", version="1", tables=[hw.table("t", columns=[ID])(rows)])
    assert plugin.validate_spec(None) is None
    assert plugin.validate_spec({}) is None
    assert plugin.validate_spec("") is None
    with pytest.raises(hw.SpecError, match=r"takes no spec.*token"):
        plugin.validate_spec({"token": SECRET})
    assert plugin.spec_schema()["properties"] == {}


def test_spec_schema_is_the_models_json_schema() -> None:
    schema = spec_plugin().spec_schema()
    assert schema["required"] == ["token"]
    assert schema["properties"]["token"]["format"] == "password"
    assert schema["additionalProperties"] is False


def test_plugin_definition_errors() -> None:
    table = hw.table("t", columns=[ID])(rows)
    with pytest.raises(hw.PluginError, match="plugin name"):
        hw.Plugin(name="Bad Name", version="1", tables=[table])
    with pytest.raises(hw.PluginError, match="version"):
        hw.Plugin(name="p", version="", tables=[table])
    with pytest.raises(hw.PluginError, match="spec must be a pydantic model"):
        hw.Plugin(name="p", version="1", tables=[table], spec=dict)  # type: ignore[arg-type]
    with pytest.raises(hw.PluginError, match="connect must be callable"):
        hw.Plugin(name="p", version="1", tables=[table], connect=3)  # type: ignore[arg-type]
    with pytest.raises(hw.PluginError, match=r"tables\[0\] must be a Table"):
        hw.Plugin(name="p", version="1", tables=["t"])  # type: ignore[list-item]
    with pytest.raises(hw.PluginError, match="tables must be a list"):
        hw.Plugin(name="p", version="1", tables=table)  # type: ignore[arg-type]
    bare = hw.Table("bare", [ID])
    with pytest.raises(hw.PluginError, match="table 'bare' has no resolver"):
        hw.Plugin(name="p", version="1", tables=[bare])
    twin = hw.table("t", columns=[ID])(rows)
    with pytest.raises(hw.PluginError, match="two tables are called 't'"):
        hw.Plugin(name="p", version="1", tables=[table, twin])
    with pytest.raises(hw.PluginError, match="listed twice"):
        hw.Plugin(name="p", version="1", tables=[table, table])
    kid = table.child("kid", columns=[ID])(child_rows)
    with pytest.raises(hw.PluginError, match="'kid' is a child of 't'"):
        hw.Plugin(name="p", version="1", tables=[kid])


def test_resolver_signatures_are_checked() -> None:
    with pytest.raises(hw.SchemaError, match=r"cannot be called as resolver\(client\)"):
        hw.table("t", columns=[ID])(lambda a, b: [])
    parent = hw.table("p", columns=[ID])(rows)
    with pytest.raises(hw.SchemaError, match=r"cannot be called as resolver\(client, parent_row\)"):
        parent.child("c", columns=[ID])(lambda client: [])
    with pytest.raises(hw.SchemaError, match="clients applies to top-level tables"):
        hw.Table("c", [ID], parent=parent, clients=lambda c: [c])
    with pytest.raises(hw.SchemaError, match="pass either columns"):
        hw.table("t")
    with pytest.raises(hw.SchemaError, match="not both"):
        hw.table("t", columns=[ID], model=Spec)
    with pytest.raises(hw.SchemaError, match="resolver must be callable"):
        hw.Column("x", pa.int64(), resolver=3)  # type: ignore[arg-type]
    # Zero-argument resolvers and defaults are fine.
    assert hw.table("z", columns=[ID])(lambda: []).resolver_arity == 0
    assert hw.table("d", columns=[ID])(lambda client, page=1: []).resolver_arity == 1


def test_sync_option_errors() -> None:
    plugin = hw.Plugin(name="p", version="1", tables=[hw.table("t", columns=[ID])(rows)])
    with pytest.raises(ValueError, match="concurrency must be an int >= 1, not 0"):
        plugin.sync(concurrency=0)
    with pytest.raises(ValueError, match="strategy must be 'dfs', 'round-robin' or 'shuffle'"):
        plugin.sync(strategy="bfs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_max_latency must be a number of seconds above 0"):
        plugin.sync(batch_max_latency=0)
    with pytest.raises(ValueError, match="on_row_error"):
        plugin.sync(on_row_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depth_concurrency"):
        plugin.sync(depth_concurrency=[4, 0])
    with pytest.raises(ValueError, match="batch_max_rows must be an int >= 1, not 0"):
        plugin.sync(batch_max_rows=0)
    # Values the engine cannot represent are refused before it sees them, by their public name.
    with pytest.raises(ValueError, match=r"batch_max_latency must be .* not 1e[+]300"):
        plugin.sync(batch_max_latency=1e300)
    with pytest.raises(ValueError, match=r"sync_timeout must be .* not 1e[+]19"):
        plugin.sync(sync_timeout=1e19)
    with pytest.raises(ValueError, match="concurrency must be an int >= 1, not -3"):
        plugin.sync(concurrency=-3)
    with pytest.raises(ValueError, match="concurrency must be an int >= 1, not '8'"):
        plugin.sync(concurrency="8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shuffle_seed must be an int from 0 to 2[*][*]64 - 1"):
        plugin.sync(strategy="shuffle", shuffle_seed=-1)


def test_json_logs_carry_structured_fields_and_no_secrets() -> None:
    stream = io.StringIO()
    handler = hw.configure_logging(level="info", format="json", stream=stream)
    try:

        @hw.table("logged", columns=[ID])
        def logged(client: Any) -> Iterator[dict[str, int]]:
            yield {"id": 1}
            yield {"id": "bad"}
            raise RuntimeError("boom")

        plugin = hw.Plugin(
            name="l", version="1", tables=[logged], spec=Spec, connect=lambda spec: spec
        )
        run_all(plugin.sync({"token": SECRET}))
    finally:
        logging.getLogger("headwater").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert SECRET not in stream.getvalue()
    by_message = {line["message"].split(":")[0]: line for line in lines}
    skipped = by_message["row skipped"]
    assert skipped["level"] == "warn" and skipped["table"] == "logged"
    failed = by_message["table resolver failed"]
    assert failed["level"] == "error" and failed["table"] == "logged"
    assert "RuntimeError: boom" in failed["error"]
    finished = by_message["table sync finished"]
    # The sync's only client has no id of its own: it is not named.
    assert finished["rows"] == 1 and "client" not in finished
    done = by_message["sync finished"]
    assert done["rows"] == 1 and done["errors"] == 1 and done["skipped_rows"] == 1
    assert all({"time", "level", "message", "logger"} <= line.keys() for line in lines)


def test_text_logs() -> None:
    stream = io.StringIO()
    handler = hw.configure_logging(level="debug", format="text", stream=stream)
    try:
        plugin = hw.Plugin(name="l", version="1", tables=[hw.table("t", columns=[ID])(rows)])
        run_all(plugin.sync())
    finally:
        logging.getLogger("headwater").removeHandler(handler)
    text = stream.getvalue()
    assert " DEB table sync started table=t\n" in text
    assert " INF table sync finished table=t rows=1 duration=" in text
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        hw.configure_logging(level="loud")
    with pytest.raises(ValueError, match="log format"):
        hw.configure_logging(format="xml")  # type: ignore[arg-type]
