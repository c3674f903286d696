// Dispatch over the converted types, the Q5_0 / Q5_1 decoders (K-quant
// decoders are in kquant.cc) and the row conversion to Q8_0. Compiled with
// -ffp-contract=off (BUILD) so d * q + m rounds as the reference does.
#include "worker/model/ggml_convert.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "common/check.h"
#include "formats/dtype.h"
#include "worker/model/kquant.h"
#include "worker/model/quantize.h"

namespace tpserve {
namespace {

// One 32-value Q5_0 (has_min false, 22 bytes) or Q5_1 (24 bytes) block.
void DequantQ5(const uint8_t* b, bool has_min, float* y) {
  const float d = F16ToF32(static_cast<uint16_t>(b[0] | (b[1] << 8)));
  const float m = has_min ? F16ToF32(static_cast<uint16_t>(b[2] | (b[3] << 8))) : 0.0f;
  const uint8_t* h = b + (has_min ? 4 : 2);
  const uint32_t qh = static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 8) |
                      (static_cast<uint32_t>(h[2]) << 16) | (static_cast<uint32_t>(h[3]) << 24);
  const uint8_t* qs = h + 4;
  for (int i = 0; i < 32; ++i) {
    const int nib = i < 16 ? (qs[i] & 0xF) : (qs[i - 16] >> 4);
    const int q = nib | static_cast<int>(((qh >> i) & 1) << 4);
    y[i] = has_min ? d * static_cast<float>(q) + m : d * static_cast<float>(q - 16);
  }
}

// ggml's kvalues_iq4nl: the 16 levels of IQ4_NL and IQ4_XS.
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

// 32 values from 16 bytes of IQ4 indices (low nibbles first) and scale `d`.
void DequantIq4(const uint8_t* qs, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4Values[qs[j] & 0xF]);
    y[j + 16] = d * static_cast<float>(kIq4Values[qs[j] >> 4]);
  }
}

// One 256-value IQ4_XS super-block (136 bytes).
void DequantIq4Xs(const uint8_t* b, float* y) {
  const float d = F16ToF32(static_cast<uint16_t>(b[0] | (b[1] << 8)));
  const uint32_t scales_h = static_cast<uint32_t>(b[2] | (b[3] << 8));
  const uint8_t* scales_l = b + 4;
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                   static_cast<int>(((scales_h >> (2 * ib)) & 3) << 4);
    DequantIq4(qs + 16 * ib, d * static_cast<float>(ls - 32), y + 32 * ib);
  }
}

bool IsK(ConvertedType t) { return KQuantFromGgml(static_cast<uint32_t>(t)).has_value(); }

KQuantType AsK(ConvertedType t) { return static_cast<KQuantType>(static_cast<uint32_t>(t)); }

// Block size in values and bytes of the non-K types.
struct Block {
  int64_t values, bytes;
};
Block NonKBlock(ConvertedType t) {
  switch (t) {
    case ConvertedType::kQ5_0:
      return {32, 22};
    case ConvertedType::kQ5_1:
      return {32, 24};
    case ConvertedType::kIQ4_NL:
      return {32, 18};
    case ConvertedType::kIQ4_XS:
      return {256, 136};
    default:
      return {0, 0};
  }
}

}  // namespace

std::optional<ConvertedType> ConvertedTypeFromGgml(uint32_t ggml_type) {
  if (ggml_type == 6 || ggml_type == 7 || ggml_type == 20 || ggml_type == 23 ||
      KQuantFromGgml(ggml_type).has_value())
    return static_cast<ConvertedType>(ggml_type);
  return std::nullopt;
}

const char* ConvertedTypeName(ConvertedType t) {
  switch (t) {
    case ConvertedType::kQ5_0:
      return "Q5_0";
    case ConvertedType::kQ5_1:
      return "Q5_1";
    case ConvertedType::kIQ4_NL:
      return "IQ4_NL";
    case ConvertedType::kIQ4_XS:
      return "IQ4_XS";
    default:
      return KQuantName(AsK(t));
  }
}

int64_t ConvertedBlockValues(ConvertedType t) {
  return IsK(t) ? kKQuantBlockValues : NonKBlock(t).values;
}

int64_t ConvertedRowBytes(ConvertedType t, int64_t cols) {
  if (IsK(t)) return KQuantRowBytes(AsK(t), cols);
  const Block b = NonKBlock(t);
  if (cols <= 0 || cols % b.values != 0) return -1;
  return cols / b.values * b.bytes;
}

void DequantizeConvertedRow(ConvertedType t, const void* src, float* dst, int64_t n) {
  if (IsK(t)) return DequantizeKQuantRow(AsK(t), src, dst, n);
  const Block blk = NonKBlock(t);
  TPS_CHECK_EQ(n % blk.values, 0) << ConvertedTypeName(t) << " rows are whole blocks";
  const uint8_t* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n / blk.values; ++i) {
    const uint8_t* block = b + i * blk.bytes;
    float* y = dst + i * blk.values;
    switch (t) {
      case ConvertedType::kIQ4_NL:
        DequantIq4(block + 2, F16ToF32(static_cast<uint16_t>(block[0] | (block[1] << 8))), y);
        break;
      case ConvertedType::kIQ4_XS:
        DequantIq4Xs(block, y);
        break;
      default:
        DequantQ5(block, t == ConvertedType::kQ5_1, y);
    }
  }
}

void ConvertToQ8_0(ConvertedType t, const uint8_t* src, int64_t rows, int64_t cols,
                   int64_t col_begin, int64_t col_count, uint8_t* dst) {
  const int64_t src_row = ConvertedRowBytes(t, cols);
  TPS_CHECK_GT(src_row, 0) << ConvertedTypeName(t) << " row of " << cols << " values";
  TPS_CHECK(col_begin >= 0 && col_count >= 0 && col_begin + col_count <= cols &&
            col_begin % kQuantBlockValues == 0 && col_count % kQuantBlockValues == 0)
      << "columns [" << col_begin << ", +" << col_count << ") of " << cols;
  const int64_t dst_row = RowBytes(DType::kQ8_0, col_count);
  auto convert = [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      DequantizeConvertedRow(t, src + r * src_row, row.data(), cols);
      QuantizeRow(DType::kQ8_0, row.data() + col_begin, dst + r * dst_row, col_count);
    }
  };
  // Rows are independent: large tensors are split over the machine's cores
  // (load time of a 7B K-quant model is dominated by this conversion).
  constexpr int64_t kValuesPerThread = int64_t{1} << 18;
  const int64_t by_size = rows * cols / kValuesPerThread;
  const int threads = static_cast<int>(std::min<int64_t>(
      {by_size, rows, static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()))}));
  if (threads <= 1) return convert(0, rows);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back(convert, rows * i / threads, rows * (i + 1) / threads);
  }
  for (std::thread& th : pool) th.join();
}

}  // namespace tpserve
