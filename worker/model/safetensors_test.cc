#include "worker/model/safetensors.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> File(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
  const uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

absl::StatusOr<SafetensorsHeader> Parse(const std::vector<uint8_t>& b) {
  return ParseSafetensorsHeader(absl::MakeConstSpan(b), "x.safetensors");
}

TEST(SafetensorsTest, ParsesTensorsAndMetadata) {
  const std::string h =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"c":{"dtype":"I64","shape":[],"data_offsets":[32,40]}})";
  auto r = Parse(File(h, 40));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data_offset, 8 + h.size());
  ASSERT_EQ(r->tensors.size(), 3u);
  EXPECT_EQ(r->metadata.size(), 1u);
  const SafetensorsTensor* a = nullptr;
  const SafetensorsTensor* c = nullptr;
  for (const auto& t : r->tensors) {
    if (t.name == "a") a = &t;
    if (t.name == "c") c = &t;
  }
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->bytes(), 24u);
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->dtype.has_value());
  EXPECT_EQ(c->dtype_name, "I64");
}

TEST(SafetensorsTest, Errors) {
  const std::pair<std::string, const char*> cases[] = {
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", "outside the data section"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "need 8 bytes"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "end before begin"},
      {R"({"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", "unknown dtype 'Q9'"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "non-negative"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
       "overflows"},
      {R"({"a":{"dtype":"F32","shape":"x","data_offsets":[0,8]}})", "non-array shape"},
      {R"({"a":{"dtype":"F32","shape":[2]}})", "data_offsets"},
      {R"({"a":7})", "not an object"},
      {R"([1,2])", "not a JSON object"},
      {R"({"a":)", "not valid JSON"},
      {R"({"__metadata__":{"k":1}})", "not a string"},
  };
  for (const auto& [h, want] : cases) {
    auto r = Parse(File(h, 8));
    ASSERT_FALSE(r.ok()) << h;
    EXPECT_THAT(r.status().message(), HasSubstr(want)) << h;
    EXPECT_THAT(r.status().message(), HasSubstr("x.safetensors: ")) << h;
  }
}

TEST(SafetensorsTest, TruncatedHeader) {
  EXPECT_THAT(Parse({1, 2, 3}).status().message(), HasSubstr("shorter than the 8-byte"));
  std::vector<uint8_t> b = File("{}", 0);
  b[0] = 100;  // claims a 100-byte header
  EXPECT_THAT(Parse(b).status().message(), HasSubstr("truncated"));
  b[7] = 1;  // absurd length
  EXPECT_THAT(Parse(b).status().message(), HasSubstr("exceeds"));
}

TEST(SafetensorsTest, EveryTruncationIsAnError) {
  const std::vector<uint8_t> full =
      File(R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", 8);
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_FALSE(Parse(std::vector<uint8_t>(full.begin(), full.begin() + n)).ok()) << n;
  }
  EXPECT_TRUE(Parse(full).ok());
}

TEST(SafetensorsTest, MissingFile) {
  auto f = SafetensorsFile::Open("/nonexistent/model.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tpserve
