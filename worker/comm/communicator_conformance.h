// Conformance suite for host Communicator backends: the behaviour every
// backend must show (collective results for 1..3 ranks, argument checks,
// mismatched world sizes, dead / stalled / aborted peers as errors within the
// timeout, a loose latency bound). Each rank is a forked process on
// 127.0.0.1 that rendezvouses through a TcpKvStoreServer on port 0 in the
// test process (RunRanks); communicators come from CreateHostCommunicator by
// backend name. A backend's test file instantiates the suite and keeps only
// its backend-specific tests:
//
//   // worker/comm/shm/shm_communicator_test.cc, inside namespace tpserve
//   INSTANTIATE_COMMUNICATOR_CONFORMANCE(Shm, CommBackend{"shm", /*rank_detecting...=*/1});
//
// The test binary must link the `communicator_conformance` target (alwayslink,
// so its TEST_Ps register).
#ifndef TPSERVE_WORKER_COMM_COMMUNICATOR_CONFORMANCE_H_
#define TPSERVE_WORKER_COMM_COMMUNICATOR_CONFORMANCE_H_

#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve {

// What the suite needs to know about one backend.
struct CommBackend {
  // CreateHostCommunicator's backend name ("gloo", "shm"); also names tests.
  const char* name;
  // When rank 0 is told the world has 2 ranks and rank 1 that it has 3, the
  // rank that must fail with INVALID_ARGUMENT (the other may time out).
  int rank_detecting_world_mismatch;
};

void PrintTo(const CommBackend& backend, std::ostream* os);

// Test names: the backend's name, and for the world suite "_world<N>".
std::string CommBackendTestName(const ::testing::TestParamInfo<CommBackend>& info);
std::string CommWorldTestName(const ::testing::TestParamInfo<std::tuple<CommBackend, int>>& info);

// Fails the test (non-fatally) for every rank whose exit code is not 0.
void ExpectAllRanksSucceeded(const std::vector<int>& codes);

// Tests with a fixed number of ranks.
class CommunicatorConformanceTest : public ::testing::TestWithParam<CommBackend> {};
// Tests run for each world size (second parameter).
class CommunicatorWorldTest : public ::testing::TestWithParam<std::tuple<CommBackend, int>> {};

}  // namespace tpserve

// Instantiates both suites for one backend; `prefix` starts the test names.
#define INSTANTIATE_COMMUNICATOR_CONFORMANCE(prefix, ...)                                       \
  INSTANTIATE_TEST_SUITE_P(prefix, CommunicatorConformanceTest, ::testing::Values(__VA_ARGS__), \
                           ::tpserve::CommBackendTestName);                                     \
  INSTANTIATE_TEST_SUITE_P(                                                                     \
      prefix, CommunicatorWorldTest,                                                            \
      ::testing::Combine(::testing::Values(__VA_ARGS__), ::testing::Values(1, 2, 3)),           \
      ::tpserve::CommWorldTestName)

#endif  // TPSERVE_WORKER_COMM_COMMUNICATOR_CONFORMANCE_H_
