#include "common/log.h"

#include <cstdio>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tpserve {
namespace {

absl::Mutex tag_mu(absl::kConstInit);
std::string* tag ABSL_GUARDED_BY(tag_mu) = nullptr;  // leaked: logging outlives statics

}  // namespace

void SetLogTag(std::string t) {
  absl::MutexLock lock(&tag_mu);
  if (tag == nullptr) tag = new std::string;
  *tag = std::move(t);
}

void Log(std::string_view line) {
  std::string prefix;
  {
    absl::MutexLock lock(&tag_mu);
    if (tag != nullptr) prefix = *tag;
  }
  const std::string time = absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::LocalTimeZone());
  // One fprintf per line, so lines from different threads do not interleave.
  std::fprintf(stderr, "%s [%s] %.*s\n", time.c_str(), prefix.c_str(),
               static_cast<int>(line.size()), line.data());
  std::fflush(stderr);
}

}  // namespace tpserve
