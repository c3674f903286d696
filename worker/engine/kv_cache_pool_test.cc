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
  float* k = static_cast<float*>(pool->k(29));
  k[10 * 16 * 3 * 64 - 1] = 1.0f;
  EXPECT_EQ(KvCachePool::BlocksForBudget(s, 100).status().code(),
            absl::StatusCode::kResourceExhausted);
  s.head_dim = 0;
  EXPECT_EQ(KvCachePool::BlocksForBudget(s, 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCachePool::Create(s, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCachePoolTest, Bf16HoldsTwiceTheBlocksOfF32) {
  KvCacheShape s{.num_layers = 30, .n_kv_heads = 3, .head_dim = 64, .block_size = 16};
  const int64_t budget = int64_t{64} << 20;
  absl::StatusOr<int> f32 = KvCachePool::BlocksForBudget(s, budget);
  s.dtype = DType::kBF16;
  EXPECT_EQ(KvCachePool::BlockBytes(s), 2 * 30 * 16 * 3 * 64 * 2);
  absl::StatusOr<int> bf16 = KvCachePool::BlocksForBudget(s, budget);
  ASSERT_TRUE(f32.ok() && bf16.ok());
  EXPECT_EQ(*f32, 91);
  EXPECT_EQ(*bf16, 182);
  absl::StatusOr<KvCachePool> pool = KvCachePool::Create(s, *bf16);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->dtype(), DType::kBF16);
  // The last bf16 element of the last layer is writable.
  static_cast<uint16_t*>(pool->v(29))[int64_t{182} * 16 * 3 * 64 - 1] = 0x3F80;
  s.dtype = DType::kF16;
  EXPECT_EQ(KvCachePool::BlocksForBudget(s, budget).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCachePool::Create(s, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ResolveKvDTypeTest, AutoIsBf16) {
  EXPECT_EQ(*ResolveKvDType("auto"), DType::kBF16);
  EXPECT_EQ(*ResolveKvDType("f32"), DType::kF32);
  EXPECT_EQ(*ResolveKvDType("bf16"), DType::kBF16);
  for (const char* bad : {"", "BF16", "f16", "fp8"}) {
    absl::Status s = ResolveKvDType(bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("--kv_dtype must be auto, f32 or bf16"), absl::string_view::npos)
        << s;
  }
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
