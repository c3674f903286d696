"""The tpserve_client package (clients/python) on Debian's grpcio completes a
streaming chat request; also checks the health service, server reflection,
Tokenize, ModelInfo, stop strings, stop tokens and logprobs through it."""
import sys
import unittest

from cluster import Cluster


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Gloo over TCP here; the other tests use the shared-memory backend.
        cls.cluster = Cluster(world_size=2, comm="gloo").__enter__()
        cls.client = cls.cluster.client(timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.cluster.__exit__(None, None, None)

    def test_streaming_generate(self):
        chunks = list(self.client.chat([{"role": "user", "content": "What is the capital of France?"}],
                                       stream=True, max_tokens=12, request_id="py-1", timeout=300))
        self.assertGreater(len(chunks), 1, "expected a stream, not one message")
        last = chunks[-1]
        self.assertIn(last.finish_reason, ("stop", "length"))
        for c in chunks[:-1]:
            self.assertIsNone(c.finish_reason)
        self.assertTrue(all(c.request_id == "py-1" for c in chunks))
        n = sum(len(c.token_ids) for c in chunks)
        self.assertEqual(last.usage.completion_tokens, n)
        self.assertGreater(last.usage.prompt_tokens, 5)
        self.assertTrue("".join(c.text for c in chunks).strip())

    def test_health_serving_and_reflection(self):
        # Health and reflection are standard gRPC services the client package
        # does not wrap: raw wire bytes on the channel.
        self.assertEqual(self.cluster.health(), 1)  # SERVING
        # grpc.reflection.v1alpha ServerReflectionInfo with list_services="" (field 7).
        call = self.cluster.channel().stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=None, response_deserializer=None)
        replies = list(call(iter([b"\x3a\x00"]), timeout=10))
        self.assertTrue(any(b"tpserve.v1.Generation" in r for r in replies))

    def test_tokenize_and_model_info(self):
        info = self.client.model_info(timeout=10)
        self.assertEqual(info.tensor_parallel_size, 2)
        self.assertEqual(info.vocab_size, 49152)
        self.assertGreater(info.kv_num_blocks, 0)
        tok = self.client.tokenize("Hello world", timeout=10)
        self.assertEqual(len(tok.token_ids), len(tok.tokens))
        self.assertGreaterEqual(len(tok.token_ids), 2)
        # Generating from the ids equals generating from the text.
        a = self.client.complete("Hello world", max_tokens=5)
        b = self.client.complete(token_ids=tok.token_ids, max_tokens=5)
        self.assertEqual(len(a.token_ids), 5)
        self.assertEqual(a.token_ids, b.token_ids)

    def test_stop_string_never_leaks(self):
        base = dict(max_tokens=16, ignore_eos=True)
        prompt = "1, 2, 3, 4, 5, 6, 7,"
        full = self.client.complete(prompt, **base).text
        self.assertGreater(len(full), 4)
        stop = full[2:4]  # a stop string that occurs in the greedy output
        chunks = list(self.client.generate(prompt, stop=[stop], **base))
        streamed = "".join(c.text for c in chunks)
        self.assertEqual(streamed, full[:full.index(stop)])
        self.assertEqual(chunks[-1].finish_reason, "stop")
        self.assertEqual(chunks[-1].stop_reason, stop)

    def test_stop_token_reason_is_its_text(self):
        # The greedy first token after this prompt starts with a space, which
        # the byte-level BPE piece spells "Ġ": stop_reason must be the text.
        prompt = "The capital of France is"
        stream = self.client.generate(prompt, max_tokens=4, ignore_eos=True)
        first = next(stream)
        stream.close()  # cancels the rest
        self.assertEqual(len(first.token_ids), 1)
        self.assertTrue(first.text.startswith(" "), first.text)
        stopped = self.client.complete(prompt, max_tokens=4, stop_token_ids=first.token_ids)
        self.assertEqual(stopped.finish_reason, "stop")
        self.assertEqual(stopped.text, "")  # a stop token is not streamed as text
        self.assertEqual(stopped.stop_reason, first.text)
        self.assertNotIn("\u0120", stopped.stop_reason)  # "Ġ"

    def test_logprobs(self):
        chunks = list(self.client.generate("The sky is", max_tokens=3, logprobs=True,
                                           top_logprobs=3))
        self.assertEqual(sum(len(c.token_ids) for c in chunks), 3)
        for c in chunks:
            self.assertEqual(len(c.logprobs), len(c.token_ids))
            for tid, lp in zip(c.token_ids, c.logprobs):
                self.assertEqual(lp.sampled.token_id, tid)
                self.assertLessEqual(lp.sampled.logprob, 0.0)
                self.assertEqual(len(lp.top), 3)
                self.assertEqual(lp.top[0].token_id, tid)  # greedy picks the best


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
