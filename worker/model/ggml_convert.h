// GGUF tensor types tpserve reads by converting them to Q8_0 at read time:
// llama.cpp's K-quants (Q2_K..Q6_K, kquant.h), and the 5-bit Q5_0 / Q5_1
// and non-linear 4-bit IQ4_NL / IQ4_XS, which llama.cpp's K-quant presets
// fall back to for rows that are not a multiple of 256 values (IQ4_XS also
// as a preset of its own). The engine and kernels only ever see Q8_0.
//
// Q5_0 / Q5_1 (32 values per block, little-endian, packed):
//   Q5_0 22 B: f16 d, uint32 qh, uint8 qs[16];          x[i] = d * (q(i) - 16)
//   Q5_1 24 B: f16 d, f16 m, uint32 qh, uint8 qs[16];   x[i] = d * q(i) + m
//   q(i) = nib(i) | (bit i of qh) << 4, nib(i) as Q4_0 (dtype.h).
// IQ4_NL / IQ4_XS: 4-bit indices into the fixed table kIq4Values (ggml's
// kvalues_iq4nl), nib(i) as Q4_0:
//   IQ4_NL 18 B per 32: f16 d, uint8 qs[16];            x[i] = d * T[nib(i)]
//   IQ4_XS 136 B per 256: f16 d, uint16 scales_h, uint8 scales_l[4],
//     uint8 qs[128]; sub-block b (32 values, qs + 16 b) has the 6-bit scale
//     ls(b) = (scales_l[b / 2] >> 4 (b % 2) & 15) | (scales_h >> 2 b & 3) << 4
//     and x[i] = (d * (ls(b) - 32)) * T[nib(i)].
//
// Conversion dequantizes whole rows to f32 (bit-exact with the gguf package's
// and llama.cpp's reference dequantizers) and quantizes the requested columns
// with QuantizeRow(DType::kQ8_0) (quantize.h).
//
//   std::optional<ConvertedType> c = ConvertedTypeFromGgml(t.ggml_type);  // 12 -> kQ4_K
//   std::vector<uint8_t> q8(RowBytes(DType::kQ8_0, n) * rows);
//   ConvertToQ8_0(*c, src, rows, cols, col_begin, n, q8.data());
#ifndef TPSERVE_WORKER_MODEL_GGML_CONVERT_H_
#define TPSERVE_WORKER_MODEL_GGML_CONVERT_H_

#include <cstdint>
#include <optional>

namespace tpserve {

// Values are the GGML type ids.
enum class ConvertedType : uint32_t {
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
};

// The converted type with GGML id `ggml_type`, or nullopt.
std::optional<ConvertedType> ConvertedTypeFromGgml(uint32_t ggml_type);

// "Q5_0", "Q5_1", "Q2_K", ... "Q6_K", "IQ4_NL", "IQ4_XS".
const char* ConvertedTypeName(ConvertedType t);

// Values per block: 32 (Q5_0, Q5_1, IQ4_NL) or 256 (K-quants, IQ4_XS).
int64_t ConvertedBlockValues(ConvertedType t);

// Bytes of one row of `cols` values; -1 unless `cols` is a positive multiple
// of ConvertedBlockValues(t).
int64_t ConvertedRowBytes(ConvertedType t, int64_t cols);

// Dequantizes `n` values (a multiple of ConvertedBlockValues(t)) from
// consecutive blocks at `src`.
void DequantizeConvertedRow(ConvertedType t, const void* src, float* dst, int64_t n);

// Converts columns [col_begin, col_begin + col_count) of `rows` rows of
// `cols` values each (rows of ConvertedRowBytes(t, cols) bytes at `src`) to
// Q8_0 rows of RowBytes(DType::kQ8_0, col_count) bytes at `dst`. Requires
// cols a multiple of ConvertedBlockValues(t) and both column ends multiples of 32.
void ConvertToQ8_0(ConvertedType t, const uint8_t* src, int64_t rows, int64_t cols,
                   int64_t col_begin, int64_t col_count, uint8_t* dst);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_GGML_CONVERT_H_
