#include "worker/model/gguf_model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/model/ggml_convert.h"
#include "worker/model/mapped_model_source.h"

namespace tpserve {
namespace {

constexpr const char* kStopTexts[] = {"<|im_end|>",    "<|eot_id|>",    "<|end_of_text|>",
                                      "<|eom_id|>",    "<|endoftext|>", "</s>",
                                      "<end_of_turn>", "<|end|>"};

// Optional integer key: `def` when absent, error on the wrong type.
absl::StatusOr<int64_t> IntOr(const GgufFile& f, const std::string& key, int64_t def) {
  if (!f.Has(key)) return def;
  return f.GetInt(key);
}

absl::StatusOr<double> FloatOr(const GgufFile& f, const std::string& key, double def) {
  if (!f.Has(key)) return def;
  return f.GetFloat(key);
}

absl::StatusOr<int> ToInt(const GgufFile& f, absl::string_view key, int64_t v) {
  if (v < -1 || v > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.path(), ": metadata ", key, " = ", v, " is out of range"));
  }
  return static_cast<int>(v);
}

void AddStop(std::vector<int32_t>& stops, int64_t id) {
  if (id < 0) return;
  if (std::find(stops.begin(), stops.end(), id) == stops.end())
    stops.push_back(static_cast<int32_t>(id));
}

}  // namespace

absl::Span<const char* const> StopTokenTexts() { return absl::MakeConstSpan(kStopTexts); }

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& f) {
  ModelConfig c;
  auto arch_or = f.GetString("general.architecture");
  if (!arch_or.ok()) return Annotate(arch_or.status(), "reading the model architecture");
  c.architecture = std::string(*arch_or);
  if (c.architecture != "llama" && c.architecture != "mistral" && c.architecture != "qwen2") {
    return absl::UnimplementedError(absl::StrCat(f.path(), ": unsupported architecture '",
                                                 c.architecture,
                                                 "' (supported: llama, mistral, qwen2)"));
  }
  const std::string a = c.architecture + ".";
  if (auto n = f.GetString("general.name"); n.ok()) c.name = std::string(*n);
  auto required = [&](absl::string_view key) -> absl::StatusOr<int> {
    auto v = f.GetInt(absl::StrCat(a, key));
    if (!v.ok()) return Annotate(v.status(), "reading the model config");
    return ToInt(f, absl::StrCat(a, key), *v);
  };
  TPS_ASSIGN_OR_RETURN(c.hidden_size, required("embedding_length"));
  TPS_ASSIGN_OR_RETURN(c.num_layers, required("block_count"));
  TPS_ASSIGN_OR_RETURN(c.num_heads, required("attention.head_count"));
  TPS_ASSIGN_OR_RETURN(c.ffn_size, required("feed_forward_length"));
  TPS_ASSIGN_OR_RETURN(int64_t kv, IntOr(f, a + "attention.head_count_kv", c.num_heads));
  TPS_ASSIGN_OR_RETURN(c.num_kv_heads, ToInt(f, "head_count_kv", kv));
  const int64_t default_hd = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  TPS_ASSIGN_OR_RETURN(int64_t hd, IntOr(f, a + "attention.key_length", default_hd));
  TPS_ASSIGN_OR_RETURN(c.head_dim, ToInt(f, "key_length", hd));
  TPS_ASSIGN_OR_RETURN(int64_t ctx, IntOr(f, a + "context_length", 2048));
  TPS_ASSIGN_OR_RETURN(c.context_length, ToInt(f, "context_length", ctx));
  TPS_ASSIGN_OR_RETURN(double eps, FloatOr(f, a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rms_norm_eps = static_cast<float>(eps);
  TPS_ASSIGN_OR_RETURN(double theta, FloatOr(f, a + "rope.freq_base", 10000.0));
  c.rope_theta = static_cast<float>(theta);

  // RoPE scaling: "linear" is stated in metadata; llama3-style scaling is
  // stored by llama.cpp as a rope_freqs.weight tensor of per-pair factors,
  // which we read as Llama 3.1's published parameters.
  if (f.Has(a + "rope.scaling.type")) {
    TPS_ASSIGN_OR_RETURN(absl::string_view type, f.GetString(a + "rope.scaling.type"));
    TPS_ASSIGN_OR_RETURN(double factor, FloatOr(f, a + "rope.scaling.factor", 1.0));
    if (type == "linear") {
      c.rope_scaling.type = RopeScaling::Type::kLinear;
      c.rope_scaling.factor = static_cast<float>(factor);
    } else if (type != "none") {
      return absl::UnimplementedError(
          absl::StrCat(f.path(), ": unsupported RoPE scaling '", type, "'"));
    }
  }
  if (f.FindTensor("rope_freqs.weight") != nullptr) {
    c.rope_scaling.type = RopeScaling::Type::kLlama3;
    c.rope_scaling.factor = 8.0f;
    c.rope_scaling.low_freq_factor = 1.0f;
    c.rope_scaling.high_freq_factor = 4.0f;
    TPS_ASSIGN_OR_RETURN(int64_t orig, IntOr(f, a + "rope.scaling.original_context_length", 8192));
    c.rope_scaling.original_max_position = static_cast<int>(std::clamp<int64_t>(orig, 1, 1 << 30));
  }
  c.rope_neox = c.architecture == "qwen2";
  c.tie_embeddings = f.FindTensor("output.weight") == nullptr;
  c.qkv_bias = f.FindTensor("blk.0.attn_q.bias") != nullptr;

  const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": missing tensor token_embd.weight"));
  TPS_ASSIGN_OR_RETURN(int64_t vocab, IntOr(f, a + "vocab_size", embd->shape[0]));
  TPS_ASSIGN_OR_RETURN(c.vocab_size, ToInt(f, "vocab_size", vocab));

  TPS_ASSIGN_OR_RETURN(int64_t bos, IntOr(f, "tokenizer.ggml.bos_token_id", -1));
  TPS_ASSIGN_OR_RETURN(int64_t eos, IntOr(f, "tokenizer.ggml.eos_token_id", -1));
  TPS_ASSIGN_OR_RETURN(int64_t pad, IntOr(f, "tokenizer.ggml.padding_token_id", -1));
  TPS_ASSIGN_OR_RETURN(int64_t eot, IntOr(f, "tokenizer.ggml.eot_token_id", -1));
  TPS_ASSIGN_OR_RETURN(int64_t eom, IntOr(f, "tokenizer.ggml.eom_token_id", -1));
  for (int64_t* id : {&bos, &eos, &pad, &eot, &eom}) {
    if (*id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          f.path(), ": special token id ", *id, " is outside the vocabulary of ", c.vocab_size));
    }
  }
  c.bos_id = static_cast<int32_t>(bos);
  c.eos_id = static_cast<int32_t>(eos);
  c.pad_id = static_cast<int32_t>(pad);
  AddStop(c.stop_ids, eos);
  AddStop(c.stop_ids, eot);
  AddStop(c.stop_ids, eom);
  if (auto toks = f.GetStringArray("tokenizer.ggml.tokens"); toks.ok()) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(toks->size()), c.vocab_size);
    for (int64_t i = 0; i < n; ++i) {
      for (const char* s : kStopTexts) {
        if ((*toks)[i] == s) AddStop(c.stop_ids, i);
      }
    }
  }
  return c;
}

TokenizerSummary TokenizerSummaryFromGguf(const GgufFile& f) {
  TokenizerSummary t;
  if (auto m = f.GetString("tokenizer.ggml.model"); m.ok()) t.model = std::string(*m);
  auto toks = f.GetStringArray("tokenizer.ggml.tokens");
  if (toks.ok()) t.vocab_size = static_cast<int64_t>(toks->size());
  if (auto merges = f.GetStringArray("tokenizer.ggml.merges"); merges.ok()) {
    t.num_merges = static_cast<int64_t>(merges->size());
  }
  auto text = [&](absl::string_view key) -> std::string {
    auto id = f.GetInt(key);
    if (!toks.ok() || !id.ok() || *id < 0 || *id >= static_cast<int64_t>(toks->size())) return "";
    return std::string((*toks)[*id]);
  };
  t.bos_token = text("tokenizer.ggml.bos_token_id");
  t.eos_token = text("tokenizer.ggml.eos_token_id");
  if (auto ct = f.GetString("tokenizer.chat_template"); ct.ok()) t.chat_template = std::string(*ct);
  return t;
}

absl::StatusOr<std::unique_ptr<ModelSource>> GgufModelFromFile(std::unique_ptr<GgufFile> f) {
  TPS_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromGguf(*f));
  std::vector<MappedTensor> tensors;
  tensors.reserve(f->tensors().size());
  for (const GgufTensorInfo& g : f->tensors()) {
    MappedTensor t;
    // K-quants, Q5_0, Q5_1, IQ4_NL and IQ4_XS are converted to Q8_0 on read
    // (ggml_convert.h); the reader has checked that their rows are whole blocks.
    t.convert_from = ConvertedTypeFromGgml(g.ggml_type);
    if (!g.dtype.has_value() && !t.convert_from.has_value()) {
      return absl::UnimplementedError(absl::StrCat(
          f->path(), ": tensor ", g.name, " has type ", g.ggml_type_name,
          ", which tpserve does not read (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, "
          "Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)"));
    }
    t.info.name = g.name;
    t.info.source_name = g.name;
    t.info.dtype = t.convert_from.has_value() ? DType::kQ8_0 : *g.dtype;
    t.info.shape = g.shape;
    t.info.bytes =
        t.convert_from.has_value()
            ? static_cast<uint64_t>(g.num_elements / kQuantBlockValues * BlockBytes(DType::kQ8_0))
            : g.bytes;
    if (t.convert_from.has_value()) t.info.file_type = g.ggml_type_name;
    t.data = g.data;
    t.owner = f->owner();
    tensors.push_back(std::move(t));
  }
  TPS_RETURN_IF_ERROR(ValidateLlamaModel(config, tensors, f->path()));
  TokenizerSummary tok = TokenizerSummaryFromGguf(*f);
  std::string path = f->path();
  // The GgufFile itself (metadata views) can go; the mapping lives on in each tensor's owner.
  return std::unique_ptr<ModelSource>(std::make_unique<MappedModelSource>(
      "gguf", std::move(path), std::move(config), std::move(tok), std::move(tensors)));
}

absl::StatusOr<std::unique_ptr<ModelSource>> OpenGgufModel(const std::string& path) {
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
  return GgufModelFromFile(std::move(f));
}

}  // namespace tpserve
