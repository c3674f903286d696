// Hugging Face directory -> ModelSource: config.json (+ generation_config.json),
// model.safetensors or the shards named by model.safetensors.index.json (or
// every *.safetensors), tokenizer.json and tokenizer_config.json (special
// tokens, chat_template). Tensor names are mapped to internal names
// (tensor_names.h); weights are not permuted (HF models use rotate-half RoPE).
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> m, OpenHfModel("/models/SmolLM2-135M"));
#ifndef TPSERVE_WORKER_MODEL_HF_MODEL_H_
#define TPSERVE_WORKER_MODEL_HF_MODEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/model/model_source.h"

namespace tpserve {

// Config from the text of config.json and (optionally empty) generation_config.json.
// `path` names the source in errors.
[[nodiscard]] absl::StatusOr<ModelConfig> ConfigFromHfJson(
    const std::string& config_json, const std::string& generation_config_json,
    absl::string_view path);

[[nodiscard]] absl::StatusOr<std::unique_ptr<ModelSource>> OpenHfModel(const std::string& dir);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_HF_MODEL_H_
