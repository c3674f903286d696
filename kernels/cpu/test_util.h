// Helpers shared by the CPU kernel tests: seeded random tensors, random
// quantized rows in the dtype.h layouts, and ggml-style normalised error.
//
//   Rng rng(42);
//   std::vector<float> x = rng.Floats(576);
//   std::vector<uint8_t> w = RandomRows(rng, DType::kQ4_1, /*rows=*/3, /*cols=*/64);
//   EXPECT_LT(Nmse(got, want), 1e-4);
#ifndef TPSERVE_KERNELS_CPU_TEST_UTIL_H_
#define TPSERVE_KERNELS_CPU_TEST_UTIL_H_

#include <cstdint>
#include <random>
#include <vector>

#include "formats/dtype.h"

namespace tpserve::kernels::cpu {

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  float Uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen_); }
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }  // [lo, hi]
  std::vector<float> Floats(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    for (float& f : v) f = Uniform(lo, hi);
    return v;
  }
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

// `rows` rows of `cols` values in dtype `t`, random but well-formed: Q
// blocks get random quants with small positive f16 scales (and signed mins).
std::vector<uint8_t> RandomRows(Rng& rng, DType t, int64_t rows, int64_t cols);

// `values` as a KV cache of dtype `kv` holds them: f32 bytes, or each value
// rounded to bf16 (F32ToBF16) for kBF16.
std::vector<uint8_t> KvCacheBytes(const std::vector<float>& values, DType kv);

// Dequantises `rows` rows (the reference path of every quantized test).
std::vector<float> DequantizeRows(DType t, const uint8_t* data, int64_t rows, int64_t cols);

// sum((a - b)^2) / sum(b^2), b the reference (ggml test-backend-ops' NMSE).
double Nmse(const std::vector<float>& a, const std::vector<double>& b);
double Nmse(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace tpserve::kernels::cpu

#endif  // TPSERVE_KERNELS_CPU_TEST_UTIL_H_
