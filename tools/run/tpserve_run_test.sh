#!/usr/bin/env bash
# Smoke test of tpserve-run on the default model: TP=2 over shared memory and
# TP=3 over Gloo produce the expected greedy text; bad input ends with a clear
# error and a non-zero exit, never a hang; the KV cache is bf16 by default
# (23040 bytes per token: 30 layers x 3 KV heads x 64 x K,V x 2 bytes) and
# f32 on --kv_dtype f32; --backend cuda takes --kv_dtype bf16.
set -uo pipefail
BIN="$1"
MODEL="${TPSERVE_ROOT:-.}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
fail() { echo "FAIL: $*"; exit 1; }

out=$(timeout 120 "$BIN" --model "$MODEL" --tp 2 --threads 1 --prompt "The capital of France is" --max_tokens 8 2>&1) ||
  fail "TP=2 run failed: $out"
echo "$out"
grep -q "The capital of France is Paris" <<<"$out" || fail "TP=2 text"
grep -q "^decode: .* tokens/s" <<<"$out" || fail "no decode tokens/s"

out=$(timeout 120 "$BIN" --model "$MODEL" --tp 3 --threads 1 --comm gloo --prompt_ids 504,3575,282,4649,314 --max_tokens 2 2>&1) ||
  fail "TP=3 gloo run failed: $out"
grep -q "^output ids: 7042,30" <<<"$out" || fail "TP=3 output ids: $out"

out=$(timeout 60 "$BIN" --model "$MODEL" --prompt_ids 5,99999999 --max_tokens 2 2>&1) && fail "bad token id accepted"
grep -q "outside the vocabulary" <<<"$out" || fail "bad token id message: $out"

out=$(timeout 60 "$BIN" --model "$MODEL" --tp 2 --threads 1 --prompt_len 64 --batch 4 --kv_mb 1 --max_tokens 2 2>&1) && fail "tiny KV pool accepted"
grep -qi "kv cache" <<<"$out" || fail "KV exhaustion message: $out"

out=$(timeout 60 "$BIN" --model "$MODEL" --tp 10 --prompt_ids 5 2>&1) && fail "TP=10 accepted"
grep -q "exceeds the 9 query heads" <<<"$out" || fail "TP=10 message: $out"

out=$(timeout 60 "$BIN" --model "$MODEL" --prompt_ids 504,3575,282,4649,314 --max_tokens 2 --kv_dtype f32 2>&1) ||
  fail "f32 KV run failed: $out"
grep -q "^kv cache: F32, 46080 bytes per token" <<<"$out" || fail "f32 KV bytes per token: $out"
out=$(timeout 60 "$BIN" --model "$MODEL" --prompt_ids 504,3575,282,4649,314 --max_tokens 2 2>&1) ||
  fail "default KV run failed: $out"
grep -q "^kv cache: BF16, 23040 bytes per token" <<<"$out" || fail "default (bf16) KV bytes per token: $out"

out=$(timeout 10 "$BIN" --model "$MODEL" --prompt_ids 5 --kv_dtype f16 2>&1); [ $? -eq 2 ] || fail "--kv_dtype f16 exit code: $out"
grep -q -- "--kv_dtype must be auto, f32 or bf16; got 'f16'" <<<"$out" || fail "--kv_dtype message: $out"
# A bf16 KV cache on cuda is accepted: without a GPU the run fails for the
# missing device, with one it runs on a bf16 cache.
if out=$(timeout 120 "$BIN" --model "$MODEL" --prompt_ids 504,3575,282,4649,314 --max_tokens 2 --backend cuda --kv_dtype bf16 2>&1); then
  grep -q "^kv cache: BF16, 23040 bytes per token" <<<"$out" || fail "cuda bf16 KV bytes per token: $out"
else
  grep -q "no CUDA device is visible" <<<"$out" || fail "cuda bf16 KV failed for another reason than a missing GPU: $out"
fi

out=$(timeout 10 "$BIN" --help 2>&1) || fail "--help exit code"
grep -q -- "--max_tokens (default: 32)" <<<"$out" || fail "--help lists no --max_tokens: $out"
grep -q -- "--flagfile" <<<"$out" && fail "--help lists absl's own flags"

out=$(timeout 10 "$BIN" --bogus 1 2>&1); [ $? -eq 2 ] || fail "bad flag exit code"
echo PASS
