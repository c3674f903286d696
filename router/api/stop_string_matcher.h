// StopStringMatcher: finds stop strings in streamed text without ever letting
// a partial match reach the client. Text that could still be the start of a
// stop string is held back until the next delta proves it is not (then it is
// released) or completes the match (then it, and everything after it, is
// dropped).
//
//   StopStringMatcher m({"\n\nUser:", "###"});
//   StopStringMatcher::Result r = m.Append(delta);
//   Send(r.text);                       // safe to stream
//   if (r.stopped) Finish(r.matched);   // generation ends here
//   ...
//   Send(m.Flush());                    // on any other finish: held-back text
#ifndef TPSERVE_ROUTER_API_STOP_STRING_MATCHER_H_
#define TPSERVE_ROUTER_API_STOP_STRING_MATCHER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tpserve {

class StopStringMatcher {
 public:
  struct Result {
    std::string text;      // safe to stream now
    bool stopped = false;  // a stop string matched; `text` ends right before it
    std::string matched;   // the stop string that matched
  };

  // Empty stop strings are ignored (validation rejects them earlier).
  explicit StopStringMatcher(std::vector<std::string> stops);

  // Adds `delta` (valid UTF-8) to the stream. After a match, further calls
  // return empty results.
  Result Append(absl::string_view delta);

  // Releases the held-back text (call when generation ends without a match).
  std::string Flush();

  size_t held_bytes() const { return pending_.size(); }

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // not yet streamed; a prefix of some stop's prefix
  bool stopped_ = false;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_STOP_STRING_MATCHER_H_
