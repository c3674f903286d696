// Block scheduling of the CUDA emulator (grid.h).
#include "kernels/cuda/emu/grid.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cuda/emu/memory_model.h"
#include "kernels/cuda/emu/scheduler.h"

namespace tpserve_emu {
namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

int Threads() {
  static const int n =
      static_cast<int>(std::clamp<uint64_t>(EnvOr("TPSERVE_CUDA_EMU_THREADS", 2), 1, 64));
  return n;
}

// Persistent helper threads; one grid at a time uses them (a second host
// thread launching meanwhile runs its grid on its own thread).
class Pool {
 public:
  explicit Pool(int helpers) {
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { Loop(); });
  }

  // Runs job(i) for every i in [0, n) on the helpers and the caller.
  // False when the pool is busy with another grid.
  bool Run(int n, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      n_ = n;
      next_ = 0;
      running_ = static_cast<int>(threads_.size());
      ++generation_;
    }
    wake_.notify_all();
    Work(job, n);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return running_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void Work(const std::function<void(int)>& job, int n) {
    for (int i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) job(i);
  }
  void Loop() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      int n;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
        n = n_;
      }
      Work(*job, n);
      std::lock_guard<std::mutex> lock(mu_);
      if (--running_ == 0) done_.notify_all();
    }
  }

  std::mutex busy_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int n_ = 0;
  std::atomic<int> next_{0};
  int running_ = 0;
  uint64_t generation_ = 0;
  std::vector<std::thread> threads_;
};

Pool* ThePool() {
  // Leaked: helper threads outlive static destruction.
  static Pool* pool = Threads() > 1 ? new Pool(Threads() - 1) : nullptr;
  return pool;
}

// Per launching thread, so a single-threaded program sees the same orders
// on every run.
thread_local uint64_t g_launches = 0;

}  // namespace

void GridBarrier::Arrive() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto fail_if_ended = [this] {
    if (ended_) {
      Fail(
          "grid.sync: waits for block (%u,%u,%u), which ended without reaching this grid "
          "barrier (on the device the grid would hang)",
          first_ended_.x, first_ended_.y, first_ended_.z);
    }
  };
  fail_if_ended();
  const uint64_t generation = generation_;
  if (++arrived_ == blocks_) {
    arrived_ = 0;
    ++generation_;
    passed_.notify_all();
    return;
  }
  passed_.wait(lock, [&] { return generation_ != generation || ended_; });
  if (generation_ == generation) fail_if_ended();
}

void GridBarrier::Leave() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ended_) first_ended_ = g_block->idx;
  ended_ = true;
  if (arrived_ > 0) {
    Fail(
        "a block ended while %llu other blocks wait at grid.sync (on the device the grid "
        "would hang)",
        static_cast<unsigned long long>(arrived_));
  }
  passed_.notify_all();
}

namespace {
// NoteNonCoherentRead (emu.h): every __ldg of a cooperative grid must find
// its bytes unchanged once the grid has ended.
void CheckNonCoherentReads(const char* kernel,
                           const std::vector<std::vector<NonCoherentRead>>& reads) {
  for (const std::vector<NonCoherentRead>& block : reads) {
    for (const NonCoherentRead& r : block) {
      if (std::memcmp(r.p, r.value, r.bytes) != 0) {
        // Not a block of this grid: the one a programmatic launch after it
        // may have parked on this thread (RunPrimary) would be named.
        g_block = nullptr;
        Fail(
            "%s: an __ldg (ld.global.nc) read %zu bytes at %p that the same cooperative launch "
            "then wrote: the read-only path is outside the PTX memory model and a grid.sync "
            "does not order it (PTX ISA, \"Scope and applicability of the model\"); read memory "
            "the launch writes with plain loads",
            kernel, r.bytes, r.p);
      }
    }
  }
}
}  // namespace

uint64_t ScheduleSeed() {
  static const uint64_t seed = EnvOr("TPSERVE_CUDA_EMU_SEED", 1);
  return seed;
}

namespace {
struct GridCounts {
  std::mutex mu;
  // Kernel name -> grids run. Names are literals (launch.cuh, rewrite_cu.py):
  // counted by pointer on the launch path, compared as text when asked.
  std::map<const char*, uint64_t> runs;
};
GridCounts& Counts() {
  static GridCounts* counts = new GridCounts();  // leaked: used until exit
  return *counts;
}
}  // namespace

uint64_t GridsRun(const char* prefix) {
  std::lock_guard<std::mutex> lock(Counts().mu);
  uint64_t n = 0;
  const size_t length = std::strlen(prefix);
  for (const auto& [name, runs] : Counts().runs) {
    if (std::strncmp(name, prefix, length) == 0) n += runs;
  }
  return n;
}

void RunGrid(const LaunchConfig& c, const std::function<void()>& check,
             const std::function<void()>& body, const std::function<void()>* primary) {
  {
    std::lock_guard<std::mutex> lock(Counts().mu);
    ++Counts().runs[c.name != nullptr ? c.name : ""];
  }
  if (primary != nullptr && ModelEnabled()) {
    (*primary)();
    primary = nullptr;
  }
  check();
  const uint64_t seed = ScheduleSeed();
  const uint64_t launch = ++g_launches;
  const uint64_t grid_blocks = uint64_t{c.grid.x} * c.grid.y * c.grid.z;
  // All blocks, or the memory model's sample of them, evenly spread (a
  // cooperative grid's blocks wait for each other: all of them).
  const uint64_t blocks = c.cooperative ? grid_blocks : ModelSampledBlocks(grid_blocks);
  std::vector<uint64_t> order(blocks);
  for (uint64_t i = 0; i < blocks; ++i) order[i] = i * grid_blocks / blocks;
  if (seed != 0) {
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + launch);
    std::shuffle(order.begin(), order.end(), rng);
  }
  // `shared`: the block's dynamic shared memory (room for 128-byte alignment).
  GridBarrier barrier(blocks);
  std::vector<std::vector<NonCoherentRead>> non_coherent_reads(c.cooperative ? blocks : 0);
  auto run_block = [&](uint64_t i, std::vector<unsigned char>& shared,
                       const std::function<void()>* wait_for) {
    const uint64_t linear = order[i];
    shared.resize(c.shared_bytes + 128);
    Block b;
    b.idx = uint3{static_cast<unsigned>(linear % c.grid.x),
                  static_cast<unsigned>(linear / c.grid.x % c.grid.y),
                  static_cast<unsigned>(linear / (uint64_t{c.grid.x} * c.grid.y))};
    b.dim = c.block;
    b.grid = c.grid;
    // Uninitialised shared memory reads as NaN.
    std::memset(shared.data(), 0xff, shared.size());
    b.dynamic_shared =
        shared.data() + (128 - reinterpret_cast<uintptr_t>(shared.data()) % 128) % 128;
    b.dynamic_shared_bytes = c.shared_bytes;
    if (c.cooperative) {
      b.grid_barrier = &barrier;
      b.non_coherent_reads = &non_coherent_reads[i];
    }
    ModelBlockBegin(c.block.x * c.block.y * c.block.z);
    RunBlock(b, body, c.name, seed == 0 ? 0 : seed ^ (launch << 20) ^ linear, wait_for);
    ModelBlockEnd();
  };
  ModelLaunchBegin(c.name, grid_blocks, blocks);
  struct EndLaunch {
    ~EndLaunch() { ModelLaunchEnd(); }
  } end_launch;
  if (c.cooperative) {
    // Every block at once, on threads of its own (the pool's helpers run
    // blocks one after another: a block waiting at grid.sync would stall
    // them). A cooperative launch is never programmatic (Submit).
    std::vector<std::thread> threads;
    threads.reserve(blocks);
    for (uint64_t i = 0; i < blocks; ++i) {
      threads.emplace_back([&run_block, i] {
        std::vector<unsigned char> shared;
        run_block(i, shared, nullptr);
      });
    }
    for (std::thread& t : threads) t.join();
    CheckNonCoherentReads(c.name, non_coherent_reads);
    return;
  }
  uint64_t first = 0;  // blocks before it have run
  if (primary != nullptr) {
    // Block j waits for block j + 1 (nested on this thread, each with its
    // own shared memory), the last parked one for the primary.
    first = std::min<uint64_t>(blocks, kProgrammaticBlocks);
    std::function<void(uint64_t)> park = [&](uint64_t j) {
      if (j == first) {
        (*primary)();
        return;
      }
      std::vector<unsigned char> shared;
      const std::function<void()> next = [&park, j] { park(j + 1); };
      run_block(j, shared, &next);
    };
    park(0);
  }
  const std::function<void(int)> job = [&](int i) {
    thread_local std::vector<unsigned char> shared;
    run_block(first + static_cast<uint64_t>(i), shared, nullptr);
  };
  const uint64_t rest = blocks - first;
  if (rest > 1 && ThePool() != nullptr && ThePool()->Run(static_cast<int>(rest), job)) return;
  for (uint64_t i = 0; i < rest; ++i) job(static_cast<int>(i));
}

}  // namespace tpserve_emu
