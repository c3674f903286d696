#include "kernels/cpu/isa.h"

#include <atomic>

namespace tpserve::kernels::cpu {
namespace {

// -1: no override; otherwise an Isa value.
std::atomic<int> g_override{-1};

Isa Detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return Isa::kAvx2;
  }
#endif
  return Isa::kPortable;
}

}  // namespace

Isa DetectedIsa() {
  static const Isa isa = Detect();
  return isa;
}

Isa ActiveIsa() {
  const int o = g_override.load(std::memory_order_relaxed);
  return o < 0 ? DetectedIsa() : static_cast<Isa>(o);
}

const char* IsaName(Isa isa) { return isa == Isa::kAvx2 ? "avx2" : "portable"; }

ScopedIsaForTesting::ScopedIsaForTesting(Isa isa) : previous_(g_override.load()) {
  if (isa == Isa::kAvx2 && DetectedIsa() != Isa::kAvx2) isa = Isa::kPortable;
  g_override.store(static_cast<int>(isa));
}

ScopedIsaForTesting::~ScopedIsaForTesting() { g_override.store(previous_); }

}  // namespace tpserve::kernels::cpu
