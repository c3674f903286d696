#include "router/tokenizer/unicode.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tpserve::tokenizer_internal {
namespace {

// Valid range of the second byte for each lead byte (RFC 3629 table 3-7);
// later continuation bytes are always 0x80..0xBF.
bool LeadInfo(uint8_t b, int* len, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (b < 0x80) {
    *len = 1;
  } else if (b >= 0xC2 && b <= 0xDF) {
    *len = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    *len = 3;
    if (b == 0xE0) *lo = 0xA0;
    if (b == 0xED) *hi = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    *len = 4;
    if (b == 0xF0) *lo = 0x90;
    if (b == 0xF4) *hi = 0x8F;  // <= U+10FFFF
  } else {
    return false;
  }
  return true;
}

// Number of bytes at text[pos] that form a valid prefix of some sequence
// (>= 1 when the lead byte is valid), and the full length it needs.
size_t ValidPrefix(std::string_view text, size_t pos, int* need) {
  int len;
  uint8_t lo, hi;
  if (!LeadInfo(static_cast<uint8_t>(text[pos]), &len, &lo, &hi)) {
    *need = 0;
    return 0;
  }
  *need = len;
  size_t n = 1;
  for (int k = 1; k < len && pos + n < text.size(); ++k) {
    uint8_t c = static_cast<uint8_t>(text[pos + n]);
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t ValidSequenceLength(std::string_view text, size_t pos) {
  int need;
  size_t n = ValidPrefix(text, pos, &need);
  return (need > 0 && n == static_cast<size_t>(need)) ? n : 0;
}

absl::Status ValidateUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = ValidSequenceLength(text, i);
    if (n == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "text is not valid UTF-8: bad byte 0x",
          absl::Hex(static_cast<uint8_t>(text[i]), absl::kZeroPad2), " at offset ", i));
    }
    i += n;
  }
  return absl::OkStatus();
}

size_t IncompleteTailLength(std::string_view text) {
  // A lead byte at most 3 bytes from the end whose valid prefix runs to the end.
  size_t start = text.size() >= 3 ? text.size() - 3 : 0;
  for (size_t p = start; p < text.size(); ++p) {
    uint8_t b = static_cast<uint8_t>(text[p]);
    if (b < 0xC2 || b > 0xF4) continue;
    int need;
    size_t n = ValidPrefix(text, p, &need);
    if (p + n == text.size() && n < static_cast<size_t>(need)) return n;
  }
  return 0;
}

uint32_t DecodeUtf8(std::string_view text, size_t pos, size_t* len) {
  uint8_t b = static_cast<uint8_t>(text[pos]);
  if (b < 0x80) {
    *len = 1;
    return b;
  }
  int n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
  uint32_t cp = b & (0x7F >> n);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(text[pos + k]) & 0x3F);
  *len = n;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    int need;
    size_t n = ValidPrefix(bytes, i, &need);
    if (need > 0 && n == static_cast<size_t>(need)) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD for the maximal ill-formed subpart
      i += std::max<size_t>(n, 1);
    }
  }
  return out;
}

CodepointClass ClassOf(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CodepointClass::kLetter;
    if (cp >= '0' && cp <= '9') return CodepointClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CodepointClass::kWhitespace;
    return CodepointClass::kOther;
  }
  const CodepointRange* end = kCodepointRanges + kNumCodepointRanges;
  const CodepointRange* it = std::upper_bound(
      kCodepointRanges, end, cp, [](uint32_t c, const CodepointRange& r) { return c < r.first; });
  if (it == kCodepointRanges) return CodepointClass::kOther;
  --it;
  return cp <= it->last ? it->cls : CodepointClass::kOther;
}

}  // namespace tpserve::tokenizer_internal
