// A small persistent thread pool for CPU kernels. The calling thread takes
// part in every ParallelFor, so ThreadPool(2) starts one extra thread.
//
// Kernels are short (a decode GEMV is tens of microseconds), so workers spin
// briefly on an atomic generation counter before sleeping on it (futex via
// std::atomic::wait): a condition-variable wake-up per op would cost more
// than the op. Spinning is bounded (kSpinMicros) because the machine may be
// shared.
//
//   ThreadPool pool(2);
//   pool.ParallelFor(n, /*grain=*/64, [&](int64_t begin, int64_t end) {
//     for (int64_t i = begin; i < end; ++i) y[i] = f(i);
//   });
//
// ParallelFor is not reentrant: call it from one thread at a time and never
// from inside a task.
#ifndef TPSERVE_KERNELS_CPU_THREAD_POOL_H_
#define TPSERVE_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace tpserve::kernels {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the caller; num_threads - 1 threads start.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n), each at least
  // `grain` long (except the last), and returns when all are done. Chunks are
  // claimed dynamically, at most 2 per thread; the caller never waits for a
  // worker that has not started (on a busy machine it runs those chunks).
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void WorkerLoop();
  void RunChunks();

  const int num_threads_;
  std::vector<std::thread> workers_;

  // Current job: written by the caller before the release store of state_,
  // read by whoever claims a chunk of it.
  const absl::FunctionRef<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  uint64_t generation_ = 0;              // caller-only job counter
  std::atomic<uint64_t> state_{0};       // [generation | chunks | next chunk]
  std::atomic<int64_t> done_chunks_{0};  // chunks of the current job finished
  std::atomic<uint32_t> wake_{0};        // bumped per job; workers sleep on it
  std::atomic<bool> stop_{false};
};

// Runs fn over [0, n) on `pool`, or inline when pool is null or n is small.
void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 absl::FunctionRef<void(int64_t, int64_t)> fn);

}  // namespace tpserve::kernels

#endif  // TPSERVE_KERNELS_CPU_THREAD_POOL_H_
