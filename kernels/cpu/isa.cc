#include "kernels/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace tpserve::kernels::cpu {
namespace {

// -1: no override; otherwise an Isa value.
std::atomic<int> g_override{-1};

Isa Detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avxvnni")) return Isa::kAvxVnni;
#endif
    return Isa::kAvx2;
  }
#endif
  return Isa::kPortable;
}

// TPSERVE_CPU_ISA=portable|avx2|avxvnni caps the default (A/B benchmarks,
// debugging); it never raises it above what the CPU has.
Isa DefaultIsa() {
  Isa isa = DetectedIsa();
  if (const char* env = std::getenv("TPSERVE_CPU_ISA"); env != nullptr) {
    for (Isa cap : {Isa::kPortable, Isa::kAvx2, Isa::kAvxVnni}) {
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
  }
  return "?";
}

ScopedIsaForTesting::ScopedIsaForTesting(Isa isa) : previous_(g_override.load()) {
  if (isa > DetectedIsa()) isa = DetectedIsa();
  g_override.store(static_cast<int>(isa));
}

ScopedIsaForTesting::~ScopedIsaForTesting() { g_override.store(previous_); }

}  // namespace tpserve::kernels::cpu
