// Fiber scheduler of the CUDA emulator: runs one block's threads as stackful
// fibers, releasing them at __syncthreads and at warp collectives, and aborts
// with the stuck threads named when a barrier can never complete.
#include "kernels/cuda/emu/scheduler.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/emu/grid.h"
#include "kernels/cuda/emu/memory_model.h"
#include "kernels/cuda/emu/tma_sm90_emu.h"

// Switches stacks: saves the callee-saved registers on the current stack,
// stores its pointer in *from, loads `to` and pops the registers saved there.
// (System V x86-64: the caller already saved everything else.)
extern "C" void tpserve_emu_switch(void** from, void* to);
asm(R"(
.text
.globl tpserve_emu_switch
.type tpserve_emu_switch, @function
tpserve_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size tpserve_emu_switch, .-tpserve_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");

// ThreadSanitizer must be told about every stack switch (its fiber API);
// switches synchronise (flag 0), so only races between OS threads, i.e.
// between blocks, are reported (scripts/gpu_emu_tsan.sh).
#if defined(__SANITIZE_THREAD__)
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#define TPSERVE_EMU_TSAN 1
#else
#define TPSERVE_EMU_TSAN 0
#endif

namespace tpserve_emu {

thread_local Thread* g_thread = nullptr;
thread_local Block* g_block = nullptr;

namespace {

// Fiber stacks: big enough for unrolled kernels with register arrays; the
// lowest page is a guard so an overflow faults instead of corrupting.
constexpr size_t kStackBytes = 512 * 1024;
constexpr size_t kGuardBytes = 4096;

enum class State {
  kRunnable,
  kBlockBarrier,
  kWarpBarrier,
  kGridWait,     // griddepcontrol.wait
  kGridBarrier,  // grid.sync()
  kMbarrierWait,
  kDone
};

struct Fiber {
  Thread thread;
  State state = State::kRunnable;
  const char* waiting_on = nullptr;
  const void* mbarrier = nullptr;  // kMbarrierWait: the barrier and phase parity
  uint32_t parity = 0;
  void* sp = nullptr;  // saved stack pointer while switched out
  void* stack = nullptr;
  void* tsan_fiber = nullptr;
};

struct Run {
  const KernelBody* body = nullptr;
  const char* kernel_name = nullptr;
  std::vector<Fiber>* fibers = nullptr;
  void* scheduler_sp = nullptr;
  void* scheduler_tsan_fiber = nullptr;
  // Per-warp exchange slots for WarpExchange.
  std::vector<unsigned char> slots;  // warps * 32 * 64 bytes
  // Programmatic dependent launch: what griddepcontrol.wait waits for, and
  // whether it has run.
  const std::function<void()>* primary = nullptr;
  bool primary_done = false;
};

thread_local Run* g_run = nullptr;
thread_local Fiber* g_fiber = nullptr;
// Static __shared__ variables of this OS thread (registered by StaticShared).
thread_local std::vector<std::pair<void*, size_t>>* g_static_shared = nullptr;

// Free fiber stacks, one pool for the process: blocks run on whichever thread
// waits for their stream (a server's pool threads come and go), and stacks
// kept per thread were lost with the thread, until a long-running worker ran
// out of memory mappings ("cannot map a fiber stack").
struct StackPool {
  std::mutex mu;
  std::vector<void*> free;
};
StackPool& Stacks() {
  static StackPool* pool = new StackPool();  // leaked: used until exit
  return *pool;
}

void* TakeStack() {
  {
    std::lock_guard<std::mutex> lock(Stacks().mu);
    if (!Stacks().free.empty()) {
      void* s = Stacks().free.back();
      Stacks().free.pop_back();
      return s;
    }
  }
  void* s = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (s == MAP_FAILED) Fail("cannot map a fiber stack");
  mprotect(s, kGuardBytes, PROT_NONE);
  return s;
}

void ReturnStack(void* s) {
  std::lock_guard<std::mutex> lock(Stacks().mu);
  Stacks().free.push_back(s);
}

// Switches from the running fiber back to the block's scheduler loop.
void ToScheduler() {
#if TPSERVE_EMU_TSAN
  __tsan_switch_to_fiber(g_run->scheduler_tsan_fiber, 0);
#endif
  tpserve_emu_switch(&g_fiber->sp, g_run->scheduler_sp);
}

[[noreturn]] void FiberMain() {
  (*g_run->body)();
  Thread& t = *g_thread;
  // The hardware drops a wgmma's result when the thread exits first.
  if (!t.wgmma_ops.empty()) {
    Fail("the kernel ended with %zu wgmma ops not retired by a wgmma.wait_group",
         t.wgmma_ops.size());
  }
  // cp.async copies never waited for still land before the kernel ends.
  for (const AsyncCopy& c : t.async_copies) std::memcpy(c.dst, c.data, c.bytes);
  t.async_copies.clear();
  t.async_groups.clear();
  g_fiber->state = State::kDone;
  ToScheduler();
  __builtin_unreachable();  // a finished fiber is never resumed
}

void Yield() { ToScheduler(); }

// A fresh fiber's stack, as tpserve_emu_switch expects to find it: six zero
// registers, then FiberMain as the return address, then a null frame, with
// the stack 16-byte aligned at FiberMain's entry as after a call.
void* InitialStack(void* stack) {
  uintptr_t top = reinterpret_cast<uintptr_t>(stack) + kStackBytes;
  top &= ~uintptr_t{15};
  void** sp = reinterpret_cast<void**>(top - 64);
  for (int i = 0; i < 6; ++i) sp[i] = nullptr;
  sp[6] = reinterpret_cast<void*>(&FiberMain);
  sp[7] = nullptr;
  return sp;
}

std::string Describe(const std::vector<Fiber>& fibers) {
  std::string out;
  int shown = 0;
  for (const Fiber& f : fibers) {
    if (f.state == State::kDone) continue;
    if (shown++ == 8) {
      out += " ...";
      break;
    }
    char buf[128];
    std::snprintf(buf, sizeof(buf), " thread (%u,%u,%u) at %s;", f.thread.idx.x, f.thread.idx.y,
                  f.thread.idx.z,
                  f.state == State::kBlockBarrier  ? "__syncthreads"
                  : f.state == State::kGridWait    ? "griddepcontrol.wait"
                  : f.state == State::kGridBarrier ? "grid.sync"
                                                   : (f.waiting_on ? f.waiting_on : "?"));
    out += buf;
  }
  return out;
}

// Runs the block's primary grid (once) from the scheduler loop. That grid's
// blocks run on this OS thread too and poison its static __shared__
// variables, which this block still uses: they are put back afterwards.
void RunPrimary(Run& run) {
  run.primary_done = true;
  if (run.primary == nullptr) return;
  std::vector<std::vector<unsigned char>> saved;
  std::vector<std::pair<void*, size_t>> regions;
  if (g_static_shared != nullptr) regions = *g_static_shared;
  for (const auto& [p, bytes] : regions) {
    saved.emplace_back(static_cast<unsigned char*>(p), static_cast<unsigned char*>(p) + bytes);
  }
  (*run.primary)();
  for (size_t i = 0; i < regions.size(); ++i) {
    std::memcpy(regions[i].first, saved[i].data(), regions[i].second);
  }
}

}  // namespace

void Fail(const char* fmt, ...) {
  char msg[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(msg, sizeof(msg), fmt, args);
  va_end(args);
  if (g_block != nullptr && g_run != nullptr) {
    std::fprintf(stderr, "CUDA emulator: %s (kernel %s, block (%u,%u,%u)", msg,
                 g_run->kernel_name ? g_run->kernel_name : "?", g_block->idx.x, g_block->idx.y,
                 g_block->idx.z);
    if (g_fiber != nullptr) {
      std::fprintf(stderr, ", thread (%u,%u,%u)", g_fiber->thread.idx.x, g_fiber->thread.idx.y,
                   g_fiber->thread.idx.z);
    }
    std::fprintf(stderr, ")\n");
  } else {
    std::fprintf(stderr, "CUDA emulator: %s\n", msg);
  }
  std::abort();
}

void SyncThreads() {
  g_fiber->state = State::kBlockBarrier;
  Yield();
}

void GridDependencyWait() {
  if (g_run->primary_done) return;
  g_fiber->state = State::kGridWait;
  Yield();
}

void GridSync() {
  if (g_block->grid_barrier == nullptr) {
    Fail("grid.sync() in a kernel not launched cooperatively (cudaLaunchAttributeCooperative)");
  }
  g_fiber->state = State::kGridBarrier;
  Yield();
}

void YieldToOtherThreads() {
  // Stays runnable; the scheduler resumes the block's other runnable threads
  // (in its order for this interval) before or after it.
  Yield();
}

void MbarrierWait(const void* bar, uint32_t parity) {
  if (MbarrierPhaseDone(bar, parity)) return;
  g_fiber->state = State::kMbarrierWait;
  g_fiber->mbarrier = bar;
  g_fiber->parity = parity;
  g_fiber->waiting_on = "mbarrier.try_wait";
  Yield();  // the phase has completed
  g_fiber->waiting_on = nullptr;
}

const unsigned char (*WarpDeposit(const void* in, size_t bytes, const char* what))[64] {
  if (bytes > 64) Fail("%s: %zu bytes per lane exceed the exchange slot", what, bytes);
  const Block& b = *g_block;
  const unsigned threads = b.dim.x * b.dim.y * b.dim.z;
  if (threads % 32 != 0 && static_cast<unsigned>(g_thread->warp + 1) * 32 > threads) {
    Fail("%s: full-warp collective in a partial warp (block of %u threads)", what, threads);
  }
  auto* slots = reinterpret_cast<unsigned char(*)[64]>(
      g_run->slots.data() + static_cast<size_t>(g_thread->warp) * 32 * 64);
  if (bytes > 0) std::memcpy(slots[g_thread->lane], in, bytes);
  g_fiber->state = State::kWarpBarrier;
  g_fiber->waiting_on = what;
  Yield();  // every lane has deposited
  return slots;
}

void WarpLeave() {
  g_fiber->state = State::kWarpBarrier;
  Yield();  // every lane has read; the slots may be reused
  g_fiber->waiting_on = nullptr;
}

StaticShared::StaticShared(void* p, size_t bytes) {
  std::memset(p, 0xff, bytes);
  if (g_static_shared == nullptr) g_static_shared = new std::vector<std::pair<void*, size_t>>();
  g_static_shared->emplace_back(p, bytes);
}

void RunBlock(Block& block, const KernelBody& body, const char* kernel_name, uint64_t seed,
              const std::function<void()>* primary) {
  // A block never sees the previous block's static shared memory.
  if (g_static_shared != nullptr) {
    for (const auto& [p, bytes] : *g_static_shared) std::memset(p, 0xff, bytes);
  }
  const unsigned n = block.dim.x * block.dim.y * block.dim.z;
  std::vector<Fiber> fibers(n);
  Run run;
#if TPSERVE_EMU_TSAN
  run.scheduler_tsan_fiber = __tsan_get_current_fiber();
#endif
  run.body = &body;
  run.kernel_name = kernel_name;
  run.fibers = &fibers;
  run.primary = primary;
  const unsigned warps = (n + 31) / 32;
  run.slots.assign(static_cast<size_t>(warps) * 32 * 64, 0);
  Run* saved_run = g_run;
  Block* saved_block = g_block;
  g_run = &run;
  g_block = &block;
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = fibers[i];
    f.thread.idx =
        uint3{i % block.dim.x, (i / block.dim.x) % block.dim.y, i / (block.dim.x * block.dim.y)};
    f.thread.linear = static_cast<int>(i);
    f.thread.lane = static_cast<int>(i % 32);
    f.thread.warp = static_cast<int>(i / 32);
    f.stack = TakeStack();
#if TPSERVE_EMU_TSAN
    f.tsan_fiber = __tsan_create_fiber(0);
#endif
    f.sp = InitialStack(f.stack);
  }
  uint64_t rng = seed;
  for (;;) {
    bool progressed = false;
    // Within a barrier interval the hardware promises no order between
    // warps (or lanes, for code outside warp collectives): resume the fibers
    // from a random one, forwards or backwards (cheap enough to redraw for
    // every interval, unlike a full shuffle).
    unsigned start = 0, stride = 1;
    if (seed != 0) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      start = static_cast<unsigned>((rng >> 33) % n);
      stride = (rng >> 32) & 1 ? 1 : n - 1;
    }
    for (unsigned k = 0, i = start; k < n; ++k, i = (i + stride) % n) {
      Fiber& f = fibers[i];
      if (f.state != State::kRunnable) continue;
      g_fiber = &f;
      g_thread = &f.thread;
      ModelSetThread(f.thread.linear);
#if TPSERVE_EMU_TSAN
      __tsan_switch_to_fiber(f.tsan_fiber, 0);
#endif
      tpserve_emu_switch(&run.scheduler_sp, f.sp);
      progressed = true;
    }
    g_fiber = nullptr;
    g_thread = nullptr;
    // Warp collectives complete when all 32 lanes wait at one.
    for (unsigned w = 0; w < warps; ++w) {
      const unsigned lo = w * 32, hi = std::min(n, lo + 32);
      unsigned waiting = 0;
      for (unsigned i = lo; i < hi; ++i) waiting += fibers[i].state == State::kWarpBarrier;
      if (waiting == hi - lo) {
        // Lanes that diverged into different collectives would exchange
        // unrelated values: report it instead of releasing them together.
        for (unsigned i = lo + 1; i < hi; ++i) {
          if (std::strcmp(fibers[i].waiting_on, fibers[lo].waiting_on) != 0) {
            Fail("warp %u: lane 0 is at %s but lane %u at %s (divergent warp collectives)", w,
                 fibers[lo].waiting_on, i - lo, fibers[i].waiting_on);
          }
        }
        for (unsigned i = lo; i < hi; ++i) fibers[i].state = State::kRunnable;
        progressed = true;
      }
    }
    // TMA copies in flight land at a seeded quarter of the scheduling
    // passes too, not only when nothing else can run: a phase may then
    // complete at its last arrival, and the threads it releases may run
    // before the arriving thread's next instructions.
    if (seed != 0 && !block.tma_copies.empty()) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      if ((rng >> 40) % 4 == 0) progressed |= LandTmaCopies();
    }
    // mbarrier waits end when their phase completes (only blocks that set
    // up mbarriers can have any).
    if (!block.mbarriers.empty()) {
      for (Fiber& f : fibers) {
        if (f.state == State::kMbarrierWait && MbarrierPhaseDone(f.mbarrier, f.parity)) {
          f.state = State::kRunnable;
          progressed = true;
        }
      }
    }
    if (progressed) continue;
    // Nothing runnable: a block barrier completes when every live thread is at
    // it (exited threads count as arrived, as on the hardware).
    unsigned live = 0, at_barrier = 0;
    for (const Fiber& f : fibers) {
      live += f.state != State::kDone;
      at_barrier += f.state == State::kBlockBarrier;
    }
    if (live == 0) break;
    if (at_barrier == live) {
      for (Fiber& f : fibers) {
        if (f.state == State::kBlockBarrier) f.state = State::kRunnable;
      }
      continue;
    }
    // TMA copies in flight land now, as late as the hardware could land them.
    if (LandTmaCopies()) continue;
    // Threads at griddepcontrol.wait (and any at a barrier behind them): the
    // primary grid runs now, as late as the hardware could run it.
    bool grid_wait = false;
    for (Fiber& f : fibers) {
      if (f.state == State::kGridWait) {
        f.state = State::kRunnable;
        grid_wait = true;
      }
    }
    if (grid_wait) {
      RunPrimary(run);  // its blocks on this thread put g_run and g_block back
      continue;
    }
    // Every live thread at grid.sync(): the block arrives at the grid
    // barrier and waits there for the others (grid.h).
    unsigned at_grid_barrier = 0;
    for (const Fiber& f : fibers) at_grid_barrier += f.state == State::kGridBarrier;
    if (at_grid_barrier == live) {
      block.grid_barrier->Arrive();
      for (Fiber& f : fibers) {
        if (f.state == State::kGridBarrier) f.state = State::kRunnable;
      }
      continue;
    }
    Fail("deadlock: threads wait at barriers that can never complete:%s", Describe(fibers).c_str());
  }
  CheckSetMaxRegistersAtEnd(block);
  if (!block.tma_copies.empty()) {
    Fail("the block ended with %zu TMA copies in flight into its shared memory",
         block.tma_copies.size());
  }
  for (const Mbarrier& m : block.mbarriers) {
    if (m.tx != 0) {
      Fail(
          "the block ended with mbarrier %p owing %lld transaction bytes: a TMA copy completed "
          "bytes no expect_tx announced, or an expect_tx announced bytes no copy completed",
          m.addr, static_cast<long long>(m.tx));
    }
  }
  // A block that never waited ran wholly before its primary.
  if (!run.primary_done) RunPrimary(run);
  if (block.grid_barrier != nullptr) block.grid_barrier->Leave();
  for (Fiber& f : fibers) {
    ReturnStack(f.stack);
#if TPSERVE_EMU_TSAN
    __tsan_destroy_fiber(f.tsan_fiber);
#endif
  }
  g_run = saved_run;
  g_block = saved_block;
}

}  // namespace tpserve_emu
