// MappedModelSource: the ModelSource both formats share once their tensors
// are located in memory-mapped files: a table of internal name -> (info,
// bytes, owner), slicing reads over it, and the Llama shape validation.
// Format readers (gguf_model.h, hf_model.h) build one of these.
//
//   std::vector<MappedTensor> ts = ...;  // from a GgufFile or SafetensorsFiles
//   TPS_RETURN_IF_ERROR(ValidateLlamaModel(config, ts, path));
//   auto src = std::make_unique<MappedModelSource>("gguf", path, config, tok, std::move(ts));
#ifndef TPSERVE_WORKER_MODEL_MAPPED_MODEL_SOURCE_H_
#define TPSERVE_WORKER_MODEL_MAPPED_MODEL_SOURCE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "worker/model/ggml_convert.h"
#include "worker/model/model_source.h"

namespace tpserve {

struct MappedTensor {
  TensorInfo info;
  // info.bytes bytes, valid while owner lives; for a converted tensor the
  // file's blocks (ConvertedRowBytes per row), converted to info.dtype (Q8_0) on read.
  const uint8_t* data = nullptr;
  std::shared_ptr<const void> owner;          // the mapping
  std::optional<ConvertedType> convert_from;  // set: `data` holds this type
};

// Checks the config's numbers and that every tensor the Llama forward pass
// needs is present with a supported type and the shape the config implies.
[[nodiscard]] absl::Status ValidateLlamaModel(const ModelConfig& c,
                                              const std::vector<MappedTensor>& tensors,
                                              absl::string_view path);

class MappedModelSource : public ModelSource {
 public:
  MappedModelSource(std::string format, std::string path, ModelConfig config,
                    TokenizerSummary tokenizer, std::vector<MappedTensor> tensors);

  const ModelConfig& config() const override { return config_; }
  std::vector<TensorInfo> tensors() const override;
  const TokenizerSummary& tokenizer() const override { return tokenizer_; }
  absl::string_view format() const override { return format_; }
  const std::string& path() const override { return path_; }
  absl::StatusOr<HostTensor> ReadRows(absl::string_view name, int64_t row_begin,
                                      int64_t row_count) const override;
  absl::StatusOr<HostTensor> ReadColumns(absl::string_view name, int64_t col_begin,
                                         int64_t col_count) const override;
  absl::StatusOr<TensorInfo> FindTensor(absl::string_view name) const override;

 private:
  absl::StatusOr<const MappedTensor*> Lookup(absl::string_view name) const;

  std::string format_;
  std::string path_;
  ModelConfig config_;
  TokenizerSummary tokenizer_;
  std::vector<MappedTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_MAPPED_MODEL_SOURCE_H_
