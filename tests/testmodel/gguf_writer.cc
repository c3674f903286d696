#include "tests/testmodel/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace tpserve {
namespace {

template <typename T>
void Put(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void PutString(std::vector<uint8_t>& out, absl::string_view s) {
  Put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

// GGUF value type ids.
constexpr uint32_t kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kStr = 8, kArr = 9, kU64 = 10;

}  // namespace

uint32_t GgmlTypeOf(DType t) {
  switch (t) {
    case DType::kF32:
      return 0;
    case DType::kF16:
      return 1;
    case DType::kQ4_0:
      return 2;
    case DType::kQ4_1:
      return 3;
    case DType::kQ8_0:
      return 8;
    case DType::kBF16:
      return 30;
  }
  return 0;
}

void GgufWriter::Key(absl::string_view key, uint32_t type) {
  PutString(kv_bytes_, key);
  Put<uint32_t>(kv_bytes_, type);
  ++kv_count_;
}

void GgufWriter::AddString(absl::string_view key, absl::string_view value) {
  Key(key, kStr);
  PutString(kv_bytes_, value);
}
void GgufWriter::AddUint32(absl::string_view key, uint32_t value) {
  Key(key, kU32);
  Put(kv_bytes_, value);
}
void GgufWriter::AddInt32(absl::string_view key, int32_t value) {
  Key(key, kI32);
  Put(kv_bytes_, value);
}
void GgufWriter::AddUint64(absl::string_view key, uint64_t value) {
  Key(key, kU64);
  Put(kv_bytes_, value);
}
void GgufWriter::AddFloat32(absl::string_view key, float value) {
  Key(key, kF32);
  Put(kv_bytes_, value);
}
void GgufWriter::AddBool(absl::string_view key, bool value) {
  Key(key, kBool);
  Put<uint8_t>(kv_bytes_, value ? 1 : 0);
}
void GgufWriter::AddStringArray(absl::string_view key, const std::vector<std::string>& values) {
  Key(key, kArr);
  Put<uint32_t>(kv_bytes_, kStr);
  Put<uint64_t>(kv_bytes_, values.size());
  for (const std::string& v : values) PutString(kv_bytes_, v);
}
void GgufWriter::AddInt32Array(absl::string_view key, const std::vector<int32_t>& values) {
  Key(key, kArr);
  Put<uint32_t>(kv_bytes_, kI32);
  Put<uint64_t>(kv_bytes_, values.size());
  for (int32_t v : values) Put(kv_bytes_, v);
}
void GgufWriter::AddFloat32Array(absl::string_view key, const std::vector<float>& values) {
  Key(key, kArr);
  Put<uint32_t>(kv_bytes_, kF32);
  Put<uint64_t>(kv_bytes_, values.size());
  for (float v : values) Put(kv_bytes_, v);
}

void GgufWriter::AddTensor(absl::string_view name, DType dtype, const std::vector<int64_t>& shape,
                           std::vector<uint8_t> data) {
  tensors_.push_back({std::string(name), GgmlTypeOf(dtype), shape, std::move(data)});
}

std::vector<uint8_t> GgufWriter::Serialize() const {
  std::vector<uint8_t> out;
  Put<uint32_t>(out, 0x46554747);  // "GGUF"
  Put<uint32_t>(out, 3);
  Put<uint64_t>(out, tensors_.size());
  Put<uint64_t>(out, kv_count_);
  out.insert(out.end(), kv_bytes_.begin(), kv_bytes_.end());
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) Put<uint64_t>(out, *it);
    Put<uint32_t>(out, t.ggml_type);
    Put<uint64_t>(out, offset);
    offset += (t.data.size() + kAlignment - 1) / kAlignment * kAlignment;
  }
  out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, 0);
  for (const Tensor& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, 0);
  }
  return out;
}

absl::Status WriteBytes(const std::string& path, const void* bytes, size_t size) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create"));
  if (size > 0 && std::fwrite(bytes, 1, size, f.get()) != size) {
    return absl::InternalError(absl::StrCat(path, ": short write"));
  }
  if (std::fflush(f.get()) != 0) return absl::InternalError(absl::StrCat(path, ": flush failed"));
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  const std::vector<uint8_t> bytes = Serialize();
  return WriteBytes(path, bytes.data(), bytes.size());
}

}  // namespace tpserve
