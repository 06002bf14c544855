#!/usr/bin/env bash
# Time the benchmarks on a release build, each against its baseline in the same run.
#
# The baselines that are other SDKs live in environments of their own, installed only here:
# .venv-bench-cq has the official CloudQuery Python SDK (it pulls in pandas and numpy);
# .venv-bench-dlt has dlt with DuckDB and Parquet support, for the local-sync benchmarks.
#
#   scripts/bench.sh                              # every suite
#   scripts/bench.sh benches/test_sync_benchmarks.py -k memory
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

[ -x .venv-bench/bin/python ] || "$PYTHON" -m venv .venv-bench
.venv-bench/bin/python -m pip install --quiet --upgrade pip
# A release build (optimised, thin local LTO), as `pip install headwater` from source gives.
.venv-bench/bin/python -m pip install --quiet '.[test]'

[ -x .venv-bench-cq/bin/python ] || "$PYTHON" -m venv .venv-bench-cq
# 0.1.57 needs a certifi release the package index may not have yet.
.venv-bench-cq/bin/python -m pip install --quiet --upgrade pip 'cloudquery-plugin-sdk==0.1.56'

[ -x .venv-bench-dlt/bin/python ] || "$PYTHON" -m venv .venv-bench-dlt
.venv-bench-dlt/bin/python -m pip install --quiet --upgrade pip 'dlt[duckdb,parquet]'

export HEADWATER_CQ_PYTHON="$PWD/.venv-bench-cq/bin/python"
export HEADWATER_DLT_PYTHON="$PWD/.venv-bench-dlt/bin/python"
if [ "$#" -eq 0 ]; then
    set -- benches
fi
exec .venv-bench/bin/python -m pytest --benchmark-only -s -p no:cacheprovider "$@"
