#!/usr/bin/env python3
"""Writes the small seed corpus for the model-format fuzzers.

GGUF seeds are written with the gguf package's own writer (an implementation
tpserve did not write), so the corpus also pins compatibility with it.

    .venv/bin/python3 fuzz/model/make_seeds.py fuzz/model/corpus
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants


def tiny_llama(path, wtype, arch="llama", bias=False, tied=True, extras=False):
    rng = np.random.default_rng(7)
    hidden, heads, kv, ffn, vocab, hd = 32, 2, 1, 32, 8, 16
    w = gguf.GGUFWriter(path, arch)
    a = arch + "."
    w.add_uint32(a + "context_length", 64)
    w.add_uint32(a + "embedding_length", hidden)
    w.add_uint32(a + "block_count", 1)
    w.add_uint32(a + "feed_forward_length", ffn)
    w.add_uint32(a + "attention.head_count", heads)
    w.add_uint32(a + "attention.head_count_kv", kv)
    w.add_float32(a + "rope.freq_base", 10000.0)
    w.add_float32(a + "attention.layer_norm_rms_epsilon", 1e-5)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab", " ", "c"])
    w.add_array("tokenizer.ggml.token_type", [3, 3, 3, 1, 1, 1, 1, 1])
    w.add_array("tokenizer.ggml.merges", ["a b"])
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_string("tokenizer.chat_template", "{{ messages }}")
    if extras:  # one of every value type
        w.add_uint8("x.u8", 200)
        w.add_int8("x.i8", -5)
        w.add_uint16("x.u16", 60000)
        w.add_int16("x.i16", -300)
        w.add_int32("x.i32", -70000)
        w.add_uint64("x.u64", 1 << 40)
        w.add_int64("x.i64", -(1 << 40))
        w.add_float64("x.f64", 2.5)
        w.add_bool("x.bool", True)
        w.add_array("x.floats", [1.5, -2.0])
        w.add_array("x.nested", [[1, 2], [3]])

    def tensor(name, shape, t):
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        if t == Q.F32:
            w.add_tensor(name, x)
        elif t == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            q = quants.quantize(x, t)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=t)

    tensor("token_embd.weight", (vocab, hidden), wtype)
    b = "blk.0."
    tensor(b + "attn_norm.weight", (hidden,), Q.F32)
    tensor(b + "attn_q.weight", (heads * hd, hidden), wtype)
    tensor(b + "attn_k.weight", (kv * hd, hidden), wtype)
    tensor(b + "attn_v.weight", (kv * hd, hidden), wtype)
    if bias:
        tensor(b + "attn_q.bias", (heads * hd,), Q.F32)
        tensor(b + "attn_k.bias", (kv * hd,), Q.F32)
        tensor(b + "attn_v.bias", (kv * hd,), Q.F32)
    tensor(b + "attn_output.weight", (hidden, heads * hd), wtype)
    tensor(b + "ffn_norm.weight", (hidden,), Q.F32)
    tensor(b + "ffn_gate.weight", (ffn, hidden), wtype)
    tensor(b + "ffn_up.weight", (ffn, hidden), wtype)
    tensor(b + "ffn_down.weight", (hidden, ffn), wtype)
    tensor("output_norm.weight", (hidden,), Q.F32)
    if not tied:
        tensor("output.weight", (vocab, hidden), wtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr, dt in tensors:
        raw = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main(out):
    g = os.path.join(out, "gguf")
    s = os.path.join(out, "safetensors")
    os.makedirs(g, exist_ok=True)
    os.makedirs(s, exist_ok=True)
    tiny_llama(os.path.join(g, "llama_q4_1.gguf"), Q.Q4_1, extras=True)
    tiny_llama(os.path.join(g, "llama_q8_0_untied.gguf"), Q.Q8_0, tied=False)
    tiny_llama(os.path.join(g, "qwen2_q4_0_bias.gguf"), Q.Q4_0, arch="qwen2", bias=True)
    tiny_llama(os.path.join(g, "llama_f16.gguf"), Q.F16)
    # Read by conversion to Q8_0 (worker/model/ggml_convert.h).
    tiny_llama(os.path.join(g, "llama_q5_0.gguf"), Q.Q5_0)
    rng = np.random.default_rng(3)
    f32 = rng.uniform(-1, 1, (4, 8)).astype(np.float32)
    safetensors(os.path.join(s, "mixed.safetensors"), [
        ("model.norm.weight", f32[0], "F32"),
        ("model.layers.0.self_attn.q_proj.weight", f32.astype(np.float16), "F16"),
        ("model.embed_tokens.weight", (f32.view(np.uint32) >> 16).astype(np.uint16), "BF16"),
        ("position_ids", np.arange(4, dtype=np.int64), "I64"),
    ], metadata={"format": "pt"})
    safetensors(os.path.join(s, "empty.safetensors"), [])


if __name__ == "__main__":
    main(sys.argv[1])
