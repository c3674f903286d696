"""Chaos soak driver; see chaos.sh."""
import argparse
import os
import random
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import grpc  # noqa: E402

from cluster import Cluster, stubs  # noqa: E402

pb, gpb = stubs("generation")
PROMPTS = [f"Chaos {i}: tell me about {w}." for i, w in enumerate(
    ["rivers", "stars", "bread", "trains", "cats", "rain", "chess", "paper"])]
MAX_TOKENS = 64


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return -1


def generate(stub, prompt):
    toks = []
    for r in stub.Generate(pb.GenerateRequest(text=prompt, max_tokens=MAX_TOKENS, ignore_eos=True),
                           timeout=600):
        toks.extend(r.token_ids)
    return toks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--streams", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", default="KILL,STOP,TERM",
                    help="signals to draw from; STOP alone keeps every process (RSS comparable)")
    a = ap.parse_args()
    seconds = min(a.seconds, 600)
    rng = random.Random(a.seed)
    with Cluster(world_size=2, router_args=["--heartbeat_interval=500ms",
                                            "--heartbeat_timeout=1500ms"],
                 worker_args=["--collective_timeout=10s"]) as c:
        stub = gpb.GenerationStub(c.channel())
        reference = {p: generate(stub, p) for p in PROMPTS}
        names = ["router", "worker0", "worker1"]
        rss_start = None  # taken under load, just before the first fault
        stats = {"sent": 0, "completed": 0, "failed": 0, "mismatched": 0}
        lock = threading.Lock()
        stop_at = time.time() + seconds

        def client(i):
            while time.time() < stop_at:
                p = PROMPTS[(i + stats["sent"]) % len(PROMPTS)]
                with lock:
                    stats["sent"] += 1
                try:
                    toks = generate(stub, p)
                    with lock:
                        stats["completed"] += 1
                        if toks != reference[p]:
                            stats["mismatched"] += 1
                except grpc.RpcError as e:
                    with lock:
                        stats["failed"] += 1
                    print(f"request failed: {e.code()} {e.details()}", flush=True)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.streams)]
        for t in threads:
            t.start()
        events = []
        while time.time() < stop_at - 20:
            time.sleep(rng.uniform(20, 60) if time.time() + 60 < stop_at else 20)
            if rss_start is None:
                rss_start = {n: rss_kb(c.proc(n).pid) for n in names}
            victim = f"worker{rng.randrange(2)}"
            how = rng.choice(a.faults.split(","))
            proc = c.proc(victim)
            events.append(f"{time.strftime('%H:%M:%S')} {how} {victim}")
            print(events[-1], flush=True)
            if how == "STOP":
                proc.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(3, 8))
                proc.send_signal(signal.SIGCONT)
                continue
            proc.send_signal(signal.SIGKILL if how == "KILL" else signal.SIGTERM)
            proc.wait(timeout=30)
            time.sleep(2)
            c.restart(victim)
        if rss_start is None:  # a run too short for any fault
            rss_start = {n: rss_kb(c.proc(n).pid) for n in names}
        for t in threads:
            t.join(700)
        metrics = c.scrape(c.router_metrics_port)
        rss_end = {n: rss_kb(c.proc(n).pid) for n in names}
        log = c.log_text("router")
    recoveries = re.findall(r"recovered in ([0-9.]+) s", log)
    print(f"\nrequests sent {stats['sent']} completed {stats['completed']} "
          f"failed {stats['failed']} mismatched {stats['mismatched']}")
    print(f"faults injected {len(events)}; recoveries {len(recoveries)}: "
          f"{', '.join(r + ' s' for r in recoveries)}")
    for line in metrics.splitlines():
        if line.startswith(("tpserve_group_recoveries_total", "tpserve_requests_resumed_total")):
            print(line)
    for n in names:
        print(f"RSS {n}: at the first fault {rss_start[n]} kB, end {rss_end[n]} kB "
              "(a restarted process starts over)")
    return 0 if stats["failed"] == 0 and stats["mismatched"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
