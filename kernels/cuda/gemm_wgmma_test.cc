// Parity of the experimental Hopper kernels cuda::GemmBf16Wgmma (cp.async
// loads) and cuda::GemmBf16WgmmaTma (TMA loads, warp-specialised) with the CPU
// twin, on the shapes of gemm_bf16_test plus tails of its 128 x 128 and
// 128 x 256 (x 64) tiles; the last shape is large enough for 256-wide tiles
// on a 132-SM part (an H100 SXM, and the emulator's sm_90: the _emu twin runs
// with TPSERVE_CUDA_EMU_SM=90).
// Tolerance: NMSE < 1e-9 against cpu::Gemm on the same bf16-rounded values
// (exact products, f32 accumulation; only the summation order differs).
// Skips on devices other than sm_90.
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

using WgmmaGemm = absl::Status (*)(const GemmBf16Params&, const Stream&);

void ExpectRandomShapesMatch(WgmmaGemm gemm) {
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major != 9)
    GTEST_SKIP() << "skipped: needs an sm_90 device (this one is sm_" << major << "x)";
  Rng rng(12);
  struct Shape {
    int m, n, k;
  };
  const std::vector<Shape> shapes = {{1, 1, 8},        {64, 128, 64},   {65, 129, 72},
                                     {200, 77, 136},   {257, 300, 584}, {512, 576, 576},
                                     {130, 1536, 576}, {64, 49, 1544},  {1500, 2800, 328}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k);
    std::vector<uint16_t> a(static_cast<size_t>(s.m) * s.k), b(static_cast<size_t>(s.n) * s.k);
    std::vector<float> af(a.size()), bf(b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      a[i] = F32ToBF16(rng.Uniform(-1.0f, 1.0f));
      af[i] = BF16ToF32(a[i]);
    }
    for (size_t i = 0; i < b.size(); ++i) {
      b[i] = F32ToBF16(rng.Uniform(-1.0f, 1.0f));
      bf[i] = BF16ToF32(b[i]);
    }
    const std::vector<float> bias = rng.Floats(s.n);
    std::vector<float> want(static_cast<size_t>(s.m) * s.n);
    GemmParams ref{.x = af.data(),
                   .w = bf.data(),
                   .w_dtype = DType::kF32,
                   .bias = bias.data(),
                   .y = want.data(),
                   .m = s.m,
                   .n = s.n,
                   .k = s.k};
    ASSERT_TRUE(cpu::Gemm(ref, Stream{}).ok());
    DeviceBuffer<uint16_t> da = ToDevice(a), db = ToDevice(b);
    DeviceBuffer<float> dbias = ToDevice(bias), dc = DeviceZeros<float>(want.size());
    GemmBf16Params p{.a = da.data(),
                     .b = db.data(),
                     .bias = dbias.data(),
                     .c = dc.data(),
                     .m = s.m,
                     .n = s.n,
                     .k = s.k};
    const absl::Status st = gemm(p, Stream{});
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_LT(Nmse(ToHostVector(dc), want), 1e-9);
  }
}

TEST(CudaGemmWgmmaParity, RandomShapes) {
  TPS_SKIP_WITHOUT_CUDA();
  ExpectRandomShapesMatch(GemmBf16Wgmma);
}

TEST(CudaGemmWgmmaParity, RandomShapesWithTmaLoads) {
  TPS_SKIP_WITHOUT_CUDA();
  ExpectRandomShapesMatch(GemmBf16WgmmaTma);
}

// Q8_0 / Q4_0 / Q4_1 weights through GemmViaBf16 on each wgmma kernel, which
// dequantises them in its own loads (no bf16 copy of w), against the
// mma.sync kernel on GemmViaBf16's copies: the same bf16 values by
// construction, so under the emulator (both instructions add each k16
// step's products in order) the same bits, and only x is converted; on a
// GPU, NMSE < 1e-9 (the summation order differs).
TEST(CudaGemmWgmmaParity, QuantizedWeightsDequantisedInTheKernel) {
  TPS_SKIP_WITHOUT_CUDA();
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major != 9)
    GTEST_SKIP() << "skipped: needs an sm_90 device (this one is sm_" << major << "x)";
  Rng rng(34);
  struct Shape {
    int m, n, k;
  };
  for (const auto& [dtype, gemm] :
       {std::pair{DType::kQ8_0, Bf16Gemm::kWgmma}, std::pair{DType::kQ4_0, Bf16Gemm::kWgmma},
        std::pair{DType::kQ4_1, Bf16Gemm::kWgmma}, std::pair{DType::kQ8_0, Bf16Gemm::kWgmmaTma},
        std::pair{DType::kQ4_0, Bf16Gemm::kWgmmaTma},
        std::pair{DType::kQ4_1, Bf16Gemm::kWgmmaTma}}) {
    for (const Shape& s : std::vector<Shape>{{65, 130, 96}, {300, 70, 288}, {1500, 2800, 320}}) {
      SCOPED_TRACE(testing::Message()
                   << DTypeName(dtype) << (gemm == Bf16Gemm::kWgmmaTma ? " tma" : "")
                   << " m=" << s.m << " n=" << s.n << " k=" << s.k);
      DeviceBuffer<float> x = ToDevice(rng.Floats(static_cast<size_t>(s.m) * s.k));
      DeviceBuffer<uint8_t> w =
          ToDeviceWeight(dtype, s.n, s.k, cpu::RandomRows(rng, dtype, s.n, s.k));
      DeviceBuffer<float> bias = ToDevice(rng.Floats(s.n));
      DeviceBuffer<float> want = DeviceZeros<float>(static_cast<size_t>(s.m) * s.n);
      DeviceBuffer<float> got = DeviceZeros<float>(static_cast<size_t>(s.m) * s.n);
      DeviceBuffer<uint16_t> scratch =
          DeviceZeros<uint16_t>(static_cast<size_t>(GemmViaBf16ScratchElems(s.m, s.n, s.k)));
      GemmParams p{.x = x.data(),
                   .w = w.data(),
                   .w_dtype = dtype,
                   .bias = bias.data(),
                   .y = want.data(),
                   .m = s.m,
                   .n = s.n,
                   .k = s.k};
      ASSERT_TRUE(GemmViaBf16(p, scratch.data(), Stream{}, Bf16Gemm::kMma).ok());
      p.y = got.data();
#if defined(TPSERVE_CUDA_EMU)
      cudaDeviceSynchronize();
      const uint64_t converts = tpserve_emu::GridsRun("ConvertRowsKernel");
#endif
      const absl::Status st = GemmViaBf16(p, scratch.data(), Stream{}, gemm);
      ASSERT_TRUE(st.ok()) << st;
#if defined(TPSERVE_CUDA_EMU)
      cudaDeviceSynchronize();
      EXPECT_EQ(tpserve_emu::GridsRun("ConvertRowsKernel") - converts, 1u) << "x only";
      EXPECT_EQ(ToHostVector(got), ToHostVector(want));
#else
      EXPECT_LT(Nmse(ToHostVector(got), ToHostVector(want)), 1e-9);
#endif
    }
  }
}

}  // namespace
}  // namespace tpserve::kernels::cuda
