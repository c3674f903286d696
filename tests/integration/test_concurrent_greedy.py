"""32 concurrent streaming requests of mixed prompt and output lengths all
complete, and each greedy output equals what the same request gets alone
(through the tpserve_client package; one Client shared by 32 threads)."""
import concurrent.futures
import sys
import unittest

from cluster import Cluster

WORDS = ("the quick brown fox jumps over a lazy dog while seven small birds sing "
         "about rivers mountains cities and the long history of numbers").split()


def make_request(i):
    """generate() keyword arguments of request i."""
    n_words = 2 + (i * 7) % 40          # prompts from 2 to 41 words
    text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(n_words))
    req = dict(request_id=f"r{i}", max_tokens=4 + (i * 5) % 17, temperature=0.0)  # 4..20 tokens
    if i % 4 == 3:
        req["messages"] = [{"role": "user", "content": text}]
    else:
        req["prompt"] = text
    return req


def run(client, req):
    ids, text, last = [], "", None
    for c in client.generate(timeout=600, **req):
        ids.extend(c.token_ids)
        text += c.text
        if c.finish_reason:
            last = c
    return ids, text, last


class ConcurrentGreedyTest(unittest.TestCase):
    def test_batched_equals_alone(self):
        with Cluster(world_size=2, router_args=["--max_num_seqs=64", "--max_num_batched_tokens=512"]) as c, \
                c.client() as client:
            reqs = [make_request(i) for i in range(32)]
            alone = [run(client, r) for r in reqs]
            with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
                together = list(ex.map(lambda r: run(client, r), reqs))
            for i, (a, t) in enumerate(zip(alone, together)):
                self.assertIsNotNone(t[2], f"request {i} ended without a final response")
                self.assertEqual(t[2].usage.completion_tokens, len(t[0]))
                self.assertEqual(t[2].request_id, f"r{i}")
                self.assertEqual(a[0], t[0], f"request {i}: batched tokens differ from alone")
                self.assertEqual(a[1], t[1], f"request {i}: batched text differs from alone")
                self.assertGreater(len(t[0]), 0)
            # Mixed lengths really were mixed.
            self.assertGreater(len({len(a[0]) for a in alone}), 3)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
