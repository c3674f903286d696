"""Invalid requests get INVALID_ARGUMENT with a message naming the field, and
none of them reaches a worker (the workers' step and token counters do not
move). Building the invalid requests needs raw stubs: the tpserve_client
package refuses or cannot express most of them (no prompt, an empty
token_ids or chat oneof, invalid UTF-8 bytes), and the server must reject
them from any client. The queue bound goes through the package."""
import concurrent.futures
import sys
import unittest

import grpc

from cluster import Cluster, client_package, metric_sum, parse_metrics, stubs

pb, gpb = stubs("generation")


def worker_counters(c):
    total = []
    for port in c.worker_metrics_ports:
        samples, _ = parse_metrics(c.scrape(port))
        total.append((metric_sum(samples, "tpserve_worker_steps_total"),
                      metric_sum(samples, "tpserve_worker_tokens_processed_total")))
    return total


class InvalidRequestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(world_size=2).__enter__()
        cls.stub = gpb.GenerationStub(cls.cluster.channel())
        cls.info = cls.stub.ModelInfo(pb.ModelInfoRequest(), timeout=10)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def expect_invalid(self, req, field, raw=None):
        with self.assertRaises(grpc.RpcError) as ctx:
            if raw is None:
                list(self.stub.Generate(req, timeout=30))
            else:
                call = self.cluster.channel().unary_stream(
                    "/tpserve.v1.Generation/Generate", request_serializer=None,
                    response_deserializer=None)
                list(call(raw, timeout=30))
        e = ctx.exception
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {e.details()}")
        self.assertIn(field, e.details())
        return e.details()

    def test_all_invalid_requests_rejected_before_workers(self):
        before = worker_counters(self.cluster)
        ctx_len = self.info.context_length

        self.expect_invalid(pb.GenerateRequest(), "prompt")
        self.expect_invalid(pb.GenerateRequest(text=""), "text")
        self.expect_invalid(pb.GenerateRequest(token_ids=pb.TokenIdsPrompt()), "token_ids")
        self.expect_invalid(pb.GenerateRequest(chat=pb.ChatPrompt()), "chat.messages")
        msg = self.expect_invalid(
            pb.GenerateRequest(token_ids=pb.TokenIdsPrompt(ids=[100] * (ctx_len + 5))), "prompt")
        self.assertIn(str(ctx_len), msg)
        self.expect_invalid(pb.GenerateRequest(token_ids=pb.TokenIdsPrompt(ids=[10**8])),
                            "token_ids.ids[0]")
        for bad in (0, -5, 10**9):
            self.expect_invalid(pb.GenerateRequest(text="hi", max_tokens=bad), "max_tokens")
        self.expect_invalid(pb.GenerateRequest(text="hi", sampling=pb.SamplingParameters(
            temperature=-1.0)), "sampling.temperature")
        for bad in (0.0, -0.5, 1.5):
            self.expect_invalid(pb.GenerateRequest(text="hi", sampling=pb.SamplingParameters(
                top_p=bad)), "sampling.top_p")
        self.expect_invalid(pb.GenerateRequest(text="hi", sampling=pb.SamplingParameters(
            top_logprobs=50)), "sampling.top_logprobs")
        self.expect_invalid(pb.GenerateRequest(chat=pb.ChatPrompt(messages=[
            pb.ChatMessage(role="user", content="hi"),
            pb.ChatMessage(role="wizard", content="boo")])), "chat.messages[1].role")
        self.expect_invalid(pb.GenerateRequest(text="hi", stop=[f"s{i}" for i in range(9)]),
                            "stop")
        self.expect_invalid(pb.GenerateRequest(text="hi", stop=[""]), "stop[0]")

        # Invalid UTF-8 cannot be built with the generated classes: patch the
        # serialized bytes of a valid request.
        good = pb.GenerateRequest(text="hello XX world").SerializeToString()
        self.expect_invalid(None, "text", raw=good.replace(b"XX", b"\xc3\x28"))
        good = pb.GenerateRequest(chat=pb.ChatPrompt(messages=[
            pb.ChatMessage(role="user", content="fine"),
            pb.ChatMessage(role="user", content="bad YY")])).SerializeToString()
        self.expect_invalid(None, "chat.messages[1].content", raw=good.replace(b"YY", b"\xff\xfe"))
        good = pb.GenerateRequest(text="ok", stop=["ZZ"]).SerializeToString()
        self.expect_invalid(None, "stop[0]", raw=good.replace(b"ZZ", b"\xed\xa0"))

        self.assertEqual(worker_counters(self.cluster), before,
                         "an invalid request reached a worker")

        # A valid request right after still works, and does reach the workers.
        out = list(self.stub.Generate(pb.GenerateRequest(text="hi", max_tokens=2), timeout=120))
        self.assertEqual(out[-1].usage.completion_tokens, 2)
        self.assertNotEqual(worker_counters(self.cluster), before)


class QueueBoundTest(unittest.TestCase):
    def test_waiting_queue_full_is_resource_exhausted(self):
        with Cluster(world_size=1, router_args=["--max_waiting=2", "--max_num_seqs=1"]) as c, \
                c.client(timeout=120) as client:
            # Each generate() call starts its RPC at the first next(); issue all
            # eight before reading on, so that they queue together.
            streams = [client.generate(f"story {i}", max_tokens=200, ignore_eos=True)
                       for i in range(8)]
            codes = []
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
                firsts = list(ex.map(first_or_error, streams))
            for err in firsts:
                codes.append(grpc.StatusCode.OK if err is None else err.code)
                if err is not None and err.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self.assertIn("queue is full", err.details)
            for s in streams:
                s.close()  # cancels the ones still generating
            self.assertIn(grpc.StatusCode.RESOURCE_EXHAUSTED, codes)
            self.assertIn(grpc.StatusCode.OK, codes)


def first_or_error(stream):
    """None when the stream yields a first chunk, else the tpserve_client.Error."""
    try:
        next(stream)
        return None
    except client_package().Error as e:
        return e

if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
