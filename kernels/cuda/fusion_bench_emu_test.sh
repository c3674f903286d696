#!/usr/bin/env bash
# fusion_bench on the CUDA emulator at a small shape. Every row checks its
# result (the persistent kernel's bits against the kernel-per-GEMV ones
# included) and must print ok, and the four persistent rows (all the blocks the
# emulated SM holds, one block; each without and with the L2 prefetch) must
# have run; timings mean nothing here.
set -euo pipefail
out=$("$1" --layers=2 --hidden=64 --qkv=96 --ffn=128)
echo "$out"
rows=$(grep -c '^| bench: ' <<<"$out" || true)
ok=$(grep -c '^| bench: [^|]* | ok |' <<<"$out" || true)
persistent=$(grep -c 'persistent kernel, grid barrier per GEMV ([0-9]* blocks[^)]*) | ok |' <<<"$out" || true)
if [[ $rows -ne 11 || $ok -ne 11 || $persistent -ne 4 ]]; then
  echo "fusion_bench_emu_test: expected 11 rows, all ok, 4 of them persistent kernels;" \
    "got $rows rows, $ok ok, $persistent persistent ok" >&2
  exit 1
fi
