#include "common/hf_chat_template.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tpserve {
namespace {

using json = nlohmann::json;

// nullopt-like: sets *found = false when the file does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path, bool* found) {
  std::ifstream in(path, std::ios::binary);
  *found = static_cast<bool>(in);
  if (!in) return std::string();
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return ss.str();
}

absl::StatusOr<json> ReadJson(const std::string& path, bool* found) {
  absl::StatusOr<std::string> text = ReadFile(path, found);
  if (!text.ok()) return text.status();
  if (!*found) return json();
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  }
  return j;
}

// A "chat_template" value: a string, or [{"name", "template"}, ...].
std::string TemplateOf(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  std::string out;
  if (!value.is_array()) return out;
  for (const json& e : value) {
    if (!e.is_object()) continue;
    auto n = e.find("name");
    auto t = e.find("template");
    if (n == e.end() || t == e.end() || !n->is_string() || !t->is_string()) continue;
    if (out.empty() || n->get<std::string>() == "default") out = t->get<std::string>();
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadHfChatTemplate(const std::string& dir) {
  bool found = false;
  absl::StatusOr<std::string> jinja = ReadFile(dir + "/chat_template.jinja", &found);
  if (!jinja.ok() || found) return jinja;
  for (const char* name : {"/chat_template.json", "/tokenizer_config.json"}) {
    absl::StatusOr<json> j = ReadJson(dir + name, &found);
    if (!j.ok()) return j.status();
    if (!found) continue;
    auto ct = j->find("chat_template");
    if (ct == j->end()) continue;
    std::string t = TemplateOf(*ct);
    if (!t.empty()) return t;
  }
  return std::string();
}

}  // namespace tpserve
