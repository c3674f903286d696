// Parity of the tensor-core path (cuda::ToBf16 + cuda::GemmBf16) with the CPU
// twin.
//
// Tolerances: ToBf16 must equal dtype.h's DequantizeRowBf16 bit for bit.
// GemmBf16 multiplies bf16-rounded inputs exactly and accumulates in f32, so
// against cpu::Gemm on the same bf16-rounded values (as F32 weights) the only
// difference is summation order: NMSE < 1e-9 (f32 rounding is ~1e-13).
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"

namespace tpserve::kernels::cuda {
namespace {

using cpu::Nmse;
using cpu::Rng;

constexpr double kGemmBf16Nmse = 1e-9;

std::vector<uint16_t> HostBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToBF16(v[i]);
  return out;
}

std::vector<float> Bf16ToFloats(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = BF16ToF32(v[i]);
  return out;
}

TEST(CudaToBf16Parity, MatchesDequantizeRowBf16) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(7);
  for (DType dtype :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    SCOPED_TRACE(DTypeName(dtype));
    const int rows = rng.Int(1, 40);
    const int cols = IsQuantized(dtype) ? 32 * rng.Int(1, 20) : rng.Int(1, 500);
    const std::vector<uint8_t> src = cpu::RandomRows(rng, dtype, rows, cols);
    std::vector<uint16_t> want(static_cast<size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r) {
      DequantizeRowBf16(dtype, src.data() + r * RowBytes(dtype, cols),
                        want.data() + static_cast<size_t>(r) * cols, cols);
    }
    DeviceBuffer<uint8_t> dsrc = ToDevice(src);
    DeviceBuffer<uint16_t> ddst = DeviceZeros<uint16_t>(want.size());
    ToBf16Params p{
        .src = dsrc.data(), .dtype = dtype, .dst = ddst.data(), .rows = rows, .cols = cols};
    ASSERT_TRUE(ToBf16(p, Stream{}).ok());
    EXPECT_EQ(ToHostVector(ddst), want);
  }
}

TEST(CudaGemmBf16Parity, RandomShapes) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(11);
  struct Shape {
    int m, n, k;
  };
  // Tile edges (128 x 128 x 32), odd sizes, k tails of 8, and LLM-like shapes.
  const std::vector<Shape> shapes = {{1, 1, 8},        {65, 129, 40},   {128, 128, 32},
                                     {200, 77, 136},   {257, 300, 584}, {512, 576, 576},
                                     {130, 1536, 576}, {64, 49, 1544}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k);
    const std::vector<uint16_t> a = HostBf16(rng.Floats(static_cast<size_t>(s.m) * s.k));
    const std::vector<uint16_t> b = HostBf16(rng.Floats(static_cast<size_t>(s.n) * s.k));
    const std::vector<float> bias = rng.Floats(s.n);
    const std::vector<float> af = Bf16ToFloats(a);
    const std::vector<float> bf = Bf16ToFloats(b);

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

    DeviceBuffer<uint16_t> da = ToDevice(a);
    DeviceBuffer<uint16_t> dbm = ToDevice(b);
    DeviceBuffer<float> dbias = ToDevice(bias);
    DeviceBuffer<float> dc = DeviceZeros<float>(want.size());
    GemmBf16Params p{.a = da.data(),
                     .b = dbm.data(),
                     .bias = dbias.data(),
                     .c = dc.data(),
                     .m = s.m,
                     .n = s.n,
                     .k = s.k};
    ASSERT_TRUE(GemmBf16(p, Stream{}).ok());
    EXPECT_LT(Nmse(ToHostVector(dc), want), kGemmBf16Nmse);
  }
}

}  // namespace
}  // namespace tpserve::kernels::cuda
