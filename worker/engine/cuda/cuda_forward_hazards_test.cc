// Ordering and lifetime hazards of the CUDA backend (CudaForward) that a
// device shows only some of the time; the CUDA emulator (_emu twin) shows
// them every time, because its streams run work only when waited for and
// order streams only as CUDA promises (kernels/cuda/emu/streams.h):
//   - AllGatherI64's upload must be ordered before the all-gather on the
//     engine's non-blocking stream (a legacy-stream cudaMemcpy is not);
//   - a step's metadata must be staged from host memory that outlives the
//     step's copies (the layout vectors die when Launch returns);
//   - Load after a decode step must drop the decode graphs that point at the
//     weights and KV cache it frees.
// On a device the same tests run and must pass too.
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/device.h"
#include "rendezvous/tcp_kv_store.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"
#include "worker/engine/cuda/cuda_forward.h"
#include "worker/engine/shard_plan.h"
#include "worker/engine/shard_weights.h"
#include "worker/model/model_source.h"

namespace tpserve {
namespace {

constexpr int kBlockSize = 16;
constexpr int kBlocks = 8;

// A small generated model; `seed` changes every weight.
absl::StatusOr<std::unique_ptr<ModelSource>> SmallModel(uint64_t seed) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/cuda_forward_hazards_", seed, ".gguf");
  TestModelSpec spec;
  spec.hidden_size = 64;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.ffn_size = 128;
  spec.vocab_size = 512;
  spec.dtype = DType::kQ8_0;
  spec.seed = seed;
  TPS_RETURN_IF_ERROR(WriteTestModel(spec, path));
  return OpenModel(path);
}

KvCacheShape Shape(const ModelConfig& c, const ShardPlan& plan) {
  return {.num_layers = c.num_layers,
          .n_kv_heads = static_cast<int>(plan.mine().kv_heads.count),
          .head_dim = c.head_dim,
          .block_size = kBlockSize};
}

absl::Status LoadInto(ForwardBackend& fb, const ModelSource& model, const ShardPlan& plan) {
  TPS_ASSIGN_OR_RETURN(ShardWeights w, LoadShardWeights(model, plan, /*f32_weights=*/false));
  return fb.Load(std::move(w), Shape(model.config(), plan), kBlocks);
}

SequenceInput Seq(uint64_t id, std::vector<int32_t> tokens, int start, int32_t block) {
  SequenceInput s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.prompt_len = 1000;
  s.block_table = {block};
  return s;
}

// Logits of a prefill of two sequences and then one decode step (graphs
// replay the decode step when the backend has them on).
absl::StatusOr<std::vector<float>> PrefillThenDecode(ForwardBackend& fb) {
  StepTimings t;
  std::vector<float> logits;
  StepBatch prefill = {{Seq(1, {3, 1, 4, 1, 5}, 0, 0), Seq(2, {9, 2, 6}, 0, 1)}};
  TPS_RETURN_IF_ERROR(fb.Forward(prefill, {4, 7}, &logits, &t));
  StepBatch decode = {{Seq(1, {5}, 5, 0), Seq(2, {3}, 3, 1)}};
  TPS_RETURN_IF_ERROR(fb.Forward(decode, {0, 1}, &logits, &t));
  return logits;
}

bool SkipWithoutDevice(int n) { return ::tpserve::kernels::cuda::DeviceCount() < n; }

// The step's metadata arrays (tokens, positions, block tables, slots) reach
// the device intact although the vectors holding them die before the copies
// run; the result matches the same steps with graphs off (eager launches).
TEST(CudaForwardHazards, StepMetadataOutlivesItsCopies) {
  if (SkipWithoutDevice(1)) GTEST_SKIP() << "skipped: no CUDA device";
  absl::StatusOr<std::unique_ptr<ModelSource>> model = SmallModel(1);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  TcpKvStoreClient unused("127.0.0.1", 1);
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateGlooCommunicator(unused, 0, 1, GlooOptions());
  ASSERT_TRUE(comm.ok()) << comm.status();
  absl::StatusOr<ShardPlan> plan = ShardPlan::Create((*model)->config(), 1, 0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::vector<float> results[2];
  for (int graphs = 0; graphs < 2; ++graphs) {
    absl::StatusOr<std::unique_ptr<ForwardBackend>> fb =
        CreateCudaForward((*model)->config(), *plan, **comm, {.cuda_graphs = graphs == 1});
    ASSERT_TRUE(fb.ok()) << fb.status();
    ASSERT_TRUE(LoadInto(**fb, **model, *plan).ok());
    absl::StatusOr<std::vector<float>> l = PrefillThenDecode(**fb);
    ASSERT_TRUE(l.ok()) << l.status();
    results[graphs] = *l;
  }
  ASSERT_EQ(results[0].size(), 2u * (*model)->config().vocab_size);
  for (float v : results[0]) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(results[0], results[1]);
}

// Load on a backend that already ran decode steps from CUDA graphs: the
// next decode step must run on the new weights (a stale graph would launch
// kernels on the freed ones).
TEST(CudaForwardHazards, LoadDropsCapturedGraphs) {
  if (SkipWithoutDevice(1)) GTEST_SKIP() << "skipped: no CUDA device";
  absl::StatusOr<std::unique_ptr<ModelSource>> first = SmallModel(1);
  absl::StatusOr<std::unique_ptr<ModelSource>> second = SmallModel(2);
  if (!first.ok() || !second.ok()) GTEST_SKIP() << "skipped: no model available";
  TcpKvStoreClient unused("127.0.0.1", 1);
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateGlooCommunicator(unused, 0, 1, GlooOptions());
  ASSERT_TRUE(comm.ok()) << comm.status();
  absl::StatusOr<ShardPlan> plan = ShardPlan::Create((*first)->config(), 1, 0);
  ASSERT_TRUE(plan.ok()) << plan.status();

  absl::StatusOr<std::unique_ptr<ForwardBackend>> fresh =
      CreateCudaForward((*second)->config(), *plan, **comm);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  ASSERT_TRUE(LoadInto(**fresh, **second, *plan).ok());
  absl::StatusOr<std::vector<float>> want = PrefillThenDecode(**fresh);
  ASSERT_TRUE(want.ok()) << want.status();

  absl::StatusOr<std::unique_ptr<ForwardBackend>> reloaded =
      CreateCudaForward((*first)->config(), *plan, **comm);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  ASSERT_TRUE(LoadInto(**reloaded, **first, *plan).ok());
  ASSERT_TRUE(PrefillThenDecode(**reloaded).ok());  // captures the decode graph
  ASSERT_TRUE(LoadInto(**reloaded, **second, *plan).ok());
  absl::StatusOr<std::vector<float>> got = PrefillThenDecode(**reloaded);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, *want);
}

// AllGatherI64 between two ranks returns every rank's value (its upload is
// ordered before the all-gather that reads it).
TEST(CudaForwardHazards, AllGatherI64SeesEveryRanksValue) {
  if (SkipWithoutDevice(2)) GTEST_SKIP() << "skipped: needs 2 CUDA devices";
  absl::StatusOr<std::unique_ptr<ModelSource>> model = SmallModel(1);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  std::vector<int64_t> all[2];
  std::string errors[2];
  auto rank_fn = [&](int rank) {
    TcpKvStoreClient store("127.0.0.1", server.port());
    NcclOptions no;
    no.device = rank;
    no.prefix = "cuda_forward_hazards/allgather";
    absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateNcclCommunicator(store, rank, 2, no);
    if (!comm.ok()) {
      errors[rank] = comm.status().ToString();
      return;
    }
    absl::StatusOr<ShardPlan> plan = ShardPlan::Create((*model)->config(), 2, rank);
    if (!plan.ok()) {
      errors[rank] = plan.status().ToString();
      return;
    }
    absl::StatusOr<std::unique_ptr<ForwardBackend>> fb =
        CreateCudaForward((*model)->config(), *plan, **comm, {.device = rank});
    absl::Status s = fb.ok() ? (*fb)->AllGatherI64(1000 + 7 * rank, &all[rank]) : fb.status();
    if (!s.ok()) {
      errors[rank] = s.ToString();
      (*comm)->Abort();
    }
  };
  std::thread r1(rank_fn, 1);
  rank_fn(0);
  r1.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  EXPECT_EQ(all[0], (std::vector<int64_t>{1000, 1007}));
  EXPECT_EQ(all[1], (std::vector<int64_t>{1000, 1007}));
}

}  // namespace
}  // namespace tpserve
