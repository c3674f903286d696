#!/usr/bin/env python3
"""Greedy continuations from an exact float64 evaluation of a Llama GGUF, the
reference both our engine and llama.cpp approximate
(worker/engine/engine_llamacpp_test.cc).

The weights are dequantized by the `gguf` package (exact in float64), and every
activation and sum is float64: no 8-bit activation rounding, no float32
accumulation. Llama as llama.cpp's "llama" architecture evaluates it: RMSNorm,
RoPE on adjacent pairs (x[2i], x[2i+1]) at theta^(-2i/d), GQA attention,
SwiGLU FFN, tied or untied LM head. Prompts come as token ids (llama.cpp's
tokenization, from llamacpp_greedy.py's output), one JSON list per line.

usage: f64_greedy.py MODEL.gguf N_TOKENS < ids.jsonl > out.json
  (JSON: [{"tokens": [...], "gaps": [...]}], gaps = top-2 logit gap per step)
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key):
    f = reader.fields[key]
    return f.parts[f.data[0]][0]


class Model:
    def __init__(self, path):
        r = GGUFReader(path)
        self.layers = int(field(r, "llama.block_count"))
        self.heads = int(field(r, "llama.attention.head_count"))
        self.kv_heads = int(field(r, "llama.attention.head_count_kv"))
        self.hidden = int(field(r, "llama.embedding_length"))
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.theta = float(field(r, "llama.rope.freq_base"))
        self.hd = self.hidden // self.heads
        self.w = {}
        for t in r.tensors:
            rows = int(t.shape[-1]) if len(t.shape) > 1 else 1
            v = dequantize(t.data, t.tensor_type).astype(np.float64)
            self.w[t.name] = v.reshape(rows, -1) if len(t.shape) > 1 else v.reshape(-1)
        self.head = self.w.get("output.weight", self.w["token_embd.weight"])
        half = np.arange(self.hd // 2, dtype=np.float64)
        self.inv_freq = self.theta ** (-2.0 * half / self.hd)

    def norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):  # x (T, heads, hd), pairs (2i, 2i + 1)
        ang = np.outer(pos, self.inv_freq)[:, None, :]
        c, s = np.cos(ang), np.sin(ang)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
        return out

    def forward(self, ids, cache):
        """Logits of the last of `ids`, appending their K/V to `cache`."""
        start = len(cache[0][0]) if cache[0][0] is not None else 0
        pos = np.arange(start, start + len(ids), dtype=np.float64)
        x = self.w["token_embd.weight"][ids]
        g = self.heads // self.kv_heads
        for l in range(self.layers):
            p = f"blk.{l}."
            h = self.norm(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(len(ids), self.heads, self.hd)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(len(ids), self.kv_heads, self.hd)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(len(ids), self.kv_heads, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            kc, vc = cache[l]
            kc = k if kc is None else np.concatenate([kc, k])
            vc = v if vc is None else np.concatenate([vc, v])
            cache[l] = (kc, vc)
            out = np.empty_like(q)
            n = len(kc)
            for hh in range(self.heads):
                s = (kc[:, hh // g, :] @ q[:, hh, :].T).T / np.sqrt(self.hd)  # (T, n)
                s = np.where(np.arange(n)[None, :] <= pos[:, None], s, -np.inf)
                s = np.exp(s - s.max(axis=1, keepdims=True))
                out[:, hh, :] = (s / s.sum(axis=1, keepdims=True)) @ vc[:, hh // g, :]
            x = x + out.reshape(len(ids), -1) @ self.w[p + "attn_output.weight"].T
            h = self.norm(x, self.w[p + "ffn_norm.weight"])
            gate = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ self.w[p + "ffn_down.weight"].T
        return self.norm(x[-1], self.w["output_norm.weight"]) @ self.head.T


def main():
    model_path, n_tokens = sys.argv[1], int(sys.argv[2])
    m = Model(model_path)
    results = []
    for line in sys.stdin:
        if not line.strip():
            continue
        ids = json.loads(line)
        cache = [(None, None)] * m.layers
        logits = m.forward(np.array(ids), cache)
        tokens, gaps = [], []
        for _ in range(n_tokens):
            order = np.argsort(-logits, kind="stable")
            tokens.append(int(order[0]))
            gaps.append(float(logits[order[0]] - logits[order[1]]))
            logits = m.forward(np.array([order[0]]), cache)
        results.append({"tokens": tokens, "gaps": gaps})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
