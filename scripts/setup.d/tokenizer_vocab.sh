#!/usr/bin/env bash
# Tokenizer test vocabularies: llama.cpp's vocab-only GGUF files and their
# expected tokenizations (.inp/.out), as vendored in the llama-cpp-python
# source package. Only the few files the tokenizer tests use are extracted,
# into models/vocab/. Idempotent: does nothing when they are all present.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DEST="$ROOT/models/vocab"
VERSION=0.3.2
SDIST="$ROOT/.deps/llama_cpp_python-$VERSION.tar.gz"  # linked by 00-llamacpp-sdist.sh
NAMES=(llama-spm llama-bpe qwen2 gpt-2 starcoder)

need=0
for n in "${NAMES[@]}"; do
  for ext in gguf gguf.inp gguf.out; do
    [ -s "$DEST/ggml-vocab-$n.$ext" ] || need=1
  done
done
if [ "$need" = 0 ]; then
  echo "[setup] tokenizer vocabularies: present in models/vocab"
  exit 0
fi

mkdir -p "$DEST"
members=()
for n in "${NAMES[@]}"; do
  for ext in gguf gguf.inp gguf.out; do
    members+=("llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-$n.$ext")
  done
done
tar -xzf "$SDIST" -C "$DEST" --strip-components=4 "${members[@]}"
echo "[setup] tokenizer vocabularies: extracted ${#members[@]} files into models/vocab"
