// Tensor-parallel invariance of the CUDA backend (EngineOptions::tp_invariant):
// the same steps (a mixed prefill, a decode, a 70-token prefill past the
// skinny-GEMM range, a decode after it) at TP = 1, 2 and 3, one thread and
// one device per rank over NCCL, must give bit-identical rank-0 logits. Every
// TP replays its decode steps from CUDA graphs (at TP > 1 with the NCCL
// collectives inside them). Models:
// generated 9q/3kv Q4_1 (uneven KV-group split at TP=2, FFN of 7 blocks) and
// 4q/2kv F32 (KV replication at TP=3). The invariant logits stay within
// kModeTol of the default mode's (which runs prefill on bf16 tensor cores).
// The _emu twin runs under the CUDA emulator with three emulated devices
// (the emulator's Gloo-backed "nccl").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/device.h"
#include "rendezvous/tcp_kv_store.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/nccl/nccl_communicator.h"
#include "worker/engine/cuda/engine_parity_util.h"
#include "worker/engine/engine.h"
#include "worker/model/model_source.h"

namespace tpserve {
namespace {

constexpr double kModeTol = 3e-2;

using cuda_parity::Seq;

std::vector<int32_t> Tokens(int n, int vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (int32_t& v : t) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<int32_t>((seed >> 33) % static_cast<uint64_t>(vocab));
  }
  return t;
}

std::vector<StepBatch> Steps(int vocab) {
  std::vector<StepBatch> s(4);
  s[0].seqs = {Seq(1, Tokens(20, vocab, 1), 0, {0, 1}), Seq(2, Tokens(9, vocab, 2), 0, {2})};
  s[1].seqs = {Seq(1, Tokens(1, vocab, 3), 20, {0, 1}), Seq(2, Tokens(1, vocab, 4), 9, {2})};
  s[2].seqs = {Seq(3, Tokens(70, vocab, 5), 0, {3, 4, 5, 6, 7})};
  s[3].seqs = {Seq(3, Tokens(1, vocab, 6), 70, {3, 4, 5, 6, 7}),
               Seq(1, Tokens(1, vocab, 7), 21, {0, 1})};
  return s;
}

// Rank 0's logits of every step, concatenated, from `world` CUDA ranks.
std::vector<float> RunCuda(const std::string& path, int world, bool invariant) {
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  const std::vector<StepBatch> steps = Steps((*model)->config().vocab_size);
  TcpKvStoreServer server;
  EXPECT_TRUE(server.Start("127.0.0.1", 0).ok());
  std::vector<float> out;
  std::vector<std::string> errors(world);
  auto rank_fn = [&](int rank) {
    TcpKvStoreClient store("127.0.0.1", server.port());
    NcclOptions no;
    no.device = rank;
    no.prefix = absl::StrCat("tp_invariance/", path, "/", world, "/", invariant);
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        CreateNcclCommunicator(store, rank, world, no);
    if (!comm.ok()) {
      errors[rank] = comm.status().ToString();
      return;
    }
    EngineOptions o;
    o.backend = "cuda";
    o.device = rank;
    o.tp_invariant = invariant;
    o.kv_cache_bytes = int64_t{16} << 20;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(**model, **comm, o);
    if (!engine.ok()) {
      errors[rank] = engine.status().ToString();
      (*comm)->Abort();
      return;
    }
    for (const StepBatch& b : steps) {
      absl::StatusOr<std::vector<std::vector<float>>> l = (*engine)->ForwardLogits(b);
      if (!l.ok()) {
        errors[rank] = l.status().ToString();
        (*comm)->Abort();
        return;
      }
      for (const std::vector<float>& row : *l) out.insert(out.end(), row.begin(), row.end());
    }
  };
  std::vector<std::thread> others;
  for (int r = 1; r < world; ++r) others.emplace_back(rank_fn, r);
  rank_fn(0);
  for (std::thread& t : others) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "TP=" << world << " rank " << r;
  return out;
}

void CheckInvariance(const TestModelSpec& spec, const std::string& name) {
  if (::tpserve::kernels::cuda::DeviceCount() < 3) GTEST_SKIP() << "skipped: needs 3 CUDA devices";
  const std::string path = std::string(::testing::TempDir()) + "/" + name;
  ASSERT_TRUE(WriteTestModel(spec, path).ok());
  const std::vector<float> tp1 = RunCuda(path, 1, true);
  ASSERT_EQ(tp1.size(), 7u * spec.vocab_size);  // 2 + 2 + 1 + 2 rows
  double max_abs = 0;
  for (float v : tp1) max_abs = std::max(max_abs, double{std::fabs(v)});
  ASSERT_GT(max_abs, 0.1);
  for (int world : {2, 3}) {
    const std::vector<float> tpn = RunCuda(path, world, true);
    ASSERT_EQ(tpn.size(), tp1.size());
    EXPECT_EQ(std::memcmp(tp1.data(), tpn.data(), tp1.size() * sizeof(float)), 0)
        << name << ": TP=" << world << " differs from TP=1";
  }
  const std::vector<float> fast = RunCuda(path, 1, false);
  ASSERT_EQ(fast.size(), tp1.size());
  double diff = 0;
  for (size_t i = 0; i < tp1.size(); ++i) {
    // A NaN would vanish in std::max: count it as an infinite difference.
    const double d = std::fabs(double{tp1[i]} - fast[i]);
    diff = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(diff, d);
  }
  std::printf("%s: max|logit| %.3f; invariant vs default mode at TP=1: %.2e\n", name.c_str(),
              max_abs, diff / max_abs);
  EXPECT_LE(diff / max_abs, kModeTol);
}

TEST(CudaEngineTpInvariance, Generated9q3kvQ4_1) {
  TestModelSpec s;
  s.hidden_size = 288;
  s.num_heads = 9;
  s.num_kv_heads = 3;
  s.ffn_size = 224;
  s.vocab_size = 4096;
  s.dtype = DType::kQ4_1;
  s.seed = 3;
  CheckInvariance(s, "cuda_inv_9q3kv_q4_1.gguf");
}

TEST(CudaEngineTpInvariance, Generated4q2kvF32) {
  TestModelSpec s;
  s.hidden_size = 128;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.ffn_size = 96;
  s.vocab_size = 4096;
  s.dtype = DType::kF32;
  s.seed = 9;
  CheckInvariance(s, "cuda_inv_4q2kv_f32.gguf");
}

}  // namespace
}  // namespace tpserve
