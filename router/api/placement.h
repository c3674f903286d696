// Placement: which worker group a new (or moved) request goes to.
//
// Rule (docs/operations.md "Groups and placement"):
//   1. candidates are the groups that serve and are not drained;
//   2. the preferred group is the one holding the longest cached prefix of
//      the prompt; ties (including "no group has any of it") go to the lower
//      load, then the lower group index;
//   3. override: when the preferred group's load exceeds the least loaded
//      candidate's by more than `max_load_imbalance` (--placement_load_slack),
//      the least loaded candidate wins instead (ties: longer prefix, lower
//      index). A hot shared prompt therefore stays where it is cached until
//      that group is clearly busier than the rest.
// Load is measured in sequences: running + waiting sequences, plus waiting
// prompt tokens / step token budget (steps of prefill already queued), plus
// KV usage (0..1) x the group's sequence limit (a nearly full cache counts
// as if that many sequences ran).
//
//   std::vector<GroupCandidate> c = {{.group = 0, .cached_tokens = 288, .load = 3},
//                                    {.group = 1, .cached_tokens = 0, .load = 1}};
//   int g = ChooseGroup(c, /*max_load_imbalance=*/8.0);  // 0: cached, not too busy
#ifndef TPSERVE_ROUTER_API_PLACEMENT_H_
#define TPSERVE_ROUTER_API_PLACEMENT_H_

#include <cstdint>
#include <vector>

namespace tpserve {

struct GroupCandidate {
  int group = 0;
  int32_t cached_tokens = 0;  // longest cached prompt prefix in that group, tokens
  double load = 0;            // GroupLoad(), in sequences
};

// Load of one group in sequences (see the header comment).
double GroupLoad(int64_t running, int64_t waiting, int64_t waiting_tokens,
                 int32_t max_num_batched_tokens, double kv_usage, int32_t max_num_seqs);

// The chosen candidate's `group`, or -1 when `candidates` is empty.
int ChooseGroup(const std::vector<GroupCandidate>& candidates, double max_load_imbalance);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_PLACEMENT_H_
