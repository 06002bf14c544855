"""Clients: a sync releases the client it made (``disconnect``, ``close()`` or ``aclose()``)
however it ends, and client ids that would key state are stable and distinct."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest

import headwater as hw
from headwater import cli
from headwater.testing import run_sync

COLUMNS = [hw.Column("id", pa.int64(), primary_key=True)]


class Session:
    """A client that records its life: resolvers check it is still open when they use it."""

    made: ClassVar[list[Session]] = []

    def __init__(self, spec: Any = None, ident: str | None = None) -> None:
        self.events: list[str] = []
        if ident is not None:
            self.id = ident
        Session.made.append(self)

    def fetch(self, n: int) -> Iterator[dict[str, int]]:
        assert "closed" not in self.events, "a resolver ran with a closed client"
        self.events.append("fetched")
        yield from ({"id": i} for i in range(n))

    def close(self) -> None:
        self.events.append("closed")


@pytest.fixture(autouse=True)
def fresh_sessions() -> Iterator[None]:
    Session.made.clear()
    yield
    Session.made.clear()


def session_plugin(rows: int = 3, **options: Any) -> hw.Plugin:
    @hw.table("things", columns=COLUMNS)
    def things(client: Session) -> Iterator[dict[str, int]]:
        yield from client.fetch(rows)

    return hw.Plugin(name="p", version="1", tables=[things], connect=Session, **options)


def drain(run: hw.SyncRun) -> list[Any]:
    return list(run)


def test_a_sync_closes_the_client_it_made_after_the_last_row() -> None:
    run = session_plugin().sync()
    assert Session.made[0].events == []  # connected eagerly, closed only at the end
    messages = drain(run)
    assert sum(m.batch.num_rows for m in messages if isinstance(m, hw.Insert)) == 3
    assert Session.made[0].events == ["fetched", "closed"]


def test_a_run_closed_early_or_never_started_closes_its_client() -> None:
    @hw.table("endless", columns=COLUMNS)
    def endless(client: Session) -> Iterator[dict[str, int]]:
        i = 0
        while True:
            i += 1
            yield {"id": i}

    plugin = hw.Plugin(name="p", version="1", tables=[endless], connect=Session)
    with plugin.sync(batch_max_rows=10) as run:
        for message in run:
            if isinstance(message, hw.Insert):
                break
    assert Session.made[0].events == ["closed"]
    never_started = plugin.sync()
    never_started.close()
    never_started.close()  # a second close does nothing more
    assert Session.made[1].events == ["closed"]


def test_a_failing_resolver_ends_its_table_and_the_client_is_still_closed_once() -> None:
    @hw.table("broken", columns=COLUMNS)
    def broken(client: Session) -> Iterator[dict[str, int]]:
        yield {"id": 1}
        raise RuntimeError("the API said no")

    plugin = hw.Plugin(name="p", version="1", tables=[broken], connect=Session)
    messages = drain(plugin.sync())
    assert any(isinstance(m, hw.SyncError) for m in messages)
    assert Session.made[0].events == ["closed"]


def test_a_client_passed_in_belongs_to_the_caller() -> None:
    plugin = session_plugin()
    client = plugin.client()
    drain(plugin.sync(client=client))
    drain(plugin.sync(client=client))
    assert client.events == ["fetched", "fetched"]
    plugin.release(client)
    assert client.events[-1] == "closed"


def test_the_disconnect_hook_replaces_close() -> None:
    released: list[Any] = []
    plugin = session_plugin(disconnect=released.append)
    drain(plugin.sync())
    assert released == Session.made and Session.made[0].events == ["fetched"]


def test_a_plugin_without_connect_never_closes_its_spec() -> None:
    class Spec(hw.Spec):
        def close(self) -> None:
            raise AssertionError("the spec is not a client to close")

    @hw.table("things", columns=COLUMNS)
    def things(spec: Spec) -> Iterator[dict[str, int]]:
        yield {"id": 1}

    plugin = hw.Plugin(name="p", version="1", tables=[things], spec=Spec)
    drain(plugin.sync())
    plugin.release(plugin.client())


def test_an_error_after_connecting_closes_the_client() -> None:
    plugin = session_plugin(clients=lambda client: "not a list")
    with pytest.raises(hw.PluginError, match="must return an iterable of clients"):
        plugin.sync()
    assert Session.made[0].events == ["closed"]


class AsyncSession:
    """An async client: ``aclose()`` must run on the loop its requests ran on."""

    def __init__(self, spec: Any = None) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed_on: asyncio.AbstractEventLoop | None = None

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.closed_on = asyncio.get_running_loop()


def test_an_async_client_is_closed_on_the_loop_its_resolvers_used() -> None:
    made: list[AsyncSession] = []

    def connect(spec: Any) -> AsyncSession:
        made.append(AsyncSession(spec))
        return made[-1]

    @hw.table("things", columns=COLUMNS)
    async def things(client: AsyncSession) -> AsyncIterator[dict[str, int]]:
        client.loop = asyncio.get_running_loop()
        for i in range(3):
            await asyncio.sleep(0)
            yield {"id": i}

    plugin = hw.Plugin(name="p", version="1", tables=[things], connect=connect)
    drain(plugin.sync())
    assert made[0].loop is not None and made[0].closed_on is made[0].loop

    @hw.table("plain", columns=COLUMNS)
    def plain(client: AsyncSession) -> Iterator[dict[str, int]]:
        yield {"id": 1}

    sync_only = hw.Plugin(name="p", version="1", tables=[plain], connect=connect)
    drain(sync_only.sync())
    assert made[1].closed_on is not None  # no resolver started the loop: one of its own
    sync_only.release(client := connect(None))
    assert client.closed_on is not None


def test_a_failing_disconnect_is_logged_and_the_sync_keeps_its_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def disconnect(client: Session) -> None:
        raise OSError("socket already gone")

    plugin = session_plugin(disconnect=disconnect)
    with caplog.at_level(logging.WARNING, logger="headwater.sync"):
        run = plugin.sync()
        messages = drain(run)
    assert sum(m.batch.num_rows for m in messages if isinstance(m, hw.Insert)) == 3
    assert run.summary.complete
    assert "releasing the client failed: OSError: socket already gone" in caplog.text
    # The testing kit raises it instead, so that a plugin's own tests catch a broken hook.
    with pytest.raises(OSError, match="socket already gone"):
        run_sync(plugin)


def test_check_releases_the_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = session_plugin(test_connection=lambda client: None)
    assert cli.main(["check", "--spec", "{}"], plugin=plugin) == 0
    assert Session.made[-1].events == ["closed"]

    def refuse(client: Session) -> None:
        raise PermissionError("token rejected")

    refusing = session_plugin(test_connection=refuse)
    assert cli.main(["check", "--spec", "{}"], plugin=refusing) == 1
    assert Session.made[-1].events == ["closed"]

    def broken_disconnect(client: Session) -> None:
        raise OSError("socket already gone")

    leaking = session_plugin(disconnect=broken_disconnect)
    assert cli.main(["check", "--spec", "{}"], plugin=leaking) == 1
    assert "releasing the client of 'p' failed: OSError: socket already gone" in (
        capsys.readouterr().err
    )


def test_a_disconnect_that_is_not_callable_is_refused() -> None:
    with pytest.raises(hw.PluginError, match="disconnect must be callable, got 'close'"):
        session_plugin(disconnect="close")


# --- client ids ------------------------------------------------------------------------------


def accounts_plugin(clients: Any, *, with_state: bool) -> hw.Plugin:
    if with_state:

        def resolve(client: Any, state: hw.State) -> Iterator[dict[str, int]]:
            state.set("seen", "1")
            yield {"id": 1}

    else:

        def resolve(client: Any) -> Iterator[dict[str, int]]:  # type: ignore[misc]
            yield {"id": 1}

    table = hw.Table("accounts", COLUMNS, resolver=resolve)
    return hw.Plugin(name="p", version="1", tables=[table], clients=clients)


def test_two_clients_of_a_table_may_not_share_an_id() -> None:
    plugin = accounts_plugin(
        lambda client: [Session(ident="acct-1"), Session(ident="acct-1")], with_state=False
    )
    with pytest.raises(hw.PluginError, match="two of its clients share the id 'acct-1'"):
        plugin.sync()
    strings = accounts_plugin(lambda client: ["eu", "us", "eu"], with_state=False)
    with pytest.raises(hw.PluginError, match="share the id 'eu'"):
        strings.sync()


def test_state_per_client_needs_clients_with_ids() -> None:
    anonymous = accounts_plugin(lambda client: [Session(), Session()], with_state=True)
    with pytest.raises(hw.PluginError) as refused:
        anonymous.sync()
    message = str(refused.value)
    assert "table 'accounts' keeps incremental state per client" in message
    assert "runs with 2 clients, but Session has no 'id' attribute" in message
    # Without state, positions are only names in messages; with ids, state is safe.
    assert len(drain(accounts_plugin(lambda c: [Session(), Session()], with_state=False).sync()))
    named = accounts_plugin(
        lambda client: [Session(ident="a"), Session(ident="b")], with_state=True
    )
    run = named.sync()
    drain(run)
    assert run.summary.rows == {"accounts": 2}
    alone = accounts_plugin(lambda client: [Session()], with_state=True)
    assert alone.sync().close() is None  # one client: its position cannot change
