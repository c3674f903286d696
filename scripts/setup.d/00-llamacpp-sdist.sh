#!/usr/bin/env bash
# The llama-cpp-python 0.3.2 source package vendors llama.cpp: our independent
# reference (engine parity, speed) and the source of llama.cpp's tokenizer test
# vocabularies. It is kept once per machine in the tpserve cache
# (${TPSERVE_CACHE:-~/.cache/tpserve}) and linked into .deps/, so fresh clones
# (CI) reuse it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${TPSERVE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tpserve}
NAME=llama_cpp_python-0.3.2.tar.gz
mkdir -p "$CACHE" "$ROOT/.deps"
if [ ! -s "$CACHE/$NAME" ]; then
  echo "[setup] fetching the llama-cpp-python==0.3.2 source package into $CACHE"
  # Only this package as source: its build requirements (needed by pip to read
  # its metadata) come as wheels.
  "$ROOT/.venv/bin/pip" download -q --disable-pip-version-check --no-deps \
    --no-binary llama-cpp-python "llama-cpp-python==0.3.2" -d "$CACHE"
fi
if [ ! -s "$ROOT/.deps/$NAME" ]; then
  ln -sfn "$CACHE/$NAME" "$ROOT/.deps/$NAME"
fi
echo "[setup] llama-cpp-python source package: $CACHE/$NAME"
