// cuda::Gemm with GemmParams::y_fixed (partition-invariant output): slices
// of k at chunk boundaries, run separately and summed as int64, give the
// whole-k bits (every weight type; m = 1, 5 and 70, the last beyond the
// skinny range); the value agrees with the f64 reference on the dequantised
// weights to f32 accumulation accuracy (kTol of sum |x w|, plus the 2^-33
// rounding of the fixed point); AddFixedPoint rounds double(a) + b * 2^-32
// once, as the CPU twin does (bit-identical).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr double kTol = 1e-5;

// y_fixed (m, n) of columns [begin, begin + count) of w (n, k) against x (m, k).
std::vector<int64_t> RunSlice(const std::vector<float>& x, const std::vector<uint8_t>& w,
                              DType dtype, int m, int n, int k, int begin, int count) {
  const int64_t row_bytes = RowBytes(dtype, k);
  const int64_t off = RowBytes(dtype, begin), bytes = RowBytes(dtype, count);
  std::vector<uint8_t> slice(static_cast<size_t>(n * bytes));
  for (int j = 0; j < n; ++j)
    std::memcpy(slice.data() + j * bytes, w.data() + j * row_bytes + off, bytes);
  DeviceBuffer<float> dx = ToDevice(x);
  DeviceBuffer<uint8_t> dw = ToDeviceWeight(dtype, n, count, slice);
  DeviceBuffer<int64_t> dy = DeviceZeros<int64_t>(static_cast<size_t>(m) * n);
  GemmParams p;
  p.x = dx.data() + begin;
  p.x_stride = k;
  p.w = dw.data();
  p.w_dtype = dtype;
  p.m = m;
  p.n = n;
  p.k = count;
  p.y_fixed = dy.data();
  p.fixed_chunk = 32;
  EXPECT_TRUE(Gemm(p, Stream{}).ok());
  return ToHostVector(dy);
}

TEST(GemmFixedParity, SplitsOfKGiveTheSameBits) {
  TPS_SKIP_WITHOUT_CUDA();
  cpu::Rng rng(21);
  const int k = 12 * 32, n = 9;
  for (DType dtype :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    for (int m : {1, 5, 70}) {
      SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " m=" << m);
      const std::vector<float> x = rng.Floats(static_cast<size_t>(m) * k, -2.0f, 2.0f);
      const std::vector<uint8_t> w = cpu::RandomRows(rng, dtype, n, k);
      const std::vector<int64_t> whole = RunSlice(x, w, dtype, m, n, k, 0, k);
      for (const std::vector<int>& at : std::vector<std::vector<int>>{{0, 6, 12}, {0, 5, 6, 12}}) {
        std::vector<uint64_t> sum(whole.size(), 0);
        for (size_t s = 0; s + 1 < at.size(); ++s) {
          const std::vector<int64_t> part =
              RunSlice(x, w, dtype, m, n, k, at[s] * 32, (at[s + 1] - at[s]) * 32);
          for (size_t i = 0; i < sum.size(); ++i) sum[i] += static_cast<uint64_t>(part[i]);
        }
        EXPECT_EQ(std::vector<int64_t>(sum.begin(), sum.end()), whole)
            << at.size() - 1 << " slices";
      }
      const std::vector<float> wf = cpu::DequantizeRows(dtype, w.data(), n, k);
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) {
          double want = 0, mag = 0;
          for (int kk = 0; kk < k; ++kk) {
            want += double{x[i * k + kk]} * wf[j * k + kk];
            mag += std::fabs(double{x[i * k + kk]} * wf[j * k + kk]);
          }
          const double got = std::ldexp(static_cast<double>(whole[i * n + j]), -kFixedPointShift);
          EXPECT_LT(std::fabs(got - want) / mag, kTol) << "i=" << i << " j=" << j;
        }
      }
    }
  }
}

TEST(GemmFixedParity, AddFixedPointMatchesCpu) {
  TPS_SKIP_WITHOUT_CUDA();
  cpu::Rng rng(4);
  const int n = 1000;
  const std::vector<float> a = rng.Floats(n, -50.0f, 50.0f);
  std::vector<int64_t> b(n);
  for (int i = 0; i < n; ++i) {
    b[i] = static_cast<int64_t>(std::ldexp(rng.Uniform(-10.0f, 10.0f), kFixedPointShift)) + i;
  }
  std::vector<float> want(n);
  ASSERT_TRUE(
      cpu::AddFixedPoint({.a = a.data(), .b = b.data(), .y = want.data(), .n = n}, Stream{}).ok());
  DeviceBuffer<float> da = ToDevice(a);
  DeviceBuffer<int64_t> dbuf = ToDevice(b);
  DeviceBuffer<float> dy = DeviceZeros<float>(n);
  ASSERT_TRUE(
      AddFixedPoint({.a = da.data(), .b = dbuf.data(), .y = dy.data(), .n = n}, Stream{}).ok());
  EXPECT_EQ(ToHostVector(dy), want);
}

}  // namespace
}  // namespace tpserve::kernels::cuda
