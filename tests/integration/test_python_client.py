"""A Python client on Debian's grpcio, with stubs generated from the proto at
test time, completes a streaming request; also checks the health service,
server reflection, Tokenize, ModelInfo, stop strings and logprobs."""
import sys
import unittest

import grpc

from cluster import Cluster, stubs

pb, gpb = stubs("generation")


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Gloo over TCP here; the other tests use the shared-memory backend.
        cls.cluster = Cluster(world_size=2, comm="gloo").__enter__()
        cls.stub = gpb.GenerationStub(cls.cluster.channel())

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def test_streaming_generate(self):
        req = pb.GenerateRequest(request_id="py-1", max_tokens=12)
        req.chat.messages.add(role="user", content="What is the capital of France?")
        responses = list(self.stub.Generate(req, timeout=300))
        self.assertGreater(len(responses), 1, "expected a stream, not one message")
        last = responses[-1]
        self.assertNotEqual(last.finish_reason, pb.FINISH_REASON_UNSPECIFIED)
        for r in responses[:-1]:
            self.assertEqual(r.finish_reason, pb.FINISH_REASON_UNSPECIFIED)
        self.assertTrue(all(r.request_id == "py-1" for r in responses))
        n = sum(len(r.token_ids) for r in responses)
        self.assertEqual(last.usage.completion_tokens, n)
        self.assertGreater(last.usage.prompt_tokens, 5)
        self.assertTrue("".join(r.text for r in responses).strip())

    def test_health_serving_and_reflection(self):
        self.assertEqual(self.cluster.health(), 1)  # SERVING
        # grpc.reflection.v1alpha ServerReflectionInfo with list_services="" (field 7).
        call = self.cluster.channel().stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=None, response_deserializer=None)
        replies = list(call(iter([b"\x3a\x00"]), timeout=10))
        self.assertTrue(any(b"tpserve.v1.Generation" in r for r in replies))

    def test_tokenize_and_model_info(self):
        info = self.stub.ModelInfo(pb.ModelInfoRequest(), timeout=10)
        self.assertEqual(info.tensor_parallel_size, 2)
        self.assertEqual(info.vocab_size, 49152)
        self.assertGreater(info.kv_num_blocks, 0)
        tok = self.stub.Tokenize(pb.TokenizeRequest(text="Hello world"), timeout=10)
        self.assertEqual(len(tok.token_ids), len(tok.tokens))
        self.assertGreaterEqual(len(tok.token_ids), 2)
        # Generating from the ids equals generating from the text.
        a = list(self.stub.Generate(pb.GenerateRequest(text="Hello world", max_tokens=5), timeout=120))
        b = list(self.stub.Generate(pb.GenerateRequest(
            token_ids=pb.TokenIdsPrompt(ids=tok.token_ids), max_tokens=5), timeout=120))
        self.assertEqual([t for r in a for t in r.token_ids], [t for r in b for t in r.token_ids])

    def test_stop_string_never_leaks(self):
        base = pb.GenerateRequest(text="1, 2, 3, 4, 5, 6, 7,", max_tokens=16, ignore_eos=True)
        full = "".join(r.text for r in self.stub.Generate(base, timeout=120))
        self.assertGreater(len(full), 4)
        stop = full[2:4]  # a stop string that occurs in the greedy output
        req = pb.GenerateRequest()
        req.CopyFrom(base)
        req.stop.append(stop)
        responses = list(self.stub.Generate(req, timeout=120))
        streamed = "".join(r.text for r in responses)
        self.assertEqual(streamed, full[:full.index(stop)])
        self.assertEqual(responses[-1].finish_reason, pb.FINISH_REASON_STOP)
        self.assertEqual(responses[-1].stop_reason, stop)

    def test_logprobs(self):
        req = pb.GenerateRequest(text="The sky is", max_tokens=3,
                                 sampling=pb.SamplingParameters(logprobs=True, top_logprobs=3))
        responses = list(self.stub.Generate(req, timeout=120))
        for r in responses:
            self.assertEqual(len(r.logprobs), len(r.token_ids))
            for tid, lp in zip(r.token_ids, r.logprobs):
                self.assertEqual(lp.sampled.token_id, tid)
                self.assertLessEqual(lp.sampled.logprob, 0.0)
                self.assertEqual(len(lp.top), 3)
                self.assertEqual(lp.top[0].token_id, tid)  # greedy picks the best


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
