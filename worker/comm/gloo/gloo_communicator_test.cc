// Tests of the Gloo communicator: the shared Communicator conformance suite
// (worker/comm/communicator_conformance.h: collectives for 1..3 ranks,
// including a buffer large enough for the ring algorithm, argument checks,
// dead / stalled / aborted peers, 16 KB all-reduce latency), with ranks as
// forked processes talking TCP over 127.0.0.1.
#include "worker/comm/communicator_conformance.h"

namespace tpserve {
namespace {

// Every Gloo rank publishes its world size before the rendezvous and rank 0
// compares the others' with its own, so rank 0 reports a mismatch.
INSTANTIATE_COMMUNICATOR_CONFORMANCE(Gloo,
                                     CommBackend{"gloo", /*rank_detecting_world_mismatch=*/0});

}  // namespace
}  // namespace tpserve
