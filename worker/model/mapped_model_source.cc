#include "worker/model/mapped_model_source.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace tpserve {
namespace {

constexpr int64_t kMaxDim = 1 << 22;  // generous upper bound for any config number

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

}  // namespace

absl::Status ValidateLlamaModel(const ModelConfig& c, const std::vector<MappedTensor>& tensors,
                                absl::string_view path) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  const std::pair<const char*, int64_t> numbers[] = {
      {"hidden_size", c.hidden_size},   {"num_layers", c.num_layers}, {"num_heads", c.num_heads},
      {"num_kv_heads", c.num_kv_heads}, {"head_dim", c.head_dim},     {"ffn_size", c.ffn_size},
      {"vocab_size", c.vocab_size}};
  for (const auto& [name, v] : numbers) {
    if (v <= 0 || v > kMaxDim)
      return error(absl::StrCat("config ", name, " = ", v, " is out of range"));
  }
  if (c.num_layers > 4096)
    return error(absl::StrCat("config num_layers = ", c.num_layers, " is out of range"));
  if (c.num_heads % c.num_kv_heads != 0) {
    return error(absl::StrCat("num_heads ", c.num_heads, " is not a multiple of num_kv_heads ",
                              c.num_kv_heads));
  }
  if (c.head_dim % 2 != 0)
    return error(absl::StrCat("head_dim ", c.head_dim, " is odd (RoPE needs pairs)"));
  if (!(c.rms_norm_eps > 0.0f) || !(c.rope_theta > 0.0f))
    return error("rms_norm_eps and rope_theta must be positive");

  absl::flat_hash_map<std::string, const MappedTensor*> by_name;
  for (const MappedTensor& t : tensors) by_name[t.info.name] = &t;
  auto expect = [&](const std::string& name, std::vector<int64_t> shape) -> absl::Status {
    auto it = by_name.find(name);
    if (it == by_name.end()) return error(absl::StrCat("missing tensor ", name));
    const TensorInfo& t = it->second->info;
    if (t.shape != shape) {
      return error(absl::StrCat("tensor ", name, " (", t.source_name, ") has shape ",
                                ShapeString(t.shape), ", the config implies ", ShapeString(shape)));
    }
    return absl::OkStatus();
  };
  const int64_t h = c.hidden_size, q = int64_t{c.num_heads} * c.head_dim,
                kv = int64_t{c.num_kv_heads} * c.head_dim, f = c.ffn_size, v = c.vocab_size;
  TPS_RETURN_IF_ERROR(expect("token_embd.weight", {v, h}));
  TPS_RETURN_IF_ERROR(expect("output_norm.weight", {h}));
  if (!c.tie_embeddings) TPS_RETURN_IF_ERROR(expect("output.weight", {v, h}));
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string b = absl::StrCat("blk.", l, ".");
    TPS_RETURN_IF_ERROR(expect(b + "attn_norm.weight", {h}));
    TPS_RETURN_IF_ERROR(expect(b + "attn_q.weight", {q, h}));
    TPS_RETURN_IF_ERROR(expect(b + "attn_k.weight", {kv, h}));
    TPS_RETURN_IF_ERROR(expect(b + "attn_v.weight", {kv, h}));
    TPS_RETURN_IF_ERROR(expect(b + "attn_output.weight", {h, q}));
    TPS_RETURN_IF_ERROR(expect(b + "ffn_norm.weight", {h}));
    TPS_RETURN_IF_ERROR(expect(b + "ffn_gate.weight", {f, h}));
    TPS_RETURN_IF_ERROR(expect(b + "ffn_up.weight", {f, h}));
    TPS_RETURN_IF_ERROR(expect(b + "ffn_down.weight", {h, f}));
    if (c.qkv_bias) {
      TPS_RETURN_IF_ERROR(expect(b + "attn_q.bias", {q}));
      TPS_RETURN_IF_ERROR(expect(b + "attn_k.bias", {kv}));
      TPS_RETURN_IF_ERROR(expect(b + "attn_v.bias", {kv}));
    }
  }
  return absl::OkStatus();
}

MappedModelSource::MappedModelSource(std::string format, std::string path, ModelConfig config,
                                     TokenizerSummary tokenizer, std::vector<MappedTensor> tensors)
    : format_(std::move(format)),
      path_(std::move(path)),
      config_(std::move(config)),
      tokenizer_(std::move(tokenizer)),
      tensors_(std::move(tensors)) {
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].info.name, i);
}

std::vector<TensorInfo> MappedModelSource::tensors() const {
  std::vector<TensorInfo> out;
  out.reserve(tensors_.size());
  for (const MappedTensor& t : tensors_) out.push_back(t.info);
  return out;
}

absl::StatusOr<const MappedTensor*> MappedModelSource::Lookup(absl::string_view name) const {
  auto it = index_.find(std::string(name));
  if (it == index_.end())
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor named ", name));
  return &tensors_[it->second];
}

absl::StatusOr<TensorInfo> MappedModelSource::FindTensor(absl::string_view name) const {
  TPS_ASSIGN_OR_RETURN(const MappedTensor* t, Lookup(name));
  return t->info;
}

absl::StatusOr<HostTensor> MappedModelSource::ReadRows(absl::string_view name, int64_t row_begin,
                                                       int64_t row_count) const {
  TPS_ASSIGN_OR_RETURN(const MappedTensor* t, Lookup(name));
  const TensorInfo& info = t->info;
  const bool one_d = info.shape.size() == 1;
  if (one_d && IsQuantized(info.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", name, " is a 1-D ",
                                                   DTypeName(info.dtype),
                                                   " tensor; element slices need a plain type"));
  }
  const int64_t rows = info.shape.empty() ? 1 : info.shape[0];
  if (row_begin < 0 || row_count < 0 || row_begin > rows || row_count > rows - row_begin) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": rows [", row_begin, ", +", row_count,
                                              ") of ", name, " outside its ", rows, " rows"));
  }
  const uint64_t row_bytes = rows > 0 ? info.bytes / static_cast<uint64_t>(rows) : 0;
  HostTensor out;
  out.dtype = info.dtype;
  out.shape = info.shape;
  if (!out.shape.empty()) out.shape[0] = row_count;
  out.bytes = static_cast<uint64_t>(row_count) * row_bytes;
  if (t->convert_from.has_value()) {
    // One outer row's values are contiguous whole blocks (the reader checked
    // the row length): convert them as one long row.
    int64_t values = 1;
    for (size_t d = 1; d < info.shape.size(); ++d) values *= info.shape[d];
    const int64_t src_row = ConvertedRowBytes(*t->convert_from, values);
    auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(out.bytes));
    if (row_count > 0) {
      ConvertToQ8_0(*t->convert_from, t->data + row_begin * src_row, row_count, values, 0, values,
                    buf->data());
    }
    out.data = buf->data();
    out.owner = std::move(buf);
    return out;
  }
  out.data = t->data + static_cast<uint64_t>(row_begin) * row_bytes;
  out.owner = t->owner;
  return out;
}

absl::StatusOr<HostTensor> MappedModelSource::ReadColumns(absl::string_view name, int64_t col_begin,
                                                          int64_t col_count) const {
  TPS_ASSIGN_OR_RETURN(const MappedTensor* t, Lookup(name));
  const TensorInfo& info = t->info;
  if (info.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", name, " has shape ",
                                                   ShapeString(info.shape),
                                                   "; column slices need a 2-D tensor"));
  }
  const int64_t rows = info.shape[0], cols = info.shape[1];
  if (col_begin < 0 || col_count < 0 || col_begin > cols || col_count > cols - col_begin) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": columns [", col_begin, ", +", col_count,
                                              ") of ", name, " outside its ", cols, " columns"));
  }
  const int64_t bv = BlockValues(info.dtype);
  if (col_begin % bv != 0 || col_count % bv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": columns [", col_begin, ", +", col_count, ") of ", name, " (",
        DTypeName(info.dtype), ") do not start and end on ", bv, "-value block boundaries"));
  }
  const int64_t src_row = RowBytes(info.dtype, cols);
  const int64_t skip = RowBytes(info.dtype, col_begin);
  const int64_t dst_row = RowBytes(info.dtype, col_count);
  auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(rows * dst_row));
  if (t->convert_from.has_value()) {
    if (dst_row > 0)
      ConvertToQ8_0(*t->convert_from, t->data, rows, cols, col_begin, col_count, buf->data());
  }
  for (int64_t r = 0; !t->convert_from.has_value() && dst_row > 0 && r < rows;
       ++r) {  // (memcpy on an empty buffer's null data is UB)
    std::memcpy(buf->data() + r * dst_row, t->data + r * src_row + skip,
                static_cast<size_t>(dst_row));
  }
  HostTensor out;
  out.dtype = info.dtype;
  out.shape = {rows, col_count};
  out.data = buf->data();
  out.bytes = buf->size();
  out.owner = std::move(buf);
  return out;
}

}  // namespace tpserve
