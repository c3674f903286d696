#!/usr/bin/env bash
# Runs one Python integration test (argument: its path in the runfiles) with
# the project's .venv Python: Debian's python3 with its system site packages
# (python3-grpcio, python3-protobuf) plus the pinned references of
# scripts/requirements.txt (prometheus-client's text-format parser).
# The test starts the real tpserve-router / tpserve-worker binaries (runfiles).
set -euo pipefail
if [ -z "${TPSERVE_ROOT:-}" ]; then
  echo "TPSERVE_ROOT is not set (bazel test --test_env=TPSERVE_ROOT=...)" >&2
  exit 1
fi
if [ ! -f "$TPSERVE_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  echo "default model missing under $TPSERVE_ROOT/models; run scripts/setup.sh" >&2
  exit 1
fi
export PYTHONDONTWRITEBYTECODE=1
PY="$TPSERVE_ROOT/.venv/bin/python3"
if [ ! -x "$PY" ]; then
  echo "$PY missing; run scripts/setup.sh" >&2
  exit 1
fi
exec "$PY" "$1"
