#include "router/cluster/rendezvous.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

TEST(RendezvousTest, WorkersRegisterUnderTheSession) {
  Rendezvous rdv;
  ASSERT_TRUE(rdv.Start("127.0.0.1", 0).ok());
  ASSERT_GT(rdv.port(), 0);
  // What a worker does (worker/service/worker_main.cc).
  GrpcKvStoreClient worker(absl::StrCat("127.0.0.1:", rdv.port()),
                           grpc::InsecureChannelCredentials());
  absl::StatusOr<std::string> session = worker.Get(kSessionKey, absl::Seconds(5));
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(*session, rdv.session());
  ASSERT_TRUE(worker.Set(WorkerKey(*session, 0, 1), "10.0.0.2:50062").ok());
  ASSERT_TRUE(worker.Set(WorkerKey(*session, 0, 0), "10.0.0.1:50061").ok());
  absl::StatusOr<std::string> rank0 = rdv.Lookup(0, 0);
  absl::StatusOr<std::string> rank1 = rdv.Lookup(0, 1);
  ASSERT_TRUE(rank0.ok()) << rank0.status();
  ASSERT_TRUE(rank1.ok()) << rank1.status();
  EXPECT_EQ(*rank0, "10.0.0.1:50061");
  EXPECT_EQ(*rank1, "10.0.0.2:50062");
  // A restarted worker registers again: the newest address wins.
  ASSERT_TRUE(worker.Set(WorkerKey(*session, 0, 1), "10.0.0.2:50099").ok());
  EXPECT_EQ(*rdv.Lookup(0, 1), "10.0.0.2:50099");
}

TEST(RendezvousTest, AnUnregisteredRankIsNotFoundAtOnce) {
  Rendezvous rdv;
  ASSERT_TRUE(rdv.Start("127.0.0.1", 0).ok());
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> addr = rdv.Lookup(0, 0);
  EXPECT_EQ(addr.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(addr.status().message()), HasSubstr("rank 0"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(RendezvousTest, SessionsDiffer) {
  Rendezvous a, b;
  EXPECT_NE(a.session(), b.session());
}

}  // namespace
}  // namespace tpserve
