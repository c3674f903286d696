// GGUF -> ModelSource: ModelConfig from "<arch>.*" and "tokenizer.ggml.*"
// metadata, tensors under their GGUF names (already tpserve's internal names).
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> m, OpenGgufModel(path));
#ifndef TPSERVE_WORKER_MODEL_GGUF_MODEL_H_
#define TPSERVE_WORKER_MODEL_GGUF_MODEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "formats/gguf_reader.h"
#include "worker/model/model_source.h"

namespace tpserve {

// The Llama-family config stated by a GGUF file's metadata (and, for vocab
// size, tied embeddings and QKV bias, by which tensors it holds).
[[nodiscard]] absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& f);
TokenizerSummary TokenizerSummaryFromGguf(const GgufFile& f);

[[nodiscard]] absl::StatusOr<std::unique_ptr<ModelSource>> OpenGgufModel(const std::string& path);
// Same, over an already parsed file (tests, fuzzing).
[[nodiscard]] absl::StatusOr<std::unique_ptr<ModelSource>> GgufModelFromFile(
    std::unique_ptr<GgufFile> f);

// Stop-token texts recognised besides eos ("<|im_end|>", "<|eot_id|>", ...).
absl::Span<const char* const> StopTokenTexts();

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_GGUF_MODEL_H_
