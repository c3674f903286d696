"""schemathesis (the .venv's, pinned in scripts/requirements.txt) generates
requests from docs/openapi.yaml and sends them to a live router's HTTP API:
no response may be a 5xx, every status must be one the document lists, and
the run must finish in bounded time (no hang). Afterwards the router still
answers a normal request. The router runs with a short context so that the
largest generated request (n=16, max_tokens up to the context) stays fast."""
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.request

from cluster import Cluster, _proto_dir

SPEC = os.path.join(_proto_dir(), "docs", "openapi.yaml")
EXAMPLES = int(os.environ.get("TPSERVE_FUZZ_EXAMPLES", "40"))  # per operation


class OpenApiFuzzTest(unittest.TestCase):
    def test_schemathesis_finds_no_server_errors(self):
        st = os.path.join(os.path.dirname(sys.executable), "schemathesis")
        with Cluster(world_size=1, http=True,
                     router_args=["--max_model_len=64", "--default_max_tokens=8"]) as cluster:
            start = time.monotonic()
            r = subprocess.run(
                [st, "run", SPEC, f"--base-url={cluster.http_url()}",
                 "--checks=not_a_server_error,status_code_conformance",
                 f"--hypothesis-max-examples={EXAMPLES}", "--hypothesis-seed=14",
                 "--hypothesis-deadline=None", "--request-timeout=30000", "--workers=2",
                 "--hypothesis-suppress-health-check=all",
                 # A generated x-request-timeout of 1e-6 s is rightly a 504,
                 # which the not_a_server_error check cannot tell from a
                 # fault: every request gets a generous deadline instead
                 # (malformed values are tested in test_openai_http).
                 "--header=x-request-timeout: 600"],
                capture_output=True, text=True, timeout=240)
            took = time.monotonic() - start
            print(r.stdout[-3000:], file=sys.stderr)
            print(f"schemathesis: {EXAMPLES} examples per operation in {took:.1f} s",
                  file=sys.stderr)
            self.assertEqual(r.returncode, 0, r.stdout[-6000:] + r.stderr[-2000:])
            summary = r.stdout.split("SUMMARY")[-1]
            self.assertNotIn("Errors", summary)
            # An internal schemathesis failure (e.g. an incompatible
            # hypothesis) can end as an empty suite with exit code 0: the
            # checks must really have run, on every operation.
            m = re.search(r"not_a_server_error\s+(\d+) / (\d+) passed", summary)
            self.assertIsNotNone(m, summary)
            self.assertEqual(m.group(1), m.group(2), summary)
            self.assertGreaterEqual(int(m.group(2)), EXAMPLES, summary)
            self.assertIn("6 passed", summary)
            # Still serving after the fuzzing.
            req = urllib.request.Request(
                cluster.http_url("/v1/completions"),
                data=json.dumps({"prompt": "Hi", "max_tokens": 2, "ignore_eos": True}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.load(resp)["usage"]["completion_tokens"], 2)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
