#include "router/api/placement.h"

#include <algorithm>

namespace tpserve {

double GroupLoad(int64_t running, int64_t waiting, int64_t waiting_tokens,
                 int32_t max_num_batched_tokens, double kv_usage, int32_t max_num_seqs) {
  const double budget = std::max<int32_t>(1, max_num_batched_tokens);
  return static_cast<double>(running + waiting) + static_cast<double>(waiting_tokens) / budget +
         kv_usage * static_cast<double>(max_num_seqs);
}

int ChooseGroup(const std::vector<GroupCandidate>& candidates, double max_load_imbalance) {
  if (candidates.empty()) return -1;
  // Longest prefix first, then lower load, then lower index.
  auto by_prefix = [](const GroupCandidate& a, const GroupCandidate& b) {
    if (a.cached_tokens != b.cached_tokens) return a.cached_tokens > b.cached_tokens;
    if (a.load != b.load) return a.load < b.load;
    return a.group < b.group;
  };
  // Lower load first, then longer prefix, then lower index.
  auto by_load = [](const GroupCandidate& a, const GroupCandidate& b) {
    if (a.load != b.load) return a.load < b.load;
    if (a.cached_tokens != b.cached_tokens) return a.cached_tokens > b.cached_tokens;
    return a.group < b.group;
  };
  const GroupCandidate& preferred =
      *std::min_element(candidates.begin(), candidates.end(), by_prefix);
  const GroupCandidate& idlest = *std::min_element(candidates.begin(), candidates.end(), by_load);
  if (preferred.load - idlest.load > max_load_imbalance) return idlest.group;
  return preferred.group;
}

}  // namespace tpserve
