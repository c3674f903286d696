#!/usr/bin/env bash
# tpserve demo: sets up (Debian packages, Python env, default model), builds,
# starts a router and two CPU workers (tensor parallel, TP=2) serving
# SmolLM2-135M-Instruct on this machine, sends a chat request with the tpserve
# CLI and prints the streamed answer and the /metrics addresses. The cluster
# stays up until Ctrl-C (--once: stop right after the answer).
#
#   scripts/demo.sh                      # keep serving; try `bazel-bin/tools/cli/tpserve chat`
#   scripts/demo.sh --once               # answer once and exit
#   scripts/demo.sh --prompt "Hi there"  # your own first question
#
# Ports (override with the environment): TPSERVE_PORT=50051 (gRPC),
# TPSERVE_METRICS_PORT=9400 (router /metrics; workers use the next two),
# TPSERVE_RENDEZVOUS_PORT=29500, TPSERVE_HTTP_PORT=8000 (OpenAI-compatible HTTP
# API, docs/api.md "HTTP API").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ONCE=0
PROMPT="What is the capital of France? Answer in one sentence."
while [ $# -gt 0 ]; do
  case "$1" in
    --once) ONCE=1 ;;
    --prompt) PROMPT="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

PORT=${TPSERVE_PORT:-50051}
METRICS_PORT=${TPSERVE_METRICS_PORT:-9400}
RDV_PORT=${TPSERVE_RENDEZVOUS_PORT:-29500}
HTTP_PORT=${TPSERVE_HTTP_PORT:-8000}
BAZEL=${TPSERVE_BAZEL:-bazel}
MODEL="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
say() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }

say "1/4 setup (Debian packages, Python reference env, default model)"
scripts/setup.sh

say "2/4 building router, worker and CLI (first build takes a few minutes)"
$BAZEL build //router:tpserve-router //worker:tpserve-worker //tools/cli:tpserve
BIN=$($BAZEL info bazel-bin 2>/dev/null)

LOGDIR=$(mktemp -d /tmp/tpserve-demo.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  if [ ${#PIDS[@]} -gt 0 ]; then
    say "stopping the cluster"
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  say "logs kept in $LOGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each process logs to its own file and, prefixed, to this terminal.
start() {
  local name=$1; shift
  "$@" > "$LOGDIR/$name.log" 2>&1 &
  PIDS+=($!)
  tail -n +1 -F "$LOGDIR/$name.log" 2>/dev/null &
  PIDS+=($!)
}

say "3/4 starting router (gRPC :$PORT) and 2 CPU workers (TP=2); logs in $LOGDIR"
start router "$BIN/router/tpserve-router" --model="$MODEL" --model_name=SmolLM2-135M-Instruct \
  --world_size=2 --port="$PORT" --metrics_port="$METRICS_PORT" --rendezvous_port="$RDV_PORT" \
  --http_port="$HTTP_PORT"
threads=$(( $(nproc) / 2 )); [ "$threads" -lt 1 ] && threads=1
for rank in 0 1; do
  start "worker$rank" "$BIN/worker/tpserve-worker" --model="$MODEL" --model_name=SmolLM2-135M-Instruct \
    --rank=$rank --world_size=2 \
    --rendezvous=127.0.0.1:"$RDV_PORT" --metrics_port=$((METRICS_PORT + 1 + rank)) \
    --threads="$threads" --kv_cache_mb=256 --comm=shm
done

CLI="$BIN/tools/cli/tpserve"
for i in $(seq 1 600); do
  if "$CLI" info --router=127.0.0.1:"$PORT" > "$LOGDIR/info.txt" 2>/dev/null; then break; fi
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { say "a process exited early; see $LOGDIR"; exit 1; }
  done
  sleep 0.5
done
sleep 0.3  # let the log tails catch up before the answer prints
cat "$LOGDIR/info.txt"

say "4/4 chat request: $PROMPT"
echo
"$CLI" chat --router=127.0.0.1:"$PORT" --max_tokens=128 "$PROMPT"
echo
say "metrics: router http://127.0.0.1:$METRICS_PORT/metrics"
say "         worker 0 http://127.0.0.1:$((METRICS_PORT + 1))/metrics, worker 1 http://127.0.0.1:$((METRICS_PORT + 2))/metrics"
say "try:     $CLI chat --router=127.0.0.1:$PORT"
say "         curl http://127.0.0.1:$HTTP_PORT/v1/chat/completions -H 'Content-Type: application/json' \\"
say "           -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}]}'"
if [ "$ONCE" = 1 ]; then
  exit 0
fi
say "cluster is up; press Ctrl-C to stop"
wait "${PIDS[0]}"
