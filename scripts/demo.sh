#!/usr/bin/env bash
# Set up and run the demo: install headwater from source, then `headwater sync` the example
# plugin (examples/demo_plugin.py) into the embedded DuckDB default, ./headwater.duckdb, and
# print a few rows back.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${HEADWATER_VENV:-.venv}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet .
DB="${1:-headwater.duckdb}"
headwater sync examples/demo_plugin.py --to "duckdb://$DB" --mode overwrite --no-progress
python examples/demo_plugin.py --show "$DB"
