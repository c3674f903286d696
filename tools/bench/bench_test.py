"""tools/bench/bench.py against a fake OpenAI-compatible server on 127.0.0.1
(port 0) that streams one token every 20 ms after a 100 ms "prefill": the
request it receives, the token counts, TTFT / ITL / goodput, both workload
modes, and the JSON it writes. Hermetic: no tpserve, no model.

  python3 tools/bench/bench_test.py
"""
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

PREFILL_S = 0.100
TOKEN_S = 0.020


class FakeOpenAI(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):  # noqa: N802 -- http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(PREFILL_S)
        n = body["max_tokens"]
        for i in range(n):
            if i:
                time.sleep(TOKEN_S)
            chunk = {"choices": [{"text": f"t{i}", "finish_reason": "length" if i == n - 1 else None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


class BenchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.url = f"http://127.0.0.1:{cls.server.server_address[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def run_bench(self, *args):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "--http", self.url,
                            "--json", out, "--warmup", "0", *args], check=True,
                           stdout=subprocess.DEVNULL, timeout=120)
            with open(out) as f:
                return json.load(f)

    def test_closed_loop_measures_ttft_itl_and_tokens(self):
        FakeOpenAI.received.clear()
        r = self.run_bench("--concurrency", "2", "--num_requests", "4", "--prompt_len", "8",
                           "--output_len", "5", "--slo_ttft_ms", "1000", "--slo_tpot_ms", "1000")
        self.assertEqual(r["completed"], 4)
        self.assertEqual(r["output_tokens"], 20)
        # The server saw token-id prompts, greedy, ignore_eos, streaming.
        self.assertEqual(len(FakeOpenAI.received), 4)
        for body in FakeOpenAI.received:
            self.assertEqual(len(body["prompt"]), 8)
            self.assertTrue(all(isinstance(t, int) for t in body["prompt"]))
            self.assertEqual((body["temperature"], body["ignore_eos"], body["stream"]), (0.0, True, True))
        # Distinct prompts: nothing for a prefix cache to hit.
        self.assertEqual(len({tuple(b["prompt"]) for b in FakeOpenAI.received}), 4)
        self.assertGreaterEqual(r["ttft_ms"]["p50"], PREFILL_S * 1e3)
        self.assertLess(r["ttft_ms"]["p50"], PREFILL_S * 1e3 + 150)
        self.assertGreaterEqual(r["itl_ms"]["p50"], TOKEN_S * 1e3 * 0.9)
        self.assertLess(r["itl_ms"]["p50"], TOKEN_S * 1e3 + 30)
        self.assertAlmostEqual(r["goodput_req_per_s"], r["requests_per_s"])

    def test_slo_excludes_slow_requests_from_goodput(self):
        r = self.run_bench("--concurrency", "1", "--num_requests", "2", "--prompt_len", "4",
                           "--output_len", "3", "--slo_ttft_ms", "50")
        self.assertEqual(r["completed"], 2)
        self.assertEqual(r["goodput_req_per_s"], 0.0)

    def test_open_loop_poisson(self):
        r = self.run_bench("--rate", "20", "--num_requests", "6", "--prompt_len", "4:12",
                           "--output_len", "2:4")
        self.assertEqual(r["workload"], {"mode": "poisson", "rate": 20.0})
        self.assertEqual(r["completed"], 6)
        self.assertTrue(12 <= r["output_tokens"] <= 24)

    def test_percentile_interpolates(self):
        self.assertEqual(bench.percentile([1, 2, 3, 4], 50), 2.5)
        self.assertEqual(bench.percentile([5], 99), 5)
        self.assertIsNone(bench.percentile([], 50))


if __name__ == "__main__":
    unittest.main()
