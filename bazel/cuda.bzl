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
compute_90a, so a Hopper or Ampere part runs it without JIT, and a ptxas
report (`-Xptxas=-v`: registers, stack and spills per kernel and
architecture) in `<name>_ptxas`, which //kernels/cuda:ptxas_report_test
checks against kernels/cuda/ptxas_baseline.tsv.

Every cuda_library also gets a `<name>_emu` twin: the same .cu sources,
rewritten by //kernels/cuda/emu:rewrite_cu.py and compiled by the host
compiler against the CUDA emulator (kernels/cuda/emu/emu.h), so the kernels
run on the CPU. `cuda_deps` are dependencies that have such twins themselves.
cuda_cc_library and cuda_cc_test do the same for plain C++ that calls the
CUDA runtime: cuda_cc_test's real binary is tagged "gpu" (it skips without a
device), its `_emu` twin runs everywhere.
"""

EMU_RUNTIME = "//kernels/cuda/emu:runtime"

EMU_COPTS = [
    "-Wno-unknown-pragmas",  # #pragma unroll
    "-fno-strict-aliasing",  # register-level type punning, as CUDA code does
    # By-value TensorMap kernel parameters (alignas(128)): GCC notes a
    # decades-old ABI change for over-aligned arguments at every such call.
    "-Wno-psabi",
]

def _emu_deps(deps, cuda_deps):
    return deps + [d + "_emu" for d in cuda_deps] + [EMU_RUNTIME]

CUDA_ARCH_FLAGS = [
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_90a,code=compute_90a",
]

NVCC_FLAGS = [
    "-std=c++20",
    "-O3",
    "--expt-relaxed-constexpr",
    # Device code compressed in the fatbinary (the driver decompresses it at
    # module load; drivers for CUDA 13 all can). gemm_mma.o: 6.8 MB -> 1.2 MB;
    # the "default" and "balance" modes left it at 6.8 MB. Keeps the GPU bundle
    # (scripts/gpu_check.sh pack) under its 64 MiB limit.
    "--compress-mode=size",
    "-Xcompiler=-fPIC",
    "-Xcompiler=-Wall",
    "-Werror=all-warnings",
    "-lineinfo",
]

def cuda_library(name, srcs, hdrs = [], cuda_hdrs = [], deps = [], cuda_deps = [], header_srcs = [], visibility = None, extra_nvcc_flags = []):
    objs = []
    reports = []
    for src in srcs:
        obj = "_objs_cuda/%s/%s.pic.o" % (name, src[:-len(".cu")])
        report = "_objs_cuda/%s/%s.ptxas.txt" % (name, src[:-len(".cu")])
        native.genrule(
            name = "%s_%s_nvcc" % (name, src.replace("/", "_").replace(".", "_")),
            srcs = [src] + hdrs + cuda_hdrs + header_srcs,
            outs = [obj, report],
            # ptxas -v writes to stderr: kept as the report; shown if nvcc fails.
            cmd = " ".join(
                ["/usr/local/cuda/bin/nvcc", "-c", "$(location %s)" % src, "-o", "$(location %s)" % obj, "-I.", "-I$(GENDIR)"] +
                NVCC_FLAGS + CUDA_ARCH_FLAGS + extra_nvcc_flags +
                ["-Xptxas=-v", "2>$(location %s)" % report, "|| { cat $(location %s) >&2; exit 1; }" % report],
            ),
        )
        objs.append(obj)
        reports.append(report)
    native.filegroup(name = name + "_ptxas", srcs = reports, visibility = visibility)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + cuda_deps + ["//third_party:cuda_runtime"],
        visibility = visibility,
        alwayslink = True,
    )

    emu_srcs = []
    for src in srcs:
        out = "_emu_src/%s/%s.cc" % (name, src[:-len(".cu")])
        native.genrule(
            name = "%s_%s_emu_rewrite" % (name, src.replace("/", "_").replace(".", "_")),
            srcs = [src],
            outs = [out],
            tools = ["//kernels/cuda/emu:rewrite_cu.py"],
            cmd = "python3 $(location //kernels/cuda/emu:rewrite_cu.py) $(location %s) $@" % src,
        )
        emu_srcs.append(out)
    native.cc_library(
        name = name + "_emu",
        srcs = emu_srcs + [h for h in header_srcs if h.endswith(".h")],
        hdrs = hdrs,
        textual_hdrs = cuda_hdrs,
        copts = EMU_COPTS,
        deps = _emu_deps(deps, cuda_deps),
        visibility = visibility,
        alwayslink = True,
    )

def cuda_cc_library(name, srcs = [], deps = [], cuda_deps = [], gpu_deps = [], emu_srcs = None, emu_deps = [], **kwargs):
    """A cc_library using the CUDA runtime, plus its `_emu` twin.

    `gpu_deps` (NCCL, say) link into the GPU library only; `emu_srcs`, when
    given, replace `srcs` in the twin (an implementation for emulator builds),
    with `emu_deps` as its extra dependencies.
    """
    native.cc_library(name = name, srcs = srcs, deps = deps + cuda_deps + gpu_deps + ["//third_party:cuda_runtime"], **kwargs)
    native.cc_library(
        name = name + "_emu",
        srcs = srcs if emu_srcs == None else emu_srcs,
        deps = _emu_deps(deps + emu_deps, cuda_deps),
        copts = EMU_COPTS,
        **kwargs
    )

def cuda_cc_binary(name, deps = [], cuda_deps = [], tags = [], gpu_bench = True, **kwargs):
    """A binary using CUDA plus its `_emu` twin. `gpu_bench`: tag the real one
    "gpu", so scripts/gpu_check.sh packs and runs it as a benchmark."""
    native.cc_binary(name = name, deps = deps + cuda_deps + ["//third_party:cuda_runtime"], tags = tags + (["gpu"] if gpu_bench else []), **kwargs)
    native.cc_binary(name = name + "_emu", deps = _emu_deps(deps, cuda_deps), copts = EMU_COPTS, tags = tags + ["cuda_emu"], **kwargs)

def cuda_cc_test(name, deps = [], cuda_deps = [], gpu_deps = [], tags = [], emu_env = {}, emu_timeout = "moderate", gpu = True, **kwargs):
    """A GPU test (tagged "gpu") plus its `_emu` twin run on the CUDA emulator.

    `gpu_deps` (NCCL, say) link into the GPU test only; its source keeps the
    code using them under `#if !defined(TPSERVE_CUDA_EMU)`. `emu_env` is the
    twin's environment (TPSERVE_CUDA_EMU_DEVICES, say); `emu_timeout` its
    Bazel timeout. `gpu = False`: the `_emu` twin only (an emulator
    configuration of a test another target already runs on GPUs).
    """
    if gpu:
        native.cc_test(name = name, deps = deps + cuda_deps + gpu_deps + ["//third_party:cuda_runtime"], tags = tags + ["gpu"], **kwargs)
    # The emulator runs kernels on one CPU core, several times slower than the
    # CPU twins they are compared with: give the twin a longer timeout.
    native.cc_test(
        name = name + "_emu",
        deps = _emu_deps(deps, cuda_deps),
        copts = EMU_COPTS,
        tags = tags + ["cuda_emu"],
        timeout = emu_timeout,
        env = emu_env,
        **kwargs
    )
