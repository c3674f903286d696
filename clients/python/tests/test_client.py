"""The client package's own tests: Client and AsyncClient against an
in-process fake tpserve.v1.Generation server (grpcio, port 0). They check
what the wrapper does — request building, streaming, joining, errors, API-key
metadata, cancellation — not the router (tests/integration does that).

    python3 -m unittest discover -s clients/python/tests
"""
import asyncio
import threading
import time
import unittest
from concurrent import futures

import grpc

import tpserve_client
from tpserve_client._generated import generation_pb2 as pb
from tpserve_client._generated import generation_pb2_grpc as pb_grpc


class FakeGeneration(pb_grpc.GenerationServicer):
    def __init__(self):
        self.requests = []
        self.metadata = []
        self.cancelled = threading.Event()

    def Generate(self, request, context):
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        if request.text == "fail":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "text: bad prompt")
        if request.text == "endless":
            # gRPC either lets this loop see the call inactive or stops
            # pulling and closes the generator (GeneratorExit at the yield),
            # depending on timing: both mean the server saw the cancellation.
            finished = False
            try:
                for i in range(1000):
                    if not context.is_active():
                        return
                    yield pb.GenerateResponse(request_id="r", text="x", token_ids=[i])
                    time.sleep(0.01)
                finished = True
            finally:
                if not finished:
                    self.cancelled.set()
            return
        lp = pb.SampledLogprobs(sampled=pb.TokenLogprob(token_id=5, logprob=-0.25, text="Hel"),
                                top=[pb.TokenLogprob(token_id=5, logprob=-0.25, text="Hel")])
        yield pb.GenerateResponse(request_id="r1", text="Hel", token_ids=[5], logprobs=[lp])
        yield pb.GenerateResponse(request_id="r1", text="lo", token_ids=[6, 2],
                                  finish_reason=pb.FINISH_REASON_STOP, stop_reason="</s>",
                                  usage=pb.Usage(prompt_tokens=4, completion_tokens=3,
                                                 cached_tokens=1))

    def Tokenize(self, request, context):
        n = len(request.text) if request.HasField("text") else len(request.chat.messages)
        return pb.TokenizeResponse(token_ids=list(range(n)), tokens=["t"] * n)

    def ModelInfo(self, request, context):
        return pb.ModelInfoResponse(model_name="fake-model", vocab_size=10, context_length=64,
                                    eos_token_ids=[2])


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fake = FakeGeneration()
        cls.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_GenerationServicer_to_server(cls.fake, cls.server)
        cls.port = cls.server.add_insecure_port("127.0.0.1:0")
        cls.server.start()
        cls.address = f"127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)

    def test_generate_streams_typed_chunks(self):
        with tpserve_client.Client(self.address) as c:
            chunks = list(c.generate("Hi", max_tokens=5, temperature=0.5, seed=7, stop=["\n"],
                                     top_logprobs=1))
        self.assertEqual([x.text for x in chunks], ["Hel", "lo"])
        self.assertIsNone(chunks[0].finish_reason)
        self.assertEqual(chunks[1].finish_reason, "stop")
        self.assertEqual(chunks[1].usage, tpserve_client.Usage(4, 3, 1))
        self.assertEqual(chunks[0].logprobs[0].sampled.logprob, -0.25)
        req = self.fake.requests[-1]
        self.assertEqual(req.text, "Hi")
        self.assertEqual(req.max_tokens, 5)
        self.assertAlmostEqual(req.sampling.temperature, 0.5)
        self.assertEqual(req.sampling.seed, 7)
        self.assertTrue(req.sampling.logprobs)  # implied by top_logprobs
        self.assertEqual(list(req.stop), ["\n"])
        self.assertFalse(req.sampling.HasField("top_p"))  # unset stays unset

    def test_chat_joins_and_sends_messages(self):
        with tpserve_client.Client(self.address) as c:
            out = c.chat([{"role": "system", "content": "s"}, ("user", "u")])
        self.assertEqual(out.text, "Hello")
        self.assertEqual(out.token_ids, [5, 6, 2])
        self.assertEqual(out.stop_reason, "</s>")
        msgs = self.fake.requests[-1].chat.messages
        self.assertEqual([(m.role, m.content) for m in msgs], [("system", "s"), ("user", "u")])

    def test_tokenize_model_info_and_token_ids(self):
        with tpserve_client.Client(self.address) as c:
            self.assertEqual(c.tokenize("abc").token_ids, [0, 1, 2])
            self.assertEqual(len(c.tokenize(messages=[("user", "x")]).tokens), 1)
            info = c.model_info()
            self.assertEqual(info.model_name, "fake-model")
            self.assertEqual(info.eos_token_ids, [2])
            c.complete(token_ids=[1, 2, 3])
        self.assertEqual(list(self.fake.requests[-1].token_ids.ids), [1, 2, 3])

    def test_errors_carry_the_status_code(self):
        with tpserve_client.Client(self.address) as c:
            with self.assertRaises(tpserve_client.Error) as e:
                c.complete("fail")
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("bad prompt", e.exception.details)
        with self.assertRaises(ValueError):
            tpserve_client.Client(self.address).complete("a", messages=[("user", "b")])

    def test_api_key_is_sent_as_bearer_metadata(self):
        with tpserve_client.Client(self.address, api_key="k-123") as c:
            c.complete("Hi")
        self.assertEqual(self.fake.metadata[-1].get("authorization"), "Bearer k-123")
        with tpserve_client.Client(self.address) as c:
            c.complete("Hi")
        self.assertNotIn("authorization", self.fake.metadata[-1])

    def test_closing_the_iterator_cancels_the_call(self):
        self.fake.cancelled.clear()
        with tpserve_client.Client(self.address) as c:
            it = c.generate("endless")
            next(it)
            it.close()
            self.assertTrue(self.fake.cancelled.wait(5), "server never saw the cancellation")

    def test_tls_without_a_server_certificate_fails_cleanly(self):
        # A TLS client against this plaintext port must fail with an Error,
        # not hang: proves the TLS option reaches the channel.
        with tpserve_client.Client(self.address, tls=True, timeout=5) as c:
            with self.assertRaises(tpserve_client.Error) as e:
                c.model_info()
        self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)

    def test_tls_files_are_read_and_imply_tls(self):
        # A CA file alone turns TLS on (so this plaintext port fails), and a
        # client certificate needs its key.
        import os
        import tempfile
        with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
            f.write(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
        self.addCleanup(os.remove, f.name)
        # (The plaintext fake server answers any plaintext client.)
        with tpserve_client.Client(self.address, tls_ca_file=f.name, timeout=2) as c:
            with self.assertRaises(tpserve_client.Error) as e:
                c.model_info()
        self.assertIn(e.exception.code, (grpc.StatusCode.UNAVAILABLE,
                                         grpc.StatusCode.DEADLINE_EXCEEDED))
        with self.assertRaises(ValueError):
            tpserve_client.Client(self.address, tls_cert_file=f.name)
        with self.assertRaises(FileNotFoundError):
            tpserve_client.Client(self.address, tls_ca_file=f.name + ".missing")

    def test_async_client(self):
        async def run():
            async with tpserve_client.AsyncClient(self.address, api_key="a") as c:
                chunks = [x async for x in c.generate("Hi", max_tokens=3)]
                chat = await c.chat([("user", "x")])
                info = await c.model_info()
                toks = await c.tokenize("ab")
                with self.assertRaises(tpserve_client.Error):
                    await c.complete("fail")
                return chunks, chat, info, toks
        chunks, chat, info, toks = asyncio.run(run())
        self.assertEqual("".join(x.text for x in chunks), "Hello")
        self.assertEqual(chat.finish_reason, "stop")
        self.assertEqual(info.model_name, "fake-model")
        self.assertEqual(toks.token_ids, [0, 1])
        self.assertEqual(self.fake.metadata[-1].get("authorization"), "Bearer a")


if __name__ == "__main__":
    unittest.main(verbosity=2)
