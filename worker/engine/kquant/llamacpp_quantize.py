#!/usr/bin/env python3
"""Quantizes a GGUF model with llama.cpp's own quantizer (llama_model_quantize,
the code behind llama-quantize), so tests get K-quant files made by an
implementation nobody here wrote. Uses the llama.cpp built by
scripts/setup.d/llamacpp.sh through the llama-cpp-python sdist's ctypes
bindings.

usage: llamacpp_quantize.py IN.gguf OUT.gguf FTYPE [THREADS]
  FTYPE: a llama.cpp file type name: Q4_K_M, Q5_K_M, Q6_K, Q3_K_M, Q2_K, Q4_K_S, ...
  LLAMACPP_ALLOW_REQUANTIZE=1 in the environment lets the input be quantized
  already (e.g. the default Q4_1 model -> Q4_K_M, for load-time measurements).
"""
import os
import sys

root = os.environ.get("TPSERVE_ROOT", ".")
deps = os.path.join(root, ".deps")
sys.path.insert(0, os.path.join(deps, "llama_cpp_python-0.3.2"))
os.environ.setdefault("LLAMA_CPP_LIB_PATH", os.path.join(deps, "llama.cpp-build", "bin"))

import ctypes  # noqa: E402

import llama_cpp  # noqa: E402


def main():
    src, dst, ftype = sys.argv[1], sys.argv[2], sys.argv[3]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    code = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + ftype, None)
    if code is None:
        sys.exit(f"unknown llama.cpp file type {ftype}")
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = code
    params.nthread = threads
    params.allow_requantize = os.environ.get("LLAMACPP_ALLOW_REQUANTIZE") == "1"
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc}) for {src} -> {dst} ({ftype})")
    print(f"quantized {src} -> {dst} ({ftype})")


if __name__ == "__main__":
    main()
