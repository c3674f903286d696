// Safetensors header validation. nlohmann::json is used without exceptions:
// parse errors come back as a discarded value, and every field's type is
// checked before it is read.
#include "worker/model/safetensors.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "formats/mapped_file.h"
#include "nlohmann/json.hpp"

namespace tpserve {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit

// Element size for a safetensors dtype name; 0 when unknown.
int64_t ElementSize(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

std::optional<DType> DTypeFromName(const std::string& d) {
  if (d == "F32") return DType::kF32;
  if (d == "F16") return DType::kF16;
  if (d == "BF16") return DType::kBF16;
  return std::nullopt;
}

}  // namespace

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::Span<const uint8_t> file_bytes,
                                                         absl::string_view name) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
  };
  if (file_bytes.size() < 8) return error("truncated: shorter than the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, file_bytes.data(), 8);
  if (n > kMaxHeaderBytes) return error(absl::StrCat("header length ", n, " exceeds 100 MiB"));
  if (n > file_bytes.size() - 8) {
    return error(absl::StrCat("truncated: header of ", n, " bytes but the file has ",
                              file_bytes.size(), " bytes"));
  }
  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = file_bytes.size() - h.data_offset;
  const char* begin = reinterpret_cast<const char*>(file_bytes.data() + 8);
  nlohmann::json j = nlohmann::json::parse(begin, begin + n, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return error("header is not valid JSON");
  if (!j.is_object()) return error("header is not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) return error("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return error(absl::StrCat("__metadata__.", m.key(), " is not a string"));
        h.metadata.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    auto bad = [&](absl::string_view what) {
      return error(absl::StrCat("tensor '", key, "': ", what));
    };
    if (!v.is_object()) return bad("entry is not an object");
    auto dt = v.find("dtype");
    auto shape = v.find("shape");
    auto offs = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return bad("missing or non-string dtype");
    if (shape == v.end() || !shape->is_array()) return bad("missing or non-array shape");
    if (offs == v.end() || !offs->is_array() || offs->size() != 2)
      return bad("data_offsets is not [begin, end]");
    SafetensorsTensor t;
    t.name = key;
    t.dtype_name = dt->get<std::string>();
    const int64_t elem = ElementSize(t.dtype_name);
    if (elem == 0) return bad(absl::StrCat("unknown dtype '", t.dtype_name, "'"));
    t.dtype = DTypeFromName(t.dtype_name);
    if (shape->size() > 8) return bad("more than 8 dimensions");
    int64_t count = 1;
    for (const nlohmann::json& d : *shape) {
      if (!d.is_number_unsigned()) return bad("shape entries must be non-negative integers");
      const uint64_t x = d.get<uint64_t>();
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return bad("dimension too large");
      t.shape.push_back(static_cast<int64_t>(x));
      if (__builtin_mul_overflow(count, t.shape.back(), &count))
        return bad("element count overflows");
    }
    for (const nlohmann::json& o : *offs) {
      if (!o.is_number_unsigned()) return bad("data_offsets must be non-negative integers");
    }
    t.begin = (*offs)[0].get<uint64_t>();
    t.end = (*offs)[1].get<uint64_t>();
    if (t.end < t.begin) return bad("data_offsets end before begin");
    int64_t bytes = 0;
    if (__builtin_mul_overflow(count, elem, &bytes)) return bad("byte size overflows");
    if (t.end - t.begin != static_cast<uint64_t>(bytes)) {
      return bad(absl::StrCat("shape and dtype need ", bytes, " bytes but data_offsets span ",
                              t.end - t.begin));
    }
    if (t.end > data_size) {
      return bad(absl::StrCat("data [", t.begin, ", ", t.end, ") lies outside the data section of ",
                              data_size, " bytes (file truncated or offset out of range)"));
    }
    h.tensors.push_back(std::move(t));
  }
  return h;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> m, MappedFile::Open(path));
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  TPS_ASSIGN_OR_RETURN(f->header_, ParseSafetensorsHeader(m->bytes(), path));
  f->base_ = m->data() + f->header_.data_offset;
  f->owner_ = std::move(m);
  for (size_t i = 0; i < f->header_.tensors.size(); ++i) {
    f->index_.emplace(f->header_.tensors[i].name, i);
  }
  return f;
}

const SafetensorsTensor* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const uint8_t* SafetensorsFile::data(const SafetensorsTensor& t) const { return base_ + t.begin; }

}  // namespace tpserve
