// UTF-8 helpers and code-point classes for the tokenizer's pre-tokenizers.
//
//   absl::Status s = ValidateUtf8(text);          // clear error on bad input
//   size_t n; uint32_t cp = DecodeUtf8(text, i, &n);  // text must be valid
//   if (ClassOf(cp) == CodepointClass::kLetter) ...
//   std::string fixed = Utf8Lossy(bytes);         // bad bytes -> U+FFFD
#ifndef TPSERVE_ROUTER_TOKENIZER_UNICODE_H_
#define TPSERVE_ROUTER_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "router/tokenizer/unicode_tables.h"

namespace tpserve::tokenizer_internal {

// OK when `text` is well-formed UTF-8 (no overlongs, surrogates or code points
// above U+10FFFF); otherwise InvalidArgument naming the first bad byte offset.
absl::Status ValidateUtf8(std::string_view text);

// Length of the well-formed UTF-8 sequence at text[pos], or 0 when the bytes
// there are not one (invalid, or cut off by the end of `text`).
size_t ValidSequenceLength(std::string_view text, size_t pos);

// True when `text` ends in the first 1-3 bytes of a sequence that could still
// be completed by more bytes. Returns the number of such bytes (0 if none).
size_t IncompleteTailLength(std::string_view text);

// Decodes the code point at text[pos] of VALID UTF-8 and sets *len to its
// byte length.
uint32_t DecodeUtf8(std::string_view text, size_t pos, size_t* len);

// Appends `cp` as UTF-8.
void AppendUtf8(uint32_t cp, std::string* out);

// Copies `bytes`, replacing each maximal ill-formed subpart with U+FFFD (the
// Unicode "substitution of maximal subparts" practice, as Rust's
// from_utf8_lossy and Python's errors="replace" do).
std::string Utf8Lossy(std::string_view bytes);

// \p{L}, \p{N}, \s (White_Space) or other.
CodepointClass ClassOf(uint32_t cp);

inline bool IsLetter(uint32_t cp) { return ClassOf(cp) == CodepointClass::kLetter; }
inline bool IsNumber(uint32_t cp) { return ClassOf(cp) == CodepointClass::kNumber; }
inline bool IsWhitespace(uint32_t cp) { return ClassOf(cp) == CodepointClass::kWhitespace; }

}  // namespace tpserve::tokenizer_internal

#endif  // TPSERVE_ROUTER_TOKENIZER_UNICODE_H_
