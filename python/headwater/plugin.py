"""Plugins: tables with resolvers, a spec, a client, and :meth:`Plugin.sync`.

Example:
    >>> import pyarrow as pa
    >>> import headwater as hw
    >>> @hw.table("demo_numbers", columns=[hw.Column("n", pa.int64(), primary_key=True)])
    ... def numbers(client):
    ...     yield from ({"n": n} for n in range(3))
    >>> plugin = hw.Plugin(name="demo", version="0.1.0", tables=[numbers])
    >>> run = plugin.sync()
    >>> [type(m).__name__ for m in run]
    ['MigrateTable', 'Insert']
    >>> run.summary.rows
    {'demo_numbers': 3}
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pydantic

from headwater import cli
from headwater.destinations import DEFAULT_URL
from headwater.destinations import run as local
from headwater.destinations.base import WriteMode
from headwater.errors import PluginError, SpecError
from headwater.schema import Column, Resolver, RowHook, Table, table_columns
from headwater.spec import spec_schema, validate_spec
from headwater.sync.asyncio_driver import EventLoop, run_to_end
from headwater.sync.events import RunSink
from headwater.sync.options import (
    TUNING_OPTIONS,
    SyncOptionFields,
    SyncOptions,
    check_option,
)
from headwater.sync.run import SyncRun, make_engine
from headwater.sync.selection import select_tables

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Plugin", "table"]

_PLUGIN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")

#: ``Plugin.sync(client=...)``'s default: connect with the spec.
_CONNECT: Any = object()


def table(
    name: str,
    columns: Iterable[Column] | None = None,
    *,
    model: type[Any] | None = None,
    primary_keys: Iterable[str] = (),
    title: str | None = None,
    description: str | None = None,
    clients: Callable[[Any], Iterable[Any]] | None = None,
    pre_row: RowHook | None = None,
    post_row: RowHook | None = None,
    is_incremental: bool | None = None,
    strict: bool | None = None,
) -> Callable[[Resolver], Table]:
    """Decorator: make the decorated function the resolver of a new top-level table.

    The resolver is called as ``resolver(client)`` (or ``resolver()``) once per client. It
    may be a generator, an async generator, or a function (sync or async) returning an
    iterable; it yields rows (dicts, objects, dataclasses, pydantic models, tuples), pages of
    rows (lists), or Arrow data (a pyarrow batch or table, or anything with
    ``__arrow_c_stream__``/``__arrow_c_array__``). Add child tables with
    :meth:`Table.child`. A yielded row must not change afterwards: a new row may be read a
    few rows later (see the README on read-ahead).

    Args:
        name: Table name.
        columns: The columns; or give ``model`` instead.
        model: A pydantic model or dataclass to derive the columns from
            (:func:`headwater.columns_from`).
        primary_keys: With ``model``: extra primary-key field names.
        title: Human-readable title.
        description: Free text for documentation.
        clients: ``clients(client)``: run the table once per returned client, overriding the
            plugin's ``clients``.
        pre_row: ``pre_row(client, row)``, run on every row first; may return a replacement,
            which child tables receive too.
        post_row: ``post_row(client, row)``, run on every row last; may return a replacement
            of what is stored (child tables receive the row as yielded).
        is_incremental: Mark the table incremental in its schema; by default it is when a
            column is an ``incremental_key`` or the resolver takes ``state``.
        strict: Refuse rows with keys or attributes that match no column (a row error), and
            Arrow data with such columns; by default the plugin's ``strict``, which defaults
            to dropping them silently.

    Returns:
        A decorator returning the :class:`Table`.
    """
    table_cols = table_columns(name, columns, model, primary_keys)

    def decorate(resolver: Resolver) -> Table:
        return Table(
            name,
            table_cols,
            title=title,
            description=description,
            resolver=resolver,
            clients=clients,
            pre_row=pre_row,
            post_row=post_row,
            is_incremental=is_incremental,
            strict=strict,
        )

    return decorate


class Plugin(cli.CommandLineTarget):
    """A source plugin: its tables, its spec, and how to connect and run them.

    Args:
        name: Plugin name: lowercase letters, digits, ``-`` and ``_``.
        version: Plugin version, e.g. ``"1.2.0"``.
        tables: The top-level tables (their children come along).
        spec: The spec model, a subclass of :class:`headwater.Spec` (any pydantic model
            works); ``None`` for a plugin without settings.
        connect: ``connect(spec) -> client``: makes the client object resolvers receive,
            from the validated spec. Without it, resolvers receive the spec itself.
        disconnect: ``disconnect(client)`` (or ``async def``): releases a client ``connect``
            made, once no resolver needs it. Without it, the client's own ``close()`` or
            ``aclose()`` is called, if it has one (see :meth:`release`).
        clients: ``clients(client) -> iterable of clients``: runs every top-level table once
            per client (accounts, regions); tables may override it.
        test_connection: ``test_connection(client)``: checks credentials and reachability;
            raise to report a failure.
        sync_options: ``sync_options(spec) -> mapping``: options of :meth:`sync` taken from
            the validated spec, keyed by their names there, e.g. ``lambda spec:
            {"concurrency": spec.concurrency}``. ``headwater serve`` applies them to every
            ``Sync``; ``headwater sync`` where its command line leaves an option unset. See
            :meth:`sync_options_from`.
        title: Human-readable title.
        description: What the plugin syncs.
        team: The CloudQuery team publishing it.
        strict: The default of the tables' ``strict`` (see :class:`~headwater.Table`): refuse
            rows with keys or attributes that match no column. ``False`` (the default) drops
            such keys silently.

    Raises:
        PluginError: An argument is invalid: the message says which and why.
    """

    def __init__(
        self,
        name: str,
        version: str,
        tables: Iterable[Table],
        *,
        spec: type[pydantic.BaseModel] | None = None,
        connect: Callable[[Any], Any] | None = None,
        disconnect: Callable[[Any], Any] | None = None,
        clients: Callable[[Any], Iterable[Any]] | None = None,
        test_connection: Callable[[Any], Any] | None = None,
        sync_options: Callable[[Any], Mapping[str, Any]] | None = None,
        title: str | None = None,
        description: str | None = None,
        team: str | None = None,
        strict: bool = False,
    ) -> None:
        if not isinstance(name, str) or not _PLUGIN_NAME.fullmatch(name):
            raise PluginError(
                f"plugin name must be lowercase letters, digits, '-' and '_', got {name!r}"
            )
        if not isinstance(version, str) or not version.strip():
            raise PluginError(f"plugin {name!r}: version must be a non-empty str, got {version!r}")
        if spec is not None and not (
            isinstance(spec, type) and issubclass(spec, pydantic.BaseModel)
        ):
            raise PluginError(
                f"plugin {name!r}: spec must be a pydantic model class (a subclass of "
                f"headwater.Spec), got {spec!r}"
            )
        for option, function in (
            ("connect", connect),
            ("disconnect", disconnect),
            ("clients", clients),
            ("test_connection", test_connection),
            ("sync_options", sync_options),
        ):
            if function is not None and not callable(function):
                raise PluginError(f"plugin {name!r}: {option} must be callable, got {function!r}")
        if not isinstance(strict, bool):
            raise PluginError(f"plugin {name!r}: strict must be a bool, got {strict!r}")
        self.name = name
        self.version = version
        self.tables = _check_tables(name, tables)
        self.spec = spec
        self.connect = connect
        self.disconnect = disconnect
        self.clients = clients
        self.test_connection = test_connection
        self.sync_options = sync_options
        self.title = title or name
        self.description = description or ""
        self.team = team or ""
        self.strict = strict

    def __repr__(self) -> str:
        return f"Plugin({self.name!r}, {self.version!r}, tables={[t.name for t in self.tables]})"

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Run the plugin's command line (``python my_plugin.py COMMAND ...``) and exit.

        The commands are those of ``headwater`` (see ``--help``), without the PLUGIN
        argument.
        """
        raise SystemExit(cli.main(argv, plugin=self))

    def flat_tables(self) -> list[Table]:
        """Every table, children included, parents before children."""
        return [t for top in self.tables for t in top.walk()]

    def get_table(self, name: str) -> Table:
        """The table called ``name``, at any depth.

        Raises:
            KeyError: No such table; the message lists the tables.
        """
        for candidate in self.flat_tables():
            if candidate.name == name:
                return candidate
        names = ", ".join(t.name for t in self.flat_tables())
        raise KeyError(f"plugin {self.name!r} has no table {name!r}; its tables are {names}")

    def spec_schema(self) -> dict[str, Any]:
        """The JSON Schema of the spec (what CloudQuery's ``GetSpecSchema`` returns)."""
        return spec_schema(self.spec)

    def validate_spec(self, spec: object = None) -> Any:
        """Validate a spec (a mapping, JSON text or a spec instance).

        Raises:
            SpecError: It is invalid; every field error is listed, secrets left out.
        """
        return validate_spec(self.spec, spec)

    def select_tables(
        self,
        tables: Iterable[str] = ("*",),
        skip_tables: Iterable[str] = (),
        skip_dependent_tables: bool = False,
    ) -> list[Table]:
        """The tables a sync with these options resolves (see :func:`headwater.select_tables`)."""
        return select_tables(self.tables, tables, skip_tables, skip_dependent_tables)

    def client(self, spec: object = None) -> Any:
        """Validate ``spec`` and make the client resolvers receive (``connect(spec)``).

        Hand it to :meth:`release` when done with it; :meth:`sync` without ``client=`` makes
        and releases its own.
        """
        validated = self.validate_spec(spec)
        return self.connect(validated) if self.connect is not None else validated

    def sync_options_from(self, spec: object = None) -> dict[str, Any]:
        """The options the plugin's ``sync_options`` hook takes from ``spec``.

        The hook may set the options that tune a sync (``concurrency``,
        ``table_concurrency``, ``depth_concurrency``, ``strategy``,
        ``shuffle_seed``, ``max_buffer_bytes``, ``batch_max_rows``, ``batch_max_bytes``,
        ``batch_max_latency``, ``on_row_error``, ``resolver_timeout`` and ``sync_timeout``),
        returned as a mapping or a :class:`~headwater.SyncOptions` (the options it sets
        explicitly count); which tables to sync and the shard belong to whoever runs the
        sync. A value of ``None`` leaves the option at its default. ``headwater serve`` and
        ``headwater sync`` layer these under their own options
        (:meth:`SyncOptions.with_defaults <headwater.SyncOptions.with_defaults>`): an option
        the caller sets wins.

        Args:
            spec: The spec (a mapping, JSON text or a spec instance); validated first.

        Returns:
            The options set, by name; ``{}`` for a plugin without the hook.

        Raises:
            SpecError: The spec is invalid, or the hook mapped it onto a value the option does
                not take; the message names the option, the value and what it takes.
            PluginError: The hook raised, did not return a mapping, or set an option it
                cannot set.
        """
        validated = self.validate_spec(spec)
        if self.sync_options is None:
            return {}
        try:
            options = self.sync_options(validated)
        except Exception as exc:
            raise PluginError(
                f"plugin {self.name!r}: sync_options(spec) failed: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(options, SyncOptions):
            options = options.given()
        if not isinstance(options, Mapping):
            raise PluginError(
                f"plugin {self.name!r}: sync_options(spec) must return a mapping of sync "
                f"options, got {type(options).__name__} (a SyncOptions works too)"
            )
        checked: dict[str, Any] = {}
        for key, value in options.items():
            if key not in TUNING_OPTIONS:
                raise PluginError(
                    f"plugin {self.name!r}: sync_options(spec) returned {key!r}, which is not "
                    f"an option it can set; it can set {', '.join(TUNING_OPTIONS)}"
                )
            if value is None:
                continue
            takes = check_option(key, value)
            if takes is not None:
                shown = repr(value)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                raise SpecError(
                    f"plugin {self.name!r}: the spec sets the sync option {key} to {shown} "
                    f"(through sync_options); {key} takes {takes}"
                )
            checked[key] = value
        return checked

    def release(self, client: Any) -> None:
        """Release a client made by :meth:`client` (its connections, sessions, threads).

        Calls ``disconnect(client)``; without that hook, the client's ``close()``, or else its
        ``aclose()``, if it has one. A coroutine they return is run to its end. A plugin
        without ``connect`` and ``disconnect`` has nothing to release: its resolvers receive
        the spec. What the hook raises passes through.
        """
        outcome = self._start_release(client)
        if inspect.isawaitable(outcome):
            run_to_end(outcome)

    def _start_release(self, client: Any) -> Any:
        """Begins :meth:`release`; returns what the hook returned, perhaps an awaitable."""
        if self.disconnect is not None:
            return self.disconnect(client)
        if self.connect is None:
            return None
        for name in ("close", "aclose"):
            method = getattr(client, name, None)
            if callable(method):
                return method()
        return None

    def sync(
        self,
        spec: object = None,
        *,
        options: SyncOptions | None = None,
        state: Mapping[str, str] | None = None,
        client: Any = _CONNECT,
        logger: logging.Logger | None = None,
        **overrides: Unpack[SyncOptionFields],
    ) -> SyncRun:
        """Sync the selected tables; iterate the result for messages.

        The sync starts on the first ``next()``: a :class:`~headwater.MigrateTable` for every
        selected table, then :class:`~headwater.Insert`, :class:`~headwater.StateUpdate` and
        :class:`~headwater.SyncError` messages as resolvers produce them. Resolvers run on
        worker threads (async ones on an event loop), holding the GIL only while Python runs.

        The options come from ``options`` and the keyword options: a keyword option replaces
        that field of ``options`` (the keyword wins), the others keep the value ``options``
        gives them, or their default. Given only ``options``, the engine receives that very
        object (:attr:`SyncRun.options <headwater.SyncRun.options>`). The plugin's own
        ``sync_options`` hook is not applied here: ``headwater serve`` and ``headwater sync``
        apply it (see :meth:`sync_options_from`).

        Args:
            spec: The plugin spec (a mapping, JSON text, or a spec instance).
            options: The sync's options (default: ``SyncOptions()``).
            state: The incremental state to start from (string keys and values), as stored by
                the destination or the CloudQuery state backend. Resolvers that take a
                ``state`` argument read it with ``state.get(key)`` and update it with
                ``state.set(key, value)``; each update is yielded as a
                :class:`~headwater.StateUpdate` after the rows before it.
            client: A client made earlier with :meth:`client` (a server connects once, at
                ``Init``), which the caller releases; by default ``connect`` is called with
                the validated spec, and the run releases that client when it ends, fails or
                is closed (:meth:`release`).
            logger: Where sync events are logged (default ``headwater.sync``).
            **overrides: Fields of :class:`~headwater.SyncOptions` by name (``tables``,
                ``concurrency``, ``batch_max_rows``, ``on_row_error``, ``sync_timeout``...),
                each replacing that field of ``options``.

        Returns:
            The :class:`~headwater.SyncRun` iterator.

        Raises:
            SpecError: The spec is invalid.
            SyncOptionsError: An option is unknown or out of range; the message names it,
                the value and what it takes.
            TableSelectionError: A table pattern matches no table.
            SyncTimeoutError: (while iterating) The sync ran past ``sync_timeout``.
        """
        given = (options if options is not None else SyncOptions()).replace(**overrides)
        initial_state = _check_state(state)
        selected = self.select_tables(given.tables, given.skip_tables, given.skip_dependent_tables)
        release: Callable[[], Any] | None = None
        if client is _CONNECT:
            client = self.client(spec)
            release = functools.partial(self._start_release, client)
        try:
            clients, roots = self._multiplex(selected, client)
            client_ids = _client_ids(selected, clients, roots)
            # The only client of a sync, without an id of its own, is not named in messages and
            # logs (its positional id says nothing); its state keys keep that id, so cursors
            # stored by earlier versions stay where the next sync looks for them.
            client_labels: list[str | None] = list(client_ids)
            if len(clients) == 1 and (clients[0] is None or _positional(clients[0])):
                client_labels = [None]
            log = logger or logging.getLogger("headwater.sync")
            loop = EventLoop(given.resolver_timeout)
            sink = RunSink(log, loop)
            engine = make_engine(
                selected,
                roots,
                clients,
                client_ids,
                sink,
                given,
                strict=self.strict,
                client_labels=client_labels,
                state=initial_state,
            )
            return SyncRun(selected, engine, loop, log, release, sink=sink)
        except BaseException:
            if release is not None:
                self.release(client)
            raise

    def sync_to(
        self,
        to: str = DEFAULT_URL,
        spec: object = None,
        *,
        options: SyncOptions | None = None,
        mode: WriteMode | None = None,
        delete_stale: bool = False,
        migrate_force: bool = False,
        commit_interval: float = local.DEFAULT_COMMIT_INTERVAL,
        source_name: str | None = None,
        progress: local.ProgressListener | None = None,
        coalesce_rows: int | None = None,
        **overrides: Unpack[SyncOptionFields],
    ) -> local.LocalSyncResult:
        """Sync into a local destination: DuckDB, PostgreSQL, Parquet or JSON lines.

        What ``headwater sync`` runs. Batches go to the destination as they come; the
        incremental state is committed in the same transaction as the rows it covers, so a
        crash at any moment leaves the destination at its last commit with a state that never
        runs ahead of the data.

        Example:
            >>> import pyarrow as pa
            >>> import headwater as hw
            >>> @hw.table("numbers", columns=[hw.Column("n", pa.int64(), primary_key=True)])
            ... def numbers(client):
            ...     yield from ({"n": n} for n in range(3))
            >>> plugin = hw.Plugin(name="demo", version="1", tables=[numbers])
            >>> plugin.sync_to("duckdb:///:memory:", options=hw.SyncOptions(concurrency=4)).rows
            {'numbers': 3}

        Args:
            to: The destination URL (see :mod:`headwater.destinations`): ``duckdb:///path``
                (the default is ``./headwater.duckdb``), ``postgresql://...``,
                ``parquet:///dir``, ``jsonl:///dir``.
            spec: The plugin spec (a mapping, JSON text or a spec instance).
            options: The sync's options, combined with the keyword options as in
                :meth:`sync`, and passed on to it unchanged.
            mode: ``append``, ``overwrite`` or ``upsert``; by default ``upsert`` for tables
                with a primary key (a rerun does not double them) and ``append`` for the others.
            delete_stale: Delete this source's rows of earlier syncs from the tables that
                synced without errors (neither they nor a table above them failed).
            migrate_force: Rebuild tables whose column types changed incompatibly.
            commit_interval: Seconds between commits of incremental state with its rows.
            source_name: ``_cq_source_name`` and the state's owner (default: the plugin's name).
            progress: Told about rows and errors as they are written.
            coalesce_rows: Batches smaller than this are gathered up to this many rows before
                they are written (default: what the destination prefers).
            **overrides: Fields of :class:`~headwater.SyncOptions` by name, each replacing
                that field of ``options``.

        Returns:
            What was written; ``failed_tables`` lists tables with errors.

        Raises:
            SpecError: The spec is invalid (nothing was written).
            SyncOptionsError: An option is unknown or out of range (nothing was written).
            TableSelectionError: A table pattern matches no table (nothing was written).
            MigrationError: A table's column type changed incompatibly (nothing was written).
            DestinationError: The destination failed; what was not committed is rolled back.
            SyncTimeoutError: The sync ran past ``sync_timeout``; what was not committed is
                rolled back.
            SyncInterrupted: Ctrl-C stopped the sync; what was not committed is rolled back.
        """
        return local.sync_to(
            self,
            to,
            spec,
            options=options,
            mode=mode,
            delete_stale=delete_stale,
            migrate_force=migrate_force,
            commit_interval=commit_interval,
            source_name=source_name,
            progress=progress,
            coalesce_rows=coalesce_rows,
            **overrides,
        )

    def _multiplex(
        self, selected: list[Table], client: Any
    ) -> tuple[list[Any], list[tuple[int, list[int]]]]:
        """The distinct clients, and each top-level table's index with its clients' positions."""
        clients: list[Any] = []
        positions: dict[int, int] = {}
        roots: list[tuple[int, list[int]]] = []
        for index, selected_table in enumerate(selected):
            if selected_table.parent is not None:
                continue
            table_clients = []
            for each in self._clients_of(selected_table, client):
                if id(each) not in positions:
                    positions[id(each)] = len(clients)
                    clients.append(each)
                table_clients.append(positions[id(each)])
            roots.append((index, table_clients))
        return clients, roots

    def _clients_of(self, top: Table, client: Any) -> list[Any]:
        multiplex = top.clients or self.clients
        if multiplex is None:
            return [client]
        result = multiplex(client)
        if result is None or isinstance(result, (str, bytes, dict)):
            raise PluginError(
                f"table {top.name!r}: clients(client) must return an iterable of clients, "
                f"got {type(result).__name__}"
            )
        return list(result)


def _check_state(state: Mapping[str, str] | None) -> dict[str, str]:
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of str to str, not {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"state keys and values are str; got {type(key).__name__} {key!r}: "
                f"{type(value).__name__}"
            )
    return dict(state)


def _client_ids(
    selected: list[Table], clients: list[Any], roots: list[tuple[int, list[int]]]
) -> list[str]:
    """Each client's id, for messages, logs and the state keys of :class:`~headwater.Cursor`.

    Raises:
        PluginError: Two clients of a table share an id, or a table keeping state per
            client runs with several clients that have no ``id`` (their fallback ids follow
            the order ``clients`` returns them in, so a reordering would hand one client
            another's cursor and skip rows).
    """
    ids = [_client_id(c, i) for i, c in enumerate(clients)]
    for index, positions in roots:
        owners: dict[str, int] = {}
        for position in positions:
            if ids[position] in owners:
                first = owners[ids[position]]
                raise PluginError(
                    f"table {selected[index].name!r}: two of its clients share the id "
                    f"{ids[position]!r} ({type(clients[first]).__name__} and "
                    f"{type(clients[position]).__name__}): clients(client) must return clients "
                    "with distinct ids (an 'id' attribute, or distinct strings)"
                )
            owners[ids[position]] = position
        unnamed = [p for p in positions if _positional(clients[p])]
        if len(positions) < 2 or not unnamed:
            continue
        keeping = [t.name for t in selected[index].walk() if t.resolver_wants_state]
        if keeping:
            raise PluginError(
                f"table {keeping[0]!r} keeps incremental state per client and runs with "
                f"{len(positions)} clients, but {type(clients[unnamed[0]]).__name__} has no "
                "'id' attribute: give every client a stable id (a str or int 'id' attribute) "
                "so that its state stays its own whatever order clients(client) returns"
            )
    return ids


def _positional(client: Any) -> bool:
    """Whether :func:`_client_id` falls back to the client's position for it."""
    if client is None or isinstance(client, str):
        return False
    ident = getattr(client, "id", None)
    return not isinstance(ident, (str, int)) or isinstance(ident, bool)


def _client_id(client: Any, index: int) -> str:
    """A client's id: its ``id`` attribute, itself if a str, or its type and position.

    Never its repr, which may hold secrets.
    """
    if client is None:
        return "default"
    if _positional(client):
        return f"{type(client).__name__}#{index}"
    return client if isinstance(client, str) else str(client.id)


def _check_tables(plugin: str, tables: Iterable[Table]) -> tuple[Table, ...]:
    if isinstance(tables, Table) or not isinstance(tables, Iterable):
        raise PluginError(f"plugin {plugin!r}: tables must be a list of Table, got {tables!r}")
    checked = tuple(tables)
    seen: dict[str, Table] = {}
    for index, top in enumerate(checked):
        if not isinstance(top, Table):
            raise PluginError(
                f"plugin {plugin!r}: tables[{index}] must be a Table (made with "
                f"@headwater.table), got {type(top).__name__} {top!r}"
            )
        if top.parent is not None:
            raise PluginError(
                f"plugin {plugin!r}: table {top.name!r} is a child of {top.parent.name!r}; "
                "list only top-level tables, their children come along"
            )
        for each in top.walk():
            if each.name in seen and seen[each.name] is not each:
                raise PluginError(f"plugin {plugin!r}: two tables are called {each.name!r}")
            if each.name in seen:
                raise PluginError(f"plugin {plugin!r}: table {each.name!r} is listed twice")
            seen[each.name] = each
            if each.resolver is None:
                raise PluginError(
                    f"plugin {plugin!r}: table {each.name!r} has no resolver; declare it with "
                    "@headwater.table (or @parent.child), or pass resolver= to Table"
                )
    return checked
