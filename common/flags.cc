#include "common/flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tpserve {
namespace {

// Flags that absl itself defines (--flagfile, --fromenv, ...) live in files
// under an "absl/" directory; everything else is the binary's.
bool OwnFlag(const absl::CommandLineFlag& flag) {
  return !absl::StrContains(flag.Filename(), "absl/");
}

bool IsHelp(absl::string_view arg) {
  return arg == "--help" || arg == "-help" || arg == "-h" || arg == "--helpfull" ||
         arg == "--helpshort";
}

// The flag name of "--name=value", "--name", "-name" or "--noname" (a known
// bool), or "" when `arg` is not a flag.
std::string FlagName(absl::string_view arg) {
  if (arg.size() < 2 || arg[0] != '-') return "";
  arg.remove_prefix(arg[1] == '-' ? 2 : 1);
  std::string name(arg.substr(0, arg.find('=')));
  if (absl::FindCommandLineFlag(name) == nullptr && absl::StartsWith(name, "no") &&
      absl::FindCommandLineFlag(name.substr(2)) != nullptr) {
    return name.substr(2);
  }
  return name;
}

}  // namespace

std::string FlagsHelp(absl::string_view usage) {
  std::vector<std::pair<absl::string_view, const absl::CommandLineFlag*>> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (OwnFlag(*flag)) flags.emplace_back(name, flag);
  }
  std::sort(flags.begin(), flags.end());
  std::string out = absl::StrCat(usage, "\n\nflags:\n");
  for (const auto& [name, flag] : flags) {
    absl::StrAppend(&out, "  --", name, " (default: ", flag->DefaultValue(), ")\n      ",
                    flag->Help(), "\n");
  }
  return out;
}

std::vector<char*> ParseFlags(int argc, char** argv, absl::string_view usage) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (IsHelp(arg)) {
      std::fputs(FlagsHelp(usage).c_str(), stdout);
      std::exit(0);
    }
    const std::string name = FlagName(arg);
    if (!name.empty() && absl::FindCommandLineFlag(name) == nullptr) {
      std::fprintf(stderr, "unknown flag --%s (--help lists the flags)\n", name.c_str());
      std::exit(2);
    }
  }
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace tpserve
