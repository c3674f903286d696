// Tensor-parallel invariance (EngineOptions::tp_invariant): the same ragged
// schedule (two prefills, a decode mixed with a prefill chunk, two decodes)
// at TP = 1 and larger, each a group of forked processes over Gloo, must give
// bit-identical rank-0 logits, on the quantized path (8-bit activations) and
// with plain weights:
//   - generated 9q/3kv Q4_1 (uneven KV-group split at TP=2, KV replication
//     at TP=4; FFN 7 blocks: uneven at every TP), TP=2/3/4;
//   - generated 8q/2kv Q8_0 (KV replication at TP=3 and 4), TP=2/3/4;
//   - generated Qwen2 with QKV bias, Q4_0, TP=2/3/4;
//   - generated 9q/3kv F32 GGUF, TP=2/3/4, and 4q/2kv BF16 Hugging Face,
//     TP=2/3;
//   - the default model (SmolLM2-135M Q4_1, 9q/3kv, 30 layers), TP=2/3;
// and greedy continuations of 64 tokens for 20 prompts on the default model
// are identical at TP = 1, 2 and 3. The invariant logits stay close to the
// default (f32 all-reduce) mode's: kModeTol of max |logit|. Every run uses
// the default KV cache, bf16 on the cpu backend (EngineOptions::kv_dtype).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "rendezvous/tcp_kv_store.h"
#include "worker/engine/multi_rank_test_util.h"
#include "worker/model/model_source.h"

namespace tpserve {
namespace {

// Invariant vs default mode at TP=1, max |diff| / max |logit|: the modes
// round the row-parallel sums differently, and on the quantized path an
// 8-bit activation rounding flip moves a logit by up to a few percent.
constexpr double kModeTol = 0.1;

EngineOptions Options(bool invariant) {
  EngineOptions o;
  o.tp_invariant = invariant;
  o.num_threads = 1;
  o.kv_cache_bytes = int64_t{16} << 20;
  return o;
}

std::vector<float> Logits(const std::string& model, int world, bool invariant) {
  RankRun run = RunOnRanks(world, {model}, Options(invariant),
                           [](Engine& e, int) { return FlatLogits(e, TwoSequenceSchedule()); });
  EXPECT_TRUE(run.ok()) << "TP=" << world << "\n" << run.ErrorSummary();
  return run.rank0;
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void CheckInvariance(const std::string& model, const std::vector<int>& worlds) {
  const std::vector<float> tp1 = Logits(model, 1, true);
  ASSERT_EQ(tp1.size(), 6u * 49152u);
  double max_abs = 0;
  for (float v : tp1) max_abs = std::max(max_abs, double{std::fabs(v)});
  ASSERT_GT(max_abs, 0.1);  // real logits, not zeros
  for (int world : worlds) {
    const std::vector<float> tpn = Logits(model, world, true);
    EXPECT_TRUE(BitIdentical(tp1, tpn))
        << model << ": TP=" << world << " differs from TP=1, max |diff| / max |logit| "
        << RelativeMaxDiff(tp1, tpn);
  }
  const double mode_diff = RelativeMaxDiff(Logits(model, 1, false), tp1);
  printf("%s: max|logit| %.3f; invariant vs default mode at TP=1: %.2e\n",
         model.substr(model.rfind('/') + 1).c_str(), max_abs, mode_diff);
  EXPECT_LE(mode_diff, kModeTol);
}

std::string Generate(TestModelSpec spec, const std::string& name) {
  const std::string path = TestTempDir() + "/" + name;
  EXPECT_TRUE(WriteTestModel(spec, path).ok()) << path;
  return path;
}

TEST(EngineTpInvarianceTest, Generated9q3kvQ4_1) {
  TestModelSpec s;
  s.hidden_size = 288;  // head_dim 32
  s.num_heads = 9;
  s.num_kv_heads = 3;
  s.ffn_size = 224;  // 7 blocks of 32
  s.dtype = DType::kQ4_1;
  s.seed = 3;
  CheckInvariance(Generate(s, "inv_9q3kv_q4_1.gguf"), {2, 3, 4});
}

TEST(EngineTpInvarianceTest, Generated8q2kvQ8_0) {
  TestModelSpec s;
  s.hidden_size = 256;
  s.num_heads = 8;
  s.num_kv_heads = 2;
  s.ffn_size = 256;
  s.dtype = DType::kQ8_0;
  s.seed = 11;
  CheckInvariance(Generate(s, "inv_8q2kv_q8_0.gguf"), {2, 3, 4});
}

TEST(EngineTpInvarianceTest, GeneratedQwen2WithQkvBiasQ4_0) {
  TestModelSpec s;
  s.architecture = "qwen2";
  s.hidden_size = 128;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.ffn_size = 160;
  s.qkv_bias = true;
  s.tie_embeddings = false;
  s.dtype = DType::kQ4_0;
  s.seed = 5;
  CheckInvariance(Generate(s, "inv_qwen2_bias_q4_0.gguf"), {2, 3, 4});
}

TEST(EngineTpInvarianceTest, Generated9q3kvF32) {
  TestModelSpec s;
  s.hidden_size = 288;
  s.num_heads = 9;
  s.num_kv_heads = 3;
  s.ffn_size = 224;
  s.dtype = DType::kF32;
  s.seed = 4;
  CheckInvariance(Generate(s, "inv_9q3kv_f32.gguf"), {2, 3, 4});
}

TEST(EngineTpInvarianceTest, GeneratedBf16HuggingFace) {
  TestModelSpec s;
  s.format = TestModelFormat::kHf;
  s.hidden_size = 128;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.ffn_size = 96;
  s.dtype = DType::kBF16;
  s.seed = 8;
  CheckInvariance(Generate(s, "inv_bf16_hf"), {2, 3});
}

// The two modes all-reduce different types: a group whose ranks disagree
// must fail at Create on every rank, never compute.
TEST(EngineTpInvarianceTest, RanksWithDifferentModesFailOnEveryRank) {
  TestModelSpec s;
  const std::string path = Generate(s, "inv_mixed_modes.gguf");
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  ASSERT_TRUE(model.ok()) << model.status();
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  absl::Status results[2];
  auto rank_fn = [&](int rank) {
    TcpKvStoreClient store("127.0.0.1", server.port());
    GlooOptions g;
    g.timeout = absl::Seconds(30);
    absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateGlooCommunicator(store, rank, 2, g);
    if (!comm.ok()) {
      results[rank] = comm.status();
      return;
    }
    results[rank] = Engine::Create(**model, **comm, Options(/*invariant=*/rank == 1)).status();
  };
  std::thread r1(rank_fn, 1);
  rank_fn(0);
  r1.join();
  for (const absl::Status& st : results) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find("tp_invariant"), absl::string_view::npos) << st;
  }
}

TEST(EngineTpInvarianceTest, DefaultModelLogits) { CheckInvariance(DefaultModelPath(), {2, 3}); }

// Prompts tokenized by llama.cpp's tokenizer for the default model.
const std::vector<std::vector<int32_t>>& Prompts() {
  static const auto* p = new std::vector<std::vector<int32_t>>{
      {504, 3575, 282, 4649, 314},                       // The capital of France is
      {6403, 1980, 253, 655, 28, 665, 436, 253, 1838},   // Once upon a time, there was a little
      {1604, 3987, 46477, 24, 94, 727},                  // def fibonacci(n):
      {504, 1296, 3003, 4683, 359},                      // The three primary colors are
      {788, 216, 33, 41, 38, 41, 28, 27639, 24955},      // In 1969, Neil Armstrong
      {504, 1450, 970, 288, 835, 253, 725, 1789, 314},   // The best way to learn a new language is
      {12615, 36411, 418},                               // Water boils at
      {5965, 4932, 1863, 314},                           // My favorite book is
      {2017, 6772, 347, 2333, 198},                      // import numpy as np\n
      {504, 2388, 13685, 281, 260, 6251, 284},           // The sun rises in the east and
      {33580, 14870, 314, 260, 980, 411, 527},           // Photosynthesis is the process by which
      {4590, 314, 253, 1890, 8216, 563, 260, 3426, 42},  // Here is a short poem about the sea:
      {504, 2365, 6354, 16438},                          // The quick brown fox
      {2068, 919, 253, 7118, 282, 7188, 28, 808},        // To make a cup of tea, first
      {504, 3995, 3925, 281, 653, 3693, 817, 314},  // The largest planet in our solar system is
      {49, 1123, 3163, 506, 2801, 2311},            // A good night's sleep helps
      // ChatML: "What is 2 + 2?" and "Name a fruit that is yellow."
      {1, 4093, 198, 1780, 314, 216, 34, 1232, 216, 34, 47, 2, 198, 1, 520, 9531, 198},
      {1, 4093, 198, 5820, 253, 4354, 338, 314, 5724, 30, 2, 198, 1, 520, 9531, 198},
      {504, 1463, 282, 260, 4469, 7057},    // The history of the Roman Empire
      {29968, 1380, 2859, 359, 7018, 411},  // Machine learning models are trained by
  };
  return *p;
}

constexpr int kNewTokens = 64;
constexpr int kBlocksPerSeq = 6;  // 16-token blocks for <= 17 + 64 positions

// All prompts in one batch (batch invariance makes this equal to one prompt
// at a time): per step, rank 0 takes every sequence's argmax and broadcasts
// them (as the router sends every rank the same tokens). Returns the tokens,
// prompt-major.
absl::StatusOr<std::vector<float>> BatchedGreedy(Engine& e, Communicator& comm) {
  const std::vector<std::vector<int32_t>>& prompts = Prompts();
  std::vector<SequenceInput> seqs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    seqs[i].seq_id = i + 1;
    seqs[i].tokens = prompts[i];
    seqs[i].prompt_len = static_cast<int>(prompts[i].size());
    for (int b = 0; b < kBlocksPerSeq; ++b) {
      seqs[i].block_table.push_back(static_cast<int32_t>(i) * kBlocksPerSeq + b);
    }
  }
  std::vector<float> out(prompts.size() * kNewTokens);
  for (int step = 0; step < kNewTokens; ++step) {
    StepBatch batch;
    batch.seqs = seqs;
    TPS_ASSIGN_OR_RETURN(std::vector<std::vector<float>> logits, e.ForwardLogits(batch));
    std::vector<int32_t> best(seqs.size(), 0);
    for (size_t i = 0; i < logits.size(); ++i) {  // rank 0
      best[i] = static_cast<int32_t>(std::max_element(logits[i].begin(), logits[i].end()) -
                                     logits[i].begin());
    }
    TPS_RETURN_IF_ERROR(comm.Broadcast(best.data(), best.size(), CommDType::kI32, 0));
    for (size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].start_pos += static_cast<int32_t>(seqs[i].tokens.size());
      seqs[i].tokens = {best[i]};
      out[i * kNewTokens + step] = static_cast<float>(best[i]);
    }
  }
  return out;
}

TEST(EngineTpInvarianceTest, DefaultModelGreedy64TokensTwentyPrompts) {
  EngineOptions o = Options(true);
  o.kv_cache_bytes = int64_t{128} << 20;
  std::vector<std::vector<float>> tokens;
  for (int world : {1, 2, 3}) {
    RankRun run = RunOnRanks(world, {DefaultModelPath()}, o,
                             [](Engine& e, Communicator& c) { return BatchedGreedy(e, c); });
    ASSERT_TRUE(run.ok()) << "TP=" << world << "\n" << run.ErrorSummary();
    ASSERT_EQ(run.rank0.size(), Prompts().size() * kNewTokens);
    tokens.push_back(run.rank0);
  }
  for (size_t p = 0; p < Prompts().size(); ++p) {
    for (int w = 1; w < 3; ++w) {
      for (int i = 0; i < kNewTokens; ++i) {
        const size_t at = p * kNewTokens + i;
        if (tokens[w][at] != tokens[0][at]) {
          ADD_FAILURE() << "prompt " << p << ": TP=" << w + 1 << " differs from TP=1 at token " << i
                        << " (" << tokens[w][at] << " vs " << tokens[0][at] << ")";
          break;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tpserve
