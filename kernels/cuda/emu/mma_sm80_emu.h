// Emulator versions of the kernels/cuda/mma_sm80.cuh wrappers (same names and
// contracts), written from the PTX ISA: "Matrix Fragments for
// mma.m16n8k16" (.bf16), "ldmatrix" (.m8n8.x4.b16) and "cp.async" /
// "cp.async.wait_group". With groupID g = lane / 4 and t = lane % 4:
//   A (16x16, row): reg0 = A[g][2t..2t+1], reg1 = A[g+8][2t..], reg2 =
//     A[g][2t+8..], reg3 = A[g+8][2t+8..];
//   B (16x8, col):  reg0 = B[2t..2t+1][g], reg1 = B[2t+8..2t+9][g];
//   C (16x8 f32):   c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1];
// the lower-indexed element of a pair sits in the low 16 bits.
#ifndef TPSERVE_KERNELS_CUDA_EMU_MMA_SM80_EMU_H_
#define TPSERVE_KERNELS_CUDA_EMU_MMA_SM80_EMU_H_

#include <cstdint>
#include <cstring>

#include "kernels/cuda/emu/emu.h"
#include "kernels/cuda/emu/wgmma_sm90_emu.h"

namespace tpserve::kernels::cuda {

namespace emu_detail {
// The memory model's count of a cp.async global read (memory_model.h): a
// 16-byte access at the call site, as __ldg (emu.h). The copy itself goes
// through memcpy, which the model's instrumentation does not see.
#if defined(TPSERVE_EMU_MEMORY_MODEL)
__attribute__((noinline)) inline void ModelCpAsyncRead(const void* src) {
  ::tpserve_emu::ModelAccess(src, 16, false, __builtin_return_address(0));
}
#else
inline void ModelCpAsyncRead(const void*) {}
#endif
}  // namespace emu_detail

__device__ __forceinline__ void CpAsync16(void* smem_dst, const void* gmem_src, bool valid) {
  if (reinterpret_cast<uintptr_t>(smem_dst) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(gmem_src) % 16 != 0) {
    ::tpserve_emu::Fail("cp.async 16: misaligned address (dst %p, src %p)", smem_dst, gmem_src);
  }
  ::tpserve_emu::CheckNoWgmmaReads(smem_dst, 16, "cp.async");
  ::tpserve_emu::AsyncCopy c{smem_dst, {}, 16};
  if (valid) {
    emu_detail::ModelCpAsyncRead(gmem_src);
    std::memcpy(c.data, gmem_src, 16);
  } else {
    std::memset(c.data, 0, 16);
  }
  ::tpserve_emu::g_thread->async_copies.push_back(c);
}

__device__ __forceinline__ void CpAsyncCommit() {
  auto& t = *::tpserve_emu::g_thread;
  t.async_groups.push_back(t.async_copies.size());
}

template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  auto& t = *::tpserve_emu::g_thread;
  if (static_cast<int>(t.async_groups.size()) <= kPending) return;
  const size_t retire = t.async_groups[t.async_groups.size() - kPending - 1];
  for (size_t i = 0; i < retire; ++i) {
    std::memcpy(t.async_copies[i].dst, t.async_copies[i].data, t.async_copies[i].bytes);
  }
  t.async_copies.erase(t.async_copies.begin(), t.async_copies.begin() + retire);
  t.async_groups.erase(t.async_groups.begin(), t.async_groups.end() - kPending);
  for (size_t& end : t.async_groups) end -= retire;
}

__device__ __forceinline__ void LdMatrixX4(const void* smem_row, uint32_t r[4]) {
  if (reinterpret_cast<uintptr_t>(smem_row) % 16 != 0) {
    ::tpserve_emu::Fail("ldmatrix: row address %p is not 16-byte aligned", smem_row);
  }
  const int lane = ::tpserve_emu::g_thread->lane;
  ::tpserve_emu::WarpExchange(&smem_row, sizeof(smem_row), "ldmatrix.x4",
                              [&](const unsigned char(*slots)[64]) {
                                for (int j = 0; j < 4; ++j) {
                                  const uint16_t* row;
                                  std::memcpy(&row, slots[j * 8 + lane / 4], sizeof(row));
                                  const uint32_t lo = row[2 * (lane % 4)];
                                  const uint32_t hi = row[2 * (lane % 4) + 1];
                                  r[j] = lo | (hi << 16);
                                }
                              });
}

// .trans: the matrix is read "in column-major format" (PTX ISA "ldmatrix"):
// the 8 addresses are its columns, so lane l gets column l / 4 of the
// stored rows 2 (l % 4) (low half) and 2 (l % 4) + 1 (high half).
__device__ __forceinline__ void LdMatrixX4Trans(const void* smem_row, uint32_t r[4]) {
  if (reinterpret_cast<uintptr_t>(smem_row) % 16 != 0) {
    ::tpserve_emu::Fail("ldmatrix.trans: row address %p is not 16-byte aligned", smem_row);
  }
  const int lane = ::tpserve_emu::g_thread->lane;
  ::tpserve_emu::WarpExchange(
      &smem_row, sizeof(smem_row), "ldmatrix.x4.trans", [&](const unsigned char(*slots)[64]) {
        for (int j = 0; j < 4; ++j) {
          const uint16_t *row0, *row1;
          std::memcpy(&row0, slots[j * 8 + 2 * (lane % 4)], sizeof(row0));
          std::memcpy(&row1, slots[j * 8 + 2 * (lane % 4) + 1], sizeof(row1));
          const uint32_t lo = row0[lane / 4];
          const uint32_t hi = row1[lane / 4];
          r[j] = lo | (hi << 16);
        }
      });
}

namespace emu_detail {
inline float Bf16Lo(uint32_t v) { return __uint_as_float(v << 16); }
inline float Bf16Hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
struct MmaLane {
  uint32_t a[4];
  uint32_t b[2];
};
}  // namespace emu_detail

__device__ __forceinline__ void MmaBf16(float acc[4], const uint32_t a[4], uint32_t b0,
                                        uint32_t b1) {
  using emu_detail::Bf16Hi;
  using emu_detail::Bf16Lo;
  const emu_detail::MmaLane mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  const int lane = ::tpserve_emu::g_thread->lane;
  ::tpserve_emu::WarpExchange(&mine, sizeof(mine), "mma.m16n8k16",
                              [&](const unsigned char(*slots)[64]) {
                                float A[16][16], B[16][8];
                                for (int l = 0; l < 32; ++l) {
                                  emu_detail::MmaLane f;
                                  std::memcpy(&f, slots[l], sizeof(f));
                                  const int g = l / 4, t = l % 4;
                                  for (int half = 0; half < 2; ++half) {  // columns 2t.. and 2t+8..
                                    const int c = 2 * t + 8 * half;
                                    A[g][c] = Bf16Lo(f.a[2 * half]);
                                    A[g][c + 1] = Bf16Hi(f.a[2 * half]);
                                    A[g + 8][c] = Bf16Lo(f.a[2 * half + 1]);
                                    A[g + 8][c + 1] = Bf16Hi(f.a[2 * half + 1]);
                                    B[c][g] = Bf16Lo(f.b[half]);
                                    B[c + 1][g] = Bf16Hi(f.b[half]);
                                  }
                                }
                                const int g = lane / 4, t = lane % 4;
                                for (int i = 0; i < 4; ++i) {
                                  const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
                                  float sum = 0.0f;  // bf16 products are exact in f32
                                  for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
                                  acc[i] += sum;
                                }
                              });
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_EMU_MMA_SM80_EMU_H_
