// The decode-graph bucketing: batch and context buckets, the inert padding
// of a decode layout, and which steps may be replayed. Host code only; no
// device is touched.
#include "worker/engine/cuda/graph_cache.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "worker/engine/forward_common.h"

namespace tpserve {
namespace {

// Appends a sequence with `tokens` at `start_pos` over `table`.
void Add(StepBatch& b, uint64_t id, std::vector<int32_t> tokens, int32_t start_pos,
         std::vector<int32_t> table) {
  SequenceInput s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start_pos;
  s.block_table = std::move(table);
  b.seqs.push_back(std::move(s));
}

TEST(GraphCacheTest, BatchBucketsArePowersOfTwoThenMultiplesOfSixteen) {
  const std::vector<std::pair<int, int>> cases = {{1, 1},   {2, 2},   {3, 4},   {5, 8},
                                                  {8, 8},   {9, 16},  {16, 16}, {17, 32},
                                                  {33, 48}, {63, 64}, {64, 64}};
  for (const auto& [seqs, bucket] : cases) EXPECT_EQ(BatchBucket(seqs), bucket) << seqs;
}

TEST(GraphCacheTest, ContextBucketIsPowerOfTwoPartitions) {
  const int p = kernels::cuda::kDecodePartitionTokens;
  EXPECT_EQ(ContextBucket(1), p);
  EXPECT_EQ(ContextBucket(p), p);
  EXPECT_EQ(ContextBucket(p + 1), 2 * p);
  EXPECT_EQ(ContextBucket(3 * p), 4 * p);
  EXPECT_EQ(ContextBucket(4 * p + 1), 8 * p);
}

TEST(GraphCacheTest, PaddingAddsInertSequencesAndWidensTables) {
  // Two decode sequences with block size 4: contexts 5 and 3.
  StepBatch batch;
  Add(batch, 1, {7}, 4, {3, 5});
  Add(batch, 2, {9}, 2, {6});
  StepLayout l = FlattenStep(batch, /*block_size=*/4);
  ASSERT_EQ(l.max_blocks, 2);
  PadDecodeLayout(/*seqs=*/4, /*context=*/16, /*block_size=*/4, &l);
  EXPECT_EQ(l.num_seqs(), 4);
  EXPECT_EQ(l.num_tokens(), 4);
  EXPECT_EQ(l.max_blocks, 4);
  EXPECT_EQ(l.max_context, 16);
  EXPECT_EQ(l.tokens, (std::vector<int32_t>{7, 9, 0, 0}));
  EXPECT_EQ(l.positions, (std::vector<int32_t>{4, 2, 0, 0}));
  EXPECT_EQ(l.slots[2], -1);
  EXPECT_EQ(l.slots[3], -1);
  EXPECT_EQ(l.cu_q, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(l.tables, (std::vector<int32_t>{3, 5, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(GraphCacheTest, OnlyInOrderDecodeBatchesAreEligible) {
  StepBatch decode;
  Add(decode, 1, {7}, 4, {3, 5});
  Add(decode, 2, {9}, 2, {6});
  const StepLayout l = FlattenStep(decode, 4);
  EXPECT_TRUE(DecodeGraphCache(true).Eligible(l, {0, 1}));
  EXPECT_FALSE(DecodeGraphCache(false).Eligible(l, {0, 1}));
  EXPECT_FALSE(DecodeGraphCache(true).Eligible(l, {1, 0}));
  EXPECT_FALSE(DecodeGraphCache(true).Eligible(l, {0}));

  StepBatch prefill;
  Add(prefill, 1, {1, 2}, 0, {0});
  EXPECT_FALSE(DecodeGraphCache(true).Eligible(FlattenStep(prefill, 4), {1}));
}

}  // namespace
}  // namespace tpserve
