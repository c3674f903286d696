#!/usr/bin/env bash
# Engine benchmark (docs/benchmarks.md, "Engine (CPU)"): tpserve-run and
# llama.cpp on the same GGUF with THREADS threads, alternating, REPS times:
#   batch-1 decode (64 tokens), aggregate decode at 16 sequences (32 tokens
#   each), prefill of 512 tokens;
#   llama-bench pp512 / tg64, llama-batched-bench -npp 16 -ntg 32 -npl 16.
# llama.cpp is the speed peer of scripts/bench_peer.sh
# (.deps/llama.cpp-bench, its version and flags are printed); the 0.3.2 parity
# build is used only when that is missing, and said so.
#   bazel build -c opt //tools/run:tpserve-run && tools/run/bench_engine.sh [bazel-bin-dir]
# Environment: MODEL, REPS (3), THREADS (2: compute threads on both sides),
# TP2=1 also runs TP=2 (THREADS / 2 per rank, shm), TPSERVE_CPU_ISA (caps
# tpserve's kernels: portable|avx2|avxvnni|amx), ISAS="amx avxvnni" (runs
# tpserve once per cap, for an A/B in the same repetition).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-bazel-bin}/tools/run/tpserve-run
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
PEER=.deps/llama.cpp-bench
if [ ! -x "$PEER/bin/llama-bench" ]; then
  # Ratios against a slower llama.cpp build would flatter us: build the pinned
  # speed peer rather than fall back to the 0.3.2 parity build.
  echo "building the llama.cpp speed peer (scripts/bench_peer.sh) ..."
  scripts/bench_peer.sh
fi
run() {
  echo "\$ tpserve-run $*"
  "$BIN" --model "$MODEL" "$@" | grep -E '^(prefill|decode):'
}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
runi() {  # run under this repetition's ISA cap
  if [ "$isa" = best ]; then run "$@"; else TPSERVE_CPU_ISA=$isa run "$@"; fi
}
peer() {
  echo "\$ llama-bench -m $MODEL -t $THREADS -p 512 -n 64 -r 3"
  # llama-bench's backend column says CPU for ggml's AMX path too; its log
  # names the weight buffers (AMX = weights repacked for the AMX kernels).
  "$PEER/bin/llama-bench" -m "$MODEL" -t "$THREADS" -p 512 -n 64 -r 3 -v 2>"$LOG" |
    grep -E 'backend|pp512|tg64'
  grep -m2 -E 'model buffer size' "$LOG" | sed 's/^/  llama.cpp /' || true
  if [ -x "$PEER/bin/llama-batched-bench" ]; then
    echo "\$ llama-batched-bench -m $MODEL -t $THREADS -c 2048 -npp 16 -ntg 32 -npl 16"
    "$PEER/bin/llama-batched-bench" -m "$MODEL" -t "$THREADS" -c 2048 -npp 16 -ntg 32 -npl 16 2>/dev/null |
      grep -E '^\|'
  fi
}
echo "model: $MODEL"
echo "peer: $(cat "$PEER/PEER" 2>/dev/null || echo "llama.cpp from llama-cpp-python 0.3.2 sdist (parity build)")"
echo "tpserve cpu isa: ${ISAS:-${TPSERVE_CPU_ISA:-best detected}}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$REPS"); do
  echo "--- repetition $rep"
  tps=(1)
  [ "${TP2:-0}" = 1 ] && [ "$THREADS" -ge 2 ] && tps+=(2)
  for isa in ${ISAS:-${TPSERVE_CPU_ISA:-best}}; do
    [ "$isa" = best ] || echo "TPSERVE_CPU_ISA=$isa"
    for tp in "${tps[@]}"; do
      threads=$((THREADS / tp))
      runi --tp "$tp" --threads $threads --prompt_len 16 --max_tokens 65 --ignore_eos
      runi --tp "$tp" --threads $threads --prompt_len 16 --max_tokens 33 --batch 16 --ignore_eos
      runi --tp "$tp" --threads $threads --prompt_len 512 --max_tokens 1
    done
  done
  peer
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
