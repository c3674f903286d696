#!/usr/bin/env bash
# The memory-transaction MODEL of the CUDA kernels (a model, not a
# measurement; kernels/cuda/emu/memory_model.h): builds on the CUDA emulator
# with GCC's address-sanitizer instrumentation in callback mode (no sanitizer
# runtime; the emulator counts each kernel load and store) and prints what
# docs/benchmarks.md ("Modelled H100") and kernels/cuda/model_h100.tsv record.
# Not in CI (minutes).
#
#   scripts/gpu_model.sh          # one counted decode step at batch 1 and 16 after a 32-token
#                                 # prefill on SmolLM2-135M's shape (vocabulary 4096, as
#                                 # decode_bench's SmolLM2-shape rows), run at 1 and 2 layers and
#                                 # extrapolated to 30 (gpu_model_report.py): the per-kernel
#                                 # tables of docs/benchmarks.md
#   scripts/gpu_model.sh --model=models/SmolLM2-135M-Instruct.Q4_1.gguf --batches=1
#   scripts/gpu_model.sh --kernels  # kernel_bench's rows in model mode (bench_util.h), blocks
#                                 # sampled ($BLOCKS per launch, default 1): model_h100.tsv lines
#   scripts/gpu_model.sh --kernels --only=prefill   # kernel_bench's families named so only
#   scripts/gpu_model.sh --tsv    # regenerates kernels/cuda/model_h100.tsv: every kernel_bench
#                                 # row, the SmolLM2-shape steps above and decode_bench's 1.1B
#                                 # shape the same way (16 layers; 2-token prefill: its 32-token
#                                 # batch-16 prefill would take hours on the emulator)
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
jobs="${JOBS:-2}"
bin_dir() { bazel info "${flags[@]}" bazel-bin 2>/dev/null; }
export TPSERVE_CUDA_EMU_SEED=0

# make_model <file> <layers> <shape flags...>: a generated Q4_1 GGUF.
make_model() {
  local file=$1 layers=$2
  shift 2
  bazel build --jobs="$jobs" //tests/testmodel:make_test_model
  TPSERVE_ROOT="$(pwd)" "$(bazel info bazel-bin 2>/dev/null)/tests/testmodel/make_test_model" \
    --out="$out/$file" --dtype=q4_1 --layers="$layers" --vocab=4096 "$@"
}
smollm2=(--hidden=576 --heads=9 --kv_heads=3 --ffn=1536)  # decode_bench's SmolLM2-shape
llama_1b=(--hidden=2048 --heads=32 --kv_heads=8 --ffn=8192)  # decode_bench's 1.1B, 16 layers

# decode <decode_model args...>: counted steps appended to $out/model.tsv.
decode() {
  bazel build --jobs="$jobs" "${flags[@]}" //worker/engine/cuda:decode_model
  TPSERVE_CUDA_EMU_MODEL="$out/model.tsv" TPSERVE_CUDA_EMU_THREADS=1 \
    "$(bin_dir)/worker/engine/cuda/decode_model" "$@" | tee -a "$out/weights.txt"
}

# SmolLM2-shape steps at 1 and 2 layers of 30.
smollm2_steps() {
  for layers in 1 2; do
    make_model "smollm2_$layers.gguf" "$layers" "${smollm2[@]}"
    decode --model="$out/smollm2_$layers.gguf" --batches=1,16 \
      "--label=SmolLM2-shape Q4_1 (layers $layers of 30)"
  done
}

# kernel_bench's rows, "<row>\tmodel <figure>" each.
kernels() {
  bazel build --jobs="$jobs" "${flags[@]}" //kernels/cuda:kernel_bench_emu
  TPSERVE_CUDA_EMU_MODEL="$out/kernels.tsv" TPSERVE_CUDA_EMU_MODEL_BLOCKS="${BLOCKS:-1}" \
    TPSERVE_CUDA_EMU_THREADS=1 "$(bin_dir)/kernels/cuda/kernel_bench_emu" "$@"
}

rm -f "$out/model.tsv" "$out/weights.txt" "$out/kernels.tsv"
case "${1:-}" in
  --kernels) shift; kernels "$@" ;;
  --tsv)
    smollm2_steps >/dev/null
    for layers in 1 2; do
      make_model "llama_1b_$layers.gguf" "$layers" "${llama_1b[@]}"
      decode --model="$out/llama_1b_$layers.gguf" --batches=1,16 --context=2 \
        "--label=1.1B Q4_1 (layers $layers of 16)" >/dev/null
    done
    tsv=kernels/cuda/model_h100.tsv
    {
      sed -n '/^#/p' "$tsv"
      python3 scripts/gpu_model_report.py "$out/model.tsv" --tsv
      kernels
    } >"$out/model_h100.tsv"
    cp "$out/model_h100.tsv" "$tsv"
    echo "gpu_model: wrote $tsv ($(grep -vc '^#' "$tsv") predictions)"
    ;;
  *)
    if [ $# -eq 0 ]; then smollm2_steps; else decode "$@"; fi
    python3 scripts/gpu_model_report.py "$out/model.tsv" "$out/weights.txt"
    ;;
esac
