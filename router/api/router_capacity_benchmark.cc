// Router capacity: how many groups one router's serving loop can drive before
// it, not the GPUs, is the limit. G groups of fake workers answer every step
// at once (in the loop's own thread), each group holding 64 decoding
// sequences; the router does everything else for real (placement, per-group
// scheduling, block tables, StepRequest building and serialization, response
// parsing, incremental detokenization, streaming to sinks, metrics).
// Prints steps/s, generated tokens/s, router CPU microseconds per generated
// token (process CPU time: the fake workers' share is a few percent of it)
// and the serialized StepRequest bytes per step.
//
// --grpc: the fake workers run in child processes (one TP=1 group each,
// router/cluster/fake_worker_service.h) and the router drives them for real:
// GroupSupervisor, WorkerGroup, gRPC. The router CPU then includes the gRPC
// client side of every step (the children's CPU is not counted).
//
//   bazel build //router/api:router_capacity_benchmark
//   TPSERVE_ROOT=$PWD bazel-bin/router/api/router_capacity_benchmark [--groups=1,4,16,64] [--grpc]
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/time/clock.h"
#include "prometheus/registry.h"
#include "router/api/serving_loop.h"
#include "router/cluster/fake_worker_service.h"
#include "router/cluster/group_supervisor.h"
#include "router/tokenizer/tokenizer_gguf.h"

ABSL_FLAG(std::string, groups, "1,4,16,64", "Comma-separated group counts to measure");
ABSL_FLAG(int, seqs_per_group, 64, "Concurrent sequences per group");
ABSL_FLAG(int, prompt_tokens, 32, "Prompt length of every request");
ABSL_FLAG(int, max_tokens, 128, "Generated tokens per request");
ABSL_FLAG(bool, grpc, false, "Fake workers in child processes, driven over gRPC");
ABSL_FLAG(bool, lean_steps, true, "Send per-sequence deltas (ServingLoop::Options::lean_steps)");

namespace tpserve {
namespace {

// Answers every step at once: one token per sampled sequence. Counts steps
// and the bytes the StepRequest would take on the wire; the response goes
// through serialization and parsing as it would over gRPC.
class InstantWorkers : public StepExecutor {
 public:
  void StepAsync(v1::StepRequest request, StepCallback done) override {
    bytes_ += request.ByteSizeLong();
    std::string wire;
    request.SerializeToString(&wire);
    ++steps_;
    v1::StepResponse response;
    for (const v1::SequenceInput& s : request.seqs()) {
      if (!s.sample()) continue;
      v1::SampledToken* t = response.add_tokens();
      t->set_seq_id(s.seq_id());
      // Ordinary word-piece ids (never eos): detokenization does real work.
      t->set_token(1000 + static_cast<int32_t>((s.start_pos() + s.tokens_size()) % 500));
    }
    v1::StepResponse parsed;
    parsed.ParseFromString(response.SerializeAsString());
    done(std::move(parsed));
  }
  absl::Status Free(const std::vector<uint64_t>&) override { return absl::OkStatus(); }
  uint64_t ServingEpoch() const override { return 1; }
  std::string DownReason() const override { return ""; }

  int64_t steps_ = 0;  // loop thread only (the callback runs inside StepAsync)
  int64_t bytes_ = 0;
};

// Counts tokens; the last response closes the request.
class CountingSink : public ResponseSink {
 public:
  CountingSink(std::atomic<int64_t>* tokens, absl::BlockingCounter* done)
      : tokens_(tokens), done_(done) {}
  void Send(v1::GenerateResponse r) override { tokens_->fetch_add(r.token_ids_size()); }
  void Close(absl::Status s) override {
    if (!s.ok()) std::fprintf(stderr, "request failed: %s\n", s.ToString().c_str());
    done_->DecrementCount();
  }

 private:
  std::atomic<int64_t>* tokens_;
  absl::BlockingCounter* done_;
};

// Forks `n` children, each serving a FakeWorkerService (one TP=1 group) on
// a free port; returns their addresses. Called before this process uses gRPC.
std::vector<std::string> ForkWorkers(int n, std::vector<pid_t>* pids) {
  std::vector<std::string> addresses;
  for (int i = 0; i < n; ++i) {
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
      close(fds[0]);
      FakeWorkerService service(/*rank=*/0, /*world_size=*/1);
      service.blocks = 1 << 20;
      FakeWorkerServer server(&service);
      const std::string address = server.address();
      if (write(fds[1], address.data(), address.size()) < 0) _exit(1);
      close(fds[1]);
      while (true) pause();
    }
    close(fds[1]);
    char buffer[64];
    const ssize_t got = read(fds[0], buffer, sizeof(buffer));
    close(fds[0]);
    if (got <= 0) std::abort();
    addresses.emplace_back(buffer, static_cast<size_t>(got));
    pids->push_back(pid);
  }
  return addresses;
}

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

void Measure(const Tokenizer& tokenizer, int groups, const std::vector<std::string>& remote) {
  const int per_group = absl::GetFlag(FLAGS_seqs_per_group);
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  const int max_tokens = absl::GetFlag(FLAGS_max_tokens);
  std::vector<std::unique_ptr<InstantWorkers>> workers;
  std::vector<std::unique_ptr<GroupSupervisor>> supervisors;
  std::vector<StepExecutor*> executors;
  auto epochs = std::make_shared<std::atomic<uint64_t>>(0);
  for (int g = 0; g < groups; ++g) {
    if (remote.empty()) {
      workers.push_back(std::make_unique<InstantWorkers>());
      executors.push_back(workers.back().get());
      continue;
    }
    GroupOptions o;
    o.group = g;
    o.addresses = {remote[g]};
    o.epochs = epochs;
    supervisors.push_back(std::make_unique<GroupSupervisor>(std::move(o), nullptr));
    supervisors.back()->Start();
    executors.push_back(supervisors.back().get());
  }
  for (auto& s : supervisors) {
    absl::StatusOr<ClusterInfo> up = s->WaitUntilServing(absl::Seconds(60));
    if (!up.ok()) {
      std::fprintf(stderr, "%s\n", up.status().ToString().c_str());
      std::exit(1);
    }
  }
  prometheus::Registry registry;
  RouterMetrics metrics(registry, "bench");
  ServingLoop::Options o;
  o.scheduler.max_num_batched_tokens = 2048;
  o.scheduler.max_num_seqs = per_group;
  o.scheduler.max_waiting = 1 << 20;
  o.block_size = 16;
  o.num_blocks = per_group * ((prompt_tokens + max_tokens) / o.block_size + 2);
  o.placement_load_slack = 8;
  o.lean_steps = absl::GetFlag(FLAGS_lean_steps);
  ServingLoop loop(o, executors, &tokenizer, &metrics);
  const int requests = groups * per_group;
  std::atomic<int64_t> tokens{0};
  absl::BlockingCounter done(requests);
  const double cpu0 = CpuSeconds();
  const absl::Time t0 = absl::Now();
  loop.Start();
  for (int i = 0; i < requests; ++i) {
    GenerateJob job;
    job.request_id = std::to_string(i);
    for (int t = 0; t < prompt_tokens; ++t) job.prompt.push_back(2000 + (i * 131 + t * 7) % 20000);
    job.max_tokens = max_tokens;
    job.ignore_eos = true;
    job.sampling.top_p = 1.0f;
    job.sampling.repetition_penalty = 1.0f;
    job.sink = std::make_shared<CountingSink>(&tokens, &done);
    loop.Submit(std::move(job));
  }
  done.Wait();
  const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
  const double cpu = CpuSeconds() - cpu0;
  absl::SleepFor(absl::Milliseconds(250));  // the loop, idle now, refreshes Snapshot()
  int64_t steps = 0, bytes = 0;
  for (const ServingLoop::GroupSnapshot& g : loop.Snapshot()) steps += g.scheduler.num_steps_total;
  loop.Stop();
  for (auto& s : supervisors) s->Stop();
  for (const auto& w : workers) bytes += w->bytes_;
  std::printf("%6d %8d %10.0f %12.0f %12.2f %12.0f %8.2f\n", groups, requests, steps / wall,
              tokens.load() / wall, cpu * 1e6 / static_cast<double>(tokens.load()),
              static_cast<double>(bytes) / static_cast<double>(steps), wall);
  std::fflush(stdout);
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const char* root = std::getenv("TPSERVE_ROOT");
  const std::string model =
      std::string(root != nullptr ? root : ".") + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  absl::StatusOr<tpserve::TokenizerData> data = tpserve::TokenizerDataFromGguf(model);
  if (!data.ok()) {
    std::fprintf(stderr, "%s (set TPSERVE_ROOT)\n", data.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<tpserve::Tokenizer> tokenizer = tpserve::Tokenizer::Create(*std::move(data));
  if (!tokenizer.ok()) return 1;
  std::printf("%6s %8s %10s %12s %12s %12s %8s\n", "groups", "requests", "steps/s", "tokens/s",
              "cpu_us/token", "bytes/step", "wall_s");
  std::vector<int> counts;
  for (absl::string_view g : absl::StrSplit(absl::GetFlag(FLAGS_groups), ',')) {
    int groups = 0;
    if (!absl::SimpleAtoi(g, &groups) || groups < 1) return 2;
    counts.push_back(groups);
  }
  std::vector<pid_t> children;
  std::vector<std::string> remote;
  if (absl::GetFlag(FLAGS_grpc)) {
    remote = tpserve::ForkWorkers(*std::max_element(counts.begin(), counts.end()), &children);
  }
  for (int groups : counts) tpserve::Measure(*tokenizer, groups, remote);
  for (pid_t pid : children) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  return 0;
}
