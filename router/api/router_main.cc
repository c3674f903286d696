// tpserve-router: the public gRPC endpoint of a tpserve cluster.
//
// Hosts the rendezvous store the workers meet in. It drives --groups
// tensor-parallel groups of --world_size ranks (up to --max_groups: groups
// whose ranks register later join without a restart); one GroupSupervisor
// per group forms a group epoch once the group's ranks have registered,
// loaded and agreed, and re-forms it by itself after a rank dies, hangs or
// restarts (requests move to serving groups and resume; see
// docs/operations.md "Failure handling" and "Groups and placement"). Serves
// tpserve.v1.Generation, tpserve.v1.Admin (groups, drain), grpc.health.v1.Health
// (service "": SERVING while some group serves; service "liveness":
// NOT_SERVING when the step loop is wedged), reflection and Prometheus
// /metrics. Ctrl-C / SIGTERM drain and shut it down.
//
//   tpserve-router --model=models/SmolLM2-135M-Instruct.Q4_1.gguf --world_size=2
//       --groups=2 --port=50051 --metrics_port=9400 --rendezvous_port=29500
//   tpserve-worker --model=... --group=1 --rank=0 --world_size=2 --rendezvous=127.0.0.1:29500
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cluster_tls_flags.h"
#include "common/flags.h"
#include "common/health_port.h"
#include "common/log.h"
#include "common/serve_util.h"
#include "common/status.h"
#include "common/tls_config.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "router/api/admin_service.h"
#include "router/api/api_keys.h"
#include "router/api/generation_service.h"
#include "router/api/http_front_end.h"
#include "router/api/model_name.h"
#include "router/api/router_metrics.h"
#include "router/api/server_limits.h"
#include "router/api/serving_loop.h"
#include "router/cluster/group_supervisor.h"
#include "router/cluster/rendezvous.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"

ABSL_FLAG(std::string, model, "",
          "Model file (GGUF) or Hugging Face directory; the router reads "
          "only its tokenizer and chat template");
ABSL_FLAG(std::string, model_name, "", "Name in metrics and ModelInfo (default: the workers')");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address the gRPC, metrics and rendezvous ports bind");
ABSL_FLAG(int, port, 50051, "gRPC port of tpserve.v1.Generation (0 = pick a free one)");
ABSL_FLAG(int, metrics_port, 9400, "Prometheus /metrics port (0 = pick a free one)");
ABSL_FLAG(int, rendezvous_port, 29500, "Port of the store the workers rendezvous in (0 = free)");
ABSL_FLAG(int, world_size, 1, "Number of worker ranks per group (tensor-parallel size)");
ABSL_FLAG(int, groups, 1,
          "Worker groups (data parallel) the router waits for before serving; workers join "
          "group g with --group=g");
ABSL_FLAG(int, max_groups, 0,
          "Most worker groups; groups --groups..max_groups-1 may register while the router "
          "serves and join without a restart (0 = --groups)");
ABSL_FLAG(bool, lean_steps, true,
          "Send each running sequence's block table and sampling parameters to the workers "
          "once per epoch, then only its new blocks (false: everything every step)");
ABSL_FLAG(double, placement_load_slack, 8,
          "Placement: a group caching the longest prompt prefix loses to the least loaded "
          "group when its load (sequences) is higher by more than this "
          "(docs/operations.md \"Groups and placement\")");
ABSL_FLAG(std::string, workers, "",
          "Comma-separated worker gRPC addresses by rank; empty = learn them from the "
          "rendezvous store as the workers register");
ABSL_FLAG(std::string, chat_template, "",
          "Override the model's chat template by name (chatml, "
          "llama3, llama2, mistral)");
ABSL_FLAG(int, max_num_batched_tokens, 512, "Token budget per step (prefill chunks + decodes)");
ABSL_FLAG(absl::Duration, target_step_latency, absl::ZeroDuration(),
          "While sequences decode, fit prefill chunks into steps of about this "
          "long (measured prefill rate); bounds inter-token latency under "
          "long prompts. 0 = off (the token budget alone)");
ABSL_FLAG(int, max_num_seqs, 64, "Most sequences running at once");
ABSL_FLAG(int, max_waiting, 256, "Waiting-queue bound; more requests get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_model_len, 0,
          "Longest prompt + output in tokens (0 = the model's context, "
          "capped by the KV cache)");
ABSL_FLAG(int, default_max_tokens, 256, "max_tokens when a request leaves it unset");
ABSL_FLAG(bool, enable_prefix_cache, true, "Reuse KV blocks of shared prompt prefixes");
ABSL_FLAG(absl::Duration, load_timeout, absl::Minutes(10),
          "How long to wait for the first group epoch to serve (registration, loading)");
ABSL_FLAG(absl::Duration, step_timeout, absl::Seconds(15),
          "Step deadline base: a step of N tokens may take step_timeout + N * "
          "step_timeout_per_token before its group counts as hung");
ABSL_FLAG(absl::Duration, step_timeout_per_token, absl::Milliseconds(20),
          "Step deadline per token of the step (see --step_timeout)");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(1),
          "How often every worker rank is asked for Health while serving");
ABSL_FLAG(absl::Duration, heartbeat_timeout, absl::Seconds(2),
          "A rank that does not answer a heartbeat within this counts as hung");
ABSL_FLAG(absl::Duration, join_timeout, absl::Seconds(60),
          "Limit for the ranks to build a new epoch's communicator");
ABSL_FLAG(absl::Duration, recovery_timeout, absl::Minutes(5),
          "After a group failure, requests wait this long for a serving group, then fail "
          "with UNAVAILABLE naming the failed rank and cause");
ABSL_FLAG(absl::Duration, liveness_timeout, absl::Minutes(2),
          "Health service 'liveness' turns NOT_SERVING when the step loop has not gone "
          "round for this long (longer than any step deadline you expect)");
ABSL_FLAG(std::string, port_file, "", "Write the bound ports here as JSON once listening");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM/SIGINT: stop admitting, let running requests finish for up to this long");

// ---- BEGIN HTTP API flags (issue 14; router/api/http_front_end.h) ----------
ABSL_FLAG(int, http_port, -1,
          "OpenAI-compatible HTTP API port (/v1/chat/completions, /v1/completions, /v1/models, "
          "/health, /tokenize, /detokenize); -1 = off, 0 = pick a free one");
ABSL_FLAG(int, http_threads, 64,
          "HTTP API connection threads (each open streaming request holds one)");
ABSL_FLAG(int64_t, http_max_body_bytes, 4 << 20,
          "Largest HTTP request body; larger ones are answered 400");
// ---- END HTTP API flags ----------------------------------------------------

// ---- BEGIN TLS flags (issue 12; common/tls_config.h, docs/security.md) -----
// The cluster's --cluster_ca_file/--cluster_cert_file/--cluster_key_file come
// from common/cluster_tls_flags.
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the public gRPC port; with --tls_key_file the port "
          "serves TLS only (empty = plaintext). Re-read every --tls_reload_interval");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key of --tls_cert_file; must not be readable by other users");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle; when set, clients must present a certificate it signed (mTLS)");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(60),
          "How often the TLS certificate, key and CA files are re-read (rotation without "
          "restart: new connections get the new certificate)");
ABSL_FLAG(int, health_port, -1,
          "Plaintext gRPC port serving only grpc.health.v1.Health (the same statuses as "
          "--port), for kubelet probes, which cannot do TLS; -1 = off, 0 = a free one");
// ---- END TLS flags ---------------------------------------------------------
// ---- BEGIN public-surface hardening flags (issue 12; docs/operations.md) ----
ABSL_FLAG(std::string, api_keys_file, "",
          "API keys (router/api/api_keys.h): one per line 'name sha256-hex [rps=N] [tpm=N] "
          "[streams=N]'; re-read when it changes. Empty = no keys needed");
ABSL_FLAG(bool, reflection, true,
          "Serve gRPC server reflection (open without a key, like health); false hides the "
          "service list from unauthenticated clients");
ABSL_FLAG(int64_t, stream_buffer_bytes, 16 << 10,
          "Responses a Generate stream may hold for a client that does not read; beyond it the "
          "request is cancelled (RESOURCE_EXHAUSTED) and its KV freed. 0 = unbounded");
ABSL_FLAG(int, grpc_max_message_bytes, 4 << 20, "Largest request message on the public port");
ABSL_FLAG(int, grpc_max_concurrent_streams, 128, "Concurrent calls per client connection");
ABSL_FLAG(absl::Duration, grpc_min_ping_interval, absl::Seconds(10),
          "Clients pinging more often than this without data get GOAWAY after 2 strikes");
ABSL_FLAG(absl::Duration, grpc_max_connection_age, absl::Hours(1),
          "Connections older than this get GOAWAY (0 = never)");
ABSL_FLAG(absl::Duration, grpc_max_connection_age_grace, absl::Minutes(5),
          "Calls still open this long after the age GOAWAY are cut");
ABSL_FLAG(absl::Duration, grpc_max_connection_idle, absl::Minutes(15),
          "Connections without calls for this long are closed (0 = never)");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port for /metrics (overrides --host and --metrics_port), e.g. an internal "
          "interface apart from the public API");
ABSL_FLAG(bool, log_requests, false,
          "Log each request's prompt text (off by default: prompts are user data)");
ABSL_FLAG(bool, chat_content_special_tokens, false,
          "Tokenize special-token text inside chat message content (e.g. '<|im_end|>') as "
          "control tokens, as transformers does; off by default so users cannot forge turns");
// ---- END public-surface hardening flags ------------------------------------

namespace tpserve {
namespace {

absl::StatusOr<TokenizerData> LoadTokenizerData(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("--model ", path, " does not exist"));
  }
  if (S_ISDIR(st.st_mode)) return TokenizerDataFromHfDirectory(path);
  return TokenizerDataFromGguf(path);
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> LoadChatTemplate(const Tokenizer& tokenizer) {
  std::string bos = tokenizer.bos_id() >= 0 ? tokenizer.TokenText(tokenizer.bos_id()) : "";
  std::string eos = tokenizer.eos_id() >= 0 ? tokenizer.TokenText(tokenizer.eos_id()) : "";
  absl::StatusOr<ChatTemplate> t =
      absl::GetFlag(FLAGS_chat_template).empty()
          ? ChatTemplate::FromModel(tokenizer.data().chat_template, bos, eos)
          : ChatTemplate::FromName(absl::GetFlag(FLAGS_chat_template), bos, eos);
  if (!t.ok()) {
    Log(absl::StrCat("chat prompts disabled: ", t.status().message()));
    return std::unique_ptr<ChatTemplate>();
  }
  return std::make_unique<ChatTemplate>(*std::move(t));
}

GroupOptions GroupOptionsFromFlags(int group, int max_groups, int world_size,
                                   int32_t warmup_token) {
  GroupOptions o;
  o.group = group;
  o.world_size = world_size;
  if (!absl::GetFlag(FLAGS_workers).empty()) {
    o.addresses = absl::StrSplit(absl::GetFlag(FLAGS_workers), ',', absl::SkipEmpty());
  }
  o.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  o.heartbeat_timeout = absl::GetFlag(FLAGS_heartbeat_timeout);
  o.join_timeout = absl::GetFlag(FLAGS_join_timeout);
  o.step_timeout_base = absl::GetFlag(FLAGS_step_timeout);
  o.step_timeout_per_token = absl::GetFlag(FLAGS_step_timeout_per_token);
  o.recovery_timeout = absl::GetFlag(FLAGS_recovery_timeout);
  o.warmup_token = warmup_token;
  if (max_groups == 1) {
    o.log = Log;
  } else {
    o.log = [group](const std::string& line) { Log(absl::StrCat("group ", group, ": ", line)); };
  }
  return o;
}

// Scheduler and request limits from the flags and what the ranks agreed on.
absl::StatusOr<ServingLoop::Options> LoopOptions(const ClusterInfo& cluster,
                                                 const Tokenizer& tokenizer) {
  const v1::InfoResponse& info = cluster.rank0;
  const int32_t kv_tokens = cluster.kv_num_blocks * cluster.kv_block_size;
  int32_t context = info.context_length() > 0 ? info.context_length() : kv_tokens;
  if (absl::GetFlag(FLAGS_max_model_len) > 0) {
    context = std::min(context, absl::GetFlag(FLAGS_max_model_len));
  }
  context = std::min(context, kv_tokens);
  ServingLoop::Options options;
  options.scheduler.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  options.scheduler.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  options.scheduler.target_step_latency = absl::GetFlag(FLAGS_target_step_latency);
  options.scheduler.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  options.scheduler.max_model_len = context;
  options.scheduler.enable_prefix_cache = absl::GetFlag(FLAGS_enable_prefix_cache);
  options.num_blocks = cluster.kv_num_blocks;
  options.block_size = cluster.kv_block_size;
  options.recovery_timeout = absl::GetFlag(FLAGS_recovery_timeout);
  options.placement_load_slack = absl::GetFlag(FLAGS_placement_load_slack);
  options.lean_steps = absl::GetFlag(FLAGS_lean_steps);
  options.eos_ids.assign(info.eos_token_ids().begin(), info.eos_token_ids().end());
  if (options.eos_ids.empty() && tokenizer.eos_id() >= 0) {
    options.eos_ids.push_back(tokenizer.eos_id());
  }
  TPS_RETURN_IF_ERROR(
      ValidateSchedulerConfig(options.scheduler, options.num_blocks, options.block_size));
  return options;
}

v1::ModelInfoResponse ModelInfo(const std::string& model_name, const ClusterInfo& cluster,
                                const ServingLoop::Options& options, int world_size, int num_groups,
                                int max_groups) {
  const v1::InfoResponse& info = cluster.rank0;
  v1::ModelInfoResponse m;
  m.set_model_name(model_name);
  m.set_architecture(info.architecture());
  m.set_vocab_size(info.vocab_size());
  m.set_context_length(options.scheduler.max_model_len);
  m.set_tensor_parallel_size(world_size);
  m.set_backend(info.backend());
  m.set_kv_block_size(cluster.kv_block_size);
  m.set_kv_num_blocks(cluster.kv_num_blocks);
  for (int32_t id : options.eos_ids) m.add_eos_token_ids(id);
  m.set_max_waiting_requests(options.scheduler.max_waiting);
  m.set_default_max_tokens(absl::GetFlag(FLAGS_default_max_tokens));
  m.set_num_groups(num_groups);
  m.set_max_groups(max_groups);
  return m;
}

// Waits for SIGINT/SIGTERM, then drains: new calls are refused, admitted
// requests may finish within --drain_timeout (a second signal stops at once).
void WaitAndDrain(sigset_t signals, GenerationService& service, ServingLoop& loop) {
  int signal = 0;
  sigwait(&signals, &signal);
  Log(absl::StrCat("signal ", signal, ": shutting down"));
  service.SetUnavailable("the router is shutting down; retry on another router");
  const absl::Time drain_until = absl::Now() + absl::GetFlag(FLAGS_drain_timeout);
  if (loop.num_live() > 0) {
    Log(absl::StrCat("draining ", loop.num_live(), " request(s) for up to ",
                     absl::FormatDuration(absl::GetFlag(FLAGS_drain_timeout)),
                     " (signal again to stop now)"));
  }
  sigset_t pending;
  while (loop.num_live() > 0 && absl::Now() < drain_until) {
    sigpending(&pending);
    if (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM)) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

// The public port's credentials. The HTTP API (civetweb) cannot rotate
// certificates, so a TLS router refuses to open it in plaintext next to the
// TLS gRPC port (docs/security.md "The HTTP port").
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> PublicCredentialsFromFlags() {
  PublicTlsFiles files;
  files.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  files.key_file = absl::GetFlag(FLAGS_tls_key_file);
  files.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  files.reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  if (files.enabled() && absl::GetFlag(FLAGS_http_port) >= 0) {
    return absl::InvalidArgumentError(
        "--http_port serves plaintext HTTP and cannot be combined with --tls_cert_file; "
        "terminate TLS for the HTTP API in an ingress or service mesh in front of a "
        "router without --tls_cert_file, or use the gRPC API over TLS");
  }
  return PublicServerCredentials(files);
}

absl::Status Run() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  if (model_path.empty()) return absl::InvalidArgumentError("--model is required");
  const int world_size = absl::GetFlag(FLAGS_world_size);
  if (world_size < 1) return absl::InvalidArgumentError("--world_size must be >= 1");
  const int num_groups = absl::GetFlag(FLAGS_groups);
  const int max_groups = std::max(num_groups, absl::GetFlag(FLAGS_max_groups));
  if (num_groups < 1) return absl::InvalidArgumentError("--groups must be >= 1");
  if (!absl::GetFlag(FLAGS_workers).empty() && max_groups > 1) {
    return absl::InvalidArgumentError(
        "--workers lists one group's ranks; with --groups/--max_groups > 1 let the workers "
        "register (--rendezvous) instead");
  }
  const std::string host = absl::GetFlag(FLAGS_host);
  if (!absl::GetFlag(FLAGS_workers).empty()) {
    const std::vector<std::string> listed =
        absl::StrSplit(absl::GetFlag(FLAGS_workers), ',', absl::SkipEmpty());
    if (static_cast<int>(listed.size()) != world_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--workers lists ", listed.size(), " addresses but --world_size is ", world_size));
    }
  }

  TPS_ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ServerCredentials> public_credentials,
                       PublicCredentialsFromFlags());
  TPS_ASSIGN_OR_RETURN(const ClusterTls cluster_tls, ClusterTlsFromFlags());

  // Block the shutdown signals in every thread; main waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Log(absl::StrCat("loading tokenizer from ", model_path));
  TPS_ASSIGN_OR_RETURN(TokenizerData data, LoadTokenizerData(model_path));
  TPS_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::Create(std::move(data)));
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<ChatTemplate> chat_template, LoadChatTemplate(tokenizer));
  Log(absl::StrCat("tokenizer ready: ", tokenizer.vocab_size(), " tokens"));

  Rendezvous rendezvous;
  TPS_RETURN_IF_ERROR(rendezvous.Start(host, absl::GetFlag(FLAGS_rendezvous_port),
                                       cluster_tls.ServerCredentials()));

  // ---- BEGIN public-surface hardening (issue 12) ----------------------------
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<ApiKeys> api_keys;
  if (!absl::GetFlag(FLAGS_api_keys_file).empty()) {
    ApiKeys::Options key_options;
    key_options.path = absl::GetFlag(FLAGS_api_keys_file);
    key_options.log = [](absl::string_view line) {
      Log(std::string_view(line.data(), line.size()));
    };
    key_options.registry = registry.get();
    TPS_ASSIGN_OR_RETURN(api_keys, ApiKeys::Load(std::move(key_options)));
  }
  PublicServerLimits server_limits;
  server_limits.max_message_bytes = absl::GetFlag(FLAGS_grpc_max_message_bytes);
  server_limits.max_concurrent_streams = absl::GetFlag(FLAGS_grpc_max_concurrent_streams);
  server_limits.min_ping_interval = absl::GetFlag(FLAGS_grpc_min_ping_interval);
  server_limits.max_connection_age = absl::GetFlag(FLAGS_grpc_max_connection_age);
  server_limits.max_connection_age_grace = absl::GetFlag(FLAGS_grpc_max_connection_age_grace);
  server_limits.max_connection_idle = absl::GetFlag(FLAGS_grpc_max_connection_idle);
  Log(absl::StrCat("public port limits: ", DescribeServerLimits(server_limits), "; stream buffer ",
                   absl::GetFlag(FLAGS_stream_buffer_bytes), " B; API keys ",
                   api_keys != nullptr ? "required" : "off"));
  GenerationService::Options service_options;
  service_options.api_keys = api_keys.get();
  service_options.stream_buffer_bytes = absl::GetFlag(FLAGS_stream_buffer_bytes);
  GenerationService service(&tokenizer, chat_template.get(), service_options);
  service.path().SetLogRequests(absl::GetFlag(FLAGS_log_requests));
  service.path().SetSpecialTokensInContent(absl::GetFlag(FLAGS_chat_content_special_tokens));
  // The groups: each formed, watched and re-formed by its supervisor; epoch
  // numbers are shared so no two groups meet under one rendezvous prefix.
  auto epochs = std::make_shared<std::atomic<uint64_t>>(0);
  std::vector<std::unique_ptr<GroupSupervisor>> groups;
  std::vector<const GroupSupervisor*> group_views;
  for (int g = 0; g < max_groups; ++g) {
    GroupOptions o = GroupOptionsFromFlags(g, max_groups, world_size,
                                           tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : 0);
    o.epochs = epochs;
    o.worker_credentials = cluster_tls.ChannelCredentials();
    groups.push_back(std::make_unique<GroupSupervisor>(std::move(o), &rendezvous));
    group_views.push_back(groups.back().get());
  }
  AdminService admin(group_views, api_keys.get());
  grpc::EnableDefaultHealthCheckService(true);
  if (absl::GetFlag(FLAGS_reflection)) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  ApplyServerLimits(server_limits, builder);
  // ---- END public-surface hardening -------------------------------------------
  int grpc_port = 0;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_port)), public_credentials,
                           &grpc_port);
  builder.RegisterService(&service);
  builder.RegisterService(&admin);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":",
                                               absl::GetFlag(FLAGS_port),
                                               " (in use? pick another --port)"));
  }
  TPS_ASSIGN_OR_RETURN(
      std::unique_ptr<HealthPort> health_port,
      HealthPort::Start(host, absl::GetFlag(FLAGS_health_port), server->GetHealthCheckService()));
  grpc::HealthCheckServiceInterface* health = health_port->health();  // sets both ports
  health->SetServingStatus(false);
  health->SetServingStatus("liveness", true);

  const std::string metrics_address =
      absl::GetFlag(FLAGS_metrics_address).empty()
          ? absl::StrCat(host, ":", absl::GetFlag(FLAGS_metrics_port))
          : absl::GetFlag(FLAGS_metrics_address);
  TPS_ASSIGN_OR_RETURN(
      std::unique_ptr<prometheus::Exposer> exposer,
      StartMetricsExposer(metrics_address, absl::GetFlag(FLAGS_metrics_address).empty()
                                               ? "--metrics_port"
                                               : "--metrics_address"));
  exposer->RegisterCollectable(registry);
  const int metrics_port = exposer->GetListeningPorts().at(0);
  Log(absl::StrCat("listening: gRPC ", host, ":", grpc_port,
                   absl::GetFlag(FLAGS_tls_cert_file).empty()        ? " (plaintext)"
                   : absl::GetFlag(FLAGS_tls_client_ca_file).empty() ? " (TLS)"
                                                                     : " (mTLS)",
                   ", metrics http://", metrics_address.substr(0, metrics_address.rfind(':')), ":",
                   metrics_port, "/metrics, rendezvous ", host, ":", rendezvous.port(),
                   cluster_tls.enabled() ? " (cluster mTLS)" : ""));
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  std::vector<std::pair<std::string, int>> ports = {{"grpc_port", grpc_port},
                                                    {"metrics_port", metrics_port},
                                                    {"rendezvous_port", rendezvous.port()}};
  if (health_port->port() > 0) ports.emplace_back("health_port", health_port->port());
  WritePortFile(port_file, ports);

  // ---- BEGIN HTTP API (issue 14; router/api/http_front_end.h) ----------------
  // The default model name comes from the file or directory name (the
  // model_name line below reads the flag), the front ends count requests by
  // `frontend`, and the OpenAI-compatible API shares the gRPC service's
  // RequestPath. Its port is added to --port_file as "http_port".
  if (absl::GetFlag(FLAGS_model_name).empty()) {
    absl::SetFlag(&FLAGS_model_name, DefaultModelName(model_path));
  }
  FrontendMetrics frontend_metrics(*registry, absl::GetFlag(FLAGS_model_name));
  service.path().SetFrontendMetrics(&frontend_metrics);
  std::unique_ptr<HttpFrontEnd> http;
  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    HttpFrontEnd::Options http_options;
    http_options.host = host;
    http_options.port = absl::GetFlag(FLAGS_http_port);
    http_options.num_threads = absl::GetFlag(FLAGS_http_threads);
    http_options.max_body_bytes = absl::GetFlag(FLAGS_http_max_body_bytes);
    http_options.api_keys = api_keys.get();
    http_options.stream_buffer_bytes = absl::GetFlag(FLAGS_stream_buffer_bytes);
    http = std::make_unique<HttpFrontEnd>(&service.path(), std::move(http_options));
    TPS_RETURN_IF_ERROR(http->Start());
    Log(absl::StrCat("listening: HTTP API http://", host, ":", http->port(), "/v1"));
    ports.emplace_back("http_port", http->port());
    WritePortFile(port_file, ports);
  }
  // ---- END HTTP API ----------------------------------------------------------

  const std::string flag_name = absl::GetFlag(FLAGS_model_name);
  std::unique_ptr<RouterMetrics> metrics;  // needs the model name: set once serving
  absl::Mutex metrics_mu;
  std::atomic<bool> ready{false};
  // Health is SERVING while any group serves.
  absl::Mutex health_mu;
  std::vector<bool> serving(max_groups, false);
  // The supervisors' threads call the listeners below: stop them before what
  // the listeners use goes away (on every return path).
  struct StopGroups {
    std::vector<std::unique_ptr<GroupSupervisor>>* groups;
    ~StopGroups() {
      for (auto& group : *groups) group->Stop();
    }
  } stop_groups{&groups};
  for (auto& group : groups) {
    const int g = group->group();
    group->SetListener([&, g](GroupState state, const std::string& why) {
      bool any;
      {
        absl::MutexLock lock(&health_mu);
        serving[g] = state == GroupState::kServing;
        any = std::find(serving.begin(), serving.end(), true) != serving.end();
      }
      // Before the loop runs health stays NOT_SERVING (Generate would refuse).
      if (ready.load()) health->SetServingStatus(any);
      if (!ready.load()) {
        service.SetUnavailable(absl::StrCat(
            "the cluster is not ready: ", max_groups > 1 ? absl::StrCat("group ", g, ": ") : "",
            why));
      }
    });
    group->SetEventSink([&](const GroupEvent& event) {
      absl::MutexLock lock(&metrics_mu);
      if (metrics != nullptr) metrics->ObserveGroup(event);
    });
    group->Start();
  }
  Log(absl::StrCat("waiting for ", num_groups, " group(s) of ", world_size,
                   " worker rank(s) to register and load"));
  // Every initial group must serve; the router's schedulers use the smallest
  // KV block count among them, and later groups must offer at least that.
  const absl::Time load_deadline = absl::Now() + absl::GetFlag(FLAGS_load_timeout);
  TPS_ASSIGN_OR_RETURN(ClusterInfo cluster,
                       groups[0]->WaitUntilServing(absl::GetFlag(FLAGS_load_timeout)));
  for (int g = 1; g < num_groups; ++g) {
    TPS_ASSIGN_OR_RETURN(const ClusterInfo other,
                         groups[g]->WaitUntilServing(load_deadline - absl::Now()));
    if (other.rank0.model_fingerprint() != cluster.rank0.model_fingerprint()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "MISMATCH: group ", g, " loaded model '", other.rank0.model_name(), "' (fingerprint ",
          other.rank0.model_fingerprint(), ") but group 0 loaded '", cluster.rank0.model_name(),
          "' (fingerprint ", cluster.rank0.model_fingerprint(),
          "); every group needs the same "
          "--model"));
    }
    cluster.kv_num_blocks = std::min(cluster.kv_num_blocks, other.kv_num_blocks);
  }
  for (auto& group : groups) group->SetMinKvBlocks(cluster.kv_num_blocks);
  const v1::InfoResponse& info = cluster.rank0;
  if (info.vocab_size() > tokenizer.vocab_size() + 1024 || info.vocab_size() <= 0) {
    return absl::FailedPreconditionError(absl::StrCat("the workers' model has ", info.vocab_size(),
                                                      " vocabulary entries but the router's "
                                                      "tokenizer has ",
                                                      tokenizer.vocab_size(),
                                                      "; give both the same --model"));
  }
  const std::string model_name = flag_name.empty() ? info.model_name() : flag_name;
  {
    absl::MutexLock lock(&metrics_mu);
    metrics = std::make_unique<RouterMetrics>(*registry, model_name);
    for (auto& group : groups) {
      GroupEvent now;
      now.state = group->state();
      now.epoch = group->epoch();
      now.group = group->group();
      metrics->ObserveGroup(now);
    }
  }
  Log(absl::StrCat(num_groups, " group(s) of ", world_size, " rank(s) loaded ", info.model_name(),
                   " (", info.backend(), "): ", cluster.kv_num_blocks, " KV blocks of ",
                   cluster.kv_block_size, " tokens per group"));

  TPS_ASSIGN_OR_RETURN(const ServingLoop::Options options, LoopOptions(cluster, tokenizer));
  std::vector<StepExecutor*> executors;
  for (auto& group : groups) executors.push_back(group.get());
  ServingLoop loop(options, executors, &tokenizer, metrics.get());
  loop.Start();
  admin.SetLoop(&loop);
  RequestLimits limits;
  limits.vocab_size = std::min(info.vocab_size(), tokenizer.vocab_size());
  limits.context_length = options.scheduler.max_model_len;
  limits.default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens);
  service.SetReady(&loop, limits,
                   ModelInfo(model_name, cluster, options, world_size, num_groups, max_groups));
  {
    absl::MutexLock lock(&health_mu);
    ready = true;
    health->SetServingStatus(std::find(serving.begin(), serving.end(), true) != serving.end());
  }
  Log(absl::StrCat(
      "SERVING ", model_name, " on port ", grpc_port, " (TP=", world_size,
      max_groups > 1 ? absl::StrCat(", groups ", num_groups, " of up to ", max_groups) : "", ")"));

  // Liveness: the step loop must keep going round.
  std::atomic<bool> stop_watch{false};
  std::thread watch([&] {
    bool alive = true;
    while (!stop_watch.load()) {
      absl::SleepFor(absl::Milliseconds(200));
      const bool now_alive = absl::Now() - loop.last_tick() < absl::GetFlag(FLAGS_liveness_timeout);
      if (now_alive != alive) {
        alive = now_alive;
        health->SetServingStatus("liveness", alive);
        Log(alive ? "step loop going round again: liveness SERVING"
                  : "step loop wedged: liveness NOT_SERVING");
      }
    }
  });

  WaitAndDrain(signals, service, loop);
  stop_watch = true;
  watch.join();
  health->SetServingStatus(false);
  if (http != nullptr) http->Stop();  // cancels its open requests first
  admin.SetLoop(nullptr);
  loop.Stop();
  for (auto& group : groups) group->Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return absl::OkStatus();
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) {
  tpserve::SetLogTag("router");
  tpserve::ParseFlags(argc, argv, "tpserve-router: public gRPC API, scheduler and worker driver");
  absl::Status s = tpserve::Run();
  if (!s.ok()) {
    tpserve::Log(absl::StrCat("error: ", s.ToString()));
    return 1;
  }
  return 0;
}
