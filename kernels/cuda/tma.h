// Host side of Hopper's tensor memory access (kernels/cuda/tma_sm90.cuh):
// the tensor map a kernel's TMA copies read, passed by value as a
// `const __grid_constant__ TensorMap` kernel parameter.
//
//   TensorMap map;
//   TPS_RETURN_IF_ERROR(EncodeTensorMapBf16(&map, a, m, k, 128, 64));
//   Kernel<<<grid, block, smem, stream>>>(map, ...);
#ifndef TPSERVE_KERNELS_CUDA_TMA_H_
#define TPSERVE_KERNELS_CUDA_TMA_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tpserve::kernels::cuda {

// CUtensorMap's size and alignment (CUDA 13's cuda.h: 128 bytes, 128-byte
// aligned); its contents are the driver's.
struct alignas(128) TensorMap {
  uint64_t opaque[16];
};

// A row-major (rows, cols) bf16 matrix at `base` (16-byte aligned, cols a
// multiple of 8 so rows are 16-byte aligned), read in boxes of box_rows x
// box_cols (box_cols * 2 = 128 bytes: one 128-byte swizzle row; box_rows
// <= 256) landing in the 128-byte swizzle (16-byte chunk c of box row r at
// chunk c ^ (r % 8)), the layout wgmma's swizzled descriptors read
// (wgmma_sm90.cuh); elements outside the matrix land as zeros.
// INVALID_ARGUMENT for shapes TMA cannot describe; FAILED_PRECONDITION where
// the driver lacks cuTensorMapEncodeTiled.
absl::Status EncodeTensorMapBf16(TensorMap* map, const void* base, int64_t rows, int64_t cols,
                                 int box_rows, int box_cols);

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_TMA_H_
