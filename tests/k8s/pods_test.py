"""pods.py against the Kubernetes behaviour it imitates: pod names and labels
per controller, LeaderWorkerSet env, $(VAR) expansion, the environment's
order and sources, and the Service checks that catch a wrong port or name."""
import copy
import unittest

import junit
from manifests import render
from pods import Pod, container_argv, container_env, expand, expand_vars, service_hosts


class ExpandVarsTest(unittest.TestCase):
    def test_kubernetes_rules(self):
        env = {"A": "1", "B": "x y"}
        self.assertEqual(expand_vars("--a=$(A) --b=$(B)", env), "--a=1 --b=x y")
        self.assertEqual(expand_vars("$(MISSING)", env), "$(MISSING)")  # left as written
        self.assertEqual(expand_vars("$$(A)", env), "$(A)")              # $$ escapes
        self.assertEqual(expand_vars("$(A", env), "$(A")
        self.assertEqual(expand_vars("cost $5", env), "cost $5")


class ControllersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cpu = render("tests/k8s/overlays/cpu")
        cls.multi = render("tests/k8s/overlays/gpu-multi-node")

    def test_statefulset_pods_carry_their_index(self):
        workers = [p for p in expand(self.cpu) if p.owner == "StatefulSet/tpserve-worker"]
        self.assertEqual([p.name for p in workers], ["tpserve-worker-0", "tpserve-worker-1"])
        self.assertEqual([p.labels["apps.kubernetes.io/pod-index"] for p in workers], ["0", "1"])
        self.assertEqual({p.subdomain for p in workers}, {"tpserve-worker"})

    def test_leaderworkerset_names_labels_and_env(self):
        pods = [p for p in expand(self.multi) if p.owner == "LeaderWorkerSet/tpserve-worker"]
        self.assertEqual([p.name for p in pods], ["tpserve-worker-0", "tpserve-worker-0-1"])
        self.assertEqual([p.labels["leaderworkerset.sigs.k8s.io/worker-index"] for p in pods], ["0", "1"])
        self.assertEqual(dict(pods[1].injected_env),
                         {"LWS_LEADER_ADDRESS": "tpserve-worker-0.tpserve-worker.tpserve",
                          "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"})

    def test_worker_argv_as_the_kubelet_builds_it(self):
        pod = [p for p in expand(self.cpu) if p.name == "tpserve-worker-1"][0]
        pod.ip = "198.18.1.9"
        c = pod.spec["containers"][0]
        argv = container_argv(c, container_env(pod, c, self.cpu, node_cpus=2))
        self.assertEqual(argv[0], "tpserve-worker")
        for want in ("--rank=1", "--world_size=2", "--advertise_host=198.18.1.9", "--threads=4",
                     "--kv_cache_mb=64", "--rendezvous=tpserve-router:29500"):
            self.assertIn(want, argv)
        self.assertFalse([a for a in argv if "$(" in a], argv)

    def test_gpu_launcher_env(self):
        pod = [p for p in expand(self.multi) if p.name == "tpserve-worker-0-1"][0]
        pod.ip = "198.18.1.9"
        c = pod.spec["containers"][0]
        env = container_env(pod, c, self.multi, node_cpus=2)
        self.assertEqual((env["TPSERVE_POD_INDEX"], env["LWS_GROUP_SIZE"], env["TPSERVE_GPUS_PER_POD"],
                          env["TPSERVE_WORLD_SIZE"]), ("1", "2", "8", "16"))

    def test_a_missing_label_is_an_error(self):
        pod = Pod("p", "tpserve", {}, {}, "x", "p")
        c = {"name": "c", "env": [{"name": "R", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}}]}
        with self.assertRaisesRegex(KeyError, "pod-index"):
            container_env(pod, c, [], node_cpus=2)

    def test_services_resolve_to_their_pod(self):
        names = {n: p.name for p, ns in service_hosts(self.cpu, expand(self.cpu)) for n in ns}
        self.assertTrue(names["tpserve-router.tpserve.svc.cluster.local"].startswith("tpserve-router-"))
        self.assertEqual(names["tpserve-worker-1.tpserve-worker"], "tpserve-worker-1")

    def test_a_wrong_service_port_is_caught(self):
        objects = copy.deepcopy(self.cpu)
        svc = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "tpserve-router"][0]
        svc["spec"]["ports"][0]["targetPort"] = "grcp"
        with self.assertRaisesRegex(AssertionError, "grcp"):
            service_hosts(objects, expand(objects))
        svc["spec"]["ports"][0]["targetPort"] = 50052
        with self.assertRaisesRegex(AssertionError, "port == targetPort"):
            service_hosts(objects, expand(objects))


if __name__ == "__main__":
    junit.main()
