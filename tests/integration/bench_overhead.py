"""Router + gRPC overhead per step against the engine alone, in the same run.

Starts the real cluster (router + 2 CPU workers, TP=2, default model), runs
`--batch` concurrent greedy streams that decode in lockstep (same prompt
length, ignore_eos, same max_tokens), and over a window where all of them are
decoding compares:
  step cadence  = window wall time / steps run by the workers
  engine time   = mean worker Step time (engine->Step, incl. its all-reduces;
                  slowest rank), from tpserve_worker_step_duration_seconds
  overhead      = cadence - engine time: everything the router and gRPC add
                  per step (scheduling, proto encode/decode, the RPC round
                  trips to both ranks, detokenization, streaming to clients).
Run:
  bazel build //router:tpserve-router //worker:tpserve-worker
  TPSERVE_BIN_DIR=$(bazel info bazel-bin) /usr/bin/python3 tests/integration/bench_overhead.py
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, metric_sum, parse_metrics, stubs  # noqa: E402

pb, gpb = stubs("generation")


def scrape_all(c):
    router, _ = parse_metrics(c.scrape(c.router_metrics_port))
    workers = [parse_metrics(c.scrape(p))[0] for p in c.worker_metrics_ports]
    return time.time(), router, workers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max_tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--comm", default="shm", choices=["shm", "gloo"])
    args = ap.parse_args()
    with Cluster(world_size=2, threads=args.threads, kv_cache_mb=256, comm=args.comm,
                 router_args=["--max_num_seqs=64"]) as c:
        stub = gpb.GenerationStub(c.channel())
        first = threading.Barrier(args.batch + 1)
        done = []

        def stream(i):
            req = pb.GenerateRequest(text=f"Request number {i:03d} says hello to the world",
                                     max_tokens=args.max_tokens, ignore_eos=True)
            it = stub.Generate(req, timeout=1200)
            next(it)
            first.wait()
            for _ in it:
                pass
            done.append(i)

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(args.batch)]
        for t in threads:
            t.start()
        first.wait()            # every stream has its first token: pure decode from here
        time.sleep(1.0)
        t0, r0, w0 = scrape_all(c)
        time.sleep(2.0)
        # Stop the window well before the streams finish.
        while True:
            t1, r1, w1 = scrape_all(c)
            steps = metric_sum(w1[0], "tpserve_worker_steps_total") - \
                metric_sum(w0[0], "tpserve_worker_steps_total")
            if steps >= args.max_tokens // 2 or done:
                break
            time.sleep(0.5)
        for t in threads:
            t.join()
        assert not done or steps > 5, "window too short"

        def delta(a, b, name, **labels):
            return metric_sum(b, name, **labels) - metric_sum(a, name, **labels)

        iters = delta(r0, r1, "tpserve_iteration_tokens_count")
        tokens = delta(r0, r1, "tpserve_iteration_tokens_sum")
        engine = max(delta(w0[k], w1[k], "tpserve_worker_step_duration_seconds_sum", phase="total") /
                     delta(w0[k], w1[k], "tpserve_worker_step_duration_seconds_count", phase="total")
                     for k in range(2))
        comm = max(delta(w0[k], w1[k], "tpserve_worker_allreduce_duration_seconds_sum") /
                   delta(w0[k], w1[k], "tpserve_worker_allreduce_duration_seconds_count")
                   for k in range(2))
        rtt = delta(r0, r1, "tpserve_router_step_seconds_sum") / \
            delta(r0, r1, "tpserve_router_step_seconds_count")
        cadence = (t1 - t0) / steps
        overhead = cadence - engine
        print(f"comm {args.comm}, batch {args.batch} (tokens/step {tokens / iters:.1f}), {int(steps)} decode steps "
              f"in {t1 - t0:.2f} s")
        print(f"  step cadence (router loop)     {cadence * 1e3:8.2f} ms")
        print(f"  router-observed RPC round trip {rtt * 1e3:8.2f} ms")
        print(f"  engine step (slowest rank)     {engine * 1e3:8.2f} ms  (of which all-reduce "
              f"{comm * 1e3:.2f} ms)")
        print(f"  router + gRPC overhead         {overhead * 1e3:8.2f} ms = "
              f"{100 * overhead / cadence:.1f}% of step time")


if __name__ == "__main__":
    main()
