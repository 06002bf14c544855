"""`serve` and `package` from the command line: real processes, real signals, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cloudquery.plugin_v3 import plugin_pb2, plugin_pb2_grpc

import serve_plugin
from headwater.serve.package import package, tables_json

TESTS = Path(__file__).resolve().parent
PLUGIN_FILE = TESTS / "serve_plugin.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(address: str, process: subprocess.Popen[str]) -> plugin_pb2_grpc.PluginStub:
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
    except grpc.FutureTimeoutError:
        process.kill()
        raise AssertionError(f"server did not start: {process.communicate()[1]}") from None
    return plugin_pb2_grpc.PluginStub(channel)


@pytest.mark.parametrize("how", ["plugin.main", "headwater serve"])
def test_serve_until_sigterm_with_json_logs(how: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    flags = [
        "--address",
        address,
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--no-sentry",
        "--otel-endpoint",
        "localhost:4318",
        "--otel-endpoint-insecure",
        "--license",
        "/dev/null",
        "--max-syncs",
        "3",
    ]
    command = (
        [sys.executable, str(PLUGIN_FILE), "serve", *flags]
        if how == "plugin.main"
        else [sys.executable, "-m", "headwater.cli", "serve", f"{PLUGIN_FILE}:plugin", *flags]
    )
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        stub = wait_ready(address, process)
        assert stub.GetName(plugin_pb2.GetName.Request()).name == "test-source"
        stub.Init(plugin_pb2.Init.Request(spec=json.dumps({"token": "s3cr3t-token"}).encode()))
        responses = list(stub.Sync(plugin_pb2.Sync.Request(tables=["example_accounts"])))
        assert sum(r.HasField("insert") for r in responses) == 1
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "plugin server listening" in messages
    assert "plugin server stopped" in messages
    listening = lines[messages.index("plugin server listening")]
    assert listening["address"] == address and listening["level"] == "info"
    assert listening["max_syncs"] == 3
    assert any(line.get("table") == "example_accounts" for line in lines)
    assert "s3cr3t-token" not in stderr


def test_sigint_while_a_sync_runs_stops_cleanly(tmp_path: Path) -> None:
    sock = tmp_path / "plugin.sock"
    process = subprocess.Popen(
        [sys.executable, str(PLUGIN_FILE), "serve", "--network", "unix", "--address", str(sock)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stub = wait_ready(f"unix:{sock}", process)
        stub.Init(plugin_pb2.Init.Request(spec=json.dumps({"token": "t"}).encode()))
        call = stub.Sync(plugin_pb2.Sync.Request(tables=["test_endless"]))
        next(iter(call))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "sync cancelled" in stderr
    assert not sock.exists()


def test_serve_on_a_bad_address_fails_clearly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(PLUGIN_FILE), "serve", "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on '127.0.0.1:{port}'" in done.stderr


def test_package_writes_cloudquerys_layout(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugin"
    (plugin_dir / "docs").mkdir(parents=True)
    (plugin_dir / "docs" / "overview.md").write_text("# Test source\n")
    (plugin_dir / "docs" / "notes.txt").write_text("not markdown")
    (plugin_dir / "main.py").write_text(PLUGIN_FILE.read_text())
    (plugin_dir / "requirements.txt").write_text("headwater\n")
    done = subprocess.run(
        [
            sys.executable,
            str(plugin_dir / "main.py"),
            "package",
            "-m",
            "First release\r\n",
            "v1.2.3",
            str(plugin_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": "/usr/bin:/bin"},  # whatever docker there is answers
        cwd=plugin_dir,
    )
    assert done.returncode == 0, done.stderr
    dist = plugin_dir / "dist"
    manifest = json.loads((dist / "package.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["name"] == "test-source" and manifest["team"] == "headwater"
    assert manifest["kind"] == "source" and manifest["version"] == "v1.2.3"
    assert manifest["message"] == "First release"
    assert manifest["protocols"] == [3]
    assert manifest["package_type"] == "docker"
    tables = json.loads((dist / "tables.json").read_text())
    assert tables == tables_json(serve_plugin.plugin)
    repos = next(t for t in tables if t["name"] == "test_repos")
    assert repos["relations"] == ["test_issues"]
    assert repos["columns"][0]["name"] == "_cq_id"
    assert next(t for t in tables if t["name"] == "test_events")["parent"] == ""
    assert (dist / "docs" / "overview.md").read_text() == "# Test source\n"
    assert not (dist / "docs" / "notes.txt").exists()
    assert (dist / "plugin" / "main.py").exists()
    dockerfile = (dist / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["headwater", "serve", "/plugin/main.py"]' in dockerfile
    assert "requirements.txt" in dockerfile
    if manifest["supported_targets"]:  # a Docker engine ran here
        for target in manifest["supported_targets"]:
            assert (dist / target["path"]).exists() and len(target["checksum"]) == 64
    else:
        assert "the image step was SKIPPED" in done.stderr


def test_package_refuses_what_it_cannot_package(tmp_path: Path) -> None:
    from headwater.serve.package import PackageError

    with pytest.raises(PackageError, match=r"docs directory .* does not exist"):
        package(
            serve_plugin.plugin,
            version="v1",
            directory=tmp_path,
            message="m",
            reference=str(PLUGIN_FILE),
        )
    (tmp_path / "docs").mkdir()
    with pytest.raises(PackageError, match="version must be one word"):
        package(
            serve_plugin.plugin,
            version="v 1",
            directory=tmp_path,
            message="m",
            reference="x.py",
        )
    with pytest.raises(PackageError, match="target must look like linux/amd64"):
        package(
            serve_plugin.plugin,
            version="v1",
            directory=tmp_path,
            message="m",
            reference="x.py",
            targets=["linux"],
        )
    with pytest.raises(PackageError, match="is not inside the plugin directory"):
        package(
            serve_plugin.plugin,
            version="v1",
            directory=tmp_path,
            message="m",
            reference=str(PLUGIN_FILE),
        )
    import headwater as hw

    teamless = hw.Plugin(name="x", version="1", tables=[serve_plugin.example_accounts])
    with pytest.raises(PackageError, match="has no team"):
        package(teamless, version="v1", directory=tmp_path, message="m", reference="x.py")


def test_serve_help_gives_the_default_sync_bound(capsys: pytest.CaptureFixture[str]) -> None:
    from headwater import cli
    from headwater.serve import DEFAULT_MAX_SYNCS

    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"], plugin=serve_plugin.plugin)
    assert f"RESOURCE_EXHAUSTED (default: {DEFAULT_MAX_SYNCS})" in " ".join(
        capsys.readouterr().out.split()
    )
