"""Packaging a plugin for the CloudQuery hub: CloudQuery's ``dist`` layout with Docker images.

``package`` writes ``DIR/dist/package.json`` (schema_version 1, name, team, kind, version,
message, protocols [3], supported_targets, package_type docker), ``tables.json``, the docs
(``*.md``), the plugin's source and wheels, and a generated Dockerfile whose image installs the
plugin from those wheels and runs ``serve``. Where a Docker engine runs it builds and saves one
image per target (``docker buildx build --platform``, ``docker save``) and records each
image's tag and sha256 checksum; where none runs it writes everything else and says that the
image step was skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater._core import __version__
from headwater.errors import HeadwaterError
from headwater.schema import TableDescription, describe_table

if TYPE_CHECKING:
    from headwater.plugin import Plugin

__all__ = ["PackageError", "PackageResult", "package", "tables_json"]

logger = logging.getLogger("headwater.package")

DEFAULT_TARGETS = ("linux/amd64", "linux/arm64")
_SKIPPED_DIRS = {"dist", ".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache"}


class PackageError(HeadwaterError):
    """The plugin cannot be packaged: the message says what is missing or what failed."""


@dataclasses.dataclass(frozen=True)
class PackageResult:
    """What :func:`package` wrote.

    Attributes:
        dist_dir: The output directory.
        targets: The ``supported_targets`` of ``package.json``.
        images_skipped: Why no image was built, or ``None`` when they all were.
    """

    dist_dir: Path
    targets: list[dict[str, str]]
    images_skipped: str | None


def tables_json(plugin: Plugin) -> list[dict[str, Any]]:
    """Every table of the plugin (children included) as CloudQuery's ``tables.json`` lists it."""

    def table(t: TableDescription) -> dict[str, Any]:
        return {
            "name": t.name,
            "title": t.title,
            "description": t.description,
            "is_incremental": t.is_incremental,
            "parent": t.parent or "",
            "relations": list(t.children),
            "columns": [
                {
                    "name": column.name,
                    "type": str(column.type),
                    "description": column.description,
                    "incremental_key": column.incremental_key,
                    "primary_key": column.primary_key,
                    "not_null": column.not_null,
                    "unique": column.unique,
                }
                for column in t.columns
            ],
        }

    return [table(describe_table(t)) for t in plugin.flat_tables()]


def package(
    plugin: Plugin,
    *,
    version: str,
    directory: Path,
    message: str,
    reference: str,
    dist_dir: Path | None = None,
    docs_dir: Path | None = None,
    targets: list[str] | None = None,
) -> PackageResult:
    """Write the package of ``plugin`` (see the module docstring).

    Args:
        plugin: The plugin.
        version: The version to publish, e.g. ``v1.2.0``.
        directory: The plugin's source directory.
        message: What is new in this version (markdown).
        reference: How the image's entry point finds the plugin: a file inside
            ``directory`` (``main.py``, ``main.py:plugin``) or an importable ``module:attr``.
        dist_dir: Output directory (default ``directory/dist``).
        docs_dir: Markdown docs (default ``directory/docs``).
        targets: ``os/arch`` platforms (default linux/amd64 and linux/arm64).

    Returns:
        What was written.

    Raises:
        PackageError: A required piece is missing (team, version, docs) or a step failed.
    """
    if not plugin.team:
        raise PackageError(f"plugin {plugin.name!r} has no team: pass team=... to headwater.Plugin")
    if not version.strip() or any(c.isspace() for c in version):
        raise PackageError(f"version must be one word like v1.2.0, got {version!r}")
    directory = directory.resolve()
    if not directory.is_dir():
        raise PackageError(f"plugin directory {str(directory)!r} does not exist")
    dist = (dist_dir or directory / "dist").resolve()
    docs = (docs_dir or directory / "docs").resolve()
    if not docs.is_dir():
        raise PackageError(
            f"docs directory {str(docs)!r} does not exist: CloudQuery's hub shows the plugin's "
            "markdown docs; create it or pass --docs-dir"
        )
    platforms = [_platform(t) for t in (targets or DEFAULT_TARGETS)]
    dist.mkdir(parents=True, exist_ok=True)

    copied = dist / "docs"
    copied.mkdir(exist_ok=True)
    for doc in sorted(docs.glob("*.md")):
        shutil.copyfile(doc, copied / doc.name)
    (dist / "tables.json").write_text(json.dumps(tables_json(plugin), indent=2) + "\n")
    entry = _copy_source(directory, dist / "plugin", reference)
    wheels = _build_wheels(directory, dist / "wheels")
    (dist / "Dockerfile").write_text(_dockerfile(plugin, entry, wheels))

    skipped = _docker_unavailable()
    built: list[dict[str, str]] = []
    if skipped is None:
        built = [_build_image(plugin, version, dist, os_, arch) for os_, arch in platforms]
    else:
        logger.warning("image step skipped: %s", skipped)
    content = {
        "schema_version": 1,
        "name": plugin.name,
        "team": plugin.team,
        "kind": "source",
        "version": version,
        "message": message.strip().replace("\r\n", "\n"),
        "protocols": [3],
        "supported_targets": built,
        "package_type": "docker",
    }
    (dist / "package.json").write_text(json.dumps(content, indent=2) + "\n")
    return PackageResult(dist_dir=dist, targets=built, images_skipped=skipped)


def _platform(target: str) -> tuple[str, str]:
    os_, _, arch = target.partition("/")
    if not os_ or not arch or "/" in arch:
        raise PackageError(f"target must look like linux/amd64, got {target!r}")
    return os_, arch


def _copy_source(directory: Path, destination: Path, reference: str) -> str:
    """Copy the plugin's source into the build context; return the entry point's reference."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(
        directory,
        destination,
        ignore=lambda _, names: [n for n in names if n in _SKIPPED_DIRS or n.endswith(".pyc")],
    )
    target, _, attribute = reference.partition(":")
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        try:
            relative = path.resolve().relative_to(directory)
        except ValueError:
            raise PackageError(
                f"the plugin file {target!r} is not inside the plugin directory {str(directory)!r}"
            ) from None
        target = f"/plugin/{relative.as_posix()}"
    return f"{target}:{attribute}" if attribute else target


def _build_wheels(directory: Path, wheels: Path) -> bool:
    """Build the plugin's own wheel when the directory is a Python project."""
    if not ((directory / "pyproject.toml").is_file() or (directory / "setup.py").is_file()):
        return False
    if wheels.exists():
        shutil.rmtree(wheels)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(directory),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise PackageError(f"building the plugin's wheel failed:\n{done.stderr[-2000:]}")
    return True


def _dockerfile(plugin: Plugin, entry: str, wheels: bool) -> str:
    install = (
        "COPY wheels/ /wheels/\nRUN pip install --no-cache-dir /wheels/*.whl\n"
        if wheels
        else (
            f"RUN pip install --no-cache-dir 'headwater=={__version__}' \\\n"
            "    && if [ -f /plugin/requirements.txt ]; then "
            "pip install --no-cache-dir -r /plugin/requirements.txt; fi\n"
        )
    )
    return (
        f"# Generated by headwater {__version__} for plugin {plugin.name!r}.\n"
        "FROM python:3.11-slim\n"
        "COPY plugin/ /plugin/\n"
        f"{install}"
        "WORKDIR /plugin\n"
        "EXPOSE 7777\n"
        f'ENTRYPOINT ["headwater", "serve", {json.dumps(entry)}]\n'
        'CMD ["--address", "[::]:7777", "--log-format", "json", "--log-level", "info"]\n'
    )


def _docker_unavailable() -> str | None:
    """Why images cannot be built here, or ``None`` if a Docker engine answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 60 s"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no engine"])[-1]
        return f"no Docker engine answers `docker info` ({reason})"
    return None


def _build_image(plugin: Plugin, version: str, dist: Path, os_: str, arch: str) -> dict[str, str]:
    tag = f"docker.cloudquery.io/{plugin.team}/source-{plugin.name}:{version}-{os_}-{arch}"
    tar = f"plugin-{plugin.name}-{version}-{os_}-{arch}.tar"
    for command in (
        ["docker", "buildx", "build", "--platform", f"{os_}/{arch}", "-t", tag, "--load", "."],
        ["docker", "save", "-o", tar, tag],
    ):
        done = subprocess.run(command, cwd=dist, capture_output=True, text=True)
        if done.returncode != 0:
            raise PackageError(f"`{' '.join(command)}` failed:\n{done.stderr[-2000:]}")
    digest = hashlib.sha256()
    with open(dist / tar, "rb") as image:
        for chunk in iter(lambda: image.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "os": os_,
        "arch": arch,
        "path": tar,
        "checksum": digest.hexdigest(),
        "docker_image_tag": tag,
    }
