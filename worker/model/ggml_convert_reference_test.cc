// Checks the decoders of the types read by conversion to Q8_0 (ggml_convert.h:
// Q5_0, Q5_1 and the K-quants of kquant.h) against the gguf Python package's
// dequantizers (an independent implementation), run from $TPSERVE_ROOT/.venv
// as a subprocess (ggml_convert_reference_check.py):
//   - DequantizeConvertedRow: bit-exact f32 for Q5_0, Q5_1, Q2_K, Q3_K, Q4_K,
//     Q5_K, Q6_K, IQ4_NL, IQ4_XS on random blocks (random bytes, random sane f16 scales of
//     both signs) and edge blocks (all zero, all ones with unit/huge/
//     subnormal/-0 scales);
//   - ConvertToQ8_0 of a column slice: the same bytes as
//     gguf.quants.quantize(Q8_0) of gguf's dequantized slice.
// Expected values come from the reference at test time; nothing is hard-coded.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "formats/dtype.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/model/ggml_convert.h"

namespace tpserve {
namespace {

constexpr int64_t kRows = 40, kCols = 1024, kColBegin = 288, kColCount = 512;
constexpr ConvertedType kTypes[] = {
    ConvertedType::kQ5_0, ConvertedType::kQ5_1,   ConvertedType::kQ2_K,
    ConvertedType::kQ3_K, ConvertedType::kQ4_K,   ConvertedType::kQ5_K,
    ConvertedType::kQ6_K, ConvertedType::kIQ4_NL, ConvertedType::kIQ4_XS};

std::string Root() {
  const char* r = std::getenv("TPSERVE_ROOT");
  return r != nullptr ? r : ".";
}

std::string Tmp(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t != nullptr ? t : "/tmp") + "/" + name;
}

bool WriteFile(const std::string& path, const void* data, size_t size) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  return f.good();
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Byte offsets of the f16 scale fields in one block: d, then dmin (or -1).
std::pair<int, int> ScaleOffsets(ConvertedType t) {
  switch (t) {
    case ConvertedType::kQ5_0:
      return {0, -1};
    case ConvertedType::kQ5_1:
      return {0, 2};
    case ConvertedType::kQ2_K:
      return {80, 82};
    case ConvertedType::kQ3_K:
      return {108, -1};
    case ConvertedType::kQ4_K:
    case ConvertedType::kQ5_K:
      return {0, 2};
    case ConvertedType::kQ6_K:
      return {208, -1};
    case ConvertedType::kIQ4_NL:
    case ConvertedType::kIQ4_XS:
      return {0, -1};
  }
  return {-1, -1};
}

void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFF);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// kRows rows of kCols values: the first rows are edge cases, the rest random.
std::vector<uint8_t> MakeBlocks(ConvertedType t, std::mt19937& rng) {
  const int64_t per_row = kCols / ConvertedBlockValues(t);
  const int64_t bb = ConvertedRowBytes(t, kCols) / per_row;
  std::vector<uint8_t> out(static_cast<size_t>(kRows * per_row * bb));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> mag(-10.0f, 0.0f);  // log2 of |scale|
  const auto [d_off, m_off] = ScaleOffsets(t);
  // Edge rows: (fill byte, d, dmin).
  const struct {
    uint8_t fill;
    uint16_t d, dmin;
  } edges[] = {{0x00, 0x0000, 0x0000}, {0xFF, 0x3C00, 0x3C00}, {0xFF, 0x7BFF, 0xFBFF},
               {0xFF, 0x0001, 0x8001}, {0xAA, 0x8000, 0x8000}, {0x55, 0xBC00, 0x3800}};
  constexpr int kEdges = static_cast<int>(std::size(edges));
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t k = 0; k < per_row; ++k) {
      uint8_t* b = out.data() + (r * per_row + k) * bb;
      uint16_t d, dmin;
      if (r < kEdges) {
        std::memset(b, edges[r].fill, static_cast<size_t>(bb));
        d = edges[r].d;
        dmin = edges[r].dmin;
      } else {
        for (int64_t i = 0; i < bb; ++i) b[i] = static_cast<uint8_t>(byte(rng));
        const float sd = (byte(rng) & 1) ? -1.0f : 1.0f, sm = (byte(rng) & 1) ? -1.0f : 1.0f;
        d = F32ToF16(sd * std::exp2(mag(rng)));
        dmin = F32ToF16(sm * std::exp2(mag(rng)));
      }
      PutU16(b + d_off, d);
      if (m_off >= 0) PutU16(b + m_off, dmin);
    }
  }
  return out;
}

TEST(GgmlConvertReferenceTest, DequantizationAndQ8_0ConversionMatchGguf) {
  const std::string python = Root() + "/.venv/bin/python3";
  ASSERT_EQ(std::system((python + " -c 'import gguf' 2>/dev/null").c_str()), 0)
      << "the gguf package is missing from " << python << " (run scripts/setup.sh)";
  std::mt19937 rng(1234);
  nlohmann::json manifest = nlohmann::json::array();
  std::vector<std::vector<uint8_t>> blocks;
  for (ConvertedType t : kTypes) {
    const std::string name = ConvertedTypeName(t);
    blocks.push_back(MakeBlocks(t, rng));
    ASSERT_TRUE(WriteFile(Tmp(name + ".blocks"), blocks.back().data(), blocks.back().size()));
    manifest.push_back({{"type", name},
                        {"blocks", Tmp(name + ".blocks")},
                        {"rows", kRows},
                        {"cols", kCols},
                        {"col_begin", kColBegin},
                        {"col_count", kColCount},
                        {"f32", Tmp(name + ".f32")},
                        {"q8_0", Tmp(name + ".q8_0")}});
  }
  const std::string text = manifest.dump();
  ASSERT_TRUE(WriteFile(Tmp("convert_manifest.json"), text.data(), text.size()));
  const std::string cmd = python + " " + Root() + "/worker/model/ggml_convert_reference_check.py " +
                          Tmp("convert_manifest.json");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "reference failed: " << cmd;

  for (size_t k = 0; k < std::size(kTypes); ++k) {
    const ConvertedType t = kTypes[k];
    SCOPED_TRACE(ConvertedTypeName(t));
    const std::vector<uint8_t> ref_f32 = ReadFile(Tmp(std::string(ConvertedTypeName(t)) + ".f32"));
    ASSERT_EQ(ref_f32.size(), static_cast<size_t>(kRows * kCols * 4));
    std::vector<float> ours(static_cast<size_t>(kRows * kCols));
    for (int64_t r = 0; r < kRows; ++r) {
      DequantizeConvertedRow(t, blocks[k].data() + r * ConvertedRowBytes(t, kCols),
                             ours.data() + r * kCols, kCols);
    }
    int64_t mismatches = 0, nonzero = 0;
    for (int64_t i = 0; i < kRows * kCols; ++i) {
      uint32_t a, b;
      std::memcpy(&a, &ours[i], 4);
      std::memcpy(&b, ref_f32.data() + i * 4, 4);
      nonzero += ours[i] != 0.0f;
      if (a != b && mismatches++ < 5) {
        float ref;
        std::memcpy(&ref, &b, 4);
        ADD_FAILURE() << "value " << i << " (row " << i / kCols << "): ours " << ours[i] << " (0x"
                      << std::hex << a << "), gguf " << ref << " (0x" << b << ")" << std::dec;
      }
    }
    EXPECT_EQ(mismatches, 0);
    EXPECT_GT(nonzero, kRows * kCols / 2);  // the blocks really decode to values
    printf("%s: %lld values bit-exact with gguf.quants.dequantize\n", ConvertedTypeName(t),
           static_cast<long long>(kRows * kCols - mismatches));

    const std::vector<uint8_t> ref_q8 = ReadFile(Tmp(std::string(ConvertedTypeName(t)) + ".q8_0"));
    std::vector<uint8_t> q8(static_cast<size_t>(kRows * RowBytes(DType::kQ8_0, kColCount)));
    ConvertToQ8_0(t, blocks[k].data(), kRows, kCols, kColBegin, kColCount, q8.data());
    ASSERT_EQ(ref_q8.size(), q8.size());
    int64_t bad_bytes = 0;
    for (size_t i = 0; i < q8.size(); ++i) bad_bytes += q8[i] != ref_q8[i];
    EXPECT_EQ(bad_bytes, 0) << "Q8_0 conversion differs from gguf's quantize(dequantize(x))";
  }
}

}  // namespace
}  // namespace tpserve
