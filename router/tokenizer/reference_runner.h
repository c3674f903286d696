// Test helper: runs testdata/tokenizer_reference.py (the independent Python
// references) in $TPSERVE_ROOT/.venv and parses its JSON output.
//
//   nlohmann::json ref;
//   ASSERT_TRUE(RunReference({"bytelevel", "--gguf", path}, &ref).ok());
#ifndef TPSERVE_ROUTER_TOKENIZER_REFERENCE_RUNNER_H_
#define TPSERVE_ROUTER_TOKENIZER_REFERENCE_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace tpserve::tokenizer_testing {

// $TPSERVE_ROOT, or an error telling how to set it.
absl::Status Root(std::string* root);

// Runs the reference script with `args` plus "--out <tmp file>" and parses
// the result into *out.
absl::Status RunReference(const std::vector<std::string>& args, nlohmann::json* out);

// A file under a temporary directory the test may write.
std::string TempPath(const std::string& name);

}  // namespace tpserve::tokenizer_testing

#endif  // TPSERVE_ROUTER_TOKENIZER_REFERENCE_RUNNER_H_
