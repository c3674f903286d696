#!/bin/bash
# Starts this pod's tensor-parallel ranks: one tpserve-worker per GPU of the
# pod, rank = pod index x GPUs per pod + local index, CUDA device = local
# index, gRPC port 50061 + local index, /metrics port 9401 + local index.
# Arguments are the flags every rank shares (the container's args); this
# script adds the per-rank ones.
#
#   TPSERVE_GPUS_PER_POD=8 TPSERVE_POD_INDEX=1 TPSERVE_WORLD_SIZE=16 \
#       launch-ranks.sh --model=/models/m.gguf --backend=cuda ...   # ranks 8..15
#
# A rank that exits ends the others (SIGTERM, then SIGKILL after 10 s: a rank
# still loading or in a collective's set-up may not act on SIGTERM) and the
# script exits with its status, so the container restarts (and shows it in
# its restart count); the router heals the group when this pod's ranks
# register again.
set -uo pipefail
gpus=${TPSERVE_GPUS_PER_POD:?set TPSERVE_GPUS_PER_POD to the nvidia.com/gpu limit}
pod=${TPSERVE_POD_INDEX:?set TPSERVE_POD_INDEX (pod index label)}
world=${TPSERVE_WORLD_SIZE:?set TPSERVE_WORLD_SIZE in the tpserve-config ConfigMap}
pods=${LWS_GROUP_SIZE:-1}  # LeaderWorkerSet pods per group; 1 without LWS
if (( gpus < 1 || gpus > 8 )); then
  echo "launch-ranks: TPSERVE_GPUS_PER_POD=$gpus; ranks per pod must be 1..8 (ports 50061-50068)" >&2
  exit 2
fi
if (( pods * gpus != world )); then
  echo "launch-ranks: TPSERVE_WORLD_SIZE=$world but the group has $pods pod(s) x $gpus GPU(s)" >&2
  exit 2
fi
if (( pod < 0 || pod >= pods )); then
  echo "launch-ranks: pod index $pod outside a group of $pods pod(s)" >&2
  exit 2
fi

pids=()
stop() { ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null; }
# Waits up to 10 s for every rank to exit, then kills the rest.
reap() {
  for _ in $(seq 100); do
    [ -n "$(jobs -rp)" ] || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null
  wait
}
trap 'stop' TERM INT
for ((i = 0; i < gpus; i++)); do
  tpserve-worker "$@" --rank=$((pod * gpus + i)) --world_size="$world" --cuda_device="$i" \
    --port=$((50061 + i)) --metrics_port=$((9401 + i)) &
  pids+=($!)
done
wait -n
status=$?
stop
reap
exit "$status"
