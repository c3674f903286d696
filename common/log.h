// Log: one line to stderr as "HH:MM:SS.mmm [tag] text", flushed at once, for
// the binaries' start-up, shutdown and failure messages. The tag names the
// process ("router", "worker 3"); set it once before other threads log.
//
//   SetLogTag(absl::StrCat("worker ", rank));
//   Log(absl::StrCat("listening on ", address));
#ifndef TPSERVE_COMMON_LOG_H_
#define TPSERVE_COMMON_LOG_H_

#include <string>
#include <string_view>

namespace tpserve {

void SetLogTag(std::string tag);
void Log(std::string_view line);

}  // namespace tpserve

#endif  // TPSERVE_COMMON_LOG_H_
