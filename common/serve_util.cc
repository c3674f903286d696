#include "common/serve_util.h"

#include <cstdio>
#include <exception>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace tpserve {

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsExposer(
    const std::string& address, const std::string& flag) {
  try {
    return std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve /metrics on ", address, " (", e.what(),
                                               "); is the port taken? pick another ", flag));
  }
}

void WritePortFile(const std::string& path, const std::vector<std::pair<std::string, int>>& ports) {
  if (path.empty()) return;
  {
    std::ofstream out(path + ".tmp");
    out << "{";
    for (size_t i = 0; i < ports.size(); ++i) {
      out << (i ? ", " : "") << "\"" << ports[i].first << "\": " << ports[i].second;
    }
    out << "}\n";
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
}

}  // namespace tpserve
