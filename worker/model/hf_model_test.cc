// ConfigFromHfJson: the config.json / generation_config.json fields tpserve maps.
#include "worker/model/hf_model.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(HfConfigTest, Llama31WithLlama3RopeScaling) {
  const std::string config = R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0, "tie_word_embeddings": false, "vocab_size": 128256,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})";
  auto c = ConfigFromHfJson(config, "", "/m/llama31");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->num_layers, 32);
  EXPECT_EQ(c->num_heads, 32);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->ffn_size, 14336);
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->context_length, 131072);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position, 8192);
  EXPECT_TRUE(c->rope_neox);
  EXPECT_FALSE(c->tie_embeddings);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->bos_id, 128000);
  EXPECT_EQ(c->eos_id, 128001);
  EXPECT_THAT(c->stop_ids, ElementsAre(128001, 128008, 128009));
}

TEST(HfConfigTest, Qwen2DefaultsToQkvBiasAndMergesGenerationConfig) {
  const std::string config =
      R"({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "tie_word_embeddings": true, "vocab_size": 151936, "bos_token_id": 151643, "eos_token_id": 151643,
    "rope_scaling": null})";
  const std::string gen =
      R"({"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643]})";
  auto c = ConfigFromHfJson(config, gen, "/m/qwen");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_TRUE(c->tie_embeddings);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->pad_id, 151643);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_THAT(c->stop_ids, ElementsAre(151643, 151645));
}

TEST(HfConfigTest, MistralLinearScalingAndExplicitHeadDim) {
  const std::string config =
      R"({"model_type": "mistral", "hidden_size": 5120, "intermediate_size": 14336,
    "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 131072, "rope_scaling": {"type": "linear", "factor": 2.0}})";
  auto c = ConfigFromHfJson(config, "", "/m/mistral");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "mistral");
  EXPECT_EQ(c->head_dim, 128);  // not hidden / heads (160)
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 2.0f);
  EXPECT_EQ(c->num_kv_heads, 8);
}

TEST(HfConfigTest, Errors) {
  EXPECT_THAT(ConfigFromHfJson(R"({"model_type": "phi3"})", "", "/m/x").status().message(),
              HasSubstr("/m/x/config.json: unsupported model_type 'phi3'"));
  EXPECT_THAT(ConfigFromHfJson(R"({"hidden_size": 1})", "", "/m/x").status().message(),
              HasSubstr("missing model_type"));
  EXPECT_THAT(ConfigFromHfJson(R"({"model_type": "llama", "hidden_size": "big"})", "", "/m/x")
                  .status()
                  .message(),
              HasSubstr("hidden_size is not an integer"));
  EXPECT_THAT(
      ConfigFromHfJson(R"({"model_type": "llama", "rope_scaling": {"type": "yarn", "factor": 4}})",
                       "", "/m/x")
          .status()
          .message(),
      HasSubstr("unsupported rope_scaling type 'yarn'"));
  EXPECT_THAT(ConfigFromHfJson("[]", "", "/m/x").status().message(),
              HasSubstr("not a JSON object"));
  EXPECT_THAT(ConfigFromHfJson(R"({"model_type": "llama"})", "{", "/m/x").status().message(),
              HasSubstr("generation_config.json"));
}

}  // namespace
}  // namespace tpserve
