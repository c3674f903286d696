#!/usr/bin/env bash
# The CUDA emulator's tests and the kernels' `_emu` tests built with
# ThreadSanitizer. The emulator runs a grid's blocks on several OS threads
# (kernels/cuda/emu/grid.h), so a kernel whose blocks race on global memory
# (two blocks writing one element without an atomic, a block reading what
# another writes) is reported here; fibers within a block switch through
# TSan's fiber API and synchronise, so __syncthreads-ordered shared memory is
# not. Not part of CI (TSan makes the emulator several times slower); run it
# after changing a kernel's cross-block access pattern.
#
#   scripts/gpu_emu_tsan.sh                       # kernel and emulator tests
#   scripts/gpu_emu_tsan.sh //kernels/cuda:gemm_test_emu
#   TPSERVE_CUDA_EMU_SEED=7 scripts/gpu_emu_tsan.sh   # another block order
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(bazel query 'attr(tags, cuda_emu, tests(//kernels/...))' 2>/dev/null)
  targets+=(//kernels/cuda/emu:emu_test //kernels/cuda/emu:sm90_test //kernels/cuda/emu:streams_test
    //kernels/cuda/emu:cooperative_test)
fi

# Its own output base: TSan flags would otherwise evict the normal build's
# analysis cache. No bazel-* convenience links (--symlink_prefix=/): pointed
# at this output base they would make the normal build's `bazel query //...`
# (scripts/gpu_check.sh pack) walk into it. Death tests fork; TSan allows
# that with die_after_fork=0. Under TSan cuda_graph_test_emu alone outruns
# Bazel's 300 s default.
exec bazel --output_base="${HOME}/.cache/tpserve-bazel-tsan" test \
  --symlink_prefix=/ \
  --jobs="${JOBS:-2}" --local_test_jobs=1 --test_timeout=3600 \
  --copt=-fsanitize=thread --linkopt=-fsanitize=thread --copt=-O1 \
  --test_env=TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0" \
  --test_env=TPSERVE_CUDA_EMU_SEED="${TPSERVE_CUDA_EMU_SEED:-1}" \
  --test_env=TPSERVE_CUDA_EMU_THREADS="${TPSERVE_CUDA_EMU_THREADS:-4}" \
  --test_env=TPSERVE_ROOT="$(pwd)" --nocache_test_results \
  "${targets[@]}"
