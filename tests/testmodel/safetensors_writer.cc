#include "tests/testmodel/safetensors_writer.h"

#include <cstring>

#include "nlohmann/json.hpp"
#include "tests/testmodel/gguf_writer.h"

namespace tpserve {

void SafetensorsWriter::AddTensor(absl::string_view name, DType dtype,
                                  const std::vector<int64_t>& shape, std::vector<uint8_t> data) {
  tensors_.push_back({std::string(name), dtype, shape, std::move(data)});
}

std::vector<uint8_t> SafetensorsWriter::Serialize() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  // Sized up front and filled with memcpy (GCC 12's -Warray-bounds misfires on
  // repeated vector::insert here).
  const uint64_t n = text.size();
  std::vector<uint8_t> out(8 + n + offset);
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, text.data(), n);
  uint8_t* p = out.data() + 8 + n;
  for (const Tensor& t : tensors_) {
    if (!t.data.empty()) std::memcpy(p, t.data.data(), t.data.size());
    p += t.data.size();
  }
  return out;
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path) const {
  const std::vector<uint8_t> bytes = Serialize();
  return WriteBytes(path, bytes.data(), bytes.size());
}

}  // namespace tpserve
