#include "router/api/api_keys.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace tpserve {

// Limit state of one key name. Its own mutex: admissions of different keys
// do not contend.
struct ApiKeys::KeyState {
  explicit KeyState(std::string n) : name(std::move(n)) {}
  const std::string name;
  absl::Mutex mu;
  ApiKeyLimits limits ABSL_GUARDED_BY(mu);
  bool admin ABSL_GUARDED_BY(mu) = false;
  // Requests per second: a token bucket holding max(1, rps) tokens.
  double bucket ABSL_GUARDED_BY(mu) = -1;  // < 0: full, not yet used
  absl::Time bucket_time ABSL_GUARDED_BY(mu);
  // Generated tokens in the last 60 s, by whole second since the epoch.
  std::array<int64_t, 60> window_tokens ABSL_GUARDED_BY(mu) = {};
  std::array<int64_t, 60> window_second ABSL_GUARDED_BY(mu) = {};
  int32_t streams ABSL_GUARDED_BY(mu) = 0;

  int64_t WindowSum(int64_t now_s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int64_t sum = 0;
    for (size_t i = 0; i < 60; ++i) {
      if (window_second[i] > now_s - 60) sum += window_tokens[i];
    }
    return sum;
  }
  // Seconds until the window's sum drops below `limit` (old seconds expire).
  int64_t SecondsUntilBelow(int64_t now_s, int64_t limit) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int64_t sum = WindowSum(now_s);
    for (int64_t s = now_s - 59; s <= now_s; ++s) {
      const size_t i = static_cast<size_t>(s % 60);
      if (window_second[i] == s) sum -= window_tokens[i];
      if (sum < limit) return s + 60 - now_s;
    }
    return 60;
  }
};

namespace {

absl::StatusOr<Sha256Digest> ParseHex(absl::string_view hex) {
  Sha256Digest out;
  if (hex.size() != 64) return absl::InvalidArgumentError("the hash must be 64 hex digits");
  for (size_t i = 0; i < 32; ++i) {
    int v = 0;
    for (char c : hex.substr(2 * i, 2)) {
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v |= c - 'A' + 10;
      } else {
        return absl::InvalidArgumentError("the hash must be 64 hex digits");
      }
    }
    out[i] = static_cast<uint8_t>(v);
  }
  return out;
}

absl::Status ParseLimit(absl::string_view field, ApiKeyLimits* limits) {
  const std::vector<absl::string_view> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
  if (kv.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", field, "\" is not a limit (rps=N, tpm=N or streams=N)"));
  }
  double value = 0;
  if (!absl::SimpleAtod(kv[1], &value) || !(value > 0) || value > 1e12) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit ", kv[0], " must be a positive number, got \"", kv[1], "\""));
  }
  if (kv[0] == "rps") {
    limits->requests_per_second = value;
  } else if (kv[0] == "tpm") {
    limits->tokens_per_minute = static_cast<int64_t>(value);
  } else if (kv[0] == "streams") {
    limits->max_streams = static_cast<int32_t>(std::min(value, 1e9));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown limit \"", kv[0], "\" (rps, tpm or streams)"));
  }
  return absl::OkStatus();
}

std::string FileStamp(const struct stat& st) {
  return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec);
}

absl::Status Exhausted(const std::string& name, absl::string_view what, double retry_s) {
  return absl::ResourceExhaustedError(absl::StrFormat("API key \"%s\": %s; retry in %.1f s", name,
                                                      std::string(what), std::max(retry_s, 0.1)));
}

}  // namespace

absl::StatusOr<std::vector<ApiKeyEntry>> ParseApiKeys(absl::string_view text) {
  std::vector<ApiKeyEntry> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", why));
    };
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() < 2)
      return fail("expected: name sha256-hex [rps=N] [tpm=N] [streams=N] [admin]");
    ApiKeyEntry e;
    e.name = std::string(fields[0]);
    for (char c : e.name) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
        return fail("a key name may use letters, digits, '-', '_' and '.'");
      }
    }
    absl::StatusOr<Sha256Digest> hash = ParseHex(fields[1]);
    if (!hash.ok()) return fail(hash.status().message());
    e.hash = *hash;
    for (size_t i = 2; i < fields.size(); ++i) {
      if (fields[i] == "admin") {
        e.admin = true;
        continue;
      }
      absl::Status s = ParseLimit(fields[i], &e.limits);
      if (!s.ok()) return fail(s.message());
    }
    for (const ApiKeyEntry& other : out) {
      if (other.name == e.name) return fail(absl::StrCat("the name \"", e.name, "\" is repeated"));
      if (other.hash == e.hash) return fail(absl::StrCat("the same key as \"", other.name, "\""));
    }
    out.push_back(std::move(e));
  }
  return out;
}

absl::string_view BearerToken(absl::string_view authorization) {
  authorization = absl::StripAsciiWhitespace(authorization);
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return "";
  }
  return absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
}

ApiKeys::Lease::~Lease() {
  absl::MutexLock lock(&state_->mu);
  --state_->streams;
}

void ApiKeys::Lease::AddTokens(int64_t n) {
  if (n <= 0) return;
  const int64_t now_s = absl::ToUnixSeconds(keys_->Now());
  {
    absl::MutexLock lock(&state_->mu);
    const size_t i = static_cast<size_t>(now_s % 60);
    if (state_->window_second[i] != now_s) {
      state_->window_second[i] = now_s;
      state_->window_tokens[i] = 0;
    }
    state_->window_tokens[i] += n;
  }
  if (tokens_ != nullptr) tokens_->Increment(static_cast<double>(n));
}

const std::string& ApiKeys::Lease::key_name() const { return state_->name; }

ApiKeys::ApiKeys(Options options) : options_(std::move(options)) {
  if (options_.registry != nullptr) {
    requests_ = &prometheus::BuildCounter()
                     .Name("tpserve_api_key_requests_total")
                     .Help(
                         "Generate requests by API key name and result (admitted, "
                         "rate_limited, token_quota, stream_limit)")
                     .Register(*options_.registry);
    tokens_ = &prometheus::BuildCounter()
                   .Name("tpserve_api_key_generation_tokens_total")
                   .Help("Generated tokens charged to each API key name")
                   .Register(*options_.registry);
    unauthenticated_ = &prometheus::BuildCounter()
                            .Name("tpserve_api_key_unauthenticated_total")
                            .Help("Calls refused UNAUTHENTICATED, by reason (missing, unknown)")
                            .Register(*options_.registry);
  }
}

ApiKeys::~ApiKeys() = default;

absl::StatusOr<std::unique_ptr<ApiKeys>> ApiKeys::Load(Options options) {
  std::unique_ptr<ApiKeys> keys(new ApiKeys(std::move(options)));
  {
    absl::MutexLock lock(&keys->mu_);
    keys->next_check_ = keys->Now() + keys->options_.reload_interval;
  }
  absl::Status s = keys->ReloadIfChanged();
  if (!s.ok()) return s;
  if (keys->size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--api_keys_file ", keys->options_.path, " lists no keys"));
  }
  return keys;
}

absl::Status ApiKeys::ReloadIfChanged() {
  const std::string& path = options_.path;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("--api_keys_file ", path, " cannot be read"));
  }
  const std::string stamp = FileStamp(st);
  {
    absl::MutexLock lock(&mu_);
    if (stamp == file_stamp_) return absl::OkStatus();
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--api_keys_file ", path, " cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<ApiKeyEntry>> entries = ParseApiKeys(text.str());
  absl::MutexLock lock(&mu_);
  file_stamp_ = stamp;  // a broken file is reported once, not on every request
  if (!entries.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--api_keys_file ", path, ": ", entries.status().message()));
  }
  return Apply(*std::move(entries));
}

absl::Status ApiKeys::Apply(std::vector<ApiKeyEntry> entries) {
  std::vector<std::pair<Sha256Digest, std::shared_ptr<KeyState>>> table;
  absl::flat_hash_map<std::string, std::shared_ptr<KeyState>> states;
  for (ApiKeyEntry& e : entries) {
    auto it = states_.find(e.name);
    std::shared_ptr<KeyState> state =
        it != states_.end() ? it->second : std::make_shared<KeyState>(e.name);
    {
      absl::MutexLock lock(&state->mu);
      state->limits = e.limits;
      state->admin = e.admin;
    }
    states.emplace(e.name, state);
    table.emplace_back(e.hash, std::move(state));
  }
  states_ = std::move(states);
  table_ = std::move(table);
  if (options_.log) {
    options_.log(absl::StrCat("API keys: ", table_.size(), " key(s) from ", options_.path));
  }
  return absl::OkStatus();
}

size_t ApiKeys::size() const {
  absl::MutexLock lock(&mu_);
  return table_.size();
}

void ApiKeys::MaybeReload() {
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = Now();
    if (now < next_check_) return;
    next_check_ = now + options_.reload_interval;
  }
  absl::Status s = ReloadIfChanged();
  if (!s.ok() && options_.log) {
    options_.log(absl::StrCat("API keys unchanged: ", s.message()));
  }
}

void ApiKeys::Count(const std::string& name, const char* result) {
  if (requests_ != nullptr) requests_->Add({{"key_name", name}, {"result", result}}).Increment();
}

absl::StatusOr<std::shared_ptr<ApiKeys::KeyState>> ApiKeys::Find(absl::string_view authorization) {
  MaybeReload();
  const absl::string_view key = BearerToken(authorization);
  if (key.empty()) {
    if (unauthenticated_ != nullptr) unauthenticated_->Add({{"reason", "missing"}}).Increment();
    return absl::UnauthenticatedError(
        "this router requires an API key: send \"authorization: Bearer <key>\"");
  }
  const Sha256Digest hash = Sha256(std::string_view(key.data(), key.size()));
  std::shared_ptr<KeyState> found;
  absl::MutexLock lock(&mu_);
  // Every entry is compared, match or not: the time does not depend on
  // which entry (if any) matches.
  for (const auto& [digest, state] : table_) {
    if (ConstantTimeEqual(digest, hash)) found = state;
  }
  if (found == nullptr) {
    if (unauthenticated_ != nullptr) unauthenticated_->Add({{"reason", "unknown"}}).Increment();
    return absl::UnauthenticatedError("the API key is not valid");
  }
  return found;
}

absl::StatusOr<std::string> ApiKeys::Authenticate(absl::string_view authorization) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<KeyState> state, Find(authorization));
  return state->name;
}

absl::StatusOr<std::string> ApiKeys::AuthenticateAdmin(absl::string_view authorization) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<KeyState> state, Find(authorization));
  bool admin;
  {
    absl::MutexLock lock(&state->mu);
    admin = state->admin;
  }
  if (!admin) {
    Count(state->name, "permission_denied");
    return absl::PermissionDeniedError(
        absl::StrCat("API key \"", state->name,
                     "\" may not call tpserve.v1.Admin (give it the 'admin' grant "
                     "in --api_keys_file)"));
  }
  return state->name;
}

absl::StatusOr<std::unique_ptr<ApiKeys::Lease>> ApiKeys::Admit(absl::string_view authorization) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<KeyState> state, Find(authorization));
  const absl::Time now = Now();
  absl::Status refused;
  const char* result = "admitted";
  {
    absl::MutexLock lock(&state->mu);
    const ApiKeyLimits l = state->limits;
    const int64_t now_s = absl::ToUnixSeconds(now);
    if (l.max_streams > 0 && state->streams >= l.max_streams) {
      result = "stream_limit";
      refused = Exhausted(
          state->name,
          absl::StrCat(state->streams, " of ", l.max_streams, " concurrent streams are open"), 1.0);
    } else if (l.tokens_per_minute > 0 && state->WindowSum(now_s) >= l.tokens_per_minute) {
      result = "token_quota";
      refused =
          Exhausted(state->name,
                    absl::StrCat("the quota of ", l.tokens_per_minute,
                                 " generated tokens per minute is used"),
                    static_cast<double>(state->SecondsUntilBelow(now_s, l.tokens_per_minute)));
    } else if (l.requests_per_second > 0) {
      const double capacity = std::max(1.0, l.requests_per_second);
      double tokens =
          state->bucket < 0
              ? capacity
              : std::min(capacity, state->bucket + absl::ToDoubleSeconds(now - state->bucket_time) *
                                                       l.requests_per_second);
      state->bucket_time = now;
      if (tokens < 1.0) {
        state->bucket = tokens;
        result = "rate_limited";
        refused = Exhausted(
            state->name, absl::StrCat("more than ", l.requests_per_second, " requests per second"),
            (1.0 - tokens) / l.requests_per_second);
      } else {
        state->bucket = tokens - 1.0;
      }
    }
    if (refused.ok()) ++state->streams;
  }
  Count(state->name, result);
  if (!refused.ok()) return refused;
  prometheus::Counter* tokens =
      tokens_ != nullptr ? &tokens_->Add({{"key_name", state->name}}) : nullptr;
  return std::unique_ptr<Lease>(new Lease(this, std::move(state), tokens));
}

}  // namespace tpserve
