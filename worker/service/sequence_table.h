// SequenceTable: what a worker rank remembers about each sequence between
// steps of one epoch, for lean steps (proto/tpserve/v1/worker.proto,
// SequenceInput.delta). A sequence's first step in an epoch (and any step
// after its blocks were replaced) carries its full block table, prompt_len
// and sampling parameters; later steps carry only the blocks appended since
// and set delta. The table completes delta entries into the full inputs the
// engine needs. Freed sequences are erased; a new epoch clears it.
//
//   SequenceTable table;
//   table.Erase(free_ids);
//   TPS_ASSIGN_OR_RETURN(StepBatch batch, table.ToBatch(request));
//   engine.Step(batch);
//   ... Join: table.Clear();
//
// Not thread-safe: the worker calls it under its step mutex.
#ifndef TPSERVE_WORKER_SERVICE_SEQUENCE_TABLE_H_
#define TPSERVE_WORKER_SERVICE_SEQUENCE_TABLE_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/tpserve/v1/worker.pb.h"
#include "worker/engine/step_types.h"

namespace tpserve {

class SequenceTable {
 public:
  // The step's full batch. Full entries are remembered; delta entries are
  // completed from what was remembered (their blocks appended). Nothing is
  // remembered when it fails: FAILED_PRECONDITION naming a delta entry for a
  // sequence this rank does not know (the router and the rank disagree; the
  // epoch must end).
  [[nodiscard]] absl::StatusOr<StepBatch> ToBatch(const v1::StepRequest& request);
  void Erase(absl::Span<const uint64_t> seq_ids);
  void Clear() { known_.clear(); }
  size_t size() const { return known_.size(); }

 private:
  struct Known {
    std::vector<int32_t> block_table;
    int32_t prompt_len = 0;
    SamplingParams sampling;
  };
  absl::flat_hash_map<uint64_t, Known> known_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_SERVICE_SEQUENCE_TABLE_H_
