#include "router/tokenizer/reference_runner.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace tpserve::tokenizer_testing {

absl::Status Root(std::string* root) {
  const char* r = std::getenv("TPSERVE_ROOT");
  if (r == nullptr || *r == '\0') {
    return absl::FailedPreconditionError(
        "TPSERVE_ROOT is not set: run with --test_env=TPSERVE_ROOT=/path/to/checkout "
        "(scripts/test.sh does)");
  }
  *root = r;
  return absl::OkStatus();
}

std::string TempPath(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return absl::StrCat(t != nullptr ? t : "/tmp", "/", name);
}

namespace {
std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}
}  // namespace

absl::Status RunReference(const std::vector<std::string>& args, nlohmann::json* out) {
  std::string root;
  if (absl::Status s = Root(&root); !s.ok()) return s;
  static int counter = 0;
  std::string out_path = TempPath(absl::StrCat("reference_", ++counter, ".json"));
  std::string cmd = absl::StrCat(Quote(root + "/.venv/bin/python3"), " ",
                                 Quote(root + "/router/tokenizer/testdata/tokenizer_reference.py"));
  for (const std::string& a : args) absl::StrAppend(&cmd, " ", Quote(a));
  absl::StrAppend(&cmd, " --out ", Quote(out_path));
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("reference script failed (", rc, "): ", cmd,
                                            " (is .venv set up? run scripts/setup.sh)"));
  }
  std::ifstream in(out_path);
  std::stringstream ss;
  ss << in.rdbuf();
  *out = nlohmann::json::parse(ss.str(), nullptr, false);
  if (out->is_discarded()) return absl::InternalError("reference output is not JSON");
  return absl::OkStatus();
}

}  // namespace tpserve::tokenizer_testing
