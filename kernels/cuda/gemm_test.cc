// Parity of cuda::Gemm (skinny GEMM, fused dequantisation) with its CPU twin
// on randomised shapes for every weight type.
//
// Tolerances (NMSE = sum (a - b)^2 / sum b^2, ggml's normalised error):
//   decode paths (m <= kSkinnyGemmMaxRows), vs an f64 reference on the
//     dequantised weights: 1e-9. The skinny kernel does f32 math on f32
//     activations (f32 rounding alone is ~1e-13); the tensor-core decode
//     kernel (2 <= m, Q8_0/Q4_0/Q4_1/BF16) takes exact weight values and x as
//     two bf16 parts (~2^-17 relative; scaling Q4_1's m by 1 + 1e-4 alone
//     gives ~3e-9);
//   tensor-core path (larger m), same reference: 5e-5 (x and w are rounded to
//     bf16, relative error 2^-9 each, expected NMSE ~3e-6);
//   vs cpu::Gemm: 2e-4 for quantized weights (the CPU twin rounds
//     activations to 8 bits, ~1e-5, see kernels/cpu/gemm_test.cc), otherwise
//     the path's own tolerance.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"

#if defined(TPSERVE_CUDA_EMU)
#include "kernels/cuda/emu/emu.h"  // GridsRun
#endif

namespace tpserve::kernels::cuda {
namespace {

using cpu::Nmse;
using cpu::Rng;

constexpr double kExactNmse = 1e-9;
constexpr double kTensorCoreNmse = 5e-5;
constexpr double kQuantizedTwinNmse = 2e-4;

struct Shape {
  int m, n, k;
  bool strided, bias;
};

// tensor_core: GemmTensorCore instead of Gemm (the tensor-core path at any m).
void CheckGemm(Rng& rng, DType dtype, const Shape& s, bool tensor_core = false) {
  SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " m=" << s.m << " n=" << s.n << " k="
                                  << s.k << (s.strided ? " strided" : "") << (s.bias ? " bias" : "")
                                  << (tensor_core ? " tensor-core path" : ""));
  const int64_t xs = s.strided ? s.k + 5 : s.k;
  const int64_t ys = s.strided ? s.n + 3 : s.n;
  const std::vector<float> x = rng.Floats(static_cast<size_t>(s.m) * xs);
  const std::vector<uint8_t> w = cpu::RandomRows(rng, dtype, s.n, s.k);
  const std::vector<float> bias = s.bias ? rng.Floats(s.n) : std::vector<float>();

  GemmParams p;
  p.w_dtype = dtype;
  p.m = s.m;
  p.n = s.n;
  p.k = s.k;
  p.x_stride = s.strided ? xs : 0;
  p.y_stride = s.strided ? ys : 0;

  // CPU twin.
  std::vector<float> cpu_y(static_cast<size_t>(s.m) * ys, 0.0f);
  p.x = x.data();
  p.w = w.data();
  p.bias = s.bias ? bias.data() : nullptr;
  p.y = cpu_y.data();
  ASSERT_TRUE(cpu::Gemm(p, Stream{}).ok());

  // CUDA.
  DeviceBuffer<float> dx = ToDevice(x);
  DeviceBuffer<uint8_t> dw = ToDeviceWeight(dtype, s.n, s.k, w);
  DeviceBuffer<float> db = ToDevice(bias);
  DeviceBuffer<float> dy = DeviceZeros<float>(cpu_y.size());
  p.x = dx.data();
  p.w = dw.data();
  p.bias = s.bias ? db.data() : nullptr;
  p.y = dy.data();
  ASSERT_TRUE((tensor_core ? GemmTensorCore(p, Stream{}) : Gemm(p, Stream{})).ok());
  const std::vector<float> got = ToHostVector(dy);

  // f64 reference on the dequantised weights.
  const std::vector<float> wf = cpu::DequantizeRows(dtype, w.data(), s.n, s.k);
  std::vector<double> exact(cpu_y.size(), 0.0);
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      double acc = s.bias ? bias[j] : 0.0;
      for (int kk = 0; kk < s.k; ++kk)
        acc += static_cast<double>(x[i * xs + kk]) * wf[static_cast<size_t>(j) * s.k + kk];
      exact[i * ys + j] = acc;
    }
  }
  const double path_tol = tensor_core || s.m > kSkinnyGemmMaxRows ? kTensorCoreNmse : kExactNmse;
  EXPECT_LT(Nmse(got, exact), path_tol);
  EXPECT_LT(Nmse(got, cpu_y), IsQuantized(dtype) ? kQuantizedTwinNmse : path_tol);
}

class CudaGemmParity : public testing::TestWithParam<DType> {};

TEST_P(CudaGemmParity, RandomShapes) {
  TPS_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  Rng rng(1234 + static_cast<int>(dtype));
  // Decode batch sizes around the 1 / 8-row pass boundaries, then prefill
  // sizes around the 128 x 128 tensor-core tiles.
  for (int m : {1, 2, 7, 8, 9, 16, 17, 33, 64, 65, 128, 130, 300}) {
    const int n = rng.Int(1, 300);
    const int k = IsQuantized(dtype) ? 32 * rng.Int(1, 24) : rng.Int(1, 700);
    CheckGemm(rng, dtype, {m, n, k, /*strided=*/m % 2 == 1, /*bias=*/m % 3 == 0});
  }
  // 16-byte-aligned rows (the vectorised loads) at both pass widths, with
  // partial 8-row passes.
  CheckGemm(rng, dtype, {8, 200, 512, false, true});
  CheckGemm(rng, dtype, {33, 100, 1024, false, false});
  CheckGemm(rng, dtype, {64, 70, 256, false, false});
  // k over the skinny GEMM's x tiles (2048 columns at m = 1, 1024 above):
  // one to three tiles, the last partial (strided rows take the scalar
  // staging path).
  CheckGemm(rng, dtype, {1, 96, 1536, false, false});
  CheckGemm(rng, dtype, {1, 70, 4160, false, true});
  CheckGemm(rng, dtype, {1, 33, 2080, true, false});
  CheckGemm(rng, dtype, {9, 40, 2080, true, true});
  // SmolLM2 shapes: q/o projection and the LM head slice.
  CheckGemm(rng, dtype, {1, 576, 576, false, false});
  CheckGemm(rng, dtype, {4, 1536, 576, false, true});
  CheckGemm(rng, dtype, {512, 1536, 576, false, false});
}

// The tensor-core decode kernel (gemm_mma.cu) over several runs of its
// warps' k blocks (70 blocks: 3 runs of 8 warps x 4 blocks, the last
// partial), and a row's bits do not depend on the batch around it: CUDA
// graphs pad decode batches to buckets, and eager launches do not.
TEST_P(CudaGemmParity, DecodeBatchRowsDoNotDependOnM) {
  TPS_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  Rng rng(555 + static_cast<int>(dtype));
  constexpr int kK = 32 * 70;
  CheckGemm(rng, dtype, {16, 45, kK, false, true});
  CheckGemm(rng, dtype, {40, 21, kK, true, false});
  const int n = 37;
  const std::vector<float> x = rng.Floats(size_t{64} * kK);
  DeviceBuffer<float> dx = ToDevice(x);
  DeviceBuffer<uint8_t> dw = ToDeviceWeight(dtype, n, kK, cpu::RandomRows(rng, dtype, n, kK));
  std::vector<float> full;
  for (int m : {64, 2, 5, 9, 17, 33}) {
    SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " m=" << m);
    DeviceBuffer<float> dy = DeviceZeros<float>(static_cast<size_t>(m) * n);
    ASSERT_TRUE(Gemm({.x = dx.data(),
                      .w = dw.data(),
                      .w_dtype = dtype,
                      .y = dy.data(),
                      .m = m,
                      .n = n,
                      .k = kK},
                     Stream{})
                    .ok());
    const std::vector<float> got = ToHostVector(dy);
    if (full.empty()) {
      full = got;
      continue;
    }
    EXPECT_EQ(got, std::vector<float>(full.begin(), full.begin() + got.size()));
  }
}

// GemmFused at m = 1 writes the bits of the launches it replaces: RmsNorm
// then Gemm / GemmSwiglu (`norm`), Gemm then Add (`add_to_y`). k = 701 and
// 1001 (plain types): rows not 16-byte aligned, the scalar staging path.
// k <= 2048: the row fits one tile and x is read once (StageNormedRow);
// 2048 fills it (every thread stages two 16-byte groups).
TEST_P(CudaGemmParity, FusedNormAndResidualGiveTheUnfusedBits) {
  TPS_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  Rng rng(321 + static_cast<int>(dtype));
  for (int k : {IsQuantized(dtype) ? 2080 : 701, 4160, IsQuantized(dtype) ? 96 : 1001, 2048}) {
    const int n = rng.Int(1, 150) * 2;
    SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " n=" << n << " k=" << k);
    DeviceBuffer<float> x = ToDevice(rng.Floats(k));
    DeviceBuffer<float> norm = ToDevice(rng.Floats(k));
    DeviceBuffer<uint8_t> w = ToDeviceWeight(dtype, n, k, cpu::RandomRows(rng, dtype, n, k));
    DeviceBuffer<float> bias = ToDevice(rng.Floats(n));
    const std::vector<float> y0 = rng.Floats(n);
    DeviceBuffer<float> h = DeviceZeros<float>(k);
    ASSERT_TRUE(RmsNorm({.x = x.data(),
                         .weight = norm.data(),
                         .y = h.data(),
                         .rows = 1,
                         .dim = k,
                         .eps = 1e-5f},
                        Stream{})
                    .ok());
    for (bool swiglu : {false, true}) {
      SCOPED_TRACE(swiglu ? "swiglu" : "gemm");
      const int cols = swiglu ? n / 2 : n;
      DeviceBuffer<float> want = DeviceZeros<float>(cols), got = DeviceZeros<float>(cols);
      GemmParams p{.x = h.data(),
                   .w = w.data(),
                   .w_dtype = dtype,
                   .bias = bias.data(),
                   .y = want.data(),
                   .m = 1,
                   .n = n,
                   .k = k};
      ASSERT_TRUE((swiglu ? GemmSwiglu(p, Stream{}) : Gemm(p, Stream{})).ok());
      p.x = x.data();
      p.y = got.data();
      ASSERT_TRUE(GemmFused(p, {.norm = norm.data(), .eps = 1e-5f}, swiglu, Stream{}).ok());
      EXPECT_EQ(ToHostVector(got), ToHostVector(want));
    }
    // y += x w^T + b against Gemm into proj, then Add.
    DeviceBuffer<float> proj = DeviceZeros<float>(n), want = ToDevice(y0), got = ToDevice(y0);
    GemmParams p{.x = x.data(),
                 .w = w.data(),
                 .w_dtype = dtype,
                 .bias = bias.data(),
                 .y = proj.data(),
                 .m = 1,
                 .n = n,
                 .k = k};
    ASSERT_TRUE(Gemm(p, Stream{}).ok());
    ASSERT_TRUE(Add({.a = want.data(), .b = proj.data(), .y = want.data(), .n = n}, Stream{}).ok());
    p.y = got.data();
    ASSERT_TRUE(GemmFused(p, {.add_to_y = true}, /*swiglu=*/false, Stream{}).ok());
    EXPECT_EQ(ToHostVector(got), ToHostVector(want));
  }
  GemmParams two{.m = 2, .n = 2, .k = 32};
  EXPECT_EQ(GemmFused(two, {.add_to_y = true}, false, Stream{}).code(),
            absl::StatusCode::kInvalidArgument);
  GemmParams one{.m = 1, .n = 2, .k = 32};
  EXPECT_EQ(GemmFused(one, {}, false, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

// Programmatic dependent launch (launch.cuh): a decode-path GEMM launched
// programmatically right after the kernel that writes its x (here Add, x =
// src + 0) gives a plain launch's bits. Under the emulator the GEMM's first
// blocks run up to their wait before Add has run (x still zero), so a read
// of x (or y) before the wait shows here; on a GPU of compute capability 9.0
// the two kernels overlap for real.
TEST_P(CudaGemmParity, ProgrammaticLaunchesWaitForTheKernelThatWritesX) {
  TPS_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  Rng rng(77 + static_cast<int>(dtype));
  const int k = IsQuantized(dtype) ? 2048 : 1000, n = 96;
  DeviceBuffer<uint8_t> w = ToDeviceWeight(dtype, n, k, cpu::RandomRows(rng, dtype, n, k));
  DeviceBuffer<float> bias = ToDevice(rng.Floats(n)), norm = ToDevice(rng.Floats(k));
  enum Variant { kGemm, kSwiglu, kNormInGemm, kAddToY };
  for (int m : {1, 16}) {
    DeviceBuffer<float> src = ToDevice(rng.Floats(m * k)), zero = DeviceZeros<float>(m * k);
    const std::vector<float> y0 = rng.Floats(m * n);
    for (Variant v : {kGemm, kSwiglu, kNormInGemm, kAddToY}) {
      if (m != 1 && v >= kNormInGemm) continue;  // the fusions are for one row
      SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " m=" << m << " variant " << v);
      auto run = [&](bool programmatic) {
        DeviceBuffer<float> x = DeviceZeros<float>(m * k), y = ToDevice(y0);
        // A created (blocking) stream, as the engine's: the copies around
        // it run on the legacy stream.
        cudaStream_t stream = nullptr;
        EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
        const Stream s{.cuda_stream = stream, .programmatic = programmatic};
        EXPECT_TRUE(Add({.a = src.data(), .b = zero.data(), .y = x.data(), .n = m * k},
                        Stream{.cuda_stream = stream})
                        .ok());
        const GemmParams p{.x = x.data(),
                           .w = w.data(),
                           .w_dtype = dtype,
                           .bias = bias.data(),
                           .y = y.data(),
                           .m = m,
                           .n = n,
                           .k = k};
        absl::Status st = v == kGemm     ? Gemm(p, s)
                          : v == kSwiglu ? GemmSwiglu(p, s)
                          : v == kAddToY
                              ? GemmFused(p, {.add_to_y = true}, false, s)
                              : GemmFused(p, {.norm = norm.data(), .eps = 1e-5f}, false, s);
        EXPECT_TRUE(st.ok()) << st;
        EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
        return ToHostVector(y);
      };
      EXPECT_EQ(run(true), run(false));
    }
  }
}

// The tensor-core path at decode batch sizes (kernel_bench compares it with
// the skinny GEMM there).
TEST_P(CudaGemmParity, TensorCorePathAtDecodeBatchSizes) {
  TPS_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  Rng rng(77 + static_cast<int>(dtype));
  for (int m : {1, 16, 40}) {
    const int n = rng.Int(1, 200);
    const int k = IsQuantized(dtype) ? 32 * rng.Int(1, 12) : 8 * rng.Int(1, 60);
    CheckGemm(rng, dtype, {m, n, k, /*strided=*/m == 40, /*bias=*/m == 16}, /*tensor_core=*/true);
  }
}

// GemmViaBf16 (bf16 copies of x and w, then the cp.async kernel) gives the
// bits of Gemm's prefill kernel (the same conversions in the same tile code):
// k tails of plain weights (zero-padded copies), strides, bias, m and n
// around the 128 x 128 tiles, and rows past m and n in the scratch untouched
// by the result. Also a decode m, where it is that kernel's result too.
// BF16 weights whose k is a multiple of 32 are multiplied in place; with
// Bf16Gemm::kMmaDequant quantized weights are dequantised in the kernel.
TEST_P(CudaGemmParity, ViaBf16CopiesGiveThePrefillKernelsBits) {
  TPS_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  Rng rng(555 + static_cast<int>(dtype));
  for (const Shape& s : {Shape{65, 130, IsQuantized(dtype) ? 96 : 72, false, true},
                         Shape{300, 70, IsQuantized(dtype) ? 288 : 301, true, false},
                         Shape{129, 257, 512, true, true}, Shape{16, 40, 64, false, true}}) {
    SCOPED_TRACE(testing::Message()
                 << DTypeName(dtype) << " m=" << s.m << " n=" << s.n << " k=" << s.k);
    const int64_t xs = s.strided ? s.k + 5 : s.k;
    const int64_t ys = s.strided ? s.n + 3 : s.n;
    DeviceBuffer<float> x = ToDevice(rng.Floats(static_cast<size_t>(s.m) * xs));
    DeviceBuffer<uint8_t> w =
        ToDeviceWeight(dtype, s.n, s.k, cpu::RandomRows(rng, dtype, s.n, s.k));
    DeviceBuffer<float> bias = ToDevice(rng.Floats(s.n));
    DeviceBuffer<float> want = DeviceZeros<float>(static_cast<size_t>(s.m) * ys);
    DeviceBuffer<float> got = DeviceZeros<float>(static_cast<size_t>(s.m) * ys);
    DeviceBuffer<uint16_t> scratch =
        DeviceZeros<uint16_t>(static_cast<size_t>(GemmViaBf16ScratchElems(s.m, s.n, s.k)));
    GemmParams p{.x = x.data(),
                 .w = w.data(),
                 .w_dtype = dtype,
                 .bias = s.bias ? bias.data() : nullptr,
                 .y = want.data(),
                 .m = s.m,
                 .n = s.n,
                 .k = s.k,
                 .x_stride = s.strided ? xs : 0,
                 .y_stride = s.strided ? ys : 0};
    ASSERT_TRUE(GemmTensorCore(p, Stream{}).ok());
    p.y = got.data();
    ASSERT_TRUE(GemmViaBf16(p, scratch.data(), Stream{}).ok());
    EXPECT_EQ(ToHostVector(got), ToHostVector(want));
    {
      // Bf16Gemm::kMmaDequant: the same bits, quantized weights dequantised
      // by the kernel's loader (x's conversion the only one).
      DeviceBuffer<float> got2 = DeviceZeros<float>(static_cast<size_t>(s.m) * ys);
      p.y = got2.data();
#if defined(TPSERVE_CUDA_EMU)
      const uint64_t converts = tpserve_emu::GridsRun("ConvertRowsKernel");
      const uint64_t dequantizing =
          tpserve_emu::GridsRun("TensorCoreGemmKernel<CpAsyncBf16Loader, ConvertLoader");
#endif
      ASSERT_TRUE(GemmViaBf16(p, scratch.data(), Stream{}, Bf16Gemm::kMmaDequant).ok());
#if defined(TPSERVE_CUDA_EMU)
      cudaDeviceSynchronize();
      if (IsQuantized(dtype)) {
        EXPECT_EQ(tpserve_emu::GridsRun("ConvertRowsKernel") - converts, 1u) << "x only";
        EXPECT_EQ(tpserve_emu::GridsRun("TensorCoreGemmKernel<CpAsyncBf16Loader, ConvertLoader") -
                      dequantizing,
                  1u);
      }
#endif
      EXPECT_EQ(ToHostVector(got2), ToHostVector(want));
      p.y = got.data();
    }
    // A second weight on the same x (the next part of a linear): x's copy
    // in the scratch is reused, only w2 is converted, and the bits are still
    // the prefill kernel's.
    DeviceBuffer<uint8_t> w2 =
        ToDeviceWeight(dtype, s.n, s.k, cpu::RandomRows(rng, dtype, s.n, s.k));
    p.w = w2.data();
    p.y = want.data();
    ASSERT_TRUE(GemmTensorCore(p, Stream{}).ok());
    p.y = got.data();
#if defined(TPSERVE_CUDA_EMU)
    const uint64_t converts = tpserve_emu::GridsRun("ConvertRowsKernel");
#endif
    ASSERT_TRUE(
        GemmViaBf16(p, scratch.data(), Stream{}, Bf16Gemm::kMma, /*x_in_scratch=*/true).ok());
#if defined(TPSERVE_CUDA_EMU)
    cudaDeviceSynchronize();
    // BF16 rows filling whole 32-wide k tiles are used in place: no copy.
    const bool w2_in_place = dtype == DType::kBF16 && s.k % 32 == 0;
    EXPECT_EQ(tpserve_emu::GridsRun("ConvertRowsKernel") - converts, w2_in_place ? 0u : 1u)
        << "w2 only";
#endif
    EXPECT_EQ(ToHostVector(got), ToHostVector(want));
  }
  GemmParams p{.m = 100, .n = 8, .k = 32};
  EXPECT_EQ(GemmViaBf16(p, nullptr, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

// GemmSwiglu writes the bits Gemm into (m, 2F) and then Swiglu write.
TEST_P(CudaGemmParity, SwigluEpilogueMatchesGemmThenSwiglu) {
  TPS_SKIP_WITHOUT_CUDA();
  const DType dtype = GetParam();
  Rng rng(99 + static_cast<int>(dtype));
  for (int m : {1, 5, 8, 64}) {
    const int f = rng.Int(1, 90);
    // m = 64 with whole 32-value blocks for every type (the mma kernel's BF16 case).
    const int k = IsQuantized(dtype) || m == 64 ? 32 * rng.Int(1, 12) : 8 * rng.Int(1, 60);
    const bool bias = m % 2 == 1;
    SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " m=" << m << " f=" << f << " k=" << k);
    DeviceBuffer<float> dx = ToDevice(rng.Floats(static_cast<size_t>(m) * k));
    DeviceBuffer<uint8_t> dw =
        ToDeviceWeight(dtype, 2 * f, k, cpu::RandomRows(rng, dtype, 2 * f, k));
    DeviceBuffer<float> db = ToDevice(rng.Floats(2 * f));
    DeviceBuffer<float> gu = DeviceZeros<float>(static_cast<size_t>(m) * 2 * f);
    DeviceBuffer<float> want = DeviceZeros<float>(static_cast<size_t>(m) * f);
    DeviceBuffer<float> got = DeviceZeros<float>(static_cast<size_t>(m) * f);
    GemmParams p{.x = dx.data(),
                 .w = dw.data(),
                 .w_dtype = dtype,
                 .bias = bias ? db.data() : nullptr,
                 .y = gu.data(),
                 .m = m,
                 .n = 2 * f,
                 .k = k};
    ASSERT_TRUE(Gemm(p, Stream{}).ok());
    ASSERT_TRUE(Swiglu({.gate = gu.data(),
                        .up = gu.data() + f,
                        .out = want.data(),
                        .rows = m,
                        .dim = f,
                        .gate_stride = 2 * f,
                        .up_stride = 2 * f},
                       Stream{})
                    .ok());
    p.y = got.data();
    ASSERT_TRUE(GemmSwiglu(p, Stream{}).ok());
    EXPECT_EQ(ToHostVector(got), ToHostVector(want));
  }
  GemmParams odd{.m = 1, .n = 3, .k = 32};
  EXPECT_EQ(GemmSwiglu(odd, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(AllWeightTypes, CudaGemmParity,
                         testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                         DType::kQ4_0, DType::kQ4_1),
                         [](const testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace tpserve::kernels::cuda
