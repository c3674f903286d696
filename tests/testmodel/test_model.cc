// WriteTestModel: random weights from a per-tensor seeded generator, the
// default model's vocabulary, and the two writers.
#include "tests/testmodel/test_model.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "formats/gguf_reader.h"
#include "nlohmann/json.hpp"
#include "tests/testmodel/gguf_writer.h"
#include "tests/testmodel/safetensors_writer.h"
#include "worker/model/quantize.h"
#include "worker/model/tensor_names.h"

namespace tpserve {
namespace {

using ojson = nlohmann::ordered_json;

// The vocabulary copied from the source GGUF (truncated to vocab_size).
struct Vocab {
  std::string model = "gpt2", pre = "smollm", chat_template;
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;
  int32_t bos = -1, eos = -1, pad = -1, unk = -1;
  bool add_bos = false;
};

absl::StatusOr<Vocab> LoadVocab(const std::string& path, int vocab_size) {
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
  Vocab v;
  TPS_ASSIGN_OR_RETURN(absl::Span<const absl::string_view> toks,
                       f->GetStringArray("tokenizer.ggml.tokens"));
  const size_t n = vocab_size > 0 ? std::min<size_t>(vocab_size, toks.size()) : toks.size();
  if (vocab_size > static_cast<int>(toks.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size ", vocab_size, " exceeds the ", toks.size(), " tokens of ", path));
  }
  for (size_t i = 0; i < n; ++i) v.tokens.emplace_back(toks[i]);
  if (auto tt = f->GetIntArray("tokenizer.ggml.token_type"); tt.ok()) {
    for (size_t i = 0; i < n && i < tt->size(); ++i)
      v.token_types.push_back(static_cast<int32_t>((*tt)[i]));
  }
  v.token_types.resize(n, 1);
  absl::flat_hash_set<std::string> known(v.tokens.begin(), v.tokens.end());
  if (auto merges = f->GetStringArray("tokenizer.ggml.merges"); merges.ok()) {
    for (absl::string_view m : *merges) {
      const size_t sp = m.find(' ');
      if (sp == absl::string_view::npos) continue;
      const std::string a(m.substr(0, sp)), b(m.substr(sp + 1));
      if (known.contains(a) && known.contains(b) && known.contains(a + b)) v.merges.emplace_back(m);
    }
  }
  auto id = [&](const char* key) -> int32_t {
    auto x = f->GetInt(key);
    return x.ok() && *x >= 0 && *x < static_cast<int64_t>(n) ? static_cast<int32_t>(*x) : -1;
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  if (auto m = f->GetString("tokenizer.ggml.model"); m.ok()) v.model = std::string(*m);
  if (auto p = f->GetString("tokenizer.ggml.pre"); p.ok()) v.pre = std::string(*p);
  if (auto b = f->GetBool("tokenizer.ggml.add_bos_token"); b.ok()) v.add_bos = *b;
  if (auto ct = f->GetString("tokenizer.chat_template"); ct.ok())
    v.chat_template = std::string(*ct);
  return v;
}

// Deterministic per-tensor values: splitmix64 seeded by (seed, name).
class Rng {
 public:
  Rng(uint64_t seed, absl::string_view name) : state_(seed * 0x9E3779B97F4A7C15ull) {
    for (char c : name) state_ = (state_ ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  }
  float Uniform() {  // [-1, 1)
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) / static_cast<float>(1ull << 23) - 1.0f;
  }

 private:
  uint64_t state_;
};

struct Weight {
  std::string name;  // internal
  std::vector<int64_t> shape;
  std::vector<float> values;  // HF row order
  bool matrix = false;        // stored in spec.dtype (else F32)
};

std::vector<Weight> MakeWeights(const TestModelSpec& s, int64_t vocab, int64_t head_dim) {
  const int64_t h = s.hidden_size, q = s.num_heads * head_dim, kv = s.num_kv_heads * head_dim,
                f = s.ffn_size;
  std::vector<Weight> ws;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool matrix, bool norm) {
    Weight w{std::move(name), std::move(shape), {}, matrix};
    int64_t n = 1;
    for (int64_t d : w.shape) n *= d;
    Rng rng(s.seed, w.name);
    w.values.resize(n);
    const float scale = s.init_scale * 1.7320508f;  // uniform with std init_scale
    for (float& x : w.values) x = norm ? 1.0f + 0.1f * rng.Uniform() : scale * rng.Uniform();
    ws.push_back(std::move(w));
  };
  add("token_embd.weight", {vocab, h}, true, false);
  for (int l = 0; l < s.num_layers; ++l) {
    const std::string b = absl::StrCat("blk.", l, ".");
    add(b + "attn_norm.weight", {h}, false, true);
    add(b + "attn_q.weight", {q, h}, true, false);
    add(b + "attn_k.weight", {kv, h}, true, false);
    add(b + "attn_v.weight", {kv, h}, true, false);
    if (s.qkv_bias) {
      add(b + "attn_q.bias", {q}, false, false);
      add(b + "attn_k.bias", {kv}, false, false);
      add(b + "attn_v.bias", {kv}, false, false);
    }
    add(b + "attn_output.weight", {h, q}, true, false);
    add(b + "ffn_norm.weight", {h}, false, true);
    add(b + "ffn_gate.weight", {f, h}, true, false);
    add(b + "ffn_up.weight", {f, h}, true, false);
    add(b + "ffn_down.weight", {h, f}, true, false);
  }
  add("output_norm.weight", {h}, false, true);
  if (!s.tie_embeddings) add("output.weight", {vocab, h}, true, false);
  return ws;
}

// HF rotate-half row order -> llama.cpp's adjacent-pair order, per head:
// gguf row h*hd + 2i + j  <-  hf row h*hd + j*hd/2 + i.
std::vector<float> PermuteForGgufLlama(const std::vector<float>& v, int64_t rows, int64_t cols,
                                       int64_t hd) {
  std::vector<float> out(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / hd, within = r % hd, i = within / 2, j = within % 2;
    const int64_t src = head * hd + j * (hd / 2) + i;
    std::copy_n(v.begin() + src * cols, cols, out.begin() + r * cols);
  }
  return out;
}

std::vector<uint8_t> Encode(DType t, const std::vector<float>& v, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(v.size()) / cols;
  const int64_t rb = RowBytes(t, cols);
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  for (int64_t r = 0; r < rows; ++r) QuantizeRow(t, v.data() + r * cols, out.data() + r * rb, cols);
  return out;
}

absl::Status WriteGguf(const TestModelSpec& s, const Vocab& vocab, int64_t hd,
                       const std::vector<Weight>& ws, const std::string& path) {
  GgufWriter w;
  const std::string a = s.architecture + ".";
  w.AddString("general.architecture", s.architecture);
  w.AddString("general.name", "tpserve-test-model");
  w.AddUint32("general.alignment", GgufWriter::kAlignment);
  w.AddUint32(a + "context_length", s.context_length);
  w.AddUint32(a + "embedding_length", s.hidden_size);
  w.AddUint32(a + "block_count", s.num_layers);
  w.AddUint32(a + "feed_forward_length", s.ffn_size);
  w.AddUint32(a + "attention.head_count", s.num_heads);
  w.AddUint32(a + "attention.head_count_kv", s.num_kv_heads);
  w.AddUint32(a + "attention.key_length", hd);
  w.AddUint32(a + "attention.value_length", hd);
  w.AddUint32(a + "rope.dimension_count", hd);
  w.AddFloat32(a + "rope.freq_base", s.rope_theta);
  w.AddFloat32(a + "attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  w.AddUint32(a + "vocab_size", vocab.tokens.size());
  w.AddString("tokenizer.ggml.model", vocab.model);
  w.AddString("tokenizer.ggml.pre", vocab.pre);
  w.AddStringArray("tokenizer.ggml.tokens", vocab.tokens);
  w.AddInt32Array("tokenizer.ggml.token_type", vocab.token_types);
  w.AddStringArray("tokenizer.ggml.merges", vocab.merges);
  if (vocab.bos >= 0) w.AddUint32("tokenizer.ggml.bos_token_id", vocab.bos);
  if (vocab.eos >= 0) w.AddUint32("tokenizer.ggml.eos_token_id", vocab.eos);
  if (vocab.unk >= 0) w.AddUint32("tokenizer.ggml.unknown_token_id", vocab.unk);
  if (vocab.pad >= 0) w.AddUint32("tokenizer.ggml.padding_token_id", vocab.pad);
  w.AddBool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  w.AddBool("tokenizer.ggml.add_space_prefix", false);
  if (!vocab.chat_template.empty()) w.AddString("tokenizer.chat_template", vocab.chat_template);
  const bool permute = s.architecture == "llama";
  for (const Weight& wt : ws) {
    const int64_t cols = wt.shape.back();
    std::vector<float> v = wt.values;
    const bool is_q = wt.name.find("attn_q.") != std::string::npos;
    const bool is_k = wt.name.find("attn_k.") != std::string::npos;
    if (permute && (is_q || is_k)) {
      v = wt.shape.size() == 2 ? PermuteForGgufLlama(v, wt.shape[0], cols, hd)
                               : PermuteForGgufLlama(v, wt.shape[0], 1, hd);
    }
    const DType t = wt.matrix ? s.dtype : DType::kF32;
    w.AddTensor(wt.name, t, wt.shape, Encode(t, v, cols));
  }
  return w.WriteFile(path);
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  return WriteBytes(path, text.data(), text.size());
}

absl::Status WriteHf(const TestModelSpec& s, const Vocab& vocab, int64_t hd,
                     const std::vector<Weight>& ws, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  SafetensorsWriter st;
  for (const Weight& w : ws) {
    std::optional<std::string> hf = InternalToHfName(w.name);
    if (!hf.has_value()) return absl::InternalError(absl::StrCat("no HF name for ", w.name));
    const DType t = w.matrix ? s.dtype : DType::kF32;
    st.AddTensor(*hf, t, w.shape, Encode(t, w.values, w.shape.back()));
  }
  TPS_RETURN_IF_ERROR(st.WriteFile(dir + "/model.safetensors"));

  const bool qwen = s.architecture == "qwen2";
  ojson config = {
      {"architectures", {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", s.architecture},
      {"hidden_size", s.hidden_size},
      {"intermediate_size", s.ffn_size},
      {"num_hidden_layers", s.num_layers},
      {"num_attention_heads", s.num_heads},
      {"num_key_value_heads", s.num_kv_heads},
      {"head_dim", hd},
      {"hidden_act", "silu"},
      {"max_position_embeddings", s.context_length},
      {"rms_norm_eps", s.rms_norm_eps},
      {"rope_theta", s.rope_theta},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", s.tie_embeddings},
      {"vocab_size", vocab.tokens.size()},
      {"torch_dtype",
       s.dtype == DType::kF32 ? "float32" : (s.dtype == DType::kF16 ? "float16" : "bfloat16")},
  };
  if (!qwen) config["attention_bias"] = s.qkv_bias;
  if (vocab.bos >= 0) config["bos_token_id"] = vocab.bos;
  if (vocab.eos >= 0) config["eos_token_id"] = vocab.eos;
  if (vocab.pad >= 0) config["pad_token_id"] = vocab.pad;
  TPS_RETURN_IF_ERROR(WriteText(dir + "/config.json", config.dump(2)));
  ojson gen = {{"bos_token_id", vocab.bos}, {"eos_token_id", vocab.eos}};
  TPS_RETURN_IF_ERROR(WriteText(dir + "/generation_config.json", gen.dump(2)));

  // tokenizer.json: byte-level BPE. GGUF token types 3 (control) and 4
  // (user-defined) are added tokens.
  // Plain (key-sorted) json here: ordered_json's linear key lookup makes a
  // 49k-entry vocab object quadratic.
  nlohmann::json added = nlohmann::json::array();
  nlohmann::json vocab_obj = nlohmann::json::object();
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    vocab_obj[vocab.tokens[i]] = i;
    if (vocab.token_types[i] == 3 || vocab.token_types[i] == 4) {
      added.push_back({{"id", i},
                       {"content", vocab.tokens[i]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", vocab.token_types[i] == 3}});
    }
  }
  nlohmann::json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Digits"}, {"individual_digits", true}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", true}}}}}},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab_obj},
        {"merges", vocab.merges}}},
  };
  TPS_RETURN_IF_ERROR(WriteText(dir + "/tokenizer.json", tok.dump()));
  auto text = [&](int32_t id) { return id >= 0 ? ojson(vocab.tokens[id]) : ojson(nullptr); };
  ojson tc = {{"add_bos_token", vocab.add_bos},     {"bos_token", text(vocab.bos)},
              {"eos_token", text(vocab.eos)},       {"pad_token", text(vocab.pad)},
              {"unk_token", text(vocab.unk)},       {"model_max_length", s.context_length},
              {"tokenizer_class", "GPT2Tokenizer"}, {"clean_up_tokenization_spaces", false}};
  if (!vocab.chat_template.empty()) tc["chat_template"] = vocab.chat_template;
  return WriteText(dir + "/tokenizer_config.json", tc.dump(2));
}

}  // namespace

std::string DefaultVocabSource() {
  const char* vocab = std::getenv("TPSERVE_TEST_VOCAB");
  if (vocab != nullptr && *vocab != '\0') return vocab;
  const char* root = std::getenv("TPSERVE_ROOT");
  return absl::StrCat(root != nullptr ? root : ".", "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
}

absl::Status WriteTestModel(const TestModelSpec& s, const std::string& out_path) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("test model: ", what));
  };
  if (s.architecture != "llama" && s.architecture != "qwen2")
    return bad("architecture must be llama or qwen2");
  if (s.hidden_size <= 0 || s.num_layers <= 0 || s.num_heads <= 0 || s.num_kv_heads <= 0 ||
      s.ffn_size <= 0) {
    return bad("sizes must be positive");
  }
  if (s.num_heads % s.num_kv_heads != 0) return bad("num_heads must be a multiple of num_kv_heads");
  const int64_t hd = s.head_dim > 0 ? s.head_dim : s.hidden_size / s.num_heads;
  if (hd <= 0 || hd % 2 != 0) return bad("head_dim must be positive and even");
  if (s.format == TestModelFormat::kHf && IsQuantized(s.dtype)) {
    return bad(absl::StrCat("HF directories hold F32/F16/BF16, not ", DTypeName(s.dtype)));
  }
  if (IsQuantized(s.dtype)) {
    for (int64_t cols : {int64_t{s.hidden_size}, int64_t{s.ffn_size}, s.num_heads * hd}) {
      if (cols % kQuantBlockValues != 0) {
        return bad(absl::StrCat(DTypeName(s.dtype),
                                " needs hidden, ffn and heads*head_dim to be multiples of 32"));
      }
    }
  }
  const std::string source = s.vocab_source.empty() ? DefaultVocabSource() : s.vocab_source;
  auto vocab = LoadVocab(source, s.vocab_size);
  if (!vocab.ok()) return Annotate(vocab.status(), "test model vocabulary");
  const std::vector<Weight> ws = MakeWeights(s, static_cast<int64_t>(vocab->tokens.size()), hd);
  if (s.format == TestModelFormat::kGguf) return WriteGguf(s, *vocab, hd, ws, out_path);
  return WriteHf(s, *vocab, hd, ws, out_path);
}

}  // namespace tpserve
