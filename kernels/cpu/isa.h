// Runtime instruction-set dispatch for the CPU kernels. Every op has a
// portable C++ variant (always built, always tested) and an x86 variant
// compiled for AVX2 + FMA + F16C, chosen when the running CPU has all three.
//
//   if (ActiveIsa() == Isa::kAvx2) avx2::Kernel(args); else portable::Kernel(args);
//
// Tests force each variant with ScopedIsaForTesting.
#ifndef TPSERVE_KERNELS_CPU_ISA_H_
#define TPSERVE_KERNELS_CPU_ISA_H_

namespace tpserve::kernels::cpu {

enum class Isa { kPortable, kAvx2 };

// What this CPU supports (cached after the first call).
Isa DetectedIsa();

// What the launchers use: DetectedIsa() unless a test overrides it.
Isa ActiveIsa();

const char* IsaName(Isa isa);

// Forces `isa` for the launchers while alive (tests and benchmarks only; not
// thread-safe against concurrent launches). Forcing kAvx2 on a CPU without it
// falls back to kPortable.
class ScopedIsaForTesting {
 public:
  explicit ScopedIsaForTesting(Isa isa);
  ~ScopedIsaForTesting();
  ScopedIsaForTesting(const ScopedIsaForTesting&) = delete;
  ScopedIsaForTesting& operator=(const ScopedIsaForTesting&) = delete;

 private:
  int previous_;
};

}  // namespace tpserve::kernels::cpu

#endif  // TPSERVE_KERNELS_CPU_ISA_H_
