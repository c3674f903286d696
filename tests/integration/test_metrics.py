"""The router's and each worker's /metrics parse as Prometheus text format,
contain every metric DESIGN.md names (with model_name, and rank on workers),
and the values move when requests run. Also drives preemption (tiny KV cache)
and the prefix cache so their counters move, and checks that preempted
requests still produce their greedy output."""
import concurrent.futures
import glob
import os
import re
import sys
import threading
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families

from cluster import ROOT, Cluster, metric_sum, parse_metrics

ROUTER_HISTOGRAMS = ["tpserve_time_to_first_token_seconds", "tpserve_inter_token_latency_seconds",
                     "tpserve_e2e_request_latency_seconds", "tpserve_request_queue_time_seconds",
                     "tpserve_iteration_tokens"]
ROUTER_COUNTERS = ["tpserve_prompt_tokens_total", "tpserve_generation_tokens_total",
                   "tpserve_request_success_total", "tpserve_num_preemptions_total",
                   "tpserve_prefix_cache_queries_total", "tpserve_prefix_cache_hits_total"]
ROUTER_GAUGES = ["tpserve_num_requests_running", "tpserve_num_requests_waiting",
                 "tpserve_kv_cache_usage_ratio"]
WORKER_HISTOGRAMS = ["tpserve_worker_step_duration_seconds",
                     "tpserve_worker_allreduce_duration_seconds"]
WORKER_OTHERS = ["tpserve_worker_tokens_processed_total", "tpserve_worker_device_memory_bytes",
                 "tpserve_worker_weights_loaded", "tpserve_worker_steps_total"]


def names(samples):
    return {n for (n, _) in samples}


def run(client, prompt, **kwargs):
    """The token ids of one generation through tpserve_client."""
    return client.complete(prompt, timeout=600, **kwargs).token_ids


class MetricsTest(unittest.TestCase):
    def check_reference_parser(self, text, router):
        """prometheus-client's own parser (an implementation nobody here
        wrote) accepts the page and sees every metric with its type."""
        families = {f.name: f.type for f in text_string_to_metric_families(text)}
        hist = ROUTER_HISTOGRAMS if router else WORKER_HISTOGRAMS
        for h in hist:
            self.assertEqual(families.get(h), "histogram", h)
        expected = {"counter": ROUTER_COUNTERS if router else
                    [n for n in WORKER_OTHERS if n.endswith("_total")],
                    "gauge": ROUTER_GAUGES if router else
                    [n for n in WORKER_OTHERS if not n.endswith("_total")]}
        for kind, metric_names in expected.items():
            for n in metric_names:
                # The parser names counters without their _total suffix.
                key = n[:-len("_total")] if kind == "counter" else n
                self.assertEqual(families.get(key), kind, n)

    def check_exported(self, samples, types, router):
        present = names(samples)
        hist = ROUTER_HISTOGRAMS if router else WORKER_HISTOGRAMS
        others = ROUTER_COUNTERS + ROUTER_GAUGES if router else WORKER_OTHERS
        for h in hist:
            self.assertEqual(types.get(h), "histogram", h)
            for suffix in ("_bucket", "_sum", "_count"):
                self.assertIn(h + suffix, present)
        for n in others:
            self.assertIn(n, present)
        for (n, labels) in samples:
            if n.startswith("tpserve_"):
                keys = {k for k, _ in labels}
                self.assertIn("model_name", keys, n)
                if not router:
                    self.assertIn("rank", keys, n)

    def test_metrics_exported_and_moving(self):
        with Cluster(world_size=2) as c, c.client() as client:
            page = c.scrape(c.router_metrics_port)
            self.check_reference_parser(page, router=True)
            r0, t0 = parse_metrics(page)
            self.check_exported(r0, t0, router=True)
            w0 = []
            for rank, port in enumerate(c.worker_metrics_ports):
                page = c.scrape(port)
                self.check_reference_parser(page, router=False)
                s, t = parse_metrics(page)
                self.check_exported(s, t, router=False)
                self.assertEqual(metric_sum(s, "tpserve_worker_weights_loaded", rank=rank), 1)
                self.assertGreater(metric_sum(s, "tpserve_worker_device_memory_bytes",
                                              kind="weights"), 0)
                self.assertGreater(metric_sum(s, "tpserve_worker_device_memory_bytes",
                                              kind="kv_cache"), 0)
                w0.append(s)

            # Dashboards and alerts use only names this cluster really exports.
            exported = names(r0).union(*(names(w) for w in w0))
            deploy_files = glob.glob(os.path.join(ROOT, "deploy", "grafana", "*.json")) + \
                glob.glob(os.path.join(ROOT, "deploy", "prometheus", "*.yml"))
            self.assertGreaterEqual(len(deploy_files), 2)
            used = set()
            for path in deploy_files:
                with open(path) as f:
                    used |= set(re.findall(r"\btpserve_[a-z0-9_]+", f.read()))
            self.assertGreater(len(used), 15)
            self.assertEqual(sorted(used - exported), [], "deploy/ uses metrics nobody exports")

            # A long request: the running gauge and KV usage move while it runs.
            seen = {"running": 0.0, "usage": 0.0}
            t = threading.Thread(target=lambda: run(client, "Write a poem about the moon.",
                                                    max_tokens=40, ignore_eos=True))
            t.start()
            while t.is_alive():
                s, _ = parse_metrics(c.scrape(c.router_metrics_port))
                seen["running"] = max(seen["running"], metric_sum(s, "tpserve_num_requests_running"))
                seen["usage"] = max(seen["usage"], metric_sum(s, "tpserve_kv_cache_usage_ratio"))
                time.sleep(0.05)
            self.assertGreaterEqual(seen["running"], 1)
            self.assertGreater(seen["usage"], 0)

            # Same long prompt twice: the second hits the prefix cache.
            prompt = " ".join(f"item{i}" for i in range(60))
            for _ in range(2):
                run(client, prompt, max_tokens=2)

            r1, _ = parse_metrics(c.scrape(c.router_metrics_port))
            for h in ["tpserve_time_to_first_token_seconds", "tpserve_e2e_request_latency_seconds",
                      "tpserve_request_queue_time_seconds", "tpserve_iteration_tokens",
                      "tpserve_inter_token_latency_seconds"]:
                self.assertGreater(metric_sum(r1, h + "_count"), metric_sum(r0, h + "_count"), h)
            for n in ["tpserve_prompt_tokens_total", "tpserve_generation_tokens_total",
                      "tpserve_prefix_cache_queries_total", "tpserve_prefix_cache_hits_total"]:
                self.assertGreater(metric_sum(r1, n), metric_sum(r0, n), n)
            self.assertEqual(metric_sum(r1, "tpserve_generation_tokens_total"), 44)
            self.assertGreaterEqual(metric_sum(r1, "tpserve_request_success_total",
                                               finished_reason="length"), 3)
            for rank, port in enumerate(c.worker_metrics_ports):
                s, _ = parse_metrics(c.scrape(port))
                for n in ["tpserve_worker_steps_total", "tpserve_worker_tokens_processed_total",
                          "tpserve_worker_allreduce_duration_seconds_count"]:
                    self.assertGreater(metric_sum(s, n), metric_sum(w0[rank], n), (rank, n))
                for phase in ("total", "compute", "sample"):
                    self.assertGreater(
                        metric_sum(s, "tpserve_worker_step_duration_seconds_count", phase=phase),
                        metric_sum(w0[rank], "tpserve_worker_step_duration_seconds_count",
                                   phase=phase))

    def test_preemption_counts_and_keeps_outputs(self):
        # 8 KV blocks of 16 tokens (bf16, 240 KiB a block on rank 0 of 2): four
        # 70-token sequences cannot all fit.
        with Cluster(world_size=2, kv_cache_mb=2, router_args=["--max_model_len=120"]) as c, \
                c.client() as client:
            prompts = [f"Story {i}: once upon a time in a land far away" for i in range(4)]
            alone = [run(client, p, max_tokens=50, ignore_eos=True) for p in prompts]
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
                together = list(ex.map(lambda p: run(client, p, max_tokens=50, ignore_eos=True),
                                       prompts))
            self.assertEqual([len(a) for a in alone], [50] * 4)
            self.assertEqual(alone, together)
            s, _ = parse_metrics(c.scrape(c.router_metrics_port))
            self.assertGreater(metric_sum(s, "tpserve_num_preemptions_total"), 0)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
