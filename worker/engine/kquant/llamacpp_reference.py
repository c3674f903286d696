#!/usr/bin/env python3
"""llama.cpp's view of a (K-quant) GGUF model for engine_kquant_llamacpp_test.cc:
the logits after each prompt and the greedy continuation with the top-two
logit gap at every step. Drives the llama.cpp built by
scripts/setup.d/llamacpp.sh through the llama-cpp-python sdist's ctypes
bindings (nothing of ours involved).

usage: llamacpp_reference.py MODEL.gguf N_TOKENS THREADS LOGITS_OUT.f32 < prompts.txt > out.json
  (one prompt per line, newlines written as \\n; JSON: [{"ids", "tokens", "gaps"}];
   LOGITS_OUT: the prompt-end logits of every prompt, little-endian f32, n_vocab each)
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
    model, n_tokens, threads, logits_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        sys.argv[4]
    llm = Llama(model_path=model, n_ctx=512, n_batch=512, n_threads=threads,
                n_threads_batch=threads, logits_all=False, verbose=False, seed=0)
    n_vocab = llm.n_vocab()
    results, prompt_logits = [], []
    for line in sys.stdin:
        prompt = line.rstrip("\n").replace("\\n", "\n")
        if not prompt:
            continue
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        tokens, gaps = [], []
        for step in range(n_tokens):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float32)
            if step == 0:
                prompt_logits.append(logits.copy())
            order = np.argsort(-logits.astype(np.float64), kind="stable")
            tok = int(order[0])
            tokens.append(tok)
            gaps.append(float(logits[order[0]]) - float(logits[order[1]]))
            llm.eval([tok])
        results.append({"ids": [int(i) for i in ids], "tokens": tokens, "gaps": gaps})
    np.concatenate(prompt_logits).astype("<f4").tofile(logits_out)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
