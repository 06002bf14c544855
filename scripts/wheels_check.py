"""Checks of headwater's distributions, run by ``scripts/wheels.sh``.

Three commands, each exiting non-zero with one line per problem found:

- ``wheel``: the wheel's file name tags, its files (the package's git-tracked sources, the
  stub, ``py.typed`` and exactly one compiled extension, for the interpreter it was built for;
  nothing else), and its metadata (name, version, ``Requires-Python``, tags, ``RECORD``).
- ``sdist``: the sdist holds what a build from source needs: ``pyproject.toml``, the workspace
  ``Cargo.toml`` and ``Cargo.lock`` (byte for byte), every git-tracked file of the extension's
  crate and of each workspace crate it depends on, and the package's sources; and no build
  output (compiled extensions, ``target/``, caches).
- ``rows``: the smoke sync's DuckDB file holds the expected rows, children linked to parents.

It needs only the standard library, except ``rows``, which runs in the smoke venv (duckdb).
"""

from __future__ import annotations

import argparse
import base64
import csv
import email.parser
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

PACKAGE = "headwater"
# What a build output or a developer's tree leaves behind; never part of a distribution.
BUILD_LEFTOVERS = ("__pycache__", ".pyc", ".so", ".pyd", ".dylib", "/target/", ".venv")


class CheckFailed(Exception):
    """One or more problems with a distribution; the message lists them, one per line."""


def _fail_if(problems: list[str], what: str) -> None:
    if problems:
        raise CheckFailed(f"{what}:\n  " + "\n  ".join(problems))


def _git_files(root: Path, *paths: str) -> list[str]:
    """The files git tracks under ``paths``, relative to ``root``, in POSIX form."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--", *paths],
        check=True,
        capture_output=True,
    ).stdout
    return sorted(name for name in out.decode().split("\0") if name)


def _package_sources(root: Path) -> set[str]:
    """The package's files as a wheel holds them (``headwater/...``), as git lists them.

    A file under ``python/`` that git does not track is not part of a release.
    """
    python_source = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["maturin"][
        "python-source"
    ]
    prefix = python_source.rstrip("/") + "/"
    return {name.removeprefix(prefix) for name in _git_files(root, f"{prefix}{PACKAGE}")}


def _version(root: Path) -> str:
    """The package version: maturin takes it from the workspace's ``Cargo.toml``."""
    cargo = tomllib.loads((root / "Cargo.toml").read_text())
    return str(cargo["workspace"]["package"]["version"])


def _requires_python(root: Path) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"])


def check_wheel(
    wheel: Path, root: Path, python_tag: str, platform_tag: str, extension_suffix: str
) -> str:
    """Check one wheel; returns a one-line summary.

    Args:
        wheel: The ``.whl`` file.
        root: The source tree it was built from.
        python_tag: The interpreter tag it must carry, e.g. ``cp311`` (also its ABI tag: one
            wheel per CPython version, not abi3).
        platform_tag: The one platform tag it must carry, e.g. ``manylinux_2_28_x86_64``.
        extension_suffix: The interpreter's ``EXT_SUFFIX``, e.g.
            ``.cpython-311-x86_64-linux-gnu.so``.

    Raises:
        CheckFailed: Listing every problem found.
    """
    problems: list[str] = []
    version = _version(root)
    parts = wheel.name.removesuffix(".whl").split("-")
    if len(parts) != 5:
        raise CheckFailed(f"{wheel.name}: not a wheel file name (name-version-py-abi-platform)")
    name, file_version, py, abi, platforms = parts
    expected_tags = {
        "name": (name, PACKAGE),
        "version": (file_version, version),
        "interpreter tag": (py, python_tag),
        "ABI tag": (abi, python_tag),
        "platform tags": (platforms, platform_tag),
    }
    for what, (got, want) in expected_tags.items():
        if got != want:
            problems.append(f"file name {what} is {got!r}, expected {want!r}")

    dist_info = f"{PACKAGE}-{version}.dist-info"
    extension = f"{PACKAGE}/_core{extension_suffix}"
    expected = _package_sources(root) | {extension}
    required_meta = {f"{dist_info}/{n}" for n in ("METADATA", "WHEEL", "RECORD")}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        package_files = {n for n in names if not n.startswith(f"{dist_info}/")}
        for missing in sorted(expected - package_files):
            problems.append(f"missing {missing}")
        for stray in sorted(package_files - expected):
            problems.append(f"stray file {stray} (not a git-tracked source of {PACKAGE})")
        if extension in names and not zf.read(extension).startswith(b"\x7fELF"):
            problems.append(f"{extension} is not an ELF shared object")
        # Without these there is no metadata to check: report what was found so far.
        for missing in sorted(required_meta - names):
            problems.append(f"missing {missing}")
        if required_meta - names:
            _fail_if(problems, str(wheel))

        metadata = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        for field, want in (
            ("Name", PACKAGE),
            ("Version", version),
            ("Requires-Python", _requires_python(root)),
        ):
            if metadata[field] != want:
                problems.append(f"METADATA {field} is {metadata[field]!r}, expected {want!r}")
        wheel_meta = email.parser.Parser().parsestr(zf.read(f"{dist_info}/WHEEL").decode())
        tags = set(wheel_meta.get_all("Tag") or [])
        if tags != {f"{python_tag}-{python_tag}-{platform_tag}"}:
            problems.append(f"WHEEL Tag is {sorted(tags)}, expected one for {platform_tag}")
        if wheel_meta["Root-Is-Purelib"] != "false":
            problems.append("WHEEL Root-Is-Purelib is not false for a wheel with an extension")
        problems.extend(_record_problems(zf, f"{dist_info}/RECORD"))
    _fail_if(problems, str(wheel))
    return f"{wheel.name}: {len(package_files)} package files, tags and metadata as expected"


def _record_problems(zf: zipfile.ZipFile, record: str) -> Iterable[str]:
    """RECORD must list every other file of the wheel with its sha256, as pip verifies."""
    listed: dict[str, str] = {}
    for row in csv.reader(io.StringIO(zf.read(record).decode())):
        if row:
            listed[row[0]] = row[1]
    for name in sorted(set(zf.namelist()) - {record}):
        digest = base64.urlsafe_b64encode(hashlib.sha256(zf.read(name)).digest()).rstrip(b"=")
        if name not in listed:
            yield f"RECORD does not list {name}"
        elif listed[name] != f"sha256={digest.decode()}":
            yield f"RECORD has the wrong hash for {name}"


def _crate_dirs(root: Path) -> list[str]:
    """The directories of the crates a build from the sdist compiles, relative to ``root``.

    The extension's crate and every workspace crate it depends on, directly or not.
    """
    manifest = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["maturin"][
        "manifest-path"
    ]
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            cwd=root,
            check=True,
            capture_output=True,
        ).stdout
    )
    by_name = {p["name"]: p for p in meta["packages"]}
    start = next(
        p for p in meta["packages"] if Path(p["manifest_path"]) == (root / manifest).resolve()
    )
    seen: dict[str, Path] = {}
    todo = [start]
    while todo:
        package = todo.pop()
        if package["name"] in seen:
            continue
        seen[package["name"]] = Path(package["manifest_path"]).parent
        # Dev-dependencies too: cargo resolves them (they are in Cargo.lock) to build at all.
        todo.extend(by_name[d["name"]] for d in package["dependencies"] if d.get("path"))
    return sorted(str(d.relative_to(root.resolve()).as_posix()) for d in seen.values())


def check_sdist(sdist: Path, root: Path) -> str:
    """Check the sdist; returns a one-line summary.

    Raises:
        CheckFailed: Listing every problem found.
    """
    problems: list[str] = []
    version = _version(root)
    top = f"{PACKAGE}-{version}"
    if sdist.name != f"{top}.tar.gz":
        problems.append(f"file name is {sdist.name!r}, expected {top}.tar.gz")
    python_source = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["maturin"][
        "python-source"
    ]
    crates = _crate_dirs(root)
    expected = {"pyproject.toml", "Cargo.toml", "Cargo.lock", "README.md", "PKG-INFO"}
    expected |= {f"{python_source}/{name}" for name in _package_sources(root)}
    expected |= set(_git_files(root, *crates))
    with tarfile.open(sdist) as tf:
        members = {m.name: m for m in tf.getmembers() if m.isfile()}
        names = {str(PurePosixPath(n).relative_to(top)) for n in members if n.startswith(f"{top}/")}
        if len(names) != len(members):
            problems.append(
                f"files outside {top}/: {sorted(set(members) - {f'{top}/{n}' for n in names})}"
            )
        for missing in sorted(expected - names):
            problems.append(f"missing {missing}")
        for name in sorted(names):
            if any(mark in f"/{name}" for mark in BUILD_LEFTOVERS):
                problems.append(f"build output or cache {name}")
        lock = tf.extractfile(members[f"{top}/Cargo.lock"]) if "Cargo.lock" in names else None
        if lock is not None and lock.read() != (root / "Cargo.lock").read_bytes():
            problems.append("Cargo.lock differs from the source tree's: not the tested build")
    _fail_if(problems, str(sdist))
    return f"{sdist.name}: {len(names)} files, crates {', '.join(crates)}, the tree's Cargo.lock"


def check_rows(database: Path, expected: dict[str, int]) -> str:
    """Check the smoke sync's result: rows per table, and every child row linked to a parent.

    Raises:
        CheckFailed: Listing every problem found.
    """
    import duckdb  # only in the smoke venv, where this command runs

    problems: list[str] = []
    with duckdb.connect(str(database), read_only=True) as con:
        for table, want in expected.items():
            row = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            got = row[0] if row else None
            if got != want:
                problems.append(f"{table} has {got} rows, expected {want}")
        orphans = con.execute(
            "SELECT count(*) FROM demo_issues i LEFT JOIN demo_repos r "
            "ON i._cq_parent_id = r._cq_id WHERE r._cq_id IS NULL"
        ).fetchone()
        if orphans and orphans[0]:
            problems.append(f"{orphans[0]} demo_issues rows have no parent in demo_repos")
    _fail_if(problems, str(database))
    return f"{database.name}: " + ", ".join(f"{t} {n} rows" for t, n in expected.items())


def main(argv: list[str]) -> int:
    """Run one check from the command line; prints its summary or its problems."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    wheel = commands.add_parser("wheel", help="check a built wheel")
    wheel.add_argument("wheel", type=Path)
    wheel.add_argument("--root", type=Path, required=True)
    wheel.add_argument("--python-tag", required=True)
    wheel.add_argument("--platform-tag", required=True)
    wheel.add_argument("--extension-suffix", required=True)
    sdist = commands.add_parser("sdist", help="check the sdist")
    sdist.add_argument("sdist", type=Path)
    sdist.add_argument("--root", type=Path, required=True)
    rows = commands.add_parser("rows", help="check the smoke sync's DuckDB file")
    rows.add_argument("database", type=Path)
    rows.add_argument("--expect", type=json.loads, required=True, help='{"table": rows}')
    args = parser.parse_args(argv)
    try:
        if args.command == "wheel":
            print(
                check_wheel(
                    args.wheel,
                    args.root,
                    args.python_tag,
                    args.platform_tag,
                    args.extension_suffix,
                )
            )
        elif args.command == "sdist":
            print(check_sdist(args.sdist, args.root))
        else:
            print(check_rows(args.database, args.expect))
    except CheckFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
