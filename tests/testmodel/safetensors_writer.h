// SafetensorsWriter: builds a *.safetensors file (header JSON padded to 8
// bytes, then the tensors back to back) for test models.
//
//   SafetensorsWriter w;
//   w.AddTensor("model.norm.weight", DType::kF32, {64}, bytes);
//   TPS_RETURN_IF_ERROR(w.WriteFile(dir + "/model.safetensors"));
#ifndef TPSERVE_TESTS_TESTMODEL_SAFETENSORS_WRITER_H_
#define TPSERVE_TESTS_TESTMODEL_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "formats/dtype.h"

namespace tpserve {

class SafetensorsWriter {
 public:
  // F32, F16 or BF16 (safetensors has no GGML block types).
  void AddTensor(absl::string_view name, DType dtype, const std::vector<int64_t>& shape,
                 std::vector<uint8_t> data);
  std::vector<uint8_t> Serialize() const;
  [[nodiscard]] absl::Status WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<Tensor> tensors_;
};

}  // namespace tpserve

#endif  // TPSERVE_TESTS_TESTMODEL_SAFETENSORS_WRITER_H_
