// CUDA engine vs CPU engine: Engine::ForwardLogits with backend "cuda"
// (quantized weights on the device, fused-dequant GEMMs) against backend
// "cpu" with f32_weights (the reference: the same dequantised values
// multiplied in f32), on a generated Q4_1 model (tests/testmodel) and the
// default model. Batches: a mixed prefill of two sequences, a decode step
// (split-KV decode attention), a 100-token prefill (tensor-core GEMMs and
// attention) and a decode after it; on a device also a 300-token prefill
// and a decode at context 301 (two split-KV partitions), which the emulator
// would take minutes over. TP=1 always; TP=2 (two threads, one device each,
// NCCL) when at least two devices are visible. The CUDA-emulator twin
// (cuda_engine_parity_test_emu) runs on the generated model only (the
// default model would take many minutes there), TP=2 with two emulated
// devices and the emulator's Gloo-backed communicator in place of NCCL.
// Also checks that Step's greedy token equals the argmax of the CUDA logits
// path on a decode batch. The logit comparisons run with an f32 KV cache and
// with a bf16 one, the same dtype on both sides.
//
// Tolerance, as max |cuda - cpu| / max |cpu logit| per row: 1e-3 while every
// batch so far had <= 64 tokens (skinny GEMMs, f32 math on both sides),
// 3e-2 once a batch of more than 64 tokens went through the bf16
// tensor-core GEMMs (bf16 rounding, 2^-9 relative, accumulated over layers;
// the KV cache then carries bf16-rounded values into later steps too).
// The same bounds hold with a bf16 KV cache: both engines round K/V with
// F32ToBF16, so their caches differ only where the two engines' K/V already
// differ and round to neighbouring bf16 values (one bf16 ulp, 2^-8
// relative, on those few elements).
#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device.h"
#include "rendezvous/tcp_kv_store.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"
#include "worker/engine/cuda/engine_parity_util.h"
#include "worker/engine/engine.h"
#include "worker/engine/multi_rank_test_util.h"

#if defined(TPSERVE_CUDA_EMU)
#include "kernels/cuda/emu/emu.h"  // TakeL2Prefetches
#endif

namespace tpserve::cuda_parity {
namespace {

TEST(CudaEngineParity, OneRankMatchesCpuEngine) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  int tested = 0;
  for (const std::string& path : ModelPaths()) {
    SCOPED_TRACE(path);
    absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
    if (!model.ok()) {
      std::printf("model %s not available: %s\n", path.c_str(), model.status().ToString().c_str());
      continue;
    }
    ++tested;
    for (const std::string kv_dtype : {"f32", "bf16"}) {
      SCOPED_TRACE("kv_dtype " + kv_dtype);
      std::printf("%s, %s KV cache:\n", path.c_str(), kv_dtype.c_str());
      const std::vector<Case> cases = Cases((*model)->config().vocab_size);
      const auto want = CpuReference(**model, cases, kv_dtype);
      TcpKvStoreClient unused("127.0.0.1", 1);
      absl::StatusOr<std::unique_ptr<Communicator>> comm =
          CreateGlooCommunicator(unused, 0, 1, GlooOptions());
      ASSERT_TRUE(comm.ok()) << comm.status();
      absl::StatusOr<std::unique_ptr<Engine>> engine =
          Engine::Create(**model, **comm, Options("cuda", kv_dtype));
      ASSERT_TRUE(engine.ok()) << engine.status();
      EXPECT_EQ((*engine)->backend(), "cuda");
      EXPECT_EQ((*engine)->kv_dtype(), kv_dtype == "f32" ? DType::kF32 : DType::kBF16);
      std::vector<std::vector<std::vector<float>>> got;
      for (const Case& k : cases) {
        absl::StatusOr<std::vector<std::vector<float>>> l = (*engine)->ForwardLogits(k.batch);
        ASSERT_TRUE(l.ok()) << l.status();
        got.push_back(*l);
      }
      ExpectMatches(cases, want, got);

      // Step samples greedily from the same logits: the token is their argmax.
      StepBatch decode = {{Seq(9, {1, 2, 3, 4, 5}, 0, {30})}};
      absl::StatusOr<std::vector<std::vector<float>>> l = (*engine)->ForwardLogits(decode);
      ASSERT_TRUE(l.ok()) << l.status();
      StepBatch next = {{Seq(9, {7}, 5, {30})}};
      absl::StatusOr<std::vector<std::vector<float>>> nl = (*engine)->ForwardLogits(next);
      ASSERT_TRUE(nl.ok()) << nl.status();
      absl::StatusOr<StepOutput> out = (*engine)->Step(next);  // rewrites position 5 identically
      ASSERT_TRUE(out.ok()) << out.status();
      ASSERT_EQ(out->tokens.size(), 1u);
      const std::vector<float>& row = (*nl)[0];
      EXPECT_EQ(out->tokens[0].token, std::max_element(row.begin(), row.end()) - row.begin());
    }
  }
  if (tested == 0) GTEST_SKIP() << "skipped: no model available";
}

// A run of prefill and decode steps over growing sequences (16-token blocks,
// numbered in order of use): decode batches of 1-4 sequences, a prefill in
// between, and a larger prefill that regrows the scratch (dropping every
// graph). `long_context`: a 250-token sequence whose decodes cross one
// 256-token partition, and a 330-token prefill; without it the prefills are
// short (for TP=2 under the emulator).
std::vector<std::pair<std::string, StepBatch>> GraphSteps(int vocab, bool long_context) {
  TokenStream tok(99, vocab);
  // Sequence id -> (next position, block table of 16-token blocks).
  std::map<uint64_t, std::pair<int, std::vector<int32_t>>> seqs;
  int next_block = 0;
  auto grow = [&](uint64_t id, int tokens) {
    auto& [pos, table] = seqs[id];
    const int start = pos;
    pos += tokens;
    while (static_cast<int>(table.size()) * 16 < pos) table.push_back(next_block++);
    return start;
  };
  auto prefill = [&](uint64_t id, int n) {
    const int start = grow(id, n);
    return Seq(id, tok(n), start, seqs[id].second);
  };
  auto decode = [&](std::vector<uint64_t> ids) {
    StepBatch b;
    for (uint64_t id : ids) {
      const int start = grow(id, 1);
      b.seqs.push_back(Seq(id, tok(1), start, seqs[id].second));
    }
    return b;
  };
  const int second = long_context ? 250 : 24;
  std::vector<std::pair<std::string, StepBatch>> steps;
  steps.push_back({absl::StrCat("prefill 20 + ", second, " + 5"),
                   {{prefill(1, 20), prefill(2, second), prefill(3, 5)}}});
  for (int i = 0; i < 8; ++i) {  // long_context: seq 2 crosses context 256 at i = 5
    steps.push_back({absl::StrCat("decode 1,2,3 #", i), decode({1, 2, 3})});
  }
  steps.push_back({"decode 1,3", decode({1, 3})});
  steps.push_back({"decode 2", decode({2})});
  steps.push_back({"prefill 40", {{prefill(4, 40)}}});
  steps.push_back({"decode 1,2,3,4", decode({1, 2, 3, 4})});
  const int regrow = long_context ? 330 : 64;
  steps.push_back({absl::StrCat("prefill ", regrow, " (regrows scratch)"), {{prefill(5, regrow)}}});
  steps.push_back({"decode 4,5", decode({4, 5})});
  steps.push_back({"decode 1,2,3,4,5", decode({1, 2, 3, 4, 5})});
  EXPECT_LE(next_block, 256);  // Options(): 64 MiB of KV is far more than this
  return steps;
}

// Runs `steps` on a graphs engine and an eager one of the same rank; rank 0
// checks that every step's logits agree and that decode steps, and only
// they, were replayed from graphs. Returns the number of replayed steps.
int ExpectGraphsMatchEager(Engine& graphs, Engine& eager,
                           const std::vector<std::pair<std::string, StepBatch>>& steps, int rank) {
  int replayed = 0;
  for (const auto& [name, batch] : steps) {
    SCOPED_TRACE(name);
    absl::StatusOr<std::vector<std::vector<float>>> got = graphs.ForwardLogits(batch);
    EXPECT_TRUE(got.ok()) << got.status();
    absl::StatusOr<std::vector<std::vector<float>>> want = eager.ForwardLogits(batch);
    EXPECT_TRUE(want.ok()) << want.status();
    if (!got.ok() || !want.ok()) return -1;
    const bool decode_step = batch.seqs[0].tokens.size() == 1;
    EXPECT_EQ(graphs.last_timings().graph_replay, decode_step);
    replayed += graphs.last_timings().graph_replay;
    EXPECT_FALSE(eager.last_timings().graph_replay);
    if (rank != 0) continue;
    EXPECT_EQ(got->size(), want->size());
    for (size_t i = 0; i < want->size() && i < got->size(); ++i) {
      // Only the decode-attention merge order can differ (a padded partition
      // count); the tolerance is far below any bf16 or int8 effect.
      EXPECT_LT(RelMax((*got)[i], (*want)[i]), 1e-5) << "sequence " << i;
    }
  }
  return replayed;
}

// Decode steps replayed from CUDA graphs (padded to batch buckets, context
// bound to partition buckets) give the logits eager launches give, across
// batch sizes 1-4, a context crossing one 256-token partition, a prefill in
// between, and a larger prefill that regrows scratch (dropping every graph).
TEST(CudaEngineParity, DecodeGraphsMatchEagerLaunches) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  EnginePair pair;  // [0] graphs, [1] eager
  const absl::Status made = MakeEnginePair(
      **model,
      [](int e) {
        EngineOptions o = Options("cuda");
        o.cuda_graphs = e == 0;
        return o;
      },
      &pair);
  ASSERT_TRUE(made.ok()) << made;
  const auto steps = GraphSteps((*model)->config().vocab_size, /*long_context=*/true);
  EXPECT_EQ(ExpectGraphsMatchEager(*pair.engines[0], *pair.engines[1], steps, 0), 13);
}

// Runs GraphSteps (short contexts) on two engines, `set(o, true)` and
// `set(o, false)`, both with and without decode graphs: every step's logits
// must have the same bits.
void ExpectSameBitsEitherWay(const ModelSource& model,
                             const std::function<void(EngineOptions&, bool)>& set) {
  for (bool graphs : {true, false}) {
    SCOPED_TRACE(graphs ? "graphs" : "eager");
    EnginePair pair;  // [0] set(o, true), [1] set(o, false)
    const absl::Status made = MakeEnginePair(
        model,
        [graphs, &set](int e) {
          EngineOptions o = Options("cuda");
          o.cuda_graphs = graphs;
          set(o, e == 0);
          return o;
        },
        &pair);
    ASSERT_TRUE(made.ok()) << made;
    for (const auto& [name, batch] : GraphSteps(model.config().vocab_size, false)) {
      SCOPED_TRACE(name);
      absl::StatusOr<std::vector<std::vector<float>>> got = pair.engines[0]->ForwardLogits(batch);
      absl::StatusOr<std::vector<std::vector<float>>> want = pair.engines[1]->ForwardLogits(batch);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_TRUE(want.ok()) << want.status();
      EXPECT_EQ(*got, *want);
    }
  }
}

// Programmatic dependent launch (kernels/cuda/launch.cuh) changes when the
// decode-path kernels start, not what they compute: with it on and off the
// engine gives the same bits at every GraphSteps step (decode batches of 1
// with the norms and adds inside the GEMMs, batches of 2-5 on the decode
// GEMM, prefills in between), eager and from graphs. Under the emulator
// each programmatic kernel's first blocks run up to their wait before the
// kernel(s) before them, so a read before the wait shows here.
TEST(CudaEngineParity, ProgrammaticLaunchesGiveThePlainLaunchesBits) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  if (!::tpserve::kernels::cuda::ProgrammaticLaunchSupported()) {
    GTEST_SKIP() << "skipped: programmatic dependent launch needs compute capability 9.0";
  }
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  ExpectSameBitsEitherWay(**model, [](EngineOptions& o, bool on) { o.cuda_pdl = on; });
}

// The batch-1 GEMMs' L2 prefetch of the next GEMM's weights
// (EngineOptions::cuda_l2_prefetch) is a hint: the same bits with it on and
// off. Under the emulator every prefetched range (each linear's weights, the
// next layer's QKV, the first layer's after the LM head) must lie inside one
// device allocation, 16-byte aligned, or the run aborts; on a device before
// sm_90 nothing is prefetched.
TEST(CudaEngineParity, L2PrefetchGivesTheSameBits) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  ExpectSameBitsEitherWay(**model, [](EngineOptions& o, bool on) { o.cuda_l2_prefetch = on; });
#if defined(TPSERVE_CUDA_EMU)
  EXPECT_FALSE(tpserve_emu::TakeL2Prefetches().empty());  // the batch-1 steps asked for some
#endif
}

// One sequence: a `prompt`-token prefill, then `decodes` one-token steps
// (16-token blocks numbered in order).
std::vector<StepBatch> OneSequence(int vocab, int prompt, int decodes) {
  TokenStream tok(7, vocab);
  std::vector<int32_t> table;
  auto blocks_for = [&table](int tokens) {
    while (static_cast<int>(table.size()) * 16 < tokens) {
      table.push_back(static_cast<int32_t>(table.size()));
    }
    return table;
  };
  std::vector<StepBatch> steps;
  steps.push_back({{Seq(1, tok(prompt), 0, blocks_for(prompt))}});
  for (int i = 0; i < decodes; ++i) {
    steps.push_back({{Seq(1, tok(1), prompt + i, blocks_for(prompt + i + 1))}});
  }
  return steps;
}

// Engines [0] with EngineOptions::cuda_persistent_decode and [1] without,
// otherwise alike: a `kv_dtype` KV cache, decode graphs if `graphs`, and
// [0] prefetching the next GEMV's weights into L2 if `prefetch`.
absl::Status MakePersistentPair(const ModelSource& model, const std::string& kv_dtype, bool graphs,
                                bool prefetch, EnginePair* pair) {
  return MakeEnginePair(
      model,
      [&](int e) {
        EngineOptions o = Options("cuda", kv_dtype);
        o.cuda_graphs = graphs;
        o.cuda_persistent_decode = e == 0;
        o.cuda_l2_prefetch = e == 0 && prefetch;
        return o;
      },
      pair);
}

// Runs `steps` on both engines of `pair`: the same logit bits at every
// step, and engine 0 replaying a graph from the second step on if `graphs`.
void ExpectSameBitsEachStep(const EnginePair& pair, const std::vector<StepBatch>& steps,
                            bool graphs) {
  int step = 0;
  for (const StepBatch& batch : steps) {
    SCOPED_TRACE(absl::StrCat("step ", step++));
    absl::StatusOr<std::vector<std::vector<float>>> got = pair.engines[0]->ForwardLogits(batch);
    absl::StatusOr<std::vector<std::vector<float>>> want = pair.engines[1]->ForwardLogits(batch);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(*got, *want);
    EXPECT_EQ(pair.engines[0]->last_timings().graph_replay, graphs && step > 1);
  }
}

// A one-sequence decode step as one cooperative kernel
// (EngineOptions::cuda_persistent_decode) gives the per-kernel step's bits:
// a 250-token prompt, then 10 decode steps whose context crosses the
// 256-token attention partition (the kernel's merge phase from then on);
// from graphs with a bf16 KV cache and the persistent kernel prefetching
// each next GEMV's weights into L2 (EngineOptions::cuda_l2_prefetch),
// eagerly with an f32 one and no prefetch.
TEST(CudaEngineParity, PersistentDecodeGivesThePerKernelBits) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  const ModelConfig& c = (*model)->config();
  if (!::tpserve::kernels::cuda::PersistentDecodeSupports(DType::kQ4_1, c.head_dim, DType::kBF16)) {
    GTEST_SKIP() << "skipped: no cooperative launch on this device";
  }
  for (const bool graphs : {true, false}) {
    const std::string kv_dtype = graphs ? "bf16" : "f32";
    SCOPED_TRACE(absl::StrCat(graphs ? "graphs" : "eager", ", ", kv_dtype, " KV cache"));
    EnginePair pair;
    const absl::Status made = MakePersistentPair(**model, kv_dtype, graphs, graphs, &pair);
    ASSERT_TRUE(made.ok()) << made;
#if defined(TPSERVE_CUDA_EMU)
    const uint64_t before = tpserve_emu::GridsRun("PersistentDecodeKernel");
#endif
    ExpectSameBitsEachStep(pair, OneSequence(c.vocab_size, 250, 10), graphs);
    EXPECT_NE(pair.engines[0]->kernels().find(", one-sequence decode steps as one cooperative "
                                              "kernel"),
              std::string::npos)
        << pair.engines[0]->kernels();
#if defined(TPSERVE_CUDA_EMU)
    // Every decode step ran the persistent kernel (graph replays included).
    EXPECT_EQ(tpserve_emu::GridsRun("PersistentDecodeKernel") - before, 10u);
    // With the prefetch on, the persistent kernel asked for pieces (the emulator
    // aborts on any outside one allocation or not in whole 16-byte units).
    EXPECT_EQ(!tpserve_emu::TakeL2Prefetches().empty(), graphs);
#endif
  }
}

// The same with an FFN of 2304: the down projection's rows (k = 2304) no
// longer fit one 2048-value tile, so its phase stages x tile by tile (the
// other phases stage x once per thread block and phase); 3 decode steps
// after a 20-token prompt, eagerly, f32 KV cache.
TEST(CudaEngineParity, PersistentDecodeStagesLongRowsTileByTile) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  TestModelSpec spec = GeneratedModelSpec(DType::kQ4_1);
  spec.ffn_size = 2304;
  const std::string path = std::string(::testing::TempDir()) + "/cuda_ffn_2304.gguf";
  if (absl::Status st = WriteTestModel(spec, path); !st.ok()) {
    GTEST_SKIP() << "skipped: cannot generate the model: " << st;
  }
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  ASSERT_TRUE(model.ok()) << model.status();
  if (!::tpserve::kernels::cuda::PersistentDecodeSupports(DType::kQ4_1, (*model)->config().head_dim,
                                                          DType::kF32)) {
    GTEST_SKIP() << "skipped: no cooperative launch on this device";
  }
  EnginePair pair;
  const absl::Status made = MakePersistentPair(**model, "f32", false, false, &pair);
  ASSERT_TRUE(made.ok()) << made;
#if defined(TPSERVE_CUDA_EMU)
  const uint64_t before = tpserve_emu::GridsRun("PersistentDecodeKernel");
#endif
  ExpectSameBitsEachStep(pair, OneSequence(spec.vocab_size, 20, 3), false);
#if defined(TPSERVE_CUDA_EMU)
  EXPECT_EQ(tpserve_emu::GridsRun("PersistentDecodeKernel") - before, 3u);
#endif
}

#if defined(TPSERVE_CUDA_EMU)
// A driver that refuses the cooperative kernel does not fail the step: the
// engine runs that step and every later one per kernel, with the per-kernel
// bits, and kernels() says why. Refused in graph capture (a runtime without
// cooperative graph nodes; the engine captures the per-kernel step
// instead) and refused always, eagerly (cudaErrorCooperativeLaunchTooLarge).
TEST(CudaEngineParity, RefusedPersistentDecodeFallsBackToPerKernelSteps) {
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  using tpserve_emu::CooperativeRefusal;
  struct Restore {  // even when an ASSERT leaves early
    ~Restore() { tpserve_emu::RefuseCooperativeLaunches(CooperativeRefusal::kNone); }
  } restore;
  for (const bool graphs : {true, false}) {
    SCOPED_TRACE(graphs ? "refused in capture, graphs" : "refused always, eager");
    tpserve_emu::RefuseCooperativeLaunches(CooperativeRefusal::kNone);
    EnginePair pair;
    const absl::Status made = MakePersistentPair(**model, "bf16", graphs, false, &pair);
    ASSERT_TRUE(made.ok()) << made;
    tpserve_emu::RefuseCooperativeLaunches(graphs ? CooperativeRefusal::kInCapture
                                                  : CooperativeRefusal::kAlways);
    const uint64_t before = tpserve_emu::GridsRun("PersistentDecodeKernel");
    ExpectSameBitsEachStep(pair, OneSequence((*model)->config().vocab_size, 20, 3), graphs);
    EXPECT_EQ(tpserve_emu::GridsRun("PersistentDecodeKernel") - before, 0u);
    const std::string kernels = pair.engines[0]->kernels();
    EXPECT_NE(
        kernels.find(", one-sequence decode steps per kernel: the cooperative kernel failed ("),
        std::string::npos)
        << kernels;
    EXPECT_NE(kernels.find(graphs ? "cudaErrorStreamCaptureUnsupported"
                                  : "cudaErrorCooperativeLaunchTooLarge"),
              std::string::npos)
        << kernels;
  }
}

// The grids a batch-1 decode step on one rank launches (eager), counted by
// the emulator after a 5-token prefill.
void CountOneDecodeStep(const ModelSource& model, bool persistent, uint64_t* grids) {
  EnginePair pair;
  const absl::Status made = MakeEnginePair(
      model,
      [persistent](int) {
        EngineOptions o = Options("cuda");
        o.cuda_graphs = false;
        o.cuda_persistent_decode = persistent;
        return o;
      },
      &pair);
  ASSERT_TRUE(made.ok()) << made;
  Engine& engine = *pair.engines[0];
  ASSERT_TRUE(engine.ForwardLogits({{Seq(9, {1, 2, 3, 4, 5}, 0, {30})}}).ok());
  const uint64_t before = tpserve_emu::GridsRun("");
  ASSERT_TRUE(engine.ForwardLogits({{Seq(9, {7}, 5, {30})}}).ok());
  *grids = tpserve_emu::GridsRun("") - before;
}

// The per-kernel step: the embedding, 5 kernels per layer (QKV with the
// attention norm inside, attention with RoPE and the KV write inside, O with
// the residual add, gate/up with the FFN norm and SwiGLU, down with the add)
// and the LM head with the final norm. A kernel more per layer fails here.
// With cuda_persistent_decode: the embedding, one kernel for every layer and
// the LM head.
TEST(CudaEngineParity, BatchOneDecodeStepLaunches) {
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  uint64_t per_kernel = 0, persistent = 0;
  CountOneDecodeStep(**model, false, &per_kernel);
  CountOneDecodeStep(**model, true, &persistent);
  EXPECT_EQ(per_kernel, 2 + 5 * static_cast<uint64_t>((*model)->config().num_layers));
  EXPECT_EQ(persistent, 3u);
}
#endif

// The same at TP=2: each rank's decode graphs hold its NCCL all-reduces and
// the LM head's all-gather, captured and replayed at the same steps on both
// ranks (a regrowing prefill drops and recaptures them on both).
TEST(CudaEngineParity, TwoRankDecodeGraphsMatchEagerLaunches) {
  if (::tpserve::kernels::cuda::DeviceCount() < 2) GTEST_SKIP() << "skipped: needs 2 CUDA devices";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  const auto steps = GraphSteps((*model)->config().vocab_size, /*long_context=*/false);
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  int replayed[2] = {-1, -1};
  auto rank_fn = [&](int rank) {
    TcpKvStoreClient store("127.0.0.1", server.port());
    std::unique_ptr<Communicator> comms[2];
    std::unique_ptr<Engine> engines[2];  // [0] graphs, [1] eager
    for (int e = 0; e < 2; ++e) {
      NcclOptions no;
      no.device = rank;
      no.prefix = absl::StrCat("cuda_engine_graphs_test/", e);
      absl::StatusOr<std::unique_ptr<Communicator>> comm =
          CreateNcclCommunicator(store, rank, 2, no);
      ASSERT_TRUE(comm.ok()) << comm.status();
      comms[e] = *std::move(comm);
      EngineOptions o = Options("cuda");
      o.device = rank;
      o.cuda_graphs = e == 0;
      absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(**model, *comms[e], o);
      ASSERT_TRUE(engine.ok()) << engine.status();
      engines[e] = *std::move(engine);
    }
    replayed[rank] = ExpectGraphsMatchEager(*engines[0], *engines[1], steps, rank);
    // A rank that stopped early leaves its peer waiting: end that wait.
    if (replayed[rank] < 0) {
      for (auto& c : comms) c->Abort();
      return;
    }
    // Device sampling from a replayed step: three sequences padded to a
    // bucket of four, so each rank's gathered slice has a padding row after
    // the sampled ones. Greedy tokens are the argmax of the eager logits
    // (the step rewrites its positions' KV identically).
    const StepBatch& three = steps[1].second;
    absl::StatusOr<StepOutput> out = engines[0]->Step(three);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(engines[0]->last_timings().graph_replay);
    absl::StatusOr<std::vector<std::vector<float>>> want = engines[1]->ForwardLogits(three);
    ASSERT_TRUE(want.ok()) << want.status();
    if (rank != 0) return;
    EXPECT_TRUE(engines[0]->last_timings().device_sampling);
    ASSERT_EQ(out->tokens.size(), 3u);
    ASSERT_EQ(want->size(), 3u);
    for (int i = 0; i < 3; ++i) {
      const std::vector<float>& row = (*want)[i];
      EXPECT_EQ(out->tokens[i].token, std::max_element(row.begin(), row.end()) - row.begin())
          << "sequence " << i;
    }
  };
  std::thread r1(rank_fn, 1);
  rank_fn(0);
  r1.join();
  EXPECT_EQ(replayed[0], 13);
  EXPECT_EQ(replayed[1], 13);
}

// Step samples on the device (kernels/cuda/sampling.h) unless a row asks for
// logprobs; both paths must pick the same tokens from the same logits. Two
// CUDA engines generate 10 tokens for four sequences with greedy, top-k,
// top-p, min-p and all three penalties (the history grows each step): one
// samples on the device, the other is forced onto the host sampler by
// logprobs = true.
TEST(CudaEngineParity, DeviceSamplingMatchesHostSampling) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  EnginePair pair;  // [0] device sampling, [1] host sampling
  const absl::Status made = MakeEnginePair(
      **model, [](int) { return Options("cuda"); }, &pair);
  ASSERT_TRUE(made.ok()) << made;
  std::vector<SamplingParams> params(4);
  params[1].temperature = 0.8f;
  params[1].top_k = 40;
  params[1].repetition_penalty = 1.3f;
  params[1].seed = 7;
  params[2].temperature = 1.2f;
  params[2].top_p = 0.9f;
  params[2].presence_penalty = 0.5f;
  params[2].frequency_penalty = 0.4f;
  params[2].seed = 8;
  params[3].temperature = 0.7f;
  params[3].min_p = 0.05f;
  params[3].frequency_penalty = -0.3f;
  params[3].seed = 9;
  const int vocab = (*model)->config().vocab_size;
  std::vector<std::vector<int32_t>> generated[2];
  for (int e = 0; e < 2; ++e) {
    generated[e].assign(4, {});
    std::vector<int> pos(4);
    StepBatch batch;
    for (int i = 0; i < 4; ++i) {
      std::vector<int32_t> prompt;
      for (int t = 0; t < 12 + 5 * i; ++t) prompt.push_back((t * 131 + i * 17) % vocab);
      SequenceInput s = Seq(100 + i, prompt, 0, {4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3});
      s.prompt_len = static_cast<int32_t>(prompt.size());
      s.sampling = params[i];
      s.sampling.logprobs = e == 1;
      pos[i] = static_cast<int>(prompt.size());
      batch.seqs.push_back(s);
    }
    for (int step = 0; step < 10; ++step) {
      absl::StatusOr<StepOutput> out = pair.engines[e]->Step(batch);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(pair.engines[e]->last_timings().device_sampling, e == 0);
      ASSERT_EQ(out->tokens.size(), 4u);
      for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(out->tokens[i].seq_id, 100u + i);
        generated[e][i].push_back(out->tokens[i].token);
        batch.seqs[i].tokens = {out->tokens[i].token};
        batch.seqs[i].start_pos = pos[i]++;
      }
    }
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(generated[0][i], generated[1][i]) << "sequence " << i;
  }
}

// A model the CUDA kernels cannot run fails at Engine::Create with a clear
// error, not at the first step.
TEST(CudaEngineParity, HeadDimAbove256IsRejectedAtCreate) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = std::string(::testing::TempDir()) + "/cuda_head_dim_320.gguf";
  TestModelSpec spec;
  spec.hidden_size = 640;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  spec.num_layers = 1;
  spec.ffn_size = 64;
  spec.vocab_size = 512;
  ASSERT_TRUE(WriteTestModel(spec, path).ok());
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  ASSERT_TRUE(model.ok()) << model.status();
  TcpKvStoreClient unused("127.0.0.1", 1);
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateGlooCommunicator(unused, 0, 1, GlooOptions());
  ASSERT_TRUE(comm.ok()) << comm.status();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(**model, **comm, Options("cuda"));
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("head_dim 320"), absl::string_view::npos)
      << engine.status();
}

TEST(CudaEngineParity, TwoRanksOverNcclMatchCpuEngine) {
  if (::tpserve::kernels::cuda::DeviceCount() < 2) GTEST_SKIP() << "skipped: needs 2 CUDA devices";
  int tested = 0;
  for (const std::string& path : ModelPaths()) {
    SCOPED_TRACE(path);
    absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
    if (!model.ok()) continue;
    ++tested;
    // The default bf16 KV cache (the f32 one is covered at one rank above).
    const std::vector<Case> cases = Cases((*model)->config().vocab_size);
    const auto want = CpuReference(**model, cases, "bf16");
    TcpKvStoreServer server;
    ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
    std::vector<std::vector<std::vector<float>>> got;
    std::vector<std::string> errors(2);
    int32_t sampled[2] = {-1, -2};  // rank 0: device-sampled, host-sampled token
    auto rank_fn = [&](int rank) {
      TcpKvStoreClient store("127.0.0.1", server.port());
      NcclOptions no;
      no.device = rank;
      no.prefix = absl::StrCat("cuda_engine_test/", path);
      absl::StatusOr<std::unique_ptr<Communicator>> comm =
          CreateNcclCommunicator(store, rank, 2, no);
      if (!comm.ok()) {
        errors[rank] = comm.status().ToString();
        return;
      }
      EngineOptions o = Options("cuda", "bf16");
      o.device = rank;
      absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(**model, **comm, o);
      if (!engine.ok()) {
        errors[rank] = engine.status().ToString();
        (*comm)->Abort();
        return;
      }
      for (const Case& k : cases) {
        absl::StatusOr<std::vector<std::vector<float>>> l = (*engine)->ForwardLogits(k.batch);
        if (!l.ok()) {
          errors[rank] = l.status().ToString();
          (*comm)->Abort();
          return;
        }
        if (rank == 0) got.push_back(*l);
      }
      // Sampling from the gathered vocabulary slices: on the device (slices
      // reassembled there), then on the host (logprobs), for the same step.
      StepBatch next = {{Seq(9, {1, 2, 3, 4, 5}, 0, {30})}};
      next.seqs[0].sampling.temperature = 0.9f;
      next.seqs[0].sampling.top_k = 50;
      next.seqs[0].sampling.seed = 3;
      for (int pass = 0; pass < 2; ++pass) {
        next.seqs[0].sampling.logprobs = pass == 1;
        absl::StatusOr<StepOutput> out = (*engine)->Step(next);  // rewrites the same KV
        if (!out.ok()) {
          errors[rank] = out.status().ToString();
          (*comm)->Abort();
          return;
        }
        if (rank == 0 && out->tokens.size() == 1) sampled[pass] = out->tokens[0].token;
        if (rank == 0 && (*engine)->last_timings().device_sampling != (pass == 0)) {
          errors[rank] = "device sampling not used as expected";
        }
      }
    };
    std::thread r1(rank_fn, 1);
    rank_fn(0);
    r1.join();
    ASSERT_EQ(errors[0], "");
    ASSERT_EQ(errors[1], "");
    ExpectMatches(cases, want, got);
    EXPECT_EQ(sampled[0], sampled[1]) << "device and host sampling disagree";
  }
  if (tested == 0) GTEST_SKIP() << "skipped: no model available";
}

}  // namespace
}  // namespace tpserve::cuda_parity
