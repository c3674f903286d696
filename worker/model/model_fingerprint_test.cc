#include "worker/model/model_fingerprint.h"

#include <fstream>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

std::string WriteFile(const std::string& name, const std::string& bytes) {
  const std::string path = std::string(testing::TempDir()) + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(ModelFingerprintTest, SameContentSameFingerprintWhateverTheName) {
  const std::string bytes = RandomBytes(5 << 20, 1);
  auto a = ModelFingerprint(WriteFile("a.gguf", bytes));
  auto b = ModelFingerprint(WriteFile("b.gguf", bytes));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(a->rfind("fp1-", 0), 0u) << *a;
}

TEST(ModelFingerprintTest, ScrambledWeightsWithTheSameHeaderDiffer) {
  // Same first MiB (the header and shapes), different tensor data after it.
  const std::string head = RandomBytes(1 << 20, 2);
  auto a = ModelFingerprint(WriteFile("c.gguf", head + RandomBytes(4 << 20, 3)));
  auto b = ModelFingerprint(WriteFile("d.gguf", head + RandomBytes(4 << 20, 4)));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST(ModelFingerprintTest, OneChangedByteInTheHeaderDiffers) {
  std::string bytes = RandomBytes(3 << 20, 5);
  auto a = ModelFingerprint(WriteFile("e.gguf", bytes));
  bytes[1000] ^= 1;
  auto b = ModelFingerprint(WriteFile("f.gguf", bytes));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST(ModelFingerprintTest, SmallFilesAndMissingFiles) {
  auto a = ModelFingerprint(WriteFile("g.gguf", "tiny"));
  auto b = ModelFingerprint(WriteFile("h.gguf", "tinY"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  auto missing = ModelFingerprint("/nonexistent/model.gguf");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

}  // namespace
}  // namespace tpserve
