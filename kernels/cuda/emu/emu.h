// tpserve's CUDA emulator: runs the project's own .cu kernels on the CPU so
// their logic (indexing, barriers, warp collectives, mma fragment layouts,
// cp.async pipelines, launch limits) is executed and checked against the CPU
// twins on machines without a GPU. It is a test tool, not a backend.
//
// How it is used: bazel/cuda.bzl gives every cuda_library a `<name>_emu`
// twin. Its .cu sources are rewritten by rewrite_cu.py (`k<<<g, b, s, st>>>(a)`
// becomes `::tpserve_emu::Launcher("k", g, b, s, st)(&k)(a)`) and compiled by
// the host compiler against the headers
// in include/ (cuda_runtime.h, cuda_bf16.h, cuda_fp16.h), which pull in this
// file. Tests built with cuda_cc_test get a `<name>_emu` twin that runs in CI.
//
// Execution model: launches and copies are queued per stream and run when
// something waits for them, with only the ordering between streams that CUDA
// promises (streams.h). The blocks of a grid run in a seeded random order on
// several OS threads (grid.h); the threads of a block are fibers on one OS
// thread, resumed in a seeded random order within each barrier interval and
// switched at __syncthreads and at every warp collective (shuffles,
// ldmatrix, mma), so shared memory is plain thread-local storage, poisoned
// at every block start. What it checks that a plain CPU port would not:
//   - __syncthreads / warp-collective deadlocks and divergence (abort with the
//     waiting threads named), full-mask collectives in partial warps;
//   - launch limits (block <= 1024 threads, grid y/z <= 65535, dynamic shared
//     memory > 48 KiB only after cudaFuncSetAttribute, <= the sm_80 opt-in
//     limit) reported through cudaGetLastError like the driver does;
//   - dynamic shared memory starts as NaN bytes, so reads before writes show;
//   - cp.async copies land only at the cp.async.wait_group that retires them;
//   - work on unordered streams (a legacy-stream copy before a non-blocking
//     stream's kernel), host sources freed before their copy ran, graphs
//     replayed on freed buffers (freed device memory is quarantined);
//   - block-order and fiber-order assumptions (seed-dependent results) and,
//     built with ThreadSanitizer, races between blocks;
//   - programmatic dependent launch: a kernel launched with it runs its
//     first blocks up to griddepcontrol.wait before the kernel it follows
//     has run (streams.h), so reading that kernel's output early shows;
//   - wgmma (wgmma_sm90_emu.h): operands read at issue, accumulators NaN
//     until retired, shared memory under an in-flight wgmma overwritten;
//   - TMA tile loads and mbarriers (tma_sm90_emu.h): a tile's shared memory
//     reads as NaN from the copy's issue until the latest moment it may
//     land, phases complete only on their arrivals and transaction bytes.
//   - proxy fences: a wgmma reads shared memory as it stood at the block's
//     last fence.proxy.async (plus TMA's writes), so generic stores or
//     cp.async copies with no fence after them show; a TMA copy completing
//     on an mbarrier whose init was not fenced for the async proxy fails;
//   - setmaxnreg: counts a multiple of 8 in [24, 256], the same by every
//     thread of a warpgroup, within what a block of its size can hold.
//   - cooperative launches (grid.sync()): every block runs at once on its
//     own OS thread, so blocks really interleave between grid barriers; a
//     grid larger than the part holds fails as on the driver, grid.sync()
//     outside a cooperative launch or a block ending while others wait at
//     one aborts.
// What it cannot check: timing, weak memory ordering beyond the host's, register
// or static shared-memory limits (ptxas checks those at build time), host
// versus device pointer confusion, clusters. A fence publishes every
// thread's stores made before it (the emulator does not see which thread
// stored what), so one thread's fence can hide another's missing one.
#ifndef TPSERVE_KERNELS_CUDA_EMU_EMU_H_
#define TPSERVE_KERNELS_CUDA_EMU_EMU_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cuda/emu/memory_model.h"

// ---- Vector types of the CUDA runtime (host and device).
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};

typedef struct tpserve_emu_stream* cudaStream_t;

// ---- Keywords: device code is ordinary C++ here.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One block runs at a time per OS thread, and all its threads are fibers on
// that OS thread: thread-local statics are exactly the block's shared memory.
#define __shared__ static thread_local
#define __constant__ static
#define __grid_constant__

namespace tpserve_emu {

// A cp.async copy: the source is read when issued, the destination written
// when a cp.async.wait_group retires its group.
struct AsyncCopy {
  void* dst;
  unsigned char data[16];
  int bytes;
};

// A wgmma.mma_async issued by one thread and not yet retired by a
// wgmma.wait_group (wgmma.cc): its products, from the operands as read at
// issue, and where they go.
struct WgmmaOp {
  float* d = nullptr;  // the thread's accumulator registers
  int n = 0;           // the instruction's N
  uint64_t seq = 0;    // the thread's issue count: the same op across a warpgroup
  uint64_t a_desc = 0, b_desc = 0;
  uint64_t operand_hash = 0;  // of the bits this thread's products read
  std::vector<float> sums;    // per accumulator element: its 16 products summed
};

struct Thread {
  uint3 idx;
  int linear = 0;  // x + y * bx + z * bx * by
  int lane = 0;
  int warp = 0;
  std::vector<AsyncCopy> async_copies;  // issued, not yet landed
  std::vector<size_t> async_groups;     // committed groups: end index in async_copies
  std::vector<WgmmaOp> wgmma_ops;       // issued, not yet retired
  std::vector<size_t> wgmma_groups;     // committed groups: end index in wgmma_ops
  uint64_t wgmma_issued = 0;
  // Accumulators some wgmma in flight writes: their value so far (the
  // registers themselves read as NaN until the last one retires).
  std::vector<std::pair<float*, std::vector<float>>> wgmma_accumulators;
};

// Shared memory an in-flight wgmma of a warpgroup reads: a cp.async into it
// fails (wgmma.cc). One entry per (warpgroup, op), held by each issuing thread.
struct WgmmaRead {
  const unsigned char* lo;
  const unsigned char* hi;
  int warpgroup;
  uint64_t seq;
  int holders;
};

// An mbarrier object in shared memory (tma.cc): its state lives here, keyed
// by its address, not in its 8 bytes.
struct Mbarrier {
  const void* addr;
  uint32_t expected;  // arrivals per phase (mbarrier.init's count)
  uint32_t pending;   // arrivals still missing in the current phase
  int64_t tx;         // transaction bytes expected and not yet completed
  uint32_t phase;     // phases completed
  int init_thread;    // the thread whose mbarrier.init set it up
  // Whether that thread has since fenced the init for the async proxy
  // (fence.mbarrier_init or fence.proxy.async): a TMA copy may complete on
  // it only then.
  bool init_visible;
};

// setmaxnreg as one warpgroup executed it (tma.cc): every thread of the
// warpgroup must execute the same one.
struct WarpgroupRegisters {
  int regs = 0;
  bool inc = false;
  int threads = 0;  // of the warpgroup that have executed it
};

// A 2D tile of a tensor map (tma_sm90_emu.h) as cp.async.bulk.tensor moves
// it: `map` holds the TensorMap's 128 bytes.
struct TmaCopy {
  unsigned char* dst;
  unsigned char map[128];
  int c0, c1;  // coordinates of the box's first element: column, row
  const void* bar;
};

class GridBarrier;  // grid.h

// One __ldg (ld.global.nc) in a cooperative grid: where, and the bytes it
// returned (grid.h checks at the grid's end that the grid left them so).
struct NonCoherentRead {
  const void* p;
  size_t bytes;
  unsigned char value[16];
};

struct Block {
  uint3 idx;
  dim3 dim;
  dim3 grid;
  unsigned char* dynamic_shared = nullptr;
  size_t dynamic_shared_bytes = 0;
  std::vector<WgmmaRead> wgmma_reads;
  std::vector<Mbarrier> mbarriers;
  std::vector<TmaCopy> tma_copies;  // issued, not yet landed
  // Dynamic shared memory as the async proxy (wgmma, TMA) sees it: what it
  // held at the last fence.proxy.async, plus the async proxy's own writes
  // since (wgmma.cc). Empty until first used: the poison of the block start.
  std::vector<unsigned char> async_view;
  std::vector<WarpgroupRegisters> warpgroup_registers;  // by warpgroup
  // The launch's grid barrier when it is cooperative (grid.h); null otherwise.
  GridBarrier* grid_barrier = nullptr;
  // A cooperative launch's record of this block's __ldg reads; null otherwise.
  std::vector<NonCoherentRead>* non_coherent_reads = nullptr;
};

extern thread_local Thread* g_thread;
extern thread_local Block* g_block;

// The calling fiber waits until every thread of the block arrives.
void SyncThreads();
// Warp collective: every lane of the calling warp (all 32 must take part)
// deposits `bytes` (<= 64) from `in`; once all have, each lane calls
// `read(slots)` where slots[l] is lane l's deposit; then all lanes leave
// together. `what` names the operation in error messages.
const unsigned char (*WarpDeposit(const void* in, size_t bytes, const char* what))[64];
void WarpLeave();
template <typename Read>
void WarpExchange(const void* in, size_t bytes, const char* what, Read&& read) {
  read(WarpDeposit(in, bytes, what));
  WarpLeave();
}
// griddepcontrol.wait: the calling fiber waits until the kernel this one
// was programmatically launched after has run (at once otherwise). The
// block runs on until nothing else can progress before that kernel runs.
void GridDependencyWait();
// Programmatic launches (LaunchConfig::programmatic): the blocks of such a
// grid that run up to griddepcontrol.wait before the grid it follows
// (grid.h), and the most grids one such chain holds (streams.h).
inline constexpr int kProgrammaticBlocks = 2;
inline constexpr int kProgrammaticChain = 3;
// grid.sync() of a cooperative launch: the calling fiber waits until every
// live thread of every block of the grid has called it (grid.h). Aborts in a
// launch that is not cooperative, and when some block ends instead.
void GridSync();
// Blocks of `threads` threads and `shared_bytes` of dynamic shared memory
// one SM of the emulated part holds at once, by its thread, block and shared
// memory limits; registers are not counted (the emulator does not know a
// kernel's). 0 when such a block cannot run at all.
int BlocksPerSm(const void* kernel, int threads, size_t shared_bytes);
// cp.async.bulk.prefetch.L2 (kernels/cuda/prefetch.cuh): aborts unless
// [p, p + bytes) is 16-byte aligned, a nonzero multiple of 16 bytes below
// 2^32 and inside one device allocation; prefetches nothing (no caches),
// but records the piece for tests.
void PrefetchL2(const void* p, uint64_t bytes);
// For tests: the pieces PrefetchL2 was asked for since the last call
// (address, bytes), in no particular order; the first 2^20 of them.
std::vector<std::pair<const void*, uint64_t>> TakeL2Prefetches();
// For tests: a device or driver that refuses cooperative launches, from
// now on. kInCapture: a cooperative launch into a capturing stream fails
// with cudaErrorStreamCaptureUnsupported and invalidates the capture (as a
// runtime without cooperative graph nodes would); kAlways: also every
// other one, with cudaErrorCooperativeLaunchTooLarge (as when fewer SMs
// are free than the occupancy query counted). kNone: they run again.
enum class CooperativeRefusal { kNone, kInCapture, kAlways };
void RefuseCooperativeLaunches(CooperativeRefusal refusal);
// Threads of one cooperative launch the emulator runs at once (a fiber
// stack each): a larger grid aborts, though the part might hold it.
inline constexpr uint64_t kCooperativeThreads = 16384;
// Aborts the process with the kernel, block and thread named.
[[noreturn]] void Fail(const char* fmt, ...);
// For tests: how many grids whose kernel name starts with `prefix` have run
// in this process (graph replays included).
uint64_t GridsRun(const char* prefix);

// Registers a static __shared__ variable of this OS thread (once, when its
// declaration first runs there) so every block start poisons it: a block
// reads its own writes only, never the previous block's. rewrite_cu.py adds
// one after every `__shared__` declaration.
struct StaticShared {
  StaticShared(void* p, size_t bytes);
};

// Dynamic shared memory of the running block, as T[].
template <typename T>
T* DynamicShared() {
  return reinterpret_cast<T*>(g_block->dynamic_shared);
}

// ---- Launch: `k<<<grid, block, smem, stream>>>(args)` becomes
// `Launcher("k", grid, block, smem, stream)(&k)(args)` (rewrite_cu.py).
struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  const void* kernel = nullptr;
  const char* name = nullptr;
  // cudaLaunchAttributeProgrammaticStreamSerialization (launch.cuh).
  bool programmatic = false;
  // cudaLaunchAttributeCooperative (cooperative.cuh): every block runs at
  // once, and grid.sync() is allowed.
  bool cooperative = false;
};
// Validates `c` (errors go to cudaGetLastError), then runs or records the
// grid on c.stream: `check` once per execution (graph replays included),
// then `body`, the kernel call one thread makes, for every thread.
void Submit(const LaunchConfig& c, std::function<void()> check, std::function<void()> body);
// Aborts unless `p` is null or points into device (or pinned host) memory.
void CheckPointerArgument(const char* kernel, int index, const void* p);

class Launcher {
 public:
  Launcher(const char* name, dim3 grid, dim3 block, size_t shared_bytes = 0,
           cudaStream_t stream = nullptr, bool programmatic = false, bool cooperative = false)
      : c_{grid, block, shared_bytes, stream, nullptr, name, programmatic, cooperative} {}

  template <typename... P>
  auto operator()(void (*kernel)(P...)) const {
    LaunchConfig c = c_;
    c.kernel = reinterpret_cast<const void*>(kernel);
    return [c, kernel](auto&&... args) {
      // Arguments are converted to the kernel's parameter types and copied
      // once, as the driver does; every thread gets the same values.
      auto packed = std::make_shared<std::tuple<std::decay_t<P>...>>(
          static_cast<std::decay_t<P>>(std::forward<decltype(args)>(args))...);
      // Pointers are checked whenever the grid runs: a graph replayed after
      // its buffers were freed aborts instead of reading stale memory.
      Submit(
          c,
          [name = c.name, packed] {
            CheckPointers(name, *packed, std::index_sequence_for<P...>());
          },
          [kernel, packed] { std::apply(kernel, *packed); });
    };
  }
  // `auto kernel = Kernel<...>; kernel<<<...>>>(...)` launches through a
  // function-pointer variable, which the rewrite passes as &kernel.
  template <typename... P>
  auto operator()(void (*const* kernel)(P...)) const {
    return (*this)(*kernel);
  }

 private:
  template <typename Tuple, size_t... I>
  static void CheckPointers(const char* name, const Tuple& t, std::index_sequence<I...>) {
    (CheckOne(name, static_cast<int>(I), std::get<I>(t)), ...);
  }
  template <typename T>
  static void CheckOne(const char* name, int index, const T& v) {
    if constexpr (std::is_pointer_v<T>) {
      CheckPointerArgument(name, index, static_cast<const void*>(v));
    }
  }

  LaunchConfig c_;
};

// One unit of stream work: returns true once done. Work that waits for
// something outside its stream (an emulated collective waiting for its peers)
// returns false until then and is polled again.
using StreamWork = std::function<bool()>;
// Makes one run of some work. Called when the work is queued, or, while the
// stream captures a graph, at every cudaGraphLaunch of that graph, in launch
// order on the launching thread: each replay gets fresh state and a place in
// program order, as NCCL gives a captured collective at each launch.
using StreamWorkMaker = std::function<StreamWork()>;
// Queues host work on `stream` like cudaLaunchHostFunc (emulated collectives
// use it); returns cudaErrorStreamCaptureUnsupported where the driver would.
int EnqueueHostWork(cudaStream_t stream, StreamWorkMaker make);

// Set by cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, n).
void SetMaxDynamicShared(const void* kernel, int bytes);

}  // namespace tpserve_emu

// ---- Built-in variables.
#define threadIdx (::tpserve_emu::g_thread->idx)
#define blockIdx (::tpserve_emu::g_block->idx)
#define blockDim (::tpserve_emu::g_block->dim)
#define gridDim (::tpserve_emu::g_block->grid)
inline constexpr int warpSize = 32;

// ---- Synchronisation and warp intrinsics.
inline void __syncthreads() { ::tpserve_emu::SyncThreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  ::tpserve_emu::WarpExchange(nullptr, 0, "__syncwarp", [](const unsigned char(*)[64]) {});
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

namespace tpserve_emu {
// Shuffle: lane l receives the value of lane src(l) (its own where src(l) < 0).
template <typename T, typename Src>
T Shuffle(unsigned mask, T v, const char* what, Src src) {
  static_assert(sizeof(T) <= 64 && std::is_trivially_copyable_v<T>);
  if (mask != 0xffffffffu) Fail("%s: only full-warp masks are emulated (mask 0x%x)", what, mask);
  T out = v;
  const int lane = g_thread->lane;
  WarpExchange(&v, sizeof(T), what, [&](const unsigned char(*slots)[64]) {
    const int s = src(lane);
    if (s >= 0) std::memcpy(&out, slots[s], sizeof(T));
  });
  return out;
}
}  // namespace tpserve_emu

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::tpserve_emu::Shuffle(mask, v, "__shfl_sync", [=](int lane) {
    return (lane & ~(width - 1)) + (src_lane & (width - 1));
  });
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::tpserve_emu::Shuffle(mask, v, "__shfl_xor_sync", [=](int lane) {
    const int s = lane ^ lane_mask;
    return (s / width) > (lane / width) ? -1 : s;
  });
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::tpserve_emu::Shuffle(mask, v, "__shfl_down_sync", [=](int lane) {
    const int s = lane + static_cast<int>(delta);
    return (s / width) != (lane / width) ? -1 : s;
  });
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::tpserve_emu::Shuffle(mask, v, "__shfl_up_sync", [=](int lane) {
    const int s = lane - static_cast<int>(delta);
    return s < 0 || (s / width) != (lane / width) ? -1 : s;
  });
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  if (mask != 0xffffffffu) ::tpserve_emu::Fail("__ballot_sync: only full-warp masks are emulated");
  const int p = pred != 0;
  unsigned out = 0;
  ::tpserve_emu::WarpExchange(&p, sizeof(p), "__ballot_sync", [&](const unsigned char(*s)[64]) {
    for (int l = 0; l < 32; ++l) {
      int v;
      std::memcpy(&v, s[l], sizeof(v));
      out |= static_cast<unsigned>(v) << l;
    }
  });
  return out;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

namespace tpserve_emu {
// __ldg's read of `bytes` (<= 16) at `p` that returned `value`: recorded in
// a cooperative launch (Block::non_coherent_reads), where the grid's end
// aborts if the grid changed those bytes. ld.global.nc is outside the PTX
// memory model (PTX ISA, "Scope and applicability of the model"), and the
// CUDA programming guide calls a read of memory the same kernel call wrote
// through the read-only cache undefined: a grid.sync does not make it see
// other blocks' writes. Such data takes plain loads. Caught when the grid
// writes after the read (a stale read of a write before it, never written
// again, goes unseen). A block's first kNonCoherentReadsKept reads are kept
// (bounded memory in a long grid).
inline constexpr size_t kNonCoherentReadsKept = size_t{1} << 20;
inline void NoteNonCoherentRead(const void* p, const void* value, size_t bytes) {
  if (g_block == nullptr || g_block->non_coherent_reads == nullptr ||
      g_block->non_coherent_reads->size() >= kNonCoherentReadsKept) {
    return;
  }
  NonCoherentRead r{p, bytes, {}};
  std::memcpy(r.value, value, bytes);  // <= 16: __ldg's static_assert
  g_block->non_coherent_reads->push_back(r);
}
}  // namespace tpserve_emu

// ---- Device math (IEEE single precision on the host).
#if defined(TPSERVE_EMU_MEMORY_MODEL)
// The memory-transaction model's build (memory_model.h): a load through
// __ldg is one access of sizeof(T) bytes at its call site, as the device's
// one 128-bit request for a uint4 or float4. Inlined and instrumented, GCC
// splits a 16-byte value whose parts are used one by one into four 4-byte
// loads (scalar replacement) and the model would count four requests.
// noinline: the return address names the call site; no_sanitize_address:
// the load itself is not counted a second time.
template <typename T>
__attribute__((noinline, no_sanitize_address)) T __ldg(const T* p) {
  static_assert(sizeof(T) <= sizeof(::tpserve_emu::NonCoherentRead::value),
                "one load of at most 16 bytes");
  ::tpserve_emu::ModelAccess(p, sizeof(T), false, __builtin_return_address(0));
  const T v = *p;
  ::tpserve_emu::NoteNonCoherentRead(p, &v, sizeof(T));
  return v;
}
#else
template <typename T>
inline T __ldg(const T* p) {
  static_assert(sizeof(T) <= sizeof(::tpserve_emu::NonCoherentRead::value),
                "one load of at most 16 bytes");
  const T v = *p;
  ::tpserve_emu::NoteNonCoherentRead(p, &v, sizeof(T));
  return v;
}
#endif
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __expf(float a) { return std::exp(a); }
inline float __logf(float a) { return std::log(a); }
inline float __sinf(float a) { return std::sin(a); }
inline float __cosf(float a) { return std::cos(a); }
// Round to nearest even (the default FP environment), as the device does.
inline long long __double2ll_rn(double a) { return std::llrint(a); }
inline float __powf(float a, float b) { return std::pow(a, b); }
inline float __saturatef(float a) { return a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a); }
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline double rsqrt(double a) { return 1.0 / std::sqrt(a); }
inline void sincosf(float a, float* s, float* c) {
  *s = std::sin(a);
  *c = std::cos(a);
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
inline int __float_as_int(float f) { return static_cast<int>(__float_as_uint(f)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }
// CUDA's global min/max overloads for device code.
template <typename A, typename B>
inline auto min(A a, B b) -> std::common_type_t<A, B> {
  return b < a ? b : a;
}
template <typename A, typename B>
inline auto max(A a, B b) -> std::common_type_t<A, B> {
  return a < b ? b : a;
}

// Atomics: blocks run on several OS threads, so read-modify-write is a
// compare-and-swap loop on the value's bytes.
namespace tpserve_emu {
template <typename T, typename F>
inline T AtomicUpdate(T* p, F f) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 4- or 8-byte values");
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  Bits* bits = reinterpret_cast<Bits*>(p);
  Bits expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
  for (;;) {
    T old;
    std::memcpy(&old, &expected, sizeof(T));
    const T updated = f(old);
    Bits desired;
    std::memcpy(&desired, &updated, sizeof(T));
    if (__atomic_compare_exchange_n(bits, &expected, desired, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
      return old;
    }
  }
}
}  // namespace tpserve_emu
template <typename T>
inline T atomicAdd(T* p, T v) {
  return ::tpserve_emu::AtomicUpdate(p, [v](T old) { return old + v; });
}
template <typename T>
inline T atomicMax(T* p, T v) {
  return ::tpserve_emu::AtomicUpdate(p, [v](T old) { return old < v ? v : old; });
}
template <typename T>
inline T atomicMin(T* p, T v) {
  return ::tpserve_emu::AtomicUpdate(p, [v](T old) { return v < old ? v : old; });
}
template <typename T>
inline T atomicExch(T* p, T v) {
  return ::tpserve_emu::AtomicUpdate(p, [v](T) { return v; });
}
template <typename T>
inline T atomicCAS(T* p, T compare, T v) {
  return ::tpserve_emu::AtomicUpdate(p, [=](T old) { return old == compare ? v : old; });
}

#endif  // TPSERVE_KERNELS_CUDA_EMU_EMU_H_
