#include "common/hf_chat_template.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

namespace fs = std::filesystem;

// Directories laid out as transformers' save_pretrained leaves them, written
// by hand: the .venv has no transformers to write them.
class HfChatTemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = fs::path(tmp != nullptr ? tmp : "/tmp") /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  fs::path dir_;
};

TEST_F(HfChatTemplateTest, NoneIsEmpty) {
  Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  auto t = ReadHfChatTemplate(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "");
}

TEST_F(HfChatTemplateTest, JinjaFileWinsOverTheConfig) {
  Write("tokenizer_config.json", R"({"chat_template": "old"})");
  Write("chat_template.jinja", "{% for m in messages %}{{ m['content'] }}{% endfor %}\n");
  auto t = ReadHfChatTemplate(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "{% for m in messages %}{{ m['content'] }}{% endfor %}\n");
}

TEST_F(HfChatTemplateTest, ChatTemplateJson) {
  Write("chat_template.json", R"({"chat_template": "from json"})");
  auto t = ReadHfChatTemplate(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "from json");
}

TEST_F(HfChatTemplateTest, NamedTemplatesPreferDefault) {
  Write("tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "T"},
                              {"name": "default", "template": "D"}]})");
  auto t = ReadHfChatTemplate(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "D");
}

TEST_F(HfChatTemplateTest, MalformedJsonNamesTheFile) {
  Write("chat_template.json", "{not json");
  auto t = ReadHfChatTemplate(dir_.string());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("chat_template.json"), std::string::npos);
}

}  // namespace
}  // namespace tpserve
