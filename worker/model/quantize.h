// Reference quantizers: f32 -> the block layouts of dtype.h, with
// round-to-nearest semantics matching llama.cpp's reference quantize_row_*
// (and the gguf Python package's numpy quantizers):
//   Q8_0: d = max|x| / 127, q = round(x / d)                 (half away from zero)
//   Q4_0: d = x[argmax |x|] / -8, q = min(15, trunc(x / d + 8.5))
//   Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - m) / d + 0.5))
// The scale used for rounding is the f32 value; the stored scale is its f16.
// Used by the test-model generator and kernel tests (activation quantization).
//
//   std::vector<uint8_t> q(RowBytes(DType::kQ8_0, n));
//   QuantizeRow(DType::kQ8_0, x, q.data(), n);   // n % 32 == 0
#ifndef TPSERVE_WORKER_MODEL_QUANTIZE_H_
#define TPSERVE_WORKER_MODEL_QUANTIZE_H_

#include <cstdint>

#include "formats/dtype.h"

namespace tpserve {

// Writes RowBytes(t, n) bytes to `dst`. For Q types `n` must be a multiple of 32.
void QuantizeRow(DType t, const float* src, void* dst, int64_t n);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_QUANTIZE_H_
