// Inline-PTX wrappers for the Ampere-class tensor-core path (also valid on
// sm_90): cp.async global->shared copies, ldmatrix fragment loads and the
// bf16 m16n8k16 mma with f32 accumulation. Fragment layouts are PTX ISA
// "Matrix Fragments for mma.m16n8k16" for .bf16.
//
//   CpAsync16(smem_dst, gmem_src, /*valid=*/true);  CpAsyncCommit();  CpAsyncWait<1>();
//   LdMatrixX4(smem_row_ptr, r);                     MmaBf16(acc, a, b0, b1);
//   LdMatrixX4Trans(smem_row_ptr, r);  // the same, each 8x8 matrix transposed
#ifndef TPSERVE_KERNELS_CUDA_MMA_SM80_CUH_
#define TPSERVE_KERNELS_CUDA_MMA_SM80_CUH_

#include <cstdint>

#if defined(TPSERVE_CUDA_EMU)
// CPU emulator builds (kernels/cuda/emu): the same functions without PTX.
#include "kernels/cuda/emu/mma_sm80_emu.h"
#else

namespace tpserve::kernels::cuda {

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; `valid == false` zero-fills the destination (the source
// is not read, but must still be a mapped address).
__device__ __forceinline__ void CpAsync16(void* smem_dst, const void* gmem_src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(smem_dst)),
               "l"(gmem_src), "r"(src_bytes));
}

__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `kPending` committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8x8 b16 matrices; lane l supplies the row address for matrix l / 8.
__device__ __forceinline__ void LdMatrixX4(const void* smem_row, uint32_t r[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(smem_row)));
}

// The same with each matrix transposed (.trans): the 8 addresses are its
// columns, so lane l gets rows 2 (l % 4) and 2 (l % 4) + 1 of column l / 4 of
// the stored 8x8 block. Gives the B fragment of a matrix stored (k, n)
// row-major: matrices k 0-7 and k 8-15 of 8 n columns are its reg0 and reg1.
__device__ __forceinline__ void LdMatrixX4Trans(const void* smem_row, uint32_t r[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(smem_row)));
}

// acc (16x8 f32) += a (16x16 bf16, row) * b (16x8 bf16, col).
__device__ __forceinline__ void MmaBf16(float acc[4], const uint32_t a[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_CUDA_EMU
#endif  // TPSERVE_KERNELS_CUDA_MMA_SM80_CUH_
