// Test helper: runs a function on every rank of a tensor-parallel group of
// forked processes (Gloo over 127.0.0.1, rendezvous through a TcpKvStoreServer
// in the calling process), each rank with its own Engine. Rank 0's result
// floats and every rank's error come back through files in the test's temp
// directory. A group still running after `limit` is killed (an error, never
// a hang).
//
//   RankRun run = RunOnRanks(2, {model}, {}, [](Engine& e, int rank) {
//     return FlatLogits(e, batch);
//   });
//   ASSERT_TRUE(run.ok()) << run.ErrorSummary();
#ifndef TPSERVE_WORKER_ENGINE_MULTI_RANK_TEST_UTIL_H_
#define TPSERVE_WORKER_ENGINE_MULTI_RANK_TEST_UTIL_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/engine/engine.h"

namespace tpserve {

using RankFn = std::function<absl::StatusOr<std::vector<float>>(Engine& engine, int rank)>;
// The same with the rank's communicator (e.g. to broadcast rank 0's sampled
// tokens, as the router does).
using RankCommFn =
    std::function<absl::StatusOr<std::vector<float>>(Engine& engine, Communicator& comm)>;

struct RankRun {
  std::vector<float> rank0;         // rank 0's result
  std::vector<std::string> errors;  // per rank; empty string = OK
  bool ok() const;
  std::string ErrorSummary() const;
};

// `model_paths` has one path for all ranks or one per rank.
RankRun RunOnRanks(int world, const std::vector<std::string>& model_paths,
                   const EngineOptions& options, const RankFn& fn,
                   absl::Duration limit = absl::Seconds(240));
RankRun RunOnRanks(int world, const std::vector<std::string>& model_paths,
                   const EngineOptions& options, const RankCommFn& fn,
                   absl::Duration limit = absl::Seconds(240));

// Concatenated rank-0 logits of ForwardLogits over `batches`, run in order.
absl::StatusOr<std::vector<float>> FlatLogits(Engine& engine,
                                              const std::vector<StepBatch>& batches);

// Greedy continuation of `prompt` (sequence `seq_id`, blocks 0, 1, ...) for
// `new_tokens` ForwardLogits steps: appends each chosen token (as float) to
// `tokens` and its top-two logit gap to `gaps`; `first_logits`, if not
// null, gets the logits after the prompt.
absl::Status GreedyContinuation(Engine& engine, uint64_t seq_id, const std::vector<int32_t>& prompt,
                                int new_tokens, std::vector<float>* tokens,
                                std::vector<float>* gaps,
                                std::vector<float>* first_logits = nullptr);

// max |a - b| / max |a|, the parity measure of the acceptance criteria.
double RelativeMaxDiff(const std::vector<float>& a, const std::vector<float>& b);

// $TPSERVE_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
std::string DefaultModelPath();

// $TEST_TMPDIR, or /tmp outside Bazel.
std::string TestTempDir();

// One sequence's slice of a test batch. The default prompt_len lies past
// every position, so every token counts as prompt.
SequenceInput TestSeq(uint64_t id, std::vector<int32_t> tokens, int start,
                      std::vector<int32_t> blocks, int prompt_len = 100000);

// Three steps of two sequences with default-model token ids: prefills of 7
// and 5 tokens, then a decode next to a 3-token chunk, then two decodes.
std::vector<StepBatch> TwoSequenceSchedule();

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_MULTI_RANK_TEST_UTIL_H_
