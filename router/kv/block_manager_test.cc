#include "router/kv/block_manager.h"

#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

std::vector<int32_t> Iota(int32_t n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(BlockManagerTest, AllocatesGrowsAndFrees) {
  BlockManager bm(/*num_blocks=*/8, /*block_size=*/4);
  EXPECT_EQ(bm.UsageRatio(), 0.0);
  ASSERT_TRUE(bm.Allocate(1, 5).ok());  // 2 blocks
  EXPECT_EQ(bm.BlockTable(1).size(), 2u);
  ASSERT_TRUE(bm.Allocate(1, 8).ok());  // still 2
  EXPECT_EQ(bm.BlockTable(1).size(), 2u);
  ASSERT_TRUE(bm.Allocate(1, 9).ok());  // 3
  EXPECT_EQ(bm.BlockTable(1).size(), 3u);
  EXPECT_DOUBLE_EQ(bm.UsageRatio(), 3.0 / 8);
  EXPECT_EQ(bm.NumAvailableBlocks(), 5);
  ASSERT_TRUE(bm.CheckInvariants().ok());
  bm.Free(1);
  EXPECT_FALSE(bm.HasSequence(1));
  EXPECT_EQ(bm.UsageRatio(), 0.0);
  EXPECT_EQ(bm.NumAvailableBlocks(), 8);
  ASSERT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, OutOfBlocksIsResourceExhaustedAndChangesNothing) {
  BlockManager bm(4, 4);
  ASSERT_TRUE(bm.Allocate(1, 12).ok());  // 3 blocks
  EXPECT_TRUE(bm.CanAllocate(2, 4));
  EXPECT_FALSE(bm.CanAllocate(2, 5));
  absl::Status s = bm.Allocate(2, 5);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("KV cache full"), absl::string_view::npos);
  EXPECT_FALSE(bm.HasSequence(2));
  EXPECT_EQ(bm.NumAvailableBlocks(), 1);
  s = bm.Allocate(1, 17);  // needs 2 more, 1 available
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(bm.BlockTable(1).size(), 3u);
  ASSERT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, NeverHandsOutABlockTwice) {
  BlockManager bm(16, 2);
  std::set<int32_t> seen;
  for (uint64_t seq = 0; seq < 8; ++seq) {
    ASSERT_TRUE(bm.Allocate(seq, 4).ok());
    for (int32_t b : bm.BlockTable(seq)) EXPECT_TRUE(seen.insert(b).second) << b;
  }
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(bm.Allocate(99, 1).code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockManagerTest, PrefixCacheReusesComputedFullBlocks) {
  BlockManager bm(16, 4);
  const std::vector<int32_t> prompt = Iota(10);  // 2 full blocks + 2 tokens
  PrefixMatch none = bm.FindCachedPrefix(prompt);
  EXPECT_EQ(none.num_tokens, 0);
  ASSERT_TRUE(bm.Allocate(1, 10, &none).ok());
  bm.CacheComputedBlocks(1, prompt, 10);
  EXPECT_EQ(bm.stats().num_cached_blocks, 2);
  EXPECT_EQ(bm.stats().prefix_queries_tokens, 10);
  EXPECT_EQ(bm.stats().prefix_hits_tokens, 0);

  // Same first 8 tokens, different tail.
  std::vector<int32_t> other = Iota(8);
  other.push_back(100);
  PrefixMatch hit = bm.FindCachedPrefix(other);
  EXPECT_EQ(hit.num_tokens, 8);
  ASSERT_EQ(hit.blocks.size(), 2u);
  EXPECT_EQ(hit.blocks[0], bm.BlockTable(1)[0]);
  EXPECT_EQ(hit.blocks[1], bm.BlockTable(1)[1]);
  ASSERT_TRUE(bm.Allocate(2, 9, &hit).ok());
  EXPECT_EQ(bm.BlockTable(2)[0], bm.BlockTable(1)[0]);  // the 8 cached tokens
  EXPECT_EQ(bm.BlockTable(2)[1], bm.BlockTable(1)[1]);
  EXPECT_NE(bm.BlockTable(2)[2], bm.BlockTable(1)[2]);
  EXPECT_EQ(bm.stats().prefix_queries_tokens, 19);
  EXPECT_EQ(bm.stats().prefix_hits_tokens, 8);
  // Shared blocks count once in usage: 3 + 1 new.
  EXPECT_EQ(bm.stats().num_used_blocks, 4);
  ASSERT_TRUE(bm.CheckInvariants().ok());

  // Freeing one holder keeps the shared blocks in use; freeing both leaves
  // them cached but unreferenced (usage 0, still reusable).
  bm.Free(1);
  EXPECT_EQ(bm.stats().num_used_blocks, 3);
  bm.Free(2);
  EXPECT_EQ(bm.UsageRatio(), 0.0);
  EXPECT_EQ(bm.stats().num_cached_blocks, 2);
  EXPECT_EQ(bm.FindCachedPrefix(prompt).num_tokens, 8);
  ASSERT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, PrefixMatchLeavesOneTokenToCompute) {
  BlockManager bm(16, 4);
  const std::vector<int32_t> prompt = Iota(8);  // exactly 2 blocks
  ASSERT_TRUE(bm.Allocate(1, 8).ok());
  bm.CacheComputedBlocks(1, prompt, 8);
  // The whole prompt is cached, but the last token must run: 1 block only.
  EXPECT_EQ(bm.FindCachedPrefix(prompt).num_tokens, 4);
  std::vector<int32_t> longer = Iota(9);
  EXPECT_EQ(bm.FindCachedPrefix(longer).num_tokens, 8);
}

TEST(BlockManagerTest, DifferentParentsDoNotMatch) {
  BlockManager bm(16, 2);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5};
  ASSERT_TRUE(bm.Allocate(1, 5).ok());
  bm.CacheComputedBlocks(1, a, 5);
  // Second block's tokens equal, first differs: nothing matches.
  const std::vector<int32_t> b = {9, 9, 3, 4, 5};
  EXPECT_EQ(bm.FindCachedPrefix(b).num_tokens, 0);
  // Only computed tokens are cached.
  BlockManager bm2(16, 2);
  ASSERT_TRUE(bm2.Allocate(1, 5).ok());
  bm2.CacheComputedBlocks(1, a, 3);
  EXPECT_EQ(bm2.FindCachedPrefix(a).num_tokens, 2);
}

TEST(BlockManagerTest, EvictsLeastRecentlyReleasedCachedBlocks) {
  BlockManager bm(4, 2);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5};
  ASSERT_TRUE(bm.Allocate(1, 5).ok());  // 3 blocks
  bm.CacheComputedBlocks(1, a, 5);      // 2 cached
  bm.Free(1);
  EXPECT_EQ(bm.NumAvailableBlocks(), 4);
  // Needs all 4 blocks: the 2 free ones, then evicts the cached ones, the
  // tail block (released first) before the head block.
  ASSERT_TRUE(bm.Allocate(2, 6).ok());
  EXPECT_EQ(bm.stats().num_evictions, 1);
  EXPECT_EQ(bm.FindCachedPrefix(a).num_tokens, 2);  // head block survives
  ASSERT_TRUE(bm.Allocate(2, 8).ok());
  EXPECT_EQ(bm.stats().num_evictions, 2);
  EXPECT_EQ(bm.FindCachedPrefix(a).num_tokens, 0);
  EXPECT_EQ(bm.stats().num_cached_blocks, 0);
  ASSERT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, PrefixBlocksInLruAreNotCountedTwice) {
  BlockManager bm(3, 2);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5};
  ASSERT_TRUE(bm.Allocate(1, 5).ok());
  bm.CacheComputedBlocks(1, a, 5);
  bm.Free(1);  // 2 evictable + 1 free
  PrefixMatch hit = bm.FindCachedPrefix(a);
  ASSERT_EQ(hit.num_tokens, 4);
  // Reusing 2 evictable blocks leaves 1 block: 6 tokens fit, 7 do not.
  EXPECT_EQ(bm.Allocate(2, 7, &hit).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(bm.Allocate(2, 6, &hit).ok());
  EXPECT_EQ(bm.stats().num_evictions, 0);
  EXPECT_DOUBLE_EQ(bm.UsageRatio(), 1.0);
  ASSERT_TRUE(bm.CheckInvariants().ok());
}

TEST(BlockManagerTest, StalePrefixMatchIsRejected) {
  BlockManager bm(2, 2);
  const std::vector<int32_t> a = {1, 2, 3};
  ASSERT_TRUE(bm.Allocate(1, 3).ok());
  bm.CacheComputedBlocks(1, a, 3);
  bm.Free(1);
  PrefixMatch hit = bm.FindCachedPrefix(a);
  ASSERT_EQ(hit.num_tokens, 2);
  ASSERT_TRUE(bm.Allocate(2, 4).ok());  // evicts the cached block
  bm.Free(2);
  EXPECT_EQ(bm.Allocate(3, 3, &hit).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(bm.HasSequence(3));
}

TEST(BlockManagerTest, DisabledPrefixCacheNeverMatches) {
  BlockManager bm(8, 2, /*enable_prefix_cache=*/false);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5};
  ASSERT_TRUE(bm.Allocate(1, 5).ok());
  bm.CacheComputedBlocks(1, a, 5);
  EXPECT_EQ(bm.FindCachedPrefix(a).num_tokens, 0);
  EXPECT_EQ(bm.stats().num_cached_blocks, 0);
  bm.Free(1);
  EXPECT_EQ(bm.NumAvailableBlocks(), 8);
}

// Seeded random walk over allocate / cache / free with shared prefixes,
// checking every invariant after each operation.
TEST(BlockManagerTest, RandomizedInvariants) {
  std::mt19937 rng(1234);
  BlockManager bm(64, 4);
  std::vector<std::vector<int32_t>> live_tokens(32);
  std::vector<bool> live(32, false);
  for (int iter = 0; iter < 3000; ++iter) {
    const uint64_t seq = rng() % 32;
    const int op = rng() % 4;
    if (!live[seq]) {
      // Prompts drawn from a tiny vocabulary share prefixes often.
      std::vector<int32_t> prompt(1 + rng() % 20);
      for (int32_t& t : prompt) t = rng() % 2;
      PrefixMatch hit = bm.FindCachedPrefix(prompt);
      ASSERT_LT(hit.num_tokens, static_cast<int32_t>(prompt.size()));
      absl::Status s = bm.Allocate(seq, prompt.size(), &hit);
      if (s.ok()) {
        live[seq] = true;
        live_tokens[seq] = prompt;
        bm.CacheComputedBlocks(seq, prompt, prompt.size());
      } else {
        ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        ASSERT_FALSE(bm.HasSequence(seq));
      }
    } else if (op == 0) {
      bm.Free(seq);
      live[seq] = false;
    } else {
      std::vector<int32_t>& tokens = live_tokens[seq];
      const int32_t before = static_cast<int32_t>(bm.BlockTable(seq).size());
      if (bm.Allocate(seq, tokens.size() + 1).ok()) {
        tokens.push_back(rng() % 2);
        bm.CacheComputedBlocks(seq, tokens, tokens.size());
      } else {
        ASSERT_EQ(static_cast<int32_t>(bm.BlockTable(seq).size()), before);
      }
    }
    absl::Status inv = bm.CheckInvariants();
    ASSERT_TRUE(inv.ok()) << "iteration " << iter << ": " << inv;
  }
  for (uint64_t seq = 0; seq < 32; ++seq) bm.Free(seq);
  EXPECT_EQ(bm.UsageRatio(), 0.0);
  EXPECT_GT(bm.stats().prefix_hits_tokens, 0);
  ASSERT_TRUE(bm.CheckInvariants().ok());
}

}  // namespace
}  // namespace tpserve
