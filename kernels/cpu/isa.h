// Runtime instruction-set dispatch for the CPU kernels. Every op has a
// portable C++ variant (always built, always tested) and an x86 variant
// compiled for AVX2 + FMA + F16C, chosen when the running CPU has all three.
// The quantized GEMM has a third, kAvxVnni (AVX2 + AVX-VNNI's vpdpbusd), and
// a fourth, kAmx (AVX-512 + AMX int8 tiles, gemm_amx.cc), chosen only when
// the CPU has AMX *and* the kernel grants this process the tile state
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); without it the first
// tile instruction raises SIGILL, CPUID alone is not enough). kAmx also
// implies AVX-512F/BW/VL, so PagedAttention runs its AVX-512 build there;
// other ops use their AVX2 variant at kAvxVnni and kAmx. Levels are ordered:
// each one implies the ones before it.
//
//   if (ActiveIsa() >= Isa::kAvx2) avx2::Kernel(args); else portable::Kernel(args);
//
// Tests force each variant with ScopedIsaForTesting.
#ifndef TPSERVE_KERNELS_CPU_ISA_H_
#define TPSERVE_KERNELS_CPU_ISA_H_

namespace tpserve::kernels::cpu {

enum class Isa { kPortable = 0, kAvx2 = 1, kAvxVnni = 2, kAmx = 3 };

// What this CPU supports (cached after the first call).
Isa DetectedIsa();

// What the launchers use: DetectedIsa(), capped by the environment variable
// TPSERVE_CPU_ISA=portable|avx2|avxvnni|amx if set, unless a test overrides it.
Isa ActiveIsa();

const char* IsaName(Isa isa);

// Forces `isa` for the launchers while alive (tests and benchmarks only; not
// thread-safe against concurrent launches). Asking for more than the CPU has
// gives DetectedIsa().
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
