"""Local commands: ``sync``, ``tables``, ``spec`` and ``check``.

``headwater sync PLUGIN`` runs a plugin into DuckDB (``./headwater.duckdb`` by default),
PostgreSQL, Parquet or JSON-lines files; ``tables`` lists or documents the plugin's tables;
``spec`` prints the JSON Schema of its spec; ``check`` validates a spec and tests the
connection. Exit codes: 0 success, 1 a table failed, the destination failed or the sync ran
past ``--sync-timeout``, 2 bad usage (an invalid spec, an unknown table pattern), 130 / 143
interrupted by SIGINT (Ctrl-C) / SIGTERM (what was not committed is rolled back).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from headwater.cli.arguments import count, log_level, positive_seconds, seconds
from headwater.errors import (
    HeadwaterError,
    PluginError,
    SpecError,
    SyncInterrupted,
    SyncOptionsError,
    TableSelectionError,
)
from headwater.redaction import redact
from headwater.sync.options import SyncOptions

if TYPE_CHECKING:
    from headwater.destinations.run import LocalSyncResult
    from headwater.plugin import Plugin
    from headwater.schema import Table

__all__ = ["add_commands"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(subparsers: Any, with_plugin_argument: bool) -> None:
    """Add the local commands to ``subparsers`` (see :mod:`headwater.cli`)."""
    from headwater.destinations import DEFAULT_URL
    from headwater.destinations.run import DEFAULT_COMMIT_INTERVAL

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
        if with_plugin_argument:
            parser.add_argument(
                "plugin", metavar="PLUGIN", help="module:attr or path/to/file.py[:attr]"
            )
        parser.add_argument(
            "--log-level",
            type=log_level,
            default="info",
            help="trace, debug, info, warn or error (debug: full tracebacks of plugin errors)",
        )
        return parser

    sync = command("sync", "Sync the plugin into DuckDB, PostgreSQL, Parquet or JSON lines.")
    _spec_argument(sync)
    sync.add_argument(
        "--to",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"destination: duckdb:///file.duckdb, postgresql://user@host:port/db, "
        f"parquet:///dir or jsonl:///dir (default {DEFAULT_URL})",
    )
    sync.add_argument(
        "--tables", nargs="+", default=["*"], metavar="GLOB", help="tables to sync (default *)"
    )
    sync.add_argument(
        "--skip-tables", nargs="+", default=[], metavar="GLOB", help="tables to leave out"
    )
    sync.add_argument(
        "--skip-dependent-tables",
        action="store_true",
        help="leave out children of selected tables unless selected themselves",
    )
    sync.add_argument(
        "--mode",
        choices=["append", "overwrite", "upsert"],
        default=None,
        help="append rows; overwrite each table atomically at the end; upsert on the primary "
        "key (default: upsert tables with a primary key, append to the others; JSON lines: "
        "append and delete stale rows)",
    )
    sync.add_argument(
        "--delete-stale",
        action="store_true",
        help="at the end of each table that synced without errors, delete this source's rows "
        "of earlier syncs",
    )
    sync.add_argument(
        "--migrate-force",
        action="store_true",
        help="drop and rebuild tables whose column types changed incompatibly",
    )
    sync.add_argument(
        "--concurrency", type=count, default=None, metavar="N", help="resolvers at once"
    )
    sync.add_argument(
        "--resolver-timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop waiting for a resolver invocation after this long: its table fails with a "
        "timeout error, the rest goes on (default: no limit)",
    )
    sync.add_argument(
        "--sync-timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="fail the whole sync after this long, rolling back what was not committed "
        "(default: no limit)",
    )
    sync.add_argument(
        "--commit-interval",
        type=seconds,
        default=DEFAULT_COMMIT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between commits of incremental state (default {DEFAULT_COMMIT_INTERVAL})",
    )
    sync.add_argument(
        "--source-name", default=None, help="_cq_source_name (default: the plugin's name)"
    )
    sync.add_argument("--log-format", choices=["text", "json"], default="text")
    sync.add_argument("--no-progress", action="store_true", help="no live progress display")
    sync.set_defaults(handler=_sync)

    tables = command("tables", "List the plugin's tables, or document them as Markdown.")
    tables.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    tables.set_defaults(handler=_tables)

    spec = command("spec", "Print the JSON Schema of the plugin's spec.")
    spec.set_defaults(handler=_spec)

    check = command("check", "Validate a spec and test the plugin's connection.")
    _spec_argument(check)
    check.add_argument("--to", default=None, metavar="URL", help="also test this destination")
    check.set_defaults(handler=_check)


def _spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        default=None,
        metavar="FILE|JSON",
        help="the plugin spec: a YAML or JSON file, or inline JSON; ${ENV_VAR} is expanded",
    )


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[list[int]]:
    """SIGTERM (and SIGINT, unless ignored) raise ``KeyboardInterrupt`` in the main thread.

    The sync then stops as on Ctrl-C. Yields the list the first signal's number is added
    to; later signals are ignored, so they cannot break the rollback that follows.
    """
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    watched = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        watched.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, stop) for signum in watched}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _release(plugin: Plugin, client: Any) -> bool:
    """Releases ``client``; says so on stderr and returns False if that fails."""
    try:
        plugin.release(client)
    except Exception as exc:
        _error(f"releasing the client of {plugin.name!r} failed: {type(exc).__name__}: {exc}")
        return False
    return True


def _error(message: object, *, json_logs: bool = False) -> None:
    text = redact(str(message))  # it may quote a resolver's exception or an API's answer
    if json_logs:
        import logging

        logging.getLogger("headwater.local").error("%s", text)
    else:
        print(f"headwater: error: {text}", file=sys.stderr)


def _sync(args: argparse.Namespace, plugin: Plugin) -> int:
    import logging

    from rich.console import Console

    from headwater.cli.progress import LiveProgress, print_summary
    from headwater.logs import configure_logging
    from headwater.specfile import load_spec

    try:
        # Logs go to whatever sys.stderr is at each record: rich's live display redirects it.
        configure_logging(args.log_level, args.log_format)
    except ValueError as exc:
        _error(exc)
        return EXIT_USAGE
    json_logs = args.log_format == "json"
    # An option given on the command line wins over the spec's, which wins over the default.
    given = {
        "concurrency": args.concurrency,
        "resolver_timeout": args.resolver_timeout,
        "sync_timeout": args.sync_timeout,
    }
    try:
        spec = load_spec(args.spec)
        options = SyncOptions(
            tables=args.tables,
            skip_tables=args.skip_tables,
            skip_dependent_tables=args.skip_dependent_tables,
            **{key: value for key, value in given.items() if value is not None},
        ).with_defaults(plugin.sync_options_from(spec))
    except (SpecError, PluginError, SyncOptionsError) as exc:
        _error(exc, json_logs=json_logs)
        return EXIT_USAGE
    show_progress = not args.no_progress and args.log_format == "text" and sys.stderr.isatty()
    console = Console(stderr=True)
    progress = LiveProgress(console) if show_progress else None

    def run() -> LocalSyncResult:
        return plugin.sync_to(
            args.to,
            spec,
            options=options,
            mode=args.mode,
            delete_stale=args.delete_stale,
            migrate_force=args.migrate_force,
            commit_interval=args.commit_interval,
            source_name=args.source_name,
            progress=progress,
        )

    received: list[int] = []
    try:
        with _stopped_by_signals() as received:
            if progress is not None:
                with progress:
                    result = run()
            else:
                result = run()
    except (SpecError, TableSelectionError) as exc:
        _error(exc, json_logs=json_logs)
        return EXIT_USAGE
    except HeadwaterError as exc:
        _error(f"{exc}; what was not committed was rolled back", json_logs=json_logs)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        signum = received[0] if received else signal.SIGINT
        running = exc.running if isinstance(exc, SyncInterrupted) else []
        names = ", ".join(f"table {t!r}" + (f" (client {c})" if c else "") for t, c in running)
        _error(
            f"interrupted by {signal.Signals(signum).name}"
            + (f" while running {names}" if names else "")
            + "; what was not committed was rolled back",
            json_logs=json_logs,
        )
        return 128 + signum
    log = logging.getLogger("headwater.local")
    if json_logs:
        log.info(
            "sync summary",
            extra={
                "destination": result.url,
                "rows": result.rows,
                "errors": result.errors,
                "skipped_rows": result.skipped_rows,
                "duration": round(result.duration, 3),
            },
        )
    else:
        print_summary(result, sys.stdout)
    if result.failed_tables:
        below = [t for t in result.incomplete_tables if t not in result.failed_tables]
        kept = (
            f"; tables below a failed one kept their earlier rows: {', '.join(below)}"
            if below and (args.mode == "overwrite" or args.delete_stale)
            else ""
        )
        _error(
            f"{len(result.failed_tables)} table(s) failed: {', '.join(result.failed_tables)} "
            f"(see the errors above); the rest was written{kept}",
            json_logs=json_logs,
        )
        return EXIT_FAILED
    return EXIT_OK


def _type_name(data_type: Any) -> str:
    from headwater import types

    return types.extension_name(data_type) or str(data_type)


def _table_document(table: Table) -> dict[str, Any]:
    from headwater.schema import describe_table

    described = describe_table(table)
    return {
        "name": described.name,
        "title": described.title,
        "description": described.description,
        "parent": described.parent,
        "children": list(described.children),
        "columns": [
            {
                "name": column.name,
                "type": _type_name(column.type),
                "primary_key": column.primary_key,
                "unique": column.unique,
                "not_null": column.not_null,
                "incremental_key": column.incremental_key,
                "description": column.description,
            }
            for column in described.columns
        ],
    }


def _tables(args: argparse.Namespace, plugin: Plugin) -> int:
    every = plugin.flat_tables()
    if args.format == "json":
        document = [_table_document(t) for t in every]
        print(json.dumps(document, indent=2))
    elif args.format == "markdown":
        print(_markdown(plugin, every))
    else:
        from rich.console import Console
        from rich.table import Table as RichTable

        out = RichTable(title=f"{plugin.name} {plugin.version}", title_justify="left")
        for column in ("table", "columns", "primary key", "description"):
            out.add_column(column)
        for t in every:
            depth = 0
            parent = t.parent
            while parent is not None:
                depth, parent = depth + 1, parent.parent
            out.add_row(
                "  " * depth + t.name,
                str(len(t.columns)),
                ", ".join(t.primary_keys) or "_cq_id",
                t.description,
            )
        Console(highlight=False, width=120).print(out)
    return EXIT_OK


def _markdown(plugin: Plugin, every: Sequence[Table]) -> str:
    """Table docs in the shape of CloudQuery's plugin docs."""
    lines = [f"# {plugin.title} tables", ""]
    if plugin.description:
        lines += [plugin.description, ""]
    for t in every:
        lines += [f"## {t.name}", ""]
        lines += [f"This table shows data for {t.title or t.name}.", ""]
        if t.description:
            lines += [t.description, ""]
        keys = t.primary_keys or ("_cq_id",)
        lines += [
            "The primary key for this table is " + ", ".join(f"**{k}**" for k in keys) + ".",
            "",
        ]
        if t.parent_name:
            lines += [f"This table depends on [{t.parent_name}](#{t.parent_name}).", ""]
        if t.children:
            lines += [f"The following tables depend on {t.name}:"]
            lines += [f"  - [{c.name}](#{c.name})" for c in t.children]
            lines += [""]
        lines += ["| Name | Type | Description |", "| --- | --- | --- |"]
        for column in _table_document(t)["columns"]:
            marks = " (PK)" if column["primary_key"] else ""
            description = column["description"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {column['name']}{marks} | `{column['type']}` | {description} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _spec(args: argparse.Namespace, plugin: Plugin) -> int:
    print(json.dumps(plugin.spec_schema(), indent=2))
    return EXIT_OK


def _check(args: argparse.Namespace, plugin: Plugin) -> int:
    from headwater.logs import configure_logging
    from headwater.specfile import load_spec

    configure_logging(args.log_level)
    try:
        spec = plugin.validate_spec(load_spec(args.spec))
        plugin.sync_options_from(spec)
    except (SpecError, PluginError) as exc:
        _error(exc)
        return EXIT_USAGE
    try:
        client = plugin.client(spec)
    except Exception as exc:
        _error(f"connecting plugin {plugin.name!r} failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    try:
        if plugin.test_connection is not None:
            plugin.test_connection(client)
    except Exception as exc:
        _error(f"connection test of plugin {plugin.name!r} failed: {type(exc).__name__}: {exc}")
        _release(plugin, client)
        return EXIT_FAILED
    if not _release(plugin, client):
        return EXIT_FAILED
    if plugin.test_connection is not None:
        print(f"plugin {plugin.name}: spec valid, connection ok")
    else:
        print(f"plugin {plugin.name}: spec valid (the plugin defines no connection test)")
    if args.to is not None:
        from headwater.destinations import open_destination
        from headwater.redaction import redact_url

        try:
            open_destination(args.to).close()
        except HeadwaterError as exc:
            _error(exc)
            return EXIT_FAILED
        print(f"destination {redact_url(args.to)}: reachable")
    return EXIT_OK
