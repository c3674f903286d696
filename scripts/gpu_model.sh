#!/usr/bin/env bash
# The memory-transaction MODEL of CUDA decode steps (a model, not a
# measurement; kernels/cuda/emu/memory_model.h): builds the engine on the
# CUDA emulator with GCC's address-sanitizer instrumentation in callback mode
# (no sanitizer runtime; the emulator counts each kernel load and store),
# runs one counted decode step per batch size on the model, and prints the
# per-kernel table docs/benchmarks.md records. Not in CI (minutes).
#
#   scripts/gpu_model.sh                                   # SmolLM2-135M Q4_1, batch 1 and 16
#   scripts/gpu_model.sh --model=x.gguf --batches=1
set -euo pipefail
cd "$(dirname "$0")/.."
out=${TPSERVE_MODEL_OUT:-$(mktemp -d)}
flags=(
  --copt=-DTPSERVE_EMU_MEMORY_MODEL --copt=-fsanitize=address
  --copt=--param=asan-instrumentation-with-call-threshold=0 --copt=--param=asan-stack=0
  --copt=--param=asan-globals=0 --copt=--param=asan-use-after-return=0
  --copt=--param=asan-memintrin=0
  # The emulator itself is not counted (and must not call back into itself).
  '--per_file_copt=kernels/cuda/emu/.*@-fno-sanitize=address'
)
bazel build --jobs="${JOBS:-2}" "${flags[@]}" //worker/engine/cuda:decode_model
bin=$(bazel info "${flags[@]}" bazel-bin 2>/dev/null)/worker/engine/cuda/decode_model
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--model=models/SmolLM2-135M-Instruct.Q4_1.gguf --batches=1,16)
rm -f "$out/model.tsv"
TPSERVE_CUDA_EMU_MODEL="$out/model.tsv" TPSERVE_CUDA_EMU_THREADS=1 TPSERVE_CUDA_EMU_SEED=0 \
  "$bin" "${args[@]}" | tee "$out/weights.txt"
python3 scripts/gpu_model_report.py "$out/model.tsv" "$out/weights.txt"
