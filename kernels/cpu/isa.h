// Runtime instruction-set dispatch for the CPU kernels. Every op has a
// portable C++ variant (always built, always tested) and an x86 variant
// compiled for AVX2 + FMA + F16C, chosen when the running CPU has all three.
// The quantized GEMM has a third, kAvxVnni (AVX2 + AVX-VNNI's vpdpbusd), and
// a fourth, kAmx (AVX-512 + AMX int8 tiles, gemm_amx.cc), chosen only when
// the CPU has AMX *and* the kernel grants this process the tile state
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); without it the first
// tile instruction raises SIGILL, CPUID alone is not enough). Other ops use
// their AVX2 variant under both. Levels are ordered: each one implies the
// ones before it.
//
// AVX-512 is not a level (CPUs with AVX-VNNI but no AVX-512 exist, and the
// reverse): PagedAttention and the GEMM on F32/F16/BF16 weights run their
// AVX-512F/BW/VL builds when the active level is kAvxVnni or higher and
// HasAvx512(), so TPSERVE_CPU_ISA=avx2 (or a test forcing kAvx2) selects
// their AVX2 builds on the same CPU. At kAvxVnni the quantized GEMM runs its
// AVX-512 VNNI build where HasAvx512Vnni(): the AMX kernel's block-int32
// arithmetic and bits (gemm_packed_x86.inc), not the AVX2 / AVX-VNNI ones.
//
//   if (ActiveIsa() >= Isa::kAvx2) avx2::Kernel(args); else portable::Kernel(args);
//
// Tests force each variant with ScopedIsaForTesting.
#ifndef TPSERVE_KERNELS_CPU_ISA_H_
#define TPSERVE_KERNELS_CPU_ISA_H_

#include <cstdint>

namespace tpserve::kernels::cpu {

enum class Isa { kPortable = 0, kAvx2 = 1, kAvxVnni = 2, kAmx = 3 };

// What this CPU supports (cached after the first call).
Isa DetectedIsa();

// Whether this CPU has AVX-512F, BW and VL (cached).
bool HasAvx512();

// HasAvx512() and AVX-512 VNNI (cached).
bool HasAvx512Vnni();

// This core's L2 cache in bytes as the C library reports it
// (sysconf(_SC_LEVEL2_CACHE_SIZE)), or 1 MiB where it reports none (cached).
int64_t L2CacheBytes();

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
