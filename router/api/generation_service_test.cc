// GenerationService in-process: a real gRPC server on port 0 with the default
// model's tokenizer and chat template, and a ServingLoop over a fake executor
// that always samples token "x". Checks UNAVAILABLE before ready, streaming,
// field-naming errors (including invalid UTF-8 sent as raw bytes), chat
// rendering, Tokenize and ModelInfo.
#include "router/api/generation_service.h"

#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "router/tokenizer/tokenizer_gguf.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

class ConstantExecutor : public StepExecutor {
 public:
  explicit ConstantExecutor(int32_t token) : token_(token) {}
  void StepAsync(v1::StepRequest request, StepCallback done) override {
    v1::StepResponse response;
    for (const v1::SequenceInput& s : request.seqs()) {
      if (!s.sample()) continue;
      v1::SampledToken* t = response.add_tokens();
      t->set_seq_id(s.seq_id());
      t->set_token(token_);
    }
    done(std::move(response));
  }
  absl::Status Free(const std::vector<uint64_t>&) override { return absl::OkStatus(); }
  uint64_t ServingEpoch() const override { return 1; }
  std::string DownReason() const override { return ""; }

 private:
  int32_t token_;
};

class GenerationServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* root = std::getenv("TPSERVE_ROOT");
    ASSERT_NE(root, nullptr) << "set TPSERVE_ROOT";
    const std::string model = std::string(root) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    absl::StatusOr<TokenizerData> data = TokenizerDataFromGguf(model);
    ASSERT_TRUE(data.ok()) << data.status();
    absl::StatusOr<Tokenizer> tok = Tokenizer::Create(*std::move(data));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::make_unique<Tokenizer>(*std::move(tok));
    absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromModel(
        tokenizer_->data().chat_template, "", tokenizer_->TokenText(tokenizer_->eos_id()));
    ASSERT_TRUE(chat.ok()) << chat.status();
    chat_ = std::make_unique<ChatTemplate>(*std::move(chat));

    executor_ = std::make_unique<ConstantExecutor>(tokenizer_->TokenId("x"));
    metrics_ = std::make_unique<RouterMetrics>(registry_, "test");
    ServingLoop::Options o;
    o.num_blocks = 64;
    o.block_size = 16;
    loop_ = std::make_unique<ServingLoop>(o, executor_.get(), tokenizer_.get(), metrics_.get());
    loop_->Start();
    service_ = std::make_unique<GenerationService>(tokenizer_.get(), chat_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Generation::NewStub(channel_);
  }
  void TearDown() override {
    loop_->Stop();
    server_->Shutdown();
  }

  void Ready() {
    v1::ModelInfoResponse info;
    info.set_model_name("test");
    service_->SetReady(loop_.get(), RequestLimits{.vocab_size = 49152, .context_length = 1024},
                       info);
  }

  // Runs Generate; returns the streamed text and the final status.
  std::pair<std::string, grpc::Status> Generate(const v1::GenerateRequest& req,
                                                v1::GenerateResponse* last = nullptr) {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, req);
    v1::GenerateResponse r;
    std::string text;
    while (reader->Read(&r)) {
      text += r.text();
      if (last != nullptr) *last = r;
    }
    return {text, reader->Finish()};
  }

  prometheus::Registry registry_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_;
  std::unique_ptr<ConstantExecutor> executor_;
  std::unique_ptr<RouterMetrics> metrics_;
  std::unique_ptr<ServingLoop> loop_;
  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
};

// Generated ids come from one atomic increment each, so concurrent requests
// never share one.
TEST(GenerationServiceIds, ConcurrentRequestsGetDistinctIds) {
  GenerationService service(nullptr, nullptr);
  constexpr int kThreads = 8, kEach = 2000;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) ids[t].push_back(service.NextRequestId());
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::string> distinct;
  for (const std::vector<std::string>& v : ids) distinct.insert(v.begin(), v.end());
  EXPECT_EQ(distinct.size(), size_t{kThreads} * kEach);
  EXPECT_TRUE(distinct.count("req-1"));
  EXPECT_TRUE(distinct.count(absl::StrCat("req-", kThreads * kEach)));
}

TEST_F(GenerationServiceTest, UnavailableUntilReady) {
  v1::GenerateRequest req;
  req.set_text("hi");
  auto [text, status] = Generate(req);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("workers"));
}

TEST_F(GenerationServiceTest, StreamsTextAndUsage) {
  Ready();
  v1::GenerateRequest req;
  req.set_text("Hello");
  req.set_max_tokens(4);
  req.set_request_id("abc");
  v1::GenerateResponse last;
  auto [text, status] = Generate(req, &last);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(text, "xxxx");
  EXPECT_EQ(last.request_id(), "abc");
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.usage().completion_tokens(), 4);
  EXPECT_EQ(last.usage().prompt_tokens(), 1);
}

TEST_F(GenerationServiceTest, ChatPromptIsRenderedWithTheTemplate) {
  Ready();
  v1::GenerateRequest req;
  v1::ChatMessage* m = req.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hi!");
  absl::StatusOr<std::vector<int32_t>> ids = service_->PromptTokens(req);
  ASSERT_TRUE(ids.ok()) << ids.status();
  absl::StatusOr<std::string> rendered = chat_->Render({{"user", "Hi!"}}, true);
  ASSERT_TRUE(rendered.ok());
  EXPECT_EQ(*ids, *tokenizer_->Encode(std::string_view(*rendered), false));
  EXPECT_THAT(*rendered, HasSubstr("<|im_start|>assistant"));

  grpc::ClientContext ctx;
  v1::TokenizeRequest treq;
  *treq.mutable_chat() = req.chat();
  v1::TokenizeResponse tresp;
  ASSERT_TRUE(stub_->Tokenize(&ctx, treq, &tresp).ok());
  EXPECT_EQ(std::vector<int32_t>(tresp.token_ids().begin(), tresp.token_ids().end()), *ids);
}

TEST_F(GenerationServiceTest, InvalidFieldsAreNamed) {
  Ready();
  v1::GenerateRequest req;
  req.set_text("hi");
  req.mutable_sampling()->set_top_p(2.0f);
  auto [text, status] = Generate(req);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("sampling.top_p"));

  // Invalid UTF-8 in `text`, sent as raw bytes through the generic stub.
  v1::GenerateRequest good;
  good.set_text("ab QQ cd");
  std::string wire = good.SerializeAsString();
  wire.replace(wire.find("QQ"), 2, "\xC3\x28");
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  grpc::Slice slice(wire);
  grpc::ByteBuffer request(&slice, 1);
  auto call = generic.PrepareCall(&ctx, "/tpserve.v1.Generation/Generate", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  grpc::Status finish;
  call->Finish(&finish, reinterpret_cast<void*>(4));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(4)) {
  }
  EXPECT_EQ(finish.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(finish.error_message(), HasSubstr("text is not valid UTF-8"));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(GenerationServiceTest, ModelInfoAfterReady) {
  grpc::ClientContext ctx1;
  v1::ModelInfoResponse info;
  EXPECT_EQ(stub_->ModelInfo(&ctx1, v1::ModelInfoRequest(), &info).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  Ready();
  grpc::ClientContext ctx2;
  ASSERT_TRUE(stub_->ModelInfo(&ctx2, v1::ModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.model_name(), "test");
}

}  // namespace
}  // namespace tpserve
