// Parity of the row-wise CUDA ops (RmsNorm, Rope, Swiglu, Add, Embedding,
// KvCacheWrite) with their CPU twins on randomised shapes.
//
// Tolerances (NMSE vs the CPU twin):
//   RmsNorm 1e-10 (rsqrtf is within 2 ulp, ~1e-13 measured on such data);
//   Rope 1e-10 (both evaluate angles in double);
//   Swiglu 1e-10 (expf within 2 ulp);
//   Add, Embedding, KvCacheWrite: bit-exact (pure copies / one rounding; a
//   bf16 cache holds the CPU's F32ToBF16 bits, NaN, ties and overflow too).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <tuple>
#include <utility>
#include <vector>

#include "formats/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"

namespace tpserve::kernels::cuda {
namespace {

using cpu::Nmse;
using cpu::Rng;

constexpr double kRowOpNmse = 1e-10;

TEST(CudaRmsNormParity, RandomShapesInPlaceAndNot) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(1);
  for (int dim : {1, 31, 576, 1000, 4099}) {
    for (bool in_place : {false, true}) {
      const int rows = rng.Int(1, 9);
      const std::vector<float> x = rng.Floats(static_cast<size_t>(rows) * dim, -3.0f, 3.0f);
      const std::vector<float> w = rng.Floats(dim);
      std::vector<float> want(x.size());
      RmsNormParams p{.x = x.data(),
                      .weight = w.data(),
                      .y = want.data(),
                      .rows = rows,
                      .dim = dim,
                      .eps = 1e-5f};
      ASSERT_TRUE(cpu::RmsNorm(p, Stream{}).ok());
      DeviceBuffer<float> dx = ToDevice(x);
      DeviceBuffer<float> dw = ToDevice(w);
      DeviceBuffer<float> dy = DeviceZeros<float>(x.size());
      p.x = dx.data();
      p.weight = dw.data();
      p.y = in_place ? dx.data() : dy.data();
      ASSERT_TRUE(RmsNorm(p, Stream{}).ok());
      EXPECT_LT(Nmse(ToHostVector(in_place ? dx : dy), want), kRowOpNmse) << "dim=" << dim;
    }
  }
}

// The fused residual add + RMSNorm: bit-identical to cuda::Add then
// cuda::RmsNorm, and within the RMSNorm tolerance of the CPU twins.
TEST(CudaAddRmsNorm, MatchesAddThenRmsNorm) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(11);
  for (int dim : {1, 31, 576, 4099}) {
    const int rows = rng.Int(1, 9);
    const size_t n = static_cast<size_t>(rows) * dim;
    const std::vector<float> x = rng.Floats(n, -3.0f, 3.0f);
    const std::vector<float> r = rng.Floats(n, -3.0f, 3.0f);
    const std::vector<float> w = rng.Floats(dim);
    // CPU twins: x + r, then the norm.
    std::vector<float> sum(n), want(n);
    ASSERT_TRUE(
        cpu::Add({.a = x.data(), .b = r.data(), .y = sum.data(), .n = int64_t(n)}, Stream{}).ok());
    ASSERT_TRUE(cpu::RmsNorm({.x = sum.data(),
                              .weight = w.data(),
                              .y = want.data(),
                              .rows = rows,
                              .dim = dim,
                              .eps = 1e-5f},
                             Stream{})
                    .ok());
    DeviceBuffer<float> dr = ToDevice(r), dw = ToDevice(w);
    // Separate CUDA launches.
    DeviceBuffer<float> sx = ToDevice(x), sy = DeviceZeros<float>(n);
    ASSERT_TRUE(
        Add({.a = sx.data(), .b = dr.data(), .y = sx.data(), .n = int64_t(n)}, Stream{}).ok());
    ASSERT_TRUE(RmsNorm({.x = sx.data(),
                         .weight = dw.data(),
                         .y = sy.data(),
                         .rows = rows,
                         .dim = dim,
                         .eps = 1e-5f},
                        Stream{})
                    .ok());
    // Fused.
    DeviceBuffer<float> fx = ToDevice(x), fy = DeviceZeros<float>(n);
    ASSERT_TRUE(AddRmsNorm({.x = fx.data(),
                            .residual = dr.data(),
                            .weight = dw.data(),
                            .y = fy.data(),
                            .rows = rows,
                            .dim = dim,
                            .eps = 1e-5f},
                           Stream{})
                    .ok());
    EXPECT_EQ(ToHostVector(fx), ToHostVector(sx)) << "dim=" << dim;
    EXPECT_EQ(ToHostVector(fy), ToHostVector(sy)) << "dim=" << dim;
    EXPECT_LT(Nmse(ToHostVector(fy), want), kRowOpNmse) << "dim=" << dim;
    EXPECT_EQ(ToHostVector(fx), sum) << "dim=" << dim;  // one f32 add per element
  }
}

TEST(CudaRopeParity, PairingsAndScalings) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(2);
  for (RopeScaling::Type scaling :
       {RopeScaling::Type::kNone, RopeScaling::Type::kLinear, RopeScaling::Type::kLlama3}) {
    for (bool neox : {false, true}) {
      for (bool with_k : {true, false}) {
        const int tokens = rng.Int(1, 17);
        const int n_kv = rng.Int(1, 3);
        const int n_heads = n_kv * rng.Int(1, 4);
        const int head_dim = 2 * rng.Int(1, 64);
        const int64_t q_stride = n_heads * head_dim + (with_k ? 0 : 6);
        std::vector<float> q = rng.Floats(tokens * q_stride);
        std::vector<float> k = rng.Floats(static_cast<size_t>(tokens) * n_kv * head_dim);
        std::vector<int32_t> pos(tokens);
        for (int32_t& v : pos) v = rng.Int(0, 40000);
        RopeParams p;
        p.tokens = tokens;
        p.n_heads = n_heads;
        p.n_kv_heads = n_kv;
        p.head_dim = head_dim;
        p.q_stride = q_stride;
        p.theta = 500000.0f;
        p.neox = neox;
        p.scaling.type = scaling;
        p.scaling.factor = 8.0f;
        p.scaling.low_freq_factor = 1.0f;
        p.scaling.high_freq_factor = 4.0f;
        p.scaling.original_max_position = 8192;
        DeviceBuffer<float> dq = ToDevice(q);
        DeviceBuffer<float> dk = ToDevice(k);
        DeviceBuffer<int32_t> dpos = ToDevice(pos);
        std::vector<float> want_q = q, want_k = k;
        p.q = want_q.data();
        p.k = with_k ? want_k.data() : nullptr;
        p.positions = pos.data();
        ASSERT_TRUE(cpu::Rope(p, Stream{}).ok());
        p.q = dq.data();
        p.k = with_k ? dk.data() : nullptr;
        p.positions = dpos.data();
        ASSERT_TRUE(Rope(p, Stream{}).ok());
        SCOPED_TRACE(testing::Message() << "scaling=" << static_cast<int>(scaling)
                                        << " neox=" << neox << " head_dim=" << head_dim);
        EXPECT_LT(Nmse(ToHostVector(dq), want_q), kRowOpNmse);
        EXPECT_LT(Nmse(ToHostVector(dk), want_k), kRowOpNmse);  // unchanged when !with_k
      }
    }
  }
}

TEST(CudaSwigluAddParity, RandomShapes) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(3);
  for (int dim : {1, 33, 1536}) {
    const int rows = rng.Int(1, 7);
    // Gate and up interleaved in one (rows, 2 * dim) buffer, as a fused projection writes them.
    const std::vector<float> gu = rng.Floats(static_cast<size_t>(rows) * 2 * dim, -6.0f, 6.0f);
    std::vector<float> want(static_cast<size_t>(rows) * dim);
    SwigluParams p{.gate = gu.data(),
                   .up = gu.data() + dim,
                   .out = want.data(),
                   .rows = rows,
                   .dim = dim,
                   .gate_stride = 2 * dim,
                   .up_stride = 2 * dim};
    ASSERT_TRUE(cpu::Swiglu(p, Stream{}).ok());
    DeviceBuffer<float> dgu = ToDevice(gu);
    DeviceBuffer<float> dout = DeviceZeros<float>(want.size());
    p.gate = dgu.data();
    p.up = dgu.data() + dim;
    p.out = dout.data();
    ASSERT_TRUE(Swiglu(p, Stream{}).ok());
    const std::vector<float> got = ToHostVector(dout);
    EXPECT_LT(Nmse(got, want), kRowOpNmse) << "dim=" << dim;

    const std::vector<float> b = rng.Floats(want.size());
    std::vector<float> sum(want.size());
    AddParams ap{
        .a = want.data(), .b = b.data(), .y = sum.data(), .n = static_cast<int64_t>(want.size())};
    ASSERT_TRUE(cpu::Add(ap, Stream{}).ok());
    DeviceBuffer<float> da = ToDevice(want);
    DeviceBuffer<float> db = ToDevice(b);
    ap.a = da.data();
    ap.b = db.data();
    ap.y = da.data();  // in place, as the residual add runs
    ASSERT_TRUE(Add(ap, Stream{}).ok());
    EXPECT_EQ(ToHostVector(da), sum);
  }
}

// RmsNorm, AddRmsNorm and Swiglu with a Bf16Copy write what GemmViaBf16
// would make of their f32 output (its x copy, row tails zero over a scratch
// filled with NaN bits), and GemmViaBf16 on that copy (x_in_scratch) gives
// the bits of GemmViaBf16 on the f32 output.
TEST(CudaBf16Copy, NormsAndSwigluWriteTheGemmsCopyOfX) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(21);
  constexpr int kN = 24;  // weight rows of the GEMM that reads the copy
  for (int dim : {31, 576, 1000}) {
    const int rows = 65 + rng.Int(0, 40);  // the prefill sizes GemmViaBf16 serves
    const size_t n = static_cast<size_t>(rows) * dim;
    SCOPED_TRACE(testing::Message() << "dim=" << dim << " rows=" << rows);
    DeviceBuffer<float> w = ToDevice(rng.Floats(static_cast<size_t>(kN) * dim));
    const size_t scratch_elems = static_cast<size_t>(GemmViaBf16ScratchElems(rows, kN, dim));
    const size_t copy_elems = static_cast<size_t>(rows * GemmViaBf16RowElems(dim));
    // `f32` holds the op's f32 output; `copy` the scratch it wrote itself.
    const auto expect_gemms_copy = [&](const DeviceBuffer<float>& f32,
                                       const DeviceBuffer<uint16_t>& copy) {
      DeviceBuffer<uint16_t> scratch = DeviceZeros<uint16_t>(scratch_elems);
      DeviceBuffer<float> want = DeviceZeros<float>(static_cast<size_t>(rows) * kN);
      DeviceBuffer<float> got = DeviceZeros<float>(static_cast<size_t>(rows) * kN);
      GemmParams g{.x = f32.data(),
                   .w = w.data(),
                   .w_dtype = DType::kF32,
                   .y = want.data(),
                   .m = rows,
                   .n = kN,
                   .k = dim};
      ASSERT_TRUE(GemmViaBf16(g, scratch.data(), Stream{}).ok());
      std::vector<uint16_t> want_copy = ToHostVector(scratch);
      std::vector<uint16_t> got_copy = ToHostVector(copy);
      want_copy.resize(copy_elems);
      got_copy.resize(copy_elems);
      EXPECT_EQ(got_copy, want_copy);
      g.y = got.data();
      ASSERT_TRUE(
          GemmViaBf16(g, copy.data(), Stream{}, Bf16Gemm::kMma, /*x_in_scratch=*/true).ok());
      EXPECT_EQ(ToHostVector(got), ToHostVector(want));
    };
    const auto nan_scratch = [&] {
      return ToDevice(std::vector<uint16_t>(scratch_elems, uint16_t{0xFFFF}));
    };
    const std::vector<float> x = rng.Floats(n, -3.0f, 3.0f);
    DeviceBuffer<float> dw = ToDevice(rng.Floats(dim));
    {
      SCOPED_TRACE("RmsNorm");
      DeviceBuffer<float> dx = ToDevice(x), dy = DeviceZeros<float>(n);
      RmsNormParams p{
          .x = dx.data(), .weight = dw.data(), .y = dy.data(), .rows = rows, .dim = dim};
      ASSERT_TRUE(RmsNorm(p, Stream{}).ok());
      DeviceBuffer<uint16_t> copy = nan_scratch();
      p.y = nullptr;
      ASSERT_TRUE(RmsNorm(p, Stream{}, {.data = copy.data()}).ok());
      expect_gemms_copy(dy, copy);
    }
    {
      SCOPED_TRACE("AddRmsNorm");
      DeviceBuffer<float> dr = ToDevice(rng.Floats(n, -3.0f, 3.0f));
      DeviceBuffer<float> fx = ToDevice(x), fy = DeviceZeros<float>(n), cx = ToDevice(x);
      AddRmsNormParams p{.x = fx.data(),
                         .residual = dr.data(),
                         .weight = dw.data(),
                         .y = fy.data(),
                         .rows = rows,
                         .dim = dim};
      ASSERT_TRUE(AddRmsNorm(p, Stream{}).ok());
      DeviceBuffer<uint16_t> copy = nan_scratch();
      p.x = cx.data();
      p.y = nullptr;
      ASSERT_TRUE(AddRmsNorm(p, Stream{}, {.data = copy.data()}).ok());
      EXPECT_EQ(ToHostVector(cx), ToHostVector(fx)) << "the residual stream, still f32";
      expect_gemms_copy(fy, copy);
    }
    {
      SCOPED_TRACE("Swiglu");
      DeviceBuffer<float> gu = ToDevice(rng.Floats(2 * n, -6.0f, 6.0f));
      DeviceBuffer<float> out = DeviceZeros<float>(n);
      SwigluParams p{.gate = gu.data(),
                     .up = gu.data() + dim,
                     .out = out.data(),
                     .rows = rows,
                     .dim = dim,
                     .gate_stride = 2 * dim,
                     .up_stride = 2 * dim};
      ASSERT_TRUE(Swiglu(p, Stream{}).ok());
      DeviceBuffer<uint16_t> copy = nan_scratch();
      p.out = nullptr;
      ASSERT_TRUE(Swiglu(p, Stream{}, {.data = copy.data()}).ok());
      expect_gemms_copy(out, copy);
    }
  }
  // Neither an f32 y nor a copy: an error, not a launch writing nowhere.
  DeviceBuffer<float> v = DeviceZeros<float>(8);
  EXPECT_EQ(RmsNorm({.x = v.data(), .weight = v.data(), .rows = 1, .dim = 8}, Stream{}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CudaEmbeddingParity, EveryDtypeWithShardOffset) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(4);
  for (DType dtype :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    const int rows = rng.Int(1, 50);
    const int dim = IsQuantized(dtype) ? 32 * rng.Int(1, 18) : rng.Int(1, 300);
    const int row_offset = rng.Int(0, 20);
    const std::vector<uint8_t> table = cpu::RandomRows(rng, dtype, rows, dim);
    std::vector<int32_t> tokens(rng.Int(1, 12));
    for (int32_t& t : tokens) t = rng.Int(0, row_offset + rows + 10);  // some outside this shard
    std::vector<float> want(tokens.size() * dim, -1.0f);
    EmbeddingParams p{.table = table.data(),
                      .dtype = dtype,
                      .tokens = tokens.data(),
                      .out = want.data(),
                      .num_tokens = static_cast<int>(tokens.size()),
                      .dim = dim,
                      .rows = rows,
                      .row_offset = row_offset};
    ASSERT_TRUE(cpu::Embedding(p, Stream{}).ok());
    DeviceBuffer<uint8_t> dt = ToDevice(table);
    DeviceBuffer<int32_t> dtok = ToDevice(tokens);
    DeviceBuffer<float> dout = DeviceZeros<float>(want.size());
    p.table = dt.data();
    p.tokens = dtok.data();
    p.out = dout.data();
    ASSERT_TRUE(Embedding(p, Stream{}).ok());
    EXPECT_EQ(ToHostVector(dout), want) << DTypeName(dtype);
  }
}

// KvCacheWrite of `p`'s shape and dtype from k, v and slots into a cache
// starting as `cache0`, on the CPU backend and on the device: the caches
// must hold the same bits.
template <typename T>
void ExpectWriteMatchesCpu(KvCacheWriteParams p, const std::vector<float>& k,
                           const std::vector<float>& v, const std::vector<int64_t>& slots,
                           const std::vector<T>& cache0) {
  std::vector<T> want_k = cache0, want_v = cache0;
  p.k = k.data();
  p.v = v.data();
  p.k_cache = want_k.data();
  p.v_cache = want_v.data();
  p.slot_mapping = slots.data();
  ASSERT_TRUE(cpu::KvCacheWrite(p, Stream{}).ok());
  DeviceBuffer<float> dk = ToDevice(k), dv = ToDevice(v);
  DeviceBuffer<T> dkc = ToDevice(cache0), dvc = ToDevice(cache0);
  DeviceBuffer<int64_t> dslots = ToDevice(slots);
  p.k = dk.data();
  p.v = dv.data();
  p.k_cache = dkc.data();
  p.v_cache = dvc.data();
  p.slot_mapping = dslots.data();
  ASSERT_TRUE(KvCacheWrite(p, Stream{}).ok());
  EXPECT_EQ(ToHostVector(dkc), want_k);
  EXPECT_EQ(ToHostVector(dvc), want_v);
}

TEST(CudaKvCacheWriteParity, SkipsNegativeSlots) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(5);
  const int n_kv = 3, head_dim = 40, block_size = 7, num_blocks = 5, tokens = 9;
  const int width = n_kv * head_dim;
  const std::vector<float> k = rng.Floats(static_cast<size_t>(tokens) * width);
  const std::vector<float> v = rng.Floats(static_cast<size_t>(tokens) * width);
  std::vector<int64_t> slots(tokens);
  for (int t = 0; t < tokens; ++t) slots[t] = t == 4 ? -1 : (t * 3) % (num_blocks * block_size);
  const std::vector<float> cache0 =
      rng.Floats(static_cast<size_t>(num_blocks) * block_size * width);
  ExpectWriteMatchesCpu(KvCacheWriteParams{.tokens = tokens,
                                           .n_kv_heads = n_kv,
                                           .head_dim = head_dim,
                                           .block_size = block_size,
                                           .num_blocks = num_blocks},
                        k, v, slots, cache0);
}

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// A bf16 cache gets the CPU backend's bits: random values (half of them
// round up, so truncation fails) and the edge cases of F32ToBF16: ties to
// even both ways, NaNs (quiet and signalling), infinities, overflow to inf,
// signed zero, subnormals.
TEST(CudaKvCacheWriteParity, Bf16CacheHoldsTheCpuBits) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(6);
  const int n_kv = 2, head_dim = 24, block_size = 4, num_blocks = 3, tokens = 6;
  const int width = n_kv * head_dim;
  std::vector<float> k = rng.Floats(static_cast<size_t>(tokens) * width, -3.0f, 3.0f);
  const std::vector<float> v = rng.Floats(static_cast<size_t>(tokens) * width, -3.0f, 3.0f);
  const uint32_t edges[] = {0x3F808000u, 0x3F818000u, 0xBF808000u, 0x7FC00001u,
                            0x7F800001u, 0xFF800000u, 0x7F800000u, 0x7F7FFFFFu,
                            0x80000000u, 0x00008000u, 0x00018000u, 0x3F80FFFFu};
  for (size_t i = 0; i < std::size(edges); ++i) k[i] = FromBits(edges[i]);
  std::vector<int64_t> slots(tokens);
  for (int t = 0; t < tokens; ++t) slots[t] = t == 2 ? -1 : (t * 5) % (num_blocks * block_size);
  std::vector<uint16_t> cache0;
  for (float f : rng.Floats(static_cast<size_t>(num_blocks) * block_size * width)) {
    cache0.push_back(F32ToBF16(f));
  }
  KvCacheWriteParams p{.kv_dtype = DType::kBF16,
                       .tokens = tokens,
                       .n_kv_heads = n_kv,
                       .head_dim = head_dim,
                       .block_size = block_size,
                       .num_blocks = num_blocks};
  ExpectWriteMatchesCpu(p, k, v, slots, cache0);
  EXPECT_EQ(F32ToBF16(FromBits(0x3F808000u)), 0x3F80u);  // the reference: a tie goes to even
  std::vector<uint16_t> cache = cache0;
  p.k = k.data();
  p.v = v.data();
  p.k_cache = cache.data();
  p.v_cache = cache.data();
  p.slot_mapping = slots.data();
  p.kv_dtype = DType::kF16;
  EXPECT_EQ(KvCacheWrite(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

// The cache slots of `slots`: `cache0` (bytes) with k/v rows written as a
// cache of `dtype` holds them (F32ToBF16 for kBF16).
std::vector<uint8_t> ExpectedCache(const std::vector<uint8_t>& cache0, DType dtype,
                                   const std::vector<float>& rows, int64_t row_stride, int width,
                                   const std::vector<int64_t>& slots) {
  std::vector<uint8_t> out = cache0;
  const size_t elem = dtype == DType::kBF16 ? 2 : 4;
  for (size_t t = 0; t < slots.size(); ++t) {
    if (slots[t] < 0) continue;
    for (int i = 0; i < width; ++i) {
      const float f = rows[t * row_stride + i];
      const uint16_t b = F32ToBF16(f);
      std::memcpy(&out[(slots[t] * width + i) * elem],
                  dtype == DType::kBF16 ? static_cast<const void*>(&b) : &f, elem);
    }
  }
  return out;
}

// RoPE fused with the KV write (q, k, v interleaved in one qkv row as the
// engine lays them out): bit-identical to Rope then KvCacheWrite, including
// a skipped (negative) slot, for both pairings and llama3 scaling, into an
// f32 and a bf16 cache; the cache holds the rotated k and the v, rounded as
// the CPU rounds for bf16.
TEST(CudaRopeKvWrite, MatchesRopeThenKvCacheWrite) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(12);
  // head_dim 128: 512 (head, pair) rotations per token, more than a block's threads.
  for (const auto& [neox, head_dim, kv_dtype] :
       {std::tuple{false, 64, DType::kF32}, std::tuple{true, 64, DType::kBF16},
        std::tuple{false, 128, DType::kBF16}, std::tuple{true, 128, DType::kF32}}) {
    const int tokens = 9, n_heads = 6, n_kv = 2, block_size = 7, num_blocks = 5;
    const int64_t row = int64_t{n_heads + 2 * n_kv} * head_dim;
    const std::vector<float> qkv = rng.Floats(static_cast<size_t>(tokens) * row);
    std::vector<int32_t> positions(tokens);
    std::vector<int64_t> slots(tokens);
    for (int t = 0; t < tokens; ++t) {
      positions[t] = rng.Int(0, 5000);
      slots[t] = t == 3 ? -1 : (t * 4) % (num_blocks * block_size);
    }
    const std::vector<float> cache_values =
        rng.Floats(static_cast<size_t>(num_blocks) * block_size * n_kv * head_dim);
    std::vector<uint8_t> cache0(cache_values.size() * (kv_dtype == DType::kBF16 ? 2 : 4));
    for (size_t i = 0; i < cache_values.size(); ++i) {
      const uint16_t b = F32ToBF16(cache_values[i]);
      if (kv_dtype == DType::kBF16) {
        std::memcpy(&cache0[2 * i], &b, 2);
      } else {
        std::memcpy(&cache0[4 * i], &cache_values[i], 4);
      }
    }
    DeviceBuffer<int32_t> dpos = ToDevice(positions);
    DeviceBuffer<int64_t> dslots = ToDevice(slots);
    std::vector<float> rotated[2];      // [fused] qkv
    std::vector<uint8_t> caches[2][2];  // [fused][k cache, v cache]
    for (int fused = 0; fused < 2; ++fused) {
      DeviceBuffer<float> dqkv = ToDevice(qkv);
      DeviceBuffer<uint8_t> dkc = ToDevice(cache0), dvc = ToDevice(cache0);
      const RopeParams rp{.q = dqkv.data(),
                          .k = dqkv.data() + n_heads * head_dim,
                          .positions = dpos.data(),
                          .tokens = tokens,
                          .n_heads = n_heads,
                          .n_kv_heads = n_kv,
                          .head_dim = head_dim,
                          .q_stride = row,
                          .k_stride = row,
                          .theta = 500000.0f,
                          .neox = neox,
                          .scaling = {.type = RopeScaling::Type::kLlama3, .factor = 8.0f}};
      const KvCacheWriteParams kp{.k = rp.k,
                                  .v = rp.k + n_kv * head_dim,
                                  .k_cache = dkc.data(),
                                  .v_cache = dvc.data(),
                                  .kv_dtype = kv_dtype,
                                  .slot_mapping = dslots.data(),
                                  .tokens = tokens,
                                  .n_kv_heads = n_kv,
                                  .head_dim = head_dim,
                                  .block_size = block_size,
                                  .num_blocks = num_blocks,
                                  .k_stride = row,
                                  .v_stride = row};
      if (fused == 1) {
        ASSERT_TRUE(RopeKvWrite(rp, kp, Stream{}).ok());
      } else {
        ASSERT_TRUE(Rope(rp, Stream{}).ok());
        ASSERT_TRUE(KvCacheWrite(kp, Stream{}).ok());
      }
      rotated[fused] = ToHostVector(dqkv);
      caches[fused][0] = ToHostVector(dkc);
      caches[fused][1] = ToHostVector(dvc);
    }
    SCOPED_TRACE(testing::Message()
                 << "neox=" << neox << " head_dim=" << head_dim << " " << DTypeName(kv_dtype));
    EXPECT_EQ(rotated[1], rotated[0]);
    EXPECT_EQ(caches[1][0], caches[0][0]);
    EXPECT_EQ(caches[1][1], caches[0][1]);
    EXPECT_NE(rotated[1], qkv);  // something was rotated
    const int width = n_kv * head_dim;
    const std::vector<float> k_rows(rotated[1].begin() + n_heads * head_dim, rotated[1].end());
    const std::vector<float> v_rows(qkv.begin() + (n_heads + n_kv) * head_dim, qkv.end());
    EXPECT_EQ(caches[1][0], ExpectedCache(cache0, kv_dtype, k_rows, row, width, slots));
    EXPECT_EQ(caches[1][1], ExpectedCache(cache0, kv_dtype, v_rows, row, width, slots));
  }
  // A k that is not the written k is refused.
  float dummy = 0.0f;
  const RopeParams rp{.q = &dummy,
                      .k = &dummy,
                      .positions = nullptr,
                      .tokens = 1,
                      .n_heads = 1,
                      .n_kv_heads = 1,
                      .head_dim = 2};
  KvCacheWriteParams kp{.k = &dummy + 1, .tokens = 1, .n_kv_heads = 1, .head_dim = 2};
  EXPECT_EQ(RopeKvWrite(rp, kp, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  // head_dim above 512: its angles would not fit the kernel's shared memory
  // (valid buffers, so only that check can refuse it).
  DeviceBuffer<float> wq = ToDevice(std::vector<float>(3 * 1024, 1.0f));
  DeviceBuffer<float> wkc = ToDevice(std::vector<float>(1024, 0.0f));
  DeviceBuffer<float> wvc = ToDevice(std::vector<float>(1024, 0.0f));
  DeviceBuffer<int32_t> wpos = ToDevice(std::vector<int32_t>{5});
  DeviceBuffer<int64_t> wslot = ToDevice(std::vector<int64_t>{0});
  const RopeParams wide{.q = wq.data(),
                        .k = wq.data() + 1024,
                        .positions = wpos.data(),
                        .tokens = 1,
                        .n_heads = 1,
                        .n_kv_heads = 1,
                        .head_dim = 1024};
  const KvCacheWriteParams kw{.k = wide.k,
                              .v = wide.k + 1024,
                              .k_cache = wkc.data(),
                              .v_cache = wvc.data(),
                              .slot_mapping = wslot.data(),
                              .tokens = 1,
                              .n_kv_heads = 1,
                              .head_dim = 1024,
                              .block_size = 1,
                              .num_blocks = 1};
  EXPECT_EQ(RopeKvWrite(wide, kw, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tpserve::kernels::cuda
