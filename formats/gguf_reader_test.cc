#include "formats/gguf_reader.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

// Builds GGUF bytes field by field, so tests can write anything — including
// what a correct writer never would.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T v) {
    const size_t at = b_.size();
    b_.resize(at + sizeof(T));
    std::memcpy(b_.data() + at, &v, sizeof(T));
    return *this;
  }
  Bytes& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return Put<uint32_t>(0x46554747)
        .Put<uint32_t>(version)
        .Put<uint64_t>(n_tensors)
        .Put<uint64_t>(n_kv);
  }
  // Tensor info: shape given GGUF-style (ne, innermost first).
  Bytes& Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    Str(name).Put<uint32_t>(ne.size());
    for (uint64_t n : ne) Put<uint64_t>(n);
    return Put<uint32_t>(type).Put<uint64_t>(offset);
  }
  Bytes& Align(size_t a = 32) {
    b_.resize((b_.size() + a - 1) / a * a, 0);
    return *this;
  }
  Bytes& Zeros(size_t n) {
    b_.resize(b_.size() + n, 0);
    return *this;
  }
  const std::vector<uint8_t>& get() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

absl::StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const std::vector<uint8_t>& b) {
  auto owned = std::make_shared<std::vector<uint8_t>>(b);
  return GgufFile::Parse(owned, absl::MakeConstSpan(*owned), "test.gguf");
}

// One KV of every type, two tensors (F32 [2, 32] and Q8_0 [1, 32]).
std::vector<uint8_t> ValidFile() {
  Bytes b;
  b.Header(2, 15);
  b.Str("u8").Put<uint32_t>(0).Put<uint8_t>(200);
  b.Str("i8").Put<uint32_t>(1).Put<int8_t>(-5);
  b.Str("u16").Put<uint32_t>(2).Put<uint16_t>(60000);
  b.Str("i16").Put<uint32_t>(3).Put<int16_t>(-300);
  b.Str("u32").Put<uint32_t>(4).Put<uint32_t>(4000000000u);
  b.Str("i32").Put<uint32_t>(5).Put<int32_t>(-70000);
  b.Str("f32").Put<uint32_t>(6).Put<float>(1.5f);
  b.Str("bool").Put<uint32_t>(7).Put<uint8_t>(1);
  b.Str("str").Put<uint32_t>(8).Str("hello");
  b.Str("u64").Put<uint32_t>(10).Put<uint64_t>(1ull << 40);
  b.Str("i64").Put<uint32_t>(11).Put<int64_t>(-(1ll << 40));
  b.Str("f64").Put<uint32_t>(12).Put<double>(2.25);
  b.Str("strs").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(3).Str("a").Str("").Str(
      "<|im_end|>");
  b.Str("ints")
      .Put<uint32_t>(9)
      .Put<uint32_t>(5)
      .Put<uint64_t>(3)
      .Put<int32_t>(-1)
      .Put<int32_t>(0)
      .Put<int32_t>(7);
  b.Str("nested")
      .Put<uint32_t>(9)
      .Put<uint32_t>(9)
      .Put<uint64_t>(1)
      .Put<uint32_t>(6)
      .Put<uint64_t>(2)
      .Put<float>(0.5f)
      .Put<float>(-0.5f);
  b.Tensor("w", {32, 2}, 0, 0);
  b.Tensor("q", {32, 1}, 8, 256);
  b.Align();
  b.Zeros(256 + 34);
  return b.get();
}

TEST(GgufReaderTest, ReadsEveryValueType) {
  auto f = ParseBytes(ValidFile());
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 15u);
  EXPECT_EQ(*g.GetInt("u8"), 200);
  EXPECT_EQ(*g.GetInt("i8"), -5);
  EXPECT_EQ(*g.GetInt("u16"), 60000);
  EXPECT_EQ(*g.GetInt("i16"), -300);
  EXPECT_EQ(*g.GetInt("u32"), 4000000000ll);
  EXPECT_EQ(*g.GetInt("i32"), -70000);
  EXPECT_EQ(*g.GetInt("u64"), 1ll << 40);
  EXPECT_EQ(*g.GetInt("i64"), -(1ll << 40));
  EXPECT_EQ(*g.GetFloat("f32"), 1.5);
  EXPECT_EQ(*g.GetFloat("f64"), 2.25);
  EXPECT_EQ(*g.GetFloat("i32"), -70000.0);
  EXPECT_EQ(*g.GetBool("bool"), true);
  EXPECT_EQ(*g.GetString("str"), "hello");
  auto strs = g.GetStringArray("strs");
  ASSERT_TRUE(strs.ok());
  ASSERT_EQ(strs->size(), 3u);
  EXPECT_EQ((*strs)[0], "a");
  EXPECT_EQ((*strs)[1], "");
  EXPECT_EQ((*strs)[2], "<|im_end|>");
  EXPECT_EQ(*g.GetIntArray("ints"), (std::vector<int64_t>{-1, 0, 7}));
  EXPECT_EQ(*g.GetFloatArray("ints"), (std::vector<float>{-1, 0, 7}));
  EXPECT_EQ(g.Find("nested")->type, GgufType::kArray);
  EXPECT_EQ(g.Find("nested")->elem_type, GgufType::kArray);
}

TEST(GgufReaderTest, GetterErrors) {
  auto f = ParseBytes(ValidFile());
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->GetInt("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT((*f)->GetInt("str").status().message(), HasSubstr("is string, not an integer"));
  EXPECT_THAT((*f)->GetString("u8").status().message(), HasSubstr("test.gguf"));
  EXPECT_FALSE((*f)->GetBool("u8").ok());
  EXPECT_FALSE((*f)->GetStringArray("ints").ok());
  EXPECT_FALSE((*f)->GetIntArray("strs").ok());
  EXPECT_FALSE((*f)->GetFloat("str").ok());
}

TEST(GgufReaderTest, TensorInfos) {
  auto f = ParseBytes(ValidFile());
  ASSERT_TRUE(f.ok());
  const GgufTensorInfo* w = (*f)->FindTensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->bytes, 256u);
  const GgufTensorInfo* q = (*f)->FindTensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::kQ8_0);
  EXPECT_EQ(q->bytes, 34u);
  EXPECT_EQ(q->data - w->data, 256);
  EXPECT_EQ((*f)->data_offset() % 32, 0u);
  EXPECT_EQ((*f)->FindTensor("nope"), nullptr);
}

TEST(GgufReaderTest, EveryTruncationIsAnErrorNotACrash) {
  const std::vector<uint8_t> full = ValidFile();
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + n);
    auto f = ParseBytes(cut);
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_THAT(f.status().message(), HasSubstr("test.gguf: ")) << n;
  }
}

TEST(GgufReaderTest, BadMagicAndVersion) {
  std::vector<uint8_t> b = ValidFile();
  b[0] = 'X';
  EXPECT_THAT(ParseBytes(b).status().message(), HasSubstr("not a GGUF file"));
  for (uint32_t v : {1u, 4u}) {
    Bytes h;
    h.Header(0, 0, v);
    EXPECT_THAT(ParseBytes(h.get()).status().message(), HasSubstr("unsupported GGUF version"));
  }
  Bytes v2;
  v2.Header(0, 0, 2);
  EXPECT_TRUE(ParseBytes(v2.get()).ok());
}

TEST(GgufReaderTest, StructuralErrors) {
  struct Case {
    const char* what;
    Bytes bytes;
  };
  std::vector<Case> cases;
  {
    Bytes b;
    b.Header(0, 1).Str("k").Put<uint32_t>(13).Put<uint32_t>(0);
    cases.push_back({"unknown value type 13", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {32}, 4, 0).Align().Zeros(64);
    cases.push_back({"unknown GGML type 4", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {32}, 99, 0).Align().Zeros(64);
    cases.push_back({"unknown GGML type 99", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {32}, 0, 1024).Align().Zeros(128);
    cases.push_back({"outside the data section", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {8}, 0, 8).Align().Zeros(128);
    cases.push_back({"not a multiple of the alignment", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {1ull << 62, 1ull << 62}, 0, 0).Align().Zeros(32);
    cases.push_back({"element count overflows", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {1ull << 61}, 0, 0).Align().Zeros(32);
    cases.push_back({"byte size overflows", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {33}, 8, 0).Align().Zeros(64);
    cases.push_back({"not a multiple of its block size", b});
  }
  {
    // K-quant rows are whole 256-value blocks (Q4_K, row of 128 values).
    Bytes b;
    b.Header(1, 0).Tensor("t", {128, 2}, 12, 0).Align().Zeros(144);
    cases.push_back({"row length 128 is not a multiple of its block size 256", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {1, 1, 1, 1, 1}, 0, 0).Align().Zeros(64);
    cases.push_back({"5 dimensions", b});
  }
  {
    Bytes b;
    b.Header(1, 0).Tensor("t", {0}, 0, 0).Align().Zeros(64);
    cases.push_back({"invalid dimension 0", b});
  }
  {
    Bytes b;
    b.Header(2, 0).Tensor("t", {8}, 0, 0).Tensor("t", {8}, 0, 32).Align().Zeros(64);
    cases.push_back({"duplicate tensor name", b});
  }
  {
    Bytes b;
    b.Header(0, 2)
        .Str("k")
        .Put<uint32_t>(4)
        .Put<uint32_t>(1)
        .Str("k")
        .Put<uint32_t>(4)
        .Put<uint32_t>(2);
    cases.push_back({"duplicate metadata key", b});
  }
  {
    Bytes b;
    b.Header(0, 1).Str("k").Put<uint32_t>(9).Put<uint32_t>(4).Put<uint64_t>(1ull << 60);
    cases.push_back({"runs past the end", b});
  }
  {
    Bytes b;
    b.Header(0, 1).Str("k").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(1ull << 60);
    cases.push_back({"claims", b});
  }
  {
    Bytes b;
    b.Header(0, 1).Str("k").Put<uint32_t>(8).Put<uint64_t>(~0ull);
    cases.push_back({"runs past the end of the file", b});
  }
  {
    Bytes b;
    b.Header(0, 1).Str("general.alignment").Put<uint32_t>(4).Put<uint32_t>(48);
    cases.push_back({"not a power of two", b});
  }
  {
    Bytes b;
    b.Header(0, 1).Str("b").Put<uint32_t>(7).Put<uint8_t>(2);
    cases.push_back({"is not 0 or 1", b});
  }
  {
    Bytes b;
    b.Header(1ull << 40, 0);
    cases.push_back({"tensor count", b});
  }
  {
    Bytes b;  // arrays nested 5 deep
    b.Header(0, 1).Str("k").Put<uint32_t>(9);
    for (int i = 0; i < 5; ++i) b.Put<uint32_t>(9).Put<uint64_t>(1);
    b.Put<uint32_t>(4).Put<uint64_t>(0);
    cases.push_back({"nested deeper", b});
  }
  for (const Case& c : cases) {
    auto f = ParseBytes(c.bytes.get());
    ASSERT_FALSE(f.ok()) << c.what;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(f.status().message(), HasSubstr(c.what));
    EXPECT_THAT(f.status().message(), HasSubstr("test.gguf: "));
  }
}

TEST(GgufReaderTest, UnsupportedButKnownTypesParseWithoutDType) {
  Bytes b;
  b.Header(1, 0).Tensor("k", {256}, 12, 0).Align().Zeros(144);  // Q4_K
  auto f = ParseBytes(b.get());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE((*f)->FindTensor("k")->dtype.has_value());
  EXPECT_STREQ((*f)->FindTensor("k")->ggml_type_name, "Q4_K");
}

TEST(GgufReaderTest, MissingFile) {
  auto f = GgufFile::Open("/nonexistent/model.gguf");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/model.gguf"));
}

TEST(GgufReaderTest, DefaultModel) {
  const char* root = std::getenv("TPSERVE_ROOT");
  ASSERT_NE(root, nullptr) << "set TPSERVE_ROOT";
  auto f = GgufFile::Open(std::string(root) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.tensors().size(), 272u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetInt("llama.block_count"), 30);
  auto toks = g.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(toks.ok());
  EXPECT_EQ(toks->size(), 49152u);
  EXPECT_EQ((*toks)[2], "<|im_end|>");
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.merges")->size(), 48900u);
  EXPECT_EQ(g.GetIntArray("tokenizer.ggml.token_type")->size(), 49152u);
  EXPECT_THAT(std::string(*g.GetString("tokenizer.chat_template")), HasSubstr("<|im_start|>"));
  const GgufTensorInfo* e = g.FindTensor("token_embd.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->dtype, DType::kQ8_0);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(g.FindTensor("blk.0.attn_q.weight")->dtype, DType::kQ4_1);
}

}  // namespace
}  // namespace tpserve
