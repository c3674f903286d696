#!/usr/bin/env bash
# tpserve-inspect on the default model: config, tensors, tokenizer, template,
# --tokenize; and a clear error for a missing model.
set -euo pipefail
BIN=tools/inspect/tpserve-inspect
MODEL="$TPSERVE_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
out=$("$BIN" --tokenize="<|im_start|>user Hi" "$MODEL")
expect() { grep -qF -- "$1" <<<"$out" || { echo "missing: $1"; echo "$out" | head -40; exit 1; }; }
expect "architecture      llama"
expect "num_kv_heads      3"
expect "vocab_size        49152"
expect "rope_layout       adjacent pairs"
expect "tensors: 272"
expect "token_embd.weight"
expect "Q8_0"
expect "[49152, 576]"
expect "blk.29.ffn_down.weight"
expect "merges            48900"
expect "eos_token         <|im_end|>"
expect "chat template:"
expect "tokenize: "
expect "  ids 1 "
if "$BIN" /nonexistent/model.gguf 2>"$TEST_TMPDIR/err.txt"; then echo "expected failure"; exit 1; fi
grep -q "/nonexistent/model.gguf" "$TEST_TMPDIR/err.txt" || { cat "$TEST_TMPDIR/err.txt"; exit 1; }
echo PASS
