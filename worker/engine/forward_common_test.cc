// FlattenStep, RankDims, the kernel parameter builders and ScatterVocabSlices
// against values worked out by hand for small batches and plans.
#include "worker/engine/forward_common.h"

#include <cmath>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

SequenceInput Seq(uint64_t id, std::vector<int32_t> tokens, int32_t start_pos,
                  std::vector<int32_t> block_table) {
  SequenceInput s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start_pos;
  s.block_table = std::move(block_table);
  return s;
}

ModelConfig SmallConfig() {
  ModelConfig c;
  c.architecture = "llama";
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_size = 128;
  c.vocab_size = 10;
  c.context_length = 256;
  return c;
}

// Block size 4: a 3-token chunk at positions 5..7 (blocks 9, 2) and a decode
// token at position 0 (block 7).
StepBatch TwoSequences() {
  StepBatch b;
  b.seqs.push_back(Seq(1, {11, 12, 13}, 5, {9, 2}));
  b.seqs.push_back(Seq(2, {14}, 0, {7}));
  return b;
}

TEST(FlattenStepTest, PositionsSlotsOffsetsAndPaddedTables) {
  const StepLayout l = FlattenStep(TwoSequences(), /*block_size=*/4);
  EXPECT_EQ(l.num_seqs(), 2);
  EXPECT_EQ(l.num_tokens(), 4);
  EXPECT_EQ(l.tokens, (std::vector<int32_t>{11, 12, 13, 14}));
  EXPECT_EQ(l.positions, (std::vector<int32_t>{5, 6, 7, 0}));
  // pos 5 -> block 2nd entry (2) offset 1 = 9; 6 -> 10; 7 -> 11; pos 0 -> 7*4.
  EXPECT_EQ(l.slots, (std::vector<int64_t>{9, 10, 11, 28}));
  EXPECT_EQ(l.cu_q, (std::vector<int32_t>{0, 3, 4}));
  EXPECT_EQ(l.starts, (std::vector<int32_t>{5, 0}));
  EXPECT_EQ(l.max_blocks, 2);
  EXPECT_EQ(l.tables, (std::vector<int32_t>{9, 2, 7, 0}));
  EXPECT_EQ(l.max_context, 8);
  EXPECT_FALSE(l.all_decode);

  const StepArrays a = l.HostArrays();
  EXPECT_EQ(a.num_seqs, 2);
  EXPECT_EQ(a.num_tokens, 4);
  EXPECT_EQ(a.max_blocks, 2);
  EXPECT_EQ(a.slots, l.slots.data());
}

TEST(FlattenStepTest, DecodeOnlyBatchIsAllDecode) {
  StepBatch b;
  b.seqs.push_back(Seq(1, {3}, 4, {0, 1}));
  const StepLayout l = FlattenStep(b, /*block_size=*/4);
  EXPECT_TRUE(l.all_decode);
  EXPECT_EQ(l.slots, (std::vector<int64_t>{4}));
  EXPECT_EQ(l.max_context, 5);
  EXPECT_EQ(l.max_blocks, 2);
}

TEST(RankDimsTest, SecondOfTwoRanks) {
  absl::StatusOr<ShardPlan> plan = ShardPlan::Create(SmallConfig(), 2, 1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const RankDims d = RankDims::For(SmallConfig(), plan->mine());
  EXPECT_EQ(d.hidden, 64);
  EXPECT_EQ(d.n_heads, 2);
  EXPECT_EQ(d.n_kv_heads, 1);
  EXPECT_EQ(d.q_dim, 32);
  EXPECT_EQ(d.kv_dim, 16);
  EXPECT_EQ(d.qkv_dim, 64);
  EXPECT_EQ(d.ffn, 64);
}

TEST(KernelParamsTest, PointToTheFusedQkvParts) {
  const ModelConfig c = SmallConfig();
  absl::StatusOr<ShardPlan> plan = ShardPlan::Create(c, 1, 0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const RankDims d = RankDims::For(c, plan->mine());  // q 64, kv 32, qkv 128
  const StepLayout l = FlattenStep(TwoSequences(), 4);
  const StepArrays a = l.HostArrays();
  std::vector<float> qkv(4 * d.qkv_dim), out(4 * d.q_dim), kc(8), vc(8);
  const LayerKvCache cache{.k = kc.data(), .v = vc.data(), .block_size = 4, .num_blocks = 10};

  const kernels::RopeParams rp = MakeRopeParams(c, d, a, qkv.data());
  EXPECT_EQ(rp.q, qkv.data());
  EXPECT_EQ(rp.k, qkv.data() + 64);
  EXPECT_EQ(rp.q_stride, 128);
  EXPECT_EQ(rp.tokens, 4);
  EXPECT_EQ(rp.positions, l.positions.data());

  const kernels::KvCacheWriteParams kw = MakeKvCacheWriteParams(d, a, qkv.data(), cache);
  EXPECT_EQ(kw.k, qkv.data() + 64);
  EXPECT_EQ(kw.v, qkv.data() + 96);
  EXPECT_EQ(kw.k_cache, kc.data());
  EXPECT_EQ(kw.num_blocks, 10);
  EXPECT_EQ(kw.v_stride, 128);

  const kernels::PagedAttentionParams ap = MakeAttentionParams(d, a, qkv.data(), cache, out.data());
  EXPECT_EQ(ap.num_seqs, 2);
  EXPECT_EQ(ap.max_blocks_per_seq, 2);
  EXPECT_EQ(ap.block_tables, l.tables.data());
  EXPECT_EQ(ap.n_heads, 4);
  EXPECT_EQ(ap.n_kv_heads, 2);
  EXPECT_FLOAT_EQ(ap.scale, 0.25f);  // 1 / sqrt(16)
}

// Each rank's slice has a third row after the two sampled ones (a padded
// decode batch replayed from a graph); it must not be read.
TEST(ScatterVocabSlicesTest, PaddedRankSlicesLandAtTheirColumns) {
  ModelConfig c = SmallConfig();
  c.vocab_size = 7;  // uneven: the slices differ in length, the gather is padded
  absl::StatusOr<ShardPlan> plan = ShardPlan::Create(c, 2, 0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int64_t padded = plan->max_vocab_rows();
  const int rows = 2;
  const int slice_rows = 3;
  // gathered[rank][row][j] = 100 * row + global column, padding = -1.
  std::vector<float> gathered(2 * slice_rows * padded, -1.0f);
  for (int rk = 0; rk < 2; ++rk) {
    const IndexRange& v = plan->shard(rk).vocab;
    for (int r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < v.count; ++j) {
        gathered[(rk * slice_rows + r) * padded + j] = 100.0f * r + static_cast<float>(v.begin + j);
      }
    }
  }
  std::vector<float> logits;
  ScatterVocabSlices(*plan, gathered.data(), rows, slice_rows, padded, c.vocab_size, &logits);
  ASSERT_EQ(logits.size(), 14u);
  for (int r = 0; r < rows; ++r) {
    for (int col = 0; col < 7; ++col) {
      EXPECT_EQ(logits[r * 7 + col], 100.0f * r + col) << "row " << r << " col " << col;
    }
  }
}

}  // namespace
}  // namespace tpserve
