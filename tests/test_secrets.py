"""Secrets never leak: not in logs (any logger, any format), tracebacks, errors, the progress
display, the summary, cassettes, or the URL of a PostgreSQL destination.

Every test uses its own secret values: the registry is process-wide and only grows.
"""

from __future__ import annotations

import io
import json
import logging
import pydoc
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pydantic
import pytest
from rich.console import Console

import headwater as hw
from headwater import http, redaction
from headwater.cli.progress import LiveProgress, summary_table
from headwater.destinations import open_destination, parse_url
from headwater.destinations.run import LocalSyncResult
from headwater.errors import DestinationError
from headwater.logs import JsonFormatter, TextFormatter
from headwater.redaction import MASK, redact, redact_url, register_secret
from headwater.testing import MockResponse, MockServer, use_cassette
from local_helpers import run_on_terminal

HEADWATER = [sys.executable, "-m", "headwater.cli"]


def unique(prefix: str) -> str:
    """A secret no other test registers."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- the registry ------------------------------------------------------------------------------


def test_short_values_are_not_registered_and_longer_ones_are_masked_in_every_form() -> None:
    register_secret("12345")  # one below the minimum: would mask years, ids and words
    assert redact("order 12345 shipped") == "order 12345 shipped"
    secret = unique('pa/ss+w"rd')
    register_secret(secret)
    for form in (
        secret,
        secret.replace("/", "%2F").replace("+", "%2B").replace('"', "%22"),  # URL-encoded
        json.dumps(secret)[1:-1],  # escaped in a JSON body
        json.dumps(secret)[1:-1].replace("/", "\\/"),  # escaped by PHP's json_encode
    ):
        assert redact(f"before {form} after") == f"before {MASK} after", form


def test_a_secret_containing_another_is_masked_whole() -> None:
    inner = unique("inner")
    register_secret(inner)
    register_secret(f"outer-{inner}-outer")
    assert redact(f"x outer-{inner}-outer y {inner}") == f"x {MASK} y {MASK}"


def test_transient_values_are_bounded_and_the_latest_stay_masked() -> None:
    values = [unique(f"sig{i}") for i in range(redaction.TRANSIENT_LIMIT + 20)]
    for value in values:
        register_secret(value, transient=True)
    assert redact(values[-1]) == MASK
    assert redact(values[0]) == values[0]  # dropped: a sync signing every request stays fast
    # Registered for good, a value is never dropped, however many transient ones follow.
    kept = unique("kept")
    register_secret(kept, transient=True)
    register_secret(kept)
    for i in range(redaction.TRANSIENT_LIMIT + 5):
        register_secret(unique(f"more{i}"), transient=True)
    assert redact(kept) == MASK


def test_redact_url_hides_passwords_and_secret_params_even_when_malformed() -> None:
    assert redact_url("https://api.example.com/x?key=AIzaXYZ&sig=abc%2Fdef&page=2#f") == (
        "https://api.example.com/x?key=***&sig=***&page=2#f"
    )
    assert redact_url("https://u:pw12@[::1/x") == "https://u:***@[::1/x"  # not parseable
    assert redact_url("duckdb:///./headwater.duckdb") == "duckdb:///./headwater.duckdb"


def test_headwater_errors_mask_registered_secrets_in_str_and_repr() -> None:
    secret = unique("err-secret")
    register_secret(secret)
    error = hw.SchemaError(f"column 'x': got {secret}")
    assert secret not in str(error) and secret not in repr(error)
    assert MASK in str(error)


# --- specs -------------------------------------------------------------------------------------


class Inner(pydantic.BaseModel):
    password: hw.SecretStr
    host: str = "db"


class NestedSpec(hw.Spec):
    token: hw.SecretStr
    databases: list[Inner] = pydantic.Field(default_factory=list)
    headers: dict[str, hw.SecretStr] = pydantic.Field(default_factory=dict)
    optional: hw.SecretStr | None = None
    key_bytes: pydantic.SecretBytes | None = None


def test_validating_a_spec_registers_every_secret_in_it() -> None:
    values = {name: unique(name) for name in ("token", "db", "hdr", "opt", "bytes")}
    plugin = hw.Plugin(name="p", version="1", tables=[], spec=NestedSpec)
    plugin.validate_spec(
        {
            "token": values["token"],
            "databases": [{"password": values["db"]}],
            "headers": {"Authorization": values["hdr"]},
            "optional": values["opt"],
            "key_bytes": values["bytes"],
        }
    )
    line = " ".join(values.values())
    assert redact(line) == " ".join([MASK] * len(values))
    # A spec instance passed as it is registers its secrets too.
    given = unique("given")
    plugin.validate_spec(NestedSpec(token=given))
    assert redact(given) == MASK


def test_an_invalid_spec_names_its_model_readably() -> None:
    with pytest.raises(hw.SpecError) as caught:
        hw.Plugin(name="p", version="1", tables=[], spec=NestedSpec).validate_spec({})
    assert str(caught.value).startswith("invalid spec (NestedSpec): 1 error:\n  - token:")


def test_help_of_specs_leads_with_what_a_spec_is() -> None:
    text = pydoc.plain(pydoc.render_doc(hw.Spec))
    head = text[: text.index("Method resolution order")]
    assert "SecretStr" in head and "***" in head and "Example:" in head
    text = pydoc.plain(pydoc.render_doc(NestedSpec))
    head = text[: text.index("Method resolution order")]
    assert "token (SecretStr, required, secret)" in head
    assert "databases (list[" in head and "default from a factory" in head
    # The generated docstring is for help(), not for the JSON Schema CloudQuery shows.
    assert "description" not in NestedSpec.model_json_schema()

    class Documented(hw.Spec):
        """Settings of the example plugin."""

    assert Documented.model_json_schema()["description"] == "Settings of the example plugin."


# --- logs and errors of a sync, as a library -----------------------------------------------


class TokenSpec(hw.Spec):
    token: hw.SecretStr


def leaky_plugin() -> hw.Plugin:
    """A plugin whose resolver puts its token in a log line and in the error it raises."""

    @hw.table("accounts", columns=[hw.Column("id", pa.int64())])
    def accounts(client: TokenSpec) -> Iterator[dict[str, Any]]:
        token = client.token.get_secret_value()
        yield {"id": 1}
        logging.getLogger("my_plugin").warning("calling the API with %s", token)
        raise PermissionError(f"the API refused Authorization: Bearer {token}")

    return hw.Plugin(name="leaky", version="1", tables=[accounts], spec=TokenSpec)


@pytest.fixture
def plain_handler() -> Iterator[io.StringIO]:
    """A plain handler on the root logger, as an application without configure_logging has."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_a_library_sync_never_logs_or_reports_the_token(plain_handler: io.StringIO) -> None:
    token = unique("lib-token")
    custom = logging.getLogger("my_app.sync")  # a logger of the application's own
    with leaky_plugin().sync({"token": token}, logger=custom) as run:
        errors = [m for m in run if isinstance(m, hw.SyncError)]
    text = plain_handler.getvalue()
    assert token not in text
    assert "table resolver failed: PermissionError: the API refused Authorization: Bearer ***" in (
        text
    )
    assert "Traceback" in text and "calling the API with ***" in text
    [error] = errors
    assert token not in error.message and "Bearer ***" in error.message
    assert run.summary.errors == {"accounts": 1}


def test_headwater_formatters_redact_extra_fields_tracebacks_and_stacks() -> None:
    secret = unique("extra-secret")
    register_secret(secret)
    record = logging.getLogger("headwater.test").makeRecord(
        "headwater.test",
        logging.ERROR,
        __file__,
        1,
        "failed",
        (),
        None,
        extra={"detail": {"nested": [f"token={secret}"], secret: 1}, "plain": f"a {secret}"},
        sinfo=f"Stack (most recent call last):\n  value {secret}",
    )
    try:
        raise RuntimeError(secret)
    except RuntimeError:
        record.exc_info = sys.exc_info()
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert secret not in line, type(formatter).__name__
        assert MASK in line
    entry = json.loads(JsonFormatter().format(record))
    assert entry["detail"] == {"nested": ["token=***"], "***": 1}
    assert entry["error"].endswith("RuntimeError: ***") and "***" in entry["stack"]


# --- the CLI: text logs, JSON logs, the live display ------------------------------------------

PLUGIN = textwrap.dedent(
    """
    import logging, time
    import pyarrow as pa
    import headwater as hw

    class Spec(hw.Spec):
        token: hw.SecretStr
        shout: bool = False

    @hw.table("accounts", columns=[hw.Column("id", pa.int64())])
    def accounts(client):
        token = client.token.get_secret_value()
        for i in range(6):
            time.sleep(0.1)  # long enough for the live display to draw
            yield {"id": i}
        if client.shout:
            print("resolver says: my token is", token)
        logging.getLogger("my_plugin").warning("calling the API with %s", token)
        raise PermissionError(f"the API refused Authorization: Bearer {token}")

    @hw.table("fine", columns=[hw.Column("id", pa.int64())])
    def fine(client):
        yield {"id": 1}

    def test_connection(client):
        raise PermissionError(f"token {client.token.get_secret_value()} rejected")

    plugin = hw.Plugin(name="leaky", version="1", tables=[accounts, fine], spec=Spec,
                       test_connection=test_connection)
    """
)


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "leaky_plugin.py"
    path.write_text(PLUGIN)
    return path


def headwater(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEADWATER, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_cli_text_logs_hide_the_spec_token(plugin_file: Path, tmp_path: Path) -> None:
    token = unique("cli-text-token")
    done = headwater(
        "sync",
        str(plugin_file),
        "--spec",
        json.dumps({"token": token}),
        "--no-progress",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert token not in output
    assert "table resolver failed: PermissionError: the API refused Authorization: Bearer ***" in (
        done.stderr
    )
    assert "PermissionError: the API refused Authorization: Bearer ***" in done.stderr  # traceback
    assert "calling the API with ***" in done.stderr  # the plugin's own logger
    assert "accounts" in done.stdout and "total" in done.stdout  # the summary


def test_cli_json_logs_hide_the_spec_token(plugin_file: Path, tmp_path: Path) -> None:
    token = unique("cli-json-token")
    done = headwater(
        "sync",
        str(plugin_file),
        "--spec",
        json.dumps({"token": token}),
        "--log-format",
        "json",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert token not in done.stdout + done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [failed] = [e for e in entries if e["message"].startswith("table resolver failed")]
    assert failed["message"].endswith("Bearer ***")
    assert failed["error"].endswith("PermissionError: the API refused Authorization: Bearer ***")
    assert any(e["message"] == "sync summary" for e in entries)


def test_cli_check_hides_the_token_a_connection_test_reports(
    plugin_file: Path, tmp_path: Path
) -> None:
    token = unique("cli-check-token")
    done = headwater(
        "check", str(plugin_file), "--spec", json.dumps({"token": token}), cwd=tmp_path
    )
    assert done.returncode == 1
    assert token not in done.stdout + done.stderr
    assert "PermissionError: token *** rejected" in done.stderr


def test_cli_live_progress_hides_the_spec_token(plugin_file: Path, tmp_path: Path) -> None:
    token = unique("cli-live-token")
    command = [
        *HEADWATER,
        "sync",
        str(plugin_file),
        "--spec",
        json.dumps({"token": token, "shout": True}),
    ]
    code, screen = run_on_terminal(command, cwd=tmp_path)  # a terminal: the live display is on
    assert code == 1
    assert "syncing (" in screen  # the live display ran
    assert token not in screen
    assert "resolver says: my token is ***" in screen  # a print, redirected by the display
    assert "Bearer ***" in screen


def test_the_live_display_and_the_summary_redact_what_they_draw(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = unique("drawn-secret")
    register_secret(secret)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    with LiveProgress(console) as progress:
        progress.started([f"table_{secret}"])
        print(f"a resolver prints {secret}")
        print(f"and logs {secret}", file=sys.stderr)
        console.print(progress)
    screen = out.getvalue()
    assert secret not in screen
    assert "a resolver prints ***" in screen and "and logs ***" in screen
    assert sys.stdout is not None and "Redacting" not in type(sys.stdout).__name__  # restored
    result = LocalSyncResult(
        url=f"postgresql://bob:{secret}@host/db",
        tables=["a"],
        rows={"a": 1},
        errors={"a": 0},
        skipped_rows={"a": 0},
        error_messages=[],
        duration=1.0,
        complete=True,
        state={},
    )
    summary = io.StringIO()
    Console(file=summary, width=200).print(summary_table(result))
    assert secret not in summary.getvalue() and "bob:***@host" in summary.getvalue()
    capsys.readouterr()


# --- HTTP: errors, retry logs and cassettes ----------------------------------------------------


def echo(request: Any) -> MockResponse:
    """An API that echoes the request it refuses, as some do."""
    return MockResponse(400, json={"error": "bad request", "you_sent": request.target})


def test_an_error_body_echoing_a_per_request_key_is_masked_by_value(
    http_server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    key, sig = unique("per-request-key"), unique("signature")
    http_server.route("GET", "/search", status=503, times=1)
    http_server.route("GET", "/search", echo)
    caplog.set_level(logging.DEBUG)
    with (
        http.Client(http_server.url, retry=http.RetryPolicy(min_wait=0, backoff=0)) as client,
        pytest.raises(http.HttpStatusError) as caught,
    ):
        client.get("/search", params={"key": key, "sig": sig, "q": "open issues"})
    message = str(caught.value)
    assert key not in message and sig not in message
    assert "key=***&sig=***" in message  # the URL, masked by name
    assert '"you_sent": "/search?key=***&sig=***' in message  # the echo, masked by value
    assert key not in caplog.text and sig not in caplog.text
    assert any(r.getMessage().startswith("retrying GET") for r in caplog.records)


def test_a_request_registers_its_url_password_and_secret_headers_as_it_goes_out() -> None:
    password, api_key, bearer = unique("url-pw"), unique("x-api-key"), unique("bearer")
    http.core.register_request_secrets(
        httpx.Request(
            "GET",
            f"https://bob:{password}@api.example.com/x?page=2",
            headers={"X-API-Key": api_key, "Authorization": f"Bearer {bearer}"},
        )
    )
    assert redact(f"{password} {api_key} Authorization: Bearer {bearer}") == (
        "*** *** Authorization: Bearer ***"  # the scheme stays readable
    )


def test_a_cassette_never_stores_a_registered_secret(tmp_path: Path) -> None:
    token, key, client_secret = unique("bearer"), unique("api-key"), unique("client-secret")
    spec_secret = unique("spec-secret")
    hw.Plugin(name="p", version="1", tables=[], spec=TokenSpec).validate_spec(
        {"token": spec_secret}
    )
    path = tmp_path / "cassette.json"
    with MockServer() as server:
        server.route(
            "POST",
            "/token",
            json={"access_token": token, "token_type": "bearer", "expires_in": 3600},
        )
        server.route(
            "GET",
            "/items",
            lambda r: MockResponse(
                200,
                json={"echo": r.target, "note": f"spec said {spec_secret}", "key": "ISSUE-1"},
                headers={"Link": f'<{server.url}/items?page=2&key={key}>; rel="next"'},
            ),
        )
        auth = http.OAuth2ClientCredentials(server.url + "/token", "client-id", client_secret)
        with use_cassette(path), http.Client(server.url, auth=auth) as client:
            client.get("/items", params={"key": key, "page": "1"})
    text = path.read_text()
    for secret in (token, key, client_secret, spec_secret):
        assert secret not in text
    stored = json.loads(text)["interactions"]
    assert stored[0]["request"]["body"].count("client_secret=***") == 1  # a form body
    answer = json.loads(stored[1]["response"]["body"]["text"])
    assert answer["echo"] == "/items?key=***&page=1" and answer["key"] == "ISSUE-1"
    assert "key=***" in stored[1]["response"]["headers"]["link"]
    # Replayed with no server and other credentials, the same request still matches.
    dummy = http.OAuth2ClientCredentials("http://127.0.0.1:9/token", "client-id", "ci-dummy")
    with use_cassette(path, mode="none"), http.Client("http://127.0.0.1:9", auth=dummy) as client:
        answer = client.get("/items", params={"key": "ci-dummy-key", "page": "1"}).json()
    assert answer["key"] == "ISSUE-1"


# --- PostgreSQL destination URLs ---------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def test_postgres_passwords_are_registered_and_hidden_in_the_url() -> None:
    password, ssl_password = unique("pg/pass@word"), unique("sslpw")
    encoded = password.replace("/", "%2F").replace("@", "%40")
    url = f"postgresql://bob:{encoded}@127.0.0.1:5432/db?sslpassword={ssl_password}"
    parsed = parse_url(url)
    assert redact_url(url) == "postgresql://bob:***@127.0.0.1:5432/db?sslpassword=***"
    assert password not in repr(parsed) and encoded not in repr(parsed)
    # Registered by value, decoded or not: a driver message quoting it is masked too.
    assert redact(f"{password} {encoded} {ssl_password}") == f"{MASK} {MASK} {MASK}"
    unregistered = unique("typo-pw")
    with pytest.raises(DestinationError) as caught:
        parse_url(f"bob:{unregistered}@127.0.0.1/db")  # no scheme: not a URL
    assert unregistered not in str(caught.value) and "...@127.0.0.1/db" in str(caught.value)


@pytest.mark.parametrize("form", ["userinfo", "param"])
def test_an_unreachable_postgres_never_prints_its_password(
    plugin_file: Path, tmp_path: Path, form: str
) -> None:
    password = unique("unreachable-pw")
    port = closed_port()
    url = (
        f"postgresql://bob:{password}@127.0.0.1:{port}/db"
        if form == "userinfo"
        else f"postgresql://bob@127.0.0.1:{port}/db?password={password}"
    )
    with pytest.raises(DestinationError) as caught:
        open_destination(url)
    assert password not in str(caught.value) and "cannot connect" in str(caught.value)
    for log_format in ("text", "json"):
        done = headwater(
            "sync",
            str(plugin_file),
            "--spec",
            '{"token": "unused-token"}',
            "--to",
            url,
            "--log-format",
            log_format,
            "--no-progress",
            cwd=tmp_path,
        )
        assert done.returncode == 1, done.stderr
        assert password not in done.stdout + done.stderr
        assert "cannot connect" in done.stderr and MASK in done.stderr


def test_a_postgres_password_is_hidden_in_logs_summary_and_server_errors(
    plugin_file: Path, tmp_path: Path, postgres_url: str
) -> None:
    password = unique("real-pg-pw")
    # The test server trusts loopback, so any password connects; it must still never show.
    with_password = postgres_url.replace(
        "postgresql://postgres@", f"postgresql://postgres:{password}@"
    )
    for log_format in ("text", "json"):
        done = headwater(
            "sync",
            str(plugin_file),
            "--spec",
            '{"token": "unused-token"}',
            "--to",
            with_password,
            "--log-format",
            log_format,
            "--no-progress",
            "--log-level",
            "debug",
            cwd=tmp_path,
        )
        assert done.returncode == 1, done.stderr  # the plugin's "accounts" table fails
        assert password not in done.stdout + done.stderr
        shown = "postgres:***@127.0.0.1"
        assert shown in (done.stdout if log_format == "text" else done.stderr)  # the summary
    # An error of the server itself: the database does not exist.
    missing = with_password.rsplit("/", 1)[0] + f"/no_such_db?password={password}"
    with pytest.raises(DestinationError) as caught:
        open_destination(missing)
    message = str(caught.value)
    assert password not in message and "no_such_db" in message
    assert "postgres:***@" in message and "password=***" in message
