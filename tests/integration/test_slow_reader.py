"""Slow readers (router --stream_buffer_bytes): a client that opens 8
Generate streams and never reads them must not slow another client, and its
streams end RESOURCE_EXHAUSTED once more than the buffer bound waits behind
the client's HTTP/2 flow-control window; their KV blocks are freed.

"Not slowed" is measured against the same load with 8 clients that do read:
both are a batch of 9 for the step loop, so a slow reader that stalled the
loop (or its memory) would show as a lower rate for the other client. After
the 8 are cancelled the other client's rate is nearer its rate alone than
its rate beside them. The slow client asks for a small receive window (1 KiB lookahead, no
BDP growth) so the bound is reached within a few hundred tokens."""
import threading
import time
import unittest

import grpc

from cluster import Cluster, metric_sum, parse_metrics, stubs

pb, gpb = stubs("generation")

BUFFER = 2048
SLOW_MAX_TOKENS = 600


def snapshot(c):
    samples, _ = parse_metrics(c.scrape(c.router_metrics_port))
    return (metric_sum(samples, "tpserve_num_requests_running"),
            metric_sum(samples, "tpserve_kv_cache_usage_ratio"))


def decode_rate(stub, tokens=64):
    """Tokens per second after the first token of one greedy stream."""
    first, n = None, 0
    for r in stub.Generate(pb.GenerateRequest(text="Write a long poem about the sea.",
                                              max_tokens=tokens, ignore_eos=True,
                                              sampling=pb.SamplingParameters(temperature=0)),
                           timeout=120):
        if r.token_ids and first is None:
            first = time.time()
            continue
        n += len(r.token_ids)
    return n / (time.time() - first)


def best_rate(stub, tries=3):
    return max(decode_rate(stub) for _ in range(tries))


class SlowReaderTest(unittest.TestCase):
    def test_eight_unread_streams_are_cancelled_and_do_not_slow_others(self):
        with Cluster(world_size=1, kv_cache_mb=256,
                     router_args=[f"--stream_buffer_bytes={BUFFER}", "--max_num_seqs=16"]) as c:
            stub = gpb.GenerationStub(c.channel())
            decode_rate(stub)  # warm-up
            alone = best_rate(stub)

            # Reference: the same load from 8 clients that read.
            stop = threading.Event()
            readers = []

            def read(i):
                call = stub.Generate(pb.GenerateRequest(text=f"Story {i}",
                                                        max_tokens=SLOW_MAX_TOKENS,
                                                        ignore_eos=True), timeout=300)
                readers.append(call)
                try:
                    for _ in call:
                        if stop.is_set():
                            call.cancel()
                except grpc.RpcError:
                    pass

            threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            time.sleep(2)
            with_readers = best_rate(stub, tries=2)
            stop.set()
            for call in readers:
                call.cancel()
            for t in threads:
                t.join(timeout=60)
            self.wait_idle(c)

            # The slow client: 8 streams it never reads.
            slow_channel = grpc.insecure_channel(
                c.address(), options=[("grpc.http2.lookahead_bytes", 1024),
                                      ("grpc.http2.bdp_probe", 0)])
            slow_stub = gpb.GenerationStub(slow_channel)
            calls = [slow_stub.Generate(pb.GenerateRequest(text=f"Story {i}",
                                                           max_tokens=SLOW_MAX_TOKENS,
                                                           ignore_eos=True), timeout=300)
                     for i in range(8)]
            time.sleep(2)
            running, _ = snapshot(c)
            self.assertEqual(running, 8, "the 8 unread streams should be generating")
            with_slow = best_rate(stub, tries=2)
            cancelled_at = self.wait_idle(c, timeout=240)

            after = best_rate(stub)
            print(f"decode tokens/s: alone {alone:.1f}, with 8 readers {with_readers:.1f}, "
                  f"with 8 unread streams {with_slow:.1f}, after {after:.1f}; unread streams "
                  f"all cancelled {cancelled_at:.1f} s after the measurement")
            self.assertGreaterEqual(with_slow, 0.9 * with_readers)
            # Recovery, not a rate comparison: a loop still serving the
            # cancelled streams would decode at about `with_slow` (a batch of
            # 9: ~1/7 of `alone` on a 2-core machine, 18.7 against 128 in one
            # run), a recovered one at about `alone`. So `after` must lie
            # nearer `alone` than `with_slow`. A fixed 0.75 x `alone` failed 2
            # of 6 runs on a 2-core machine (after 106-108 against alone
            # 155-166) that had recovered all the same.
            self.assertGreater(after, (alone + with_slow) / 2)

            # Read now: each stream ends RESOURCE_EXHAUSTED before max_tokens.
            for call in calls:
                got = 0
                with self.assertRaises(grpc.RpcError) as cm:
                    for r in call:
                        got += len(r.token_ids)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 cm.exception.details())
                self.assertIn("--stream_buffer_bytes", cm.exception.details())
                self.assertLess(got, SLOW_MAX_TOKENS)
            slow_channel.close()
            self.assertEqual(snapshot(c), (0, 0))

    def wait_idle(self, c, timeout=120):
        start = time.time()
        while time.time() - start < timeout:
            if snapshot(c) == (0, 0):
                return time.time() - start
            time.sleep(0.2)
        self.fail(f"not idle after {timeout}s: running, kv = {snapshot(c)}")


if __name__ == "__main__":
    unittest.main()
