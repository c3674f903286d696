#include "kernels/cpu/isa.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#endif

namespace tpserve::kernels::cpu {
namespace {

// -1: no override; otherwise an Isa value.
std::atomic<int> g_override{-1};

// Asks Linux for the AMX tile-data state. The permission is per process
// (every thread, present and future, gets it), so one successful request at
// detection covers all kernel threads; each thread still loads its own tile
// configuration (gemm_amx.cc). Returns false where the kernel is older than
// 5.16 or refuses (then tile instructions would fault).
bool RequestAmxPermission() {
#if defined(__x86_64__) && defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;  // arch/x86/include/uapi/asm/prctl.h
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

Isa Detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avxvnni")) {
      if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
          __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8") &&
          RequestAmxPermission()) {
        return Isa::kAmx;
      }
      return Isa::kAvxVnni;
    }
#endif
    return Isa::kAvx2;
  }
#endif
  return Isa::kPortable;
}

// TPSERVE_CPU_ISA=portable|avx2|avxvnni|amx caps the default (A/B benchmarks,
// debugging); it never raises it above what the CPU has.
Isa DefaultIsa() {
  Isa isa = DetectedIsa();
  if (const char* env = std::getenv("TPSERVE_CPU_ISA"); env != nullptr) {
    for (Isa cap : {Isa::kPortable, Isa::kAvx2, Isa::kAvxVnni, Isa::kAmx}) {
      if (std::strcmp(env, IsaName(cap)) == 0 && cap < isa) isa = cap;
    }
  }
  return isa;
}

}  // namespace

Isa DetectedIsa() {
  static const Isa isa = Detect();
  return isa;
}

int64_t L2CacheBytes() {
  static const int64_t bytes = [] {
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 > 0) return int64_t{l2};
#endif
    return int64_t{1} << 20;
  }();
  return bytes;
}

bool HasAvx512() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return has;
#else
  return false;
#endif
}

bool HasAvx512Vnni() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return HasAvx512() && __builtin_cpu_supports("avx512vnni");
  }();
  return has;
#else
  return false;
#endif
}

Isa ActiveIsa() {
  static const Isa default_isa = DefaultIsa();
  const int o = g_override.load(std::memory_order_relaxed);
  return o < 0 ? default_isa : static_cast<Isa>(o);
}

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return "portable";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvxVnni:
      return "avxvnni";
    case Isa::kAmx:
      return "amx";
  }
  return "?";
}

ScopedIsaForTesting::ScopedIsaForTesting(Isa isa) : previous_(g_override.load()) {
  if (isa > DetectedIsa()) isa = DetectedIsa();
  g_override.store(static_cast<int>(isa));
}

ScopedIsaForTesting::~ScopedIsaForTesting() { g_override.store(previous_); }

}  // namespace tpserve::kernels::cpu
