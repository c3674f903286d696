#include "router/tokenizer/tokenizer_data.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "common/hf_chat_template.h"
#include "common/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tpserve {
namespace {

using nlohmann::json;

// Reads the tokenizer.json pre_tokenizer into a GGUF-style name.
absl::StatusOr<std::string> PreTokenizerName(const json& pre) {
  if (pre.is_null()) return std::string("");
  std::vector<json> steps;
  if (pre.value("type", "") == "Sequence") {
    for (const json& p : pre.at("pretokenizers")) steps.push_back(p);
  } else {
    steps.push_back(pre);
  }
  bool digits = false, byte_level_regex = false;
  std::string split_regex;
  for (const json& p : steps) {
    std::string type = p.value("type", "");
    if (type == "Digits" && p.value("individual_digits", false)) {
      digits = true;
    } else if (type == "ByteLevel") {
      byte_level_regex = p.value("use_regex", true);
    } else if (type == "Split" && p.contains("pattern") && p["pattern"].contains("Regex")) {
      split_regex = p["pattern"]["Regex"].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unsupported pre_tokenizer step ", p.dump()));
    }
  }
  if (!split_regex.empty()) {
    if (absl::StrContains(split_regex, "\\p{N}{1,3}")) return std::string("llama3");
    if (absl::StrContains(split_regex, "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"))
      return std::string("qwen2");
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported pre_tokenizer Split regex ", split_regex));
  }
  if (byte_level_regex) return std::string(digits ? "smollm" : "gpt2");
  return absl::InvalidArgumentError(absl::StrCat("unsupported pre_tokenizer ", pre.dump()));
}

absl::StatusOr<TokenizerData> Parse(const json& j) {
  TokenizerData d;
  const json& model = j.at("model");
  if (model.value("type", "BPE") != "BPE") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported tokenizer model type ", model.value("type", "")));
  }
  const json& vocab = model.at("vocab");
  size_t n = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > (1 << 24)) return absl::InvalidArgumentError("vocab id out of range");
    n = std::max<size_t>(n, id + 1);
  }
  if (j.contains("added_tokens")) {
    for (const json& t : j["added_tokens"]) {
      int64_t id = t.at("id").get<int64_t>();
      if (id < 0 || id > (1 << 24))
        return absl::InvalidArgumentError("added token id out of range");
      n = std::max<size_t>(n, id + 1);
    }
  }
  d.tokens.resize(n);
  d.token_types.assign(n, TokenType::kNormal);
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    d.tokens[it.value().get<int64_t>()] = it.key();
  if (j.contains("added_tokens")) {
    for (const json& t : j["added_tokens"]) {
      int64_t id = t["id"].get<int64_t>();
      d.tokens[id] = t.at("content").get<std::string>();
      d.token_types[id] = t.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
    }
  }
  for (const json& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      d.merges.push_back(m.get<std::string>());
    } else {
      d.merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    }
  }
  d.ignore_merges = model.value("ignore_merges", false);
  bool byte_fallback = model.value("byte_fallback", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it != vocab.end()) d.unk_id = it.value().get<int32_t>();
  }
  if (byte_fallback) {
    // SentencePiece-style: scores from merge order (earlier merge = higher).
    d.model = TokenizerData::Model::kSentencePieceBpe;
    d.scores.assign(n, 0.0f);
    std::vector<bool> seen(n, false);
    for (size_t r = 0; r < d.merges.size(); ++r) {
      const std::string& m = d.merges[r];
      size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) continue;
      auto it = vocab.find(m.substr(0, sp) + m.substr(sp + 1));
      if (it == vocab.end()) continue;
      int64_t id = it.value().get<int64_t>();
      if (!seen[id]) d.scores[id] = -static_cast<float>(r), seen[id] = true;
    }
    for (size_t i = 0; i < n; ++i) {
      const std::string& s = d.tokens[i];
      if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>')
        d.token_types[i] = TokenType::kByte;
    }
    d.merges.clear();
    const json& norm = j.value("normalizer", json());
    d.add_space_prefix = norm.dump().find("Prepend") != std::string::npos;
  } else {
    auto name = PreTokenizerName(j.value("pre_tokenizer", json()));
    if (!name.ok()) return name.status();
    d.pre_tokenizer = *name;
  }
  if (d.unk_id >= 0) d.token_types[d.unk_id] = TokenType::kUnknown;
  return d;
}

}  // namespace

absl::StatusOr<TokenizerData> TokenizerDataFromTokenizerJsonText(const std::string& json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("tokenizer.json is not a JSON object");
  }
  // nlohmann reports structural mismatches (missing keys, wrong types) by
  // exception; this is the one place they are caught and turned into a Status.
  try {
    return Parse(j);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed tokenizer.json: ", e.what()));
  }
}

absl::StatusOr<TokenizerData> TokenizerDataFromTokenizerJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto d = TokenizerDataFromTokenizerJsonText(ss.str());
  if (!d.ok()) {
    return absl::Status(d.status().code(), absl::StrCat(path, ": ", d.status().message()));
  }
  return d;
}

absl::StatusOr<TokenizerData> TokenizerDataFromHfDirectory(const std::string& dir) {
  TPS_ASSIGN_OR_RETURN(TokenizerData d, TokenizerDataFromTokenizerJson(dir + "/tokenizer.json"));
  TPS_ASSIGN_OR_RETURN(d.chat_template, ReadHfChatTemplate(dir));
  return d;
}

}  // namespace tpserve
