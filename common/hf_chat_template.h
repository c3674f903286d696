// ReadHfChatTemplate: the chat template of a Hugging Face model directory,
// from wherever transformers saved it. Current transformers writes
// chat_template.jinja next to tokenizer_config.json; processors write
// chat_template.json ({"chat_template": "..."}); older versions keep it in
// tokenizer_config.json's "chat_template" (a string, or a list of
// {"name", "template"} where "default" wins). Looked up in that order.
//
//   TPS_ASSIGN_OR_RETURN(std::string jinja, ReadHfChatTemplate("/models/SmolLM2"));
//   if (jinja.empty()) ... the model has no chat template ...
#ifndef TPSERVE_COMMON_HF_CHAT_TEMPLATE_H_
#define TPSERVE_COMMON_HF_CHAT_TEMPLATE_H_

#include <string>

#include "absl/status/statusor.h"

namespace tpserve {

// "" when the directory has none; an error names the file that is unreadable
// or malformed.
[[nodiscard]] absl::StatusOr<std::string> ReadHfChatTemplate(const std::string& dir);

}  // namespace tpserve

#endif  // TPSERVE_COMMON_HF_CHAT_TEMPLATE_H_
