// End-to-end decode throughput of the CUDA engine (Engine::Step: forward
// pass, device sampling, token back on the host) against the bandwidth
// roofline: a batch-1 decode step must stream every weight byte once, so
// roofline tokens/s = copy bandwidth / weight bytes, with the copy bandwidth
// (D2D cudaMemcpy, read + write) measured in the same run. Rows, as
// "row | ok | ours | baseline | ratio":
//
//   decode batch-1 <model> (graphs)          | X tok/s | roofline Y tok/s    | X/Y
//   decode batch-1 <model> (no graphs)       | X tok/s | graphs Z tok/s      | X/Z
//   decode batch-16 <model> (graphs)         | X tok/s | batch-1 Z tok/s     | X/Z
//   decode batch-{1,16} ... (graphs, no PDL) | X tok/s | PDL Z tok/s         | X/Z
//   decode batch-{1,16} ... (graphs, L2 prefetch)       | X | without Z      | X/Z
//   decode batch-1 ... (graphs, 2048-token prompt)      | X | 32-token Z     | X/Z
//   decode batch-1 ... (graphs, persistent)             | X | per-kernel Z   | X/Z
//   decode batch-1 ... (no graphs, persistent)          | X | per-kernel Z   | X/Z
//   decode batch-1 ... (graphs, persistent, L2 prefetch) | X | without Z     | X/Z
//   decode batch-{1,16} SmolLM2-shape Q4_1 (graphs)     | X | roofline Y     | X/Y
//   decode TP=2 batch-1 <model> (graphs)     | X tok/s | TP=1 Z tok/s        | X/Z
//   decode TP=2 batch-1 <model> (no graphs)  | X tok/s | TP=2 graphs Z tok/s | X/Z
//   prefill 2048 tokens <model>              | X tok/s |                     |
//   prefill 2048 tokens <model> (wgmma)      | X tok/s | mma.sync Z tok/s    | X/Z
//
// The persistent rows (EngineOptions::cuda_persistent_decode) fail when
// the engine ran the per-kernel step instead (kernels() says it fell back:
// a driver that refused the cooperative kernel, in a graph or at all); the
// "no graphs" one still measures it where only its graph capture fails.
//
// Every row but "no PDL" launches the decode-path kernels with programmatic
// dependent launch where the device has it (compute capability 9.0;
// kernels/cuda/launch.cuh); the "no PDL" rows turn it off, so X/Z < 1 is
// what it saves. The TP=2 rows run two ranks, one per GPU, in two threads over NCCL (with
// graphs, the NCCL collectives are inside them); they print "skipped" with
// fewer than two GPUs. Their steps feed fixed tokens (rank 1 gets no sampled
// token back here; the router would broadcast it), so they time the same
// forward pass, device sampling on rank 0 included. The prefill rows time
// one 2048-token (--prefill_tokens) sequence's Engine::Step (best of 5), then one of 512 tokens
// (--prefill_step_tokens: the router's default step budget, where converting the weights on
// every step costs the most), with the prefill GEMMs on the mma.sync kernel (on weight copies,
// then dequantising them itself), then on the two wgmma ones (EngineOptions::cuda_prefill_gemm;
// "skipped" on devices other than sm_90).
//
// The default model is generated: a 1.1B-parameter Llama (hidden 2048, 16
// layers, 32 query / 8 KV heads, FFN 8192), Q4_1, tied embeddings (so the
// weight bytes are what one step reads), vocabulary from the first model in
// $TPSERVE_GPU_TEST_MODELS (the gpu_check bundle) or the default model.
//
//   decode_bench                      # generate the 1.1B model in $TMPDIR, run all rows
//   decode_bench --model=x.gguf       # any GGUF
//   decode_bench --quick              # a 0.1B model, fewer steps (smoke)
//   decode_bench --kv_dtype=f32       # the f32 KV cache (default: bf16)
//   decode_bench --profile_steps=4    # only 4 batch-1 steps, in a profiler range (ncu)
//   decode_bench --profile_prefill=mma  # only one prefill, in a profiler range (ncu)
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "kernels/cuda/bench_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device.h"
#include "rendezvous/tcp_kv_store.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"
#include "worker/engine/engine.h"

ABSL_FLAG(std::string, model, "", "GGUF to run (empty: generate one in $TMPDIR)");
ABSL_FLAG(int, steps, 128, "timed decode steps per row");
ABSL_FLAG(bool, quick, false, "a 0.1B generated model and 16 steps (smoke run)");
ABSL_FLAG(int, profile_steps, 0,
          "> 0: run only the batch-1 graphs row, its N timed steps between cudaProfilerStart "
          "and cudaProfilerStop (for ncu --profile-from-start off; scripts/gpu_check.sh)");
ABSL_FLAG(std::string, profile_prefill, "",
          "mma, mma_dequant, wgmma or wgmma_tma: run only one --prefill_tokens prefill on that "
          "GEMM kernel "
          "(EngineOptions::cuda_prefill_gemm), after an untimed one, between cudaProfilerStart "
          "and cudaProfilerStop (scripts/gpu_check.sh)");
ABSL_FLAG(int, prefill_tokens, 2048, "tokens of the prefill rows' sequence");
ABSL_FLAG(int, prefill_step_tokens, 512,
          "tokens of a second set of prefill rows (the router's default step budget, "
          "--max_num_batched_tokens); 0: none");
ABSL_FLAG(std::string, kv_dtype, "auto", "KV cache element type (EngineOptions::kv_dtype)");

namespace tpserve {
namespace {

using kernels::cuda::Fmt;
using kernels::cuda::PrintRow;

// SmolLM2-135M's shape (hidden 576, 30 layers, 9 query / 3 KV heads, FFN
// 1536, Q4_1, tied) with a 4096-token vocabulary: the shape
// scripts/gpu_model.sh models (kernels/cuda/model_h100.tsv), small enough to
// generate on the GPU machine from the bundle's test-model vocabulary.
TestModelSpec SmolLm2ShapeSpec() {
  TestModelSpec spec;
  spec.hidden_size = 576;
  spec.num_layers = 30;
  spec.num_heads = 9;
  spec.num_kv_heads = 3;
  spec.ffn_size = 1536;
  spec.vocab_size = 4096;
  spec.dtype = DType::kQ4_1;
  spec.tie_embeddings = true;
  return spec;
}

std::string GenerateModel(bool quick, std::string* label, bool smollm2_shape = false) {
  TestModelSpec spec;
  spec.hidden_size = quick ? 768 : 2048;
  spec.num_layers = quick ? 12 : 16;
  spec.num_heads = quick ? 12 : 32;
  spec.num_kv_heads = quick ? 4 : 8;
  spec.ffn_size = quick ? 2048 : 8192;
  spec.dtype = DType::kQ4_1;
  if (smollm2_shape) spec = SmolLm2ShapeSpec();
  spec.tie_embeddings = true;
  const char* models = std::getenv("TPSERVE_GPU_TEST_MODELS");
  if (models != nullptr && *models != '\0') {
    spec.vocab_source = std::string(*absl::StrSplit(models, ':').begin());
  }
  const char* tmp = std::getenv("TMPDIR");
  const std::string path =
      std::string(tmp != nullptr && *tmp ? tmp : "/tmp") +
      (smollm2_shape ? "/decode_bench_smollm2_shape.gguf"
                     : (quick ? "/decode_bench_0.1b.gguf" : "/decode_bench_1.1b.gguf"));
  const absl::Time t0 = absl::Now();
  if (absl::Status st = WriteTestModel(spec, path); !st.ok()) {
    std::fprintf(stderr, "decode_bench: cannot generate a model: %s\n", st.ToString().c_str());
    return "";
  }
  std::fprintf(stderr, "decode_bench: generated %s in %.1f s\n", path.c_str(),
               absl::ToDoubleSeconds(absl::Now() - t0));
  *label = smollm2_shape ? "SmolLM2-shape Q4_1" : (quick ? "0.1B Q4_1" : "1.1B Q4_1");
  return path;
}

struct Run {
  double tokens_per_s = -1;
  int64_t weight_bytes = 0;
  std::string error;
};

// The CUDA engine on `device` with a 1 GiB KV cache of --kv_dtype.
EngineOptions BenchOptions(int device) {
  EngineOptions o;
  o.backend = "cuda";
  o.device = device;
  o.kv_cache_bytes = int64_t{1} << 30;
  o.kv_dtype = absl::GetFlag(FLAGS_kv_dtype);
  return o;
}

// The engine options a row turns away from their defaults.
struct Toggles {
  bool pdl = true;
  bool l2_prefetch = false;
  bool persistent = false;  // EngineOptions::cuda_persistent_decode
  int prompt = 32;          // prefill tokens per sequence
};

// One rank's run: `batch` sequences, a t.prompt-token prefill each, then
// `steps` timed decode steps. With one rank each step feeds back the sampled
// tokens; with more, fixed ones (only rank 0 samples).
Run DecodeRank(const ModelSource& model, int batch, bool graphs, int steps, Communicator& comm,
               const Toggles& t) {
  Run run;
  EngineOptions o = BenchOptions(comm.rank());
  o.cuda_graphs = graphs;
  o.cuda_pdl = t.pdl;
  o.cuda_l2_prefetch = t.l2_prefetch;
  o.cuda_persistent_decode = t.persistent;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(model, comm, o);
  if (!engine.ok()) return {.error = engine.status().ToString()};
  run.weight_bytes = (*engine)->weight_bytes();
  const int bs = (*engine)->block_size();
  const int blocks_per_seq = (t.prompt + steps + 2 + bs - 1) / bs;
  if (blocks_per_seq * batch > (*engine)->num_kv_blocks()) return {.error = "KV cache too small"};
  StepBatch b;
  for (int i = 0; i < batch; ++i) {
    SequenceInput s;
    s.seq_id = 1 + i;
    for (int j = 0; j < t.prompt; ++j) s.tokens.push_back((j * 7 + i) % model.config().vocab_size);
    s.prompt_len = t.prompt;
    for (int k = 0; k < blocks_per_seq; ++k) s.block_table.push_back(i * blocks_per_seq + k);
    b.seqs.push_back(std::move(s));
  }
  const bool sampled_here = comm.world_size() == 1;
  auto step = [&]() -> absl::Status {
    absl::StatusOr<StepOutput> out = (*engine)->Step(b);
    if (!out.ok()) return out.status();
    for (int i = 0; i < batch; ++i) {
      SequenceInput& s = b.seqs[i];
      s.start_pos += static_cast<int32_t>(s.tokens.size());
      s.tokens = {sampled_here ? out->tokens[i].token
                               : (s.start_pos * 7 + i) % model.config().vocab_size};
    }
    return absl::OkStatus();
  };
  for (int i = 0; i < 3; ++i) {  // prefill, then two untimed decode steps (graph capture)
    if (absl::Status st = step(); !st.ok()) return {.error = st.ToString()};
  }
  // --profile_steps: the profiler's range is the timed steps only.
  const bool profile = absl::GetFlag(FLAGS_profile_steps) > 0 && comm.rank() == 0;
  if (profile) cudaProfilerStart();
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < steps; ++i) {
    if (absl::Status st = step(); !st.ok()) return {.error = st.ToString()};
  }
  run.tokens_per_s = batch * steps / absl::ToDoubleSeconds(absl::Now() - t0);
  if (profile) cudaProfilerStop();
  // A persistent row must have timed the persistent step, not the engine's
  // fallback to the per-kernel one (CudaForward's kernels() line).
  if (t.persistent &&
      (*engine)->kernels().find("decode steps as one cooperative kernel") == std::string::npos) {
    return {.error = "the engine did not run the persistent step: " + (*engine)->kernels()};
  }
  return run;
}

// One rank, or `world` ranks on GPUs 0..world-1 in threads over NCCL (rank 0
// timed; a failing rank aborts the others' communicators, so none waits out
// the collective timeout).
Run Decode(const ModelSource& model, int batch, bool graphs, int steps, int world = 1,
           const Toggles& t = {}) {
  if (world == 1) {
    TcpKvStoreClient unused("127.0.0.1", 1);
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        CreateGlooCommunicator(unused, 0, 1, GlooOptions());
    if (!comm.ok()) return {.error = comm.status().ToString()};
    return DecodeRank(model, batch, graphs, steps, **comm, t);
  }
  TcpKvStoreServer server;
  if (absl::Status st = server.Start("127.0.0.1", 0); !st.ok()) return {.error = st.ToString()};
  std::vector<Run> runs(world);
  std::vector<std::unique_ptr<Communicator>> comms(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      TcpKvStoreClient store("127.0.0.1", server.port());
      NcclOptions no;
      no.device = r;
      no.prefix = absl::StrCat("decode_bench/", graphs ? "graphs" : "eager");
      absl::StatusOr<std::unique_ptr<Communicator>> comm =
          CreateNcclCommunicator(store, r, world, no);
      if (!comm.ok()) {
        runs[r].error = comm.status().ToString();
        return;
      }
      comms[r] = *std::move(comm);
      runs[r] = DecodeRank(model, batch, graphs, steps, *comms[r], t);
      if (!runs[r].error.empty()) comms[r]->Abort();
    });
  }
  for (std::thread& t : ranks) t.join();
  for (const Run& r : runs) {
    if (!r.error.empty()) return r;
  }
  return runs[0];
}

// Prints `row`: ours in tokens/s against `base` (named `base_name` in the
// baseline column), or FAIL with whichever run failed. False on failure.
bool PrintAgainst(const std::string& row, const Run& ours, const Run& base,
                  const std::string& base_name) {
  if (!ours.error.empty() || !base.error.empty()) {
    PrintRow(row, "FAIL: " + (ours.error.empty() ? base.error : ours.error), "", "", -1);
    return false;
  }
  PrintRow(row, "ok", Fmt("%.1f tok/s", ours.tokens_per_s),
           Fmt("%s %.1f tok/s", base_name.c_str(), base.tokens_per_s),
           ours.tokens_per_s / base.tokens_per_s);
  return true;
}

// The best of `reps` single-sequence prefills of `tokens` tokens on `engine`,
// after one untimed one; `profile`: the last one between cudaProfilerStart and Stop.
Run PrefillOn(Engine& engine, const ModelSource& model, int tokens, int reps, bool profile) {
  const int bs = engine.block_size();
  const int blocks = (tokens + bs - 1) / bs;
  if (blocks > engine.num_kv_blocks()) return {.error = "KV cache too small"};
  double best = 0;
  for (int r = 0; r <= reps; ++r) {
    SequenceInput s;
    s.seq_id = 1 + r;
    for (int t = 0; t < tokens; ++t) s.tokens.push_back((t * 7 + r) % model.config().vocab_size);
    s.prompt_len = tokens;
    for (int k = 0; k < blocks; ++k) s.block_table.push_back(k);
    StepBatch b;
    b.seqs.push_back(std::move(s));
    const bool profiled = profile && r == reps;
    if (profiled) cudaProfilerStart();
    const absl::Time t0 = absl::Now();
    absl::StatusOr<StepOutput> out = engine.Step(b);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    if (profiled) cudaProfilerStop();
    if (!out.ok()) return {.error = out.status().ToString()};
    engine.Free({b.seqs[0].seq_id});
    if (r > 0) best = std::max(best, tokens / seconds);
  }
  Run run;
  run.tokens_per_s = best;
  return run;
}

// One engine on `gemm`; for each of `sizes`, the best of `reps`
// single-sequence prefills of that many tokens after one untimed one
// (`profile`: the last one between cudaProfilerStart and Stop).
std::vector<Run> Prefill(const ModelSource& model, const std::vector<int>& sizes,
                         const std::string& gemm, int reps, bool profile = false) {
  TcpKvStoreClient unused("127.0.0.1", 1);
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateGlooCommunicator(unused, 0, 1, GlooOptions());
  if (!comm.ok()) return std::vector<Run>(sizes.size(), {.error = comm.status().ToString()});
  EngineOptions o = BenchOptions(0);
  o.cuda_prefill_gemm = gemm;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(model, **comm, o);
  if (!engine.ok()) return std::vector<Run>(sizes.size(), {.error = engine.status().ToString()});
  std::vector<Run> runs;
  for (const int tokens : sizes) runs.push_back(PrefillOn(**engine, model, tokens, reps, profile));
  return runs;
}
int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (::tpserve::kernels::cuda::DeviceCount() == 0) {
    PrintRow("decode", "SKIPPED: no CUDA device", "", "", -1);
    return 0;
  }
  const bool quick = absl::GetFlag(FLAGS_quick);
  const int steps = quick ? 16 : absl::GetFlag(FLAGS_steps);
  std::string label = absl::GetFlag(FLAGS_model);
  std::string path = label;
  if (path.empty()) path = GenerateModel(quick, &label);
  absl::StatusOr<std::unique_ptr<ModelSource>> model =
      path.empty() ? absl::NotFoundError("no model") : OpenModel(path);
  if (!model.ok()) {
    PrintRow("decode", "FAIL: " + model.status().ToString(), "", "", -1);
    return 1;
  }
  cudaStream_t stream = nullptr;
  cudaStreamCreate(&stream);
  const double copy_bw = kernels::cuda::MeasureCopyBandwidth(stream, size_t{1} << 30);
  cudaStreamDestroy(stream);

  if (const int n = absl::GetFlag(FLAGS_profile_steps); n > 0) {
    const Run r = Decode(**model, 1, true, n);
    PrintRow("decode batch-1 " + label + " (graphs, profiled)",
             r.error.empty() ? "ok" : "FAIL: " + r.error,
             r.error.empty() ? Fmt("%.1f tok/s", r.tokens_per_s) : "", "", -1);
    return r.error.empty() ? 0 : 1;
  }
  if (const std::string kernel = absl::GetFlag(FLAGS_profile_prefill); !kernel.empty()) {
    const std::string row = absl::StrCat("prefill ", absl::GetFlag(FLAGS_prefill_tokens),
                                         " tokens ", label, " (", kernel, ", profiled)");
    const bool wgmma = kernel == "wgmma" || kernel == "wgmma_tma";
    if (wgmma && !kernels::cuda::WgmmaSupported()) {
      PrintRow(row, "skipped: the wgmma kernels need an sm_90 device", "", "", -1);
      return 0;
    }
    const Run r =
        Prefill(**model, {absl::GetFlag(FLAGS_prefill_tokens)}, kernel, 1, /*profile=*/true)[0];
    PrintRow(row, r.error.empty() ? "ok" : "FAIL: " + r.error,
             r.error.empty() ? Fmt("%.0f tok/s", r.tokens_per_s) : "", "", -1);
    return r.error.empty() ? 0 : 1;
  }
  int failed = 0;
  const Run graphs = Decode(**model, 1, true, steps);
  if (!graphs.error.empty()) {
    PrintRow("decode batch-1 " + label + " (graphs)", "FAIL: " + graphs.error, "", "", -1);
    return 1;
  }
  const double roofline = copy_bw / static_cast<double>(graphs.weight_bytes);
  PrintRow("decode batch-1 " + label + " (graphs)", "ok", Fmt("%.1f tok/s", graphs.tokens_per_s),
           Fmt("roofline %.1f tok/s (%.2f GB at %.0f GB/s)", roofline, graphs.weight_bytes / 1e9,
               copy_bw / 1e9),
           graphs.tokens_per_s / roofline);
  const Run eager = Decode(**model, 1, false, steps);
  if (eager.error.empty()) {
    PrintRow("decode batch-1 " + label + " (no graphs)", "ok",
             Fmt("%.1f tok/s", eager.tokens_per_s), Fmt("graphs %.1f tok/s", graphs.tokens_per_s),
             eager.tokens_per_s / graphs.tokens_per_s);
  } else {
    PrintRow("decode batch-1 " + label + " (no graphs)", "FAIL: " + eager.error, "", "", -1);
    failed = 1;
  }
  const Run batched = Decode(**model, 16, true, steps);
  if (batched.error.empty()) {
    PrintRow(
        "decode batch-16 " + label + " (graphs)", "ok", Fmt("%.1f tok/s", batched.tokens_per_s),
        Fmt("batch-1 %.1f tok/s", graphs.tokens_per_s), batched.tokens_per_s / graphs.tokens_per_s);
  } else {
    PrintRow("decode batch-16 " + label + " (graphs)", "FAIL: " + batched.error, "", "", -1);
    failed = 1;
  }
  // Programmatic dependent launch off, against the rows above (on).
  for (const auto& [batch, with] : {std::pair{1, &graphs}, std::pair{16, &batched}}) {
    const std::string row =
        "decode batch-" + std::to_string(batch) + " " + label + " (graphs, no PDL)";
    if (!kernels::cuda::ProgrammaticLaunchSupported()) {
      PrintRow(row, "skipped: PDL needs compute capability 9.0", "", "", -1);
      continue;
    }
    failed |=
        !PrintAgainst(row, Decode(**model, batch, true, steps, 1, {.pdl = false}), *with, "PDL");
  }
  // Each decode GEMM prefetching the next one's weights into L2
  // (EngineOptions::cuda_l2_prefetch), against the graphs rows (without).
  for (const auto& [batch, without] : {std::pair{1, &graphs}, std::pair{16, &batched}}) {
    const std::string row =
        "decode batch-" + std::to_string(batch) + " " + label + " (graphs, L2 prefetch)";
    if (!kernels::cuda::ProgrammaticLaunchSupported()) {
      PrintRow(row, "skipped: the bulk L2 prefetch needs compute capability 9.0", "", "", -1);
      continue;
    }
    failed |= !PrintAgainst(row, Decode(**model, batch, true, steps, 1, {.l2_prefetch = true}),
                            *without, "without");
  }
  // One sequence decoding past a 2048-token prompt, against the 32-token
  // one: what the context's attention costs the step (since 2026-12-07 its
  // partitions are 64 tokens there: DecodePartitionTokens).
  failed |= !PrintAgainst("decode batch-1 " + label + " (graphs, 2048-token prompt)",
                          Decode(**model, 1, true, steps, 1, {.prompt = 2048}), graphs,
                          "32-token prompt");
  // A batch-1 step's layers as one cooperative kernel
  // (EngineOptions::cuda_persistent_decode), against the per-kernel step,
  // from graphs and eagerly; then from graphs with each GEMV phase
  // prefetching the next one's weights, against (graphs, persistent).
  const std::string persistent = "decode batch-1 " + label + " (graphs, persistent";
  if (!kernels::cuda::PersistentDecodeSupports(DType::kQ4_1, (*model)->config().head_dim,
                                               DType::kBF16)) {
    PrintRow(persistent + ")", "skipped: no cooperative launch on this device", "", "", -1);
  } else {
    const Run on = Decode(**model, 1, true, steps, 1, {.persistent = true});
    failed |= !PrintAgainst(persistent + ")", on, graphs, "per-kernel");
    failed |= !PrintAgainst("decode batch-1 " + label + " (no graphs, persistent)",
                            Decode(**model, 1, false, steps, 1, {.persistent = true}), eager,
                            "per-kernel");
    if (!kernels::cuda::ProgrammaticLaunchSupported()) {
      PrintRow(persistent + ", L2 prefetch)",
               "skipped: the bulk L2 prefetch needs compute capability 9.0", "", "", -1);
    } else {
      failed |= !PrintAgainst(
          persistent + ", L2 prefetch)",
          Decode(**model, 1, true, steps, 1, {.l2_prefetch = true, .persistent = true}), on,
          "without");
    }
  }

  // TP=2 on the same model: graphs (with the NCCL collectives inside them)
  // against TP=1, and eager launches against graphs.
  const std::string tp2 = "decode TP=2 batch-1 " + label;
  if (::tpserve::kernels::cuda::DeviceCount() < 2) {
    PrintRow(tp2 + " (graphs)", "skipped: needs 2 CUDA devices", "", "", -1);
    PrintRow(tp2 + " (no graphs)", "skipped: needs 2 CUDA devices", "", "", -1);
  } else {
    const Run tp2_graphs = Decode(**model, 1, true, steps, 2);
    const Run tp2_eager = Decode(**model, 1, false, steps, 2);
    if (tp2_graphs.error.empty()) {
      PrintRow(tp2 + " (graphs)", "ok", Fmt("%.1f tok/s", tp2_graphs.tokens_per_s),
               Fmt("TP=1 %.1f tok/s", graphs.tokens_per_s),
               tp2_graphs.tokens_per_s / graphs.tokens_per_s);
    } else {
      PrintRow(tp2 + " (graphs)", "FAIL: " + tp2_graphs.error, "", "", -1);
      failed = 1;
    }
    if (!tp2_eager.error.empty()) {
      PrintRow(tp2 + " (no graphs)", "FAIL: " + tp2_eager.error, "", "", -1);
      failed = 1;
    } else {
      const bool base = tp2_graphs.error.empty();
      PrintRow(tp2 + " (no graphs)", "ok", Fmt("%.1f tok/s", tp2_eager.tokens_per_s),
               base ? Fmt("TP=2 graphs %.1f tok/s", tp2_graphs.tokens_per_s) : "TP=2 graphs failed",
               base ? tp2_eager.tokens_per_s / tp2_graphs.tokens_per_s : -1);
    }
  }
  // Prefill at each size: the GEMMs on the mma.sync kernel (on weight
  // copies, then dequantising the weights), then on the wgmma ones.
  std::vector<int> sizes = {absl::GetFlag(FLAGS_prefill_tokens)};
  if (const int step = absl::GetFlag(FLAGS_prefill_step_tokens); step > 0 && step != sizes[0]) {
    sizes.push_back(step);
  }
  const std::vector<Run> mma = Prefill(**model, sizes, "mma", 5);
  std::vector<std::pair<std::string, std::vector<Run>>> others;
  for (const char* gemm : {"mma_dequant", "wgmma", "wgmma_tma"}) {
    const bool runs = std::string(gemm) == "mma_dequant" || kernels::cuda::WgmmaSupported();
    others.push_back({gemm, runs ? Prefill(**model, sizes, gemm, 5) : std::vector<Run>{}});
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string prefill = absl::StrCat("prefill ", sizes[i], " tokens ", label);
    if (mma[i].error.empty()) {
      PrintRow(prefill, "ok", Fmt("%.0f tok/s", mma[i].tokens_per_s), "", -1);
    } else {
      PrintRow(prefill, "FAIL: " + mma[i].error, "", "", -1);
      failed = 1;
    }
    for (const auto& [gemm, runs] : others) {
      const std::string row = absl::StrCat(prefill, " (", gemm, ")");
      if (runs.empty()) {
        PrintRow(row, "skipped: the wgmma kernels need an sm_90 device", "", "", -1);
      } else if (!runs[i].error.empty() || !mma[i].error.empty()) {
        PrintRow(row, "FAIL: " + (runs[i].error.empty() ? mma[i].error : runs[i].error), "", "",
                 -1);
        failed = 1;
      } else {
        PrintRow(row, "ok", Fmt("%.0f tok/s", runs[i].tokens_per_s),
                 Fmt("mma.sync %.0f tok/s", mma[i].tokens_per_s),
                 runs[i].tokens_per_s / mma[i].tokens_per_s);
      }
    }
  }
  if (absl::GetFlag(FLAGS_model).empty() && !quick) {
    // The modelled shape (gpu_check prints the model's prediction next to it).
    std::string small_label;
    const std::string small = GenerateModel(false, &small_label, /*smollm2_shape=*/true);
    absl::StatusOr<std::unique_ptr<ModelSource>> sm =
        small.empty() ? absl::NotFoundError("no model") : OpenModel(small);
    for (int batch : {1, 16}) {
      const std::string row =
          "decode batch-" + std::to_string(batch) + " " + small_label + " (graphs)";
      const Run r = sm.ok() ? Decode(**sm, batch, true, steps) : Run{.error = "no model"};
      if (!r.error.empty()) {
        PrintRow(row, "FAIL: " + r.error, "", "", -1);
        failed = 1;
        continue;
      }
      const double roof = copy_bw / static_cast<double>(r.weight_bytes);
      PrintRow(row, "ok", Fmt("%.1f tok/s", r.tokens_per_s),
               Fmt("roofline %.1f tok/s", roof * batch), r.tokens_per_s / (roof * batch));
    }
  }
  return failed;
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) { return tpserve::Main(argc, argv); }
