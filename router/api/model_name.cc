#include "router/api/model_name.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace tpserve {
namespace {

// A GGUF type or quantization tag: f16, F32, BF16, fp16, Q4_1, q8_0, Q4_K_M,
// IQ4_XS, ...
bool IsQuantizationTag(absl::string_view s) {
  const std::string t = absl::AsciiStrToLower(s);
  if (t == "f16" || t == "f32" || t == "bf16" || t == "fp16" || t == "fp32") return true;
  absl::string_view rest = t;
  if (absl::StartsWith(rest, "iq")) {
    rest.remove_prefix(2);
  } else if (absl::StartsWith(rest, "q")) {
    rest.remove_prefix(1);
  } else {
    return false;
  }
  return !rest.empty() && absl::ascii_isdigit(static_cast<unsigned char>(rest[0]));
}

}  // namespace

std::string DefaultModelName(absl::string_view model_path) {
  absl::string_view p = model_path;
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  if (size_t slash = p.rfind('/'); slash != absl::string_view::npos) p.remove_prefix(slash + 1);
  if (absl::EndsWithIgnoreCase(p, ".gguf")) {
    p.remove_suffix(5);
    const size_t sep = p.find_last_of(".-");
    if (sep != absl::string_view::npos && sep > 0 && IsQuantizationTag(p.substr(sep + 1))) {
      p = p.substr(0, sep);
    }
  }
  return p.empty() ? std::string("model") : std::string(p);
}

}  // namespace tpserve
