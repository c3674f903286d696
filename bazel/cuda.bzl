"""CUDA sources → a cc_library, compiled by nvcc on every build (GPU or not).

Usage:
    cuda_library(
        name = "gemm_cuda",
        srcs = ["gemm.cu"],
        hdrs = ["gemm.h"],              # plain C++ headers callers include
        cuda_hdrs = ["gemm_tile.cuh"],  # device-side headers the .cu files include
        deps = ["//kernels:ops"],       # their headers are visible to nvcc
    )
Each .cu becomes one object with SASS for sm_80 and sm_90a plus PTX for
compute_90a, so a Hopper or Ampere part runs it without JIT.
"""

CUDA_ARCH_FLAGS = [
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_90a,code=compute_90a",
]

NVCC_FLAGS = [
    "-std=c++20",
    "-O3",
    "--expt-relaxed-constexpr",
    "-Xcompiler=-fPIC",
    "-Xcompiler=-Wall",
    "-Werror=all-warnings",
    "-lineinfo",
]

def cuda_library(name, srcs, hdrs = [], cuda_hdrs = [], deps = [], header_srcs = [], visibility = None, extra_nvcc_flags = []):
    objs = []
    for src in srcs:
        obj = "_objs_cuda/%s/%s.pic.o" % (name, src[:-len(".cu")])
        native.genrule(
            name = "%s_%s_nvcc" % (name, src.replace("/", "_").replace(".", "_")),
            srcs = [src] + hdrs + cuda_hdrs + header_srcs,
            outs = [obj],
            cmd = " ".join(
                ["/usr/local/cuda/bin/nvcc", "-c", "$(location %s)" % src, "-o", "$@", "-I.", "-I$(GENDIR)"] +
                NVCC_FLAGS + CUDA_ARCH_FLAGS + extra_nvcc_flags,
            ),
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["//third_party:cuda_runtime"],
        visibility = visibility,
        alwayslink = True,
    )
