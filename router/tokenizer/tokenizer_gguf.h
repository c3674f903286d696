// Reads TokenizerData from a GGUF file's tokenizer.ggml.* metadata (and
// tokenizer.chat_template), via worker/model's GgufFile.
//
//   TPS_ASSIGN_OR_RETURN(TokenizerData data, TokenizerDataFromGguf(model_path));
//   // or, with a file already open for the weights:
//   TPS_ASSIGN_OR_RETURN(TokenizerData data, TokenizerDataFromGguf(*gguf_file));
//
// Supported tokenizer.ggml.model values: "gpt2" (byte-level BPE; pre-tokenizer
// from tokenizer.ggml.pre) and "llama" (SentencePiece BPE). Anything else is
// InvalidArgument naming the model.
#ifndef TPSERVE_ROUTER_TOKENIZER_TOKENIZER_GGUF_H_
#define TPSERVE_ROUTER_TOKENIZER_TOKENIZER_GGUF_H_

#include <string>

#include "absl/status/statusor.h"
#include "formats/gguf_reader.h"
#include "router/tokenizer/tokenizer_data.h"

namespace tpserve {

absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const GgufFile& file);
absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const std::string& path);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_TOKENIZER_TOKENIZER_GGUF_H_
