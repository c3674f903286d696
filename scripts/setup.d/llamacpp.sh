#!/usr/bin/env bash
# Builds llama.cpp (vendored in the llama-cpp-python 0.3.2 sdist) as the
# independent reference for the engine: libllama.so (driven from Python
# through the sdist's own ctypes bindings by tests/reference/) and llama-bench
# (the speed reference in docs/benchmarks.md). Idempotent; only the two
# targets are built (about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DEPS="$ROOT/.deps"
VER=0.3.2
SDIST="$DEPS/llama_cpp_python-$VER.tar.gz"
SRC="$DEPS/llama_cpp_python-$VER"
BUILD="$DEPS/llama.cpp-build"
STAMP="$BUILD/.tpserve-built"
log() { printf '[setup llama.cpp] %s\n' "$*"; }

if [ -f "$STAMP" ] && [ -f "$BUILD/bin/llama-bench" ]; then
  log "present: $BUILD"
  exit 0
fi
mkdir -p "$DEPS"
if [ ! -f "$SDIST" ]; then
  log "fetching the llama-cpp-python $VER sdist (pip builds its metadata: slow)"
  "$ROOT/.venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
    "llama-cpp-python==$VER" -d "$DEPS"
fi
if [ ! -d "$SRC" ]; then
  log "unpacking $SDIST"
  tar xzf "$SDIST" -C "$DEPS"
fi
log "configuring llama.cpp (Release, native, shared, no curl)"
cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DGGML_OPENMP=ON -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$BUILD/bin" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$BUILD/bin" > "$BUILD.configure.log" 2>&1 ||
  { cat "$BUILD.configure.log"; exit 1; }
log "building llama and llama-bench (-j2)"
cmake --build "$BUILD" --target llama llama-bench -j2 > "$BUILD.build.log" 2>&1 ||
  { tail -50 "$BUILD.build.log"; exit 1; }
touch "$STAMP"
log "built: $BUILD/bin/llama-bench, $BUILD/bin/libllama.so"
