// ApiKeys: who may call the public API, and how much.
//
// The keys file (--api_keys_file) holds one key per line; only the key's
// SHA-256 is stored, so the file (a Kubernetes Secret, a config map) never
// holds a usable key:
//
//   # name sha256 of the key (64 hex digits)                                  limits
//   alice 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b rps=5 tpm=9000
//   ops   fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9 streams=4 admin
//
// Limits: rps = requests per second (a token bucket holding one second of
// burst), tpm = generated tokens per minute (a sliding 60 s window, charged as
// tokens stream), streams = concurrent Generate streams. Absent = unlimited.
// `admin` lets the key call tpserve.v1.Admin (drain, undrain, list groups);
// other keys get PERMISSION_DENIED there.
// scripts/api_key.sh (or `printf %s KEY | sha256sum`) prints a key's line.
//
// Clients send `authorization: Bearer <key>` (gRPC metadata or the HTTP
// header). Missing or unknown keys are UNAUTHENTICATED; a request over a limit
// is RESOURCE_EXHAUSTED with "retry in N s" in the message. Every presented
// key is hashed and compared against every entry in constant time. The file is
// re-read when it changes (checked at most once per reload interval, on
// requests); a file that no longer parses keeps the previous keys and logs
// why. Limit state is kept by key name across reloads. Metrics (when a
// registry is given) are labelled by the key's name, never the key:
//   tpserve_api_key_requests_total{key_name, result}
//   tpserve_api_key_generation_tokens_total{key_name}
//   tpserve_api_key_unauthenticated_total{reason}
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ApiKeys> keys, ApiKeys::Load({.path = f}));
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ApiKeys::Lease> lease,
//                        keys->Admit(authorization_header));
//   lease->AddTokens(n);  // as tokens stream; the stream slot frees with the lease
#ifndef TPSERVE_ROUTER_API_API_KEYS_H_
#define TPSERVE_ROUTER_API_API_KEYS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sha256.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace tpserve {

struct ApiKeyLimits {
  double requests_per_second = 0;  // 0 = unlimited
  int64_t tokens_per_minute = 0;   // generated tokens; 0 = unlimited
  int32_t max_streams = 0;         // concurrent Generate streams; 0 = unlimited
};

struct ApiKeyEntry {
  std::string name;
  Sha256Digest hash;
  ApiKeyLimits limits;
  bool admin = false;  // may call tpserve.v1.Admin
};

// Parses a keys file; errors name the line. Names must be unique.
[[nodiscard]] absl::StatusOr<std::vector<ApiKeyEntry>> ParseApiKeys(absl::string_view text);

// "Bearer <key>" -> "<key>" (scheme case-insensitive, whitespace trimmed);
// "" when the header is absent or not a bearer credential.
absl::string_view BearerToken(absl::string_view authorization);

class ApiKeys {
 public:
  struct Options {
    std::string path;
    absl::Duration reload_interval = absl::Seconds(1);
    std::function<void(absl::string_view)> log;  // reload messages; may be empty
    prometheus::Registry* registry = nullptr;    // may be null: no metrics
    std::function<absl::Time()> clock;           // tests; empty = absl::Now
  };

  struct KeyState;

  // Holds one admitted Generate stream's slot; charges its tokens to the key.
  // Thread-safe. Destroying it frees the stream slot.
  class Lease {
   public:
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    void AddTokens(int64_t n);
    const std::string& key_name() const;

   private:
    friend class ApiKeys;
    Lease(ApiKeys* keys, std::shared_ptr<KeyState> state, prometheus::Counter* tokens)
        : keys_(keys), state_(std::move(state)), tokens_(tokens) {}
    ApiKeys* const keys_;
    std::shared_ptr<KeyState> state_;
    prometheus::Counter* const tokens_;  // may be null
  };

  // Reads and parses the file; an error names the file and the line. The
  // ApiKeys must outlive every Lease it hands out.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ApiKeys>> Load(Options options);
  ~ApiKeys();

  // The key's name for a non-generating call (Tokenize, ModelInfo, models),
  // or UNAUTHENTICATED.
  [[nodiscard]] absl::StatusOr<std::string> Authenticate(absl::string_view authorization);
  // The key's name when it carries the `admin` grant; UNAUTHENTICATED for a
  // missing or unknown key, PERMISSION_DENIED for a key without the grant.
  [[nodiscard]] absl::StatusOr<std::string> AuthenticateAdmin(absl::string_view authorization);
  // Authenticates and admits one Generate stream against the key's limits.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Lease>> Admit(absl::string_view authorization);

  // Re-reads the file now if it changed; the Status says why a changed file
  // was not taken (the old keys stay).
  absl::Status ReloadIfChanged();
  size_t size() const;

 private:
  struct Loaded;
  explicit ApiKeys(Options options);
  absl::Time Now() const { return options_.clock ? options_.clock() : absl::Now(); }
  absl::StatusOr<std::shared_ptr<KeyState>> Find(absl::string_view authorization);
  void MaybeReload();
  absl::Status Apply(std::vector<ApiKeyEntry> entries) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Count(const std::string& name, const char* result);

  const Options options_;
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Counter>* tokens_ = nullptr;
  prometheus::Family<prometheus::Counter>* unauthenticated_ = nullptr;

  mutable absl::Mutex mu_;
  // Key states by name: kept across reloads so quotas are not reset.
  absl::flat_hash_map<std::string, std::shared_ptr<KeyState>> states_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<Sha256Digest, std::shared_ptr<KeyState>>> table_ ABSL_GUARDED_BY(mu_);
  std::string file_stamp_ ABSL_GUARDED_BY(mu_);  // inode, size, mtime of the taken file
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_API_KEYS_H_
