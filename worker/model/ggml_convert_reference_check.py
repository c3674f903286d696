#!/usr/bin/env python3
"""Reference dequantization of the types tpserve converts to Q8_0 (Q5_0,
Q5_1, K-quants) from the gguf package (an independent implementation), for
worker/model/ggml_convert_reference_test.cc.

usage: ggml_convert_reference_check.py MANIFEST.json
  MANIFEST: [{"type": "Q4_K", "blocks": PATH, "rows": R, "cols": C,
              "col_begin": B, "col_count": N, "f32": OUT_PATH, "q8_0": OUT_PATH}]
  For each entry reads R rows of C values of packed `type` blocks from
  `blocks`, writes gguf.quants.dequantize of them as little-endian f32 to
  `f32`, and gguf.quants.quantize(Q8_0) of columns [B, B + N) of every row to
  `q8_0`. The C++ test compares its own results with these files.
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    for e in manifest:
        qtype = GGMLQuantizationType[e["type"]]
        rows, cols = e["rows"], e["cols"]
        raw = np.fromfile(e["blocks"], dtype=np.uint8).reshape((rows, -1))
        with np.errstate(all="ignore"):
            x = quants.dequantize(raw, qtype).astype(np.float32)
        assert x.shape == (rows, cols), (x.shape, rows, cols)
        x.astype("<f4").tofile(e["f32"])
        b, n = e["col_begin"], e["col_count"]
        q = quants.quantize(np.ascontiguousarray(x[:, b:b + n]), GGMLQuantizationType.Q8_0)
        q.astype(np.uint8).tofile(e["q8_0"])
        print(f"{e['type']}: {rows} x {cols} dequantized, columns [{b}, +{n}) quantized to Q8_0")


if __name__ == "__main__":
    main()
