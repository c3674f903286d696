// Test helper for communicator tests: forks one process per rank, each with a
// TcpKvStoreClient to a TcpKvStoreServer on port 0 in the test process, and
// collects exit codes (a hung group is killed at `limit`: code 999).
//
//   std::vector<int> codes = RunRanks(3, [](int rank, KvStore& store) { ...; return 0; });
#ifndef TPSERVE_WORKER_COMM_FORK_RANKS_TEST_UTIL_H_
#define TPSERVE_WORKER_COMM_FORK_RANKS_TEST_UTIL_H_

#include <cstdio>
#include <functional>
#include <vector>

#include "absl/time/time.h"
#include "rendezvous/kv_store.h"

namespace tpserve {

using RankMainFn = std::function<int(int rank, KvStore& store)>;

// Exit codes per rank; -signal when killed by a signal, 999 when it hung.
std::vector<int> RunRanks(int world, const RankMainFn& fn,
                          absl::Duration limit = absl::Seconds(60));

}  // namespace tpserve

// Inside a rank: report and fail the rank (exit code 1) when `cond` is false.
#define RANK_EXPECT(cond)                                                     \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "rank check failed at line %d: %s\n", __LINE__, #cond); \
      return 1;                                                               \
    }                                                                         \
  } while (0)

#endif  // TPSERVE_WORKER_COMM_FORK_RANKS_TEST_UTIL_H_
