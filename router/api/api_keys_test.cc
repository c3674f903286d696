#include "router/api/api_keys.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace tpserve {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name + std::to_string(getpid());
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path + ".tmp");
  out << text;
  out.close();
  std::rename((path + ".tmp").c_str(), path.c_str());  // a new inode, as Secrets swap
}

std::string Line(const std::string& name, const std::string& key, const std::string& limits = "") {
  return name + " " + Sha256Hex(key) + " " + limits + "\n";
}

ApiKeys::Options Opts(const std::string& path) {
  ApiKeys::Options o;
  o.path = path;
  return o;
}

// A clock the test moves.
struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  std::function<absl::Time()> fn() {
    return [this] { return now; };
  }
};

TEST(ParseApiKeysTest, ParsesNamesHashesAndLimits) {
  auto keys = ParseApiKeys("# comment\n\n" + Line("alice", "a", "rps=2.5 tpm=600 streams=3") +
                           "  " + Line("bob", "b"));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "alice");
  EXPECT_EQ((*keys)[0].hash, Sha256("a"));
  EXPECT_DOUBLE_EQ((*keys)[0].limits.requests_per_second, 2.5);
  EXPECT_EQ((*keys)[0].limits.tokens_per_minute, 600);
  EXPECT_EQ((*keys)[0].limits.max_streams, 3);
  EXPECT_EQ((*keys)[1].limits.max_streams, 0);
  EXPECT_FALSE((*keys)[0].admin);
}

TEST(ParseApiKeysTest, AdminIsAGrantNotALimit) {
  auto keys = ParseApiKeys(Line("ops", "o", "admin rps=1") + Line("user", "u"));
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE((*keys)[0].admin);
  EXPECT_DOUBLE_EQ((*keys)[0].limits.requests_per_second, 1);
  EXPECT_FALSE((*keys)[1].admin);
  EXPECT_FALSE(ParseApiKeys(Line("ops", "o", "admin=1")).ok());
}

TEST(ParseApiKeysTest, ErrorsNameTheLine) {
  auto bad_hash = ParseApiKeys(Line("a", "x") + "b 1234\n");
  ASSERT_FALSE(bad_hash.ok());
  EXPECT_NE(bad_hash.status().message().find("line 2"), std::string::npos);
  EXPECT_NE(bad_hash.status().message().find("64 hex"), std::string::npos);
  auto bad_limit = ParseApiKeys(Line("a", "x", "qps=3"));
  ASSERT_FALSE(bad_limit.ok());
  EXPECT_NE(bad_limit.status().message().find("unknown limit \"qps\""), std::string::npos);
  EXPECT_FALSE(ParseApiKeys(Line("a", "x", "tpm=-1")).ok());
  EXPECT_FALSE(ParseApiKeys(Line("a", "x") + Line("a", "y")).ok());  // repeated name
  EXPECT_FALSE(ParseApiKeys(Line("a", "x") + Line("b", "x")).ok());  // repeated key
  EXPECT_FALSE(ParseApiKeys(Line("a b", "x")).ok());
}

TEST(BearerTokenTest, ExtractsTheCredential) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("  bearer   abc  "), "abc");
  EXPECT_EQ(BearerToken("Basic abc"), "");
  EXPECT_EQ(BearerToken("Bearer "), "");
  EXPECT_EQ(BearerToken(""), "");
}

TEST(ApiKeysTest, UnknownAndMissingKeysAreUnauthenticated) {
  const std::string path = TempPath("keys_auth");
  WriteFile(path, Line("alice", "secret-a"));
  auto keys = ApiKeys::Load(Opts(path));
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ((*keys)->Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*keys)->Authenticate("Bearer wrong").status().code(),
            absl::StatusCode::kUnauthenticated);
  // The hash itself is not a key.
  EXPECT_EQ((*keys)->Authenticate("Bearer " + Sha256Hex("secret-a")).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto name = (*keys)->Authenticate("Bearer secret-a");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(*name, "alice");
}

TEST(ApiKeysTest, LoadRefusesAnEmptyOrBrokenFile) {
  const std::string path = TempPath("keys_empty");
  WriteFile(path, "# nobody\n");
  EXPECT_FALSE(ApiKeys::Load(Opts(path)).ok());
  WriteFile(path, "alice nothex\n");
  auto broken = ApiKeys::Load(Opts(path));
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find(path), std::string::npos);
  EXPECT_FALSE(ApiKeys::Load(Opts(path + ".missing")).ok());
}

TEST(ApiKeysTest, StreamLimitFreesWithTheLease) {
  const std::string path = TempPath("keys_streams");
  WriteFile(path, Line("alice", "k", "streams=2"));
  auto keys = ApiKeys::Load(Opts(path));
  ASSERT_TRUE(keys.ok());
  auto first = (*keys)->Admit("Bearer k");
  auto second = (*keys)->Admit("Bearer k");
  ASSERT_TRUE(first.ok() && second.ok());
  auto third = (*keys)->Admit("Bearer k");
  ASSERT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("2 of 2 concurrent streams"), std::string::npos);
  EXPECT_NE(third.status().message().find("retry in"), std::string::npos);
  first->reset();
  EXPECT_TRUE((*keys)->Admit("Bearer k").ok());
}

TEST(ApiKeysTest, RequestsPerSecondIsATokenBucket) {
  const std::string path = TempPath("keys_rps");
  WriteFile(path, Line("alice", "k", "rps=2"));
  FakeClock clock;
  ApiKeys::Options options = Opts(path);
  options.clock = clock.fn();
  auto keys = ApiKeys::Load(options);
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE((*keys)->Admit("Bearer k").ok());
  EXPECT_TRUE((*keys)->Admit("Bearer k").ok());
  auto third = (*keys)->Admit("Bearer k");
  ASSERT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("retry in 0.5 s"), std::string::npos)
      << third.status().message();
  clock.now += absl::Milliseconds(500);
  EXPECT_TRUE((*keys)->Admit("Bearer k").ok());
  EXPECT_FALSE((*keys)->Admit("Bearer k").ok());
}

TEST(ApiKeysTest, TokensPerMinuteIsASlidingWindow) {
  const std::string path = TempPath("keys_tpm");
  WriteFile(path, Line("alice", "k", "tpm=100"));
  FakeClock clock;
  ApiKeys::Options options = Opts(path);
  options.clock = clock.fn();
  auto keys = ApiKeys::Load(options);
  ASSERT_TRUE(keys.ok());
  {
    auto lease = (*keys)->Admit("Bearer k");
    ASSERT_TRUE(lease.ok());
    (*lease)->AddTokens(60);
  }
  clock.now += absl::Seconds(20);
  {
    auto lease = (*keys)->Admit("Bearer k");
    ASSERT_TRUE(lease.ok());
    (*lease)->AddTokens(40);
  }
  auto over = (*keys)->Admit("Bearer k");
  ASSERT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  // The first 60 tokens leave the window 40 s from now.
  EXPECT_NE(over.status().message().find("retry in 40.0 s"), std::string::npos)
      << over.status().message();
  clock.now += absl::Seconds(39);
  EXPECT_FALSE((*keys)->Admit("Bearer k").ok());
  clock.now += absl::Seconds(1);
  EXPECT_TRUE((*keys)->Admit("Bearer k").ok());
}

TEST(ApiKeysTest, ReloadsAChangedFileAndKeepsQuotaState) {
  const std::string path = TempPath("keys_reload");
  WriteFile(path, Line("alice", "old", "streams=1"));
  FakeClock clock;
  std::vector<std::string> logs;
  ApiKeys::Options options = Opts(path);
  options.log = [&](absl::string_view l) { logs.emplace_back(l); };
  options.clock = clock.fn();
  auto keys = ApiKeys::Load(options);
  ASSERT_TRUE(keys.ok());
  auto lease = (*keys)->Admit("Bearer old");
  ASSERT_TRUE(lease.ok());
  // Rotate alice's key; the open stream still counts against her.
  WriteFile(path, Line("alice", "new", "streams=1") + Line("bob", "b"));
  EXPECT_TRUE((*keys)->Authenticate("Bearer old").ok());  // not re-read within the interval
  clock.now += absl::Seconds(1);
  EXPECT_FALSE((*keys)->Authenticate("Bearer old").ok());
  EXPECT_EQ((*keys)->Admit("Bearer new").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE((*keys)->Authenticate("Bearer b").ok());
  // A broken file keeps the keys in force and says why.
  WriteFile(path, "garbage\n");
  clock.now += absl::Seconds(1);
  EXPECT_TRUE((*keys)->Authenticate("Bearer b").ok());
  ASSERT_FALSE(logs.empty());
  EXPECT_NE(logs.back().find("line 1"), std::string::npos) << logs.back();
}

TEST(ApiKeysTest, MetricsAreLabelledByNameNeverByKey) {
  const std::string path = TempPath("keys_metrics");
  WriteFile(path, Line("alice", "the-secret-key", "streams=1"));
  prometheus::Registry registry;
  ApiKeys::Options options = Opts(path);
  options.registry = &registry;
  auto keys = ApiKeys::Load(options);
  ASSERT_TRUE(keys.ok());
  {
    auto lease = (*keys)->Admit("Bearer the-secret-key");
    ASSERT_TRUE(lease.ok());
    (*lease)->AddTokens(7);
    EXPECT_FALSE((*keys)->Admit("Bearer the-secret-key").ok());
  }
  EXPECT_FALSE((*keys)->Admit("Bearer nope").ok());
  EXPECT_FALSE((*keys)->Admit("").ok());
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  EXPECT_NE(text.find("tpserve_api_key_requests_total{key_name=\"alice\",result=\"admitted\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("tpserve_api_key_requests_total{key_name=\"alice\",result=\"stream_limit\"} 1"),
      std::string::npos);
  EXPECT_NE(text.find("tpserve_api_key_generation_tokens_total{key_name=\"alice\"} 7"),
            std::string::npos);
  EXPECT_NE(text.find("tpserve_api_key_unauthenticated_total{reason=\"unknown\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("tpserve_api_key_unauthenticated_total{reason=\"missing\"} 1"),
            std::string::npos);
  EXPECT_EQ(text.find("the-secret-key"), std::string::npos);
  EXPECT_EQ(text.find(Sha256Hex("the-secret-key")), std::string::npos);
}

}  // namespace
}  // namespace tpserve
