"""Runs the rendered overlays as Kubernetes would and serves a chat request
through the router's Service name. For each of tests/k8s/overlays/{cpu,
cpu-tls,gpu-single-node,gpu-multi-node} (the shipped overlay with a CI-sized KV cache
and, for GPU, a small generated model): every container's command, args and
env are started as real processes, one network namespace per pod
(podnet.py), downward-API and LeaderWorkerSet variables filled in, the model
claim bound to the test model, GPU pods on the CUDA emulator build of the
worker (tpserve-worker_emu, one emulated device per nvidia.com/gpu).

Then: the router turns ready; every probe in the manifests is run once as the
kubelet would (a probe of a health service this build does not serve yet is
reported, not failed); a chat request through
tpserve-router.tpserve.svc.cluster.local answers; every target the
ServiceMonitor / PodMonitor select is scraped from the monitoring namespace,
each rank exactly once, and exports every metric the PrometheusRule and the
Grafana dashboard name; every connection the cluster made is admitted by the
NetworkPolicies; and deleting the pods (preStop, SIGTERM) ends every
container within its grace period.

A flag the binaries do not know fails the test.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import junit
from manifests import config, find, find_all, project_root, render, selects
from netpol import Peer, ingress_allowed
from podnet import AGENTS, NODE_IP, MiniCluster, skip_reason

WORKSPACE = os.environ.get("TEST_WORKSPACE", "tpserve")
CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVICE = "tpserve-router.tpserve.svc.cluster.local"
READY_TIMEOUT = 240
# The GPU overlays' test model: 16 heads split evenly over 16 ranks.
TEST_MODEL = ["--dtype=f32", "--hidden=512", "--layers=2", "--heads=16", "--kv_heads=16",
              "--ffn=1024", "--vocab=4096", "--seed=3"]


def runfile(path):
    base = os.environ.get("TEST_SRCDIR")
    for root in ([os.path.join(base, WORKSPACE)] if base else []) + [
            os.path.join(project_root(), "bazel-bin"), os.path.join(CHECKOUT, "bazel-bin"),
            project_root(), CHECKOUT]:
        p = os.path.join(root, path)
        if os.path.exists(p):
            return os.path.realpath(p)
    raise FileNotFoundError(f"{path} not built")


def known_flags(binary):
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True)
    return set(re.findall(r"^\s+--([a-z0-9_]+) \(", out.stdout + out.stderr, re.M))


class RunManifestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        cls.tmp = tempfile.mkdtemp(prefix="tpserve_k8s_bins_")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)  # also when set-up fails
        os.chmod(cls.tmp, 0o755)
        router = runfile("router/tpserve-router")
        cls.flags = {"tpserve-router": known_flags(router),
                     "tpserve-worker": known_flags(runfile("worker/tpserve-worker"))}
        # The images' /usr/local/bin: hard links (no copy) readable by user 10001.
        cls.images = {}
        for image, worker in (("tpserve:latest", "worker/tpserve-worker"),
                              ("tpserve:cuda", "worker/tpserve-worker_emu")):
            d = os.path.join(cls.tmp, image.replace(":", "_"))
            os.makedirs(d)
            for name, src in (("tpserve-router", router), ("tpserve-worker", runfile(worker))):
                dst = os.path.join(d, name)
                try:
                    os.link(src, dst)  # Bazel's outputs are r-x for all: leave their mode
                except OSError:
                    shutil.copy(src, dst)
                    os.chmod(dst, 0o755)
            os.chmod(d, 0o755)
            cls.images[image] = d
        cls.cpu_models = os.path.join(project_root(), "models")
        cls.gpu_models = os.path.join(cls.tmp, "models")
        os.makedirs(cls.gpu_models)
        os.chmod(cls.gpu_models, 0o755)
        subprocess.run([runfile("tests/testmodel/make_test_model"),
                        f"--out={cls.gpu_models}/tiny-tp16.gguf"] + TEST_MODEL,
                       check=True, capture_output=True)
        os.chmod(f"{cls.gpu_models}/tiny-tp16.gguf", 0o644)

    def argv_filter(self, notes):
        def check(container, argv):
            binary = "tpserve-router" if argv[0].endswith("tpserve-router") else "tpserve-worker"
            known = self.flags[binary]
            out = []
            for a in argv:
                m = re.match(r"--([a-z0-9_]+)=", a)
                if m and m.group(1) not in known:
                    self.fail(f"container {container['name']}: {binary} has no flag --{m.group(1)}")
                out.append(a)
            return out
        return check

    def run_overlay(self, overlay, models, secrets=None, tls_ca_file=None, api_key=None):
        objects = render(f"tests/k8s/overlays/{overlay}")
        notes = []
        self.tls_ca_file = tls_ca_file  # the public port's CA when it serves TLS
        self.api_key = api_key  # the key the router's keys Secret admits, if any
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                   TPSERVE_INTEGRATION_DIR=os.path.dirname(runfile("tests/integration/cluster.py")))
        python = os.path.join(project_root(), ".venv", "bin", "python3")
        t0 = time.time()
        with MiniCluster(objects, self.images, {"tpserve-models": models}, python, env,
                         secrets=secrets) as mc:
            mc.start(self.argv_filter(notes))
            router = mc.pod("tpserve-router")
            router_c = router.spec["containers"][0]
            self.wait_ready(mc, router, router_c["readinessProbe"])
            notes.append(f"router ready {time.time() - t0:.1f} s after start, "
                         f"{len(mc.pods)} pods")
            for check in (self.check_probes, self.check_chat, self.check_metrics,
                          self.check_network_policies):
                t1 = time.time()
                check(mc, objects, notes)
                notes[-1] += f" [{time.time() - t1:.1f} s]"
            for name, secs, ok, hook in mc.terminate():
                notes.append(f"terminated {name}: {secs} s, preStop {hook}")
                self.assertTrue(ok, f"{name} did not exit within its grace period:\n{mc.logs()}")
                self.assertIn(hook, ("none", "ok"), f"{name}: preStop hook {hook}")
        print(f"--- {overlay}:\n" + "\n".join("  " + n for n in mc.events + notes))

    def wait_ready(self, mc, pod, probe):
        deadline = time.time() + READY_TIMEOUT
        last = None
        while time.time() < deadline:
            mc.check_alive()
            last = mc.probe(pod, probe)
            if last == "ok":
                return
            time.sleep(0.5)
        self.fail(f"router not ready after {READY_TIMEOUT} s (last probe: {last}):\n{mc.logs()}")

    def check_probes(self, mc, objects, notes):
        for c in mc.containers:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind not in c.spec:
                    continue
                result = mc.probe(c.pod, c.spec[kind])
                if result.startswith("unsupported"):
                    notes.append(f"{c.pod.name} {kind} {json.dumps(c.spec[kind].get('grpc'))}: "
                                 f"{result} -- not checked")
                    continue
                self.assertEqual(result, "ok", f"{c.pod.name} {kind}: {result}")

    def check_chat(self, mc, objects, notes):
        client = mc.agent("client")
        # Emulated GPU ranks take seconds per step: fewer tokens there. On a
        # loaded 2-core machine a rank can also miss the router's 2 s
        # heartbeat; the router then re-forms the group (once, in CI, 63 s)
        # and the request resumes (--recovery_timeout=5m), so the client
        # waits that long rather than the agent's 120 s.
        emulated = "tpserve:cuda" in {c.spec["image"] for c in mc.containers}
        max_tokens = 4 if emulated else 8
        request = {"op": "chat", "target": f"{SERVICE}:50051", "max_tokens": max_tokens,
                   "timeout": 300 if emulated else 120,
                   "messages": [{"role": "user", "content": "What is the capital of France?"}]}
        r = client.call(dict(request, tls_ca_file=self.tls_ca_file, api_key=self.api_key))
        self.assertNotIn("error", r, r)
        if self.api_key:
            keyless = client.call(dict(request, tls_ca_file=self.tls_ca_file))
            self.assertEqual(keyless.get("error"), "UNAUTHENTICATED", keyless)
            notes.append("chat without an API key refused")
        if self.tls_ca_file:
            plain = client.call(request)
            self.assertEqual(plain.get("error"), "UNAVAILABLE", plain)
            notes.append("plaintext chat refused by the TLS port")
        if r["finish_reason"] == "FINISH_REASON_LENGTH":
            self.assertEqual(len(r["token_ids"]), max_tokens, r)
        else:
            self.assertGreater(len(r["token_ids"]), 0, r)
        self.assertIn(r["finish_reason"], ("FINISH_REASON_STOP", "FINISH_REASON_LENGTH"))
        notes.append(f"chat via {SERVICE}:50051: {len(r['token_ids'])} tokens, {r['finish_reason']}, "
                     f"{r['text']!r}")
        router_args = find(objects, "Deployment", "tpserve-router")["spec"]["template"]["spec"][
            "containers"][0]["args"]
        if not any(a.startswith("--http_port=") for a in router_args):
            notes.append("no HTTP API port (TLS overlay)")
            return
        name = config(objects)["TPSERVE_MODEL_NAME"]
        h = client.call({"op": "http", "url": f"http://{SERVICE}:8000/v1/chat/completions",
                         "json": {"model": name, "max_tokens": 8,
                                  "messages": [{"role": "user", "content": "Hello"}]}})
        self.assertEqual(h.get("status"), 200, h)
        self.assertTrue(json.loads(h["body"])["choices"], h)
        notes.append(f"HTTP chat via {SERVICE}:8000: 200")

    def scrape_targets(self, mc, objects):
        """[(job, pod, port)] that the ServiceMonitor and PodMonitor select."""
        targets = []
        for sm in find_all(objects, "ServiceMonitor"):
            for svc in find_all(objects, "Service"):
                if not selects(sm["spec"]["selector"], svc["metadata"].get("labels", {})):
                    continue
                for ep in sm["spec"]["endpoints"]:
                    port = [p for p in svc["spec"]["ports"] if p["name"] == ep["port"]][0]
                    for pod in mc.pods:
                        if selects({"matchLabels": svc["spec"]["selector"]}, pod.labels):
                            tp = port["targetPort"]
                            num = pod.container_ports()[tp] if isinstance(tp, str) else tp
                            targets.append((svc["metadata"]["name"], pod, num, ep.get("path", "/metrics")))
        for pm in find_all(objects, "PodMonitor"):
            for ep in pm["spec"]["podMetricsEndpoints"]:
                job = f"{pm['metadata']['namespace']}/{pm['metadata']['name']}"
                for rl in ep.get("relabelings", []):
                    if rl.get("targetLabel") == "job" and rl.get("action", "replace") in ("replace", "Replace"):
                        job = rl["replacement"]
                for pod in mc.pods:
                    if selects(pm["spec"]["selector"], pod.labels) and ep["port"] in pod.container_ports():
                        targets.append((job, pod, pod.container_ports()[ep["port"]], ep.get("path", "/metrics")))
        return targets

    def check_metrics(self, mc, objects, notes):
        sys.path.insert(0, os.path.dirname(runfile("tests/integration/cluster.py")))
        from cluster import parse_metrics
        mon = mc.agent("monitoring")
        exported, ranks = set(), []
        targets = self.scrape_targets(mc, objects)
        for job, pod, port, path in targets:
            r = mon.call({"op": "http", "url": f"http://{pod.ip}:{port}{path}"})
            self.assertEqual(r.get("status"), 200, f"scrape {job} {pod.name}:{port}: {r}")
            samples, _ = parse_metrics(r["body"])
            exported |= {n for n, _ in samples}
            ranks += [dict(l)["rank"] for n, l in samples if n == "tpserve_worker_weights_loaded"]
        world = int(config(objects)["TPSERVE_WORLD_SIZE"])
        self.assertEqual(sorted(ranks, key=int), [str(r) for r in range(world)],
                         "every rank scraped exactly once")
        rule = find(objects, "PrometheusRule")
        exprs = " ".join(str(r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"])
        dashboard = [o for o in objects if o["kind"] == "ConfigMap" and
                     o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"][0]
        panels = " ".join(dashboard["data"].values())
        used = set(re.findall(r"\btpserve_[a-z0-9_]+", exprs + " " + panels))
        self.assertGreater(len(used), 15)
        self.assertEqual(sorted(used - exported), [], "alerts/dashboard name metrics nobody exports")
        jobs = {job for job, _, _, _ in targets}
        for regex in re.findall(r'job=~"([^"]+)"', exprs):
            for job in jobs:
                self.assertRegex(job, f"^(?:{regex})$", "alerts' up{job=~...} must match the monitors' jobs")
        notes.append(f"scraped {len(targets)} targets (jobs {sorted(jobs)}), ranks 0..{world - 1} "
                     f"once each; {len(used)} metric names of alerts and dashboard exported")

    def check_network_policies(self, mc, objects, notes):
        policies = find_all(objects, "NetworkPolicy")
        namespaces = {o["metadata"]["name"]: o["metadata"].get("labels", {})
                      for o in objects if o["kind"] == "Namespace"}
        namespaces["monitoring"] = {"kubernetes.io/metadata.name": "monitoring"}
        for labels in namespaces.values():
            labels.setdefault("kubernetes.io/metadata.name", "")
        for name, ls in namespaces.items():
            ls["kubernetes.io/metadata.name"] = name
        by_ip = {p.ip: Peer(p.labels, p.namespace, p.ip, p.container_ports()) for p in mc.pods}
        for name, (ip, ns, labels) in AGENTS.items():
            by_ip[ip] = Peer(labels, ns, ip)
        ip_name = {p.ip: p.labels.get("app.kubernetes.io/component", p.name) for p in mc.pods}
        ip_name.update({ip: name for name, (ip, _, _) in AGENTS.items()})
        listening, conns = {}, set()
        for pod in mc.pods:
            listening[pod.ip], mine = mc.connections(pod)
            conns |= {tuple(sorted([(a, ap), (b, bp)])) for a, ap, b, bp in mine}
        flows = set()
        for (a, ap), (b, bp) in sorted(conns):
            if a == b or NODE_IP in (a, b) or "127.0.0.1" in (a, b):
                continue  # within a pod, and kubelet probes: always admitted
            if ap in listening.get(a, ()):
                ends = [((b, None), (a, ap))]
            elif bp in listening.get(b, ()):
                ends = [((a, None), (b, bp))]
            else:  # both listeners closed (Gloo pairs): either side may have dialled
                ends = [((a, None), (b, bp)), ((b, None), (a, ap))]
            results = []
            for (src, _), (dst, port) in ends:
                if dst not in listening:
                    continue  # not a pod of the cluster (client, monitoring)
                results.append(ingress_allowed(policies, namespaces, by_ip[dst], port, by_ip[src]))
            self.assertTrue(any(ok for ok, _ in results),
                            f"{a}:{ap} <-> {b}:{bp} would be dropped: {results}")
            for (src, _), (dst, port) in ends[:1]:
                named = port in by_ip[dst].ports.values()
                flows.add(f"{ip_name[src]}->{ip_name[dst]}:{port if named else 'ephemeral'}")
        self.assertTrue(any(f.startswith("router->worker:5006") for f in flows), flows)
        self.assertTrue(any(f.startswith("worker->router:29500") for f in flows), flows)
        notes.append(f"{len(conns)} connections of the running cluster admitted by the network "
                     f"policies: {', '.join(sorted(flows))}")

    def test_cpu(self):
        self.run_overlay("cpu", self.cpu_models)

    def test_cpu_tls(self):
        # components/tls: the Secrets' files made here with openssl, the
        # public certificate naming the router's Service.
        d = os.path.join(self.tmp, "tls")
        os.makedirs(d)
        make = runfile("tests/tls/make_certs.sh")
        env = dict(os.environ, SAN=f"DNS:{SERVICE},DNS:tpserve-router")
        for args in (["ca", d, "pub_ca"], ["leaf", d, "server", "pub_ca"],
                     ["ca", d, "cluster_ca"], ["leaf", d, "member", "cluster_ca"]):
            subprocess.run([make] + args, check=True, env=env)
        secrets = {"tpserve-tls": {"tls.crt": "server.crt", "tls.key": "server.key"},
                   "tpserve-cluster-tls": {"ca.crt": "cluster_ca.crt", "tls.crt": "member.crt",
                                           "tls.key": "member.key"}}
        for name, files in secrets.items():
            os.makedirs(os.path.join(d, name))
            for key, src in files.items():
                shutil.copy(os.path.join(d, src), os.path.join(d, name, key))
        # components/api-keys: the Secret holds the key's SHA-256 only.
        api_key = "tps-k8s-run-manifests"
        os.makedirs(os.path.join(d, "tpserve-api-keys"))
        with open(os.path.join(d, "tpserve-api-keys", "keys"), "w") as f:
            f.write(f"k8s-test {hashlib.sha256(api_key.encode()).hexdigest()} streams=4\n")
        secrets["tpserve-api-keys"] = {}
        self.run_overlay("cpu-tls", self.cpu_models,
                         secrets={name: os.path.join(d, name) for name in secrets},
                         tls_ca_file=os.path.join(d, "pub_ca.crt"), api_key=api_key)

    def test_gpu_single_node(self):
        self.run_overlay("gpu-single-node", self.gpu_models)

    def test_gpu_multi_node(self):
        self.run_overlay("gpu-multi-node", self.gpu_models)


def _interrupt(signum, frame):
    # Bazel's timeout sends SIGTERM: unwind through the clusters' cleanup
    # (unittest re-raises KeyboardInterrupt, where it would swallow SystemExit).
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    junit.main()
