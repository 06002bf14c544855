"""``serve`` and ``package``: run a plugin for the CloudQuery CLI, and package it for its hub.

``serve`` takes the flags the CloudQuery CLI passes when it starts a plugin (``--address``,
``--network``, ``--log-level``, ``--log-format``, ``--no-sentry``, ``--otel-endpoint``,
``--otel-endpoint-insecure``, ``--license``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from headwater.cli.arguments import count
from headwater.logs import configure_logging

if TYPE_CHECKING:
    from headwater.plugin import Plugin

__all__ = ["add_commands"]

logger = logging.getLogger("headwater.serve")

LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
PLUGIN_HELP = "module:attr or path/to/file.py[:attr]"


def add_commands(subparsers: argparse._SubParsersAction, with_plugin_argument: bool) -> None:  # type: ignore[type-arg]
    """Add ``serve`` and ``package``."""
    serve = subparsers.add_parser(
        "serve",
        help="serve the plugin to the CloudQuery CLI over gRPC",
        description="Serve the plugin over gRPC (CloudQuery plugin protocol v3) until "
        "SIGTERM or SIGINT.",
    )
    if with_plugin_argument:
        serve.add_argument("plugin", metavar="PLUGIN", help=PLUGIN_HELP)
    serve.add_argument(
        "--address",
        default="localhost:7777",
        help="host:port for tcp, a socket path for unix (default: %(default)s)",
    )
    serve.add_argument("--network", choices=("tcp", "unix"), default="tcp")
    serve.add_argument(
        "--max-syncs",
        type=count,
        default=None,
        metavar="N",
        # The number is the servicer's DEFAULT_MAX_SYNCS; importing it here would load grpc
        # for every command.
        help="syncs running at once; more are refused with RESOURCE_EXHAUSTED (default: 8)",
    )
    _logging_arguments(serve)
    serve.add_argument("--no-sentry", action="store_true", help="accepted; headwater sends nothing")
    serve.add_argument("--otel-endpoint", default="", help="accepted; telemetry is not exported")
    serve.add_argument("--otel-endpoint-insecure", action="store_true", help="accepted")
    serve.add_argument("--license", default="", help="accepted; no license is needed")
    serve.set_defaults(handler=_serve)

    package = subparsers.add_parser(
        "package",
        help="package the plugin for the CloudQuery hub (a Docker image per target)",
        description="Write CloudQuery's package layout into DIR/dist: package.json, "
        "tables.json, the docs and a Dockerfile; build and save the images where Docker runs.",
    )
    if with_plugin_argument:
        package.add_argument(
            "plugin", metavar="PLUGIN", help="module:attr or path/to/file.py[:attr]"
        )
    package.add_argument("version", metavar="VERSION", help="the version to publish, e.g. v1.2.0")
    package.add_argument("directory", metavar="DIR", type=Path, help="the plugin's directory")
    package.add_argument(
        "-m",
        "--message",
        required=True,
        help="what is new in this version (markdown); @FILE reads it from a file",
    )
    package.add_argument("-D", "--dist-dir", type=Path, help="output directory (default: DIR/dist)")
    package.add_argument("--docs-dir", type=Path, help="markdown docs to copy (default: DIR/docs)")
    package.add_argument(
        "--target",
        action="append",
        dest="targets",
        metavar="OS/ARCH",
        help="a platform to build an image for (repeatable; default linux/amd64 and linux/arm64)",
    )
    _logging_arguments(package)
    package.set_defaults(handler=_package)


def _logging_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")


def _serve(args: argparse.Namespace, plugin: Plugin) -> int:
    from headwater.serve import DEFAULT_MAX_SYNCS, ServeError, serve

    configure_logging(args.log_level, args.log_format)
    if args.otel_endpoint:
        logger.debug("OpenTelemetry export is not supported; --otel-endpoint is ignored")
    if args.license:
        logger.debug("--license is accepted for compatibility and not needed")
    try:
        serve(plugin, args.address, args.network, max_syncs=args.max_syncs or DEFAULT_MAX_SYNCS)
    except ServeError as exc:
        logger.error("cannot serve: %s", exc)
        return 1
    return 0


def _package(args: argparse.Namespace, plugin: Plugin) -> int:
    from headwater.serve.package import PackageError, package

    configure_logging(args.log_level, args.log_format)
    message = args.message
    try:
        if message.startswith("@"):
            message = Path(message[1:]).read_text()
        result = package(
            plugin,
            version=args.version,
            directory=args.directory,
            message=message,
            # `headwater package PLUGIN ...`, or the script running plugin.main().
            reference=getattr(args, "plugin", None) or sys.argv[0],
            dist_dir=args.dist_dir,
            docs_dir=args.docs_dir,
            targets=args.targets,
        )
    except (PackageError, OSError) as exc:
        print(f"headwater package: error: {exc}", file=sys.stderr)
        return 1
    if result.images_skipped:
        print(
            f"wrote {result.dist_dir}: package.json, tables.json, docs and Dockerfile; "
            f"the image step was SKIPPED: {result.images_skipped}",
            file=sys.stderr,
        )
    else:
        print(f"wrote {result.dist_dir} with {len(result.targets)} image(s)")
    return 0
