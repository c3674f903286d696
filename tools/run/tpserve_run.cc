// tpserve-run: the engine without the router. Launches N tensor-parallel
// ranks as local processes (rendezvous through an in-process TCP key-value
// store on 127.0.0.1), runs a prompt through prefill and greedy or sampled
// decode, prints the text (when the router's tokenizer can read the model)
// and tokens/s.
//
//   tpserve-run --model models/SmolLM2-135M-Instruct.Q4_1.gguf --tp 2
//       --prompt "The capital of France is" --max_tokens 32
//   tpserve-run --model m.gguf --prompt_ids 1,2,3 --batch 16 --max_tokens 64 --ignore_eos
//   tpserve-run --model m.gguf --prompt_len 512 --max_tokens 1   # prefill benchmark
//   tpserve-run --help                                           # every flag with its default
//
// Every rank runs the same schedule; rank 0 samples and broadcasts the new
// token ids so every rank feeds the same next step (the router's job in the
// real system).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "common/status.h"
#include "rendezvous/tcp_kv_store.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"
#include "worker/comm/host_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"
#include "worker/engine/engine.h"
#include "worker/engine/kv_cache_pool.h"
#include "worker/model/model_source.h"

ABSL_FLAG(std::string, model, "", "GGUF file or Hugging Face directory (required)");
ABSL_FLAG(int, tp, 1, "Tensor-parallel ranks, each a local process");
ABSL_FLAG(int, threads, 2, "Compute threads per rank (cpu backend)");
ABSL_FLAG(std::string, prompt, "", "Prompt text (needs the model's tokenizer)");
ABSL_FLAG(std::string, prompt_ids, "", "Prompt as comma-separated token ids");
ABSL_FLAG(int, prompt_len, 0, "Synthetic prompt of this many token ids when > 0");
ABSL_FLAG(int, batch, 1, "Sequences run side by side, each with the same prompt");
ABSL_FLAG(int, max_tokens, 32, "Tokens to generate per sequence");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating past the model's stop tokens");
ABSL_FLAG(int64_t, kv_mb, 256, "KV cache per rank, MiB");
ABSL_FLAG(std::string, kv_dtype, "auto",
          "KV cache element type: auto (= bf16, on both backends), f32 or bf16");
ABSL_FLAG(int, chunk, 0, "Prefill chunk size; 0 = the whole prompt in one step");
ABSL_FLAG(std::string, comm, "shm", "Collectives between the local ranks: shm or gloo");
ABSL_FLAG(std::string, backend, "cpu", "cpu, or cuda (device r for rank r, NCCL when --tp > 1)");
ABSL_FLAG(bool, tp_invariant, false,
          "Bit-identical logits at every --tp (fixed-point row-parallel reductions; "
          "EngineOptions::tp_invariant)");
ABSL_FLAG(float, temperature, 0.0f, "Sampling temperature; 0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "Top-k; 0 = off");
ABSL_FLAG(float, top_p, 1.0f, "Top-p; 1 = off");
ABSL_FLAG(float, min_p, 0.0f, "Min-p; 0 = off");
ABSL_FLAG(uint64_t, seed, 0, "Sampling seed");
ABSL_FLAG(float, repetition_penalty, 1.0f, "Repetition penalty; 1 = off");

namespace tpserve {
namespace {

constexpr char kUsage[] =
    "usage: tpserve-run --model PATH [--tp N] [--threads T] (--prompt TEXT | "
    "--prompt_ids 1,2,3 | --prompt_len N)\n"
    "       [--batch B] [--max_tokens N] [--ignore_eos] [--kv_mb MB] [--kv_dtype auto|f32|bf16]\n"
    "       [--chunk N]"
    "       [--temperature T] [--top_k K] [--top_p P] [--min_p P] [--seed S]\n"
    "       [--repetition_penalty R] [--comm shm|gloo] [--backend cpu|cuda]";

struct RunOptions {
  std::string model;
  int tp = 1;
  int threads = 2;  // per rank
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  int prompt_len = 0;  // synthetic prompt of this many ids when > 0
  int batch = 1;
  int max_tokens = 32;
  bool ignore_eos = false;
  bool tp_invariant = false;  // EngineOptions::tp_invariant
  int64_t kv_mb = 256;
  std::string kv_dtype;  // EngineOptions::kv_dtype
  int chunk = 0;         // prefill chunk size; 0 = whole prompt in one step
  std::string comm;
  std::string backend;
  SamplingParams sampling;
};

absl::StatusOr<RunOptions> OptionsFromFlags() {
  RunOptions o;
  o.model = absl::GetFlag(FLAGS_model);
  o.tp = absl::GetFlag(FLAGS_tp);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.prompt = absl::GetFlag(FLAGS_prompt);
  o.prompt_len = absl::GetFlag(FLAGS_prompt_len);
  o.batch = absl::GetFlag(FLAGS_batch);
  o.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  o.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  o.kv_mb = absl::GetFlag(FLAGS_kv_mb);
  o.kv_dtype = absl::GetFlag(FLAGS_kv_dtype);
  o.chunk = absl::GetFlag(FLAGS_chunk);
  o.comm = absl::GetFlag(FLAGS_comm);
  o.backend = absl::GetFlag(FLAGS_backend);
  o.tp_invariant = absl::GetFlag(FLAGS_tp_invariant);
  o.sampling.temperature = absl::GetFlag(FLAGS_temperature);
  o.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  o.sampling.top_p = absl::GetFlag(FLAGS_top_p);
  o.sampling.min_p = absl::GetFlag(FLAGS_min_p);
  o.sampling.seed = absl::GetFlag(FLAGS_seed);
  o.sampling.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  for (absl::string_view p :
       absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',', absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(p, &id)) return absl::InvalidArgumentError("bad --prompt_ids");
    o.prompt_ids.push_back(id);
  }
  if (o.model.empty()) return absl::InvalidArgumentError("--model is required");
  TPS_RETURN_IF_ERROR(ResolveKvDType(o.kv_dtype).status());
  if (o.tp < 1 || o.threads < 1 || o.batch < 1 || o.max_tokens < 1) {
    return absl::InvalidArgumentError("--tp, --threads, --batch, --max_tokens must be >= 1");
  }
  return o;
}

struct RankResult {
  double prefill_s = 0;
  double decode_s = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  std::string kv_dtype;            // "F32" or "BF16"
  int64_t kv_bytes_per_token = 0;  // this rank's K and V over all layers
  std::vector<int32_t> output;     // sequence 0's generated ids
};

absl::StatusOr<RankResult> RunRank(const RunOptions& o, const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& stop_ids, int rank, int port) {
  TcpKvStoreClient store("127.0.0.1", port);
  HostCommOptions copts;
  copts.backend = o.comm;
  copts.timeout = absl::Seconds(60);
  std::unique_ptr<Communicator> comm;
  if (o.backend == "cuda" && o.tp > 1) {  // collectives on device buffers
    NcclOptions nopts;
    nopts.device = rank;
    nopts.timeout = copts.timeout;
    TPS_ASSIGN_OR_RETURN(comm, CreateNcclCommunicator(store, rank, o.tp, nopts));
  } else {
    TPS_ASSIGN_OR_RETURN(comm, CreateHostCommunicator(store, rank, o.tp, copts));
  }
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<ModelSource> model, OpenModel(o.model));
  EngineOptions eopts;
  eopts.num_threads = o.threads;
  eopts.kv_cache_bytes = o.kv_mb << 20;
  eopts.kv_dtype = o.kv_dtype;
  eopts.backend = o.backend;
  eopts.tp_invariant = o.tp_invariant;
  eopts.device = o.backend == "cuda" ? rank : 0;
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(*model, *comm, eopts));
  BlockAllocator blocks(engine->num_kv_blocks());
  const int bs = engine->block_size();
  const int total = static_cast<int>(prompt.size()) + o.max_tokens;
  std::vector<std::vector<int32_t>> tables(o.batch);
  for (int b = 0; b < o.batch; ++b) {
    absl::StatusOr<std::vector<int32_t>> t = blocks.Allocate((total + bs - 1) / bs);
    if (!t.ok()) {
      return Annotate(t.status(), absl::StrCat("KV cache for ", o.batch, " x ", total,
                                               " tokens (raise --kv_mb)"));
    }
    tables[b] = *t;
  }
  RankResult res;
  res.kv_dtype = DTypeName(engine->kv_dtype());
  res.kv_bytes_per_token =
      engine->kv_cache_bytes() / (int64_t{engine->num_kv_blocks()} * engine->block_size());
  // Prefill, in chunks when asked.
  const int plen = static_cast<int>(prompt.size());
  const int chunk = o.chunk > 0 ? o.chunk : plen;
  std::vector<int32_t> next(o.batch, 0);
  absl::Time t0 = absl::Now();
  for (int start = 0; start < plen; start += chunk) {
    StepBatch batch;
    const int len = std::min(chunk, plen - start);
    for (int b = 0; b < o.batch; ++b) {
      SequenceInput s;
      s.seq_id = b;
      s.tokens.assign(prompt.begin() + start, prompt.begin() + start + len);
      s.start_pos = start;
      s.prompt_len = plen;
      s.block_table = tables[b];
      s.sample = start + len == plen;
      s.sampling = o.sampling;
      batch.seqs.push_back(std::move(s));
    }
    TPS_ASSIGN_OR_RETURN(StepOutput out, engine->Step(batch));
    for (size_t i = 0; i < out.tokens.size(); ++i) next[i] = out.tokens[i].token;
  }
  TPS_RETURN_IF_ERROR(comm->Broadcast(next.data(), next.size(), CommDType::kI32, 0));
  res.prefill_s = absl::ToDoubleSeconds(absl::Now() - t0);
  res.prefill_tokens = int64_t{plen} * o.batch;
  res.output.push_back(next[0]);
  auto stopped = [&](int32_t t) {
    return !o.ignore_eos && std::find(stop_ids.begin(), stop_ids.end(), t) != stop_ids.end();
  };
  // Decode: one token per sequence per step.
  t0 = absl::Now();
  for (int step = 1; step < o.max_tokens && !stopped(next[0]); ++step) {
    StepBatch batch;
    for (int b = 0; b < o.batch; ++b) {
      SequenceInput s;
      s.seq_id = b;
      s.tokens = {next[b]};
      s.start_pos = plen + step - 1;
      s.prompt_len = plen;
      s.block_table = tables[b];
      s.sampling = o.sampling;
      batch.seqs.push_back(std::move(s));
    }
    TPS_ASSIGN_OR_RETURN(StepOutput out, engine->Step(batch));
    for (size_t i = 0; i < out.tokens.size(); ++i) next[i] = out.tokens[i].token;
    TPS_RETURN_IF_ERROR(comm->Broadcast(next.data(), next.size(), CommDType::kI32, 0));
    res.output.push_back(next[0]);
    res.decode_tokens += o.batch;
  }
  res.decode_s = absl::ToDoubleSeconds(absl::Now() - t0);
  return res;
}

int Main(int argc, char** argv) {
  const std::vector<char*> args = ParseFlags(argc, argv, kUsage);
  if (args.size() > 1) {
    fprintf(stderr, "tpserve-run: unexpected argument '%s'\n%s\n", args[1], kUsage);
    return 2;
  }
  absl::StatusOr<RunOptions> opts = OptionsFromFlags();
  if (!opts.ok()) {
    fprintf(stderr, "tpserve-run: %s\n%s\n", std::string(opts.status().message()).c_str(), kUsage);
    return 2;
  }
  RunOptions& o = *opts;
  // Tokenizer (optional: GGUF models carry one).
  std::unique_ptr<Tokenizer> tok;
  if (absl::StatusOr<TokenizerData> data = TokenizerDataFromGguf(o.model); data.ok()) {
    if (absl::StatusOr<Tokenizer> t = Tokenizer::Create(*std::move(data)); t.ok()) {
      tok = std::make_unique<Tokenizer>(*std::move(t));
    }
  }
  std::vector<int32_t> prompt = o.prompt_ids;
  if (o.prompt_len > 0) {
    for (int i = 0; i < o.prompt_len; ++i) prompt.push_back(100 + (i * 7919) % 20000);
  } else if (!o.prompt.empty()) {
    if (tok == nullptr) {
      fprintf(stderr, "tpserve-run: no tokenizer for %s; use --prompt_ids\n", o.model.c_str());
      return 2;
    }
    absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(std::string_view(o.prompt), false);
    if (!ids.ok()) {
      fprintf(stderr, "tpserve-run: %s\n", ids.status().ToString().c_str());
      return 2;
    }
    prompt = *ids;
  }
  if (prompt.empty()) {
    fprintf(stderr, "tpserve-run: empty prompt\n%s\n", kUsage);
    return 2;
  }
  std::vector<int32_t> stop_ids;
  if (absl::StatusOr<std::unique_ptr<ModelSource>> m = OpenModel(o.model); m.ok()) {
    stop_ids = (*m)->config().stop_ids;
    if ((*m)->config().eos_id >= 0) stop_ids.push_back((*m)->config().eos_id);
  } else {
    fprintf(stderr, "tpserve-run: %s\n", m.status().ToString().c_str());
    return 1;
  }

  TcpKvStoreServer server;  // serves once every rank is forked (see Listen)
  if (absl::Status s = server.Listen("127.0.0.1", 0); !s.ok()) {
    fprintf(stderr, "tpserve-run: %s\n", s.ToString().c_str());
    return 1;
  }
  int pipe_fd[2];
  if (pipe(pipe_fd) != 0) return 1;
  std::vector<pid_t> pids;
  for (int r = 0; r < o.tp; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      close(pipe_fd[0]);
      absl::StatusOr<RankResult> res = RunRank(o, prompt, stop_ids, r, server.port());
      if (!res.ok()) {
        fprintf(stderr, "tpserve-run: rank %d: %s\n", r, res.status().ToString().c_str());
        _exit(1);
      }
      if (r == 0) {
        std::string line =
            absl::StrCat(res->prefill_s, " ", res->prefill_tokens, " ", res->decode_s, " ",
                         res->decode_tokens, " ", res->kv_dtype, " ", res->kv_bytes_per_token, " ",
                         absl::StrJoin(res->output, ","), "\n");
        if (write(pipe_fd[1], line.data(), line.size()) < 0) _exit(1);
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  server.Serve();
  close(pipe_fd[1]);
  std::string report;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipe_fd[0], buf, sizeof(buf))) > 0) report.append(buf, n);
  close(pipe_fd[0]);
  int failed = 0;
  for (pid_t pid : pids) {
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++failed;
  }
  if (failed > 0 || report.empty()) {
    fprintf(stderr, "tpserve-run: %d rank(s) failed\n", failed);
    return 1;
  }
  std::vector<std::string> f = absl::StrSplit(absl::StripTrailingAsciiWhitespace(report), ' ');
  double prefill_s = 0, decode_s = 0;
  int64_t prefill_tokens = 0, decode_tokens = 0, kv_bytes_per_token = 0;
  if (f.size() < 6 || !absl::SimpleAtod(f[0], &prefill_s) ||
      !absl::SimpleAtoi(f[1], &prefill_tokens) || !absl::SimpleAtod(f[2], &decode_s) ||
      !absl::SimpleAtoi(f[3], &decode_tokens) || !absl::SimpleAtoi(f[5], &kv_bytes_per_token)) {
    fprintf(stderr, "tpserve-run: bad report from rank 0\n");
    return 1;
  }
  std::vector<int32_t> output;
  if (f.size() > 6) {
    for (absl::string_view p : absl::StrSplit(f[6], ',', absl::SkipEmpty())) {
      int32_t id = 0;
      if (absl::SimpleAtoi(p, &id)) output.push_back(id);
    }
  }
  if (tok != nullptr) {
    absl::StatusOr<std::string> text = tok->Decode(output);
    if (text.ok()) printf("%s%s\n", o.prompt.c_str(), text->c_str());
  }
  printf("prompt ids: %s\n", absl::StrJoin(prompt, ",").c_str());
  printf("output ids: %s\n", absl::StrJoin(output, ",").c_str());
  printf("prefill: %lld tokens in %.3f s = %.1f tokens/s\n", static_cast<long long>(prefill_tokens),
         prefill_s, prefill_tokens / prefill_s);
  printf("kv cache: %s, %lld bytes per token on rank 0\n", f[4].c_str(),
         static_cast<long long>(kv_bytes_per_token));
  if (decode_tokens > 0) {
    printf("decode: %lld tokens in %.3f s = %.2f tokens/s (batch %d, TP %d, %d thread(s)/rank)\n",
           static_cast<long long>(decode_tokens), decode_s, decode_tokens / decode_s, o.batch, o.tp,
           o.threads);
  }
  return 0;
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) { return tpserve::Main(argc, argv); }
