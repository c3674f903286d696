"""Cancelling 100 in-flight streams brings the KV-usage gauge back to idle; a
deadline shorter than the generation ends with DEADLINE_EXCEEDED and frees
its blocks. The deadline and the follow-up requests go through the
tpserve_client package; the mass cancellation uses raw stubs, because it
cancels 100 calls from outside the threads consuming them (grpc's
call.cancel()), while the package's iterator cancels only when its own
consumer closes it."""
import sys
import threading
import time
import unittest

import grpc

from cluster import Cluster, client_package, metric_sum, parse_metrics, stubs

pb, gpb = stubs("generation")


def kv_usage(c):
    samples, _ = parse_metrics(c.scrape(c.router_metrics_port))
    return (metric_sum(samples, "tpserve_kv_cache_usage_ratio"),
            metric_sum(samples, "tpserve_num_requests_running"),
            metric_sum(samples, "tpserve_num_requests_waiting"))


def wait_idle(test, c, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        usage, running, waiting = kv_usage(c)
        if usage == 0 and running == 0 and waiting == 0:
            return
        time.sleep(0.2)
    test.fail(f"not idle after {timeout}s: usage/running/waiting = {kv_usage(c)}")


class CancelDeadlineTest(unittest.TestCase):
    def test_cancel_100_streams_frees_kv(self):
        with Cluster(world_size=2, kv_cache_mb=64,
                     router_args=["--max_num_seqs=64", "--max_waiting=256"]) as c:
            stub = gpb.GenerationStub(c.channel())
            calls, first_token = [], []
            lock = threading.Lock()

            def consume(call):
                try:
                    for r in call:
                        if r.token_ids:
                            with lock:
                                first_token.append(1)
                except grpc.RpcError as e:
                    with lock:
                        codes.append(e.code())

            codes = []
            threads = []
            for i in range(100):
                req = pb.GenerateRequest(text=f"Tell me a long story about number {i}.",
                                         max_tokens=1000, ignore_eos=True)
                call = stub.Generate(req, timeout=600)
                calls.append(call)
                t = threading.Thread(target=consume, args=(call,))
                t.start()
                threads.append(t)
            # Wait until the batch is really running and holds KV blocks.
            deadline = time.time() + 120
            while time.time() < deadline and (len(first_token) < 20 or kv_usage(c)[0] == 0):
                time.sleep(0.1)
            usage, running, waiting = kv_usage(c)
            self.assertGreater(usage, 0.0)
            self.assertGreater(running + waiting, 50)
            for call in calls:
                call.cancel()
            for t in threads:
                t.join(60)
            self.assertEqual(len(codes), 100)
            self.assertTrue(all(code == grpc.StatusCode.CANCELLED for code in codes))
            wait_idle(self, c)
            samples, _ = parse_metrics(c.scrape(c.router_metrics_port))
            self.assertGreaterEqual(metric_sum(samples, "tpserve_request_success_total",
                                               finished_reason="abort"), 100)
            # The cluster still serves after the mass cancellation.
            with c.client(timeout=120) as client:
                self.assertEqual(client.complete("Hello", max_tokens=3).usage.completion_tokens, 3)

    def test_deadline_exceeded_frees_blocks(self):
        with Cluster(world_size=2) as c, c.client() as client:
            got = 0
            with self.assertRaises(client_package().Error) as ctx:
                for chunk in client.generate("Write a very long essay about the sea.",
                                             max_tokens=2000, ignore_eos=True, timeout=5.0):
                    got += len(chunk.token_ids)
            self.assertEqual(ctx.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertGreater(got, 0, "the deadline should hit mid-generation")
            wait_idle(self, c, timeout=30)

if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
