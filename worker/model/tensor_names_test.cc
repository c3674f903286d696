#include "worker/model/tensor_names.h"

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(TensorNamesTest, HfToInternal) {
  EXPECT_EQ(HfToInternalName("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(HfToInternalName("model.norm.weight"), "output_norm.weight");
  EXPECT_EQ(HfToInternalName("lm_head.weight"), "output.weight");
  EXPECT_EQ(HfToInternalName("model.layers.0.input_layernorm.weight"), "blk.0.attn_norm.weight");
  EXPECT_EQ(HfToInternalName("model.layers.12.post_attention_layernorm.weight"),
            "blk.12.ffn_norm.weight");
  EXPECT_EQ(HfToInternalName("model.layers.3.self_attn.q_proj.weight"), "blk.3.attn_q.weight");
  EXPECT_EQ(HfToInternalName("model.layers.3.self_attn.k_proj.bias"), "blk.3.attn_k.bias");
  EXPECT_EQ(HfToInternalName("model.layers.3.self_attn.o_proj.weight"), "blk.3.attn_output.weight");
  EXPECT_EQ(HfToInternalName("model.layers.7.mlp.gate_proj.weight"), "blk.7.ffn_gate.weight");
  EXPECT_EQ(HfToInternalName("model.layers.7.mlp.up_proj.weight"), "blk.7.ffn_up.weight");
  EXPECT_EQ(HfToInternalName("model.layers.7.mlp.down_proj.weight"), "blk.7.ffn_down.weight");
}

TEST(TensorNamesTest, UnknownNames) {
  EXPECT_EQ(HfToInternalName("model.layers.0.self_attn.rotary_emb.inv_freq"), std::nullopt);
  EXPECT_EQ(HfToInternalName("model.layers.x.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(HfToInternalName("model.layers..mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(HfToInternalName("model.layers.-1.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(HfToInternalName(""), std::nullopt);
}

TEST(TensorNamesTest, RoundTrip) {
  for (const char* n :
       {"token_embd.weight", "output.weight", "output_norm.weight", "blk.5.attn_v.bias",
        "blk.29.ffn_down.weight", "blk.0.attn_output.weight"}) {
    std::optional<std::string> hf = InternalToHfName(n);
    ASSERT_TRUE(hf.has_value()) << n;
    EXPECT_EQ(HfToInternalName(*hf), n);
  }
}

}  // namespace
}  // namespace tpserve
