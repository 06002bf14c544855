#!/usr/bin/env bash
# Set up and run the whole test suite: lints, the Rust tests, and pytest against the
# extension built once from source. Works on a fresh clone; needs Python >= 3.11 and cargo.
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

# System tools the tests run for real: a throwaway PostgreSQL server on loopback (destination
# tests) and openssl (a private CA and certificate for the TLS tests).
missing=()
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    missing+=(postgresql)
fi
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        step "install ${missing[*]} for the tests"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "warning: ${missing[*]} not installed; the tests that need them will fail" >&2
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

step "docs"
# The documentation site, strict: a broken link or a docstring mkdocstrings cannot read fails.
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$(mktemp -d)"

step "cargo test"
# The whole workspace, so cargo unifies features as the extension build did and reuses its
# compiled dependencies (testing headwater-core alone would rebuild arrow with other
# features). headwater-python's own behaviour is tested by pytest, through Python.
cargo test --workspace

step "pytest"
# Benchmarks run once each as plain tests here; time them with scripts/bench.sh.
python -m pytest --benchmark-disable "$@"
