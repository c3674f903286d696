#!/usr/bin/env python3
"""Checks tpserve's reads of K-quant tensors (converted to Q8_0) against the
gguf package: for model_source_kquant_test.cc.

usage: kquant_read_check.py MANIFEST.json
  MANIFEST: {"gguf": PATH, "tensors": [{"name", "rows": [B, N] | null,
             "cols": [B, N] | null, "dump": PATH}]}
  Each dump holds our HostTensor bytes (Q8_0) for rows [B, B + N) or columns
  [B, B + N) of the tensor (whole when both are null). Expected: the bytes of
  gguf.quants.quantize(Q8_0) of the same slice of gguf.quants.dequantize of
  the file's tensor. Exits non-zero on any mismatch.
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, quants


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    reader = GGUFReader(manifest["gguf"])
    tensors = {t.name: t for t in reader.tensors}
    failures = 0
    for e in manifest["tensors"]:
        t = tensors[e["name"]]
        cols = int(t.shape[0])
        x = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape((-1, cols))
        if e["rows"]:
            b, n = e["rows"]
            x = x[b:b + n]
        if e["cols"]:
            b, n = e["cols"]
            x = x[:, b:b + n]
        want = quants.quantize(np.ascontiguousarray(x, dtype=np.float32),
                               GGMLQuantizationType.Q8_0).astype(np.uint8).reshape(-1)
        ours = np.fromfile(e["dump"], dtype=np.uint8)
        what = f"{e['name']} ({t.tensor_type.name}) rows={e['rows']} cols={e['cols']}"
        if ours.shape != want.shape or not np.array_equal(ours, want):
            bad = int(np.sum(ours != want)) if ours.shape == want.shape else -1
            print(f"FAIL: {what}: {bad} bytes differ (sizes {ours.size} vs {want.size})")
            failures += 1
        else:
            print(f"ok: {what}: {ours.size} bytes")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
