// Hugging Face -> internal (GGUF-style) tensor names for the Llama family.
//
//   HfToInternalName("model.layers.3.self_attn.q_proj.weight") == "blk.3.attn_q.weight"
//   HfToInternalName("model.rotary_emb.inv_freq") == std::nullopt  (not a weight we use)
#ifndef TPSERVE_WORKER_MODEL_TENSOR_NAMES_H_
#define TPSERVE_WORKER_MODEL_TENSOR_NAMES_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace tpserve {

std::optional<std::string> HfToInternalName(absl::string_view hf_name);
// The inverse, for writers (test models): "blk.3.ffn_up.weight" ->
// "model.layers.3.mlp.up_proj.weight".
std::optional<std::string> InternalToHfName(absl::string_view internal_name);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_TENSOR_NAMES_H_
