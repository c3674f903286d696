// Device-side readers for the weight types of formats/dtype.h: one
// 32-value quantization block (or 32 plain elements) into registers, from
// dtype.h rows (embedding tables, ToBf16) or from the GEMMs' device layout
// (weight_layout.h), and the f32/bf16 conversions the kernels share.
//
//   float v[32];
//   LoadBlock32<DType::kQ4_1>(row_ptr, block_index, v);  // dtype.h rows
//   LoadPackedBlock32<DType::kQ4_1>(PackedRows<DType::kQ4_1>(w, n, k), row, block_index, v);
#ifndef TPSERVE_KERNELS_CUDA_QUANT_CUH_
#define TPSERVE_KERNELS_CUDA_QUANT_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "formats/dtype.h"
#include "kernels/cuda/weight_layout.h"

namespace tpserve::kernels::cuda {

__device__ __forceinline__ float HalfBitsToFloat(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ float Bf16BitsToFloat(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

// f as bf16 bits, rounded to nearest even.
__device__ __forceinline__ uint16_t Bf16Bits(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

// Two floats as a bf16 pair, each rounded to nearest even: lo in the low
// half (the first of an mma register's two values).
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  return static_cast<uint32_t>(Bf16Bits(lo)) | (static_cast<uint32_t>(Bf16Bits(hi)) << 16);
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

// Values in one 16-byte chunk of quantized weights: a whole Q4 block (16
// qs bytes, two nibbles each) or half a Q8_0 block.
template <DType kType>
constexpr int kChunkValues = kType == DType::kQ8_0 ? 16 : 32;

// Dequantises the 16 qs bytes `q` of a block with scale d (and min m, Q4_1)
// into v[kChunkValues]: Q4 byte j holds value j (low nibble) and value j + 16
// (high nibble). Same roundings as dtype.cc's DequantizeRow (one product,
// then the min added), so CPU and CUDA dequantise bit-identically: __fmul_rn
// keeps nvcc from contracting the Q4_1 multiply-add into an FMA.
template <DType kType>
__device__ __forceinline__ void DequantChunk(const uint4& q, float d, float m, float* v) {
  static_assert(IsQuantized(kType), "DequantChunk is for Q8_0/Q4_0/Q4_1");
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const int byte = static_cast<int>((words[i / 4] >> (8 * (i % 4))) & 0xFFu);
    if constexpr (kType == DType::kQ8_0) {
      v[i] = d * static_cast<float>(static_cast<int8_t>(byte));
    } else {
      constexpr bool kHasMin = kType == DType::kQ4_1;
      constexpr int kBias = kHasMin ? 0 : 8;
      const float lo = __fmul_rn(d, static_cast<float>((byte & 0xF) - kBias));
      const float hi = __fmul_rn(d, static_cast<float>((byte >> 4) - kBias));
      v[i] = kHasMin ? __fadd_rn(lo, m) : lo;
      v[i + 16] = kHasMin ? __fadd_rn(hi, m) : hi;
    }
  }
}

// Dequantises block `b` (values 32b .. 32b+31) of a dtype.h quantized row
// into v[32]. The block structs are 2-byte aligned, so 16-bit loads.
template <DType kType>
__device__ __forceinline__ void LoadBlock32(const void* row, int64_t b, float v[32]) {
  static_assert(IsQuantized(kType), "LoadBlock32 is for Q8_0/Q4_0/Q4_1");
  constexpr int kHalfWords = static_cast<int>(BlockBytes(kType) / 2);
  constexpr int kScaleHalfWords = static_cast<int>(ScaleBytesPerBlock(kType) / 2);
  const uint16_t* p = static_cast<const uint16_t*>(row) + b * kHalfWords;
  const float d = HalfBitsToFloat(__ldg(p));
  const float m = kType == DType::kQ4_1 ? HalfBitsToFloat(__ldg(p + 1)) : 0.0f;
#pragma unroll
  for (int c = 0; c < 32 / kChunkValues<kType>; ++c) {
    const uint16_t* h = p + kScaleHalfWords + 8 * c;
    auto word = [&](int i) {
      return static_cast<uint32_t>(__ldg(h + 2 * i)) | static_cast<uint32_t>(__ldg(h + 2 * i + 1))
                                                           << 16;
    };
    const uint4 q = {word(0), word(1), word(2), word(3)};
    DequantChunk<kType>(q, d, m, v + c * kChunkValues<kType>);
  }
}

// A quantized matrix in the device layout (weight_layout.h).
// Block (r, b) is block r * blocks_per_row + b of both planes.
struct PackedQuantRows {
  const uint4* quants;    // QuantBytesPerBlock / 16 chunks per block
  const uint8_t* scales;  // ScaleBytesPerBlock per block
  int64_t blocks_per_row;
};

template <DType kType>
__host__ __device__ __forceinline__ PackedQuantRows PackedRows(const void* w, int64_t rows,
                                                               int64_t cols) {
  const auto* base = static_cast<const uint8_t*>(w);
  return {reinterpret_cast<const uint4*>(base), base + ScalePlaneOffset(kType, rows, cols),
          cols / kQuantBlockValues};
}

// d and m (Q4_1; 0 otherwise) of block `block` (row-major block index).
template <DType kType>
__device__ __forceinline__ void LoadScales(const PackedQuantRows& w, int64_t block, float* d,
                                           float* m) {
  if constexpr (kType == DType::kQ4_1) {
    const uint32_t dm = __ldg(reinterpret_cast<const uint32_t*>(w.scales) + block);
    *d = HalfBitsToFloat(static_cast<uint16_t>(dm & 0xFFFFu));
    *m = HalfBitsToFloat(static_cast<uint16_t>(dm >> 16));
  } else {
    *d = HalfBitsToFloat(__ldg(reinterpret_cast<const uint16_t*>(w.scales) + block));
    *m = 0.0f;
  }
}

// Dequantises block `b` of row `row` of a device-layout matrix into v[32].
template <DType kType>
__device__ __forceinline__ void LoadPackedBlock32(const PackedQuantRows& w, int64_t row, int64_t b,
                                                  float v[32]) {
  constexpr int kChunks = 32 / kChunkValues<kType>;
  const int64_t block = row * w.blocks_per_row + b;
  float d, m;
  LoadScales<kType>(w, block, &d, &m);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    DequantChunk<kType>(__ldg(w.quants + block * kChunks + c), d, m, v + c * kChunkValues<kType>);
  }
}

// Address of row `r` of a (rows, cols) matrix in `type`.
__host__ __device__ __forceinline__ const void* RowPointer(const void* base, DType type,
                                                           int64_t cols, int64_t r) {
  return static_cast<const char*>(base) + r * RowBytes(type, cols);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_QUANT_CUH_
