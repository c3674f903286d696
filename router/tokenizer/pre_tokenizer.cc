#include "router/tokenizer/pre_tokenizer.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "router/tokenizer/unicode.h"

namespace tpserve::tokenizer_internal {
namespace {

// The text as code points with byte offsets, so scanners can look ahead.
struct Chars {
  std::vector<uint32_t> cp;
  std::vector<size_t> off;  // off[i] = byte offset of cp[i]; off[n] = text size
  std::vector<CodepointClass> cls;
};

Chars Decode(std::string_view text) {
  Chars c;
  size_t i = 0;
  while (i < text.size()) {
    size_t len;
    uint32_t cp = DecodeUtf8(text, i, &len);
    c.cp.push_back(cp);
    c.off.push_back(i);
    c.cls.push_back(ClassOf(cp));
    i += len;
  }
  c.off.push_back(text.size());
  return c;
}

bool Lower(uint32_t cp, char ascii) { return cp == static_cast<uint32_t>(ascii); }

bool EqualsIgnoreCase(uint32_t cp, char ascii) {
  return cp == static_cast<uint32_t>(ascii) || cp == static_cast<uint32_t>(ascii - 'a' + 'A');
}

// Length (in code points) of a contraction 's 't 're 've 'm 'll 'd at i, or 0.
size_t Contraction(const Chars& c, size_t i, bool ignore_case) {
  size_t n = c.cp.size();
  if (c.cp[i] != '\'' || i + 1 >= n) return 0;
  auto is = [&](size_t k, char ch) {
    return k < n && (ignore_case ? EqualsIgnoreCase(c.cp[k], ch) : Lower(c.cp[k], ch));
  };
  if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return 2;
  if ((is(i + 1, 'r') && is(i + 2, 'e')) || (is(i + 1, 'v') && is(i + 2, 'e')) ||
      (is(i + 1, 'l') && is(i + 2, 'l'))) {
    return 3;
  }
  return 0;
}

bool IsL(const Chars& c, size_t i) {
  return i < c.cp.size() && c.cls[i] == CodepointClass::kLetter;
}
bool IsN(const Chars& c, size_t i) {
  return i < c.cp.size() && c.cls[i] == CodepointClass::kNumber;
}
bool IsS(const Chars& c, size_t i) {
  return i < c.cp.size() && c.cls[i] == CodepointClass::kWhitespace;
}
bool IsOther(const Chars& c, size_t i) {
  return i < c.cp.size() && c.cls[i] == CodepointClass::kOther;
}
bool IsCrLf(const Chars& c, size_t i) {
  return i < c.cp.size() && (c.cp[i] == '\r' || c.cp[i] == '\n');
}

// \s+(?!\S) then \s+, at a whitespace code point i: the end of the match.
size_t WhitespaceRun(const Chars& c, size_t i) {
  size_t j = i;
  while (IsS(c, j)) ++j;
  if (j == c.cp.size()) return j;  // run reaches the end: (?!\S) holds
  if (j - i >= 2) return j - 1;    // leave one space to prefix the next word
  return j;                        // single whitespace before \S: plain \s+
}

// One GPT-2 match starting at i (i < n); returns its end.
size_t Gpt2Match(const Chars& c, size_t i) {
  if (size_t k = Contraction(c, i, /*ignore_case=*/false)) return i + k;
  size_t j = i;
  if (c.cp[i] == ' ' && i + 1 < c.cp.size() && !IsS(c, i + 1)) j = i + 1;  // " ?"
  if (IsL(c, j)) {
    while (IsL(c, j)) ++j;
    return j;
  }
  if (IsN(c, j)) {
    while (IsN(c, j)) ++j;
    return j;
  }
  if (IsOther(c, j)) {
    while (IsOther(c, j)) ++j;
    return j;
  }
  return WhitespaceRun(c, i);  // c.cp[i] is whitespace here
}

// One Llama-3 / Qwen2 match starting at i; returns its end.
size_t Llama3Match(const Chars& c, size_t i, size_t max_digits) {
  size_t n = c.cp.size();
  if (size_t k = Contraction(c, i, /*ignore_case=*/true)) return i + k;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (IsL(c, i) || (!IsL(c, i) && !IsN(c, i) && !IsCrLf(c, i) && IsL(c, i + 1))) {
    size_t j = IsL(c, i) ? i : i + 1;
    while (IsL(c, j)) ++j;
    return j;
  }
  // \p{N}{1,max}
  if (IsN(c, i)) {
    size_t j = i;
    while (IsN(c, j) && j - i < max_digits) ++j;
    return j;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t j = (c.cp[i] == ' ' && IsOther(c, i + 1)) ? i + 1 : i;
  if (IsOther(c, j)) {
    while (IsOther(c, j)) ++j;
    while (IsCrLf(c, j)) ++j;
    return j;
  }
  // \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run.
  size_t end = i;
  while (end < n && IsS(c, end)) ++end;
  for (size_t k = end; k > i; --k) {
    if (IsCrLf(c, k - 1)) return k;
  }
  return WhitespaceRun(c, i);
}

void Scan(PreTokenizer kind, std::string_view text, std::vector<std::string_view>* out) {
  if (text.empty()) return;
  Chars c = Decode(text);
  size_t i = 0;
  while (i < c.cp.size()) {
    size_t e = kind == PreTokenizer::kGpt2     ? Gpt2Match(c, i)
               : kind == PreTokenizer::kLlama3 ? Llama3Match(c, i, 3)
                                               : Llama3Match(c, i, 1);
    out->push_back(text.substr(c.off[i], c.off[e] - c.off[i]));
    i = e;
  }
}

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizerFromName(std::string_view name) {
  if (name == "gpt2" || name == "gpt-2" || name == "default" || name.empty()) {
    return PreTokenizer::kGpt2;
  }
  if (name == "smollm" || name == "starcoder" || name == "refact") return PreTokenizer::kSmolLm;
  if (name == "llama3" || name == "llama-bpe" || name == "llama-v3") return PreTokenizer::kLlama3;
  if (name == "qwen2") return PreTokenizer::kQwen2;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported pre-tokenizer \"", absl::string_view(name.data(), name.size()),
                   "\"; supported: gpt2, smollm (starcoder, refact), llama3 (llama-bpe), qwen2"));
}

void PreTokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>* out) {
  if (kind != PreTokenizer::kSmolLm) {
    Scan(kind, text, out);
    return;
  }
  // Isolate every \p{N} code point, then GPT-2 on the stretches between.
  size_t start = 0, i = 0;
  while (i < text.size()) {
    size_t len;
    uint32_t cp = DecodeUtf8(text, i, &len);
    if (IsNumber(cp)) {
      Scan(PreTokenizer::kGpt2, text.substr(start, i - start), out);
      out->push_back(text.substr(i, len));
      start = i + len;
    }
    i += len;
  }
  Scan(PreTokenizer::kGpt2, text.substr(start), out);
}

}  // namespace tpserve::tokenizer_internal
