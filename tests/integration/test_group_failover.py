"""Groups failing and draining (docs/operations.md "Groups and placement"),
with the real router and TP=1 workers:
  - every rank of one group killed (SIGKILL) during 8 greedy streams: all 8
    finish OK on the other group with exactly the unfaulted tokens (a
    duplicated or missing token would show as a mismatch);
  - `tpserve drain 1` during streams: group 1 takes no new requests, its
    running ones finish, `tpserve groups` reports it idle; `tpserve undrain 1`
    puts it back.
"""
import subprocess
import threading
import time
import unittest

import grpc

from cluster import Cluster, _runfile, generate_concurrently, parse_metrics, stubs

pb, gpb = stubs("generation")
apb, agpb = stubs("admin")

PROMPTS = [f"Story {i}: once upon a time in a land of {w}," for i, w in enumerate(
    ["rivers", "mountains", "glass", "robots", "bees", "clocks", "salt", "wind"])]
MAX_TOKENS = 64
ROUTER = ["--heartbeat_interval=500ms", "--heartbeat_timeout=1500ms"]


def run_streams(stub, prompts, on_token=None, max_tokens=MAX_TOKENS):
    """generate_concurrently, with the completion token count as the detail
    of a stream that ended OK."""
    return [(code, ids, detail.completion_tokens if code == grpc.StatusCode.OK else detail)
            for code, ids, detail in generate_concurrently(stub, prompts, max_tokens, on_token)]


def placed(c):
    samples, _ = parse_metrics(c.scrape(c.router_metrics_port))
    out = {}
    for (n, labels), v in samples.items():
        if n == "tpserve_requests_placed_total":
            out[dict(labels)["group"]] = v
    return out


def cli(c, *args):
    out = subprocess.run([_runfile("tools/cli/tpserve"), f"--router={c.address()}", *args],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise AssertionError(f"tpserve {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def group_line(stdout, group):
    """The fields of `group`'s row in `tpserve groups` output."""
    for line in stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == str(group):
            return fields
    raise AssertionError(f"group {group} not listed:\n{stdout}")


class GroupFailoverTest(unittest.TestCase):

    def test_killing_a_group_moves_its_streams(self):
        with Cluster(world_size=1, groups=2, router_args=ROUTER) as c:
            stub = gpb.GenerationStub(c.channel())
            reference = run_streams(stub, PROMPTS)
            for code, ids, detail in reference:
                self.assertEqual(code, grpc.StatusCode.OK, detail)
            count = [0]

            def tick():
                count[0] += 1

            def chaos():
                while count[0] < 32:
                    time.sleep(0.01)
                c.proc("g1worker0").kill()

            t = threading.Thread(target=chaos)
            t.start()
            before = placed(c)
            got = run_streams(stub, PROMPTS, on_token=tick)
            t.join()
            after = placed(c)
            for i, (code, ids, detail) in enumerate(got):
                self.assertEqual(code, grpc.StatusCode.OK, f"stream {i}: {detail}\n{c.logs()}")
                self.assertEqual(ids, reference[i][1], f"stream {i} differs from unfaulted")
                self.assertEqual(detail, MAX_TOKENS)
            # Group 1 had some of the 8; they moved to group 0 (placed again).
            self.assertGreater(after["1"] - before["1"], 0, (before, after))
            self.assertGreater(after["0"] - before["0"], len(PROMPTS) - (after["1"] - before["1"]),
                               (before, after))
            self.assertRegex(c.log_text("router"), r"group 1: .*RECOVERING")

    def test_drain_and_undrain_via_cli(self):
        with Cluster(world_size=1, groups=2) as c:
            stub = gpb.GenerationStub(c.channel())
            count = [0]
            results = {}

            def first_wave():
                results["first"] = run_streams(stub, PROMPTS[:4], on_token=tick)

            def tick():
                count[0] += 1

            t = threading.Thread(target=first_wave)
            t.start()
            while count[0] < 8:
                time.sleep(0.01)
            line = group_line(cli(c, "drain", "1"), 1)
            self.assertEqual(line[3], "yes", line)  # DRAINED
            before = placed(c)
            second = run_streams(stub, PROMPTS[4:], max_tokens=16)
            after = placed(c)
            t.join()
            for code, ids, detail in results["first"] + second:
                self.assertEqual(code, grpc.StatusCode.OK, detail)
            self.assertEqual(after["1"], before["1"], "a drained group got new requests")
            self.assertEqual(after["0"] - before["0"], 4)
            # Its running requests finished: idle, still drained.
            deadline = time.time() + 10
            while time.time() < deadline:
                line = group_line(cli(c, "groups"), 1)
                if line[4] == "yes":
                    break
                time.sleep(0.2)
            self.assertEqual(line[1:5], ["serving", line[2], "yes", "yes"], line)
            line = group_line(cli(c, "undrain", "1"), 1)
            self.assertEqual(line[3], "no", line)
            before = placed(c)
            third = run_streams(stub, PROMPTS, max_tokens=8)
            for code, ids, detail in third:
                self.assertEqual(code, grpc.StatusCode.OK, detail)
            after = placed(c)
            self.assertGreater(after["1"], before["1"], "undrained group got no requests")


if __name__ == "__main__":
    unittest.main()
