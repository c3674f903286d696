// ConfigFromGguf over hand-written metadata: optional keys, scaling, qwen2,
// errors. (The default model's config is checked against the gguf package in
// reference_test.)
#include "worker/model/gguf_model.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testmodel/gguf_writer.h"

namespace tpserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A GGUF with `arch` metadata for hidden 64, 4 heads, and an embedding tensor.
GgufWriter Base(const std::string& arch) {
  GgufWriter w;
  w.AddString("general.architecture", arch);
  w.AddString("general.name", "t");
  w.AddUint32(arch + ".embedding_length", 64);
  w.AddUint32(arch + ".block_count", 2);
  w.AddUint32(arch + ".feed_forward_length", 128);
  w.AddUint32(arch + ".attention.head_count", 4);
  w.AddTensor("token_embd.weight", DType::kF32, {10, 64}, std::vector<uint8_t>(10 * 64 * 4));
  return w;
}

absl::StatusOr<ModelConfig> Config(const GgufWriter& w) {
  auto bytes = std::make_shared<std::vector<uint8_t>>(w.Serialize());
  auto f = GgufFile::Parse(bytes, absl::MakeConstSpan(*bytes), "t.gguf");
  if (!f.ok()) return f.status();
  return ConfigFromGguf(**f);
}

TEST(GgufConfigTest, DefaultsForOptionalKeys) {
  auto c = Config(Base("llama"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->vocab_size, 10);  // from token_embd when llama.vocab_size is absent
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_TRUE(c->tie_embeddings);
  EXPECT_FALSE(c->rope_neox);
  EXPECT_EQ(c->eos_id, -1);
  EXPECT_TRUE(c->stop_ids.empty());
}

TEST(GgufConfigTest, Qwen2LinearScalingAndStopTokens) {
  GgufWriter w = Base("qwen2");
  w.AddUint32("qwen2.attention.head_count_kv", 2);
  w.AddFloat32("qwen2.rope.freq_base", 1e6f);
  w.AddString("qwen2.rope.scaling.type", "linear");
  w.AddFloat32("qwen2.rope.scaling.factor", 4.0f);
  w.AddStringArray("tokenizer.ggml.tokens",
                   {"a", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "b"});
  w.AddUint32("tokenizer.ggml.eos_token_id", 1);
  w.AddUint32("tokenizer.ggml.bos_token_id", 1);
  w.AddTensor("blk.0.attn_q.bias", DType::kF32, {64}, std::vector<uint8_t>(256));
  w.AddTensor("output.weight", DType::kF32, {10, 64}, std::vector<uint8_t>(10 * 64 * 4));
  auto c = Config(w);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->rope_neox);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->tie_embeddings);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 4.0f);
  EXPECT_FLOAT_EQ(c->rope_theta, 1e6f);
  EXPECT_THAT(c->stop_ids, ElementsAre(1, 3));  // eos, then <|im_end|> found by text
}

TEST(GgufConfigTest, RopeFreqsTensorMeansLlama3Scaling) {
  GgufWriter w = Base("llama");
  w.AddTensor("rope_freqs.weight", DType::kF32, {8}, std::vector<uint8_t>(32));
  auto c = Config(w);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 8.0f);
}

TEST(GgufConfigTest, Errors) {
  GgufWriter missing;
  missing.AddString("general.architecture", "llama");
  EXPECT_THAT(Config(missing).status().message(), HasSubstr("llama.embedding_length"));
  EXPECT_THAT(Config(GgufWriter()).status().message(), HasSubstr("general.architecture"));
  EXPECT_THAT(Config(Base("falcon")).status().message(),
              HasSubstr("unsupported architecture 'falcon'"));
  GgufWriter yarn = Base("llama");
  yarn.AddString("llama.rope.scaling.type", "yarn");
  EXPECT_THAT(Config(yarn).status().message(), HasSubstr("unsupported RoPE scaling 'yarn'"));
  GgufWriter bad_type = Base("llama");
  bad_type.AddString("llama.attention.head_count_kv", "two");
  EXPECT_THAT(Config(bad_type).status().message(), HasSubstr("not an integer"));
  GgufWriter bad_eos = Base("llama");
  bad_eos.AddUint32("tokenizer.ggml.eos_token_id", 99);
  EXPECT_THAT(Config(bad_eos).status().message(), HasSubstr("outside the vocabulary"));
  GgufWriter no_embd;
  no_embd.AddString("general.architecture", "llama");
  no_embd.AddUint32("llama.embedding_length", 64);
  no_embd.AddUint32("llama.block_count", 2);
  no_embd.AddUint32("llama.feed_forward_length", 128);
  no_embd.AddUint32("llama.attention.head_count", 4);
  EXPECT_THAT(Config(no_embd).status().message(), HasSubstr("missing tensor token_embd.weight"));
}

TEST(GgufConfigTest, Version2FileLoads) {
  GgufWriter w = Base("llama");
  std::vector<uint8_t> b = w.Serialize();
  b[4] = 2;  // version field
  auto owned = std::make_shared<std::vector<uint8_t>>(b);
  auto f = GgufFile::Parse(owned, absl::MakeConstSpan(*owned), "v2.gguf");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_TRUE(ConfigFromGguf(**f).ok());
}

}  // namespace
}  // namespace tpserve
