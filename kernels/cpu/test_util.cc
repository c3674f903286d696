#include "kernels/cpu/test_util.h"

#include <cstring>

namespace tpserve::kernels::cpu {

std::vector<uint8_t> KvCacheBytes(const std::vector<float>& values, DType kv) {
  std::vector<uint8_t> bytes(values.size() * (kv == DType::kBF16 ? 2 : 4));
  for (size_t i = 0; i < values.size(); ++i) {
    if (kv == DType::kBF16) {
      const uint16_t b = F32ToBF16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &b, 2);
    } else {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    }
  }
  return bytes;
}

std::vector<uint8_t> RandomRows(Rng& rng, DType t, int64_t rows, int64_t cols) {
  const int64_t row_bytes = RowBytes(t, cols);
  std::vector<uint8_t> out(static_cast<size_t>(rows * row_bytes));
  uint8_t* p = out.data();
  const int64_t count = rows * cols / BlockValues(t);
  for (int64_t i = 0; i < count; ++i) {
    switch (t) {
      case DType::kF32: {
        const float f = rng.Uniform(-1.0f, 1.0f);
        std::memcpy(p, &f, 4);
        break;
      }
      case DType::kF16: {
        const uint16_t h = F32ToF16(rng.Uniform(-1.0f, 1.0f));
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::kBF16: {
        const uint16_t h = F32ToBF16(rng.Uniform(-1.0f, 1.0f));
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::kQ8_0: {
        BlockQ8_0 b;
        b.d = F32ToF16(rng.Uniform(0.001f, 0.02f));
        for (int8_t& q : b.qs) q = static_cast<int8_t>(rng.Int(-128, 127));
        std::memcpy(p, &b, sizeof(b));
        break;
      }
      case DType::kQ4_0: {
        BlockQ4_0 b;
        b.d = F32ToF16(rng.Uniform(0.01f, 0.2f));
        for (uint8_t& q : b.qs) q = static_cast<uint8_t>(rng.Int(0, 255));
        std::memcpy(p, &b, sizeof(b));
        break;
      }
      case DType::kQ4_1: {
        BlockQ4_1 b;
        b.d = F32ToF16(rng.Uniform(0.01f, 0.2f));
        b.m = F32ToF16(rng.Uniform(-1.0f, 0.2f));
        for (uint8_t& q : b.qs) q = static_cast<uint8_t>(rng.Int(0, 255));
        std::memcpy(p, &b, sizeof(b));
        break;
      }
    }
    p += BlockBytes(t);
  }
  return out;
}

std::vector<float> DequantizeRows(DType t, const uint8_t* data, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  const int64_t row_bytes = RowBytes(t, cols);
  for (int64_t r = 0; r < rows; ++r)
    DequantizeRow(t, data + r * row_bytes, out.data() + r * cols, cols);
  return out;
}

double Nmse(const std::vector<float>& a, const std::vector<double>& b) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    err += d * d;
    ref += b[i] * b[i];
  }
  return ref > 0.0 ? err / ref : err;
}

double Nmse(const std::vector<float>& a, const std::vector<float>& b) {
  return Nmse(a, std::vector<double>(b.begin(), b.end()));
}

}  // namespace tpserve::kernels::cpu
