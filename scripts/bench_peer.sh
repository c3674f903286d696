#!/usr/bin/env bash
# Builds the llama.cpp used as the *speed* peer in benchmarks (llama-bench,
# llama-batched-bench, llama-server) from a llama-cpp-python source package.
# The parity tests keep using the 0.3.2 build of scripts/setup.d/llamacpp.sh;
# this one is chosen for speed on this machine (docs/benchmarks.md, "Which
# llama.cpp"), so ratios are measured against llama.cpp at its best.
#
#   scripts/bench_peer.sh                  # pinned version + flags
#   LLAMACPP_BENCH_VER=0.3.36 LLAMACPP_BENCH_NATIVE=OFF scripts/bench_peer.sh
#
# Not part of scripts/setup.sh (tests never need it; a build takes long on 2
# cores): tools/run/bench_engine.sh runs it when the peer is missing.
#
# Result: .deps/llama.cpp-bench -> $CACHE/llama.cpp-bench-<ver>-<native|generic>
# with bin/llama-bench, bin/llama-batched-bench, bin/llama-server and a
# PEER file naming version and flags (tools/run/bench_engine.sh prints it).
# Idempotent; about 15 minutes per build on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# Pinned per CPU from the measurements in docs/benchmarks.md ("Which
# llama.cpp"): with AMX, 0.3.8 (0.3.36's native AMX path crashes there);
# without, 0.3.36 (15-20% faster than 0.3.8 on pp512 and tg64).
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then DEFAULT_VER=0.3.8; else DEFAULT_VER=0.3.36; fi
VER=${LLAMACPP_BENCH_VER:-$DEFAULT_VER}
NATIVE=${LLAMACPP_BENCH_NATIVE:-ON}
LINK=${LLAMACPP_BENCH_LINK:-1}
CACHE=${TPSERVE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tpserve}
NAME=llama_cpp_python-$VER
FLAVOR=$([ "$NATIVE" = ON ] && echo native || echo generic)
SRC="$CACHE/$NAME"
BUILD="$CACHE/llama.cpp-bench-$VER-$FLAVOR"
STAMP="$BUILD/.tpserve-built"
log() { printf '[setup llama.cpp bench] %s\n' "$*"; }

mkdir -p "$CACHE" "$ROOT/.deps"
if [ ! -s "$CACHE/$NAME.tar.gz" ]; then
  log "fetching the llama-cpp-python==$VER source package into $CACHE"
  "$ROOT/.venv/bin/pip" download -q --disable-pip-version-check --no-deps \
    --no-binary llama-cpp-python "llama-cpp-python==$VER" -d "$CACHE"
fi
[ -d "$SRC" ] || tar xzf "$CACHE/$NAME.tar.gz" -C "$CACHE"
if [ ! -f "$STAMP" ]; then
  log "configuring llama.cpp $VER (Release, GGML_NATIVE=$NATIVE, static, no curl)"
  mkdir -p "$BUILD"
  cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE="$NATIVE" -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON -DGGML_OPENMP=ON \
    -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$BUILD/bin" > "$BUILD.configure.log" 2>&1 ||
    { cat "$BUILD.configure.log"; exit 1; }
  log "building llama-bench, llama-batched-bench (-j2)"
  cmake --build "$BUILD" --target llama-bench llama-batched-bench -j2 \
    > "$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log"; exit 1; }
  echo "llama.cpp from llama-cpp-python $VER sdist, GGML_NATIVE=$NATIVE, OpenMP, $(${CC:-cc} --version | head -1)" \
    > "$BUILD/PEER"
  touch "$STAMP"
fi
# llama-server (the HTTP peer for tools/bench) is the slowest target; skipped
# with LLAMACPP_BENCH_SERVER=0 when only comparing builds.
if [ "${LLAMACPP_BENCH_SERVER:-1}" = 1 ] && [ ! -x "$BUILD/bin/llama-server" ]; then
  log "building llama-server (-j2)"
  cmake --build "$BUILD" --target llama-server -j2 >> "$BUILD.build.log" 2>&1 ||
    { tail -50 "$BUILD.build.log"; exit 1; }
fi
if [ "$LINK" = 1 ]; then
  ln -sfn "$BUILD" "$ROOT/.deps/llama.cpp-bench"
fi
log "ready: $BUILD ($(cat "$BUILD/PEER"))"
