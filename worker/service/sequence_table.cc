#include "worker/service/sequence_table.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/service/step_convert.h"

namespace tpserve {

absl::StatusOr<StepBatch> SequenceTable::ToBatch(const v1::StepRequest& request) {
  StepBatch batch = ToStepBatch(request);
  // Check every delta first, so that a refused step changes nothing.
  for (const v1::SequenceInput& in : request.seqs()) {
    if (in.delta() && !known_.contains(in.seq_id())) {
      return absl::FailedPreconditionError(
          absl::StrCat("step ", request.step_id(), " continues sequence ", in.seq_id(),
                       " (delta) but this rank holds no state for it in this epoch"));
    }
  }
  for (int i = 0; i < request.seqs_size(); ++i) {
    const v1::SequenceInput& in = request.seqs(i);
    SequenceInput& s = batch.seqs[i];
    if (!in.delta()) {
      known_[in.seq_id()] = Known{s.block_table, s.prompt_len, s.sampling};
      continue;
    }
    Known& k = known_.at(in.seq_id());
    k.block_table.insert(k.block_table.end(), s.block_table.begin(), s.block_table.end());
    s.block_table = k.block_table;
    s.prompt_len = k.prompt_len;
    s.sampling = k.sampling;
  }
  return batch;
}

void SequenceTable::Erase(absl::Span<const uint64_t> seq_ids) {
  for (uint64_t id : seq_ids) known_.erase(id);
}

}  // namespace tpserve
