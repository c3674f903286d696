"""Failure and shutdown behaviour. A worker that dies and does not come back
within --recovery_timeout becomes an error, never a hang: the in-flight
stream ends with UNAVAILABLE naming the dead rank and the cause, the router's
health turns NOT_SERVING, and new requests get UNAVAILABLE with an actionable
message. A worker started with other flags is named as a mismatch at once.
SIGTERM on the router drains: running requests finish, new ones are refused.
SIGTERM on a worker ends it within its bound whatever it waits on."""
import signal
import sys
import threading
import time
import unittest

import grpc

from cluster import Cluster, stubs

pb, gpb = stubs("generation")


class WorkerFailureTest(unittest.TestCase):
    def test_dead_worker_fails_fast(self):
        with Cluster(world_size=2, worker_args=["--collective_timeout=5s"],
                     router_args=["--recovery_timeout=5s"]) as c:
            stub = gpb.GenerationStub(c.channel())
            got, result = [], {}

            def consume():
                try:
                    for r in stub.Generate(pb.GenerateRequest(
                            text="Tell me a very long story.", max_tokens=2000, ignore_eos=True),
                            timeout=120):
                        got.extend(r.token_ids)
                    result["code"] = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    result["code"], result["details"] = e.code(), e.details()

            t = threading.Thread(target=consume)
            t.start()
            while len(got) < 3:
                time.sleep(0.05)
            worker1 = c.proc("worker1")
            killed_at = time.time()
            worker1.send_signal(signal.SIGKILL)
            t.join(60)
            self.assertFalse(t.is_alive(), "the stream hung after a worker died")
            self.assertEqual(result["code"], grpc.StatusCode.UNAVAILABLE, result)
            self.assertIn("rank 1", result["details"])  # the rank that died, not its peer
            self.assertIn("exited", result["details"])
            self.assertIn("--recovery_timeout", result["details"])
            self.assertLess(time.time() - killed_at, 30)

            deadline = time.time() + 30
            while time.time() < deadline and c.health() != 2:
                time.sleep(0.2)
            self.assertEqual(c.health(), 2)  # NOT_SERVING
            with self.assertRaises(grpc.RpcError) as ctx:
                list(stub.Generate(pb.GenerateRequest(text="hi", max_tokens=2), timeout=30))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("rank 1", ctx.exception.details())

    def test_mismatched_worker_is_named_at_once(self):
        c = Cluster(world_size=2)
        try:
            with self.assertRaises(TimeoutError):
                c.worker_args = []
                # rank 1 claims another world size: the router names it.
                orig = c._spawn

                def spawn(name, argv):
                    if name == "worker1":
                        argv = [a if not a.startswith("--world_size") else "--world_size=3"
                                for a in argv]
                    return orig(name, argv)
                c._spawn = spawn
                c.start(ready_timeout=8)
            log = c.log_text("router")
            self.assertIn("MISMATCH", log)
            self.assertIn("--world_size=3", log)
            stub = gpb.GenerationStub(c.channel())
            with self.assertRaises(grpc.RpcError) as ctx:
                list(stub.Generate(pb.GenerateRequest(text="hi", max_tokens=2), timeout=10))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("MISMATCH", ctx.exception.details())
            # SIGTERM ends a worker promptly even while it waits for its group.
            w0 = c.proc("worker0")
            start = time.time()
            w0.send_signal(signal.SIGTERM)
            w0.wait(timeout=10)
            self.assertLess(time.time() - start, 6)
        finally:
            c.stop()


    def test_sigterm_drains_running_requests(self):
        with Cluster(world_size=2, router_args=["--drain_timeout=300s"]) as c:
            stub = gpb.GenerationStub(c.channel())
            got, result = [], {}

            def consume():
                try:
                    for r in stub.Generate(pb.GenerateRequest(
                            text="Count slowly.", max_tokens=300, ignore_eos=True), timeout=300):
                        got.extend(r.token_ids)
                        if r.finish_reason:
                            result["usage"] = r.usage.completion_tokens
                    result["code"] = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    result["code"], result["details"] = e.code(), e.details()

            t = threading.Thread(target=consume)
            t.start()
            while len(got) < 2:
                time.sleep(0.02)
            router = c.proc("router")
            router.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with self.assertRaises(grpc.RpcError) as ctx:
                list(stub.Generate(pb.GenerateRequest(text="hi", max_tokens=2), timeout=10))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("shutting down", ctx.exception.details())
            t.join(120)
            self.assertEqual(result.get("code"), grpc.StatusCode.OK, result)
            self.assertEqual(result.get("usage"), 300)
            self.assertEqual(router.wait(timeout=30), 0)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
