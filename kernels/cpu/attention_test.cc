// KvCacheWrite + PagedAttention against dense f64 causal attention: random
// block tables, GQA groups 1/3/4, odd head dims and block sizes, a ragged
// batch mixing fresh prefill, chunked prefill at a start offset and decode;
// f32 and bf16 KV caches, every ISA build (portable, AVX2, AVX-512).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

// Scores, exp and the weighted sum in f32 over <= 260 positions: relative
// error ~1e-7, NMSE ~1e-14. Allow 1e-10. For a bf16 cache this is the bound
// against f64 attention over the bf16-rounded K/V (what the cache holds).
constexpr double kAttentionTol = 1e-10;

// bf16 cache against f64 attention over the unrounded f32 K/V: each K/V
// element carries a relative rounding error of at most 2^-9 (RMS ~2^-9 /
// sqrt(3) = 1.1e-3 for round-to-nearest). V's error passes to the output at
// about that relative size (NMSE ~1.3e-6, little averaging when few
// positions dominate the softmax); K's moves each score by ~scale * |q| *
// |k| * 1.1e-3 (q in [-2, 2], k in [-1, 1], scale 1/sqrt(hd)), which shifts
// the softmax weights by a similar relative amount. Together NMSE of a few
// 1e-6: measured 2.0e-6 to 4.4e-6 over the 138 bf16 checks of this file.
// Allow 1e-5.
constexpr double kBf16CacheTol = 1e-5;

// The element size of a KV cache dtype (F32 or BF16).
size_t ElemBytes(DType kv) { return kv == DType::kBF16 ? 2 : 4; }

// A cache of `elems` elements of `kv`, every element NaN.
std::vector<uint8_t> NanCache(size_t elems, DType kv) {
  std::vector<uint8_t> cache(elems * ElemBytes(kv));
  for (size_t i = 0; i < elems; ++i) {
    if (kv == DType::kBF16) {
      const uint16_t nan = 0x7FC0;
      std::memcpy(cache.data() + 2 * i, &nan, 2);
    } else {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(cache.data() + 4 * i, &nan, 4);
    }
  }
  return cache;
}

// x as the cache stores it: unchanged for F32, rounded for BF16.
float Stored(float x, DType kv) { return kv == DType::kBF16 ? BF16ToF32(F32ToBF16(x)) : x; }

struct Seq {
  int start;  // cached positions before this step
  int q_len;  // new tokens this step
};

struct Case {
  int n_heads, n_kv_heads, head_dim, block_size;
};

// Runs one ragged batch through KvCacheWrite + PagedAttention and compares
// with dense f64 attention.
void CheckAgainstDense(const std::vector<Seq>& seqs, const Case& c, ThreadPool* pool, Rng& rng,
                       DType kv = DType::kF32) {
  int num_blocks = 8;  // spare blocks stay NaN
  for (const Seq& s : seqs) num_blocks += (s.start + s.q_len + c.block_size - 1) / c.block_size;
  const int64_t token_floats = int64_t{c.n_kv_heads} * c.head_dim;
  // Unwritten slots hold NaN: reading past a sequence's context poisons the output.
  std::vector<uint8_t> k_cache = NanCache(num_blocks * c.block_size * token_floats, kv);
  std::vector<uint8_t> v_cache = k_cache;
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng.gen());
  int next_id = 0;

  int max_blocks = 0;
  for (const Seq& s : seqs) {
    max_blocks = std::max(max_blocks, (s.start + s.q_len + c.block_size - 1) / c.block_size);
  }
  const int num_seqs = static_cast<int>(seqs.size());
  std::vector<int32_t> tables(num_seqs * max_blocks, -1), cu = {0}, starts;
  std::vector<std::vector<float>> dense_k, dense_v;  // per seq (ctx, n_kv, hd)
  for (int s = 0; s < num_seqs; ++s) {
    const int ctx = seqs[s].start + seqs[s].q_len;
    for (int b = 0; b * c.block_size < ctx; ++b) tables[s * max_blocks + b] = ids[next_id++];
    dense_k.push_back(rng.Floats(ctx * token_floats));
    dense_v.push_back(rng.Floats(ctx * token_floats));
    // Write every position through KvCacheWrite, in two calls (history, then new).
    std::vector<int64_t> slots(ctx);
    for (int pos = 0; pos < ctx; ++pos) {
      slots[pos] =
          int64_t{tables[s * max_blocks + pos / c.block_size]} * c.block_size + pos % c.block_size;
    }
    KvCacheWriteParams w{.k = dense_k[s].data(),
                         .v = dense_v[s].data(),
                         .k_cache = k_cache.data(),
                         .v_cache = v_cache.data(),
                         .kv_dtype = kv,
                         .slot_mapping = slots.data(),
                         .tokens = ctx,
                         .n_kv_heads = c.n_kv_heads,
                         .head_dim = c.head_dim,
                         .block_size = c.block_size,
                         .num_blocks = num_blocks};
    ASSERT_TRUE(KvCacheWrite(w, Stream{.pool = pool}).ok());
    cu.push_back(cu.back() + seqs[s].q_len);
    starts.push_back(seqs[s].start);
  }
  const int total_q = cu.back();
  const int64_t q_row = int64_t{c.n_heads} * c.head_dim;
  std::vector<float> q = rng.Floats(total_q * q_row, -2.0f, 2.0f);
  std::vector<float> out(total_q * q_row, -1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  PagedAttentionParams p{.q = q.data(),
                         .k_cache = k_cache.data(),
                         .v_cache = v_cache.data(),
                         .kv_dtype = kv,
                         .out = out.data(),
                         .block_tables = tables.data(),
                         .cu_q_lens = cu.data(),
                         .start_pos = starts.data(),
                         .num_seqs = num_seqs,
                         .max_blocks_per_seq = max_blocks,
                         .n_heads = c.n_heads,
                         .n_kv_heads = c.n_kv_heads,
                         .head_dim = c.head_dim,
                         .block_size = c.block_size,
                         .num_blocks = num_blocks,
                         .scale = scale};
  ASSERT_TRUE(PagedAttention(p, Stream{.pool = pool}).ok());

  // Dense f64 attention over K/V as given to KvCacheWrite, each element
  // passed through Stored(x, rounding).
  auto dense = [&](DType rounding) {
    std::vector<double> want(out.size());
    const int group = c.n_heads / c.n_kv_heads;
    for (int s = 0; s < num_seqs; ++s) {
      for (int i = 0; i < seqs[s].q_len; ++i) {
        const int row = cu[s] + i;
        const int pos = seqs[s].start + i;
        for (int h = 0; h < c.n_heads; ++h) {
          const int kvh = h / group;
          std::vector<double> w(pos + 1);
          double mx = -1e300;
          for (int j = 0; j <= pos; ++j) {
            double dot = 0.0;
            for (int d = 0; d < c.head_dim; ++d) {
              dot += double{q[row * q_row + h * c.head_dim + d]} *
                     Stored(dense_k[s][j * token_floats + kvh * c.head_dim + d], rounding);
            }
            w[j] = dot * scale;
            mx = std::max(mx, w[j]);
          }
          double sum = 0.0;
          for (double& x : w) sum += (x = std::exp(x - mx));
          for (int d = 0; d < c.head_dim; ++d) {
            double acc = 0.0;
            for (int j = 0; j <= pos; ++j) {
              acc += w[j] * Stored(dense_v[s][j * token_floats + kvh * c.head_dim + d], rounding);
            }
            want[row * q_row + h * c.head_dim + d] = acc / sum;
          }
        }
      }
    }
    return want;
  };
  EXPECT_LT(Nmse(out, dense(kv)), kAttentionTol)
      << "heads=" << c.n_heads << "/" << c.n_kv_heads << " hd=" << c.head_dim
      << " bs=" << c.block_size << " pool=" << (pool != nullptr) << " kv=" << DTypeName(kv);
  if (kv == DType::kBF16) {
    EXPECT_LT(Nmse(out, dense(DType::kF32)), kBf16CacheTol)
        << "heads=" << c.n_heads << "/" << c.n_kv_heads << " hd=" << c.head_dim;
  }
}

class PagedAttentionTest : public ::testing::TestWithParam<Isa> {
 protected:
  PagedAttentionTest() : force_(GetParam()) {}
  void SetUp() override {
    if (GetParam() > DetectedIsa()) {
      GTEST_SKIP() << "SKIPPED: this CPU lacks " << IsaName(GetParam()) << " (detected "
                   << IsaName(DetectedIsa()) << "); its attention build is not tested here";
    }
    if (GetParam() == Isa::kAvxVnni && !HasAvx512()) {
      GTEST_SKIP() << "SKIPPED: this CPU lacks AVX-512; the AVX-512 attention build is not "
                      "tested here";
    }
  }
  ScopedIsaForTesting force_;
  ThreadPool pool_{2};
};

// Head dims cover the 16-lane AVX-512 loop with and without a tail (64,
// 24, 40, 17) and the 8-lane AVX2 one.
TEST_P(PagedAttentionTest, MatchesDenseCausalAttention) {
  const std::vector<Seq> seqs = {{0, 7}, {13, 1}, {21, 9}, {0, 1}, {40, 1}};
  for (DType kv : {DType::kF32, DType::kBF16}) {
    Rng rng(11);
    for (const Case& c : std::vector<Case>{{4, 4, 64, 16},
                                           {9, 3, 64, 16},
                                           {12, 3, 24, 5},
                                           {8, 2, 40, 7},
                                           {3, 1, 17, 1},
                                           // 8 and 5 query heads per KV head: the AVX-512 build
                                           // takes up to 4 at a time (4 + 4, 4 + 1).
                                           {16, 2, 32, 16},
                                           {10, 2, 48, 8}}) {
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool_}) {
        CheckAgainstDense(seqs, c, pool, rng, kv);
      }
    }
  }
}

// Few query rows (decode): the launcher splits each row's context across
// items and merges partial softmax results.
TEST_P(PagedAttentionTest, DecodeWithSplitContextMatchesDense) {
  ThreadPool four(4);
  for (DType kv : {DType::kF32, DType::kBF16}) {
    Rng rng(12);
    for (const std::vector<Seq>& seqs :
         std::vector<std::vector<Seq>>{{{300, 1}}, {{95, 1}, {33, 1}}, {{31, 1}}, {{64, 2}}}) {
      for (const Case& c : std::vector<Case>{{9, 3, 64, 16}, {4, 1, 32, 7}, {8, 8, 16, 16}}) {
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool_, &four}) {
          CheckAgainstDense(seqs, c, pool, rng, kv);
        }
      }
    }
  }
}

// Prefill rows whose context spans several 128-position segments (up to
// 260 positions), one chunk starting mid-segment (at 130): the AVX-512
// build's items of several rows then start rows part-way through the
// segment list. Head dims 128 (two 64-value pieces) and 64, 4 and 3 query
// heads per KV head.
TEST_P(PagedAttentionTest, LongPrefillMatchesDense) {
  const std::vector<Seq> seqs = {{0, 260}, {130, 100}};
  for (DType kv : {DType::kF32, DType::kBF16}) {
    Rng rng(16);
    CheckAgainstDense(seqs, {8, 2, 128, 16}, &pool_, rng, kv);
    CheckAgainstDense(seqs, {9, 3, 64, 16}, nullptr, rng, kv);
  }
}

// The SIMD builds against the portable one on the same bf16 cache: they
// differ only in f32 rounding order (~1e-7 relative), never in how bf16 is
// widened.
TEST_P(PagedAttentionTest, Bf16CacheMatchesPortableBuild) {
  Rng rng(14);
  const int n_heads = 9, n_kv = 3, hd = 64, bs = 16, ctx = 300;
  const int blocks = (ctx + bs - 1) / bs;
  std::vector<uint16_t> k_cache(static_cast<size_t>(blocks) * bs * n_kv * hd), v_cache;
  for (uint16_t& x : k_cache) x = F32ToBF16(rng.Uniform(-1.0f, 1.0f));
  v_cache = k_cache;
  std::shuffle(v_cache.begin(), v_cache.end(), rng.gen());
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  const std::vector<float> q = rng.Floats(size_t{3} * n_heads * hd, -2.0f, 2.0f);
  const int32_t cu[2] = {0, 3}, start = ctx - 3;
  auto run = [&](ThreadPool* pool) {
    std::vector<float> out(q.size());
    PagedAttentionParams p{.q = q.data(),
                           .k_cache = k_cache.data(),
                           .v_cache = v_cache.data(),
                           .kv_dtype = DType::kBF16,
                           .out = out.data(),
                           .block_tables = table.data(),
                           .cu_q_lens = cu,
                           .start_pos = &start,
                           .num_seqs = 1,
                           .max_blocks_per_seq = blocks,
                           .n_heads = n_heads,
                           .n_kv_heads = n_kv,
                           .head_dim = hd,
                           .block_size = bs,
                           .num_blocks = blocks,
                           .scale = 0.125f};
    EXPECT_TRUE(PagedAttention(p, Stream{.pool = pool}).ok());
    return out;
  };
  const std::vector<float> got = run(&pool_);
  std::vector<float> portable;
  {
    ScopedIsaForTesting force(Isa::kPortable);
    portable = run(&pool_);
  }
  EXPECT_LT(Nmse(got, portable), 1e-12);
}

// KvCacheWrite rounds to nearest even into a bf16 cache (formats/dtype.h
// F32ToBF16), ties included: 1 + 2^-8 lies halfway between two bf16 values.
TEST_P(PagedAttentionTest, Bf16WriteRoundsToNearestEven) {
  Rng rng(15);
  const int n_kv = 2, hd = 8, bs = 4, tokens = 5;
  std::vector<float> k = rng.Floats(size_t{tokens} * n_kv * hd), v = rng.Floats(k.size());
  k[0] = 1.0f + 0x1p-8f;             // tie: rounds down to 1 (even)
  k[1] = 1.0f + 3 * 0x1p-8f;         // tie: rounds up to 1 + 2^-6
  v[0] = 1.0f + 0x1p-8f + 0x1p-20f;  // just above the tie: rounds up
  std::vector<uint16_t> k_cache(size_t{2} * bs * n_kv * hd), v_cache(k_cache.size());
  const std::vector<int64_t> slots = {6, 0, -1, 7, 2};
  KvCacheWriteParams w{.k = k.data(),
                       .v = v.data(),
                       .k_cache = k_cache.data(),
                       .v_cache = v_cache.data(),
                       .kv_dtype = DType::kBF16,
                       .slot_mapping = slots.data(),
                       .tokens = tokens,
                       .n_kv_heads = n_kv,
                       .head_dim = hd,
                       .block_size = bs,
                       .num_blocks = 2};
  ASSERT_TRUE(KvCacheWrite(w, Stream{.pool = &pool_}).ok());
  EXPECT_EQ(k_cache[6 * n_kv * hd], 0x3F80);      // 1.0
  EXPECT_EQ(k_cache[6 * n_kv * hd + 1], 0x3F82);  // 1 + 2^-6
  EXPECT_EQ(v_cache[6 * n_kv * hd], 0x3F81);      // 1 + 2^-7
  for (int t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    for (int i = 0; i < n_kv * hd; ++i) {
      ASSERT_EQ(k_cache[slots[t] * n_kv * hd + i], F32ToBF16(k[t * n_kv * hd + i]));
      ASSERT_EQ(v_cache[slots[t] * n_kv * hd + i], F32ToBF16(v[t * n_kv * hd + i]));
    }
  }
  w.kv_dtype = DType::kF16;
  EXPECT_EQ(KvCacheWrite(w, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

// A sequence's output must not depend on what else is in the batch, on the
// thread count or on how its prompt was chunked (the engine's batch
// invariance): run sequence A alone, inside batches and as the last row of a
// prefill chunk, compare bit for bit; f32 and bf16 caches.
void CheckBatchInvariance(DType kv, ThreadPool* pool_two) {
  Rng rng(13);
  const int n_heads = 9, n_kv = 3, hd = 64, bs = 16;
  const int64_t token_floats = int64_t{n_kv} * hd;
  const std::vector<Seq> seqs = {{700, 1}, {20, 9}, {300, 1}, {0, 1}};  // A = seqs[0]
  const int max_blocks = 45;
  std::vector<int32_t> tables(seqs.size() * max_blocks, 0);
  int next = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int b = 0; b * bs < seqs[s].start + seqs[s].q_len; ++b)
      tables[s * max_blocks + b] = next++;
  }
  const std::vector<uint8_t> k_cache =
      KvCacheBytes(rng.Floats(static_cast<size_t>(next) * bs * token_floats), kv);
  const std::vector<uint8_t> v_cache =
      KvCacheBytes(rng.Floats(static_cast<size_t>(next) * bs * token_floats), kv);
  const std::vector<float> q_a = rng.Floats(static_cast<size_t>(n_heads) * hd);

  // Runs the sequences `order` (indices into seqs) as one batch; returns A's output row.
  auto run = [&](const std::vector<int>& order, ThreadPool* pool) {
    std::vector<int32_t> t, cu = {0}, starts;
    std::vector<float> q;
    int64_t a_row = -1;
    for (int s : order) {
      t.insert(t.end(), tables.begin() + s * max_blocks, tables.begin() + (s + 1) * max_blocks);
      if (s == 0) a_row = cu.back();
      for (int i = 0; i < seqs[s].q_len; ++i) {
        const std::vector<float> row = s == 0 ? q_a : rng.Floats(static_cast<size_t>(n_heads) * hd);
        q.insert(q.end(), row.begin(), row.end());
      }
      cu.push_back(cu.back() + seqs[s].q_len);
      starts.push_back(seqs[s].start);
    }
    std::vector<float> out(q.size());
    PagedAttentionParams p{.q = q.data(),
                           .k_cache = k_cache.data(),
                           .v_cache = v_cache.data(),
                           .kv_dtype = kv,
                           .out = out.data(),
                           .block_tables = t.data(),
                           .cu_q_lens = cu.data(),
                           .start_pos = starts.data(),
                           .num_seqs = static_cast<int>(order.size()),
                           .max_blocks_per_seq = max_blocks,
                           .n_heads = n_heads,
                           .n_kv_heads = n_kv,
                           .head_dim = hd,
                           .block_size = bs,
                           .num_blocks = next,
                           .scale = 0.125f};
    EXPECT_TRUE(PagedAttention(p, Stream{.pool = pool}).ok());
    return std::vector<float>(out.begin() + a_row * n_heads * hd,
                              out.begin() + (a_row + 1) * n_heads * hd);
  };
  ThreadPool four(4);
  const std::vector<float> alone = run({0}, nullptr);
  EXPECT_EQ(run({0}, pool_two), alone);
  EXPECT_EQ(run({1, 0, 2}, pool_two), alone);
  EXPECT_EQ(run({2, 3, 1, 0}, &four), alone);
  EXPECT_EQ(run({3, 0}, nullptr), alone);

  // The same row as the last of a prefill chunk (A's block table): the
  // chunking of a prompt must not change a row's output either. Also for a
  // short context (one segment), where decode uses one item per head.
  auto last_row = [&](int start, int q_len, ThreadPool* pool) {
    std::vector<float> q = rng.Floats(static_cast<size_t>(q_len) * n_heads * hd);
    std::copy(q_a.begin(), q_a.end(), q.end() - n_heads * hd);
    const int32_t cu[2] = {0, q_len};
    std::vector<float> out(q.size());
    PagedAttentionParams p{.q = q.data(),
                           .k_cache = k_cache.data(),
                           .v_cache = v_cache.data(),
                           .kv_dtype = kv,
                           .out = out.data(),
                           .block_tables = tables.data(),
                           .cu_q_lens = cu,
                           .start_pos = &start,
                           .num_seqs = 1,
                           .max_blocks_per_seq = max_blocks,
                           .n_heads = n_heads,
                           .n_kv_heads = n_kv,
                           .head_dim = hd,
                           .block_size = bs,
                           .num_blocks = next,
                           .scale = 0.125f};
    EXPECT_TRUE(PagedAttention(p, Stream{.pool = pool}).ok());
    return std::vector<float>(out.end() - n_heads * hd, out.end());
  };
  EXPECT_EQ(last_row(696, 5, pool_two), alone);
  EXPECT_EQ(last_row(700, 1, &four), alone);
  EXPECT_EQ(last_row(100, 1, pool_two), last_row(96, 5, nullptr));
  EXPECT_EQ(last_row(100, 1, nullptr), last_row(0, 101, &four));
  // Prefill items of several rows whose rows start in one segment and end in
  // the next (positions 100 .. 139 and 230 .. 289; segments of 128).
  EXPECT_EQ(last_row(139, 1, nullptr), last_row(100, 40, &four));
  EXPECT_EQ(last_row(289, 1, pool_two), last_row(230, 60, nullptr));
}

TEST_P(PagedAttentionTest, OutputIsBatchInvariant) {
  for (DType kv : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(kv));
    CheckBatchInvariance(kv, &pool_);
  }
}

TEST_P(PagedAttentionTest, RejectsBadBlockTables) {
  std::vector<float> buf(4 * 4 * 8, 0.0f);
  std::vector<int32_t> table = {0, 7}, cu = {0, 3}, start = {2};
  PagedAttentionParams p{.q = buf.data(),
                         .k_cache = buf.data(),
                         .v_cache = buf.data(),
                         .out = buf.data(),
                         .block_tables = table.data(),
                         .cu_q_lens = cu.data(),
                         .start_pos = start.data(),
                         .num_seqs = 1,
                         .max_blocks_per_seq = 2,
                         .n_heads = 2,
                         .n_kv_heads = 1,
                         .head_dim = 8,
                         .block_size = 4,
                         .num_blocks = 4,
                         .scale = 1.0f};
  EXPECT_EQ(PagedAttention(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);  // id 7
  table[1] = 1;
  start[0] = 6;  // needs 3 blocks
  EXPECT_EQ(PagedAttention(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  p.n_heads = 3;
  p.n_kv_heads = 2;
  start[0] = 2;
  EXPECT_EQ(PagedAttention(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  int64_t slot = 16;
  KvCacheWriteParams w{.k = buf.data(),
                       .v = buf.data(),
                       .k_cache = buf.data(),
                       .v_cache = buf.data(),
                       .slot_mapping = &slot,
                       .tokens = 1,
                       .n_kv_heads = 1,
                       .head_dim = 8,
                       .block_size = 4,
                       .num_blocks = 4};
  EXPECT_EQ(KvCacheWrite(w, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

// kAvxVnni runs the AVX-512 attention build where the CPU has AVX-512
// (isa.h), kAvx2 the AVX2 one.
INSTANTIATE_TEST_SUITE_P(EveryIsa, PagedAttentionTest,
                         ::testing::Values(Isa::kPortable, Isa::kAvx2, Isa::kAvxVnni),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return info.param == Isa::kAvxVnni ? std::string("avx512")
                                                              : std::string(IsaName(info.param));
                         });

}  // namespace
}  // namespace tpserve::kernels::cpu
