// tpserve: command-line client for a tpserve router.
//
//   tpserve generate "The capital of France is" --max_tokens=32
//   tpserve chat                      # interactive, multi-turn; empty line or Ctrl-D ends
//   tpserve chat "What is 2+2?"       # one turn, then exit
//   tpserve info
//   tpserve info --router=tpserve.example:443 --tls_ca_file=ca.pem   # TLS router
//   TPSERVE_API_KEY=tps-... tpserve info   # or --api_key=..., for a router with --api_keys_file
//   tpserve groups                    # the router's worker groups: state, load
//   tpserve drain 1                   # no new requests on group 1; it finishes its own
//   tpserve undrain 1
//
// Tokens are printed as they stream in; each answer ends with a line giving
// time to first token, token count and tokens/s (on stderr, so stdout holds
// only the text).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/tls_config.h"
#include "grpcpp/grpcpp.h"
#include "proto/tpserve/v1/admin.grpc.pb.h"
#include "proto/tpserve/v1/generation.grpc.pb.h"
#include "tools/cli/admin_commands.h"

ABSL_FLAG(std::string, router, "127.0.0.1:50051", "Router address host:port");
ABSL_FLAG(int, max_tokens, 0, "Most tokens to generate (0 = the router's default)");
ABSL_FLAG(double, temperature, 0.0, "Sampling temperature (0 = greedy)");
ABSL_FLAG(double, top_p, 1.0, "Nucleus sampling threshold in (0, 1]");
ABSL_FLAG(int, top_k, 0, "Top-k sampling (0 = off)");
ABSL_FLAG(double, min_p, 0.0, "Min-p sampling (0 = off)");
ABSL_FLAG(double, repetition_penalty, 1.0, "Repetition penalty (1 = off)");
ABSL_FLAG(int64_t, seed, -1, "Sampling seed (-1 = the router picks)");
ABSL_FLAG(std::vector<std::string>, stop, {}, "Stop strings, comma-separated");
ABSL_FLAG(std::string, system, "", "chat: system prompt");
ABSL_FLAG(int, priority, 0, "Request priority (higher runs first)");
ABSL_FLAG(double, timeout, 300, "Deadline of each request, seconds");
ABSL_FLAG(bool, stats, true, "Print TTFT and tokens/s after each answer");
ABSL_FLAG(std::string, tls_ca_file, "",
          "Connect over TLS, trusting this PEM CA bundle (the router's --tls_cert_file issuer)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate for a router that requires one (--tls_client_ca_file); "
          "implies TLS");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to check the router's certificate against when it differs from the host in "
          "--router (e.g. connecting by IP)");
ABSL_FLAG(std::string, api_key, "",
          "API key sent as 'authorization: Bearer <key>' (default: $TPSERVE_API_KEY)");

namespace tpserve {
namespace {

using Clock = std::chrono::steady_clock;

void FillSampling(v1::GenerateRequest* r) {
  v1::SamplingParameters* s = r->mutable_sampling();
  s->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  s->set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  s->set_top_k(absl::GetFlag(FLAGS_top_k));
  s->set_min_p(static_cast<float>(absl::GetFlag(FLAGS_min_p)));
  s->set_repetition_penalty(static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty)));
  if (absl::GetFlag(FLAGS_seed) >= 0) s->set_seed(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
  if (absl::GetFlag(FLAGS_max_tokens) > 0) r->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) r->add_stop(stop);
  r->set_priority(absl::GetFlag(FLAGS_priority));
}

// The router's API key: --api_key, else $TPSERVE_API_KEY, else "".
std::string ApiKey() {
  std::string key = absl::GetFlag(FLAGS_api_key);
  if (key.empty()) {
    const char* env = std::getenv("TPSERVE_API_KEY");
    if (env != nullptr) key = env;
  }
  return key;
}

// The API key as call metadata.
void AddApiKey(grpc::ClientContext& ctx) {
  const std::string key = ApiKey();
  if (!key.empty()) ctx.AddMetadata("authorization", absl::StrCat("Bearer ", key));
}

// Streams one request to stdout; returns the full text, or prints the error.
bool Stream(v1::Generation::Stub& stub, const v1::GenerateRequest& request, std::string* text) {
  grpc::ClientContext ctx;
  AddApiKey(ctx);
  ctx.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_timeout) * 1000)));
  const Clock::time_point start = Clock::now();
  Clock::time_point first{};
  int tokens = 0;
  v1::GenerateResponse response;
  v1::GenerateResponse last;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub.Generate(&ctx, request);
  while (reader->Read(&response)) {
    if (tokens == 0 && response.token_ids_size() > 0) first = Clock::now();
    tokens += response.token_ids_size();
    std::fwrite(response.text().data(), 1, response.text().size(), stdout);
    std::fflush(stdout);
    text->append(response.text());
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = response;
  }
  grpc::Status status = reader->Finish();
  std::printf("\n");
  std::fflush(stdout);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s: %s\n",
                 status.error_code() == grpc::StatusCode::UNAVAILABLE ? "UNAVAILABLE"
                 : status.error_code() == grpc::StatusCode::INVALID_ARGUMENT
                     ? "INVALID_ARGUMENT"
                     : absl::StrCat("code ", static_cast<int>(status.error_code())).c_str(),
                 status.error_message().c_str());
    return false;
  }
  if (absl::GetFlag(FLAGS_stats)) {
    const double total = std::chrono::duration<double>(Clock::now() - start).count();
    const double ttft = std::chrono::duration<double>(first - start).count();
    const double decode = total - ttft;
    std::fprintf(
        stderr, "[%d prompt + %d generated tokens, finish: %s%s | TTFT %.0f ms | %.1f tokens/s]\n",
        last.usage().prompt_tokens(), tokens,
        last.finish_reason() == v1::FINISH_REASON_LENGTH ? "length" : "stop",
        last.stop_reason().empty() ? "" : absl::StrCat(" (", last.stop_reason(), ")").c_str(),
        ttft * 1000, tokens > 1 && decode > 0 ? (tokens - 1) / decode : 0.0);
  }
  return true;
}

int Generate(v1::Generation::Stub& stub, const std::string& prompt) {
  v1::GenerateRequest request;
  request.set_text(prompt);
  FillSampling(&request);
  std::string text;
  return Stream(stub, request, &text) ? 0 : 1;
}

int Chat(v1::Generation::Stub& stub, const std::vector<std::string>& first_turn) {
  v1::GenerateRequest request;
  if (!absl::GetFlag(FLAGS_system).empty()) {
    v1::ChatMessage* m = request.mutable_chat()->add_messages();
    m->set_role("system");
    m->set_content(absl::GetFlag(FLAGS_system));
  }
  const bool one_shot = !first_turn.empty();
  std::string line = absl::StrJoin(first_turn, " ");
  while (true) {
    if (!one_shot) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line) || line.empty()) break;
    }
    v1::ChatMessage* user = request.mutable_chat()->add_messages();
    user->set_role("user");
    user->set_content(line);
    v1::GenerateRequest turn = request;
    FillSampling(&turn);
    std::string answer;
    if (!Stream(stub, turn, &answer)) return 1;
    v1::ChatMessage* assistant = request.mutable_chat()->add_messages();
    assistant->set_role("assistant");
    assistant->set_content(answer);
    if (one_shot) break;
  }
  return 0;
}

int Info(v1::Generation::Stub& stub) {
  grpc::ClientContext ctx;
  AddApiKey(ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ModelInfoResponse info;
  grpc::Status s = stub.ModelInfo(&ctx, v1::ModelInfoRequest(), &info);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.error_message().c_str());
    return 1;
  }
  std::printf("model:            %s (%s)\n", info.model_name().c_str(),
              info.architecture().c_str());
  std::printf("vocabulary:       %d tokens\n", info.vocab_size());
  std::printf("context length:   %d tokens\n", info.context_length());
  std::printf("tensor parallel:  %d rank(s), backend %s\n", info.tensor_parallel_size(),
              info.backend().c_str());
  std::printf("KV cache:         %d blocks x %d tokens\n", info.kv_num_blocks(),
              info.kv_block_size());
  std::printf("max waiting:      %d requests\n", info.max_waiting_requests());
  std::printf("default max_tokens: %d\n", info.default_max_tokens());
  std::printf("worker groups:    %d (up to %d)\n", info.num_groups(), info.max_groups());
  return 0;
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "tpserve client.\n  tpserve generate PROMPT [flags]\n  tpserve chat [MESSAGE] [flags]\n"
      "  tpserve info [flags]\n  tpserve groups\n  tpserve drain GROUP\n  tpserve undrain GROUP");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr,
                 "usage: tpserve generate PROMPT | chat [MESSAGE] | info | groups | drain GROUP "
                 "| undrain GROUP  (--help)\n");
    return 2;
  }
  const std::string command = args[1];
  std::vector<std::string> rest(args.begin() + 2, args.end());
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      tpserve::ClientChannelCredentials(absl::GetFlag(FLAGS_tls_ca_file),
                                        absl::GetFlag(FLAGS_tls_cert_file),
                                        absl::GetFlag(FLAGS_tls_key_file));
  if (!credentials.ok()) {
    std::fprintf(stderr, "tpserve: %s\n", std::string(credentials.status().message()).c_str());
    return 2;
  }
  grpc::ChannelArguments channel_args;
  if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
    channel_args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
  }
  auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_router), *credentials, channel_args);
  auto stub = tpserve::v1::Generation::NewStub(channel);
  if (command == "generate") {
    if (rest.empty()) {
      std::fprintf(stderr, "usage: tpserve generate PROMPT\n");
      return 2;
    }
    return tpserve::Generate(*stub, absl::StrJoin(rest, " "));
  }
  if (command == "chat") return tpserve::Chat(*stub, rest);
  if (command == "info") return tpserve::Info(*stub);
  auto admin = tpserve::v1::Admin::NewStub(channel);
  const double timeout_s = absl::GetFlag(FLAGS_timeout);
  if (command == "groups") return tpserve::ListGroups(*admin, tpserve::ApiKey(), timeout_s);
  if (command == "drain" || command == "undrain") {
    int group = -1;
    if (rest.size() != 1 || !absl::SimpleAtoi(rest[0], &group)) {
      std::fprintf(stderr, "usage: tpserve %s GROUP  (a group index, see `tpserve groups`)\n",
                   command.c_str());
      return 2;
    }
    return tpserve::SetDrained(*admin, tpserve::ApiKey(), group, command == "drain", timeout_s);
  }
  std::fprintf(stderr, "unknown command '%s': use generate, chat, info, groups, drain or undrain\n",
               command.c_str());
  return 2;
}
