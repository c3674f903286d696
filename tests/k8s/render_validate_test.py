"""Every deploy/k8s overlay renders with `kubectl kustomize`, every object
validates offline (built-in kinds against Kubernetes' own schemas from the
kubernetes-validate package, custom resources against crd_schemas.py), the
values that must agree across objects agree, the generated monitoring objects
are current, and promtool accepts the rules. Running the manifests is
run_manifests_test.py."""
import copy
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import jsonschema
import kubernetes_validate
import yaml

import junit
from crd_schemas import SCHEMAS
from manifests import (OVERLAYS, config, find, find_all, flag, parse_duration, pod_templates,
                       project_root, render, selects, source_root, workloads)
from netpol import Peer, ingress_allowed

# The oldest Kubernetes the manifests need (the pod-index label on
# StatefulSet pods is 1.28) and the newest the schema package knows.
K8S_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
RANK_PORTS = 8  # ranks per pod the port names, network policy and PodMonitor cover


def containers(template):
    return template["spec"]["containers"]


def env_value(container, name):
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value", e.get("valueFrom"))
    return None


def quantity_mib(q):
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", str(q))
    if not m:
        raise ValueError(f"memory quantity {q!r}: use Ki/Mi/Gi/Ti")
    return int(m.group(1)) * units[m.group(2)]


def ranks_of(objects):
    """(pods per group, ranks per pod) of the worker workload."""
    worker = [w for w in workloads(objects) if w["metadata"]["name"] == "tpserve-worker"]
    assert len(worker) == 1, "one tpserve-worker workload"
    w = worker[0]
    c = containers(pod_templates(w)[-1][1])[0]
    per_pod = int(env_value(c, "TPSERVE_GPUS_PER_POD") or 1)
    if w["kind"] == "LeaderWorkerSet":
        return w["spec"]["leaderWorkerTemplate"]["size"], per_pod
    return w["spec"]["replicas"], per_pod


class RenderValidateTest(unittest.TestCase):
    rendered = {}

    @classmethod
    def objects(cls, overlay):
        if overlay not in cls.rendered:
            cls.rendered[overlay] = render(f"deploy/k8s/overlays/{overlay}")
        return cls.rendered[overlay]

    def validate(self, obj, where):
        key = (obj["apiVersion"], obj["kind"])
        if key in SCHEMAS:
            jsonschema.validate(obj, SCHEMAS[key])
            for role, tpl in pod_templates(obj):
                self.validate({"apiVersion": "v1", "kind": "PodTemplate",
                               "metadata": {"name": f"{obj['metadata']['name']}-{role}"},
                               "template": tpl}, where)
            return
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                self.fail(f"{where}: {key} is neither a Kubernetes {version} kind nor in crd_schemas.py")
            except kubernetes_validate.ValidationError as e:
                self.fail(f"{where}: {obj['kind']} {obj['metadata'].get('name')} invalid for "
                          f"Kubernetes {version}: {e.message} at {list(e.path)}")

    def test_generated_monitoring_objects_are_current(self):
        script = os.path.join(source_root(), "deploy", "k8s", "generate.py")
        out = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_every_overlay_renders_and_validates(self):
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                objects = self.objects(overlay)
                kinds = {o["kind"] for o in objects}
                for need in ("Namespace", "Deployment", "Service", "ConfigMap", "NetworkPolicy",
                             "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "PrometheusRule"):
                    self.assertIn(need, kinds, overlay)
                for o in objects:
                    self.assertEqual(o["metadata"].get("namespace", "tpserve"), "tpserve",
                                     f"{o['kind']} {o['metadata']['name']}")
                    self.validate(o, overlay)

    def test_examples_validate(self):
        files = glob.glob(os.path.join(source_root(), "deploy", "k8s", "examples", "*.yaml"))
        self.assertTrue(files)
        for path in files:
            for o in yaml.safe_load_all(open(path)):
                if o:
                    self.validate(o, os.path.basename(path))

    def test_a_misspelt_field_is_caught(self):
        # The validators must reject what kubectl would: guards against a
        # schema that accepts everything.
        objects = self.objects("gpu-multi-node")
        bad_pod = copy.deepcopy(find(objects, "Deployment", "tpserve-router"))
        bad_pod["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
        bad_lws = copy.deepcopy(find(objects, "LeaderWorkerSet"))
        bad_lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "RecreateGroup"
        bad_pm = copy.deepcopy(find(objects, "PodMonitor"))
        bad_pm["spec"]["podMetricEndpoints"] = bad_pm["spec"].pop("podMetricsEndpoints")
        bad_tpl = copy.deepcopy(find(objects, "LeaderWorkerSet"))
        bad_tpl["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["args"] = 3
        for bad in (bad_pod, bad_lws, bad_pm, bad_tpl):
            with self.assertRaises((AssertionError, jsonschema.ValidationError), msg=bad["kind"]):
                self.validate(bad, "mutated")

    def test_world_size_matches_the_ranks(self):
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                objects = self.objects(overlay)
                pods, per_pod = ranks_of(objects)
                self.assertEqual(int(config(objects)["TPSERVE_WORLD_SIZE"]), pods * per_pod)
                router = find(objects, "Deployment", "tpserve-router")
                args = containers(router["spec"]["template"])[0]["args"]
                self.assertEqual(flag(args, "world_size"), "$(TPSERVE_WORLD_SIZE)")

    def test_gpu_pods_ports_and_limits_agree(self):
        for overlay in ("gpu-single-node", "gpu-multi-node"):
            with self.subTest(overlay=overlay):
                objects = self.objects(overlay)
                _, per_pod = ranks_of(objects)
                self.assertLessEqual(per_pod, RANK_PORTS)
                for w in workloads(objects):
                    if w["metadata"]["name"] != "tpserve-worker":
                        continue
                    for _, tpl in pod_templates(w):
                        c = containers(tpl)[0]
                        self.assertEqual(int(c["resources"]["limits"]["nvidia.com/gpu"]), per_pod)
                        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                        want = {f"grpc-{i}": 50061 + i for i in range(per_pod)}
                        want.update({f"metrics-{i}": 9401 + i for i in range(per_pod)})
                        self.assertEqual(ports, want)
                        self.assertIn("--backend=cuda", c["args"])
                        shm = [v for v in tpl["spec"]["volumes"] if v["name"] == "dshm"][0]
                        self.assertEqual(shm["emptyDir"]["medium"], "Memory")
                        self.assertIn("sizeLimit", shm["emptyDir"])
                        self.assertIn({"key": "nvidia.com/gpu", "operator": "Exists",
                                       "effect": "NoSchedule"}, tpl["spec"]["tolerations"])
                        env = {e["name"] for e in c["env"]}
                        self.assertIn("NCCL_SOCKET_IFNAME", env)

    def test_gpu_overlays_share_one_pod_template(self):
        # The two GPU overlays spell the worker pod out twice (a StatefulSet
        # and a LeaderWorkerSet cannot share a template in kustomize); they
        # may differ only in where the pod index comes from.
        single = find(self.objects("gpu-single-node"), "StatefulSet", "tpserve-worker")
        multi = find(self.objects("gpu-multi-node"), "LeaderWorkerSet", "tpserve-worker")
        a = copy.deepcopy(single["spec"]["template"])
        b = copy.deepcopy(multi["spec"]["leaderWorkerTemplate"]["workerTemplate"])
        for tpl, label in ((a, "apps.kubernetes.io/pod-index"),
                           (b, "leaderworkerset.sigs.k8s.io/worker-index")):
            c = tpl["spec"]["containers"][0]
            index = [e for e in c["env"] if e["name"] == "TPSERVE_POD_INDEX"][0]
            self.assertEqual(index["valueFrom"]["fieldRef"]["fieldPath"], f"metadata.labels['{label}']")
            index["valueFrom"] = None
            c["envFrom"] = None  # the ConfigMap's hash differs by overlay
        self.assertEqual(a, b)
        self.assertEqual(multi["spec"]["leaderWorkerTemplate"]["restartPolicy"], "None")

    def test_worker_memory_covers_the_kv_cache(self):
        objects = self.objects("cpu")
        kv = int(config(objects)["TPSERVE_KV_CACHE_MB"])
        c = containers(find(objects, "StatefulSet", "tpserve-worker")["spec"]["template"])[0]
        request = quantity_mib(c["resources"]["requests"]["memory"])
        limit = quantity_mib(c["resources"]["limits"]["memory"])
        self.assertGreaterEqual(request, kv + 256, "KV cache + weight shard + runtime")
        self.assertGreaterEqual(limit, request)

    def test_router_lifecycle_matches_drain_timeout(self):
        for overlay in OVERLAYS:
            router = find(self.objects(overlay), "Deployment", "tpserve-router")
            spec = router["spec"]["template"]["spec"]
            c = spec["containers"][0]
            drain = parse_duration(flag(c["args"], "drain_timeout"))
            pre = c["lifecycle"]["preStop"]["exec"]["command"]
            self.assertEqual(pre[0], "sleep")
            # Grace must cover the preStop sleep, the drain, and a few seconds to exit.
            self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], int(pre[1]) + drain + 5)
            self.assertEqual(c["readinessProbe"]["grpc"], {"port": 50051})
            self.assertEqual(c["livenessProbe"]["grpc"]["service"], "liveness")
            startup = c["startupProbe"]
            self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 120)
            self.assertEqual(router["spec"]["strategy"]["type"], "Recreate")

    def test_containers_run_unprivileged_read_only(self):
        for overlay in OVERLAYS:
            for w in workloads(self.objects(overlay)):
                for _, tpl in pod_templates(w):
                    pod_sc = tpl["spec"]["securityContext"]
                    self.assertTrue(pod_sc["runAsNonRoot"])
                    self.assertNotEqual(pod_sc["runAsUser"], 0)
                    for c in containers(tpl):
                        sc = c["securityContext"]
                        self.assertTrue(sc["readOnlyRootFilesystem"], c["name"])
                        self.assertFalse(sc["allowPrivilegeEscalation"], c["name"])
                        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        dockerfile = open(os.path.join(source_root(), "deploy", "docker", "Dockerfile")).read()
        self.assertIn("USER 10001:10001", dockerfile)
        for target in ("AS cuda", "AS cpu"):
            self.assertIn(target, dockerfile)

    def test_services_and_budgets_select_pods(self):
        for overlay in OVERLAYS:
            objects = self.objects(overlay)
            labels = [tpl.get("metadata", {}).get("labels", {})
                      for w in workloads(objects) for _, tpl in pod_templates(w)]
            for kind in ("Service", "PodDisruptionBudget"):
                for o in find_all(objects, kind):
                    sel = o["spec"]["selector"]
                    sel = sel if "matchLabels" in sel else {"matchLabels": sel}
                    self.assertTrue(any(selects(sel, l) for l in labels),
                                    f"{overlay}: {kind} {o['metadata']['name']} selects no pod")

    def test_network_policy_admits_the_cluster_and_nothing_else(self):
        for overlay in OVERLAYS:
            objects = self.objects(overlay)
            policies = find_all(objects, "NetworkPolicy")
            _, per_pod = ranks_of(objects)
            router = Peer({"app.kubernetes.io/name": "tpserve", "app.kubernetes.io/component": "router"},
                          "tpserve", "198.18.0.2")
            worker = Peer({"app.kubernetes.io/name": "tpserve", "app.kubernetes.io/component": "worker"},
                          "tpserve", "198.18.0.3")
            prom = Peer({"app.kubernetes.io/name": "prometheus"}, "monitoring", "198.18.0.9")
            outside = Peer({}, None, "203.0.113.7")
            ns = {"monitoring": {"kubernetes.io/metadata.name": "monitoring"}}
            allowed = [(outside, router, 50051), (outside, router, 8000), (worker, router, 29500),
                       (prom, router, 9400), (worker, worker, 41234)]
            allowed += [(router, worker, 50061 + i) for i in range(per_pod)]
            allowed += [(prom, worker, 9401 + i) for i in range(per_pod)]
            denied = [(outside, worker, 50061), (outside, router, 29500), (outside, router, 9400),
                      (outside, worker, 9401), (prom, worker, 50061), (router, worker, 41234)]
            # Only the router sends Steps: a worker cannot reach another's
            # gRPC or health ports (the collectives rule leaves them out).
            denied += [(worker, worker, port) for port in range(50060, 50061 + RANK_PORTS)]
            denied += [(worker, worker, 9401 + i) for i in range(RANK_PORTS)]
            for src, dst, port in allowed:
                ok, why = ingress_allowed(policies, ns, dst, port, src)
                self.assertTrue(ok, f"{overlay}: {src.labels} -> {dst.labels}:{port}: {why}")
            for src, dst, port in denied:
                ok, why = ingress_allowed(policies, ns, dst, port, src)
                self.assertFalse(ok, f"{overlay}: {src.labels} -> {dst.labels}:{port}: {why}")

    def test_workers_reserve_the_ports_the_policy_keeps_from_peers(self):
        # The collectives rule leaves out the ranks' gRPC, health and metrics
        # ports; an ephemeral Gloo/NCCL listener there would be dropped, so
        # every worker pod reserves them.
        for overlay in OVERLAYS:
            for w in workloads(self.objects(overlay)):
                for role, tpl in pod_templates(w):
                    if tpl["metadata"]["labels"].get("app.kubernetes.io/component") != "worker":
                        continue
                    sysctls = {s["name"]: s["value"]
                               for s in tpl["spec"]["securityContext"].get("sysctls", [])}
                    reserved = set()
                    for part in sysctls.get("net.ipv4.ip_local_reserved_ports", "").split(","):
                        lo, _, hi = part.partition("-")
                        if lo:
                            reserved |= set(range(int(lo), int(hi or lo) + 1))
                    needed = set(range(9401, 9401 + RANK_PORTS)) | set(range(50060, 50061 + RANK_PORTS))
                    self.assertEqual(needed - reserved, set(), f"{overlay} {role}")

    def test_tls_overlay_mounts_every_file_it_names(self):
        # overlays/cpu-tls = overlays/cpu + components/tls: every TLS file flag
        # points into a mounted Secret that only the pod's group can read,
        # the kubelet's (plaintext) gRPC probes use the health-only port, and
        # the plaintext HTTP API is not opened next to TLS.
        objects = self.objects("cpu-tls")
        for o in objects:
            self.validate(o, "cpu-tls")
        wanted = {
            ("Deployment", "tpserve-router"): {"tls_cert_file", "tls_key_file", "cluster_ca_file",
                                               "cluster_cert_file", "cluster_key_file"},
            ("StatefulSet", "tpserve-worker"): {"cluster_ca_file", "cluster_cert_file",
                                                "cluster_key_file"},
        }
        for (kind, name), flags in wanted.items():
            spec = find(objects, kind, name)["spec"]["template"]["spec"]
            c = spec["containers"][0]
            self.assertEqual(spec["securityContext"]["fsGroup"], spec["securityContext"]["runAsGroup"])
            volumes = {v["name"]: v for v in spec["volumes"]}
            for f in flags:
                path = flag(c["args"], f)
                self.assertIsNotNone(path, f"{name}: --{f}")
                mounts = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
                self.assertEqual(len(mounts), 1, f"{name}: --{f}={path} is on no mount")
                secret = volumes[mounts[0]["name"]]["secret"]
                self.assertEqual(secret["defaultMode"] & 0o007, 0, f"{name}: --{f} world-readable")
                self.assertIn(os.path.basename(path), ("tls.crt", "tls.key", "ca.crt"))
            health = int(flag(c["args"], "health_port"))
            self.assertIn(health, [p["containerPort"] for p in c["ports"]])
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "grpc" in c.get(probe, {}):
                    self.assertEqual(c[probe]["grpc"]["port"], health, f"{name} {probe}")
            self.assertIsNone(flag(c["args"], "http_port"), name)

    def test_promtool_accepts_the_rules(self):
        promtool = os.path.join(project_root(), ".deps", "promtool")
        if not os.access(promtool, os.X_OK):
            promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("skipped: promtool not found (scripts/setup.d/promtool.sh extracts it)")
        rule = find(self.objects("cpu"), "PrometheusRule")
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump(rule["spec"], f)
        out = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertRegex(out.stdout, r"SUCCESS: [1-9]\d* rules found")
        # And the rules are exactly alerts.yml's (one source of truth).
        src = yaml.safe_load(open(os.path.join(source_root(), "deploy", "prometheus", "alerts.yml")))
        self.assertEqual(rule["spec"], src)


if __name__ == "__main__":
    junit.main()
