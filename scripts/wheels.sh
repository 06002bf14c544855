#!/usr/bin/env bash
# Check that people can install what .github/workflows/wheels.yml promises, on this Linux
# machine: build a manylinux_2_28 wheel (linked by zig against glibc 2.28, whatever the host's
# glibc) and the sdist; check their tags and files (and the wheel with auditwheel); install the
# wheel in a fresh venv whose PATH has no cargo or rustc and run a smoke sync from it, outside
# the source tree; build a wheel from the sdist and import it. Any failure stops the script
# with a message saying what is wrong. .ci/run runs it after scripts/test.sh.
#
#   scripts/wheels.sh                   # needs Python >= 3.11, cargo, and PyPI for the tools
#   PYTHON=python3.12 scripts/wheels.sh # the interpreter to build and smoke-test for
#
# Build layout. One compilation serves the tests and the wheel: test.sh compiles the crates
# (dev profile: dependencies optimised, ours at opt-level 1) and this script links the same
# objects into the wheel's extension with zig, through maturin's zig wrapper installed as the
# `cc` rustc links with. `maturin --zig` itself passes cargo an explicit --target and linker,
# which cargo's fingerprints include, so it recompiles every dependency: measured on the 2-core
# machine, 855 CPU-seconds (some 8 minutes of wall time on idle cores), which would take
# .ci/run past its 25-minute budget; recompiling the extension's own crate and linking it costs
# under a minute. The wheel thus holds the compiled dependencies the tests ran, and maturin's
# manylinux check and auditwheel prove the zig link (linked by the host's gcc against Debian
# 12's glibc, the extension needs glibc 2.34 and fails both). The release workflow builds with
# the `dist` profile (fat LTO), too slow for every CI run and no different in what is packaged.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# By default the interpreter of scripts/test.sh's venv, when it exists, and built for as from
# inside that venv: pyo3's build scripts rerun when PYO3_PYTHON or VIRTUAL_ENV change, so with
# test.sh's values the pyo3 crates it compiled are reused.
TEST_VENV="$ROOT/${HEADWATER_VENV:-.venv}"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x "$TEST_VENV/bin/python" ] && PYTHON="$TEST_VENV/bin/python"
fi
OUT="$ROOT/target/wheels-check"
# The zig that maturin drives; pinned so that a new zig release cannot break CI unannounced.
ZIGLANG="ziglang==0.17.1"
# The glibc the wheel workflow builds Linux wheels for (its `manylinux: "2_28"`).
GLIBC="2.28"
POLICY="manylinux_${GLIBC/./_}"

step() { printf '\n==> %s\n' "$*"; }
fail() {
    echo "error: $*" >&2
    exit 1
}

[ "$(uname -s)" = Linux ] || fail "scripts/wheels.sh builds a manylinux wheel: it runs on Linux, not $(uname -s)"
PY=$("$PYTHON" -c 'import sys; print(sys.executable)')
PY_VENV=$("$PY" -c 'import sys; print(sys.prefix if sys.prefix != sys.base_prefix else "")')
# Runs a build as `. $PY_VENV/bin/activate` would (test.sh builds in its activated venv).
as_in_venv() {
    if [ -n "$PY_VENV" ]; then VIRTUAL_ENV="$PY_VENV" "$@"; else env -u VIRTUAL_ENV "$@"; fi
}
read -r PY_TAG EXT_SUFFIX < <("$PY" -c \
    'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}", sysconfig.get_config_var("EXT_SUFFIX"))')
PLATFORM_TAG="${POLICY}_$(uname -m)"
VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])')
SMOKE=$(mktemp -d "${TMPDIR:-/tmp}/headwater-wheels.XXXXXX")
trap 'rm -rf "$SMOKE"' EXIT

step "build tools: maturin (as pyproject.toml's build-system requires) and $ZIGLANG"
BUILD_VENV="$OUT/build-venv"
[ -x "$BUILD_VENV/bin/python" ] || "$PY" -m venv "$BUILD_VENV"
MATURIN=$("$PY" -c 'import tomllib; print(*[r for r in tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"] if r.startswith("maturin")])')
"$BUILD_VENV/bin/python" -m pip install --quiet "$MATURIN" "$ZIGLANG" auditwheel

step "build the $PLATFORM_TAG wheel for $PY_TAG (dev profile, linked by zig) and the sdist"
# zig as the `cc` that rustc links with, through maturin's own zig wrapper (what `maturin --zig`
# uses), targeting the policy's glibc. Being the default linker, it is not part of cargo's
# fingerprints: the crates scripts/test.sh compiled are reused, and only the extension's crate
# is rebuilt and linked (it must be: cargo would otherwise keep the host-linked library).
ZIG_CC="$OUT/zig-cc"
mkdir -p "$ZIG_CC"
# The same flags as the wrapper `maturin --zig` writes for itself.
printf '#!/bin/sh\nexec "%s" zig cc -- -g -fno-sanitize=all -target %s "$@"\n' \
    "$BUILD_VENV/bin/maturin" "$(uname -m)-linux-gnu.$GLIBC" >"$ZIG_CC/cc"
chmod +x "$ZIG_CC/cc"
rm -rf "$OUT/dist"
start=$SECONDS
cargo clean --quiet --profile dev --package headwater-python
# The build venv on PATH too: maturin finds zig as `python3 -m ziglang` there.
PATH="$ZIG_CC:$BUILD_VENV/bin:$PATH" as_in_venv maturin build --quiet --profile dev \
    --compatibility "$POLICY" --interpreter "$PY" --out "$OUT/dist"
echo "wheel built in $((SECONDS - start)) s"
PATH="$BUILD_VENV/bin:$PATH" maturin sdist --out "$OUT/dist"
WHEEL="$OUT/dist/headwater-$VERSION-$PY_TAG-$PY_TAG-$PLATFORM_TAG.whl"
SDIST="$OUT/dist/headwater-$VERSION.tar.gz"
[ -f "$WHEEL" ] || fail "no $WHEEL; maturin built: $(ls "$OUT/dist")"
[ -f "$SDIST" ] || fail "no $SDIST; maturin built: $(ls "$OUT/dist")"

step "check the wheel's tags, files and metadata, and the sdist's files"
CHECK=("$BUILD_VENV/bin/python" "$ROOT/scripts/wheels_check.py")
"${CHECK[@]}" wheel "$WHEEL" --root "$ROOT" --python-tag "$PY_TAG" \
    --platform-tag "$PLATFORM_TAG" --extension-suffix "$EXT_SUFFIX"
# auditwheel reads the extension's glibc symbol versions and libraries on its own, apart from
# maturin's check: the wheel must need no more than the policy's glibc and no library outside it.
audit=$("$BUILD_VENV/bin/auditwheel" show "$WHEEL")
echo "$audit"
# auditwheel wraps its sentences: match them on one line.
glibc_minor=$(tr -s ' \n' '  ' <<<"$audit" |
    grep -o 'consistent with the following platform tag: "manylinux_2_[0-9]*' | grep -o '[0-9]*$' || true)
[ -n "$glibc_minor" ] || fail "auditwheel finds no manylinux tag for $WHEEL"
[ "$glibc_minor" -le "${GLIBC#2.}" ] || fail "$WHEEL needs glibc 2.$glibc_minor, more than $POLICY allows"
"${CHECK[@]}" sdist "$SDIST" --root "$ROOT"

# What a user without Rust has: a PATH with no directory holding cargo or rustc.
NO_RUST_PATH=""
IFS=: read -r -a path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
    [ -n "$dir" ] && [ ! -e "$dir/cargo" ] && [ ! -e "$dir/rustc" ] || continue
    NO_RUST_PATH="${NO_RUST_PATH:+$NO_RUST_PATH:}$dir"
done
RUN="$SMOKE/run"
mkdir "$RUN"
# In the smoke run's directory (outside the source tree, so python/ cannot shadow the installed
# package), without the developer's Python or Rust settings.
smoke() {
    (cd "$RUN" && env -u PYTHONPATH -u VIRTUAL_ENV -u PIP_FIND_LINKS -u CARGO_HOME \
        -u RUSTUP_HOME -u CARGO_TARGET_DIR PATH="$NO_RUST_PATH" "$@")
}
VPY="$SMOKE/venv/bin/python"
IMPORT_CHECK='
import pathlib, sys, headwater, headwater._core
site = pathlib.Path(sys.prefix).resolve()
for module in (headwater, headwater._core):
    where = pathlib.Path(module.__file__).resolve()
    assert site in where.parents, f"{module.__name__} comes from {where}, not the venv {site}"
print(f"headwater {headwater.__version__} from {pathlib.Path(headwater.__file__).parent}")
'
cp examples/demo_plugin.py "$RUN/"
# The installed headwater imported from outside the tree, and the example plugin synced by its
# `headwater` command: 3 repositories with 4, 5 and 6 issues (repository i has 3 + i issues).
smoke_sync() {
    smoke "$VPY" -c "$IMPORT_CHECK"
    smoke "$SMOKE/venv/bin/headwater" --version
    smoke "$SMOKE/venv/bin/headwater" sync demo_plugin.py --spec '{"repositories": 3}' \
        --to "duckdb://$RUN/smoke.duckdb" --mode overwrite --no-progress
    smoke "$VPY" "$ROOT/scripts/wheels_check.py" rows "$RUN/smoke.duckdb" \
        --expect '{"demo_repos": 3, "demo_issues": 15}'
}

step "install the wheel in a fresh venv without cargo on PATH"
start=$SECONDS
if smoke sh -c 'command -v cargo || command -v rustc'; then
    fail "cargo or rustc is still on the smoke test's PATH ($NO_RUST_PATH)"
fi
smoke "$PY" -m venv "$SMOKE/venv"
# headwater from the wheel built here, never from an index; its dependencies from PyPI, as
# wheels only (nothing may need compiling), from the wheel's own Requires-Dist.
smoke "$VPY" -m pip install --quiet --no-index --no-deps "$WHEEL"
smoke "$VPY" -c 'import importlib.metadata as m; print("\n".join(r for r in m.requires("headwater") or [] if "extra ==" not in r))' \
    >"$SMOKE/requirements.txt"
smoke "$VPY" -m pip install --quiet --only-binary :all: -r "$SMOKE/requirements.txt"

step "smoke test: import headwater and sync the example plugin into DuckDB from the installed wheel"
smoke_sync
echo "wheel installed and smoke-tested in $((SECONDS - start)) s"

step "build a wheel from the sdist (cargo on PATH) and smoke-test it in the same venv"
start=$SECONDS
# Unpacked as pip would, but with fresh mtimes (-m): cargo then compiles the workspace's crates
# from the sdist's sources rather than trusting what it compiled from the tree. Built with
# test.sh's profile and venv into this tree's target directory, so the registry crates
# compiled there are reused.
tar -xzmf "$SDIST" -C "$SMOKE"
CARGO_TARGET_DIR="$ROOT/target" MATURIN_PEP517_ARGS="--profile dev" \
    as_in_venv "$PY" -m pip wheel --quiet --no-deps --wheel-dir "$SMOKE/from-sdist" \
    "$SMOKE/headwater-$VERSION"
smoke "$VPY" -m pip install --quiet --no-index --no-deps --force-reinstall "$SMOKE"/from-sdist/headwater-*.whl
rm "$RUN/smoke.duckdb"
smoke_sync
echo "sdist built, installed and smoke-tested in $((SECONDS - start)) s"

step "wheels: $(basename "$WHEEL") and $(basename "$SDIST") in $OUT/dist"
