// Sha256: the SHA-256 digest (FIPS 180-4) of a byte string, for API-key
// hashes. The router stores only hashes of its API keys and compares the
// hash of what a client presents, so a leaked keys file or metrics page
// never reveals a usable key. Written from the FIPS 180-4 text; the test
// checks it against the standard's vectors and Python's hashlib.
//
//   std::string hex = Sha256Hex("secret");  // 64 lowercase hex digits
//   std::array<uint8_t, 32> d = Sha256("secret");
//   bool same = ConstantTimeEqual(d, other);  // time independent of content
#ifndef TPSERVE_COMMON_SHA256_H_
#define TPSERVE_COMMON_SHA256_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tpserve {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
std::string Sha256Hex(std::string_view data);

// Compares two digests touching every byte, so the time taken does not tell
// an attacker how many leading bytes matched.
bool ConstantTimeEqual(const Sha256Digest& a, const Sha256Digest& b);

}  // namespace tpserve

#endif  // TPSERVE_COMMON_SHA256_H_
