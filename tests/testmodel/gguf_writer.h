// GgufWriter: builds a GGUF v3 file in memory (metadata + tensors) and writes
// it out. For test models and for crafting malformed inputs in tests.
//
//   GgufWriter w;
//   w.AddString("general.architecture", "llama");
//   w.AddUint32("llama.block_count", 2);
//   w.AddTensor("output_norm.weight", DType::kF32, {64}, bytes);
//   TPS_RETURN_IF_ERROR(w.WriteFile(path));
#ifndef TPSERVE_TESTS_TESTMODEL_GGUF_WRITER_H_
#define TPSERVE_TESTS_TESTMODEL_GGUF_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "formats/dtype.h"

namespace tpserve {

class GgufWriter {
 public:
  void AddString(absl::string_view key, absl::string_view value);
  void AddUint32(absl::string_view key, uint32_t value);
  void AddInt32(absl::string_view key, int32_t value);
  void AddUint64(absl::string_view key, uint64_t value);
  void AddFloat32(absl::string_view key, float value);
  void AddBool(absl::string_view key, bool value);
  void AddStringArray(absl::string_view key, const std::vector<std::string>& values);
  void AddInt32Array(absl::string_view key, const std::vector<int32_t>& values);
  void AddFloat32Array(absl::string_view key, const std::vector<float>& values);

  // `shape` outermost first (written reversed, as GGUF's ne). `data` holds
  // the row-major bytes (RowBytes(dtype, shape.back()) per row).
  void AddTensor(absl::string_view name, DType dtype, const std::vector<int64_t>& shape,
                 std::vector<uint8_t> data);

  // The complete file.
  std::vector<uint8_t> Serialize() const;
  [[nodiscard]] absl::Status WriteFile(const std::string& path) const;

  static constexpr uint64_t kAlignment = 32;

 private:
  struct Tensor {
    std::string name;
    uint32_t ggml_type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  void Key(absl::string_view key, uint32_t type);

  std::vector<uint8_t> kv_bytes_;
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

// GGML type id of a DType (F32 0, F16 1, Q4_0 2, Q4_1 3, Q8_0 8, BF16 30).
uint32_t GgmlTypeOf(DType t);

// Writes `bytes` to `path` (creating or truncating it).
[[nodiscard]] absl::Status WriteBytes(const std::string& path, const void* bytes, size_t size);

}  // namespace tpserve

#endif  // TPSERVE_TESTS_TESTMODEL_GGUF_WRITER_H_
