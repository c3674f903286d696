// Backend selection errors of Engine::Create, which run on any machine:
// backend "cuda" without a visible device is FAILED_PRECONDITION naming the
// problem (not a crash), and an unknown backend name is INVALID_ARGUMENT.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/device.h"
#include "rendezvous/tcp_kv_store.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/engine/engine.h"

namespace tpserve {
namespace {

class CudaEngineErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::string(::testing::TempDir()) + "/cuda_engine_error.gguf";
    TestModelSpec spec;
    spec.vocab_size = 512;
    ASSERT_TRUE(WriteTestModel(spec, path_).ok());
    absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        CreateGlooCommunicator(store_, 0, 1, GlooOptions());
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = *std::move(comm);
  }

  std::string path_;
  TcpKvStoreClient store_{"127.0.0.1", 1};  // unused by a one-rank group
  std::unique_ptr<ModelSource> model_;
  std::unique_ptr<Communicator> comm_;
};

TEST_F(CudaEngineErrorTest, CudaWithoutDeviceIsFailedPrecondition) {
  if (::tpserve::kernels::cuda::DeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  EngineOptions options;
  options.backend = "cuda";
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, *comm_, options);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kFailedPrecondition) << engine.status();
  EXPECT_NE(engine.status().message().find("no CUDA device"), absl::string_view::npos)
      << engine.status();
}

TEST_F(CudaEngineErrorTest, MissingDeviceIndexIsFailedPrecondition) {
  EngineOptions options;
  options.backend = "cuda";
  options.device = 1000;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, *comm_, options);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kFailedPrecondition) << engine.status();
}

TEST_F(CudaEngineErrorTest, UnknownBackendIsInvalidArgument) {
  EngineOptions options;
  options.backend = "tpu";
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, *comm_, options);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument) << engine.status();
  EXPECT_NE(engine.status().message().find("tpu"), absl::string_view::npos) << engine.status();
}

TEST_F(CudaEngineErrorTest, CpuBackendStillWorks) {
  EngineOptions options;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, *comm_, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->backend(), "cpu");
  StepBatch b;
  SequenceInput s;
  s.seq_id = 1;
  s.tokens = {1, 2, 3};
  s.prompt_len = 3;
  s.block_table = {0};
  b.seqs.push_back(s);
  absl::StatusOr<std::vector<std::vector<float>>> logits = (*engine)->ForwardLogits(b);
  ASSERT_TRUE(logits.ok()) << logits.status();
  ASSERT_EQ(logits->size(), 1u);
  EXPECT_EQ(logits->at(0).size(), 512u);
}

}  // namespace
}  // namespace tpserve
