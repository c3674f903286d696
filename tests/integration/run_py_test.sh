#!/usr/bin/env bash
# Runs one Python integration test (argument: its path in the runfiles) with
# Debian's /usr/bin/python3, which has python3-grpcio and python3-protobuf.
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
exec /usr/bin/python3 "$1"
