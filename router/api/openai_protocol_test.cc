#include "router/api/openai_protocol.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tpserve::openai {
namespace {

using ::testing::HasSubstr;

ParseOptions Opts() { return ParseOptions{.max_n = 8, .max_prompts = 4}; }

TEST(OpenAiProtocol, ParsesChatRequestWithEveryField) {
  auto r = ParseGenerateRequest(Endpoint::kChat, R"({
      "model": "m", "messages": [{"role": "developer", "content": "be brief"},
                                 {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                              {"type": "text", "text": "!"}]}],
      "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0.5, "top_p": 0.9, "n": 3,
      "stop": "\n", "seed": 11, "presence_penalty": 0.1, "frequency_penalty": 0.2,
      "logprobs": true, "top_logprobs": 2, "user": "u", "top_k": -1, "min_p": 0.05,
      "repetition_penalty": 1.1, "ignore_eos": true, "priority": 5, "stream": true,
      "stream_options": {"include_usage": true}, "unknown_field": {"x": 1}})",
                                Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->n, 3);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(r->logprobs);
  ASSERT_EQ(r->prompts.size(), 1u);
  const v1::GenerateRequest& g = r->prompts[0];
  ASSERT_EQ(g.chat().messages_size(), 2);
  EXPECT_EQ(g.chat().messages(0).role(), "system");
  EXPECT_EQ(g.chat().messages(1).content(), "Hi!");
  EXPECT_EQ(g.max_tokens(), 7);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_EQ(g.sampling().top_k(), 0);  // vLLM's -1 = off
  EXPECT_EQ(g.sampling().seed(), 11u);
  EXPECT_EQ(g.sampling().top_logprobs(), 2);
  EXPECT_TRUE(g.sampling().logprobs());
  EXPECT_FLOAT_EQ(g.sampling().repetition_penalty(), 1.1f);
  EXPECT_TRUE(g.ignore_eos());
  EXPECT_EQ(g.priority(), -5);  // vLLM: lower first; tpserve: higher first
  ASSERT_EQ(g.stop_size(), 1);
  EXPECT_EQ(g.stop(0), "\n");
}

TEST(OpenAiProtocol, ParsesEveryPromptShape) {
  auto text = ParseGenerateRequest(Endpoint::kCompletions, R"({"prompt": "a"})", Opts());
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->prompts[0].text(), "a");
  EXPECT_FALSE(text->prompts[0].sampling().has_seed());
  auto ids = ParseGenerateRequest(Endpoint::kCompletions, R"({"prompt": [1, 2, 3]})", Opts());
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->prompts.size(), 1u);
  EXPECT_EQ(ids->prompts[0].token_ids().ids_size(), 3);
  auto many = ParseGenerateRequest(Endpoint::kCompletions,
                                   R"({"prompt": ["a", [4, 5]], "stop": ["x", "y"], "logprobs": 2})",
                                   Opts());
  ASSERT_TRUE(many.ok());
  ASSERT_EQ(many->prompts.size(), 2u);
  EXPECT_EQ(many->prompts[0].text(), "a");
  EXPECT_EQ(many->prompts[1].token_ids().ids(1), 5);
  EXPECT_EQ(many->prompts[1].stop_size(), 2);  // shared fields reach every prompt
  EXPECT_EQ(many->prompts[1].sampling().top_logprobs(), 2);
  EXPECT_TRUE(many->logprobs);
}

// Each rejection names the OpenAI parameter, in the message and in `param`.
TEST(OpenAiProtocol, WrongTypesNameTheParameter) {
  struct Case {
    Endpoint endpoint;
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {Endpoint::kChat, R"({"messages": [], "temperature": "hot"})", "temperature"},
      {Endpoint::kChat, R"({"messages": [], "max_tokens": 1.5})", "max_tokens"},
      {Endpoint::kChat, R"({"messages": [], "n": 0})", "n"},
      {Endpoint::kChat, R"({"messages": [], "n": 9})", "n"},
      {Endpoint::kChat, R"({"messages": [], "stream": "yes"})", "stream"},
      {Endpoint::kChat, R"({"messages": [], "stop": 3})", "stop"},
      {Endpoint::kChat, R"({"messages": [], "stop": ["a", 1]})", "stop[1]"},
      {Endpoint::kChat, R"({"messages": [], "top_logprobs": 2})", "top_logprobs"},
      {Endpoint::kChat, R"({"messages": "hi"})", "messages"},
      {Endpoint::kChat, R"({"messages": [{"role": 1, "content": "x"}]})", "messages[0].role"},
      {Endpoint::kChat, R"({})", "messages"},
      {Endpoint::kChat, R"([1, 2])", "body"},
      {Endpoint::kChat, R"({"messages": [)", "body"},
      {Endpoint::kCompletions, R"({"prompt": [1, -2]})", "prompt[1]"},
      {Endpoint::kCompletions, R"({"prompt": {}})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt": ["a", "b", "c", "d", "e"]})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt": "a", "echo": true})", "echo"},
      {Endpoint::kCompletions, R"({"prompt": "a", "seed": 1e3})", "seed"},
  };
  for (const Case& c : cases) {
    auto r = ParseGenerateRequest(c.endpoint, c.body, Opts());
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    ApiError e = ToApiError(r.status(), c.endpoint);
    EXPECT_EQ(e.http_status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << ": " << e.message;
    EXPECT_EQ(e.type, "invalid_request_error");
  }
}

TEST(OpenAiProtocol, SharedValidatorMessagesUseOpenAiNames) {
  ApiError e = ToApiError(absl::InvalidArgumentError("sampling.top_p must be in (0, 1], got 2"),
                          Endpoint::kChat);
  EXPECT_EQ(e.param, "top_p");
  EXPECT_EQ(e.message, "top_p must be in (0, 1], got 2");
  e = ToApiError(absl::InvalidArgumentError("chat.messages[1].role must be \"system\""),
                 Endpoint::kChat);
  EXPECT_EQ(e.param, "messages[1].role");
  e = ToApiError(absl::InvalidArgumentError("token_ids.ids[3] must be in [0, 10), got 11"),
                 Endpoint::kCompletions);
  EXPECT_EQ(e.param, "prompt[3]");
  e = ToApiError(absl::InvalidArgumentError("prompt has 9000 tokens; it must be shorter"),
                 Endpoint::kChat);
  EXPECT_EQ(e.param, "messages");
  e = ToApiError(absl::InvalidArgumentError("request is not a valid message"), Endpoint::kChat);
  EXPECT_EQ(e.param, "");
}

TEST(OpenAiProtocol, StatusCodesMapToHttp) {
  EXPECT_EQ(ToApiError(absl::ResourceExhaustedError("queue full"), Endpoint::kChat).http_status,
            429);
  EXPECT_EQ(ToApiError(absl::UnavailableError("loading"), Endpoint::kChat).http_status, 503);
  EXPECT_EQ(ToApiError(absl::DeadlineExceededError("late"), Endpoint::kChat).http_status, 504);
  EXPECT_EQ(ToApiError(absl::UnauthenticatedError("key"), Endpoint::kChat).http_status, 401);
  EXPECT_EQ(ToApiError(absl::NotFoundError("model"), Endpoint::kChat).http_status, 404);
  EXPECT_EQ(ToApiError(absl::InternalError("bug"), Endpoint::kChat).http_status, 500);
  json body = ToApiError(absl::UnavailableError("loading"), Endpoint::kChat).Body();
  EXPECT_EQ(body["error"]["message"], "loading");
  EXPECT_TRUE(body["error"]["param"].is_null());
}

TEST(OpenAiProtocol, BuildsChatResponsesAndChunks) {
  auto r = ParseGenerateRequest(Endpoint::kChat,
                                R"({"messages": [{"role": "user", "content": "x"}], "n": 2,
                                    "logprobs": true, "stream_options": {"include_usage": true}})",
                                Opts());
  ASSERT_TRUE(r.ok());
  ResponseMeta meta{.id = "chatcmpl-1", .created = 5, .model = "m"};
  v1::GenerateResponse piece;
  piece.set_text("Hel");
  piece.add_token_ids(7);
  v1::SampledLogprobs* lp = piece.add_logprobs();
  lp->mutable_sampled()->set_token_id(7);
  lp->mutable_sampled()->set_logprob(-0.5f);
  lp->mutable_sampled()->set_text("Hel");
  v1::GenerateResponse last;
  last.set_text("lo");
  last.set_finish_reason(v1::FINISH_REASON_STOP);
  last.set_stop_reason("\n");
  last.mutable_usage()->set_prompt_tokens(10);
  last.mutable_usage()->set_completion_tokens(2);
  last.mutable_usage()->set_cached_tokens(4);

  json chunk = StreamChunk(*r, meta, 1, piece);
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_EQ(chunk["choices"][0]["index"], 1);
  EXPECT_EQ(chunk["choices"][0]["delta"]["content"], "Hel");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["content"][0]["token"], "Hel");
  EXPECT_TRUE(chunk["usage"].is_null());
  EXPECT_EQ(RoleChunk(*r, meta, 0)["choices"][0]["delta"]["role"], "assistant");

  std::vector<ChoiceResult> results(2);
  for (ChoiceResult& c : results) {
    c.Add(piece);
    c.Add(last);
  }
  json full = CompletionResponse(*r, meta, results);
  EXPECT_EQ(full["object"], "chat.completion");
  ASSERT_EQ(full["choices"].size(), 2u);
  EXPECT_EQ(full["choices"][1]["message"]["content"], "Hello");
  EXPECT_EQ(full["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(full["choices"][1]["stop_reason"], "\n");
  // Prompt counted once per prompt, completions of every choice.
  EXPECT_EQ(full["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(full["usage"]["completion_tokens"], 4);
  EXPECT_EQ(full["usage"]["total_tokens"], 14);
  EXPECT_EQ(full["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  json usage = UsageChunk(*r, meta, full["usage"]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 14);
}

TEST(OpenAiProtocol, CompletionLogprobsHaveOffsets) {
  auto r = ParseGenerateRequest(Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 1})",
                                Opts());
  ASSERT_TRUE(r.ok());
  v1::GenerateResponse resp;
  for (const char* t : {"ab", "c"}) {
    v1::SampledLogprobs* lp = resp.add_logprobs();
    lp->mutable_sampled()->set_text(t);
    lp->mutable_sampled()->set_logprob(-1.0f);
    v1::TokenLogprob* top = lp->add_top();
    top->set_text(t);
    top->set_logprob(-1.0f);
  }
  resp.set_text("abc");
  json chunk = StreamChunk(*r, {.id = "cmpl-1", .created = 1, .model = "m"}, 0, resp);
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["choices"][0]["text"], "abc");
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["text_offset"], json::array({0, 2}));
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["top_logprobs"][1]["c"], -1.0);
}

TEST(OpenAiProtocol, TokenizeAndDetokenizeBodies) {
  auto t = ParseTokenizeRequest(R"({"prompt": "hi"})");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->text(), "hi");
  auto c = ParseTokenizeRequest(R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->chat().messages_size(), 1);
  EXPECT_FALSE(ParseTokenizeRequest(R"({})").ok());
  EXPECT_FALSE(ParseTokenizeRequest(R"({"prompt": "a", "add_special_tokens": false})").ok());
  auto d = ParseDetokenizeRequest(R"({"tokens": [1, 2]})");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->size(), 2u);
  auto bad = ParseDetokenizeRequest(R"({"tokens": ["a"]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("tokens[0]"));
}

TEST(OpenAiProtocol, DumpReplacesInvalidUtf8) {
  json j = std::string("a\xff");
  EXPECT_EQ(Dump(j), "\"a\xEF\xBF\xBD\"");
}

}  // namespace
}  // namespace tpserve::openai
