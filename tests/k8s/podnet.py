"""Runs rendered manifests as real processes, one network namespace per pod:
a small kubelet for tests/k8s. Each pod gets its own IP on a bridge (in a
"node" namespace of its own, so the host's network is untouched), Service and
pod DNS names through /etc/netns/<ns>/hosts, and each container runs in a
private mount namespace whose root is an overlay of the host's (its writes
go to a throwaway layer, or fail with readOnlyRootFilesystem), with the pod's
volumes mounted, the image's binaries at /usr/local/bin, and the pod's user.

    with MiniCluster(objects, images={"tpserve:latest": bindir},
                     claims={"tpserve-models": model_dir},
                     secrets={"tpserve-tls": tls_dir}) as mc:
        mc.wait_ready("tpserve-router", timeout=120)
        mc.agent("client").call({"op": "chat", ...})
    # exit: pods terminated as Kubernetes does (preStop, SIGTERM, grace,
    # SIGKILL), namespaces, /etc/netns entries and mounts removed.

Needs root and iproute2; skip() says why a machine cannot run it.
"""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from pods import IMAGE_WORKDIR, container_argv, container_env, expand, service_hosts

# Bazel gives tests a short PATH; iproute2, mount and chroot live in sbin.
os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
NET = "198.18"  # RFC 2544 benchmarking range: never routed, only inside these namespaces
NODE_IP = f"{NET}.0.1"
AGENTS = {"client": (f"{NET}.2.1", None, {}),  # outside the cluster
          "monitoring": (f"{NET}.3.1", "monitoring", {"app.kubernetes.io/name": "prometheus"})}


def skip_reason():
    """None when this process can create network namespaces, else why not."""
    if shutil.which("ip") is None:
        return "skipped: iproute2's `ip` not found"
    if os.geteuid() != 0:
        return "skipped: needs root for network namespaces (ip netns add); CI runs as root"
    probe = f"tpsprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "skipped: `ip netns add` is not permitted here"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _sh(*cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


class Agent:
    """netns_agent.py in one namespace, driven by JSON lines."""

    def __init__(self, netns, python, script, env, log):
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, python, script],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                     text=True, env=env, start_new_session=True)
        self.lock = threading.Lock()

    def call(self, request):
        with self.lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent died answering {request['op']}")
        return json.loads(line)

    def close(self):
        try:
            self.call({"op": "exit"})
        except (RuntimeError, OSError, ValueError):
            pass
        _end(self.proc, 5)


def _end(proc, grace):
    """SIGTERM, then SIGKILL to the process group after `grace` seconds.
    True when it exited within the grace period."""
    if proc.poll() is not None:
        return True
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
        return True
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return True
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return False


class Container:
    def __init__(self, pod, spec, proc, log, wrapper):
        self.pod, self.spec, self.proc, self.log, self.wrapper = pod, spec, proc, log, wrapper

    def tail(self, n=3000):
        with open(self.log, errors="replace") as f:
            return f.read()[-n:]


class MiniCluster:
    def __init__(self, objects, images, claims, python, agent_env, node_cpus=None, secrets=None):
        self.objects = objects
        self.images = images          # image -> host dir holding its /usr/local/bin
        self.claims = claims          # PersistentVolumeClaim name -> host dir
        self.secrets = secrets or {}  # Secret name -> host dir holding its keys as files
        self.python = python
        self.agent_env = agent_env
        self.node_cpus = node_cpus or os.cpu_count()
        self.id = f"tps{os.getpid() % 100000}"
        self.work = tempfile.mkdtemp(prefix="tpserve_k8s_run_")
        os.chmod(self.work, 0o755)
        self.pods = expand(objects)
        self.netns = []
        self.containers = []
        self.agents = {}
        self.events = []              # what happened, printed by the test
        self._pod_volumes = {}

    # ---- network --------------------------------------------------------
    def _add_netns(self, name, ip, hosts_lines):
        ns = f"{self.id}-{name}"
        _sh("ip", "netns", "add", ns)
        self.netns.append(ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        if ip != NODE_IP:
            port = f"v{len(self.netns)}"
            _sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
                "netns", self.node_ns)
            _sh("ip", "-n", self.node_ns, "link", "set", port, "master", "br0", "up")
            _sh("ip", "-n", ns, "addr", "add", f"{ip}/16", "dev", "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        etc = f"/etc/netns/{ns}"
        os.makedirs(etc, exist_ok=True)
        with open(f"{etc}/hosts", "w") as f:
            f.write("\n".join(hosts_lines) + "\n")
        os.chmod(f"{etc}/hosts", 0o644)
        return ns

    def _network(self):
        self.node_ns = f"{self.id}-node"
        for i, pod in enumerate(self.pods):
            pod.ip = f"{NET}.1.{i + 2}"
        names = service_hosts(self.objects, self.pods)
        shared = [f"{pod.ip}\t{' '.join(n)}" for pod, n in names]
        base = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        self._add_netns("node", NODE_IP, base + shared)
        _sh("ip", "-n", self.node_ns, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", self.node_ns, "addr", "add", f"{NODE_IP}/16", "dev", "br0")
        _sh("ip", "-n", self.node_ns, "link", "set", "br0", "up")
        for i, pod in enumerate(self.pods):
            pod.netns = self._add_netns(f"p{i}", pod.ip, base + [f"{pod.ip}\t{pod.hostname}"] + shared)
            # Pod sysctls (the namespaced net.* ones the kubelet allows) apply
            # to the pod's network namespace.
            for sysctl in pod.spec.get("securityContext", {}).get("sysctls", []):
                if not sysctl["name"].startswith("net."):
                    raise KeyError(f"pod {pod.name}: sysctl {sysctl['name']} not supported by this runner")
                _sh("ip", "netns", "exec", pod.netns, "sysctl", "-q", "-w",
                    f"{sysctl['name']}={sysctl['value']}")
        for name, (ip, _, _) in AGENTS.items():
            self._add_netns(name, ip, base + shared)

    # ---- containers -----------------------------------------------------
    def _volumes(self, pod):
        """{volume name: (host dir, read-only)} for the pod, made once per pod
        and shared by its containers (and by kubelet execs into them)."""
        if pod.name in self._pod_volumes:
            return self._pod_volumes[pod.name]
        out = self._pod_volumes[pod.name] = {}
        for v in pod.spec.get("volumes", []):
            d = os.path.join(self.work, "volumes", pod.name, v["name"])
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]
                if claim["claimName"] not in self.claims:
                    raise KeyError(f"pod {pod.name}: no volume bound to claim {claim['claimName']}")
                out[v["name"]] = (self.claims[claim["claimName"]], claim.get("readOnly", False))
            elif "emptyDir" in v:
                os.makedirs(d)
                os.chmod(d, 0o1777)
                out[v["name"]] = (d, False)
            elif "secret" in v:
                # As the kubelet writes a Secret volume: root owns the files,
                # mode defaultMode (0644); with the pod's fsGroup the group is
                # fsGroup and group read is added.
                name = v["secret"]["secretName"]
                if name not in self.secrets:
                    raise KeyError(f"pod {pod.name}: no files for Secret {name}")
                fs_group = pod.spec.get("securityContext", {}).get("fsGroup")
                mode = v["secret"].get("defaultMode", 0o644) | (0o440 if fs_group is not None else 0)
                os.makedirs(d)
                for key in sorted(os.listdir(self.secrets[name])):
                    shutil.copy(os.path.join(self.secrets[name], key), os.path.join(d, key))
                    os.chown(os.path.join(d, key), 0, fs_group or 0)
                    os.chmod(os.path.join(d, key), mode)
                os.chmod(d, 0o755)
                out[v["name"]] = (d, True)
            elif "configMap" in v:
                os.makedirs(d)
                name = v["configMap"]["name"]
                data = [o for o in self.objects if o["kind"] == "ConfigMap"
                        and o["metadata"]["name"] == name][0].get("data", {})
                for key, text in data.items():
                    with open(os.path.join(d, key), "w") as f:
                        f.write(text)
                    os.chmod(os.path.join(d, key), v["configMap"].get("defaultMode", 0o644))
                os.chmod(d, 0o755)
                out[v["name"]] = (d, True)
            else:
                raise KeyError(f"pod {pod.name}: volume {v['name']} kind not supported by this runner")
        return out

    def _wrapper(self, pod, c, volumes, tag):
        """A shell script, run by `ip netns exec`, that builds the container's
        root and execs its argv (given as "$@") as the pod's user."""
        sc = dict(pod.spec.get("securityContext", {}), **c.get("securityContext", {}))
        uid, gid = sc.get("runAsUser", 0), sc.get("runAsGroup", sc.get("runAsUser", 0))
        image = c["image"]
        if image not in self.images:
            raise KeyError(f"container {c['name']}: no binaries for image {image}")
        layer = os.path.join(self.work, "rootfs", f"{pod.name}-{c['name']}-{tag}")
        os.makedirs(layer)
        m = f"{layer}/merged"
        q = shlex.quote
        lines = ["set -e", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                 f"mount -t tmpfs -o mode=755,size=64m tpserve-layer {q(layer)}",
                 f"mkdir {q(layer)}/upper {q(layer)}/work {q(m)}",
                 f"mount -t overlay tpserve-root -o lowerdir=/,upperdir={q(layer)}/upper,"
                 f"workdir={q(layer)}/work {q(m)}",
                 f"mount -t proc proc {q(m)}/proc",
                 f"mount --rbind /dev {q(m)}/dev",
                 f"mount --bind /etc/netns/{pod.netns}/hosts {q(m)}/etc/hosts",
                 f"mount --bind {q(self.images[image])} {q(m)}/usr/local/bin"]
        for vm in c.get("volumeMounts", []):
            src, ro = volumes[vm["name"]]
            dst = q(m + vm["mountPath"])
            lines += [f"mkdir -p {dst}", f"mount --bind {q(src)} {dst}"]
            if ro or vm.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro {dst}")
        if sc.get("readOnlyRootFilesystem"):
            lines.append(f"mount -o remount,ro {q(m)}")
        lines.append(f'exec chroot {q(m)} /usr/bin/setpriv --reuid={uid} --regid={gid} '
                     f'--clear-groups --no-new-privs /usr/bin/env -i -C {c.get("workingDir", IMAGE_WORKDIR)} '
                     '"$@"')
        path = os.path.join(self.work, f"{pod.name}-{c['name']}-{tag}.sh")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _env_argv(self, pod, c):
        env = container_env(pod, c, self.objects, self.node_cpus)
        gpus = int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
        if gpus:
            # The device plugin's part: the CUDA emulator shows this many devices.
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
            env["TPSERVE_CUDA_EMU_DEVICES"] = str(gpus)
            # One emulator thread per rank: the multi-node overlay runs 16
            # emulated ranks on the test machine's few cores, where block
            # threads per rank only oversubscribe them.
            env["TPSERVE_CUDA_EMU_THREADS"] = "1"
        return env, container_argv(c, env)

    def _start(self, pod, c, argv_filter):
        env, argv = self._env_argv(pod, c)
        argv = argv_filter(c, argv)
        wrapper = self._wrapper(pod, c, self._volumes(pod), "main")
        log = os.path.join(self.work, f"{pod.name}-{c['name']}.log")
        with open(log, "w") as f:
            proc = subprocess.Popen(["ip", "netns", "exec", pod.netns, "sh", wrapper]
                                    + [f"{k}={v}" for k, v in env.items()] + argv,
                                    stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.containers.append(Container(pod, c, proc, log, wrapper))
        self.events.append(f"started {pod.name}/{c['name']} ({pod.ip}): {' '.join(argv)}")

    def start(self, argv_filter=lambda c, argv: argv):
        """Creates the network and starts every container of every pod at
        once, as the controllers and kubelet would."""
        self._network()
        for name in AGENTS:
            log = open(os.path.join(self.work, f"agent-{name}.log"), "w")
            self.agents[name] = Agent(f"{self.id}-{name}", self.python,
                                      os.path.join(os.path.dirname(__file__), "netns_agent.py"),
                                      self.agent_env, log)
        self.agents["node"] = Agent(self.node_ns, self.python,
                                    os.path.join(os.path.dirname(__file__), "netns_agent.py"),
                                    self.agent_env, open(os.path.join(self.work, "agent-node.log"), "w"))
        for pod in self.pods:
            for c in pod.spec["containers"]:
                self._start(pod, c, argv_filter)
        return self

    def agent(self, name):
        return self.agents[name]

    def pod(self, prefix):
        hits = [p for p in self.pods if p.name.startswith(prefix)]
        if not hits:
            raise KeyError(prefix)
        return hits[0]

    def check_alive(self):
        for c in self.containers:
            if c.proc.poll() is not None:
                raise AssertionError(f"container {c.pod.name}/{c.spec['name']} exited with "
                                     f"{c.proc.returncode}:\n{c.tail()}")

    def probe(self, pod, probe):
        """Runs one probe as the kubelet (from the node): 'ok', 'failed: ...'
        or 'unsupported: ...' (a gRPC health service or name this build
        does not serve)."""
        if "grpc" in probe:
            g = probe["grpc"]
            r = self.agents["node"].call({"op": "grpc_health", "target": f"{pod.ip}:{g['port']}",
                                          "service": g.get("service", "")})
            if r.get("status") == "SERVING":
                return "ok"
            if r.get("error") in ("UNIMPLEMENTED", "NOT_FOUND"):
                return f"unsupported: {r['error']} ({r.get('detail')})"
            return f"failed: {r}"
        if "tcpSocket" in probe:
            r = self.agents["node"].call({"op": "tcp", "host": pod.ip, "port": probe["tcpSocket"]["port"]})
            return "ok" if r["ok"] else f"failed: {r}"
        if "httpGet" in probe:
            h = probe["httpGet"]
            r = self.agents["node"].call({"op": "http", "url": f"http://{pod.ip}:{h['port']}{h.get('path', '/')}"})
            return "ok" if 200 <= r.get("status", 0) < 400 else f"failed: {r}"
        if "exec" in probe:
            return self.exec_in(pod, self._container_of(pod), probe["exec"]["command"], 10)
        raise KeyError(f"probe {probe} not supported")

    def _container_of(self, pod):
        return [c for c in self.containers if c.pod is pod][0]

    def exec_in(self, pod, container, command, timeout):
        """Runs `command` as the kubelet's exec would: same namespaces, root,
        user and environment as the container."""
        env, _ = self._env_argv(pod, container.spec)
        wrapper = self._wrapper(pod, container.spec, self._volumes(pod), f"exec{time.monotonic_ns()}")
        out = subprocess.run(["ip", "netns", "exec", pod.netns, "sh", wrapper]
                             + [f"{k}={v}" for k, v in env.items()] + command,
                             capture_output=True, text=True, timeout=timeout)
        return "ok" if out.returncode == 0 else f"failed: exit {out.returncode}: {out.stderr[-500:]}"

    def connections(self, pod):
        """The pod's TCP sockets: (listening ports, [(local ip, local port,
        peer ip, peer port)] of established connections)."""
        def addr(text):
            host, port = text.rsplit(":", 1)
            return host.strip("[]").replace("::ffff:", ""), int(port)

        listening = {addr(line.split()[3])[1] for line in
                     _sh("ip", "netns", "exec", pod.netns, "ss", "-Htln").splitlines()}
        conns = []
        for line in _sh("ip", "netns", "exec", pod.netns, "ss", "-Htn", "state",
                        "established").splitlines():
            local, peer = addr(line.split()[2]), addr(line.split()[3])
            conns.append(local + peer)
        return listening, conns

    # ---- teardown -------------------------------------------------------
    def terminate(self):
        """Pod deletion as Kubernetes does it, all pods at once: preStop
        hook, SIGTERM, then SIGKILL when terminationGracePeriodSeconds runs
        out. Returns [(pod/container, seconds to exit, within grace?)]."""
        results = []

        def one(c):
            t0 = time.time()
            grace = c.pod.spec.get("terminationGracePeriodSeconds", 30)
            pre = c.spec.get("lifecycle", {}).get("preStop", {}).get("exec")
            hook = "none"
            if pre and c.proc.poll() is None:
                hook = self.exec_in(c.pod, c, pre["command"], grace)
            ok = _end(c.proc, max(1, grace - (time.time() - t0)))
            results.append((f"{c.pod.name}/{c.spec['name']}", round(time.time() - t0, 1), ok, hook))

        threads = [threading.Thread(target=one, args=(c,)) for c in self.containers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def close(self):
        for c in self.containers:
            _end(c.proc, 0)
        for a in self.agents.values():
            a.close()
        for ns in self.netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def logs(self):
        return "\n".join(f"===== {c.pod.name}/{c.spec['name']} =====\n{c.tail()}" for c in self.containers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        import unittest
        if exc[0] is not None and not issubclass(exc[0], unittest.SkipTest):
            print(self.logs(), file=sys.stderr)
        self.close()
