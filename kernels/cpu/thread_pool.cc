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

// state_ packs [generation:32 | chunks:16 | next chunk:16] so that a claim
// is one compare-and-swap that also proves the job is still current.
constexpr uint64_t Pack(uint64_t gen, uint64_t chunks, uint64_t next) {
  return (gen << 32) | (chunks << 16) | next;
}
constexpr uint64_t Chunks(uint64_t s) { return (s >> 16) & 0xFFFF; }
constexpr uint64_t Next(uint64_t s) { return s & 0xFFFF; }

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  wake_.fetch_add(1, std::memory_order_acq_rel);
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunChunks() {
  uint64_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (Next(s) >= Chunks(s)) return;
    // On failure `s` is reloaded: another thread claimed, or a new job began
    // (then we help with that one, which is just as correct).
    if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      continue;
    }
    const int64_t c = static_cast<int64_t>(Next(s));
    const int64_t chunks = static_cast<int64_t>(Chunks(s));
    const int64_t begin = job_n_ * c / chunks;
    const int64_t end = job_n_ * (c + 1) / chunks;
    if (begin < end) (*job_)(begin, end);
    done_chunks_.fetch_add(1, std::memory_order_acq_rel);
    s = state_.load(std::memory_order_acquire);
  }
}

void ThreadPool::WorkerLoop() {
  uint32_t seen = 0;
  for (;;) {
    // Spin, then sleep, until a new job is posted.
    uint32_t w = wake_.load(std::memory_order_acquire);
    if (w == seen) {
      const int64_t deadline = NowMicros() + kSpinMicros;
      int spins = 0;
      while ((w = wake_.load(std::memory_order_acquire)) == seen) {
        TPS_CPU_RELAX();
        if (++spins == 64) {
          spins = 0;
          if (NowMicros() > deadline) wake_.wait(seen, std::memory_order_acquire);
        }
      }
    }
    seen = w;
    if (stop_.load(std::memory_order_acquire)) return;
    RunChunks();
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_chunks = (n + grain - 1) / grain;
  // Two chunks per thread: 1.3 us per call with 2 threads vs 1.7 us with
  // four (BM_ParallelForOverhead, busy machine), still some slack when one
  // thread is preempted.
  const int64_t chunks = std::min<int64_t>(max_chunks, 2 * num_threads_);
  if (num_threads_ == 1 || chunks == 1) {
    fn(0, n);
    return;
  }
  // The previous job is fully done (done_chunks_ reached its count), so no
  // thread reads job_ / job_n_ until the release store of state_ below.
  job_ = &fn;
  job_n_ = n;
  done_chunks_.store(0, std::memory_order_relaxed);
  ++generation_;
  state_.store(Pack(generation_, static_cast<uint64_t>(chunks), 0), std::memory_order_release);
  wake_.fetch_add(1, std::memory_order_acq_rel);
  wake_.notify_all();
  RunChunks();
  // Wait only for chunks claimed by others; a worker that wakes late finds
  // nothing left and costs the caller nothing.
  int spins = 0;
  while (done_chunks_.load(std::memory_order_acquire) != chunks) {
    TPS_CPU_RELAX();
    if (++spins > 4096) std::this_thread::yield();
  }
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
