#include "worker/engine/kv_cache_pool.h"

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(KvCachePoolTest, BudgetDecidesBlockCount) {
  KvCacheShape s{.num_layers = 30, .n_kv_heads = 3, .head_dim = 64, .block_size = 16};
  EXPECT_EQ(KvCachePool::BlockBytes(s), 2 * 30 * 16 * 3 * 64 * 4);
  absl::StatusOr<int> blocks = KvCachePool::BlocksForBudget(s, 10 * KvCachePool::BlockBytes(s) + 5);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ(*blocks, 10);
  absl::StatusOr<KvCachePool> pool = KvCachePool::Create(s, *blocks);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->num_blocks(), 10);
  // Every slot of the last block of the last layer is writable.
  float* k = pool->k(29);
  k[10 * 16 * 3 * 64 - 1] = 1.0f;
  EXPECT_EQ(KvCachePool::BlocksForBudget(s, 100).status().code(),
            absl::StatusCode::kResourceExhausted);
  s.head_dim = 0;
  EXPECT_EQ(KvCachePool::BlocksForBudget(s, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCachePool::Create(s, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCachePoolTest, BlockTablesAreChecked) {
  KvCacheShape s{.num_layers = 1, .n_kv_heads = 1, .head_dim = 8, .block_size = 4};
  absl::StatusOr<KvCachePool> pool = KvCachePool::Create(s, 4);
  ASSERT_TRUE(pool.ok());
  EXPECT_TRUE(pool->CheckBlockTable({0, 3}, 8).ok());
  EXPECT_FALSE(pool->CheckBlockTable({0, 3}, 9).ok());  // too short
  EXPECT_FALSE(pool->CheckBlockTable({0, 4}, 8).ok());  // id out of range
  EXPECT_FALSE(pool->CheckBlockTable({-1}, 1).ok());
}

TEST(BlockAllocatorTest, RefCountsAndExhaustion) {
  BlockAllocator a(3);
  absl::StatusOr<std::vector<int32_t>> x = a.Allocate(2);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(a.num_free(), 1);
  EXPECT_EQ(a.Allocate(2).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.num_free(), 1);  // a failed allocation takes nothing
  a.Share((*x)[0]);
  EXPECT_EQ(a.ref_count((*x)[0]), 2);
  a.Free(*x);
  EXPECT_EQ(a.num_free(), 2);  // the shared block is still held
  a.Free({(*x)[0]});
  EXPECT_EQ(a.num_free(), 3);
}

}  // namespace
}  // namespace tpserve
