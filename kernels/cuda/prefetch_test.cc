// L2 prefetch from the decode GEMMs (kernels/cuda/prefetch.cuh: the fused
// batch-1 GEMVs' GemmFusion::prefetch, Gemm's and GemmSwiglu's on the
// tensor-core decode kernel): a hint, so the same bits with and without it;
// under the emulator, the pieces the GEMM's blocks ask for also tile the
// ranges exactly (each byte once, none outside them).
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"

#if defined(TPSERVE_CUDA_EMU)
#include "kernels/cuda/emu/emu.h"  // TakeL2Prefetches
#endif

namespace tpserve::kernels::cuda {
namespace {

using cpu::Rng;

TEST(CudaL2Prefetch, AddKeepsWholeUnitsAndAtMostFourRanges) {
  static const char buf[64] = {};
  L2Prefetch r;
  EXPECT_TRUE(r.Add(buf, 15));  // under one unit: nothing to prefetch
  EXPECT_EQ(r.ranges, 0);
  for (int i = 0; i < L2Prefetch::kMaxRanges; ++i) EXPECT_TRUE(r.Add(buf, 40));
  EXPECT_FALSE(r.Add(buf, 40));
  EXPECT_EQ(r.ranges, L2Prefetch::kMaxRanges);
  EXPECT_EQ(r.bytes[0], 32);
}

#if defined(TPSERVE_CUDA_EMU)
// The emulator's record of the pieces asked for covers each of r's ranges
// exactly once and nothing else.
void ExpectPiecesTile(const L2Prefetch& r) {
  std::vector<std::pair<const void*, uint64_t>> pieces = tpserve_emu::TakeL2Prefetches();
  std::sort(pieces.begin(), pieces.end());
  size_t next = 0;
  std::vector<int> order(r.ranges);
  for (int i = 0; i < r.ranges; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return r.ptr[a] < r.ptr[b]; });
  for (int i : order) {
    const char* at = static_cast<const char*>(r.ptr[i]);
    const char* end = at + r.bytes[i];
    while (at < end && next < pieces.size() && pieces[next].first == at) {
      at += pieces[next++].second;
    }
    EXPECT_EQ(at, end) << "range " << i << " not tiled by the pieces";
  }
  EXPECT_EQ(next, pieces.size()) << "pieces outside the ranges, or overlapping";
}
#endif

// The fused batch-1 GEMVs (GemmFused) and the tensor-core decode GEMM
// (Gemm and GemmSwiglu at m = 16), with and without a prefetch.
TEST(CudaL2Prefetch, DecodeGemmsGiveTheSameBits) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(5);
  const int n = 2 * 333, k = 2048, rows = 16;  // 42 blocks of 8 rows (21 with SwiGLU)
  DeviceBuffer<float> x = ToDevice(rng.Floats(rows * k));
  DeviceBuffer<float> norm = ToDevice(rng.Floats(k));
  DeviceBuffer<uint8_t> w =
      ToDeviceWeight(DType::kQ4_1, n, k, cpu::RandomRows(rng, DType::kQ4_1, n, k));
  // Ranges of odd lengths and offsets in two buffers, one shorter than the
  // blocks have 16-byte units (some blocks get nothing).
  DeviceBuffer<uint8_t> a = DeviceZeros<uint8_t>(1000), b = DeviceZeros<uint8_t>(100000);
  L2Prefetch r;
  ASSERT_TRUE(r.Add(a.data(), 1000));  // 992 bytes
  ASSERT_TRUE(r.Add(b.data() + 16, 65536 + 48));
  ASSERT_TRUE(r.Add(b.data() + 70000, 16 * 10));
  const std::vector<float> y0 = rng.Floats(rows * n);
  struct Way {
    const char* name;
    int m;
    bool swiglu, add_to_y;
  };
  for (const Way way :
       {Way{"fused norm", 1, false, false}, Way{"fused norm, swiglu", 1, true, false},
        Way{"fused add", 1, false, true}, Way{"decode gemm", rows, false, false},
        Way{"decode gemm, swiglu", rows, true, false}}) {
    SCOPED_TRACE(way.name);
    const int cols = way.swiglu ? n / 2 : n;
    const std::vector<float> start(y0.begin(), y0.begin() + way.m * cols);
    DeviceBuffer<float> want = ToDevice(start), got = ToDevice(start);
    GemmParams p{.x = x.data(), .w = w.data(), .w_dtype = DType::kQ4_1, .m = way.m, .n = n, .k = k};
    GemmFusion f{.norm = way.add_to_y ? nullptr : norm.data(), .add_to_y = way.add_to_y};
    auto run = [&](float* y, const L2Prefetch& prefetch) {
      p.y = y;
      f.prefetch = prefetch;
      if (way.m == 1) return GemmFused(p, f, way.swiglu, Stream{});
      return way.swiglu ? GemmSwiglu(p, Stream{}, prefetch) : Gemm(p, Stream{}, prefetch);
    };
    ASSERT_TRUE(run(want.data(), {}).ok());
#if defined(TPSERVE_CUDA_EMU)
    EXPECT_TRUE(tpserve_emu::TakeL2Prefetches().empty());  // none asked for
#endif
    ASSERT_TRUE(run(got.data(), r).ok());
    EXPECT_EQ(ToHostVector(got), ToHostVector(want));
#if defined(TPSERVE_CUDA_EMU)
    ExpectPiecesTile(r);
#endif
  }
}

}  // namespace
}  // namespace tpserve::kernels::cuda
