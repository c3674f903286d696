#include "router/api/model_name.h"

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(DefaultModelName, StripsExtensionAndQuantizationTag) {
  EXPECT_EQ(DefaultModelName("models/SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2-135M-Instruct");
  EXPECT_EQ(DefaultModelName("/m/llama-2-7b.Q4_K_M.gguf"), "llama-2-7b");
  EXPECT_EQ(DefaultModelName("Qwen2-0.5B-Instruct-f16.gguf"), "Qwen2-0.5B-Instruct");
  EXPECT_EQ(DefaultModelName("tiny-IQ4_XS.GGUF"), "tiny");
  EXPECT_EQ(DefaultModelName("model.gguf"), "model");
}

TEST(DefaultModelName, KeepsNamesWithoutATag) {
  EXPECT_EQ(DefaultModelName("Qwen2-0.5B-Instruct.gguf"), "Qwen2-0.5B-Instruct");
  EXPECT_EQ(DefaultModelName("/models/SmolLM2-135M-Instruct/"), "SmolLM2-135M-Instruct");
  EXPECT_EQ(DefaultModelName("Mistral-7B-Instruct-v0.3"), "Mistral-7B-Instruct-v0.3");
  EXPECT_EQ(DefaultModelName("quant-q.gguf"), "quant-q");  // "q" alone is not a tag
}

}  // namespace
}  // namespace tpserve
