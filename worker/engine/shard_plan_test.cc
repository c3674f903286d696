#include "worker/engine/shard_plan.h"

#include <set>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

ModelConfig Config(int heads, int kv_heads, int ffn = 1536, int vocab = 49152) {
  ModelConfig c;
  c.hidden_size = 576;
  c.num_layers = 30;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = 64;
  c.ffn_size = ffn;
  c.vocab_size = vocab;
  return c;
}

// Invariants every plan must meet: each query head on exactly one rank, the
// rank's KV heads cover its query heads' groups with one uniform local GQA
// group, FFN and vocab tile [0, n) without overlap.
void CheckPlanCovers(const ModelConfig& c, int world) {
  SCOPED_TRACE(testing::Message() << c.num_heads << "q/" << c.num_kv_heads << "kv at TP=" << world);
  std::vector<int> q_owner(c.num_heads, 0);
  int64_t ffn_next = 0, vocab_next = 0;
  uint64_t fp = 0;
  for (int r = 0; r < world; ++r) {
    absl::StatusOr<ShardPlan> plan = ShardPlan::Create(c, world, r);
    ASSERT_TRUE(plan.ok()) << plan.status();
    if (r == 0) fp = plan->Fingerprint();
    EXPECT_EQ(plan->Fingerprint(), fp);  // same plan from every rank's view
    const RankShard& s = plan->mine();
    ASSERT_GT(s.q_heads.count, 0);
    ASSERT_GT(s.kv_heads.count, 0);
    ASSERT_EQ(s.q_heads.count % s.kv_heads.count, 0);
    const int local_group = s.q_heads.count / s.kv_heads.count;
    const int group = c.num_heads / c.num_kv_heads;
    for (int64_t h = s.q_heads.begin; h < s.q_heads.end(); ++h) {
      ++q_owner[h];
      // Local mapping h_local / local_group must name the global KV head h / group.
      EXPECT_EQ(s.kv_heads.begin + (h - s.q_heads.begin) / local_group, h / group);
    }
    EXPECT_EQ(s.ffn.begin, ffn_next);
    EXPECT_EQ(s.ffn.begin % 32, 0);
    ffn_next = s.ffn.end();
    EXPECT_EQ(s.vocab.begin, vocab_next);
    vocab_next = s.vocab.end();
  }
  for (int h = 0; h < c.num_heads; ++h) EXPECT_EQ(q_owner[h], 1) << "head " << h;
  EXPECT_EQ(ffn_next, c.ffn_size);
  EXPECT_EQ(vocab_next, c.vocab_size);
}

TEST(ShardPlanTest, DefaultModelAtTp123) {
  for (int world : {1, 2, 3}) CheckPlanCovers(Config(9, 3), world);
}

TEST(ShardPlanTest, DefaultModelTp2SplitsAlongKvGroups) {
  absl::StatusOr<ShardPlan> p0 = ShardPlan::Create(Config(9, 3), 2, 0);
  absl::StatusOr<ShardPlan> p1 = ShardPlan::Create(Config(9, 3), 2, 1);
  ASSERT_TRUE(p0.ok() && p1.ok());
  EXPECT_FALSE(p0->kv_replicated());
  EXPECT_EQ(p0->mine().kv_heads, (IndexRange{0, 2}));
  EXPECT_EQ(p0->mine().q_heads, (IndexRange{0, 6}));
  EXPECT_EQ(p1->mine().kv_heads, (IndexRange{2, 1}));
  EXPECT_EQ(p1->mine().q_heads, (IndexRange{6, 3}));
  EXPECT_EQ(p0->mine().ffn, (IndexRange{0, 768}));
  EXPECT_EQ(p1->mine().vocab, (IndexRange{24576, 24576}));
}

TEST(ShardPlanTest, EightQueryTwoKvHeadsReplicatesKvAtTp3) {
  CheckPlanCovers(Config(8, 2), 1);
  CheckPlanCovers(Config(8, 2), 2);
  CheckPlanCovers(Config(8, 2), 3);
  CheckPlanCovers(Config(8, 2), 4);
  absl::StatusOr<ShardPlan> p = ShardPlan::Create(Config(8, 2), 3, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->kv_replicated());
  EXPECT_EQ(p->shard(0).kv_heads, (IndexRange{0, 1}));
  EXPECT_EQ(p->shard(1).kv_heads, (IndexRange{0, 1}));
  EXPECT_EQ(p->shard(1).q_heads, (IndexRange{2, 2}));
  EXPECT_EQ(p->shard(2).q_heads, (IndexRange{4, 4}));
}

TEST(ShardPlanTest, OtherShapes) {
  CheckPlanCovers(Config(32, 8, 14336, 128256), 3);
  CheckPlanCovers(Config(14, 2, 4864, 151936), 5);
  CheckPlanCovers(Config(6, 2, 160, 1000), 5);
  CheckPlanCovers(Config(4, 4, 128, 7), 4);
}

TEST(ShardPlanTest, BadWorldOrRankIsAnError) {
  EXPECT_EQ(ShardPlan::Create(Config(9, 3), 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardPlan::Create(Config(9, 3), 2, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardPlan::Create(Config(9, 3), 2, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardPlan::Create(Config(9, 3), 10, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardPlan::Create(Config(9, 4), 2, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShardPlanTest, FingerprintDiffersWhenPlansDiffer) {
  uint64_t a = ShardPlan::Create(Config(9, 3), 2, 0)->Fingerprint();
  uint64_t b = ShardPlan::Create(Config(9, 3), 3, 0)->Fingerprint();
  uint64_t c = ShardPlan::Create(Config(9, 3, 1024), 2, 0)->Fingerprint();
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
}

TEST(ShardPlanTest, SplitEvenlyGivesRemainderToFirstParts) {
  std::vector<IndexRange> r = SplitEvenly(10, 3);
  EXPECT_EQ(r[0], (IndexRange{0, 4}));
  EXPECT_EQ(r[1], (IndexRange{4, 3}));
  EXPECT_EQ(r[2], (IndexRange{7, 3}));
}

}  // namespace
}  // namespace tpserve
