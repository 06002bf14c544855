#!/usr/bin/env bash
# Set up and run the demo: install headwater from source, then sync the example plugin
# (examples/demo_plugin.py) into the embedded DuckDB default, ./headwater.duckdb, and print rows.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${HEADWATER_VENV:-.venv}"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet .
python examples/demo_plugin.py "${1:-headwater.duckdb}"
