#!/usr/bin/env sh
# Run every benchmark in turn; pass --quick for a short smoke run of each.
# Usage: bench/run_all.sh [--quick]      (from the repository root)
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
QUICK=${1:-}
$PY -m bench.ingest $QUICK
$PY -m bench.lag $QUICK
$PY -m bench.backfill $QUICK
