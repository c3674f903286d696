#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TPS_CPU_RELAX() _mm_pause()
#else
#define TPS_CPU_RELAX() ((void)0)
#endif

namespace tpserve::kernels {
namespace {

// How long a worker spins for the next job before sleeping. Decode issues a
// kernel every ~10-50 us, so 200 us keeps workers awake through a step
// without burning a core between steps.
constexpr int64_t kSpinMicros = 200;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  workers_.reserve(num_threads_ - 1);
  // Workers start from generation 0, not from whatever they would read once
  // scheduled: a job posted before a worker first runs must not be missed.
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(0); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunChunks() {
  for (;;) {
    const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= job_chunks_) return;
    const int64_t begin = job_n_ * c / job_chunks_;
    const int64_t end = job_n_ * (c + 1) / job_chunks_;
    if (begin < end) (*job_)(begin, end);
  }
}

void ThreadPool::WorkerLoop(uint32_t seen) {
  for (;;) {
    // Spin, then sleep, until the generation moves.
    uint32_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      const int64_t deadline = NowMicros() + kSpinMicros;
      int spins = 0;
      while ((g = generation_.load(std::memory_order_acquire)) == seen) {
        TPS_CPU_RELAX();
        if (++spins == 64) {
          spins = 0;
          if (NowMicros() > deadline) {
            generation_.wait(seen, std::memory_order_acquire);
          }
        }
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    RunChunks();
    busy_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int64_t chunks = std::min<int64_t>(max_chunks, 4 * num_threads_);
  if (num_threads_ == 1 || chunks == 1) {
    fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_chunks_ = chunks;
  next_chunk_.store(0, std::memory_order_relaxed);
  busy_workers_.store(num_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  RunChunks();
  int spins = 0;
  while (busy_workers_.load(std::memory_order_acquire) != 0) {
    TPS_CPU_RELAX();
    if (++spins > 4096) std::this_thread::yield();
  }
  job_ = nullptr;
}

void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (pool == nullptr) {
    if (n > 0) fn(0, n);
    return;
  }
  pool->ParallelFor(n, grain, fn);
}

}  // namespace tpserve::kernels
