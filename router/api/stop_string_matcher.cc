#include "router/api/stop_string_matcher.h"

#include <algorithm>
#include <utility>

namespace tpserve {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) {
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

StopStringMatcher::Result StopStringMatcher::Append(absl::string_view delta) {
  Result result;
  if (stopped_) return result;
  pending_.append(delta.data(), delta.size());
  if (stops_.empty()) {
    result.text = std::move(pending_);
    pending_.clear();
    return result;
  }
  // Earliest complete match wins; on a tie the longer stop string.
  size_t best_pos = std::string::npos;
  const std::string* best = nullptr;
  for (const std::string& stop : stops_) {
    size_t pos = pending_.find(stop);
    if (pos == std::string::npos) continue;
    if (pos < best_pos || (pos == best_pos && stop.size() > best->size())) {
      best_pos = pos;
      best = &stop;
    }
  }
  if (best != nullptr) {
    stopped_ = true;
    result.stopped = true;
    result.matched = *best;
    result.text = pending_.substr(0, best_pos);
    pending_.clear();
    return result;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  // Stop strings are valid UTF-8, so the held suffix starts on a character
  // boundary and the released text stays valid UTF-8.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    size_t max_len = std::min(stop.size() - 1, pending_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (absl::string_view(pending_).substr(pending_.size() - len) ==
          absl::string_view(stop).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  result.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string out = std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace tpserve
