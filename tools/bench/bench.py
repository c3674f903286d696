"""Serving benchmark: one load generator, two front ends.

Drives a running server with identical requests (random token-id prompts, so
the prefix cache sees no repeats; greedy; ignore_eos, so every request
generates exactly its output length) and reports output tokens/s, time to
first token (TTFT), inter-token latency (ITL) and end-to-end latency
percentiles, and goodput under a latency SLO.

Front ends:
  --grpc HOST:PORT     tpserve's tpserve.v1.Generation (clients/python)
  --http URL           any OpenAI-compatible server: POST URL/v1/completions
                       with stream=true (vLLM, llama-server, tpserve's own
                       --http_port), prompt given as token ids

Workloads:
  --concurrency C      closed loop: C clients, each sends its next request
                       when the previous one finishes
  --rate R             open loop: Poisson arrivals at R requests/s
Lengths are fixed (--prompt_len 128) or uniform ranges (--prompt_len 64:192).

  python3 tools/bench/bench.py --grpc 127.0.0.1:50051 --concurrency 16 \\
      --num_requests 64 --prompt_len 128 --output_len 128 --label tpserve \\
      --json out/tpserve_c16.json
  python3 tools/bench/bench.py --plot out/*.json --png docs/img/serving.png

ITL is measured per streamed token: a chunk that carries k tokens after a gap
g counts as one gap of g followed by k - 1 gaps of 0 (what a client sees).
Goodput: completed requests per second whose TTFT <= --slo_ttft_ms and whose
mean time per output token after the first <= --slo_tpot_ms.
"""
import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_len(spec):
    """'128' -> (128, 128); '64:192' -> (64, 192)."""
    lo, _, hi = spec.partition(":")
    return int(lo), int(hi or lo)


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


class Request:
    def __init__(self, prompt, output_len):
        self.prompt = prompt
        self.output_len = output_len
        self.start = None
        self.token_times = []  # arrival time of each output token
        self.error = None


def make_requests(n, prompt_spec, output_spec, vocab_lo, vocab_hi, seed):
    rng = random.Random(seed)
    (plo, phi), (olo, ohi) = parse_len(prompt_spec), parse_len(output_spec)
    return [Request([rng.randrange(vocab_lo, vocab_hi) for _ in range(rng.randint(plo, phi))],
                    rng.randint(olo, ohi)) for _ in range(n)]


class GrpcFrontEnd:
    def __init__(self, address):
        sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
        from tpserve_client import Client  # noqa: E402
        self.client = Client(address, timeout=3600)

    def run(self, req):
        for chunk in self.client.generate(token_ids=req.prompt, max_tokens=req.output_len,
                                          ignore_eos=True, temperature=0.0):
            now = time.perf_counter()
            req.token_times.extend([now] * len(chunk.token_ids))


class HttpFrontEnd:
    def __init__(self, url, model):
        self.url = url.rstrip("/") + "/v1/completions"
        self.model = model

    def run(self, req):
        body = {"prompt": req.prompt, "max_tokens": req.output_len, "temperature": 0.0,
                "ignore_eos": True, "stream": True}
        if self.model:
            body["model"] = self.model
        http_req = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(http_req, timeout=3600) as resp:
            for raw in resp:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                now = time.perf_counter()
                choices = json.loads(data).get("choices") or []
                # One streamed choice per token for vLLM and llama-server; an
                # empty text chunk (a partial UTF-8 character) is still a token.
                if choices and choices[0].get("finish_reason") is None or \
                        (choices and choices[0].get("text")):
                    req.token_times.append(now)


def run_one(front, req):
    req.start = time.perf_counter()
    try:
        front.run(req)
    except Exception as e:  # noqa: BLE001 -- reported per request, the run goes on
        req.error = f"{type(e).__name__}: {e}"


def closed_loop(front, requests, concurrency):
    queue = list(reversed(requests))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                if not queue:
                    return
                req = queue.pop()
            run_one(front, req)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def open_loop(front, requests, rate, seed):
    rng = random.Random(seed + 1)
    threads = []
    next_at = time.perf_counter()
    for req in requests:
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=run_one, args=(front, req))
        t.start()
        threads.append(t)
        next_at += rng.expovariate(rate)
    for t in threads:
        t.join()


def summarize(requests, wall, args):
    done = [r for r in requests if r.error is None and r.token_times]
    ttft = [(r.token_times[0] - r.start) * 1e3 for r in done]
    e2e = [(r.token_times[-1] - r.start) * 1e3 for r in done]
    itl = []
    good = 0
    for r in done:
        gaps = [(b - a) * 1e3 for a, b in zip(r.token_times, r.token_times[1:])]
        itl.extend(gaps)
        tpot = sum(gaps) / len(gaps) if gaps else 0.0
        if (r.token_times[0] - r.start) * 1e3 <= args.slo_ttft_ms and tpot <= args.slo_tpot_ms:
            good += 1
    out_tokens = sum(len(r.token_times) for r in done)

    def pct(v):
        return {f"p{p}": percentile(v, p) for p in (50, 90, 99)}

    return {
        "label": args.label,
        "front_end": "grpc" if args.grpc else "http",
        "target": args.grpc or args.http,
        "workload": ({"mode": "closed", "concurrency": args.concurrency} if args.concurrency
                     else {"mode": "poisson", "rate": args.rate}),
        "prompt_len": args.prompt_len, "output_len": args.output_len,
        "num_requests": len(requests), "completed": len(done),
        "errors": sorted({r.error for r in requests if r.error})[:5],
        "wall_s": wall,
        "output_tokens": out_tokens,
        "output_tok_per_s": out_tokens / wall if wall > 0 else None,
        "requests_per_s": len(done) / wall if wall > 0 else None,
        "ttft_ms": pct(ttft), "itl_ms": pct(itl), "e2e_ms": pct(e2e),
        "slo": {"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms},
        "goodput_req_per_s": good / wall if wall > 0 else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "loadavg_before": args.loadavg_before, "loadavg_after": open("/proc/loadavg").read().split()[:3],
    }


def plot(paths, png):
    """Latency against offered load (clients or requests/s), one color per
    label; repeated runs at one load are all drawn, the line joins their
    medians."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = [json.load(open(p)) for p in paths]
    by_label = {}
    for r in runs:
        by_label.setdefault(r["label"], []).append(r)

    def load(r):
        w = r["workload"]
        return w.get("concurrency") or w.get("rate")

    def median(v):
        return percentile(v, 50)

    panels = [("output tokens/s", lambda r: r["output_tok_per_s"], None),
              ("TTFT p50 (ms)", lambda r: r["ttft_ms"]["p50"], "log"),
              ("inter-token latency p50 (o) / p99 (x), ms", lambda r: r["itl_ms"]["p50"], "log")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for n, (label, rs) in enumerate(sorted(by_label.items())):
        color = f"C{n}"
        xs = sorted({load(r) for r in rs})
        for ax, (title, get, scale) in zip(axes, panels):
            ax.plot([load(r) for r in rs], [get(r) for r in rs], "o", color=color, alpha=0.5)
            ax.plot(xs, [median([get(r) for r in rs if load(r) == x]) for x in xs], "-",
                    color=color, label=label)
        p99 = [median([r["itl_ms"]["p99"] for r in rs if load(r) == x]) for x in xs]
        axes[2].plot([load(r) for r in rs], [r["itl_ms"]["p99"] for r in rs], "x", color=color)
        axes[2].plot(xs, p99, "--", color=color)
    mode = runs[0]["workload"]["mode"]
    for ax, (title, _, scale) in zip(axes, panels):
        ax.set_xlabel("concurrent clients" if mode == "closed" else "requests/s (Poisson)")
        ax.set_title(title)
        if scale:
            ax.set_yscale(scale)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    print(f"wrote {png}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grpc", help="tpserve router HOST:PORT")
    ap.add_argument("--http", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--model", default="", help="model name for --http (vLLM needs it)")
    ap.add_argument("--concurrency", type=int, default=0, help="closed loop: clients")
    ap.add_argument("--rate", type=float, default=0.0, help="open loop: Poisson requests/s")
    ap.add_argument("--num_requests", type=int, default=64)
    ap.add_argument("--prompt_len", default="128")
    ap.add_argument("--output_len", default="128")
    ap.add_argument("--vocab", default="1000:30000", help="prompt token ids drawn from [lo, hi)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2, help="requests sent (and dropped) first")
    ap.add_argument("--slo_ttft_ms", type=float, default=2000.0)
    ap.add_argument("--slo_tpot_ms", type=float, default=100.0)
    ap.add_argument("--label", default="")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--plot", nargs="+", help="summaries (JSON) to plot instead of running")
    ap.add_argument("--png", default="serving.png")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, args.png)
        return
    if bool(args.grpc) == bool(args.http) or bool(args.concurrency) == bool(args.rate):
        ap.error("give one of --grpc/--http and one of --concurrency/--rate")
    args.label = args.label or (args.grpc or args.http)
    front = GrpcFrontEnd(args.grpc) if args.grpc else HttpFrontEnd(args.http, args.model)
    vlo, vhi = parse_len(args.vocab)
    # Warm-up prompts use another seed: the measured prompts stay uncached.
    for req in make_requests(args.warmup, "16", "4", vlo, vhi, args.seed + 1000):
        run_one(front, req)
    requests = make_requests(args.num_requests, args.prompt_len, args.output_len, vlo, vhi,
                             args.seed)
    args.loadavg_before = open("/proc/loadavg").read().split()[:3]
    t0 = time.perf_counter()
    if args.concurrency:
        closed_loop(front, requests, args.concurrency)
    else:
        open_loop(front, requests, args.rate, args.seed)
    summary = summarize(requests, time.perf_counter() - t0, args)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if summary["completed"] < len(requests):
        sys.exit(1)


if __name__ == "__main__":
    main()
