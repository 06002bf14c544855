#!/usr/bin/env bash
# Set up and run the whole test suite: lints, the Rust tests, and pytest against the
# extension built once from source. Works on a fresh clone; needs Python >= 3.10 and cargo.
#
#   PYTHON=python3.12 scripts/test.sh      # pick the interpreter (default: python3)
#   HEADWATER_SKIP_LINT=1 scripts/test.sh  # tests only
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${HEADWATER_VENV:-.venv}"

step() { printf '\n==> %s\n' "$*"; }

step "virtualenv $VENV ($("$PYTHON" --version))"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip

if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    # The destination tests start a throwaway PostgreSQL server on loopback.
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        step "install PostgreSQL for the destination tests"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "warning: PostgreSQL (initdb, pg_ctl) is not installed; its tests will fail" >&2
    fi
fi

step "build the extension (dev profile) and install headwater with its test tools"
# One build for everything: the editable install compiles the extension with the dev profile
# (dependencies optimised), which `cargo test` below reuses.
MATURIN_PEP517_ARGS="--profile dev" python -m pip install --quiet -e '.[dev]'

if [ -z "${HEADWATER_SKIP_LINT:-}" ]; then
    step "lint"
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    ruff check .
    ruff format --check .
    mypy
fi

step "cargo test"
# The whole workspace, so cargo unifies features as the extension build did and reuses its
# compiled dependencies (testing headwater-core alone would rebuild arrow with other
# features). headwater-python's own behaviour is tested by pytest, through Python.
cargo test --workspace

step "pytest"
# Benchmarks run once each as plain tests here; time them with `pytest benches --benchmark-only`.
python -m pytest --benchmark-disable "$@"
