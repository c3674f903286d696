// CreateForwardBackend picks backends by name; the CPU backend loads a small
// generated model and runs a step through the ForwardBackend interface alone
// (the engine tests cover its numerics end to end).
#include "worker/engine/forward_backend_factory.h"

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "rendezvous/tcp_kv_store.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/gloo/gloo_communicator.h"

namespace tpserve {
namespace {

SequenceInput Seq(uint64_t id, std::vector<int32_t> tokens, int32_t start_pos,
                  std::vector<int32_t> block_table) {
  SequenceInput s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.start_pos = start_pos;
  s.block_table = std::move(block_table);
  return s;
}

class ForwardBackendFactoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = std::string(::testing::TempDir()) + "/forward_backend_factory.gguf";
    TestModelSpec spec;
    spec.vocab_size = 512;
    ASSERT_TRUE(WriteTestModel(spec, path).ok());
    absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        CreateGlooCommunicator(store_, 0, 1, GlooOptions());
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = *std::move(comm);
    absl::StatusOr<ShardPlan> plan = ShardPlan::Create(model_->config(), 1, 0);
    ASSERT_TRUE(plan.ok()) << plan.status();
    plan_ = std::make_unique<ShardPlan>(*std::move(plan));
  }

  // A loaded CPU backend with 8 KV blocks of 16 tokens.
  std::unique_ptr<ForwardBackend> LoadedCpu() {
    absl::StatusOr<std::unique_ptr<ForwardBackend>> fb =
        CreateForwardBackend("cpu", model_->config(), *plan_, *comm_, {.num_threads = 1});
    EXPECT_TRUE(fb.ok()) << fb.status();
    if (!fb.ok()) return nullptr;
    absl::StatusOr<ShardWeights> w = LoadShardWeights(*model_, *plan_);
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return nullptr;
    const ModelConfig& c = model_->config();
    const KvCacheShape shape{.num_layers = c.num_layers,
                             .n_kv_heads = c.num_kv_heads,
                             .head_dim = c.head_dim,
                             .block_size = 16};
    EXPECT_TRUE((*fb)->Load(*std::move(w), shape, 8).ok());
    return *std::move(fb);
  }

  TcpKvStoreClient store_{"127.0.0.1", 1};  // unused by a one-rank group
  std::unique_ptr<ModelSource> model_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<ShardPlan> plan_;
};

TEST_F(ForwardBackendFactoryTest, UnknownNameIsInvalidArgument) {
  EXPECT_EQ(CheckForwardBackendName("tpu").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckForwardBackendName("cpu").ok());
  EXPECT_TRUE(CheckForwardBackendName("cuda").ok());
  absl::StatusOr<std::unique_ptr<ForwardBackend>> fb =
      CreateForwardBackend("tpu", model_->config(), *plan_, *comm_, {});
  ASSERT_FALSE(fb.ok());
  EXPECT_EQ(fb.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(fb.status().message().find("unknown engine backend"), absl::string_view::npos);
}

TEST_F(ForwardBackendFactoryTest, CpuIsNamedAndGathersOneRank) {
  absl::StatusOr<std::unique_ptr<ForwardBackend>> fb =
      CreateForwardBackend("cpu", model_->config(), *plan_, *comm_, {});
  ASSERT_TRUE(fb.ok()) << fb.status();
  EXPECT_EQ((*fb)->name(), "cpu");
  const std::string kernels = (*fb)->kernels();
  EXPECT_EQ(kernels.rfind("CPU kernels: ", 0), 0u) << kernels;
  EXPECT_NE(kernels.find(kernels::cpu::IsaName(kernels::cpu::ActiveIsa())), std::string::npos)
      << kernels;
  std::vector<int64_t> all;
  ASSERT_TRUE((*fb)->AllGatherI64(42, &all).ok());
  EXPECT_EQ(all, std::vector<int64_t>{42});
}

TEST_F(ForwardBackendFactoryTest, CpuForwardFillsLogitsOfHeadRowsDeterministically) {
  StepBatch b;
  b.seqs.push_back(Seq(1, {5, 6, 7}, 0, {0}));
  b.seqs.push_back(Seq(2, {9}, 0, {1}));
  const int V = model_->config().vocab_size;
  std::vector<float> first, second;
  for (std::vector<float>* out : {&first, &second}) {
    std::unique_ptr<ForwardBackend> fb = LoadedCpu();
    ASSERT_NE(fb, nullptr);
    StepTimings t;
    ASSERT_TRUE(fb->Forward(b, /*head_rows=*/{2, 3}, out, &t).ok());
  }
  ASSERT_EQ(first.size(), static_cast<size_t>(2 * V));
  for (float x : first) ASSERT_TRUE(std::isfinite(x));
  EXPECT_EQ(first, second);
  // Different sequences, different logits.
  EXPECT_NE(std::vector<float>(first.begin(), first.begin() + V),
            std::vector<float>(first.begin() + V, first.end()));
}

TEST_F(ForwardBackendFactoryTest, NoHeadRowsLeavesLogitsEmpty) {
  std::unique_ptr<ForwardBackend> fb = LoadedCpu();
  ASSERT_NE(fb, nullptr);
  StepBatch b;
  b.seqs.push_back(Seq(1, {5, 6}, 0, {0}));
  std::vector<float> logits;
  StepTimings t;
  ASSERT_TRUE(fb->Forward(b, {}, &logits, &t).ok());
  EXPECT_TRUE(logits.empty());
}

TEST_F(ForwardBackendFactoryTest, CudaWithoutDeviceIsFailedPrecondition) {
  absl::StatusOr<std::unique_ptr<ForwardBackend>> fb =
      CreateForwardBackend("cuda", model_->config(), *plan_, *comm_, {.device = 1000});
  ASSERT_FALSE(fb.ok());
  EXPECT_EQ(fb.status().code(), absl::StatusCode::kFailedPrecondition) << fb.status();
}

}  // namespace
}  // namespace tpserve
