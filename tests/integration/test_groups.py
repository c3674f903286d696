"""One router, several tensor-parallel groups (docs/operations.md "Groups and
placement"), with the real router and TP=1 workers:
  - 8 concurrent greedy requests spread over two groups (both step, both get
    placements) and produce exactly a one-group cluster's outputs;
  - chat requests sharing a ~300-token system prompt, one after another, all
    land on the group that cached it and report usage.cached_tokens >= 288;
  - a group whose ranks start after the router serves joins and gets requests.
"""
import time
import unittest

import grpc

from cluster import Cluster, generate_concurrently, parse_metrics, stubs

pb, gpb = stubs("generation")
apb, agpb = stubs("admin")

PROMPTS = [f"Question {i}: what do you know about {w}? Answer:" for i, w in enumerate(
    ["rivers", "mountains", "glass", "robots", "bees", "clocks", "salt", "wind"])]
MAX_TOKENS = 24


def generate_all(stub, prompts, max_tokens=MAX_TOKENS):
    return generate_concurrently(stub, prompts, max_tokens)


def per_group(c, name):
    """{group: value} of a router metric with a `group` label."""
    samples, _ = parse_metrics(c.scrape(c.router_metrics_port))
    out = {}
    for (n, labels), v in samples.items():
        if n == name:
            out[dict(labels)["group"]] = out.get(dict(labels)["group"], 0) + v
    return out


class GroupsTest(unittest.TestCase):

    def test_two_groups_spread_and_match_one_group(self):
        with Cluster(world_size=1) as one:
            reference = generate_all(gpb.GenerationStub(one.channel()), PROMPTS)
        for code, ids, _ in reference:
            self.assertEqual(code, grpc.StatusCode.OK)
            self.assertEqual(len(ids), MAX_TOKENS)
        with Cluster(world_size=1, groups=2) as c:
            stub = gpb.GenerationStub(c.channel())
            got = generate_all(stub, PROMPTS)
            for i, (code, ids, usage) in enumerate(got):
                self.assertEqual(code, grpc.StatusCode.OK, f"{i}: {usage}\n{c.logs()}")
                self.assertEqual(ids, reference[i][1], f"prompt {i} differs from one group")
                self.assertEqual(usage.completion_tokens, MAX_TOKENS)
            steps = per_group(c, "tpserve_group_steps_total")
            placed = per_group(c, "tpserve_requests_placed_total")
            self.assertGreater(steps.get("0", 0), 0, steps)
            self.assertGreater(steps.get("1", 0), 0, steps)
            self.assertEqual(placed.get("0", 0) + placed.get("1", 0), len(PROMPTS), placed)
            self.assertGreaterEqual(min(placed.get("0", 0), placed.get("1", 0)), 2, placed)
            info = stub.ModelInfo(pb.ModelInfoRequest(), timeout=10)
            self.assertEqual(info.num_groups, 2)
            self.assertEqual(info.max_groups, 2)

    def test_prefix_affinity(self):
        system = ("You are a meticulous assistant for a shipping company. " +
                  " ".join(f"Rule {i}: always check the manifest line {i} against the "
                           "invoice before answering." for i in range(18)))
        with Cluster(world_size=1, groups=2) as c:
            stub = gpb.GenerationStub(c.channel())
            tok = stub.Tokenize(pb.TokenizeRequest(text=system), timeout=10)
            self.assertGreaterEqual(len(tok.token_ids), 300)
            self.assertLess(len(tok.token_ids), 400)
            first_group = None
            for i in range(10):
                before = per_group(c, "tpserve_requests_placed_total")
                chat = pb.ChatPrompt(messages=[pb.ChatMessage(role="system", content=system),
                                               pb.ChatMessage(role="user",
                                                              content=f"Question {i}: where is box {i}?")])
                usage = None
                for r in stub.Generate(pb.GenerateRequest(chat=chat, max_tokens=4), timeout=120):
                    if r.finish_reason:
                        usage = r.usage
                after = per_group(c, "tpserve_requests_placed_total")
                moved = [g for g in after if after[g] != before.get(g, 0)]
                self.assertEqual(len(moved), 1, (before, after))
                if first_group is None:
                    first_group = moved[0]
                    continue
                self.assertEqual(moved[0], first_group, f"request {i} left the cached group")
                self.assertGreaterEqual(usage.cached_tokens, 288, f"request {i}: {usage}")

    def test_group_started_later_joins(self):
        with Cluster(world_size=1, router_args=["--max_groups=2"]) as c:
            admin = agpb.AdminStub(c.channel())
            groups = admin.ListGroups(apb.ListGroupsRequest(), timeout=10).groups
            self.assertEqual([g.state for g in groups], ["serving", "starting"])
            c.start_group(1)
            deadline = time.time() + 60
            while time.time() < deadline:
                groups = admin.ListGroups(apb.ListGroupsRequest(), timeout=10).groups
                if groups[1].state == "serving":
                    break
                time.sleep(0.2)
            self.assertEqual(groups[1].state, "serving", c.logs())
            got = generate_all(gpb.GenerationStub(c.channel()), PROMPTS[:4])
            for code, ids, usage in got:
                self.assertEqual(code, grpc.StatusCode.OK, usage)
            placed = per_group(c, "tpserve_requests_placed_total")
            self.assertGreaterEqual(placed.get("1", 0), 1, placed)
            groups = admin.ListGroups(apb.ListGroupsRequest(), timeout=10).groups
            self.assertGreaterEqual(groups[1].requests_placed, 1)


if __name__ == "__main__":
    unittest.main()
