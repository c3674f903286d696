#!/usr/bin/env python3
"""Greedy continuations from llama.cpp, the independent reference for the
engine (worker/engine/engine_llamacpp_test.cc).

Drives the llama.cpp built by scripts/setup.d/llamacpp.sh through the ctypes
bindings shipped in the llama-cpp-python sdist (nothing of ours involved):
tokenizes each prompt with llama.cpp's tokenizer, then evaluates one token at
a time, taking the argmax of the logits (temperature 0 / top-k 1), and records
the gap between the top two logits at every step (to tell near-ties).

usage: llamacpp_greedy.py MODEL.gguf N_TOKENS THREADS < prompts.txt > out.json
  (one prompt per line, newlines written as \\n; JSON: [{"prompt", "ids", "tokens", "gaps"}])
"""
import json
import os
import sys

root = os.environ.get("TPSERVE_ROOT", ".")
deps = os.path.join(root, ".deps")
sys.path.insert(0, os.path.join(deps, "llama_cpp_python-0.3.2"))
os.environ.setdefault("LLAMA_CPP_LIB_PATH", os.path.join(deps, "llama.cpp-build", "bin"))

import numpy as np  # noqa: E402
from llama_cpp import Llama  # noqa: E402


def main():
    model, n_tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    llm = Llama(model_path=model, n_ctx=512, n_batch=512, n_threads=threads,
                n_threads_batch=threads, logits_all=False, verbose=False, seed=0)
    n_vocab = llm.n_vocab()
    results = []
    for line in sys.stdin:
        prompt = line.rstrip("\n").replace("\\n", "\n")
        if not prompt:
            continue
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        tokens, gaps = [], []
        for _ in range(n_tokens):
            # Logits of the last evaluated token (the only row llama.cpp keeps).
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)
            top2 = np.argpartition(-logits, 1)[:2]
            tok = int(top2[np.argmax(logits[top2])]) if logits[top2[0]] != logits[top2[1]] \
                else int(min(top2))
            tokens.append(tok)
            gaps.append(float(abs(logits[top2[0]] - logits[top2[1]])))
            llm.eval([tok])
        results.append({"prompt": prompt, "ids": [int(i) for i in ids], "tokens": tokens,
                        "gaps": gaps})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
