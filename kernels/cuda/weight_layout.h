// The CUDA backend's device layout of a weight matrix, the one cuda::Gemm,
// cuda::GemmSwiglu and the GEMMs behind them read (cuda_ops.h). F32, F16 and
// BF16 keep the dtype.h rows. Quantized types (Q8_0, Q4_0, Q4_1) are split
// into two planes so that the decode GEMM reads them with 16-byte loads,
// consecutive lanes on consecutive chunks:
//
//   quants: block (r, b) (row r, values 32b .. 32b+31) at
//           (r * cols / 32 + b) * QuantBytesPerBlock: the block's qs bytes as
//           in dtype.h (Q4: 16 bytes, byte j = value j low nibble, value
//           j + 16 high; Q8_0: 32 int8);
//   scales: right after the quants (16-byte aligned), block (r, b) at
//           (r * cols / 32 + b) * ScaleBytesPerBlock: f16 d, then f16 m
//           for Q4_1.
//
// The same bytes as dtype.h, reordered. Repacked once, on the host, where
// weights are uploaded (worker/engine/cuda/device_weights.cc):
//
//   std::vector<uint8_t> packed(DeviceWeightBytes(dtype, rows, cols));
//   PackDeviceWeight(dtype, rows, cols, gguf_rows, packed.data());
#ifndef TPSERVE_KERNELS_CUDA_WEIGHT_LAYOUT_H_
#define TPSERVE_KERNELS_CUDA_WEIGHT_LAYOUT_H_

#include <cstdint>
#include <cstring>

#include "formats/dtype.h"

namespace tpserve::kernels::cuda {

// qs bytes of one quantized block (a multiple of 16: whole 16-byte chunks).
constexpr int64_t QuantBytesPerBlock(DType t) { return t == DType::kQ8_0 ? 32 : 16; }
// d (and m) bytes of one quantized block: the bytes before qs in dtype.h.
constexpr int64_t ScaleBytesPerBlock(DType t) { return t == DType::kQ4_1 ? 4 : 2; }
static_assert(QuantBytesPerBlock(DType::kQ8_0) + ScaleBytesPerBlock(DType::kQ8_0) ==
                  BlockBytes(DType::kQ8_0) &&
              QuantBytesPerBlock(DType::kQ4_0) + ScaleBytesPerBlock(DType::kQ4_0) ==
                  BlockBytes(DType::kQ4_0) &&
              QuantBytesPerBlock(DType::kQ4_1) + ScaleBytesPerBlock(DType::kQ4_1) ==
                  BlockBytes(DType::kQ4_1));

static_assert(QuantBytesPerBlock(DType::kQ8_0) % 16 == 0 &&
                  QuantBytesPerBlock(DType::kQ4_0) % 16 == 0,
              "whole 16-byte chunks, so the scale plane after them is 16-byte aligned too");

// Byte offset of the scale plane of a quantized (rows, cols) matrix.
constexpr int64_t ScalePlaneOffset(DType t, int64_t rows, int64_t cols) {
  return rows * (cols / kQuantBlockValues) * QuantBytesPerBlock(t);
}

// Device bytes of a (rows, cols) matrix; -1 where dtype.h has no such rows.
constexpr int64_t DeviceWeightBytes(DType t, int64_t rows, int64_t cols) {
  if (RowBytes(t, cols) < 0) return -1;
  if (!IsQuantized(t)) return rows * RowBytes(t, cols);
  return ScalePlaneOffset(t, rows, cols) +
         rows * (cols / kQuantBlockValues) * ScaleBytesPerBlock(t);
}

// dst (DeviceWeightBytes) = the device layout of `rows` dtype.h rows at src.
// cols is a multiple of 32 for quantized t.
inline void PackDeviceWeight(DType t, int64_t rows, int64_t cols, const void* src, void* dst) {
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  if (!IsQuantized(t)) {
    std::memcpy(out, in, static_cast<size_t>(rows * RowBytes(t, cols)));
    return;
  }
  const int64_t blocks = rows * (cols / kQuantBlockValues);
  const int64_t qb = QuantBytesPerBlock(t), sb = ScaleBytesPerBlock(t);
  uint8_t* scales = out + ScalePlaneOffset(t, rows, cols);
  for (int64_t i = 0; i < blocks; ++i) {
    const uint8_t* block = in + i * BlockBytes(t);
    std::memcpy(scales + i * sb, block, static_cast<size_t>(sb));
    std::memcpy(out + i * qb, block + sb, static_cast<size_t>(qb));
  }
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_WEIGHT_LAYOUT_H_
