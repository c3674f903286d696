// ParseFlags: absl flag parsing for the tpserve binaries with a `--help` that
// lists the binary's own flags. absl's --help lists only flags defined in
// files named like the program and exits 1; here --help (also -h,
// --helpfull) prints `usage` and every flag defined outside absl itself
// (name, default, help) to stdout and exits 0. A flag no file defines is a
// usage error: a message on stderr and exit 2, before absl parses anything.
//
//   int main(int argc, char** argv) {
//     std::vector<char*> args = ParseFlags(argc, argv, "usage: tpserve-run --model PATH ...");
//     ...
//   }
#ifndef TPSERVE_COMMON_FLAGS_H_
#define TPSERVE_COMMON_FLAGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tpserve {

// Positional arguments (argv[0] first), as absl::ParseCommandLine returns.
std::vector<char*> ParseFlags(int argc, char** argv, absl::string_view usage);

// The text --help prints: `usage`, then one entry per flag, sorted by name.
std::string FlagsHelp(absl::string_view usage);

}  // namespace tpserve

#endif  // TPSERVE_COMMON_FLAGS_H_
