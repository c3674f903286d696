#!/usr/bin/env bash
# Serving comparison with vLLM's CPU backend on identical weights (the
# default model dequantized to bf16 safetensors, scripts/vllm_peer.sh), same
# bench.py workload, alternating: vLLM, tpserve on that bf16 directory,
# tpserve on the Q4_1 GGUF, REPS times. Not part of the tests; every server
# it starts ends with it. Writes one JSON summary per run into OUT and prints
# the peer's configuration first.
#
#   scripts/vllm_peer.sh
#   bazel build -c opt //router:tpserve-router //worker:tpserve-worker
#   REPS=2 tools/bench/vs_vllm.sh --concurrency 16 --num_requests 48 --prompt_len 128 --output_len 128
#
# vLLM runs as its CPU installation guide asks for its best speed: tcmalloc
# and Intel OpenMP preloaded, its KV cache VLLM_CPU_KVCACHE_SPACE GiB; it
# decides its own thread count (it logs it: on 2 cores it keeps one for the
# API server) unless OMP_NUM_THREADS is set, which it then uses. tpserve
# gets THREADS compute threads (default 2) and the router flags in
# ROUTER_ARGS (e.g. "--target_step_latency=100ms").
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
REPS=${REPS:-1}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/vs_vllm}
PORT=${PORT:-8011}
HF="$ROOT/.deps/smollm2-135m-bf16"
VPY="$ROOT/.deps/vllm/bin/python"
BIN=${TPSERVE_BIN_DIR:-$ROOT/bazel-bin}
[ -x "$VPY" ] && [ -d "$HF" ] || { echo "run scripts/vllm_peer.sh first" >&2; exit 1; }
mkdir -p "$OUT"
TCMALLOC=$(ls /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 2>/dev/null || true)
IOMP=$(ls "$ROOT"/.deps/vllm/lib/libiomp5.so 2>/dev/null || true)
echo "peer: $(cat "$ROOT/.deps/vllm/PEER"); LD_PRELOAD=${TCMALLOC:-none}:${IOMP:-none}; OMP_NUM_THREADS=${OMP_NUM_THREADS:-its choice}"
echo "tpserve: $BIN, $THREADS threads, router flags '${ROUTER_ARGS:-}', CPU ISA $(grep -m1 -o 'avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | paste -sd, -)"

vllm_pid=""
stop_vllm() { [ -n "$vllm_pid" ] && kill "$vllm_pid" 2>/dev/null && wait "$vllm_pid" 2>/dev/null; vllm_pid=""; }
trap stop_vllm EXIT

run_vllm() {  # label, bench.py arguments
  local label=$1
  shift
  LD_PRELOAD="${TCMALLOC}${IOMP:+:$IOMP}" VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2} \
    "$VPY" -m vllm.entrypoints.openai.api_server --model "$HF" --served-model-name smollm2 \
    --dtype bfloat16 --port "$PORT" --max-model-len 2048 >"$OUT/$label.log" 2>&1 &
  vllm_pid=$!
  for _ in $(seq 1 600); do  # up to 10 minutes of start-up (compilation)
    curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
    kill -0 "$vllm_pid" 2>/dev/null || { echo "vLLM exited; see $OUT/$label.log" >&2; exit 1; }
    sleep 1
  done
  "$ROOT/.venv/bin/python3" tools/bench/bench.py --http "http://127.0.0.1:$PORT" --model smollm2 \
    --label "$label" --json "$OUT/$label.json" "$@"
  stop_vllm
}

run_tpserve() {  # label, model, bench.py arguments
  local label=$1 model=$2
  shift 2
  local router_args=()
  for a in ${ROUTER_ARGS:-}; do router_args+=("--router_arg=$a"); done
  TPSERVE_BIN_DIR="$BIN" "$ROOT/.venv/bin/python3" tools/bench/with_tpserve.py --model "$model" \
    --threads "$THREADS" "${router_args[@]}" -- --label "$label" --json "$OUT/$label.json" "$@"
}

for rep in $(seq 1 "$REPS"); do
  run_vllm "vllm-bf16-$rep" "$@"
  run_tpserve "tpserve-bf16-$rep" "$HF" "$@"
  run_tpserve "tpserve-q41-$rep" "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$@"
done
echo "summaries in $OUT"
