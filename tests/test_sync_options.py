"""SyncOptions: validated once, combined by one rule, handed unchanged from every entry point
down to the Rust engine; every option either works or is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

import headwater as hw
from headwater import cli
from headwater.destinations.run import sync_to
from headwater.serve import PluginServer
from headwater.serve.servicer import SourceServicer
from headwater.testing import run_sync

ID = hw.Column("id", pa.int64(), primary_key=True)


@hw.table("numbers", columns=[ID])
def numbers(client: Any) -> Iterator[dict[str, int]]:
    yield from ({"id": n} for n in range(3))


class Recording(hw.Plugin):
    """A plugin that keeps every run its ``sync`` made, to see which options reached it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs: list[hw.SyncRun] = []

    def sync(self, *args: Any, **kwargs: Any) -> hw.SyncRun:
        run = super().sync(*args, **kwargs)
        self.runs.append(run)
        return run


def recording(**kwargs: Any) -> Recording:
    return Recording(name="recording", version="1", tables=[numbers], **kwargs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an int >= 1, not 0"),
        ({"concurrency": True}, "concurrency must be an int >= 1, not True"),
        ({"concurrency": "8"}, "concurrency must be an int >= 1, not '8'"),
        ({"table_concurrency": -1}, "table_concurrency must be an int >= 1, not -1"),
        ({"depth_concurrency": []}, "depth_concurrency must be a non-empty list of ints >= 1"),
        ({"depth_concurrency": [2, 0]}, "depth_concurrency must be a non-empty list of ints"),
        ({"strategy": "bfs"}, "strategy must be 'dfs', 'round-robin' or 'shuffle', not 'bfs'"),
        ({"shuffle_seed": 2**64}, "shuffle_seed must be an int from 0 to 2**64 - 1"),
        ({"max_buffer_bytes": 0}, "max_buffer_bytes must be an int >= 1, not 0"),
        ({"batch_max_rows": 1.5}, "batch_max_rows must be an int >= 1, not 1.5"),
        ({"batch_max_bytes": 2**63}, "batch_max_bytes must be an int >= 1"),
        ({"batch_max_latency": float("nan")}, "batch_max_latency must be a number of seconds"),
        ({"on_row_error": "ignore"}, "on_row_error must be 'skip' or 'fail', not 'ignore'"),
        ({"resolver_timeout": 0}, "resolver_timeout must be a number of seconds above 0"),
        ({"sync_timeout": 1e10}, "sync_timeout must be a number of seconds above 0, at most 1e+09"),
        ({"shard": (3, 2)}, "shard 3 of 2: the shard number must be between 1 and the total"),
        ({"shard": (0, 2)}, "shard must be a (num, total) pair of ints with 1 <= num <= total"),
        ({"shard": [1]}, "shard must be a (num, total) pair of ints with 1 <= num <= total"),
        ({"tables": ["*", 3]}, "tables must be a list of table name patterns (str)"),
        ({"skip_tables": 5}, "skip_tables must be a list of table name patterns (str), not 5"),
        ({"skip_dependent_tables": "yes"}, "skip_dependent_tables must be a bool, not 'yes'"),
        ({"deterministic_cq_id": 1}, "deterministic_cq_id must be a bool, not 1"),
        ({"concurency": 4}, "'concurency' is not a sync option; the options are tables, "),
        # The scheduler's queue bound is the engine's own (16 * concurrency, at least 1024).
        ({"max_queued": 8}, "'max_queued' is not a sync option"),
    ],
)
def test_a_bad_option_is_refused_naming_it_and_its_value(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(hw.SyncOptionsError) as info:
        hw.SyncOptions(**options)
    assert str(info.value).startswith(message)
    # One line, no pydantic boilerplate around it.
    assert "\n" not in str(info.value) and "pydantic" not in str(info.value)
    assert isinstance(info.value, (hw.HeadwaterError, ValueError))


def test_options_are_frozen_and_documented() -> None:
    options = hw.SyncOptions()
    with pytest.raises(Exception, match="frozen"):
        options.concurrency = 3  # type: ignore[misc]
    schema = hw.SyncOptions.model_json_schema()
    for name, field in schema["properties"].items():
        assert field.get("description"), f"{name} has no description"
    assert schema["properties"]["concurrency"]["minimum"] == 1
    assert schema["additionalProperties"] is False


def test_a_single_pattern_is_taken_as_a_list_of_one() -> None:
    assert hw.SyncOptions(tables="numbers").tables == ("numbers",)


def test_replace_validates_and_keeps_what_was_set() -> None:
    options = hw.SyncOptions(concurrency=4)
    assert options.replace() is options
    changed = options.replace(batch_max_rows=10)
    assert (changed.concurrency, changed.batch_max_rows) == (4, 10)
    assert changed.given() == {"concurrency": 4, "batch_max_rows": 10}
    with pytest.raises(hw.SyncOptionsError, match="batch_max_rows must be an int >= 1, not 0"):
        options.replace(batch_max_rows=0)


def test_with_defaults_puts_the_plugin_options_under_the_callers() -> None:
    caller = hw.SyncOptions(concurrency=2, tables=["numbers"])
    assert caller.with_defaults({}) is caller
    layered = caller.with_defaults({"concurrency": 9, "batch_max_rows": 5})
    assert (layered.concurrency, layered.batch_max_rows, layered.tables) == (2, 5, ("numbers",))
    # An option left at its default by the caller takes the plugin's value.
    assert hw.SyncOptions().with_defaults({"concurrency": 9}).concurrency == 9


def test_plugin_sync_hands_the_options_object_to_the_engine_unchanged() -> None:
    plugin = recording()
    options = hw.SyncOptions(concurrency=3, batch_max_rows=2)
    with plugin.sync(options=options) as run:
        assert run.options is options
        assert sum(m.batch.num_rows for m in run if isinstance(m, hw.Insert)) == 3
    with plugin.sync() as run:
        assert run.options == hw.SyncOptions()


def test_keyword_options_replace_those_fields_of_options() -> None:
    plugin = recording()
    options = hw.SyncOptions(concurrency=3, batch_max_rows=2)
    with plugin.sync(options=options, batch_max_rows=1, on_row_error="fail") as run:
        given = run.options
        batches = [m.batch.num_rows for m in run if isinstance(m, hw.Insert)]
    assert (given.concurrency, given.batch_max_rows, given.on_row_error) == (3, 1, "fail")
    assert batches == [1, 1, 1]  # the keyword's batch_max_rows is the one the engine used
    with pytest.raises(hw.SyncOptionsError, match="concurrency must be an int >= 1, not 0"):
        plugin.sync(options=options, concurrency=0)
    with pytest.raises(hw.SyncOptionsError, match="'colour' is not a sync option"):
        plugin.sync(colour="red")  # type: ignore[call-arg]


def test_the_testing_kit_and_the_local_sync_pass_the_object_on(tmp_path: Path) -> None:
    plugin = recording()
    options = hw.SyncOptions(concurrency=5)
    assert run_sync(plugin, options=options).rows("numbers") == [{"id": n} for n in range(3)]
    assert plugin.runs[-1].options is options
    assert plugin.sync_to(f"jsonl://{tmp_path}/a", options=options).rows == {"numbers": 3}
    assert plugin.runs[-1].options is options
    assert sync_to(plugin, f"jsonl://{tmp_path}/b", options=options).rows == {"numbers": 3}
    assert plugin.runs[-1].options is options
    sync_to(plugin, f"jsonl://{tmp_path}/c", options=options, batch_max_rows=7)
    assert plugin.runs[-1].options == options.replace(batch_max_rows=7)


def test_the_cli_builds_one_options_object_over_the_plugins(tmp_path: Path) -> None:
    plugin = recording(sync_options=lambda spec: {"batch_max_rows": 4, "concurrency": 9})
    argv = ["sync", "--to", f"jsonl://{tmp_path}", "--no-progress", "--log-level", "error"]
    assert cli.main([*argv, "--tables", "numbers", "--concurrency", "2"], plugin=plugin) == 0
    options = plugin.runs[-1].options
    assert isinstance(options, hw.SyncOptions)
    assert (options.tables, options.concurrency, options.batch_max_rows) == (("numbers",), 2, 4)


def test_the_grpc_server_passes_the_request_options_to_the_engine() -> None:
    plugin = recording(sync_options=lambda spec: {"batch_max_rows": 4, "concurrency": 9})
    with PluginServer(SourceServicer(plugin), "127.0.0.1:0") as server:
        channel = grpc.insecure_channel(server.address)
        stub = plugin_pb2_grpc.PluginStub(channel)
        stub.Init(plugin_pb2.Init.Request(spec=json.dumps({}).encode()))
        request = plugin_pb2.Sync.Request(
            tables=["numbers"],
            deterministic_cq_id=True,
            shard=plugin_pb2.Sync.Request.Shard(num=1, total=1),
        )
        kinds = [r.WhichOneof("message") for r in stub.Sync(request, timeout=60)]
        channel.close()
    assert kinds == ["migrate_table", "insert"]
    options = plugin.runs[-1].options
    assert isinstance(options, hw.SyncOptions)
    assert options.tables == ("numbers",)
    assert options.deterministic_cq_id is True
    assert options.shard == (1, 1)
    assert (options.concurrency, options.batch_max_rows) == (9, 4)  # the plugin's, from Init


def test_deterministic_cq_id_keeps_primary_key_ids_either_way() -> None:
    # headwater treats a primary key as the Go SDK treats primary-key components: the id is
    # derived from it whatever the flag says.
    plugin = recording()
    ids = [
        run_sync(plugin, deterministic_cq_id=flag).tables["numbers"]["_cq_id"].to_pylist()
        for flag in (True, False)
    ]
    assert ids[0] == ids[1]
    assert ids[0] == hw.build_batch(numbers, [{"id": n} for n in range(3)])["_cq_id"].to_pylist()
