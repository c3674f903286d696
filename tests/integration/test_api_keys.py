"""API keys and quotas against a real router (--api_keys_file): a missing or
wrong key is UNAUTHENTICATED on gRPC and 401 (OpenAI's error shape) on HTTP,
health stays open, a key limited to 2 streams gets RESOURCE_EXHAUSTED on the
third, a tokens-per-minute quota stops a key within 10 % of its limit with a
retry hint, the file is re-read when it changes, and /metrics counts by key
name without ever showing a key. Expected hashes come from Python's hashlib."""
import hashlib
import json
import os
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc

from cluster import Cluster, _runfile, metric_sum, parse_metrics, stubs

pb, gpb = stubs("generation")

TPM = 300


def line(name, key, limits=""):
    return f"{name} {hashlib.sha256(key.encode()).hexdigest()} {limits}\n"


def write_keys(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # a new inode, as a Kubernetes Secret update swaps it


def auth(key):
    return (("authorization", f"Bearer {key}"),)


class ApiKeysTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tpserve_keys_")
        cls.keys = os.path.join(cls.dir, "keys")
        write_keys(cls.keys, "# test keys\n" + line("alice", "alice-key", "streams=2")
                   + line("quota", "quota-key", f"tpm={TPM}") + line("open", "open-key")
                   + line("ops", "ops-key", "admin"))
        # --metrics_address (a separate /metrics bind) overrides --metrics_port.
        cls.cluster = Cluster(world_size=1, http=True,
                              router_args=[f"--api_keys_file={cls.keys}",
                                           "--metrics_address=127.0.0.1:0"]).start()
        cls.stub = gpb.GenerationStub(cls.cluster.channel())

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def generate(self, key, max_tokens=4):
        tokens = 0
        for r in self.stub.Generate(pb.GenerateRequest(text="Hello", max_tokens=max_tokens,
                                                       ignore_eos=True),
                                    metadata=auth(key) if key else (), timeout=60):
            tokens += len(r.token_ids)
        return tokens

    def assert_code(self, fn, code):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception.details()

    def test_missing_and_wrong_keys_are_unauthenticated(self):
        details = self.assert_code(lambda: self.generate(None), grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("Bearer", details)
        self.assert_code(lambda: self.generate("wrong"), grpc.StatusCode.UNAUTHENTICATED)
        # The stored hash is not a key.
        self.assert_code(lambda: self.generate(hashlib.sha256(b"open-key").hexdigest()),
                         grpc.StatusCode.UNAUTHENTICATED)
        self.assert_code(lambda: self.stub.ModelInfo(pb.ModelInfoRequest(), timeout=10),
                         grpc.StatusCode.UNAUTHENTICATED)
        self.assert_code(lambda: self.stub.Tokenize(pb.TokenizeRequest(text="hi"), timeout=10),
                         grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.generate("open-key"), 4)
        self.assertTrue(self.stub.ModelInfo(pb.ModelInfoRequest(), metadata=auth("open-key"),
                                            timeout=10).model_name)
        # Health stays open for probes.
        self.assertEqual(self.cluster.health(), 1)

    def test_http_front_end_answers_401_in_openai_shape(self):
        url = self.cluster.http_url("/v1/models")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(url, timeout=10)
        self.assertEqual(cm.exception.code, 401)
        body = json.loads(cm.exception.read())
        self.assertEqual(body["error"]["type"], "authentication_error")
        self.assertIn("message", body["error"])
        req = urllib.request.Request(url, headers={"Authorization": "Bearer open-key"})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)
        with urllib.request.urlopen(self.cluster.http_url("/health"), timeout=10) as r:
            self.assertEqual(r.status, 200)
        chat = urllib.request.Request(
            self.cluster.http_url("/v1/chat/completions"), method="POST",
            data=json.dumps({"messages": [{"role": "user", "content": "Hi"}],
                             "max_tokens": 3}).encode(),
            headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(chat, timeout=30)
        self.assertEqual(cm.exception.code, 401)

    def test_third_stream_over_a_two_stream_limit_is_exhausted(self):
        calls = [self.stub.Generate(pb.GenerateRequest(text=f"Story {i}", max_tokens=400,
                                                       ignore_eos=True),
                                    metadata=auth("alice-key"), timeout=120) for i in range(2)]
        try:
            for call in calls:  # both admitted and streaming
                next(call)
            details = self.assert_code(lambda: self.generate("alice-key"),
                                       grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("2 of 2 concurrent streams", details)
            self.assertIn("retry in", details)
        finally:
            for call in calls:
                call.cancel()
        deadline = time.time() + 30
        while True:  # the slots free as the cancelled streams close
            try:
                self.assertEqual(self.generate("alice-key"), 4)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.time() > deadline:
                    raise
                time.sleep(0.2)

    def test_tokens_per_minute_quota_is_enforced_within_10_percent(self):
        generated, refusal = 0, None
        start = time.time()
        while time.time() - start < 55 and refusal is None:
            try:
                generated += self.generate("quota-key", max_tokens=16)
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
                refusal = e.details()
        self.assertIsNotNone(refusal, f"no refusal after {generated} tokens")
        print(f"tpm={TPM}: refused after {generated} generated tokens "
              f"({time.time() - start:.1f} s): {refusal}")
        self.assertIn("retry in", refusal)
        self.assertIn(f"{TPM} generated tokens per minute", refusal)
        self.assertGreaterEqual(generated, TPM)
        self.assertLessEqual(generated, TPM * 1.1)
        samples, _ = parse_metrics(self.cluster.scrape(self.cluster.router_metrics_port))
        self.assertEqual(metric_sum(samples, "tpserve_api_key_generation_tokens_total",
                                    key_name="quota"), generated)
        self.assertGreaterEqual(metric_sum(samples, "tpserve_api_key_requests_total",
                                           key_name="quota", result="token_quota"), 1)

    def test_metrics_count_by_name_and_never_show_keys(self):
        self.generate("open-key")
        self.assert_code(lambda: self.generate("nope"), grpc.StatusCode.UNAUTHENTICATED)
        text = self.cluster.scrape(self.cluster.router_metrics_port)
        samples, _ = parse_metrics(text)
        self.assertGreaterEqual(metric_sum(samples, "tpserve_api_key_requests_total",
                                           key_name="open", result="admitted"), 1)
        self.assertGreaterEqual(metric_sum(samples, "tpserve_api_key_unauthenticated_total",
                                           reason="unknown"), 1)
        for secret in ("open-key", "alice-key", "quota-key", "nope"):
            self.assertNotIn(secret, text)
        self.assertNotIn(hashlib.sha256(b"open-key").hexdigest(), text)
        self.assertNotIn("open-key", self.cluster.log_text("router"))

    def test_prompts_stay_out_of_logs_and_metrics_bind_apart(self):
        secret_prompt = "my bank PIN is 93172"
        for _ in self.stub.Generate(pb.GenerateRequest(text=secret_prompt, max_tokens=2),
                                    metadata=auth("open-key"), timeout=60):
            pass
        log = self.cluster.log_text("router")
        self.assertNotIn("93172", log)
        self.assertIn(f"metrics http://127.0.0.1:{self.cluster.router_metrics_port}/metrics", log)

    def test_cli_sends_the_key(self):
        cli = _runfile("tools/cli/tpserve")
        args = [cli, f"--router={self.cluster.address()}", "info"]
        env = {k: v for k, v in os.environ.items() if k != "TPSERVE_API_KEY"}
        denied = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(denied.returncode, 0)
        self.assertIn("API key", denied.stderr)
        ok = subprocess.run(args, env=dict(env, TPSERVE_API_KEY="open-key"), capture_output=True,
                            text=True, timeout=60)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        flag = subprocess.run(args[:2] + ["--api_key=open-key", "info"], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(flag.returncode, 0, flag.stderr)

    def test_admin_service_needs_a_key_with_the_admin_grant(self):
        apb, agpb = stubs("admin")
        admin = agpb.AdminStub(self.cluster.channel())
        request = apb.ListGroupsRequest()
        self.assert_code(lambda: admin.ListGroups(request, timeout=30),
                         grpc.StatusCode.UNAUTHENTICATED)
        details = self.assert_code(
            lambda: admin.Drain(apb.DrainRequest(group=0), metadata=auth("open-key"), timeout=30),
            grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("admin", details)
        groups = admin.ListGroups(request, metadata=auth("ops-key"), timeout=30).groups
        self.assertEqual([g.group for g in groups], [0])
        self.assertFalse(groups[0].drained)
        # The CLI sends the key to the Admin service too.
        cli = _runfile("tools/cli/tpserve")
        env = dict(os.environ, TPSERVE_API_KEY="ops-key")
        listed = subprocess.run([cli, f"--router={self.cluster.address()}", "groups"], env=env,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn("SERVING", listed.stdout.upper())

    def test_keys_file_is_reread_when_it_changes(self):
        self.assert_code(lambda: self.generate("late-key"), grpc.StatusCode.UNAUTHENTICATED)
        with open(self.keys) as f:
            old = f.read()
        try:
            write_keys(self.keys, old + line("late", "late-key"))
            deadline = time.time() + 10
            while True:
                try:
                    self.assertEqual(self.generate("late-key"), 4)
                    break
                except grpc.RpcError as e:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.3)
        finally:
            write_keys(self.keys, old)


if __name__ == "__main__":
    unittest.main()
