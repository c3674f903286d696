// Device-side readers for the weight types of formats/dtype.h: one
// 32-value quantization block (or 32 plain elements) into registers, and the
// f32/bf16 conversions the kernels share. Layouts follow dtype.h exactly; the
// block structs there are 2-byte aligned (34/18/20 bytes), so blocks are read
// with 16-bit loads.
//
//   float v[32];
//   LoadBlock32<DType::kQ4_1>(row_ptr, block_index, v);  // dequantised values
#ifndef TPSERVE_KERNELS_CUDA_QUANT_CUH_
#define TPSERVE_KERNELS_CUDA_QUANT_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "formats/dtype.h"

namespace tpserve::kernels::cuda {

__device__ __forceinline__ float HalfBitsToFloat(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ float Bf16BitsToFloat(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// Plain (one value per "block") element types.
template <DType kType>
__device__ __forceinline__ float LoadElement(const void* row, int64_t i) {
  static_assert(!IsQuantized(kType), "LoadElement is for F32/F16/BF16");
  if constexpr (kType == DType::kF32) {
    return __ldg(static_cast<const float*>(row) + i);
  } else if constexpr (kType == DType::kF16) {
    return HalfBitsToFloat(__ldg(static_cast<const uint16_t*>(row) + i));
  } else {
    return Bf16BitsToFloat(__ldg(static_cast<const uint16_t*>(row) + i));
  }
}

// Dequantises block `b` (values 32b .. 32b+31) of a quantized row into v[32].
template <DType kType>
__device__ __forceinline__ void LoadBlock32(const void* row, int64_t b, float v[32]) {
  static_assert(IsQuantized(kType), "LoadBlock32 is for Q8_0/Q4_0/Q4_1");
  constexpr int kHalfWords = static_cast<int>(BlockBytes(kType) / 2);
  const uint16_t* p = static_cast<const uint16_t*>(row) + b * kHalfWords;
  const float d = HalfBitsToFloat(__ldg(p));
  if constexpr (kType == DType::kQ8_0) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const uint16_t w = __ldg(p + 1 + i);
      v[2 * i] = d * static_cast<float>(static_cast<int8_t>(w & 0xFF));
      v[2 * i + 1] = d * static_cast<float>(static_cast<int8_t>(w >> 8));
    }
  } else {
    // Same roundings as dtype.cc's DequantizeRow (one product, then the min
    // added), so CPU and CUDA dequantise bit-identically: __fmul_rn keeps
    // nvcc from contracting the Q4_1 multiply-add into an FMA.
    constexpr bool kHasMin = kType == DType::kQ4_1;
    constexpr int kQsOffset = kHasMin ? 2 : 1;  // in half-words
    constexpr int kBias = kHasMin ? 0 : 8;
    const float m = kHasMin ? HalfBitsToFloat(__ldg(p + 1)) : 0.0f;
    auto value = [&](int nib) {
      const float prod = __fmul_rn(d, static_cast<float>(nib - kBias));
      return kHasMin ? __fadd_rn(prod, m) : prod;
    };
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint16_t w = __ldg(p + kQsOffset + i);
      const int b0 = w & 0xFF;
      const int b1 = w >> 8;
      // Byte j holds value j (low nibble) and value j + 16 (high nibble).
      v[2 * i] = value(b0 & 0xF);
      v[2 * i + 1] = value(b1 & 0xF);
      v[2 * i + 16] = value(b0 >> 4);
      v[2 * i + 17] = value(b1 >> 4);
    }
  }
}

// Address of row `r` of a (rows, cols) matrix in `type`.
__host__ __device__ __forceinline__ const void* RowPointer(const void* base, DType type,
                                                           int64_t cols, int64_t r) {
  return static_cast<const char*>(base) + r * RowBytes(type, cols);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_QUANT_CUH_
