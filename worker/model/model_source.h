// ModelSource: one view of a Llama-family model, whatever file format holds it
// (a GGUF file or a Hugging Face directory of safetensors). It gives the
// ModelConfig, the tensor list under tpserve's internal (GGUF-style) names,
// and slicing reads that let a tensor-parallel rank touch only its part.
//
// Internal names (= GGUF names; HF names are mapped onto them):
//   token_embd.weight                      [vocab, hidden]
//   blk.N.attn_norm.weight                 [hidden]
//   blk.N.attn_q.weight / .bias            [heads * head_dim, hidden] / [heads * head_dim]
//   blk.N.attn_k.weight / .bias            [kv_heads * head_dim, hidden]
//   blk.N.attn_v.weight / .bias            [kv_heads * head_dim, hidden]
//   blk.N.attn_output.weight               [hidden, heads * head_dim]
//   blk.N.ffn_norm.weight                  [hidden]
//   blk.N.ffn_gate.weight / ffn_up.weight  [ffn, hidden]
//   blk.N.ffn_down.weight                  [hidden, ffn]
//   output_norm.weight                     [hidden]
//   output.weight                          [vocab, hidden]  (absent when tied)
// Shapes are row-major, outermost first: [out_features, in_features].
// Biases exist only when config().qkv_bias.
//
// Q/K row order follows the file: GGUF "llama" files hold llama.cpp's
// permuted rows (config().rope_neox == false, adjacent-pair RoPE); GGUF
// "qwen2" and every HF model use rotate-half (rope_neox == true). No reader
// permutes weights.
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> m, OpenModel(path));
//   const ModelConfig& c = m->config();
//   // Column-parallel Q for rank r of 2: rows [r * q_rows / 2, ...).
//   TPS_ASSIGN_OR_RETURN(HostTensor q, m->ReadRows("blk.0.attn_q.weight", begin, count));
//   // q.data points into the mmap (zero copy); q.shape == {count, hidden}.
#ifndef TPSERVE_WORKER_MODEL_MODEL_SOURCE_H_
#define TPSERVE_WORKER_MODEL_MODEL_SOURCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/dtype.h"
#include "worker/model/model_config.h"

namespace tpserve {

struct TensorInfo {
  std::string name;         // internal name
  std::string source_name;  // name in the file ("model.layers.0..." for HF)
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first
  uint64_t bytes = 0;          // of `dtype`, i.e. what Read returns for the whole tensor
  // The file's own type when the reader converts it at read time (GGUF
  // K-quants "Q4_K" etc., Q5_0, Q5_1 are read as Q8_0, see ggml_convert.h);
  // empty otherwise.
  std::string file_type;
};

// A tensor (or a slice of one) in host memory: `shape[0]` rows of
// RowBytes(dtype, cols) bytes each, row-major. A 1-D tensor of n values has
// shape {n}. `data` is valid while `owner` lives; for row slices `owner`
// keeps the file mapping alive and `data` points into it (no copy), except
// for tensors converted at read time (TensorInfo::file_type set), whose
// slices own a converted copy.
struct HostTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;
  std::shared_ptr<const void> owner;

  int64_t rows() const { return shape.size() <= 1 ? 1 : shape[0]; }
  int64_t cols() const { return shape.empty() ? 0 : shape.back(); }
  int64_t num_elements() const;
  // All values as f32 (dequantizing Q types).
  std::vector<float> ToFloat() const;
};

// Tokenizer facts a source can state without building a tokenizer.
struct TokenizerSummary {
  std::string model;       // "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
  int64_t vocab_size = 0;  // entries in the token list
  int64_t num_merges = 0;
  std::string bos_token;  // token text, when known
  std::string eos_token;
  std::string chat_template;   // Jinja source, empty when none
  std::string tokenizer_json;  // HF: path of tokenizer.json; GGUF: empty (data is in metadata)
};

// Immutable after OpenModel: every method is const and safe to call from
// several threads at once.
class ModelSource {
 public:
  virtual ~ModelSource() = default;

  virtual const ModelConfig& config() const = 0;
  virtual std::vector<TensorInfo> tensors() const = 0;
  virtual const TokenizerSummary& tokenizer() const = 0;
  // "gguf" or "hf".
  virtual absl::string_view format() const = 0;
  // The file or directory this source was opened from.
  virtual const std::string& path() const = 0;

  // The whole tensor.
  absl::StatusOr<HostTensor> Read(absl::string_view name) const;
  // Rows [row_begin, row_begin + row_count) of a tensor: a zero-copy view
  // (a converted copy for K-quant tensors).
  // For a 1-D tensor "rows" are its elements (slicing a bias by output).
  virtual absl::StatusOr<HostTensor> ReadRows(absl::string_view name, int64_t row_begin,
                                              int64_t row_count) const = 0;
  // Columns [col_begin, col_begin + col_count) of every row of a 2-D tensor
  // (copied). For Q types both ends must fall on 32-value block boundaries.
  virtual absl::StatusOr<HostTensor> ReadColumns(absl::string_view name, int64_t col_begin,
                                                 int64_t col_count) const = 0;

  // Info for one tensor, or NotFound.
  virtual absl::StatusOr<TensorInfo> FindTensor(absl::string_view name) const;
};

// Opens a GGUF file (a regular file) or a Hugging Face directory (config.json +
// *.safetensors), validates the config and every expected tensor's presence,
// type and shape.
[[nodiscard]] absl::StatusOr<std::unique_ptr<ModelSource>> OpenModel(const std::string& path);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_MODEL_SOURCE_H_
