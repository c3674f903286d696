// GgufFile: a memory-mapped GGUF (versions 2 and 3) file — metadata of every
// value type, tensor infos, and raw pointers to tensor data inside the mapping.
// Every structural problem (truncation, bad magic/version, unknown value or
// tensor types, out-of-range offsets, overflowing sizes, duplicate names)
// becomes an absl::Status naming the file and the problem.
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
//   TPS_ASSIGN_OR_RETURN(int64_t layers, f->GetInt("llama.block_count"));
//   TPS_ASSIGN_OR_RETURN(absl::Span<const absl::string_view> toks,
//                        f->GetStringArray("tokenizer.ggml.tokens"));  // views into the mmap
//   const GgufTensorInfo* t = f->FindTensor("token_embd.weight");
//   const uint8_t* bytes = t->data;  // t->bytes bytes, row-major, rows of RowBytes(*t->dtype,
//   t->shape.back())
#ifndef TPSERVE_FORMATS_GGUF_READER_H_
#define TPSERVE_FORMATS_GGUF_READER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/dtype.h"

namespace tpserve {

// GGUF metadata value types (values as in the file format).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* GgufTypeName(GgufType t);

// One metadata value. Scalars are decoded; strings and string arrays are
// views into the mapping; numeric arrays are a pointer to the packed
// little-endian elements in the mapping.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  uint64_t u = 0;         // unsigned integers, bool
  int64_t i = 0;          // signed integers
  double f = 0.0;         // float32 / float64
  absl::string_view str;  // kString
  // kArray:
  GgufType elem_type = GgufType::kUint8;
  uint64_t count = 0;
  const uint8_t* elems = nullptr;          // numeric elements (packed)
  std::vector<absl::string_view> strings;  // string elements
};

struct GgufKeyValue {
  absl::string_view key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // outermost first (GGUF ne reversed): [rows, cols] for matrices
  uint32_t ggml_type = 0;      // raw GGML type id
  const char* ggml_type_name = "";
  std::optional<DType> dtype;     // empty when tpserve cannot compute with this type
  uint64_t offset = 0;            // relative to the data section
  uint64_t bytes = 0;             // size of the data
  const uint8_t* data = nullptr;  // inside the mapping
  int64_t num_elements = 0;
};

class GgufFile {
 public:
  // Maps and parses `path`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes someone else owns (tests, fuzzing). `owner` keeps them alive;
  // `name` appears in error messages.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(
      std::shared_ptr<const void> owner, absl::Span<const uint8_t> bytes, std::string name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  // Keeps the mapping alive; share it with zero-copy views of tensor data.
  const std::shared_ptr<const void>& owner() const { return owner_; }

  const std::vector<GgufKeyValue>& metadata() const { return kvs_; }
  const GgufValue* Find(absl::string_view key) const;
  bool Has(absl::string_view key) const { return Find(key) != nullptr; }

  // Typed getters: NotFound when absent, InvalidArgument on a type mismatch.
  // GetInt accepts any integer type, GetFloat any integer or float type.
  absl::StatusOr<absl::string_view> GetString(absl::string_view key) const;
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  absl::StatusOr<double> GetFloat(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<absl::Span<const absl::string_view>> GetStringArray(absl::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(absl::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(absl::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(absl::string_view name) const;

 private:
  GgufFile() = default;
  absl::Status Error(absl::string_view what) const;

  std::string path_;
  std::shared_ptr<const void> owner_;
  absl::Span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> kvs_;
  absl::flat_hash_map<absl::string_view, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;

  friend class GgufParser;
};

}  // namespace tpserve

#endif  // TPSERVE_FORMATS_GGUF_READER_H_
