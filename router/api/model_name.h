// DefaultModelName: the name a router serves its model under when
// --model_name is not given (ModelInfo.model_name, the OpenAI API's model id,
// the metrics' model_name label): the model file's name without its
// extension and quantization suffix, or the model directory's name. GGUF
// metadata names ("Smollm2 135M 8k Lc100K Mix1 Ep2") are often not what
// clients know the model as; the file name usually is.
//
//   DefaultModelName("models/SmolLM2-135M-Instruct.Q4_1.gguf")  // "SmolLM2-135M-Instruct"
//   DefaultModelName("/models/Qwen2-0.5B-Instruct/")            // "Qwen2-0.5B-Instruct"
#ifndef TPSERVE_ROUTER_API_MODEL_NAME_H_
#define TPSERVE_ROUTER_API_MODEL_NAME_H_

#include <string>

#include "absl/strings/string_view.h"

namespace tpserve {

std::string DefaultModelName(absl::string_view model_path);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_MODEL_NAME_H_
