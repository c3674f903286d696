#include "worker/model/tensor_names.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tpserve {
namespace {

struct NamePair {
  const char* hf;
  const char* internal;
};

// Per-layer suffixes (after "model.layers.N." / "blk.N.").
constexpr NamePair kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

constexpr NamePair kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// Splits "<prefix>N.<rest>" into N and rest.
bool SplitLayer(absl::string_view name, absl::string_view prefix, int* layer,
                absl::string_view* rest) {
  if (!absl::StartsWith(name, prefix)) return false;
  name.remove_prefix(prefix.size());
  const size_t dot = name.find('.');
  if (dot == absl::string_view::npos || dot == 0) return false;
  if (!absl::SimpleAtoi(name.substr(0, dot), layer) || *layer < 0) return false;
  *rest = name.substr(dot + 1);
  return true;
}

}  // namespace

std::optional<std::string> HfToInternalName(absl::string_view hf) {
  for (const NamePair& p : kGlobalNames) {
    if (hf == p.hf) return std::string(p.internal);
  }
  int layer = 0;
  absl::string_view rest;
  if (!SplitLayer(hf, "model.layers.", &layer, &rest)) return std::nullopt;
  for (const NamePair& p : kLayerNames) {
    if (rest == p.hf) return absl::StrCat("blk.", layer, ".", p.internal);
  }
  return std::nullopt;
}

std::optional<std::string> InternalToHfName(absl::string_view internal) {
  for (const NamePair& p : kGlobalNames) {
    if (internal == p.internal) return std::string(p.hf);
  }
  int layer = 0;
  absl::string_view rest;
  if (!SplitLayer(internal, "blk.", &layer, &rest)) return std::nullopt;
  for (const NamePair& p : kLayerNames) {
    if (rest == p.internal) return absl::StrCat("model.layers.", layer, ".", p.hf);
  }
  return std::nullopt;
}

}  // namespace tpserve
