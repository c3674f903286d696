#!/usr/bin/env python3
"""Checks tpserve's GGUF reading against the gguf package (an independent reader).

Input: a manifest written by reference_test.cc:
  {"models": [{"gguf": PATH, "config": {...tpserve's ModelConfig...},
               "tensors": [{"name", "dtype", "shape", "dump", "rows": [b, n] | null,
                            "cols": [b, n] | null}]}],
   "quant": [{"type": "Q8_0", "cols": N, "input": F32_PATH, "ours": BYTES_PATH}]}
Checks: every dumped tensor (or slice) equals gguf's dequantization —
bit-exact for F32/F16, within 1e-6 for Q8_0/Q4_0/Q4_1; the config matches the
metadata; our quantizers produce the same bytes as gguf.quants.
Exits non-zero on any mismatch.
"""
import json
import sys

import numpy as np
import gguf
from gguf import quants

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode()
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        return len(f.data)
    return f.parts[-1][0].item()


def check_config(r, c, path):
    arch = field(r, "general.architecture")
    heads = field(r, arch + ".attention.head_count")
    hidden = field(r, arch + ".embedding_length")
    names = {t.name for t in r.tensors}
    want = {
        "architecture": arch,
        "hidden_size": hidden,
        "num_layers": field(r, arch + ".block_count"),
        "num_heads": heads,
        "num_kv_heads": field(r, arch + ".attention.head_count_kv") or heads,
        "head_dim": field(r, arch + ".attention.key_length") or hidden // heads,
        "ffn_size": field(r, arch + ".feed_forward_length"),
        "vocab_size": field(r, arch + ".vocab_size") or field(r, "tokenizer.ggml.tokens"),
        "context_length": field(r, arch + ".context_length"),
        "bos_id": field(r, "tokenizer.ggml.bos_token_id"),
        "eos_id": field(r, "tokenizer.ggml.eos_token_id"),
        "pad_id": field(r, "tokenizer.ggml.padding_token_id"),
        "tie_embeddings": "output.weight" not in names,
        "qkv_bias": "blk.0.attn_q.bias" in names,
        "rope_neox": arch == "qwen2",
    }
    for k, v in want.items():
        if v is not None and c[k] != v:
            fail(f"{path}: config {k} = {c[k]!r}, metadata says {v!r}")
    for k, key in (("rms_norm_eps", ".attention.layer_norm_rms_epsilon"), ("rope_theta", ".rope.freq_base")):
        v = field(r, arch + key)
        if v is not None and np.float32(c[k]) != np.float32(v):
            fail(f"{path}: config {k} = {c[k]}, metadata says {v}")
    if c["eos_id"] not in c["stop_ids"]:
        fail(f"{path}: eos {c['eos_id']} missing from stop_ids {c['stop_ids']}")


def check_tensors(r, entries, path):
    by_name = {t.name: t for t in r.tensors}
    worst = {}
    for e in entries:
        t = by_name[e["name"]]
        if t.tensor_type.name != e["dtype"]:
            fail(f"{path}: {e['name']} type {e['dtype']}, gguf says {t.tensor_type.name}")
            continue
        full = quants.dequantize(t.data, t.tensor_type).reshape(e["shape"]).astype(np.float32)
        if list(reversed([int(x) for x in t.shape])) != e["shape"]:
            fail(f"{path}: {e['name']} shape {e['shape']}, gguf says {t.shape.tolist()}")
        ref = full
        if e.get("rows"):
            b, n = e["rows"]
            ref = ref[b:b + n]
        if e.get("cols"):
            b, n = e["cols"]
            ref = ref[:, b:b + n]
        ours = np.fromfile(e["dump"], dtype=np.float32).reshape(ref.shape)
        if e["dtype"] in ("F32", "F16", "BF16"):
            if not np.array_equal(ours.view(np.uint32), np.ascontiguousarray(ref).view(np.uint32)):
                fail(f"{path}: {e['name']} ({e['dtype']}) is not bit-exact")
        else:
            diff = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
            worst[e["dtype"]] = max(worst.get(e["dtype"], 0.0), diff)
            if not diff <= 1e-6:
                fail(f"{path}: {e['name']} ({e['dtype']}) max abs diff {diff}")
    print(f"{path}: {len(entries)} tensors/slices checked; max abs diff by type: {worst or 'n/a (exact types)'}")


def check_quant(q):
    qt = gguf.GGMLQuantizationType[q["type"]]
    x = np.fromfile(q["input"], dtype=np.float32).reshape(-1, q["cols"])
    ref = quants.quantize(x, qt).tobytes()
    ours = open(q["ours"], "rb").read()
    if ref != ours:
        bs = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}.get(q["type"], 2)
        bad = sum(1 for i in range(0, len(ref), bs) if ref[i:i + bs] != ours[i:i + bs])
        fail(f"quantizer {q['type']}: {bad} of {len(ref) // bs} blocks differ from gguf.quants")
    else:
        print(f"quantizer {q['type']}: {x.size} values bit-identical to gguf.quants")


def main():
    m = json.load(open(sys.argv[1]))
    for model in m["models"]:
        r = gguf.GGUFReader(model["gguf"])
        check_config(r, model["config"], model["gguf"])
        check_tensors(r, model["tensors"], model["gguf"])
    for q in m["quant"]:
        check_quant(q)
    print("FAILURES:", len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
