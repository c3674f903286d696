#include "worker/engine/cuda/engine_parity_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_split.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "rendezvous/tcp_kv_store.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/engine/multi_rank_test_util.h"

namespace tpserve::cuda_parity {

SequenceInput Seq(uint64_t id, std::vector<int32_t> tokens, int start,
                  std::vector<int32_t> blocks) {
  SequenceInput s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.prompt_len = 100000;
  s.block_table = std::move(blocks);
  return s;
}

std::vector<Case> Cases(int vocab) {
  TokenStream tok(12345, vocab);
  const std::vector<int32_t> a = {0, 1, 2, 3}, b = {4, 5}, c = {6, 7, 8, 9, 10, 11, 12, 13};
  std::vector<Case> cases;
  cases.push_back({"prefill 40 + 17", {{Seq(1, tok(40), 0, a), Seq(2, tok(17), 0, b)}}, 1e-3});
  cases.push_back({"decode", {{Seq(1, tok(1), 40, a), Seq(2, tok(1), 17, b)}}, 1e-3});
  cases.push_back({"prefill 100", {{Seq(3, tok(100), 0, c)}}, 3e-2});
  cases.push_back({"decode at 101", {{Seq(3, tok(1), 100, c), Seq(1, tok(1), 41, a)}}, 3e-2});
  // One token at one rank: the norms and residual adds run inside the GEMMs
  // (LayerStep::fuse_norms).
  cases.push_back({"decode one token", {{Seq(1, tok(1), 42, a)}}, 1e-3});
#if !defined(TPSERVE_CUDA_EMU)
  std::vector<int32_t> d(19);  // 304 tokens of 16-token blocks
  for (int i = 0; i < 19; ++i) d[i] = 14 + i;
  cases.push_back({"prefill 300", {{Seq(4, tok(300), 0, d)}}, 3e-2});
  cases.push_back({"decode at 301", {{Seq(4, tok(1), 300, d)}}, 3e-2});
#endif
  return cases;
}

double RelMax(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    // A NaN would vanish in std::max (every comparison with it is false).
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return diff / std::max(scale, 1e-30);
}

EngineOptions Options(const std::string& backend, const std::string& kv_dtype) {
  EngineOptions o;
  o.backend = backend;
  o.f32_weights = backend == "cpu";
  o.kv_dtype = kv_dtype;
  o.kv_cache_bytes = int64_t{64} << 20;
  o.block_size = 16;
  return o;
}

std::vector<std::vector<std::vector<float>>> CpuReference(const ModelSource& model,
                                                          const std::vector<Case>& cases,
                                                          const std::string& kv_dtype) {
  TcpKvStoreClient unused("127.0.0.1", 1);
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateGlooCommunicator(unused, 0, 1, GlooOptions());
  EXPECT_TRUE(comm.ok()) << comm.status();
  if (!comm.ok()) return {};
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(model, **comm, Options("cpu", kv_dtype));
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  std::vector<std::vector<std::vector<float>>> out;
  for (const Case& k : cases) {
    absl::StatusOr<std::vector<std::vector<float>>> l = (*engine)->ForwardLogits(k.batch);
    EXPECT_TRUE(l.ok()) << l.status();
    out.push_back(l.ok() ? *l : std::vector<std::vector<float>>{});
  }
  return out;
}

void ExpectMatches(const std::vector<Case>& cases,
                   const std::vector<std::vector<std::vector<float>>>& want,
                   const std::vector<std::vector<std::vector<float>>>& got) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    ASSERT_EQ(got[i].size(), want[i].size());
    for (size_t s = 0; s < want[i].size(); ++s) {
      const double d = RelMax(got[i][s], want[i][s]);
      EXPECT_LT(d, cases[i].tol) << "sequence " << s;
      std::printf("%s seq %zu: rel max diff %.2e (tol %.0e)\n", cases[i].name.c_str(), s, d,
                  cases[i].tol);
    }
  }
}

TestModelSpec GeneratedModelSpec(DType dtype) {
  TestModelSpec spec;
  spec.hidden_size = 256;
  spec.num_layers = 3;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.ffn_size = 512;
  spec.vocab_size = 4096;
  spec.dtype = dtype;
  return spec;
}

std::vector<std::string> ModelPaths() {
  const char* env = std::getenv("TPSERVE_GPU_TEST_MODELS");
  if (env != nullptr && *env != '\0') return absl::StrSplit(env, ':', absl::SkipEmpty());
  std::vector<std::string> paths;
  const std::string gen = std::string(::testing::TempDir()) + "/cuda_engine_q4_1.gguf";
  const TestModelSpec spec = GeneratedModelSpec(DType::kQ4_1);
  // Needs the default model's vocabulary; without it only the default model
  // (also absent then) would be tried, and both are reported as unavailable.
  absl::Status st = WriteTestModel(spec, gen);
  if (st.ok()) {
    paths.push_back(gen);
  } else {
    std::printf("cannot generate a test model: %s\n", st.ToString().c_str());
  }
#if !defined(TPSERVE_CUDA_EMU)
  paths.push_back(DefaultModelPath());
#endif
  return paths;
}

absl::Status MakeEnginePair(const ModelSource& model,
                            const std::function<EngineOptions(int)>& options, EnginePair* pair) {
  TcpKvStoreClient unused("127.0.0.1", 1);
  for (int e = 0; e < 2; ++e) {
    TPS_ASSIGN_OR_RETURN(pair->comms[e], CreateGlooCommunicator(unused, 0, 1, GlooOptions()));
    TPS_ASSIGN_OR_RETURN(pair->engines[e], Engine::Create(model, *pair->comms[e], options(e)));
  }
  return absl::OkStatus();
}

}  // namespace tpserve::cuda_parity
