#include "router/api/request_timeout.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tpserve {

absl::StatusOr<absl::Time> ParseRequestTimeout(absl::string_view value, absl::Time arrival) {
  if (value.empty()) return absl::InfiniteFuture();
  const absl::string_view trimmed = absl::StripAsciiWhitespace(value);
  double seconds = 0;
  // SimpleAtod also takes "inf" and "nan"; the range check below rejects them.
  if (!absl::SimpleAtod(trimmed, &seconds) || !std::isfinite(seconds) || seconds <= 0 ||
      seconds > kMaxRequestTimeoutSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat(kRequestTimeoutHeader, ": must be a number of seconds > 0 and <= ",
                     kMaxRequestTimeoutSeconds, ", got \"", absl::CEscape(value), "\""));
  }
  return arrival + absl::Seconds(seconds);
}

}  // namespace tpserve
