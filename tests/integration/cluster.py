"""Test harness: starts the real tpserve-router and tpserve-worker binaries on
loopback (port 0, ports read back from --port_file). Tests call the API with
the tpserve_client package (clients/python) through Cluster.client(); tests
that need wire-level control get grpcio stubs generated from proto/tpserve/v1
at test time with protoc and Debian's grpc_python_plugin (stubs()).

    from cluster import Cluster, stubs
    with Cluster(world_size=2) as c:
        with c.client(timeout=120) as client:
            print(client.complete("Hi", max_tokens=8).text)
        pb, grpc_pb = stubs("generation")
        stub = grpc_pb.GenerationStub(c.channel())
        for r in stub.Generate(pb.GenerateRequest(text="Hi", max_tokens=8)): ...
        text = c.scrape(c.router_metrics_port)
"""
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc

ROOT = os.environ.get("TPSERVE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
_STUB_DIR = None


def _runfile(path):
    """Locates a built binary: Bazel runfiles first, then bazel-bin."""
    for base in (os.environ.get("TEST_SRCDIR", ""), ):
        if base:
            p = os.path.join(base, os.environ.get("TEST_WORKSPACE", "tpserve"), path)
            if os.path.exists(p):
                return p
    for base in (os.environ.get("TPSERVE_BIN_DIR", ""), os.path.join(ROOT, "bazel-bin"), ROOT):
        if not base:
            continue
        p = os.path.join(base, path)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{path} not built; run bazel build //router:tpserve-router //worker:tpserve-worker")


def _proto_dir():
    """Directory holding proto/tpserve/v1/*.proto (runfiles or the source tree)."""
    for base in (os.path.join(os.environ.get("TEST_SRCDIR", ""), os.environ.get("TEST_WORKSPACE", "tpserve")), ROOT):
        if os.path.exists(os.path.join(base, "proto/tpserve/v1/generation.proto")):
            return base
    raise FileNotFoundError("proto/tpserve/v1/generation.proto not found")


def stubs(name):
    """Returns (pb2, pb2_grpc) modules for proto/tpserve/v1/<name>.proto,
    generated into a temp dir with protoc + grpc_python_plugin. The proto
    path is proto/, as clients/python/regen_stubs.sh uses: both register
    "tpserve/v1/generation.proto" in protobuf's default pool, so a test can
    use these stubs and the tpserve_client package in one process."""
    global _STUB_DIR
    if _STUB_DIR is None:
        _STUB_DIR = tempfile.mkdtemp(prefix="tpserve_stubs_")
        src = os.path.join(_proto_dir(), "proto")
        protos = ["tpserve/v1/generation.proto", "tpserve/v1/worker.proto",
                  "tpserve/v1/admin.proto"]
        subprocess.run(["protoc", f"--proto_path={src}", f"--python_out={_STUB_DIR}",
                        f"--grpc_out={_STUB_DIR}", "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin"]
                       + protos, check=True, cwd=src)
        sys.path.insert(0, _STUB_DIR)
    pb = importlib.import_module(f"tpserve.v1.{name}_pb2")
    grpc_pb = importlib.import_module(f"tpserve.v1.{name}_pb2_grpc")
    return pb, grpc_pb


def generate_concurrently(stub, prompts, max_tokens, on_token=None):
    """One greedy stream per prompt (ignore_eos), all at once; returns, in
    prompt order, (code, token ids, usage) for a stream that ended OK and
    (code, token ids so far, error details) for one that failed. on_token()
    runs on every response (tests use it to fault the cluster mid-stream)."""
    pb, _ = stubs("generation")
    results = [None] * len(prompts)

    def run(i):
        ids, usage = [], None
        try:
            for r in stub.Generate(pb.GenerateRequest(text=prompts[i], max_tokens=max_tokens,
                                                      ignore_eos=True), timeout=300):
                ids.extend(r.token_ids)
                if on_token:
                    on_token()
                if r.finish_reason:
                    usage = r.usage
            results[i] = (grpc.StatusCode.OK, ids, usage)
        except grpc.RpcError as e:
            results[i] = (e.code(), ids, e.details())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(330)
    return results


def client_package():
    """Imports tpserve_client (clients/python, the package users install) from
    the runfiles or the source tree; tests use it for plain client calls."""
    path = os.path.join(_proto_dir(), "clients", "python")
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("tpserve_client")


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_file(path, proc, timeout, log):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if proc.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"process exited with {proc.returncode}:\n{f.read()}")
        time.sleep(0.05)
    with open(log) as f:
        raise TimeoutError(f"{path} not written in {timeout}s:\n{f.read()}")


def _wait_port_file_key(path, key, proc, timeout, log):
    """Waits until the JSON port file at `path` has `key` (the router adds
    http_port after it first writes the file)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ports = _wait_file(path, proc, timeout, log)
        if key in ports:
            return ports
        time.sleep(0.05)
    raise TimeoutError(f"{path} has no {key} after {timeout}s")


class Cluster:
    """A router and `world_size` workers on 127.0.0.1; `comm` is the workers'
    collective backend (shm: shared memory, gloo: TCP). `model` defaults to
    the default model; `worker` is the worker binary's path under bazel-bin
    (worker/tpserve-worker_emu: the CUDA-emulator build)."""

    def __init__(self, world_size=2, router_args=(), worker_args=(), threads=1, kv_cache_mb=64,
                 comm=None, model=MODEL, worker="worker/tpserve-worker", fixed_ports=False,
                 http=False, channel_credentials=None, channel_options=(), groups=1):
        self.world_size = world_size
        # groups > 1: that many tensor-parallel groups (--groups); group 0's
        # ranks are "worker<r>", group g's "g<g>worker<r>" (see start_group).
        self.groups = groups
        self.model = model
        self.worker = worker
        self.router_args = list(router_args)
        self.worker_args = list(worker_args)
        self.threads = threads
        self.kv_cache_mb = kv_cache_mb
        self.comm = comm or os.environ.get("TPSERVE_TEST_COMM", "shm")
        # http=True: also serve the OpenAI-compatible HTTP API (self.http_port).
        self.http = http
        self.http_port = None
        # A TLS router (--tls_cert_file): channel() and health() use these.
        self.channel_credentials = channel_credentials
        self.channel_options = list(channel_options)
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="tpserve_cluster_")
        # fixed_ports: the router binds ports chosen here, so restart_router()
        # brings it back where clients and workers expect it.
        self.fixed_ports = [_free_port() for _ in range(3)] if fixed_ports else None
        self.argv = {}

    def _spawn(self, name, argv):
        log = os.path.join(self.tmp, name + ".log")
        with open(log, "a") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
        self.procs = [(n, q, l) for n, q, l in self.procs if n != name]
        self.procs.append((name, p, log))
        self.argv[name] = argv
        return p, log

    def proc(self, name):
        return [p for n, p, _ in self.procs if n == name][0]

    def restart(self, name):
        """Starts process `name` ("router", "worker1") again with the same
        flags (the old one must have exited); returns the new Popen."""
        old = self.proc(name)
        if old.poll() is None:
            raise RuntimeError(f"{name} is still running")
        for f in (os.path.join(self.tmp, name + ".json"),):
            if os.path.exists(f):
                os.remove(f)
        p, _ = self._spawn(name, self.argv[name])
        return p

    def log_text(self, name):
        with open(os.path.join(self.tmp, name + ".log")) as f:
            return f.read()

    def start(self, ready_timeout=300):
        router = _runfile("router/tpserve-router")
        rport = os.path.join(self.tmp, "router.json")
        g, m, z = self.fixed_ports or (0, 0, 0)
        p, log = self._spawn("router", [router, f"--model={self.model}", f"--world_size={self.world_size}"]
                              + ([f"--groups={self.groups}"] if self.groups > 1 else []) + [
                                        "--host=127.0.0.1", f"--port={g}", f"--metrics_port={m}",
                                        f"--rendezvous_port={z}", f"--port_file={rport}"]
                              + (["--http_port=0"] if self.http else []) + self.router_args)
        ports = _wait_file(rport, p, 60, log)
        if self.http:
            ports = _wait_port_file_key(rport, "http_port", p, 60, log)
            self.http_port = ports["http_port"]
        self.port = ports["grpc_port"]
        self.router_metrics_port = ports["metrics_port"]
        self.rendezvous_port = ports["rendezvous_port"]
        self.worker_metrics_ports = []
        self.worker_ports = []
        for g in range(self.groups):
            self.worker_metrics_ports += self.start_group(g)
        self.wait_serving(ready_timeout)
        return self

    @staticmethod
    def worker_name(group, rank):
        return f"worker{rank}" if group == 0 else f"g{group}worker{rank}"

    def start_group(self, group):
        """Starts group `group`'s world_size ranks (--group=group); returns
        their metrics ports. Also for a group joining a running router."""
        worker = _runfile(self.worker)
        metrics_ports = []
        for r in range(self.world_size):
            name = self.worker_name(group, r)
            wport = os.path.join(self.tmp, f"{name}.json")
            wp, wlog = self._spawn(name, [
                worker, f"--model={self.model}", f"--rank={r}", f"--world_size={self.world_size}",
                f"--rendezvous=127.0.0.1:{self.rendezvous_port}", "--host=127.0.0.1",
                "--port=0", "--metrics_port=0", f"--threads={self.threads}",
                f"--kv_cache_mb={self.kv_cache_mb}", f"--comm={self.comm}",
                f"--port_file={wport}"] + ([f"--group={group}"] if group else []) + self.worker_args)
            wports = _wait_file(wport, wp, 60, wlog)
            metrics_ports.append(wports["metrics_port"])
            self.worker_ports.append(wports["grpc_port"])
        return metrics_ports

    def health(self, service=""):
        """grpc.health.v1.Health/Check status: 1 SERVING, 2 NOT_SERVING (raw
        wire bytes, so no health stubs are needed)."""
        req = (b"\x0a" + bytes([len(service)]) + service.encode()) if service else b""
        check = self.channel().unary_unary("/grpc.health.v1.Health/Check",
                                           request_serializer=None, response_deserializer=None)
        resp = check(req, timeout=5)
        return resp[1] if len(resp) >= 2 else 0

    def wait_serving(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p, log in self.procs:
                if p.poll() is not None:
                    with open(log) as f:
                        raise RuntimeError(f"{name} exited with {p.returncode}:\n{f.read()}")
            try:
                if self.health() == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"router not SERVING after {timeout}s")

    def http_url(self, path=""):
        """Base URL of the HTTP API (Cluster(http=True)), e.g. http_url("/v1")."""
        return f"http://127.0.0.1:{self.http_port}{path}"

    def address(self):
        """host:port of the gRPC API."""
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs):
        """A tpserve_client.Client on the gRPC API (kwargs: timeout, api_key, ...)."""
        return client_package().Client(self.address(), **kwargs)

    def channel(self):
        if self.channel_credentials is not None:
            return grpc.secure_channel(f"127.0.0.1:{self.port}", self.channel_credentials,
                                       options=self.channel_options)
        return grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def scrape(self, port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()

    def logs(self):
        out = []
        for name, _, log in self.procs:
            with open(log) as f:
                out.append(f"===== {name} =====\n{f.read()[-4000:]}")
        return "\n".join(out)

    def stop(self):
        for _, p, _ in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p, _ in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            print(self.logs(), file=sys.stderr)
            self.stop()
            raise

    def __exit__(self, *exc):
        if exc[0] is not None:
            print(self.logs(), file=sys.stderr)
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def parse_metrics(text):
    """Parses Prometheus text exposition format strictly enough to catch
    malformed output: returns {(name, frozenset(labels.items())): value} and
    raises ValueError on a line that is not a comment, blank, or a sample."""
    import re
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
    label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
    out = {}
    types = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                if parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError(f"bad TYPE line: {line}")
                types[parts[2]] = parts[3]
            continue
        m = sample.match(line)
        if not m:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        labels = {}
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = label.match(body, pos)
            if not lm:
                raise ValueError(f"bad labels in: {line!r}")
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        value = float(m.group(4))  # raises on garbage; accepts +Inf/NaN
        out[(m.group(1), frozenset(labels.items()))] = value
    return out, types


def metric_sum(samples, name, **labels):
    """Sum of all samples named `name` whose labels include `labels`."""
    total, found = 0.0, False
    for (n, ls), v in samples.items():
        if n == name and all((k, str(val)) in ls for k, val in labels.items()):
            total += v
            found = True
    if not found:
        raise KeyError(f"no sample {name} {labels}")
    return total
