#include "rendezvous/tcp_kv_store.h"

#include <thread>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(TcpKvStoreTest, SetThenGet) {
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  ASSERT_GT(server.port(), 0);
  TcpKvStoreClient a("127.0.0.1", server.port());
  TcpKvStoreClient b("127.0.0.1", server.port());
  ASSERT_TRUE(a.Set("k", std::string("v\0x", 3)).ok());
  absl::StatusOr<std::string> v = b.Get("k", absl::Seconds(1));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, std::string("v\0x", 3));
}

TEST(TcpKvStoreTest, GetWaitsForALaterSet) {
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  TcpKvStoreClient reader("127.0.0.1", server.port());
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(100));
    TcpKvStoreClient w("127.0.0.1", server.port());
    ASSERT_TRUE(w.Set("late", "here").ok());
  });
  absl::StatusOr<std::string> v = reader.Get("late", absl::Seconds(5));
  writer.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "here");
}

TEST(TcpKvStoreTest, MissingKeyTimesOut) {
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  TcpKvStoreClient c("127.0.0.1", server.port());
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> v = c.Get("never", absl::Milliseconds(200));
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // The connection stays usable after a timed-out get.
  ASSERT_TRUE(c.Set("x", "1").ok());
  EXPECT_EQ(*c.Get("x", absl::Seconds(1)), "1");
}

TEST(TcpKvStoreTest, StoppedServerIsAnErrorNotAHang) {
  auto server = std::make_unique<TcpKvStoreServer>();
  ASSERT_TRUE(server->Start("127.0.0.1", 0).ok());
  TcpKvStoreClient c("127.0.0.1", server->port(), absl::Milliseconds(300));
  ASSERT_TRUE(c.Set("a", "1").ok());
  server.reset();
  absl::StatusOr<std::string> v = c.Get("a", absl::Seconds(1));
  EXPECT_FALSE(v.ok());
}

}  // namespace
}  // namespace tpserve
