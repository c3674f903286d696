#!/usr/bin/env bash
# Engine benchmark (docs/benchmarks.md, "Engine (CPU)"): tpserve-run decode at
# batch 1 and 16 and a 512-token prefill, TP=1 (2 threads) and TP=2 (1 thread
# per rank = 2 threads; ranks talk over shared memory, plus one Gloo/TCP
# decode run for comparison), then llama-bench on the same GGUF with 2 threads,
# run back to back so both see the same machine load.
#   bazel build -c opt //tools/run:tpserve-run && tools/run/bench_engine.sh [bazel-bin-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-bazel-bin}/tools/run/tpserve-run
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_BENCH=.deps/llama.cpp-build/bin/llama-bench
run() { echo "\$ tpserve-run $*"; "$BIN" --model "$MODEL" "$@" | grep -E '^(prefill|decode):'; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for tp in 1 2; do
  threads=$((2 / tp))
  run --tp $tp --threads $threads --prompt_len 16 --max_tokens 65 --ignore_eos
  run --tp $tp --threads $threads --prompt_len 16 --max_tokens 33 --batch 16 --ignore_eos
  run --tp $tp --threads $threads --prompt_len 512 --max_tokens 1
done
run --tp 2 --threads 1 --comm gloo --prompt_len 16 --max_tokens 65 --ignore_eos
if [ -x "$LLAMA_BENCH" ]; then
  echo "\$ llama-bench -m $MODEL -t 2 -p 512 -n 64 -r 3"
  "$LLAMA_BENCH" -m "$MODEL" -t 2 -p 512 -n 64 -r 3 2>/dev/null | grep -E 'pp512|tg64'
else
  echo "llama-bench missing: run scripts/setup.sh"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
