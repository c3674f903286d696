#!/usr/bin/env bash
# Chaos soak (not in CI): a TP=2 CPU cluster under steady load while a random
# rank is killed (SIGKILL, SIGSTOP/SIGCONT or SIGTERM) and restarted every
# 20-60 s. Prints requests sent / completed / failed / mismatched against the
# unfaulted outputs, recoveries with their durations, and every process's RSS
# at start and end. Bounded: --seconds (default 300, at most 600).
#
#   tests/soak/chaos.sh [--seconds=300] [--streams=6] [--seed=1] [--faults=KILL,STOP,TERM]
set -euo pipefail
cd "$(dirname "$0")/../.."
export TPSERVE_ROOT=$(pwd)
bazel build //router:tpserve-router //worker:tpserve-worker >/dev/null
exec "$TPSERVE_ROOT/.venv/bin/python3" tests/soak/chaos.py "$@"
