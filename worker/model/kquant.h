// llama.cpp's K-quant tensor types (GGML ids 10..14: Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K), which most published GGUF models use. tpserve does not compute with
// them: readers dequantize K-quant rows to f32 here and re-quantize them to
// Q8_0 (ggml_convert.h), so the engine and kernels only ever see Q8_0.
//
// Every K-quant type packs 256 values ("super-block") into one block, split in
// sub-blocks of 16 or 32 values with their own small integer scales (and mins)
// that multiply the block's f16 scale(s). Byte layouts (packed, little-endian):
//   Q2_K  84 B: scales[16] (lo nibble scale, hi nibble min), qs[64] (2-bit),
//               f16 d, f16 dmin;            x = d*sc*q - dmin*m   (16 x 16 values)
//   Q3_K 110 B: hmask[32] (3rd bit, set = no offset), qs[64] (low 2 bits),
//               scales[12] (16 x 6-bit, minus 32), f16 d;  x = d*sc*(q - 4*!h)
//   Q4_K 144 B: f16 d, f16 dmin, scales[12] (8 x 6-bit scales + 8 x 6-bit mins),
//               qs[128] (4-bit);            x = d*sc*q - dmin*m   (8 x 32 values)
//   Q5_K 176 B: f16 d, f16 dmin, scales[12] (as Q4_K), qh[32] (5th bit),
//               qs[128] (low 4 bits);       x = d*sc*q - dmin*m   (8 x 32 values)
//   Q6_K 210 B: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16],
//               f16 d;                      x = d*sc*(q - 32)     (16 x 16 values)
// Bit positions of each value are documented next to its decoder in
// kquant.cc. Dequantization follows the reference order of operations (the
// sub-block scale d*sc is rounded to f32 first), so it is bit-exact with
// llama.cpp's and the gguf Python package's reference dequantizers.
//
//   std::optional<KQuantType> k = KQuantFromGgml(t.ggml_type);  // 12 -> kQ4_K
//   std::vector<float> row(cols);                                // cols % 256 == 0
//   DequantizeKQuantRow(*k, src, row.data(), cols);
#ifndef TPSERVE_WORKER_MODEL_KQUANT_H_
#define TPSERVE_WORKER_MODEL_KQUANT_H_

#include <cstdint>
#include <optional>

namespace tpserve {

// Values are the GGML type ids.
enum class KQuantType : uint32_t { kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14 };

// Values per K-quant block (every K type).
constexpr int64_t kKQuantBlockValues = 256;

// The K-quant type with GGML id `ggml_type`, or nullopt (including Q8_K, which
// only ever holds activations inside llama.cpp).
std::optional<KQuantType> KQuantFromGgml(uint32_t ggml_type);

// Bytes per 256-value block: 84, 110, 144, 176, 210.
int64_t KQuantBlockBytes(KQuantType t);

// "Q2_K" ... "Q6_K".
const char* KQuantName(KQuantType t);

// Bytes of one row of `cols` values; -1 unless `cols` is a positive multiple of 256.
int64_t KQuantRowBytes(KQuantType t, int64_t cols);

// Dequantizes `n` values (n % 256 == 0) from consecutive blocks at `src`.
void DequantizeKQuantRow(KQuantType t, const void* src, float* dst, int64_t n);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_KQUANT_H_
