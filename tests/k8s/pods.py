"""What the Kubernetes control plane and kubelet would make of rendered
manifests, without a cluster: the pods each workload creates (names, labels,
LeaderWorkerSet env), each container's environment (envFrom, downward API,
resource fields, $(VAR) expansion) and argv, and which pod a Service name
reaches. Pure functions; podnet.py runs the result.

    pods = expand(objects)                       # Deployment, StatefulSet, LeaderWorkerSet
    env = container_env(pod, container, objects, node_cpus=2)
    argv = container_argv(container, env)
    names = service_hosts(objects, pods)        # [(pod, ["tpserve-router", ...])]
"""
import dataclasses
import hashlib
import math
import re

from manifests import selects

CLUSTER_DOMAIN = "cluster.local"
# What the images set (deploy/docker/Dockerfile): PATH of debian:12-slim,
# HOME and WORKDIR /tmp for the user 10001.
IMAGE_ENV = [("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
             ("HOME", "/tmp")]
IMAGE_WORKDIR = "/tmp"


@dataclasses.dataclass
class Pod:
    name: str
    namespace: str
    labels: dict
    spec: dict
    owner: str          # "<Kind>/<name>"
    hostname: str
    subdomain: str | None = None
    injected_env: list = dataclasses.field(default_factory=list)  # set by a controller (LWS)
    ip: str | None = None
    netns: str | None = None

    def container_ports(self):
        """{port name: number} over the pod's containers."""
        return {p["name"]: p["containerPort"] for c in self.spec["containers"]
                for p in c.get("ports", []) if "name" in p}


def _suffix(*parts, n=5):
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


def expand(objects):
    """The pods the workloads' controllers create."""
    pods = []
    for o in objects:
        kind, meta, spec = o["kind"], o["metadata"], o.get("spec", {})
        ns, name = meta.get("namespace", "default"), meta["name"]
        if kind == "Deployment":
            tpl = spec["template"]
            tpl_hash = _suffix(name, str(tpl), n=10)
            for i in range(spec.get("replicas", 1)):
                pod = f"{name}-{tpl_hash}-{_suffix(name, str(i))}"
                labels = dict(tpl["metadata"].get("labels", {}), **{"pod-template-hash": tpl_hash})
                pods.append(Pod(pod, ns, labels, tpl["spec"], f"Deployment/{name}", pod))
        elif kind == "StatefulSet":
            tpl = spec["template"]
            for i in range(spec.get("replicas", 1)):
                pod = f"{name}-{i}"
                labels = dict(tpl["metadata"].get("labels", {}), **{
                    "statefulset.kubernetes.io/pod-name": pod,
                    "apps.kubernetes.io/pod-index": str(i)})
                pods.append(Pod(pod, ns, labels, tpl["spec"], f"StatefulSet/{name}", pod,
                                subdomain=spec.get("serviceName")))
        elif kind == "LeaderWorkerSet":
            # LWS semantics (api/leaderworkerset/v1): leader <name>-<g>
            # (worker index 0), workers <name>-<g>-<i>; one shared headless
            # Service named after the set; env injected into every container.
            lwt = spec["leaderWorkerTemplate"]
            size = lwt.get("size", 1)
            for g in range(spec.get("replicas", 1)):
                leader = f"{name}-{g}"
                for i in range(size):
                    tpl = (lwt.get("leaderTemplate") or lwt["workerTemplate"]) if i == 0 \
                        else lwt["workerTemplate"]
                    pod = leader if i == 0 else f"{leader}-{i}"
                    labels = dict(tpl["metadata"].get("labels", {}), **{
                        "leaderworkerset.sigs.k8s.io/name": name,
                        "leaderworkerset.sigs.k8s.io/group-index": str(g),
                        "leaderworkerset.sigs.k8s.io/worker-index": str(i),
                        "leaderworkerset.sigs.k8s.io/group-key": _suffix(ns, leader, n=40)})
                    env = [("LWS_LEADER_ADDRESS", f"{leader}.{name}.{ns}"),
                           ("LWS_GROUP_SIZE", str(size)), ("LWS_WORKER_INDEX", str(i))]
                    pods.append(Pod(pod, ns, labels, tpl["spec"], f"LeaderWorkerSet/{name}", pod,
                                    subdomain=name, injected_env=env))
    return pods


def expand_vars(text, env):
    """Kubernetes' $(VAR) expansion: defined names are replaced, $$ is a
    literal $, anything else stays as written."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1 and text[i + 2:end] in env:
                    out.append(env[text[i + 2:end]])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def _quantity(q):
    """A resource quantity as a float (cpu cores or bytes)."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        raise ValueError(f"cannot read quantity {q!r}")
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}[m.group(2)]
    return float(m.group(1)) * scale


def _field(pod, path):
    simple = {"metadata.name": pod.name, "metadata.namespace": pod.namespace,
              "status.podIP": pod.ip, "status.podIPs": pod.ip, "spec.nodeName": "node-0",
              "status.hostIP": "198.18.0.1", "spec.serviceAccountName": "default",
              "metadata.uid": _suffix(pod.namespace, pod.name, n=32)}
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
    if m:
        if m.group(1) not in pod.labels:
            raise KeyError(f"pod {pod.name} has no label {m.group(1)} (fieldRef {path})")
        return pod.labels[m.group(1)]
    raise KeyError(f"fieldRef {path} is not supported by this runner")


def _resource(container, ref, node_cpus, node_memory):
    kind, _, res = ref["resource"].partition(".")
    resources = container.get("resources", {})
    value = resources.get(kind, {}).get(res)
    if value is None and kind == "requests":
        value = resources.get("limits", {}).get(res)  # requests default to limits
    if value is None:
        value = node_cpus if res == "cpu" else node_memory  # unset limit: node allocatable
    divisor = _quantity(ref.get("divisor", "1"))
    return str(math.ceil(_quantity(value) / divisor))


def _configmap(objects, name, namespace):
    for o in objects:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name and \
                o["metadata"].get("namespace", "default") == namespace:
            return o.get("data", {})
    raise KeyError(f"ConfigMap {namespace}/{name} not found")


def container_env(pod, container, objects, node_cpus, node_memory=64 << 30):
    """The container's environment in the order the kubelet builds it: image
    ENV, controller-injected variables, envFrom, then env (each value
    expanded against what precedes it)."""
    env = dict(IMAGE_ENV)
    env.update(pod.injected_env)
    for src in container.get("envFrom", []):
        if "configMapRef" not in src:
            raise KeyError(f"envFrom {src} is not supported by this runner")
        data = _configmap(objects, src["configMapRef"]["name"], pod.namespace)
        env.update({src.get("prefix", "") + k: v for k, v in data.items()})
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = expand_vars(e["value"], env)
            continue
        ref = e.get("valueFrom", {})
        if "fieldRef" in ref:
            env[e["name"]] = _field(pod, ref["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in ref:
            env[e["name"]] = _resource(container, ref["resourceFieldRef"], node_cpus, node_memory)
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[e["name"]] = _configmap(objects, key["name"], pod.namespace)[key["key"]]
        else:
            raise KeyError(f"env {e['name']}: {ref} is not supported by this runner")
    return env


def container_argv(container, env):
    if "command" not in container:
        raise ValueError(f"container {container['name']}: the runner needs an explicit command "
                         "(it has no image ENTRYPOINT to fall back on)")
    return [expand_vars(a, env) for a in container["command"] + container.get("args", [])]


def service_hosts(objects, pods):
    """[(pod, [names])]: the DNS names under which a pod is reached. A
    ClusterIP Service resolves to the one pod it selects (the runner has no
    kube-proxy, so a Service's port must equal the target port); pods of a
    StatefulSet or LeaderWorkerSet get <hostname>.<subdomain> names."""
    out = []
    for svc in objects:
        if svc["kind"] != "Service":
            continue
        meta, spec = svc["metadata"], svc["spec"]
        ns = meta.get("namespace", "default")
        chosen = [p for p in pods if p.namespace == ns and spec.get("selector")
                  and selects({"matchLabels": spec["selector"]}, p.labels)]
        if spec.get("clusterIP") == "None":
            continue  # headless: per-pod names below
        if len(chosen) != 1:
            raise AssertionError(f"Service {meta['name']} selects {len(chosen)} pods; the runner "
                                 "maps a ClusterIP Service to exactly one pod")
        pod = chosen[0]
        ports = pod.container_ports()
        for p in spec["ports"]:
            target = p.get("targetPort", p["port"])
            number = ports.get(target) if isinstance(target, str) else target
            if number is None:
                raise AssertionError(f"Service {meta['name']} port {p.get('name')}: targetPort "
                                     f"{target!r} is not a container port of {pod.name}")
            if number != p["port"]:
                raise AssertionError(f"Service {meta['name']}: port {p['port']} -> {number}; the "
                                     "runner needs port == targetPort")
        name = meta["name"]
        out.append((pod, [name, f"{name}.{ns}", f"{name}.{ns}.svc",
                          f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"]))
    for pod in pods:
        if pod.subdomain:
            base = f"{pod.hostname}.{pod.subdomain}"
            out.append((pod, [base, f"{base}.{pod.namespace}", f"{base}.{pod.namespace}.svc",
                              f"{base}.{pod.namespace}.svc.{CLUSTER_DOMAIN}"]))
    return out
