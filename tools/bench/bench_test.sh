#!/usr/bin/env bash
# Runs tools/bench/bench_test.py (standard library only) from the runfiles.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec python3 "$(dirname "$0")/bench_test.py"
