// Chat templates render exactly as jinja2 renders them with transformers'
// settings: the default model's own template (SmolLM2, ChatML with a default
// system prompt), a second model's (Qwen2's from llama.cpp's vocab file), and
// every built-in, over generated conversations — including the ones the
// templates reject (Llama-2/Mistral role alternation).
#include "router/tokenizer/chat_template.h"

#include <fstream>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "router/tokenizer/jinja/template.h"
#include "router/tokenizer/reference_runner.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"

namespace tpserve {
namespace {

// Exercises the interpreter beyond the model templates: namespace, selectattr,
// map, loop filters, break/continue, loop.*, slicing, tojson, str/dict
// methods, ternaries without else, whitespace control.
constexpr char kFeatureTemplate[] = R"JINJA({%- set ns = namespace(system=none, count=0) -%}
{%- set systems = messages | selectattr('role', 'equalto', 'system') | list -%}
{%- if systems | length > 0 %}{% set ns.system = systems[0]['content'] | trim %}{% endif -%}
<sys>{{ ns.system if ns.system is not none else 'default' }}</sys>
{% for m in messages if m.role != 'system' -%}
  {%- if loop.index > 4 %}{% break %}{% endif -%}
  {%- if m.content == '' %}{% continue %}{% endif -%}
  {%- set ns.count = ns.count + 1 -%}
  [{{ loop.index }}/{{ loop.length }} rev{{ loop.revindex0 }}] {{ m.role | upper }}: {{ m.content[:20] | replace('
', ' ') }}{{ '...' if m.content | length > 20 }}
  {{ m | tojson }} {{ m.content.startswith('Hi') }} {{ m.get('name', 'anon') }} {{ m.content.split() | length }}
{% endfor -%}
roles={{ messages | map(attribute='role') | join(',') }} n={{ ns.count }} {{ (messages | length) // 2 }} {{ messages[-1].content.strip() if messages else 'none' }}
{%- if add_generation_prompt %}
<gen>{% endif %}
)JINJA";

std::vector<ChatMessage> Messages(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j)
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

// Renders every conversation of the reference with each template and counts
// exact matches per template.
void CheckAgainstJinja2(const std::string& gguf, const char* model_name, int min_per_template) {
  nlohmann::json names = nlohmann::json::object();
  for (const char* n : {"chatml", "llama3", "llama2", "mistral"})
    names[n] = ChatTemplate::BuiltinSource(n);
  names["features"] = kFeatureTemplate;
  std::string templates_path =
      tokenizer_testing::TempPath(std::string(model_name) + "_templates.json");
  std::ofstream(templates_path) << names.dump();
  nlohmann::json ref;
  ASSERT_TRUE(tokenizer_testing::RunReference(
                  {"chat", "--gguf", gguf, "--templates", templates_path, "--n", "40"}, &ref)
                  .ok());
  auto data = TokenizerDataFromGguf(gguf);
  ASSERT_TRUE(data.ok()) << data.status();
  std::map<std::string, ChatTemplate> templates;
  auto model = ChatTemplate::FromModel(data->chat_template, "<s>", "</s>");
  ASSERT_TRUE(model.ok()) << model.status();
  templates.emplace("model", *model);
  auto features = ChatTemplate::FromModel(kFeatureTemplate, "<s>", "</s>");
  ASSERT_TRUE(features.ok()) << features.status();
  templates.emplace("features", *features);
  for (const char* n : {"chatml", "llama3", "llama2", "mistral"}) {
    templates.emplace(n, *ChatTemplate::FromName(n, "<s>", "</s>"));
  }
  std::map<std::string, int> matched;
  int errors_seen = 0;
  for (const auto& r : ref["renders"]) {
    const std::string name = r["template"].get<std::string>();
    auto got =
        templates.at(name).Render(Messages(r["messages"]), r["add_generation_prompt"].get<bool>());
    if (r["error"].get<bool>()) {
      EXPECT_FALSE(got.ok()) << name << ": jinja2 raised, we rendered \"" << *got << "\"";
      // raise_exception ("rejected ...") or, for an empty conversation,
      // Llama-2's messages[0]['role'] on an undefined value: both errors in jinja2.
      if (!got.ok()) ++errors_seen;
      continue;
    }
    ASSERT_TRUE(got.ok()) << name << ": " << got.status();
    EXPECT_EQ(*got, r["text"].get<std::string>()) << name << " " << r["messages"].dump();
    if (*got == r["text"].get<std::string>()) ++matched[name];
  }
  for (const auto& [name, t] : templates) {
    EXPECT_GE(matched[name], min_per_template) << name;
  }
  EXPECT_GT(errors_seen, 0);  // Llama-2/Mistral rejected some conversations
}

TEST(ChatTemplate, DefaultModelAndBuiltinsMatchJinja2) {
  std::string root;
  ASSERT_TRUE(tokenizer_testing::Root(&root).ok());
  CheckAgainstJinja2(root + "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2", 20);
}

TEST(ChatTemplate, Qwen2TemplateMatchesJinja2) {
  std::string root;
  ASSERT_TRUE(tokenizer_testing::Root(&root).ok());
  CheckAgainstJinja2(root + "/models/vocab/ggml-vocab-qwen2.gguf", "qwen2", 20);
}

TEST(ChatTemplate, UnknownTemplateSaysHowToChooseABuiltin) {
  auto t = ChatTemplate::FromModel("{% macro m() %}x{% endmacro %}", "", "");
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::StrContains(t.status().message(), "macro")) << t.status();
  EXPECT_TRUE(absl::StrContains(t.status().message(), "chatml, llama3, llama2, mistral"));
  auto empty = ChatTemplate::FromModel("", "", "");
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(absl::StrContains(empty.status().message(), "built-in"));
  auto bad_name = ChatTemplate::FromName("vicuna", "", "");
  ASSERT_FALSE(bad_name.ok());
  EXPECT_TRUE(absl::StrContains(bad_name.status().message(), "chatml"));
  auto filter = ChatTemplate::FromModel("{{ messages | frobnicate }}", "", "");
  ASSERT_TRUE(filter.ok());
  auto r = filter->Render({{"user", "x"}}, false);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "frobnicate"));
  EXPECT_TRUE(absl::StrContains(r.status().message(), "built-in"));
}

TEST(ChatTemplate, ForTokenizerUsesTheModelsTemplate) {
  std::string root;
  ASSERT_TRUE(tokenizer_testing::Root(&root).ok());
  auto data = TokenizerDataFromGguf(root + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  ASSERT_TRUE(data.ok());
  auto tok = Tokenizer::Create(*std::move(data));
  ASSERT_TRUE(tok.ok());
  auto t = ChatTemplate::ForTokenizer(*tok);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name(), "model");
  auto text = t->Render({{"user", "Hi"}}, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  auto ids = tok->Encode(*text, /*add_special=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), tok->TokenId("<|im_start|>"));
  EXPECT_EQ(ids->back(), 198);  // "\n" after "assistant"
  auto forced = ChatTemplate::ForTokenizer(*tok, "llama3");
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced->name(), "llama3");
}

TEST(ChatTemplate, InvalidUtf8MessageIsAnError) {
  auto t = ChatTemplate::FromName("chatml", "", "");
  ASSERT_TRUE(t.ok());
  auto r = t->Render({{"user", "bad \xC3"}}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*t->Render({{"user", "hi"}}, true),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(Jinja, ExpressionsAndWhitespaceControl) {
  using jinja::Template;
  using jinja::Value;
  auto render = [](const char* src) {
    auto t = Template::Parse(src);
    EXPECT_TRUE(t.ok()) << t.status();
    auto s = t->Render({{"xs", Value::List({Value(1), Value(2), Value(3)})}});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : std::string("<error>");
  };
  EXPECT_EQ(render("{% for x in xs %}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"),
            "1,2,3");
  EXPECT_EQ(render("{{ xs[1:] }} {{ xs[::-1] | join('-') }} {{ 7 // 2 }} {{ -7 % 3 }}"),
            "[2, 3] 3-2-1 3 2");
  EXPECT_EQ(render("  {%- if true -%}  x  {%- endif %}"), "x");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% "
                   "endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(render("{{ 'a' if xs | length > 2 else 'b' }}{{ undefined_thing is defined }}"),
            "aFalse");
  EXPECT_EQ(render("{{ {'k': [1, 'two', none, true]} | tojson }}"),
            "{\"k\": [1, \"two\", null, true]}");
  EXPECT_EQ(render("{{ '  hi  '.strip() ~ '|' ~ 'a,b'.split(',') }}"), "hi|['a', 'b']");
  EXPECT_FALSE(Template::Parse("{% for x in %}").ok());
  EXPECT_FALSE(Template::Parse("{{ 'unterminated }}").ok());
  EXPECT_FALSE(Template::Parse("{% if x %}no end").ok());
}

}  // namespace
}  // namespace tpserve
