"""Starts a local tpserve (router + W CPU workers on loopback, the harness of
tests/integration/cluster.py), runs tools/bench/bench.py against its gRPC API
with the remaining arguments, and stops it. Everything ends with the script.

  bazel build -c opt //router:tpserve-router //worker:tpserve-worker
  TPSERVE_BIN_DIR=$(bazel info -c opt bazel-bin) .venv/bin/python3 tools/bench/with_tpserve.py \\
      --threads 2 --router_arg=--target_step_latency=60ms -- \\
      --concurrency 16 --num_requests 48 --prompt_len 128 --output_len 128 --label tpserve
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
from cluster import MODEL, Cluster  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--world_size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="compute threads per worker")
    ap.add_argument("--kv_cache_mb", type=int, default=512)
    ap.add_argument("--router_arg", action="append", default=[])
    ap.add_argument("--worker_arg", action="append", default=[])
    ap.add_argument("bench_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    bench = [a for a in args.bench_args if a != "--"]
    with Cluster(world_size=args.world_size, threads=args.threads, model=args.model,
                 kv_cache_mb=args.kv_cache_mb,
                 router_args=["--max_num_seqs=64"] + args.router_arg,
                 worker_args=args.worker_arg) as c:
        rc = subprocess.call([sys.executable, os.path.join(HERE, "bench.py"), "--grpc",
                              c.address()] + bench)
    sys.exit(rc)


if __name__ == "__main__":
    main()
