"""The OpenAI-compatible HTTP API on a real router: the official `openai` SDK
(chat streaming and not, completions, models.list) gives the same greedy
tokens and usage as the same request over gRPC (through clients/python);
n=4 with a seed is reproducible and shares the prompt through the prefix
cache; SSE chunks arrive while tokens are generated; a client that
disconnects mid-stream has its KV blocks freed within 1 s; bad requests get
400 with OpenAI's error object and the server keeps serving; an
x-request-timeout header sets the request's deadline, and a passed deadline
is 504 with OpenAI's error object and frees the KV blocks; metrics carry the
frontend label."""
import http.client
import json
import os
import socket
import sys
import time
import unittest

import openai

from cluster import Cluster, _proto_dir, metric_sum, parse_metrics

sys.path.insert(0, os.path.join(_proto_dir(), "clients", "python"))
import tpserve_client  # noqa: E402

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


class OpenAiHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(world_size=1, http=True,
                              router_args=["--http_max_body_bytes=65536"]).__enter__()
        cls.sdk = openai.OpenAI(base_url=cls.cluster.http_url("/v1"), api_key="unused",
                                max_retries=0, timeout=120)
        cls.grpc = tpserve_client.Client(cls.cluster.address(), timeout=120)
        cls.model = cls.grpc.model_info().model_name

    @classmethod
    def tearDownClass(cls):
        cls.grpc.close()
        cls.cluster.__exit__(None, None, None)

    def metrics(self):
        return parse_metrics(self.cluster.scrape(self.cluster.router_metrics_port))[0]

    def post(self, path, body, raw=None, headers=None):
        """(status, parsed JSON) of a POST with a JSON (or raw bytes) body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.cluster.http_port, timeout=120)
        data = raw if raw is not None else json.dumps(body).encode()
        conn.request("POST", path, body=data,
                     headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        out = r.status, json.loads(r.read() or b"null")
        conn.close()
        return out

    def wait_kv_idle(self, timeout):
        start = time.monotonic()
        while True:
            m = self.metrics()
            if (metric_sum(m, "tpserve_kv_cache_usage_ratio") == 0
                    and metric_sum(m, "tpserve_num_requests_running") == 0
                    and metric_sum(m, "tpserve_num_requests_waiting") == 0):
                return
            self.assertLess(time.monotonic() - start, timeout, f"KV still held after {timeout} s")
            time.sleep(0.05)

    def test_models_list_names_the_served_model(self):
        self.assertEqual(self.model, "SmolLM2-135M-Instruct")  # from the file name
        self.assertEqual([m.id for m in self.sdk.models.list().data], [self.model])

    def test_chat_greedy_equals_grpc(self):
        want = self.grpc.chat(MESSAGES, max_tokens=24)
        got = self.sdk.chat.completions.create(model=self.model, messages=MESSAGES,
                                               max_tokens=24, temperature=0)
        self.assertEqual(got.choices[0].message.content, want.text)
        self.assertEqual(got.choices[0].finish_reason, want.finish_reason)
        self.assertEqual(got.usage.prompt_tokens, want.usage.prompt_tokens)
        self.assertEqual(got.usage.completion_tokens, want.usage.completion_tokens)
        self.assertEqual(got.usage.total_tokens,
                         want.usage.prompt_tokens + want.usage.completion_tokens)

        stream = self.sdk.chat.completions.create(
            model=self.model, messages=MESSAGES, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, want.text)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual([c.choices[0].finish_reason for c in chunks if c.choices][-1],
                         want.finish_reason)
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, want.usage.completion_tokens)
        self.assertEqual(chunks[-1].usage.prompt_tokens, want.usage.prompt_tokens)

    def test_completions_greedy_equals_grpc(self):
        prompt = "The three primary colors are"
        want = self.grpc.complete(prompt, max_tokens=16, ignore_eos=True)
        got = self.sdk.completions.create(model=self.model, prompt=prompt, max_tokens=16,
                                          temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(got.choices[0].text, want.text)
        self.assertEqual(got.usage.prompt_tokens, want.usage.prompt_tokens)
        self.assertEqual(got.usage.completion_tokens, 16)
        # Token-id prompts and a list of prompts take the same path.
        ids = self.grpc.tokenize(prompt).token_ids
        got = self.sdk.completions.create(model=self.model, prompt=[ids, prompt], max_tokens=16,
                                          temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual([c.text for c in got.choices], [want.text, want.text])
        streamed = "".join(c.choices[0].text for c in self.sdk.completions.create(
            model=self.model, prompt=prompt, max_tokens=16, temperature=0, stream=True,
            extra_body={"ignore_eos": True}) if c.choices)
        self.assertEqual(streamed, want.text)

    def test_n4_with_seed_is_reproducible_and_shares_the_prompt(self):
        before = metric_sum(self.metrics(), "tpserve_prefix_cache_hits_total")
        kw = dict(model=self.model, messages=MESSAGES, n=4, seed=1234, temperature=1.0,
                  max_tokens=12)
        a = self.sdk.chat.completions.create(**kw)
        b = self.sdk.chat.completions.create(**kw)
        self.assertEqual(len(a.choices), 4)
        self.assertEqual([c.index for c in a.choices], [0, 1, 2, 3])
        self.assertEqual([c.message.content for c in a.choices],
                         [c.message.content for c in b.choices])
        self.assertGreater(len({c.message.content for c in a.choices}), 1,
                           "4 sampled choices with different seeds should not all agree")
        hits = metric_sum(self.metrics(), "tpserve_prefix_cache_hits_total") - before
        # Choices 1..3 of each request reuse choice 0's full prompt blocks.
        block = self.grpc.model_info().kv_block_size
        self.assertGreaterEqual(hits, 2 * 3 * block * (a.usage.prompt_tokens // block) // 2)

    def test_sse_chunks_arrive_while_generating(self):
        sock = socket.create_connection(("127.0.0.1", self.cluster.http_port), timeout=120)
        body = json.dumps({"model": self.model, "prompt": "Count: 1, 2, 3,", "max_tokens": 48,
                           "ignore_eos": True, "stream": True}).encode()
        start = time.monotonic()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        arrivals, buf = [], b""
        while b"data: [DONE]" not in buf:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
            arrivals.append((time.monotonic() - start, data.count(b"data: {")))
        sock.close()
        chunk_times = [t for t, n in arrivals if n > 0]
        first, last = chunk_times[0], chunk_times[-1]
        print(f"SSE: first chunk {first * 1000:.0f} ms, last {last * 1000:.0f} ms, "
              f"{len(chunk_times)} reads carrying chunks", file=sys.stderr)
        # Streamed, not buffered: the chunks came in several reads and the
        # first well before the 48th token (the first also waits for the
        # prefill, which a loaded machine makes slower than a few decodes).
        self.assertGreaterEqual(len(chunk_times), 4)
        self.assertLess(first, last / 2)
        self.assertGreater(len(chunk_times), 10)
        self.assertEqual(buf.count(b"data: {"), 48)

    def test_disconnect_frees_kv_within_one_second(self):
        sock = socket.create_connection(("127.0.0.1", self.cluster.http_port), timeout=120)
        body = json.dumps({"model": self.model, "prompt": "Once upon a time", "max_tokens": 1000,
                           "ignore_eos": True, "stream": True}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        buf = b""
        while buf.count(b"data: {") < 5:
            buf += sock.recv(65536)
        running = metric_sum(self.metrics(), "tpserve_num_requests_running")
        usage = metric_sum(self.metrics(), "tpserve_kv_cache_usage_ratio")
        self.assertEqual(running, 1)
        self.assertGreater(usage, 0)
        sock.close()
        closed = time.monotonic()
        while True:
            m = self.metrics()
            if (metric_sum(m, "tpserve_kv_cache_usage_ratio") == 0
                    and metric_sum(m, "tpserve_num_requests_running") == 0):
                break
            self.assertLess(time.monotonic() - closed, 1.0, "KV still held 1 s after disconnect")
            time.sleep(0.02)
        print(f"disconnect: KV freed {1000 * (time.monotonic() - closed):.0f} ms after close",
              file=sys.stderr)
        self.assertGreaterEqual(
            metric_sum(m, "tpserve_frontend_requests_total", frontend="http", code="cancelled"), 1)

    def test_bad_requests_get_400_with_an_error_object(self):
        ok_chat = {"model": self.model, "messages": MESSAGES, "max_tokens": 2}
        cases = [
            ({**ok_chat, "temperature": "hot"}, "temperature"),
            ({**ok_chat, "max_tokens": -1}, "max_tokens"),
            ({**ok_chat, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
            ({**ok_chat, "top_p": 5}, "top_p"),
            ({**ok_chat, "n": "four"}, "n"),
            ({**ok_chat, "stop": 7}, "stop"),
            ({**ok_chat, "messages": "hello"}, "messages"),
        ]
        for body, param in cases:
            status, err = self.post("/v1/chat/completions", body)
            self.assertEqual(status, 400, body)
            self.assertEqual(err["error"]["type"], "invalid_request_error")
            self.assertEqual(err["error"]["param"], param, err)
            self.assertIn(param.split("[")[0], err["error"]["message"])
        status, err = self.post("/v1/completions", None, raw=b'{"prompt": "x", ')
        self.assertEqual((status, err["error"]["param"]), (400, "body"))
        status, err = self.post("/v1/completions", None,
                                raw=json.dumps({"prompt": "x" * 70000}).encode())
        self.assertEqual(status, 400)
        self.assertIn("limit", err["error"]["message"])
        with self.assertRaises(openai.BadRequestError):
            self.sdk.completions.create(model=self.model, prompt="x", max_tokens=-5)
        with self.assertRaises(openai.NotFoundError):
            self.sdk.completions.create(model="no-such-model", prompt="x", max_tokens=2)
        # Still serving.
        out = self.sdk.completions.create(model=self.model, prompt="Hi", max_tokens=3,
                                          extra_body={"ignore_eos": True})
        self.assertEqual(out.usage.completion_tokens, 3)

    def test_request_timeout_header_gives_504(self):
        long_body = {"model": self.model, "prompt": "Write a very long essay about the sea.",
                     "max_tokens": 1000, "ignore_eos": True}
        # A malformed header is the client's error, named as the parameter.
        for bad in ("0", "-1", "soon", "1e9"):
            status, err = self.post("/v1/completions", {**long_body, "max_tokens": 2},
                                    headers={"x-request-timeout": bad})
            self.assertEqual((status, err["error"]["param"]), (400, "x-request-timeout"), err)
            self.assertEqual(err["error"]["type"], "invalid_request_error")
        # A generous deadline does not change the answer.
        status, ok = self.post("/v1/completions", {**long_body, "max_tokens": 3},
                               headers={"x-request-timeout": "120"})
        self.assertEqual((status, ok["usage"]["completion_tokens"]), (200, 3))

        # Non-streaming: 504 with OpenAI's error object, near the deadline
        # (1000 tokens take far longer than 1.5 s here).
        start = time.monotonic()
        status, err = self.post("/v1/completions", long_body,
                                headers={"X-Request-Timeout": "1.5"})
        elapsed = time.monotonic() - start
        self.assertEqual(status, 504, err)
        self.assertEqual(err["error"]["type"], "timeout_error")
        self.assertIn("deadline", err["error"]["message"])
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 10.0)
        self.wait_kv_idle(5.0)

        # The openai SDK sees the 504 as an API status error.
        with self.assertRaises(openai.APIStatusError) as ctx:
            self.sdk.chat.completions.create(model=self.model, messages=MESSAGES,
                                             max_tokens=1000, extra_body={"ignore_eos": True},
                                             extra_headers={"x-request-timeout": "1"})
        self.assertEqual(ctx.exception.status_code, 504)
        self.wait_kv_idle(5.0)

        # Streaming: the headers went out with 200, so the deadline ends the
        # stream with an error event, then [DONE].
        conn = http.client.HTTPConnection("127.0.0.1", self.cluster.http_port, timeout=120)
        conn.request("POST", "/v1/completions", body=json.dumps({**long_body, "stream": True}),
                     headers={"Content-Type": "application/json", "x-request-timeout": "1.5"})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        events = [line[len(b"data: "):] for line in r.read().split(b"\n\n")
                  if line.startswith(b"data: ")]
        conn.close()
        self.assertEqual(events[-1], b"[DONE]")
        err = json.loads(events[-2])
        self.assertEqual(err["error"]["type"], "timeout_error", err)
        self.assertGreater(len(events), 3, "tokens should stream before the deadline")
        self.wait_kv_idle(5.0)

    def test_tokenize_detokenize_and_health(self):
        text = "Hello world, how are you?"
        status, tok = self.post("/tokenize", {"model": self.model, "prompt": text})
        self.assertEqual(status, 200)
        self.assertEqual(tok["tokens"], self.grpc.tokenize(text).token_ids)
        self.assertEqual(tok["count"], len(tok["tokens"]))
        status, chat = self.post("/tokenize", {"messages": MESSAGES})
        self.assertEqual(chat["tokens"], self.grpc.tokenize(messages=MESSAGES).token_ids)
        status, detok = self.post("/detokenize", {"tokens": tok["tokens"]})
        self.assertEqual((status, detok["prompt"]), (200, text))
        status, err = self.post("/detokenize", {"tokens": [10 ** 9]})
        self.assertEqual((status, err["error"]["param"]), (400, "tokens[0]"))
        conn = http.client.HTTPConnection("127.0.0.1", self.cluster.http_port, timeout=10)
        conn.request("GET", "/health")
        self.assertEqual(conn.getresponse().status, 200)

    def test_metrics_carry_the_frontend_label(self):
        self.grpc.complete("Hi", max_tokens=2)
        self.sdk.completions.create(model=self.model, prompt="Hi", max_tokens=2)
        m = self.metrics()
        for frontend in ("grpc", "http"):
            self.assertGreaterEqual(metric_sum(m, "tpserve_frontend_requests_total",
                                               frontend=frontend, code="ok"), 1)
            self.assertGreater(metric_sum(m, "tpserve_frontend_generation_tokens_total",
                                          frontend=frontend), 0)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
