#!/usr/bin/env bash
# Checks the ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations with
# clang's -Wthread-safety (the gcc build ignores them). Parses, does not
# build: every .cc that uses absl::Mutex, or whose header does, under the
# project's C++ directories. Needs clang++-14 and the generated protos
# (run any `bazel build` of //router/... first).
#
#   scripts/thread_safety.sh   # 19 files, ~40 s; exits 1 if any file warns
set -euo pipefail

cd "$(dirname "$0")/.."
CXX=${CXX_THREAD_SAFETY:-clang++-14}
BAZEL_BIN=$(bazel info bazel-bin 2>/dev/null)

files=()
for f in $(grep -rl "absl::Mutex\|ABSL_GUARDED_BY" --include=*.cc --include=*.h \
             common formats rendezvous kernels worker router tools | grep -v "^kernels/cuda/emu/" | sort -u); do
  case $f in
    *.h) [ -f "${f%.h}.cc" ] && files+=("${f%.h}.cc") ;;
    *) files+=("$f") ;;
  esac
done
mapfile -t files < <(printf '%s\n' "${files[@]}" | sort -u)

status=0
for f in "${files[@]}"; do
  if ! "$CXX" -std=c++20 -fsyntax-only -I. -I"$BAZEL_BIN" -I/usr/local/cuda/include \
      -Wno-everything -Wthread-safety -Werror=thread-safety "$f"; then
    echo "thread-safety: $f" >&2
    status=1
  fi
done
echo "thread-safety: checked ${#files[@]} files"
exit $status
