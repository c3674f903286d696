#include "worker/comm/communicator_conformance.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rendezvous/kv_store.h"
#include "rendezvous/tcp_kv_store.h"
#include "worker/comm/communicator.h"
#include "worker/comm/fork_ranks_test_util.h"
#include "worker/comm/host_communicator.h"

namespace tpserve {

void PrintTo(const CommBackend& backend, std::ostream* os) { *os << backend.name; }

std::string CommBackendTestName(const ::testing::TestParamInfo<CommBackend>& info) {
  return info.param.name;
}

std::string CommWorldTestName(const ::testing::TestParamInfo<std::tuple<CommBackend, int>>& info) {
  return std::string(std::get<0>(info.param).name) + "_world" +
         std::to_string(std::get<1>(info.param));
}

void ExpectAllRanksSucceeded(const std::vector<int>& codes) {
  for (size_t r = 0; r < codes.size(); ++r) EXPECT_EQ(codes[r], 0) << "rank " << r;
}

namespace {

HostCommOptions Options(const CommBackend& backend, absl::Duration timeout,
                        absl::Duration rendezvous_timeout = absl::Seconds(20)) {
  HostCommOptions o;
  o.backend = backend.name;
  o.timeout = timeout;
  o.rendezvous_timeout = rendezvous_timeout;
  return o;
}

// Rank `rank` of `world`, or nullptr (with the reason on stderr).
std::unique_ptr<Communicator> Connect(const CommBackend& backend, KvStore& store, int rank,
                                      int world, absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateHostCommunicator(store, rank, world, Options(backend, timeout));
  if (!comm.ok()) {
    fprintf(stderr, "rank %d: %s\n", rank, comm.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(comm);
}

// Runs `body` on `world` forked ranks, each with a communicator whose
// collectives time out after `timeout`; expects every rank to exit with 0.
void RunConnectedRanks(const CommBackend& backend, int world, absl::Duration timeout,
                       const std::function<int(int rank, Communicator& comm)>& body) {
  std::vector<int> codes = RunRanks(world, [&](int rank, KvStore& store) {
    std::unique_ptr<Communicator> comm = Connect(backend, store, rank, world, timeout);
    if (comm == nullptr) return 2;
    return body(rank, *comm);
  });
  ASSERT_EQ(codes.size(), static_cast<size_t>(world));
  ExpectAllRanksSucceeded(codes);
}

struct TimedStatus {
  absl::Status status;
  absl::Duration took;
};

// Runs `collective` on rank `rank`; logs and returns its status and duration.
TimedStatus TimeCollective(int rank, const std::function<absl::Status()>& collective) {
  const absl::Time start = absl::Now();
  TimedStatus t{collective(), absl::ZeroDuration()};
  t.took = absl::Now() - start;
  fprintf(stderr, "rank %d got '%s' after %s\n", rank, t.status.ToString().c_str(),
          absl::FormatDuration(t.took).c_str());
  return t;
}

// The small all-reduce the failure tests block in (a direct exchange on Gloo).
absl::Status SmallAllReduce(Communicator& comm) {
  std::vector<float> x(16, 1.0f);
  return comm.AllReduceSum(x.data(), x.size(), CommDType::kF32);
}

TEST_P(CommunicatorWorldTest, CollectivesComputeTheRightValues) {
  const CommBackend backend = std::get<0>(GetParam());
  const int world = std::get<1>(GetParam());
  RunConnectedRanks(backend, world, absl::Seconds(10), [world](int rank, Communicator& c) {
    RANK_EXPECT(c.rank() == rank && c.world_size() == world);
    // All-reduce of 1001 floats (odd split across the ring).
    std::vector<float> x(1001);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i * (rank + 1));
    RANK_EXPECT(c.AllReduceSum(x.data(), x.size(), CommDType::kF32).ok());
    const float ranks_sum = world * (world + 1) / 2.0f;
    for (size_t i = 0; i < x.size(); ++i) RANK_EXPECT(x[i] == i * ranks_sum);
    // A large buffer (Gloo: the ring algorithm; small ones a direct exchange).
    std::vector<float> big(200003);
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>((i % 1000) * (rank + 1));
    RANK_EXPECT(c.AllReduceSum(big.data(), big.size(), CommDType::kF32).ok());
    for (size_t i = 0; i < big.size(); ++i) RANK_EXPECT(big[i] == (i % 1000) * ranks_sum);
    // int32 all-reduce.
    std::vector<int32_t> n = {rank, 1};
    RANK_EXPECT(c.AllReduceSum(n.data(), 2, CommDType::kI32).ok());
    RANK_EXPECT(n[0] == world * (world - 1) / 2 && n[1] == world);
    // All-gather of 3 floats per rank, with send aliasing recv's slot.
    std::vector<float> g(3 * world, -1.0f);
    for (int j = 0; j < 3; ++j) g[rank * 3 + j] = 10.0f * rank + j;
    RANK_EXPECT(c.AllGather(g.data() + rank * 3, g.data(), 3, CommDType::kF32).ok());
    for (int r = 0; r < world; ++r) {
      for (int j = 0; j < 3; ++j) RANK_EXPECT(g[r * 3 + j] == 10.0f * r + j);
    }
    // Broadcast from the last rank.
    std::vector<int64_t> b = {rank == world - 1 ? 42 : 0, rank == world - 1 ? -7 : 0};
    RANK_EXPECT(c.Broadcast(b.data(), 2, CommDType::kI64, world - 1).ok());
    RANK_EXPECT(b[0] == 42 && b[1] == -7);
    RANK_EXPECT(c.Barrier().ok());
    RANK_EXPECT(c.Broadcast(b.data(), 2, CommDType::kI64, world).code() ==
                absl::StatusCode::kInvalidArgument);
    return 0;
  });
}

TEST_P(CommunicatorConformanceTest, RejectsRankOutsideWorld) {
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  TcpKvStoreClient store("127.0.0.1", server.port());
  HostCommOptions o;
  o.backend = GetParam().name;
  EXPECT_EQ(CreateHostCommunicator(store, 2, 2, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateHostCommunicator(store, -1, 2, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateHostCommunicator(store, 0, 0, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(CommunicatorConformanceTest, DisagreeingWorldSizesAreAnErrorNotAHang) {
  const CommBackend backend = GetParam();
  std::vector<int> codes = RunRanks(
      2,
      [backend](int rank, KvStore& store) {
        // Rank 1 believes the world has 3 ranks.
        auto comm = CreateHostCommunicator(
            store, rank, rank == 0 ? 2 : 3,
            Options(backend, absl::Seconds(2), /*rendezvous_timeout=*/absl::Seconds(2)));
        if (comm.ok()) return 1;
        fprintf(stderr, "rank %d: %s\n", rank, comm.status().ToString().c_str());
        // One rank sees the other's size (gloo: rank 0 reads rank 1's; shm:
        // rank 1 reads rank 0's in the segment); the other may time out.
        if (rank == backend.rank_detecting_world_mismatch) {
          RANK_EXPECT(comm.status().code() == absl::StatusCode::kInvalidArgument);
        }
        return 0;
      },
      absl::Seconds(30));
  ExpectAllRanksSucceeded(codes);
}

// A rank that dies mid-run turns into an error on the others within the
// timeout.
TEST_P(CommunicatorConformanceTest, DeadPeerBecomesAnErrorWithinTimeout) {
  const CommBackend backend = GetParam();
  const absl::Duration timeout = absl::Seconds(2);
  RunConnectedRanks(backend, 3, timeout, [timeout](int rank, Communicator& comm) {
    std::vector<float> x(4096, 1.0f);
    RANK_EXPECT(comm.AllReduceSum(x.data(), x.size(), CommDType::kF32).ok());
    if (rank == 2) _exit(0);  // dies without closing anything cleanly
    TimedStatus t = TimeCollective(rank, [&] {
      absl::Status s;
      for (int i = 0; i < 1000 && s.ok(); ++i) {
        s = comm.AllReduceSum(x.data(), x.size(), CommDType::kF32);
      }
      return s;
    });
    RANK_EXPECT(!t.status.ok());
    RANK_EXPECT(t.took < timeout + absl::Seconds(1));
    // The communicator stays broken.
    RANK_EXPECT(!comm.Barrier().ok());
    return 0;
  });
}

// A rank that stops participating (alive, connections open) is a timeout.
TEST_P(CommunicatorConformanceTest, StalledPeerBecomesDeadlineExceeded) {
  const CommBackend backend = GetParam();
  const absl::Duration timeout = absl::Seconds(1);
  RunConnectedRanks(backend, 2, timeout, [timeout](int rank, Communicator& comm) {
    if (rank == 1) {
      absl::SleepFor(absl::Seconds(4));
      return 0;
    }
    TimedStatus t = TimeCollective(rank, [&] { return SmallAllReduce(comm); });
    RANK_EXPECT(t.status.code() == absl::StatusCode::kDeadlineExceeded);
    RANK_EXPECT(t.took < timeout + absl::Seconds(1));
    return 0;
  });
}

// Abort on one rank releases a peer blocked in a collective before the
// (long) timeout.
TEST_P(CommunicatorConformanceTest, AbortReleasesBlockedPeers) {
  const CommBackend backend = GetParam();
  RunConnectedRanks(backend, 2, absl::Seconds(20), [](int rank, Communicator& comm) {
    RANK_EXPECT(comm.Barrier().ok());
    if (rank == 1) {
      absl::SleepFor(absl::Milliseconds(300));
      comm.Abort();
      RANK_EXPECT(comm.Barrier().code() == absl::StatusCode::kFailedPrecondition);
      absl::SleepFor(absl::Seconds(1));
      return 0;
    }
    TimedStatus t = TimeCollective(rank, [&] { return SmallAllReduce(comm); });
    RANK_EXPECT(!t.status.ok());
    RANK_EXPECT(t.took < absl::Seconds(5));
    return 0;
  });
}

// Abort from another thread ends this rank's own in-flight all-reduce with an
// error at once, without crashing.
TEST_P(CommunicatorConformanceTest, AbortFromAnotherThreadEndsTheLocalCollective) {
  const CommBackend backend = GetParam();
  RunConnectedRanks(backend, 2, absl::Seconds(3), [](int rank, Communicator& comm) {
    RANK_EXPECT(comm.Barrier().ok());
    if (rank == 0) {
      absl::SleepFor(absl::Seconds(4));  // never joins the all-reduce
      return 0;
    }
    std::thread aborter([&] {
      absl::SleepFor(absl::Milliseconds(200));
      comm.Abort();
    });
    TimedStatus t = TimeCollective(rank, [&] { return SmallAllReduce(comm); });
    aborter.join();
    RANK_EXPECT(!t.status.ok());
    RANK_EXPECT(t.took < absl::Seconds(2));  // well before the 3 s timeout
    return 0;
  });
}

// Latency of a 16 KB f32 all-reduce between two processes (printed; recorded
// in docs/benchmarks.md). Asserts only a loose bound.
TEST_P(CommunicatorConformanceTest, AllReduce16KbLatency) {
  const CommBackend backend = GetParam();
  RunConnectedRanks(backend, 2, absl::Seconds(10), [backend](int rank, Communicator& comm) {
    std::vector<float> x(4096, 1.0f);
    for (int i = 0; i < 50; ++i) {
      RANK_EXPECT(comm.AllReduceSum(x.data(), 4096, CommDType::kF32).ok());
    }
    const int iters = 500;
    absl::Time start = absl::Now();
    for (int i = 0; i < iters; ++i) {
      RANK_EXPECT(comm.AllReduceSum(x.data(), 4096, CommDType::kF32).ok());
    }
    double us = absl::ToDoubleMicroseconds(absl::Now() - start) / iters;
    if (rank == 0) printf("%s all-reduce 16 KB, 2 processes: %.1f us per call\n", backend.name, us);
    RANK_EXPECT(us < 20000);
    return 0;
  });
}

}  // namespace
}  // namespace tpserve
