// Safetensors: header parsing and memory-mapped access to one *.safetensors
// file. Layout: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]}, ...,
// "__metadata__": {...}}, then the data section (offsets relative to it).
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(path));
//   const SafetensorsTensor* t = f->Find("model.norm.weight");
//   const uint8_t* bytes = f->data(*t);  // t->bytes() bytes
#ifndef TPSERVE_WORKER_MODEL_SAFETENSORS_H_
#define TPSERVE_WORKER_MODEL_SAFETENSORS_H_

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

struct SafetensorsTensor {
  std::string name;
  std::string dtype_name;      // as in the file: "F32", "BF16", "I64", ...
  std::optional<DType> dtype;  // F32/F16/BF16; empty for other types
  std::vector<int64_t> shape;  // outermost first
  uint64_t begin = 0;          // relative to the data section
  uint64_t end = 0;
  uint64_t bytes() const { return end - begin; }
};

// The parsed header of a safetensors file whose total size is
// `file_bytes.size()`: every tensor's extent is checked against it.
struct SafetensorsHeader {
  uint64_t data_offset = 0;  // 8 + N
  std::vector<SafetensorsTensor> tensors;
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Parses and validates the header at the start of `file_bytes` (the whole
// file). `name` appears in error messages. Never reads outside `file_bytes`.
[[nodiscard]] absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(
    absl::Span<const uint8_t> file_bytes, absl::string_view name);

class SafetensorsFile {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsTensor>& tensors() const { return header_.tensors; }
  const SafetensorsTensor* Find(absl::string_view name) const;
  const uint8_t* data(const SafetensorsTensor& t) const;
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::shared_ptr<const void> owner_;
  const uint8_t* base_ = nullptr;
  SafetensorsHeader header_;
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_SAFETENSORS_H_
