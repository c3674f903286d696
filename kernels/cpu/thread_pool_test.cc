#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve::kernels {
namespace {

TEST(ThreadPoolTest, CoversRangeExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 7, 100, 10007}) {
      for (int64_t grain : {1, 16, 1000}) {
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << i;
      }
    }
  }
}

TEST(ThreadPoolTest, ManyShortJobsBackToBack) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int rep = 0; rep < 20000; ++rep) {
    pool.ParallelFor(64, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  }
  EXPECT_EQ(total.load(), 64 * 20000);
}

TEST(ThreadPoolTest, UsesMoreThanOneThread) {
  ThreadPool pool(2);
  std::atomic<int> distinct{0};
  std::atomic<bool> seen_other{false};
  const std::thread::id caller = std::this_thread::get_id();
  for (int rep = 0; rep < 1000 && !seen_other; ++rep) {
    pool.ParallelFor(8, 1, [&](int64_t, int64_t) {
      if (std::this_thread::get_id() != caller) seen_other = true;
      // Long enough for the worker to claim a chunk.
      std::atomic<int> spin{0};
      while (spin.fetch_add(1, std::memory_order_relaxed) < 20000) {
      }
      distinct.fetch_add(1);
    });
  }
  EXPECT_TRUE(seen_other.load());
}

TEST(ThreadPoolTest, NullPoolRunsInline) {
  int64_t covered = 0;
  ParallelFor(nullptr, 10, 3, [&](int64_t b, int64_t e) { covered += e - b; });
  EXPECT_EQ(covered, 10);
}

}  // namespace
}  // namespace tpserve::kernels
