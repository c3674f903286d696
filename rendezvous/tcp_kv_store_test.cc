#include "rendezvous/tcp_kv_store.h"

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

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

int ThreadCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

// tpserve-run and the multi-rank tests fork their ranks between Listen and
// Serve, so no server thread can hold a lock the children inherit.
TEST(TcpKvStoreTest, ListenStartsNoThreadAndForkedRanksAreServedAfterServe) {
  const int before = ThreadCount();
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Listen("127.0.0.1", 0).ok());
  EXPECT_EQ(ThreadCount(), before);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    TcpKvStoreClient child("127.0.0.1", server.port());
    _exit(child.Set("from_child", "1").ok() ? 0 : 1);
  }
  server.Serve();
  TcpKvStoreClient parent("127.0.0.1", server.port());
  absl::StatusOr<std::string> v = parent.Get("from_child", absl::Seconds(10));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "1");
}

}  // namespace
}  // namespace tpserve
