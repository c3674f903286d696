// Shared by the CUDA engine's parity tests (cuda_engine_parity_test.cc,
// cuda_engine_prefill_test.cc): the steps both engines run, the one-rank CPU
// engine whose logits are the reference, the comparison at each case's
// tolerance (see cuda_engine_parity_test.cc's header for the tolerances), and
// the models the tests open.
//
//   const std::vector<Case> cases = Cases(model->config().vocab_size);
//   const auto want = CpuReference(*model, cases, "f32");
//   ... got[i] = cuda_engine->ForwardLogits(cases[i].batch) ...
//   ExpectMatches(cases, want, got);
#ifndef TPSERVE_WORKER_ENGINE_CUDA_ENGINE_PARITY_UTIL_H_
#define TPSERVE_WORKER_ENGINE_CUDA_ENGINE_PARITY_UTIL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "formats/dtype.h"
#include "tests/testmodel/test_model.h"
#include "worker/comm/communicator.h"
#include "worker/engine/engine.h"
#include "worker/model/model_source.h"

namespace tpserve::cuda_parity {

struct Case {
  std::string name;
  StepBatch batch;
  double tol;
};

// A sequence's step input: `tokens` from position `start`, KV in `blocks`.
SequenceInput Seq(uint64_t id, std::vector<int32_t> tokens, int start, std::vector<int32_t> blocks);

// Deterministic pseudo-random token ids in [0, vocab).
class TokenStream {
 public:
  TokenStream(uint64_t seed, int vocab) : state_(seed), vocab_(vocab) {}
  std::vector<int32_t> operator()(int n) {
    std::vector<int32_t> t(n);
    for (int32_t& v : t) {
      state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
      v = static_cast<int32_t>((state_ >> 33) % static_cast<uint64_t>(vocab_));
    }
    return t;
  }

 private:
  uint64_t state_;
  int vocab_;
};

// The parity cases over a model of `vocab` tokens: mixed prefills, decodes,
// a 100-token prefill (the bf16 prefill GEMMs) and, on a device only, 300.
std::vector<Case> Cases(int vocab);

// max |got - want| / max |want|; infinite if got holds a NaN or an infinity.
double RelMax(const std::vector<float>& got, const std::vector<float>& want);

// One-rank engine options of the tests: 64 MiB of KV in 16-token blocks; the
// CPU backend with f32 weights (the reference).
EngineOptions Options(const std::string& backend, const std::string& kv_dtype = "f32");

// Reference logits of every case, from a one-rank CPU engine.
std::vector<std::vector<std::vector<float>>> CpuReference(const ModelSource& model,
                                                          const std::vector<Case>& cases,
                                                          const std::string& kv_dtype);

// Each case's logits within its tolerance of the reference (and printed).
void ExpectMatches(const std::vector<Case>& cases,
                   const std::vector<std::vector<std::vector<float>>>& want,
                   const std::vector<std::vector<std::vector<float>>>& got);

// The generated models' shape: hidden 256, 3 layers, 4 query / 2 KV heads,
// FFN 512, 4096 tokens, weights in `dtype`.
TestModelSpec GeneratedModelSpec(DType dtype);

// $TPSERVE_GPU_TEST_MODELS (colon-separated; scripts/gpu_check.sh ships small
// generated models), else a generated Q4_1 model plus (on a device) the
// default model.
std::vector<std::string> ModelPaths();

// Two one-rank CUDA engines on `model`, engine e created with options(e).
struct EnginePair {
  std::unique_ptr<Communicator> comms[2];
  std::unique_ptr<Engine> engines[2];
};
absl::Status MakeEnginePair(const ModelSource& model,
                            const std::function<EngineOptions(int)>& options, EnginePair* pair);

}  // namespace tpserve::cuda_parity

#endif  // TPSERVE_WORKER_ENGINE_CUDA_ENGINE_PARITY_UTIL_H_
