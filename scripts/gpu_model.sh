#!/usr/bin/env bash
# The memory-transaction MODEL of CUDA decode steps (a model, not a
# measurement; kernels/cuda/emu/memory_model.h): builds the engine on the
# CUDA emulator with GCC's address-sanitizer instrumentation in callback mode
# (no sanitizer runtime; the emulator counts each kernel load and store),
# runs one counted decode step per batch size on the model, and prints the
# per-kernel table docs/benchmarks.md records. Not in CI (minutes).
#
#   scripts/gpu_model.sh       # SmolLM2-135M's shape (vocabulary 4096, as decode_bench's
#                              # SmolLM2-shape rows), batch 1 and 16; also prints the
#                              # kernels/cuda/model_h100.tsv lines for gpu_check.sh
#   scripts/gpu_model.sh --model=models/SmolLM2-135M-Instruct.Q4_1.gguf --batches=1
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
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  bazel build --jobs="${JOBS:-2}" //tests/testmodel:make_test_model
  TPSERVE_ROOT="$(pwd)" "$(bazel info bazel-bin 2>/dev/null)/tests/testmodel/make_test_model" \
    --out="$out/smollm2_shape.gguf" --dtype=q4_1 --hidden=576 --layers=30 --heads=9 --kv_heads=3 \
    --ffn=1536 --vocab=4096
  args=(--model="$out/smollm2_shape.gguf" --batches=1,16)
fi
bazel build --jobs="${JOBS:-2}" "${flags[@]}" //worker/engine/cuda:decode_model
bin=$(bazel info "${flags[@]}" bazel-bin 2>/dev/null)/worker/engine/cuda/decode_model
rm -f "$out/model.tsv"
TPSERVE_CUDA_EMU_MODEL="$out/model.tsv" TPSERVE_CUDA_EMU_THREADS=1 TPSERVE_CUDA_EMU_SEED=0 \
  "$bin" "${args[@]}" | tee "$out/weights.txt"
python3 scripts/gpu_model_report.py "$out/model.tsv" "$out/weights.txt"
echo
python3 scripts/gpu_model_report.py "$out/model.tsv" --tsv "--label=SmolLM2-shape Q4_1 (graphs)"
