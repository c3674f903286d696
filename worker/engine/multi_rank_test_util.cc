#include "worker/engine/multi_rank_test_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "rendezvous/tcp_kv_store.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/model/model_source.h"

namespace tpserve {
namespace {

void WriteFile(const std::string& path, const void* data, size_t size) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

absl::StatusOr<std::vector<float>> RankMain(int world, int rank, int port,
                                            const std::string& model_path,
                                            const EngineOptions& options, const RankCommFn& fn) {
  TcpKvStoreClient store("127.0.0.1", port);
  GlooOptions g;
  g.timeout = absl::Seconds(60);
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                       CreateGlooCommunicator(store, rank, world, g));
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> model, OpenModel(model_path));
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(*model, *comm, options));
  return fn(*engine, *comm);
}

}  // namespace

bool RankRun::ok() const {
  for (const std::string& e : errors) {
    if (!e.empty()) return false;
  }
  return true;
}

std::string RankRun::ErrorSummary() const {
  std::string s;
  for (size_t r = 0; r < errors.size(); ++r) {
    if (!errors[r].empty()) absl::StrAppend(&s, "rank ", r, ": ", errors[r], "\n");
  }
  return s;
}

RankRun RunOnRanks(int world, const std::vector<std::string>& model_paths,
                   const EngineOptions& options, const RankFn& fn, absl::Duration limit) {
  return RunOnRanks(world, model_paths, options,
                    RankCommFn([&fn](Engine& e, Communicator& comm) { return fn(e, comm.rank()); }),
                    limit);
}

RankRun RunOnRanks(int world, const std::vector<std::string>& model_paths,
                   const EngineOptions& options, const RankCommFn& fn, absl::Duration limit) {
  RankRun run;
  run.errors.assign(world, "");
  TcpKvStoreServer server;  // forks before the server has threads (see Listen)
  if (absl::Status s = server.Listen("127.0.0.1", 0); !s.ok()) {
    run.errors[0] = s.ToString();
    return run;
  }
  static int group = 0;
  const std::string base = absl::StrCat(TestTempDir(), "/ranks_", getpid(), "_", group++, "_");
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      const std::string& path = model_paths.size() == 1 ? model_paths[0] : model_paths[r];
      absl::StatusOr<std::vector<float>> out = RankMain(world, r, server.port(), path, options, fn);
      if (!out.ok()) {
        std::string msg = out.status().ToString();
        WriteFile(absl::StrCat(base, r, ".err"), msg.data(), msg.size());
        _exit(1);
      }
      if (r == 0) WriteFile(base + "0.bin", out->data(), out->size() * sizeof(float));
      _exit(0);
    }
    pids.push_back(pid);
  }
  server.Serve();
  const absl::Time deadline = absl::Now() + limit;
  std::vector<bool> done(world, false);
  int remaining = world;
  while (remaining > 0) {
    for (int r = 0; r < world; ++r) {
      int st = 0;
      if (done[r] || waitpid(pids[r], &st, WNOHANG) != pids[r]) continue;
      done[r] = true;
      --remaining;
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::string err = ReadFile(absl::StrCat(base, r, ".err"));
        run.errors[r] = err.empty() ? absl::StrCat("rank process died (status ", st, ")") : err;
      }
    }
    if (remaining > 0 && absl::Now() > deadline) {
      for (int r = 0; r < world; ++r) {
        if (done[r]) continue;
        kill(pids[r], SIGKILL);
        waitpid(pids[r], nullptr, 0);
        run.errors[r] = "killed: still running at the test's time limit (hang)";
      }
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::string bin = ReadFile(base + "0.bin");
  run.rank0.resize(bin.size() / sizeof(float));
  std::memcpy(run.rank0.data(), bin.data(), run.rank0.size() * sizeof(float));
  return run;
}

absl::StatusOr<std::vector<float>> FlatLogits(Engine& engine,
                                              const std::vector<StepBatch>& batches) {
  std::vector<float> flat;
  for (const StepBatch& b : batches) {
    TPS_ASSIGN_OR_RETURN(std::vector<std::vector<float>> logits, engine.ForwardLogits(b));
    for (const std::vector<float>& l : logits) flat.insert(flat.end(), l.begin(), l.end());
  }
  return flat;
}

absl::Status GreedyContinuation(Engine& engine, uint64_t seq_id, const std::vector<int32_t>& prompt,
                                int new_tokens, std::vector<float>* tokens,
                                std::vector<float>* gaps, std::vector<float>* first_logits) {
  const int total = static_cast<int>(prompt.size()) + new_tokens;
  SequenceInput s;
  s.seq_id = seq_id;
  s.tokens = prompt;
  s.prompt_len = static_cast<int>(prompt.size());
  for (int b = 0; b < (total + engine.block_size() - 1) / engine.block_size(); ++b) {
    s.block_table.push_back(b);
  }
  for (int i = 0; i < new_tokens; ++i) {
    StepBatch batch;
    batch.seqs = {s};
    TPS_ASSIGN_OR_RETURN(std::vector<std::vector<float>> l, engine.ForwardLogits(batch));
    if (l.size() != 1) return absl::InternalError("expected one logits row");
    const std::vector<float>& x = l[0];
    if (i == 0 && first_logits != nullptr) *first_logits = x;
    int32_t best = 0, second = -1;
    for (int32_t t = 1; t < static_cast<int32_t>(x.size()); ++t) {
      if (x[t] > x[best]) best = t;
    }
    for (int32_t t = 0; t < static_cast<int32_t>(x.size()); ++t) {
      if (t != best && (second < 0 || x[t] > x[second])) second = t;
    }
    tokens->push_back(static_cast<float>(best));
    gaps->push_back(second < 0 ? 0.0f : x[best] - x[second]);
    s.start_pos += static_cast<int32_t>(s.tokens.size());
    s.tokens = {best};
  }
  return absl::OkStatus();
}

double RelativeMaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double max_a = 0, max_d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_a = std::max(max_a, std::fabs(double{a[i]}));
    max_d = std::max(max_d, std::fabs(double{a[i]} - b[i]));
  }
  return max_d / max_a;
}

std::string DefaultModelPath() {
  const char* root = std::getenv("TPSERVE_ROOT");
  return absl::StrCat(root != nullptr ? root : ".", "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
}

std::string TestTempDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t != nullptr ? t : "/tmp";
}

SequenceInput TestSeq(uint64_t id, std::vector<int32_t> tokens, int start,
                      std::vector<int32_t> blocks, int prompt_len) {
  SequenceInput s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.prompt_len = prompt_len;
  s.block_table = std::move(blocks);
  return s;
}

std::vector<StepBatch> TwoSequenceSchedule() {
  std::vector<StepBatch> b(3);
  b[0].seqs = {TestSeq(1, {504, 3575, 282, 4649, 314, 7042, 30}, 0, {0}, 100),
               TestSeq(2, {1, 9690, 198, 2683, 359}, 0, {1}, 100)};
  b[1].seqs = {TestSeq(1, {42}, 7, {0}, 100), TestSeq(2, {253, 5356, 5646}, 5, {1}, 100)};
  b[2].seqs = {TestSeq(1, {1797}, 8, {0}, 100), TestSeq(2, {11173}, 8, {1}, 100)};
  return b;
}

}  // namespace tpserve
