#include "worker/model/hf_model.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/hf_chat_template.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/gguf_model.h"
#include "worker/model/mapped_model_source.h"
#include "worker/model/safetensors.h"
#include "worker/model/tensor_names.h"

namespace tpserve {
namespace {

using nlohmann::json;

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<json> ParseJson(const std::string& text, absl::string_view path) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return j;
}

// Reads an optional number field; error when present with another type.
absl::Status GetNumber(const json& j, const char* key, double* out, absl::string_view path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, " is not a number"));
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status GetInt(const json& j, const char* key, int* out, absl::string_view path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer() || it->get<int64_t>() < -1 ||
      it->get<int64_t>() > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, " is not an integer in range"));
  }
  *out = static_cast<int>(it->get<int64_t>());
  return absl::OkStatus();
}

// Token ids from an int or a list of ints (eos_token_id may be either).
std::vector<int32_t> IdList(const json& j, const char* key) {
  std::vector<int32_t> ids;
  auto it = j.find(key);
  if (it == j.end()) return ids;
  auto add = [&](const json& v) {
    if (v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (int64_t{1} << 30)) {
      ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
  };
  if (it->is_array()) {
    for (const json& v : *it) add(v);
  } else {
    add(*it);
  }
  return ids;
}

void AddStop(std::vector<int32_t>& stops, int32_t id) {
  if (id >= 0 && std::find(stops.begin(), stops.end(), id) == stops.end()) stops.push_back(id);
}

// A special-token field of tokenizer_config.json: "text" or {"content": "text"}.
std::string TokenText(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  return "";
}

}  // namespace

absl::StatusOr<ModelConfig> ConfigFromHfJson(const std::string& config_json,
                                             const std::string& generation_config_json,
                                             absl::string_view path) {
  const std::string where = absl::StrCat(path, "/config.json");
  TPS_ASSIGN_OR_RETURN(json j, ParseJson(config_json, where));
  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing model_type"));
  }
  c.architecture = mt->get<std::string>();
  if (c.architecture != "llama" && c.architecture != "mistral" && c.architecture != "qwen2") {
    return absl::UnimplementedError(absl::StrCat(where, ": unsupported model_type '",
                                                 c.architecture,
                                                 "' (supported: llama, mistral, qwen2)"));
  }
  TPS_RETURN_IF_ERROR(GetInt(j, "hidden_size", &c.hidden_size, where));
  TPS_RETURN_IF_ERROR(GetInt(j, "num_hidden_layers", &c.num_layers, where));
  TPS_RETURN_IF_ERROR(GetInt(j, "num_attention_heads", &c.num_heads, where));
  c.num_kv_heads = c.num_heads;
  TPS_RETURN_IF_ERROR(GetInt(j, "num_key_value_heads", &c.num_kv_heads, where));
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  TPS_RETURN_IF_ERROR(GetInt(j, "head_dim", &c.head_dim, where));
  TPS_RETURN_IF_ERROR(GetInt(j, "intermediate_size", &c.ffn_size, where));
  TPS_RETURN_IF_ERROR(GetInt(j, "vocab_size", &c.vocab_size, where));
  c.context_length = 2048;
  TPS_RETURN_IF_ERROR(GetInt(j, "max_position_embeddings", &c.context_length, where));
  double eps = 1e-6, theta = c.architecture == "qwen2" ? 1e6 : 1e4;
  TPS_RETURN_IF_ERROR(GetNumber(j, "rms_norm_eps", &eps, where));
  TPS_RETURN_IF_ERROR(GetNumber(j, "rope_theta", &theta, where));
  c.rms_norm_eps = static_cast<float>(eps);
  c.rope_theta = static_cast<float>(theta);
  if (auto rs = j.find("rope_scaling"); rs != j.end() && !rs->is_null()) {
    if (!rs->is_object())
      return absl::InvalidArgumentError(absl::StrCat(where, ": rope_scaling is not an object"));
    std::string type;
    for (const char* k : {"rope_type", "type"}) {
      auto t = rs->find(k);
      if (t != rs->end() && t->is_string()) type = t->get<std::string>();
      if (!type.empty()) break;
    }
    double factor = 1.0, low = 1.0, high = 4.0;
    int orig = 8192;
    TPS_RETURN_IF_ERROR(GetNumber(*rs, "factor", &factor, where));
    TPS_RETURN_IF_ERROR(GetNumber(*rs, "low_freq_factor", &low, where));
    TPS_RETURN_IF_ERROR(GetNumber(*rs, "high_freq_factor", &high, where));
    TPS_RETURN_IF_ERROR(GetInt(*rs, "original_max_position_embeddings", &orig, where));
    c.rope_scaling.factor = static_cast<float>(factor);
    c.rope_scaling.low_freq_factor = static_cast<float>(low);
    c.rope_scaling.high_freq_factor = static_cast<float>(high);
    c.rope_scaling.original_max_position = orig;
    if (type == "linear") {
      c.rope_scaling.type = RopeScaling::Type::kLinear;
    } else if (type == "llama3") {
      c.rope_scaling.type = RopeScaling::Type::kLlama3;
    } else if (type != "default" && !type.empty()) {
      return absl::UnimplementedError(
          absl::StrCat(where, ": unsupported rope_scaling type '", type, "'"));
    }
  }
  c.rope_neox = true;  // HF checkpoints use rotate_half
  c.tie_embeddings = false;
  if (auto t = j.find("tie_word_embeddings"); t != j.end() && t->is_boolean())
    c.tie_embeddings = t->get<bool>();
  c.qkv_bias = c.architecture == "qwen2";
  if (auto b = j.find("attention_bias"); b != j.end() && b->is_boolean())
    c.qkv_bias = b->get<bool>();

  c.bos_id = -1;
  TPS_RETURN_IF_ERROR(GetInt(j, "bos_token_id", &c.bos_id, where));
  TPS_RETURN_IF_ERROR(GetInt(j, "pad_token_id", &c.pad_id, where));
  std::vector<int32_t> eos = IdList(j, "eos_token_id");
  if (!generation_config_json.empty()) {
    const std::string gwhere = absl::StrCat(path, "/generation_config.json");
    TPS_ASSIGN_OR_RETURN(json g, ParseJson(generation_config_json, gwhere));
    for (int32_t id : IdList(g, "eos_token_id")) eos.push_back(id);
    if (c.bos_id < 0) TPS_RETURN_IF_ERROR(GetInt(g, "bos_token_id", &c.bos_id, gwhere));
    if (c.pad_id < 0) TPS_RETURN_IF_ERROR(GetInt(g, "pad_token_id", &c.pad_id, gwhere));
  }
  if (!eos.empty()) c.eos_id = eos.front();
  for (int32_t id : eos) AddStop(c.stop_ids, id);
  return c;
}

absl::StatusOr<std::unique_ptr<ModelSource>> OpenHfModel(const std::string& dir) {
  namespace fs = std::filesystem;
  TPS_ASSIGN_OR_RETURN(std::string config_text, ReadText(dir + "/config.json"));
  std::string gen_text;
  if (fs::exists(dir + "/generation_config.json")) {
    TPS_ASSIGN_OR_RETURN(gen_text, ReadText(dir + "/generation_config.json"));
  }
  TPS_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromHfJson(config_text, gen_text, dir));
  config.name = fs::path(dir).filename().string();
  if (config.name.empty()) config.name = fs::path(dir).parent_path().filename().string();

  // Which safetensors files: the index's weight_map, else every *.safetensors.
  std::vector<std::string> files;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (fs::exists(index_path)) {
    TPS_ASSIGN_OR_RETURN(std::string text, ReadText(index_path));
    TPS_ASSIGN_OR_RETURN(json idx, ParseJson(text, index_path));
    auto wm = idx.find("weight_map");
    if (wm == idx.end() || !wm->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing weight_map"));
    }
    absl::flat_hash_set<std::string> seen;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": bad weight_map entry"));
      const std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": shard name '", f, "' is not a plain file name"));
      }
      if (seen.insert(f).second) files.push_back(dir + "/" + f);
    }
  } else {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    }
    if (ec) return absl::NotFoundError(absl::StrCat(dir, ": cannot list: ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    return absl::InvalidArgumentError(absl::StrCat(dir, ": no *.safetensors files"));

  std::vector<MappedTensor> tensors;
  absl::flat_hash_map<std::string, std::string> where;  // internal name -> file
  for (const std::string& path : files) {
    TPS_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(path));
    for (const SafetensorsTensor& st : f->tensors()) {
      std::optional<std::string> name = HfToInternalName(st.name);
      if (!name.has_value()) continue;  // rotary_emb.inv_freq and other non-weights
      if (*name == "output.weight" && config.tie_embeddings) continue;
      if (!st.dtype.has_value()) {
        return absl::UnimplementedError(absl::StrCat(path, ": tensor ", st.name, " has dtype ",
                                                     st.dtype_name,
                                                     " (tpserve reads F32, F16, BF16)"));
      }
      if (auto [it, fresh] = where.emplace(*name, path); !fresh) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor ", st.name, " also appears in ", it->second));
      }
      MappedTensor t;
      t.info.name = *name;
      t.info.source_name = st.name;
      t.info.dtype = *st.dtype;
      t.info.shape = st.shape;
      t.info.bytes = st.bytes();
      t.data = f->data(st);
      t.owner = f->owner();
      tensors.push_back(std::move(t));
    }
  }

  // Tokenizer: tokenizer.json (vocab size, added tokens -> stop ids) and
  // tokenizer_config.json (bos/eos text, chat template).
  TokenizerSummary tok;
  const std::string tok_path = dir + "/tokenizer.json";
  if (fs::exists(tok_path)) {
    tok.tokenizer_json = tok_path;
    TPS_ASSIGN_OR_RETURN(std::string text, ReadText(tok_path));
    TPS_ASSIGN_OR_RETURN(json tj, ParseJson(text, tok_path));
    auto model = tj.find("model");
    if (model != tj.end() && model->is_object()) {
      if (auto t = model->find("type"); t != model->end() && t->is_string()) {
        tok.model = t->get<std::string>() == "BPE" ? "gpt2" : t->get<std::string>();
      }
      if (auto v = model->find("vocab"); v != model->end() && v->is_object())
        tok.vocab_size = v->size();
      if (auto m = model->find("merges"); m != model->end() && m->is_array())
        tok.num_merges = m->size();
    }
    if (auto added = tj.find("added_tokens"); added != tj.end() && added->is_array()) {
      for (const json& a : *added) {
        if (!a.is_object()) continue;
        auto id = a.find("id");
        auto content = a.find("content");
        if (id == a.end() || content == a.end() || !id->is_number_integer() ||
            !content->is_string())
          continue;
        const int64_t i = id->get<int64_t>();
        for (const char* s : StopTokenTexts()) {
          if (content->get<std::string>() == s && i >= 0 && i < config.vocab_size) {
            AddStop(config.stop_ids, static_cast<int32_t>(i));
          }
        }
      }
    }
  }
  const std::string tc_path = dir + "/tokenizer_config.json";
  if (fs::exists(tc_path)) {
    TPS_ASSIGN_OR_RETURN(std::string text, ReadText(tc_path));
    TPS_ASSIGN_OR_RETURN(json tc, ParseJson(text, tc_path));
    tok.bos_token = TokenText(tc, "bos_token");
    tok.eos_token = TokenText(tc, "eos_token");
  }
  // chat_template.jinja, chat_template.json or tokenizer_config.json.
  TPS_ASSIGN_OR_RETURN(tok.chat_template, ReadHfChatTemplate(dir));
  TPS_RETURN_IF_ERROR(ValidateLlamaModel(config, tensors, dir));
  return std::unique_ptr<ModelSource>(std::make_unique<MappedModelSource>(
      "hf", dir, std::move(config), std::move(tok), std::move(tensors)));
}

}  // namespace tpserve
