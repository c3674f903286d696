#include "worker/service/step_convert.h"

#include "proto/convert/sampling_convert.h"

namespace tpserve {

StepBatch ToStepBatch(const v1::StepRequest& request) {
  StepBatch batch;
  batch.seqs.reserve(request.seqs_size());
  for (const v1::SequenceInput& in : request.seqs()) {
    SequenceInput& s = batch.seqs.emplace_back();
    s.seq_id = in.seq_id();
    s.tokens.assign(in.tokens().begin(), in.tokens().end());
    s.start_pos = in.start_pos();
    s.prompt_len = in.prompt_len();
    s.block_table.assign(in.block_table().begin(), in.block_table().end());
    s.sample = in.sample();
    s.sampling = SamplingFromWorker(in.sampling());
  }
  return batch;
}

void FillStepResponse(const StepOutput& output, v1::StepResponse* response) {
  for (const SampledToken& t : output.tokens) {
    v1::SampledToken* out = response->add_tokens();
    out->set_seq_id(t.seq_id);
    out->set_token(t.token);
    out->set_logprob(t.logprob);
    for (const TokenLogprob& alt : t.top_logprobs) {
      v1::TokenLogprobEntry* e = out->add_top_logprobs();
      e->set_token(alt.token);
      e->set_logprob(alt.logprob);
    }
  }
}

}  // namespace tpserve
