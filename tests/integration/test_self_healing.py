"""Self-healing (docs/operations.md "Failure handling"), with the real router
and workers: a rank killed with SIGKILL and restarted, a rank stopped with
SIGSTOP past the detection bound, and a restarted router cost latency, never
a request. Every stream must end OK with exactly the tokens the same request
gets on an unfaulted cluster (greedy, ignore_eos): a duplicated or missing
token would show as a mismatch."""
import signal
import sys
import threading
import time
import unittest

import grpc

from cluster import Cluster, stubs

pb, gpb = stubs("generation")

PROMPTS = [f"Story {i}: once upon a time in a land of {w}," for i, w in enumerate(
    ["rivers", "mountains", "glass", "robots", "bees", "clocks", "salt", "wind",
     "maps", "snow", "lamps", "ink", "moss", "bells", "sand", "owls"])]
MAX_TOKENS = 150
ROUTER = ["--heartbeat_interval=500ms", "--heartbeat_timeout=1500ms"]
WORKER = ["--collective_timeout=10s"]


def run_streams(stub, prompts, on_token=None, timeout=600):
    """Runs one greedy stream per prompt concurrently; returns a list of
    (status code, token ids, completion_tokens)."""
    results = [None] * len(prompts)

    def consume(i):
        got, usage = [], None
        try:
            for r in stub.Generate(pb.GenerateRequest(text=prompts[i], max_tokens=MAX_TOKENS,
                                                      ignore_eos=True), timeout=timeout):
                got.extend(r.token_ids)
                if on_token:
                    on_token()
                if r.finish_reason:
                    usage = r.usage.completion_tokens
            results[i] = (grpc.StatusCode.OK, got, usage)
        except grpc.RpcError as e:
            results[i] = (e.code(), got, e.details())

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    return results


def streams_with_fault(stub, fault):
    """Runs the PROMPTS streams and calls fault() from another thread once
    32 tokens have arrived; returns run_streams' results."""
    count = [0]

    def chaos():
        while count[0] < 32:
            time.sleep(0.01)
        fault()

    t = threading.Thread(target=chaos)
    t.start()

    def tick():
        count[0] += 1

    results = run_streams(stub, PROMPTS, on_token=tick)
    t.join()
    return results


class SelfHealingTest(unittest.TestCase):
    reference = None  # token ids per prompt on an unfaulted cluster

    @classmethod
    def unfaulted(cls, stub):
        if cls.reference is None:
            out = run_streams(stub, PROMPTS)
            for code, _, detail in out:
                assert code == grpc.StatusCode.OK, detail
            cls.reference = [toks for _, toks, _ in out]
        return cls.reference

    def check_equal(self, results, c):
        for i, (code, toks, usage) in enumerate(results):
            self.assertEqual(code, grpc.StatusCode.OK, f"stream {i}: {usage}\n{c.logs()}")
            self.assertEqual(len(toks), MAX_TOKENS, f"stream {i}")
            self.assertEqual(usage, MAX_TOKENS, f"stream {i}")
            self.assertEqual(toks, self.reference[i], f"stream {i} differs from the unfaulted output")

    def test_kill9_and_restart_of_a_rank(self):
        with Cluster(world_size=2, router_args=ROUTER, worker_args=WORKER) as c:
            stub = gpb.GenerationStub(c.channel())
            self.unfaulted(stub)
            worker0 = c.proc("worker0").pid
            fired = threading.Event()

            def kill_and_restart():
                c.proc("worker1").send_signal(signal.SIGKILL)
                c.proc("worker1").wait()
                fired.set()
                time.sleep(2)
                c.restart("worker1")

            results = streams_with_fault(stub, kill_and_restart)
            self.assertTrue(fired.is_set())
            self.check_equal(results, c)
            self.assertEqual(c.proc("worker0").pid, worker0)  # the survivor was not restarted
            log = c.log_text("router")
            self.assertIn("rank 1", log.split("RECOVERING")[0].splitlines()[-1], log[-3000:])
            self.assertIn("recovered in", log)
            self.assertEqual(c.health(), 1)
            metrics = c.scrape(c.router_metrics_port)
            self.assertRegex(metrics, r'tpserve_requests_resumed_total\{[^}]*\} [1-9]')
            self.assertRegex(metrics, r'tpserve_group_state\{[^}]*state="serving"[^}]*\} 1')

    def test_sigstop_past_the_bound_is_fenced_and_the_group_reforms(self):
        with Cluster(world_size=2, router_args=ROUTER, worker_args=WORKER) as c:
            stub = gpb.GenerationStub(c.channel())
            self.unfaulted(stub)
            seen = {}

            def stop_then_continue():
                w0 = c.proc("worker0")
                w0.send_signal(signal.SIGSTOP)
                stopped = time.time()
                # Detection bound: heartbeat interval + timeout (2 s) plus slack.
                while time.time() - stopped < 6 and "NOT_SERVING" not in seen:
                    if c.health() == 2:
                        seen["NOT_SERVING"] = time.time() - stopped
                    time.sleep(0.1)
                time.sleep(max(0, 4 - (time.time() - stopped)))
                w0.send_signal(signal.SIGCONT)

            results = streams_with_fault(stub, stop_then_continue)
            self.assertIn("NOT_SERVING", seen, "health never turned NOT_SERVING")
            self.assertLess(seen["NOT_SERVING"], 5.0)
            self.check_equal(results, c)
            log = c.log_text("router")
            self.assertRegex(log, r"rank 0 .*hung", log[-3000:])
            self.assertEqual(c.health(), 1)

    def test_router_restart_is_found_again_by_its_workers(self):
        with Cluster(world_size=2, router_args=ROUTER, worker_args=WORKER, fixed_ports=True) as c:
            pids = [c.proc("worker0").pid, c.proc("worker1").pid]
            router = c.proc("router")
            router.send_signal(signal.SIGKILL)
            router.wait()
            restarted = time.time()
            c.restart("router")
            stub = gpb.GenerationStub(c.channel())
            ok = False
            while time.time() - restarted < 30 and not ok:
                try:
                    out = list(stub.Generate(pb.GenerateRequest(text="Hello", max_tokens=4),
                                             timeout=10))
                    ok = sum(len(r.token_ids) for r in out) == 4
                except grpc.RpcError:
                    time.sleep(0.3)
            self.assertTrue(ok, c.logs())
            self.assertLess(time.time() - restarted, 30)
            self.assertEqual([c.proc("worker0").pid, c.proc("worker1").pid], pids)
            self.assertIsNone(c.proc("worker0").poll())
            self.assertIn("re-registered", c.log_text("worker1"))

    def test_deadline_during_a_long_recovery(self):
        with Cluster(world_size=2, router_args=ROUTER, worker_args=WORKER) as c:
            stub = gpb.GenerationStub(c.channel())
            c.proc("worker1").send_signal(signal.SIGKILL)
            c.proc("worker1").wait()
            deadline = time.time() + 10
            while time.time() < deadline and c.health() != 2:
                time.sleep(0.1)
            self.assertEqual(c.health(), 2)
            start = time.time()
            with self.assertRaises(grpc.RpcError) as ctx:
                list(stub.Generate(pb.GenerateRequest(text="Hi", max_tokens=8), timeout=3))
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertLess(time.time() - start, 3.5)
            # A request without a deadline waits for the group and then succeeds.
            c.restart("worker1")
            out = list(stub.Generate(pb.GenerateRequest(text="Hi", max_tokens=3), timeout=120))
            self.assertEqual(sum(len(r.token_ids) for r in out), 3)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
