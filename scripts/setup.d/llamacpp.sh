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
SDIST="$DEPS/llama_cpp_python-$VER.tar.gz"  # linked by 00-llamacpp-sdist.sh
# Built once per machine in the tpserve cache and linked into .deps/, so fresh
# clones (CI) reuse the build.
CACHE=${TPSERVE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tpserve}
SRC="$CACHE/llama_cpp_python-$VER"
BUILD="$CACHE/llama.cpp-build-$VER"
STAMP="$BUILD/.tpserve-built"
log() { printf '[setup llama.cpp] %s\n' "$*"; }

mkdir -p "$DEPS" "$CACHE"
if [ -d "$DEPS/llama.cpp-build" ] && [ ! -L "$DEPS/llama.cpp-build" ]; then
  log "present (checkout-local build): $DEPS/llama.cpp-build"
  exit 0
fi
ln -sfn "$BUILD" "$DEPS/llama.cpp-build"
# The sdist's Python bindings (tests drive libllama through them).
[ -d "$DEPS/llama_cpp_python-$VER" ] && [ ! -L "$DEPS/llama_cpp_python-$VER" ] ||
  ln -sfn "$SRC" "$DEPS/llama_cpp_python-$VER"
if [ ! -d "$SRC" ]; then
  log "unpacking $SDIST"
  tar xzf "$SDIST" -C "$CACHE"
fi
if [ -f "$STAMP" ] && [ -f "$BUILD/bin/llama-bench" ]; then
  log "present: $BUILD"
  exit 0
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
