// Test double for the worker group: a fake "KV cache" of token ids addressed
// through the block tables a ScheduledStep carries, and a deterministic
// "model" whose next token is a hash of the whole context it reads back.
// Wrong block tables, start positions, prefix reuse of unwritten blocks or a
// block written by two sequences show up as outputs that differ from
// ReferenceNextToken(prompt + output). Header-only, testonly.
//
//   FakeWorker worker(num_blocks, block_size);
//   absl::StatusOr<std::vector<SampledTokenId>> out = worker.Run(step);
#ifndef TPSERVE_ROUTER_SCHEDULER_FAKE_WORKER_H_
#define TPSERVE_ROUTER_SCHEDULER_FAKE_WORKER_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "router/scheduler/scheduled_step.h"

namespace tpserve::scheduler_testing {

inline constexpr int32_t kFakeVocab = 1000;

// The fake model: next token for a context.
inline int32_t ReferenceNextToken(absl::Span<const int32_t> context) {
  uint64_t h = 1469598103934665603ULL;
  for (int32_t t : context) h = (h ^ static_cast<uint32_t>(t)) * 1099511628211ULL;
  return static_cast<int32_t>((h >> 17) % kFakeVocab);
}

class FakeWorker {
 public:
  FakeWorker(int32_t num_blocks, int32_t block_size)
      : block_size_(block_size), kv_(static_cast<size_t>(num_blocks) * block_size, -1) {}

  // Runs one step: every slice first reads its cached context [0, start_pos)
  // (KV written by earlier steps only), then all slices write their tokens.
  absl::StatusOr<std::vector<SampledTokenId>> Run(const ScheduledStep& step) {
    for (uint64_t id : step.free_seq_ids) known_.erase(id);
    std::vector<SampledTokenId> out;
    absl::flat_hash_map<int32_t, uint64_t> writer;  // block -> seq writing it
    for (const ScheduledSequence& s : step.seqs) {
      const int32_t end = s.start_pos + static_cast<int32_t>(s.tokens.size());
      if (s.tokens.empty()) return absl::InternalError("empty slice");
      if (static_cast<int32_t>(s.block_table.size()) * block_size_ < end) {
        return absl::InternalError(absl::StrCat("seq ", s.seq_id, ": block table too short"));
      }
      absl::flat_hash_set<int32_t> distinct(s.block_table.begin(), s.block_table.end());
      if (distinct.size() != s.block_table.size()) {
        return absl::InternalError(absl::StrCat("seq ", s.seq_id, ": repeated block"));
      }
      for (int32_t t : s.tokens) {
        if (t == kPendingToken) return absl::InternalError("pending token sent to a worker");
      }
      if (s.start_pos > 0 && !known_.contains(s.seq_id) && s.start_pos % block_size_ != 0) {
        return absl::InternalError(absl::StrCat("seq ", s.seq_id, " resumes mid-block unseen"));
      }
      for (int32_t pos = s.start_pos; pos < end; ++pos) {
        const int32_t block = s.block_table[pos / block_size_];
        auto [it, inserted] = writer.emplace(block, s.seq_id);
        if (!inserted && it->second != s.seq_id) {
          return absl::InternalError(absl::StrCat("block ", block, " written by two sequences"));
        }
      }
    }
    for (const ScheduledSequence& s : step.seqs) {
      for (int32_t b : s.block_table) {
        auto it = writer.find(b);
        if (it != writer.end() && it->second != s.seq_id) {
          return absl::InternalError(absl::StrCat("seq ", s.seq_id, " reads block ", b,
                                                  " that seq ", it->second, " writes now"));
        }
      }
      if (!s.sample) continue;
      std::vector<int32_t> context;
      for (int32_t pos = 0; pos < s.start_pos; ++pos) context.push_back(Slot(s, pos));
      context.insert(context.end(), s.tokens.begin(), s.tokens.end());
      out.push_back({s.seq_id, ReferenceNextToken(context)});
    }
    for (const ScheduledSequence& s : step.seqs) {
      for (size_t k = 0; k < s.tokens.size(); ++k) {
        const int32_t pos = s.start_pos + static_cast<int32_t>(k);
        kv_[static_cast<size_t>(s.block_table[pos / block_size_]) * block_size_ +
            pos % block_size_] = s.tokens[k];
      }
      known_.insert(s.seq_id);
    }
    return out;
  }

 private:
  int32_t Slot(const ScheduledSequence& s, int32_t pos) const {
    return kv_[static_cast<size_t>(s.block_table[pos / block_size_]) * block_size_ +
               pos % block_size_];
  }

  int32_t block_size_;
  std::vector<int32_t> kv_;
  absl::flat_hash_set<uint64_t> known_;
};

}  // namespace tpserve::scheduler_testing

#endif  // TPSERVE_ROUTER_SCHEDULER_FAKE_WORKER_H_
