// GGUF parsing. Every read goes through GgufParser, which bounds-checks against
// the mapping; sizes are computed with overflow checks before anything is trusted.
#include "formats/gguf_reader.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "formats/mapped_file.h"

namespace tpserve {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;

// GGML tensor type table: id -> (name, values per block, bytes per block).
struct GgmlTypeInfo {
  const char* name;
  int64_t block_values;
  int64_t block_bytes;
};
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},     {"Q4_1", 32, 20},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {"Q5_0", 32, 22},     {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},     {"Q8_1", 32, 40},    {"Q2_K", 256, 84},    {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},   {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},   {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},   {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},        {"I64", 1, 8},
    {"F64", 1, 8},        {"IQ1_M", 256, 56},  {"BF16", 1, 2},
};
constexpr uint32_t kNumGgmlTypes = sizeof(kGgmlTypes) / sizeof(kGgmlTypes[0]);

std::optional<DType> DTypeFromGgml(uint32_t t) {
  switch (t) {
    case 0:
      return DType::kF32;
    case 1:
      return DType::kF16;
    case 2:
      return DType::kQ4_0;
    case 3:
      return DType::kQ4_1;
    case 8:
      return DType::kQ8_0;
    case 30:
      return DType::kBF16;
    default:
      return std::nullopt;
  }
}

// Size in bytes of one scalar of a non-string, non-array type; 0 otherwise.
uint64_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool ValidType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

}  // namespace

const char* GgufTypeName(GgufType t) {
  static const char* const kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                       "int32",  "float32", "bool",   "string", "array",
                                       "uint64", "int64",   "float64"};
  const uint32_t i = static_cast<uint32_t>(t);
  return i < 13 ? kNames[i] : "unknown";
}

// Bounds-checked little-endian reader over the file bytes.
class GgufParser {
 public:
  GgufParser(GgufFile& file) : f_(file), bytes_(file.bytes_) {}

  absl::Status Run();

 private:
  absl::Status Truncated(absl::string_view what) const {
    return f_.Error(absl::StrCat("truncated: needs ", what, " at offset ", pos_,
                                 " but the file has ", bytes_.size(), " bytes"));
  }
  absl::Status Need(uint64_t n, absl::string_view what) const {
    if (n > bytes_.size() - pos_) return Truncated(what);
    return absl::OkStatus();
  }
  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what) {
    TPS_RETURN_IF_ERROR(Need(sizeof(T), what));
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  absl::StatusOr<absl::string_view> ReadString(absl::string_view what) {
    TPS_ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(what));
    if (len > bytes_.size() - pos_) {
      return f_.Error(absl::StrCat("truncated: ", what, " of ", len, " bytes at offset ", pos_,
                                   " runs past the end of the file (", bytes_.size(), " bytes)"));
    }
    absl::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }
  absl::Status ReadValue(GgufType type, GgufValue& v, absl::string_view key, int depth);
  absl::Status ReadTensorInfo(GgufTensorInfo& t, uint64_t index);

  GgufFile& f_;
  absl::Span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
};

absl::Status GgufParser::ReadValue(GgufType type, GgufValue& v, absl::string_view key, int depth) {
  v.type = type;
  const std::string what = absl::StrCat("value of '", key, "'");
  switch (type) {
    case GgufType::kUint8: {
      TPS_ASSIGN_OR_RETURN(uint8_t x, Read<uint8_t>(what));
      v.u = x;
      v.i = x;
      return absl::OkStatus();
    }
    case GgufType::kInt8: {
      TPS_ASSIGN_OR_RETURN(int8_t x, Read<int8_t>(what));
      v.i = x;
      return absl::OkStatus();
    }
    case GgufType::kUint16: {
      TPS_ASSIGN_OR_RETURN(uint16_t x, Read<uint16_t>(what));
      v.u = x;
      v.i = x;
      return absl::OkStatus();
    }
    case GgufType::kInt16: {
      TPS_ASSIGN_OR_RETURN(int16_t x, Read<int16_t>(what));
      v.i = x;
      return absl::OkStatus();
    }
    case GgufType::kUint32: {
      TPS_ASSIGN_OR_RETURN(uint32_t x, Read<uint32_t>(what));
      v.u = x;
      v.i = x;
      return absl::OkStatus();
    }
    case GgufType::kInt32: {
      TPS_ASSIGN_OR_RETURN(int32_t x, Read<int32_t>(what));
      v.i = x;
      return absl::OkStatus();
    }
    case GgufType::kUint64: {
      TPS_ASSIGN_OR_RETURN(uint64_t x, Read<uint64_t>(what));
      v.u = x;
      v.i = static_cast<int64_t>(x);
      return absl::OkStatus();
    }
    case GgufType::kInt64: {
      TPS_ASSIGN_OR_RETURN(int64_t x, Read<int64_t>(what));
      v.i = x;
      return absl::OkStatus();
    }
    case GgufType::kFloat32: {
      TPS_ASSIGN_OR_RETURN(float x, Read<float>(what));
      v.f = x;
      return absl::OkStatus();
    }
    case GgufType::kFloat64: {
      TPS_ASSIGN_OR_RETURN(double x, Read<double>(what));
      v.f = x;
      return absl::OkStatus();
    }
    case GgufType::kBool: {
      TPS_ASSIGN_OR_RETURN(uint8_t x, Read<uint8_t>(what));
      if (x > 1)
        return f_.Error(absl::StrCat("metadata '", key, "': bool value ", x, " is not 0 or 1"));
      v.u = x;
      return absl::OkStatus();
    }
    case GgufType::kString: {
      TPS_ASSIGN_OR_RETURN(v.str, ReadString(what));
      return absl::OkStatus();
    }
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) {
        return f_.Error(
            absl::StrCat("metadata '", key, "': arrays nested deeper than ", kMaxArrayDepth));
      }
      TPS_ASSIGN_OR_RETURN(uint32_t et, Read<uint32_t>(absl::StrCat("array type of '", key, "'")));
      if (!ValidType(et)) {
        return f_.Error(absl::StrCat("metadata '", key, "': unknown array element type ", et));
      }
      v.elem_type = static_cast<GgufType>(et);
      TPS_ASSIGN_OR_RETURN(v.count, Read<uint64_t>(absl::StrCat("array length of '", key, "'")));
      const uint64_t remaining = bytes_.size() - pos_;
      const uint64_t elem = ScalarSize(v.elem_type);
      if (elem != 0) {
        if (v.count > remaining / elem) {
          return f_.Error(absl::StrCat("truncated: array '", key, "' of ", v.count, " ",
                                       GgufTypeName(v.elem_type), " at offset ", pos_,
                                       " runs past the end of the file"));
        }
        v.elems = bytes_.data() + pos_;
        pos_ += v.count * elem;
        return absl::OkStatus();
      }
      // Strings and nested arrays take at least 8 bytes each.
      if (v.count > remaining / 8) {
        return f_.Error(absl::StrCat("truncated: array '", key, "' claims ", v.count,
                                     " elements but only ", remaining, " bytes remain"));
      }
      if (v.elem_type == GgufType::kString) {
        v.strings.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i) {
          TPS_ASSIGN_OR_RETURN(absl::string_view s,
                               ReadString(absl::StrCat("element ", i, " of '", key, "'")));
          v.strings.push_back(s);
        }
        return absl::OkStatus();
      }
      // Nested arrays: parsed for validity, not kept.
      for (uint64_t i = 0; i < v.count; ++i) {
        GgufValue inner;
        TPS_RETURN_IF_ERROR(ReadValue(GgufType::kArray, inner, key, depth + 1));
      }
      return absl::OkStatus();
    }
  }
  return f_.Error(
      absl::StrCat("metadata '", key, "': unknown value type ", static_cast<uint32_t>(type)));
}

absl::Status GgufParser::ReadTensorInfo(GgufTensorInfo& t, uint64_t index) {
  TPS_ASSIGN_OR_RETURN(absl::string_view name, ReadString(absl::StrCat("name of tensor ", index)));
  t.name = std::string(name);
  TPS_ASSIGN_OR_RETURN(uint32_t n_dims,
                       Read<uint32_t>(absl::StrCat("dims of tensor '", t.name, "'")));
  if (n_dims == 0 || n_dims > kMaxDims) {
    return f_.Error(
        absl::StrCat("tensor '", t.name, "' has ", n_dims, " dimensions (1..4 allowed)"));
  }
  std::vector<int64_t> ne(n_dims);
  int64_t count = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    TPS_ASSIGN_OR_RETURN(uint64_t n,
                         Read<uint64_t>(absl::StrCat("shape of tensor '", t.name, "'")));
    if (n == 0 || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return f_.Error(absl::StrCat("tensor '", t.name, "' has invalid dimension ", n));
    }
    ne[d] = static_cast<int64_t>(n);
    if (__builtin_mul_overflow(count, ne[d], &count)) {
      return f_.Error(absl::StrCat("tensor '", t.name, "': element count overflows"));
    }
  }
  t.shape.assign(ne.rbegin(), ne.rend());
  t.num_elements = count;
  TPS_ASSIGN_OR_RETURN(t.ggml_type, Read<uint32_t>(absl::StrCat("type of tensor '", t.name, "'")));
  if (t.ggml_type >= kNumGgmlTypes || kGgmlTypes[t.ggml_type].name == nullptr) {
    return f_.Error(absl::StrCat("tensor '", t.name, "' has unknown GGML type ", t.ggml_type));
  }
  const GgmlTypeInfo& ti = kGgmlTypes[t.ggml_type];
  t.ggml_type_name = ti.name;
  t.dtype = DTypeFromGgml(t.ggml_type);
  if (ne[0] % ti.block_values != 0) {
    return f_.Error(absl::StrCat("tensor '", t.name, "' of type ", ti.name, ": row length ", ne[0],
                                 " is not a multiple of its block size ", ti.block_values));
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(count / ti.block_values, ti.block_bytes, &bytes)) {
    return f_.Error(absl::StrCat("tensor '", t.name, "': byte size overflows"));
  }
  t.bytes = static_cast<uint64_t>(bytes);
  TPS_ASSIGN_OR_RETURN(t.offset, Read<uint64_t>(absl::StrCat("offset of tensor '", t.name, "'")));
  return absl::OkStatus();
}

absl::Status GgufParser::Run() {
  TPS_ASSIGN_OR_RETURN(uint32_t magic, Read<uint32_t>("the GGUF magic"));
  if (magic != kGgufMagic) {
    return f_.Error(absl::StrCat("not a GGUF file (magic 0x", absl::Hex(magic), ", want 0x",
                                 absl::Hex(kGgufMagic), " \"GGUF\")"));
  }
  TPS_ASSIGN_OR_RETURN(f_.version_, Read<uint32_t>("the GGUF version"));
  if (f_.version_ != 2 && f_.version_ != 3) {
    return f_.Error(
        absl::StrCat("unsupported GGUF version ", f_.version_, " (2 and 3 are supported)"));
  }
  TPS_ASSIGN_OR_RETURN(uint64_t n_tensors, Read<uint64_t>("the tensor count"));
  TPS_ASSIGN_OR_RETURN(uint64_t n_kv, Read<uint64_t>("the metadata count"));
  // Each KV needs >= 8 + 4 bytes, each tensor info >= 8 + 4 + 8 + 4 + 8.
  if (n_kv > (bytes_.size() - pos_) / 12) {
    return f_.Error(absl::StrCat("metadata count ", n_kv, " cannot fit in the file"));
  }
  if (n_tensors > (bytes_.size() - pos_) / 32) {
    return f_.Error(absl::StrCat("tensor count ", n_tensors, " cannot fit in the file"));
  }
  f_.kvs_.resize(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    GgufKeyValue& kv = f_.kvs_[i];
    TPS_ASSIGN_OR_RETURN(kv.key, ReadString(absl::StrCat("key of metadata entry ", i)));
    TPS_ASSIGN_OR_RETURN(uint32_t type, Read<uint32_t>(absl::StrCat("type of '", kv.key, "'")));
    if (!ValidType(type)) {
      return f_.Error(absl::StrCat("metadata '", kv.key, "' has unknown value type ", type));
    }
    TPS_RETURN_IF_ERROR(ReadValue(static_cast<GgufType>(type), kv.value, kv.key, 0));
    if (!f_.kv_index_.emplace(kv.key, i).second) {
      return f_.Error(absl::StrCat("duplicate metadata key '", kv.key, "'"));
    }
  }
  if (const GgufValue* a = f_.Find("general.alignment")) {
    if (a->type != GgufType::kUint32 && a->type != GgufType::kUint64 &&
        a->type != GgufType::kInt32) {
      return f_.Error("general.alignment is not an integer");
    }
    const uint64_t al = a->type == GgufType::kInt32 ? static_cast<uint64_t>(a->i) : a->u;
    if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20)) {
      return f_.Error(
          absl::StrCat("general.alignment ", a->i, " is not a power of two up to 1 MiB"));
    }
    f_.alignment_ = al;
  }
  f_.tensors_.resize(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TPS_RETURN_IF_ERROR(ReadTensorInfo(f_.tensors_[i], i));
    if (!f_.tensor_index_.emplace(f_.tensors_[i].name, i).second) {
      return f_.Error(absl::StrCat("duplicate tensor name '", f_.tensors_[i].name, "'"));
    }
  }
  // The data section starts at the next alignment boundary.
  const uint64_t al = f_.alignment_;
  uint64_t data = (pos_ + al - 1) / al * al;
  if (n_tensors > 0 && data > bytes_.size()) {
    return f_.Error(absl::StrCat("truncated: tensor data section would start at ", data,
                                 " but the file has ", bytes_.size(), " bytes"));
  }
  f_.data_offset_ = data;
  const uint64_t data_size = data <= bytes_.size() ? bytes_.size() - data : 0;
  for (GgufTensorInfo& t : f_.tensors_) {
    if (t.offset % al != 0) {
      return f_.Error(absl::StrCat("tensor '", t.name, "' offset ", t.offset,
                                   " is not a multiple of the alignment ", al));
    }
    if (t.offset > data_size || t.bytes > data_size - t.offset) {
      return f_.Error(absl::StrCat("tensor '", t.name, "' data [", t.offset, ", +", t.bytes,
                                   ") lies outside the data section of ", data_size,
                                   " bytes (file truncated or offset out of range)"));
    }
    t.data = bytes_.data() + data + t.offset;
  }
  return absl::OkStatus();
}

absl::Status GgufFile::Error(absl::string_view what) const {
  return absl::InvalidArgumentError(absl::StrCat(path_, ": ", what));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> m, MappedFile::Open(path));
  const absl::Span<const uint8_t> bytes = m->bytes();
  return Parse(std::move(m), bytes, path);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::shared_ptr<const void> owner,
                                                          absl::Span<const uint8_t> bytes,
                                                          std::string name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = std::move(name);
  f->owner_ = std::move(owner);
  f->bytes_ = bytes;
  GgufParser parser(*f);
  TPS_RETURN_IF_ERROR(parser.Run());
  return f;
}

const GgufValue* GgufFile::Find(absl::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const GgufTensorInfo* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

bool IsInt(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

bool IsSigned(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}

// Element `i` of a packed numeric array as int64 (false if it does not fit).
bool ArrayInt(const GgufValue& v, uint64_t i, int64_t* out) {
  const uint8_t* p = v.elems + i * ScalarSize(v.elem_type);
  switch (v.elem_type) {
    case GgufType::kUint8:
      *out = *p;
      return true;
    case GgufType::kInt8:
      *out = static_cast<int8_t>(*p);
      return true;
    case GgufType::kUint16: {
      uint16_t x;
      std::memcpy(&x, p, 2);
      *out = x;
      return true;
    }
    case GgufType::kInt16: {
      int16_t x;
      std::memcpy(&x, p, 2);
      *out = x;
      return true;
    }
    case GgufType::kUint32: {
      uint32_t x;
      std::memcpy(&x, p, 4);
      *out = x;
      return true;
    }
    case GgufType::kInt32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      *out = x;
      return true;
    }
    case GgufType::kInt64: {
      std::memcpy(out, p, 8);
      return true;
    }
    case GgufType::kUint64: {
      uint64_t x;
      std::memcpy(&x, p, 8);
      *out = static_cast<int64_t>(x);
      return x <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    }
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<absl::string_view> GgufFile::GetString(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no metadata key '", key, "'"));
  if (v->type != GgufType::kString) {
    return Error(absl::StrCat("metadata '", key, "' is ", GgufTypeName(v->type), ", not string"));
  }
  return v->str;
}

absl::StatusOr<int64_t> GgufFile::GetInt(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no metadata key '", key, "'"));
  if (!IsInt(v->type)) {
    return Error(
        absl::StrCat("metadata '", key, "' is ", GgufTypeName(v->type), ", not an integer"));
  }
  if (v->type == GgufType::kUint64 &&
      v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Error(absl::StrCat("metadata '", key, "' value ", v->u, " does not fit int64"));
  }
  return v->i;
}

absl::StatusOr<double> GgufFile::GetFloat(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no metadata key '", key, "'"));
  if (v->type == GgufType::kFloat32 || v->type == GgufType::kFloat64) return v->f;
  if (IsInt(v->type)) {
    return IsSigned(v->type)
               ? static_cast<double>(v->i)
               : static_cast<double>(v->type == GgufType::kUint64 ? v->u
                                                                  : static_cast<uint64_t>(v->i));
  }
  return Error(absl::StrCat("metadata '", key, "' is ", GgufTypeName(v->type), ", not a number"));
}

absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no metadata key '", key, "'"));
  if (v->type != GgufType::kBool) {
    return Error(absl::StrCat("metadata '", key, "' is ", GgufTypeName(v->type), ", not bool"));
  }
  return v->u != 0;
}

absl::StatusOr<absl::Span<const absl::string_view>> GgufFile::GetStringArray(
    absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no metadata key '", key, "'"));
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    return Error(absl::StrCat("metadata '", key, "' is not an array of strings"));
  }
  return absl::MakeConstSpan(v->strings);
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no metadata key '", key, "'"));
  if (v->type != GgufType::kArray || !IsInt(v->elem_type)) {
    return Error(absl::StrCat("metadata '", key, "' is not an array of integers"));
  }
  std::vector<int64_t> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    if (!ArrayInt(*v, i, &out[i])) {
      return Error(absl::StrCat("metadata '", key, "' element ", i, " does not fit int64"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr)
    return absl::NotFoundError(absl::StrCat(path_, ": no metadata key '", key, "'"));
  if (v->type != GgufType::kArray || (v->elem_type != GgufType::kFloat32 &&
                                      v->elem_type != GgufType::kFloat64 && !IsInt(v->elem_type))) {
    return Error(absl::StrCat("metadata '", key, "' is not an array of numbers"));
  }
  std::vector<float> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    if (v->elem_type == GgufType::kFloat32) {
      std::memcpy(&out[i], v->elems + 4 * i, 4);
    } else if (v->elem_type == GgufType::kFloat64) {
      double d;
      std::memcpy(&d, v->elems + 8 * i, 8);
      out[i] = static_cast<float>(d);
    } else {
      int64_t x = 0;
      ArrayInt(*v, i, &x);
      out[i] = static_cast<float>(x);
    }
  }
  return out;
}

}  // namespace tpserve
