#include "worker/model/model_source.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/model/gguf_model.h"
#include "worker/model/hf_model.h"

namespace tpserve {

int64_t HostTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> HostTensor::ToFloat() const {
  std::vector<float> out(static_cast<size_t>(num_elements()));
  if (out.empty()) return out;
  const int64_t r = rows(), c = shape.size() <= 1 ? num_elements() : num_elements() / r;
  const int64_t row_bytes = RowBytes(dtype, c);
  for (int64_t i = 0; i < r; ++i) DequantizeRow(dtype, data + i * row_bytes, out.data() + i * c, c);
  return out;
}

absl::StatusOr<HostTensor> ModelSource::Read(absl::string_view name) const {
  TPS_ASSIGN_OR_RETURN(TensorInfo info, FindTensor(name));
  return ReadRows(name, 0, info.shape.empty() ? 1 : info.shape[0]);
}

absl::StatusOr<TensorInfo> ModelSource::FindTensor(absl::string_view name) const {
  for (TensorInfo& t : tensors()) {
    if (t.name == name) return std::move(t);
  }
  return absl::NotFoundError(absl::StrCat(path(), ": no tensor named ", name));
}

absl::StatusOr<std::unique_ptr<ModelSource>> OpenModel(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  if (S_ISDIR(st.st_mode)) return OpenHfModel(path);
  return OpenGgufModel(path);
}

}  // namespace tpserve
