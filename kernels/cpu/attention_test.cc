// KvCacheWrite + PagedAttention against dense f64 causal attention: random
// block tables, GQA groups 1/3/4, odd head dims and block sizes, a ragged
// batch mixing fresh prefill, chunked prefill at a start offset and decode.
#include <algorithm>
#include <cmath>
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

// Scores, exp and the weighted sum in f32 over <= 40 positions: relative
// error ~1e-7, NMSE ~1e-14. Allow 1e-10.
constexpr double kAttentionTol = 1e-10;

struct Seq {
  int start;  // cached positions before this step
  int q_len;  // new tokens this step
};

struct Case {
  int n_heads, n_kv_heads, head_dim, block_size;
};

// Runs one ragged batch through KvCacheWrite + PagedAttention and compares
// with dense f64 attention.
void CheckAgainstDense(const std::vector<Seq>& seqs, const Case& c, ThreadPool* pool, Rng& rng) {
  int num_blocks = 8;  // spare blocks stay NaN
  for (const Seq& s : seqs) num_blocks += (s.start + s.q_len + c.block_size - 1) / c.block_size;
  const int64_t token_floats = int64_t{c.n_kv_heads} * c.head_dim;
  // Unwritten slots hold NaN: reading past a sequence's context poisons the output.
  std::vector<float> k_cache(num_blocks * c.block_size * token_floats,
                             std::numeric_limits<float>::quiet_NaN());
  std::vector<float> v_cache = k_cache;
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
                   dense_k[s][j * token_floats + kvh * c.head_dim + d];
          }
          w[j] = dot * scale;
          mx = std::max(mx, w[j]);
        }
        double sum = 0.0;
        for (double& x : w) sum += (x = std::exp(x - mx));
        for (int d = 0; d < c.head_dim; ++d) {
          double acc = 0.0;
          for (int j = 0; j <= pos; ++j)
            acc += w[j] * dense_v[s][j * token_floats + kvh * c.head_dim + d];
          want[row * q_row + h * c.head_dim + d] = acc / sum;
        }
      }
    }
  }
  EXPECT_LT(Nmse(out, want), kAttentionTol)
      << "heads=" << c.n_heads << "/" << c.n_kv_heads << " hd=" << c.head_dim
      << " bs=" << c.block_size << " pool=" << (pool != nullptr);
}

class PagedAttentionTest : public ::testing::TestWithParam<Isa> {
 protected:
  PagedAttentionTest() : force_(GetParam()) {}
  ScopedIsaForTesting force_;
  ThreadPool pool_{2};
};

TEST_P(PagedAttentionTest, MatchesDenseCausalAttention) {
  Rng rng(11);
  const std::vector<Seq> seqs = {{0, 7}, {13, 1}, {21, 9}, {0, 1}, {40, 1}};
  for (const Case& c : std::vector<Case>{
           {4, 4, 64, 16}, {9, 3, 64, 16}, {12, 3, 24, 5}, {8, 2, 40, 7}, {3, 1, 17, 1}}) {
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool_}) {
      CheckAgainstDense(seqs, c, pool, rng);
    }
  }
}

// Few query rows (decode): the launcher splits each row's context across
// items and merges partial softmax results.
TEST_P(PagedAttentionTest, DecodeWithSplitContextMatchesDense) {
  Rng rng(12);
  ThreadPool four(4);
  for (const std::vector<Seq>& seqs :
       std::vector<std::vector<Seq>>{{{300, 1}}, {{95, 1}, {33, 1}}, {{31, 1}}, {{64, 2}}}) {
    for (const Case& c : std::vector<Case>{{9, 3, 64, 16}, {4, 1, 32, 7}, {8, 8, 16, 16}}) {
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool_, &four}) {
        CheckAgainstDense(seqs, c, pool, rng);
      }
    }
  }
}

// A sequence's output must not depend on what else is in the batch, on the
// thread count or on how its prompt was chunked (the engine's batch
// invariance): run sequence A alone, inside batches and as the last row of a
// prefill chunk, compare bit for bit.
TEST_P(PagedAttentionTest, OutputIsBatchInvariant) {
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
  const std::vector<float> k_cache = rng.Floats(static_cast<size_t>(next) * bs * token_floats);
  const std::vector<float> v_cache = rng.Floats(k_cache.size());
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
  EXPECT_EQ(run({0}, &pool_), alone);
  EXPECT_EQ(run({1, 0, 2}, &pool_), alone);
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
  EXPECT_EQ(last_row(696, 5, &pool_), alone);
  EXPECT_EQ(last_row(700, 1, &four), alone);
  EXPECT_EQ(last_row(100, 1, &pool_), last_row(96, 5, nullptr));
  EXPECT_EQ(last_row(100, 1, nullptr), last_row(0, 101, &four));
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

INSTANTIATE_TEST_SUITE_P(BothIsas, PagedAttentionTest,
                         ::testing::Values(Isa::kPortable, Isa::kAvx2),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

}  // namespace
}  // namespace tpserve::kernels::cpu
