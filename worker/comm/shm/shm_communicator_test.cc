// Tests of the shared-memory communicator: the shared Communicator
// conformance suite (worker/comm/communicator_conformance.h) plus chunking of
// buffers larger than a slot. Each rank is a forked process on 127.0.0.1,
// rendezvousing through a TcpKvStoreServer on port 0 in the test process; a
// rank reports failure through its exit code (and stderr).
#include "worker/comm/shm/shm_communicator.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "worker/comm/communicator_conformance.h"
#include "worker/comm/fork_ranks_test_util.h"

namespace tpserve {
namespace {

// Rank 0 creates the segment and records the world size in it; rank 1 reads
// it on attach, so rank 1 reports a mismatch.
INSTANTIATE_COMMUNICATOR_CONFORMANCE(Shm, CommBackend{"shm", /*rank_detecting_world_mismatch=*/1});

// Buffers larger than a slot go through in chunks.
TEST(ShmCommunicatorTest, LargeBuffersAreChunked) {
  std::vector<int> codes = RunRanks(2, [](int rank, KvStore& store) {
    ShmOptions o;
    o.slot_bytes = 4096;
    auto comm = CreateShmCommunicator(store, rank, 2, o);
    if (!comm.ok()) return 2;
    std::vector<float> x(10000);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i + rank);
    RANK_EXPECT((*comm)->AllReduceSum(x.data(), x.size(), CommDType::kF32).ok());
    for (size_t i = 0; i < x.size(); ++i) RANK_EXPECT(x[i] == 2.0f * i + 1);
    std::vector<int32_t> g(2 * 3000);
    for (int i = 0; i < 3000; ++i) g[rank * 3000 + i] = rank * 100000 + i;
    RANK_EXPECT((*comm)->AllGather(g.data() + rank * 3000, g.data(), 3000, CommDType::kI32).ok());
    for (int r = 0; r < 2; ++r) {
      for (int i = 0; i < 3000; ++i) RANK_EXPECT(g[r * 3000 + i] == r * 100000 + i);
    }
    return 0;
  });
  ExpectAllRanksSucceeded(codes);
}

}  // namespace
}  // namespace tpserve
