"""TLS on the public port and mutual TLS inside the cluster, with real
processes and certificates made by openssl at test time
(tests/tls/make_certs.sh):

- a TLS router refuses plaintext clients and clients that do not trust its
  CA, and serves clients that do (gRPC client, Python client, tpserve CLI);
- certificate rotation: the router's certificate files are replaced (the
  way a Kubernetes Secret update swaps a symlinked directory) while a stream
  runs; new connections see the new certificate, the running stream
  finishes;
- with mTLS on the public port, clients without a certificate or with one
  from another CA are refused;
- with cluster mTLS, a world-size-2 group forms and serves (registration,
  rendezvous, collective bootstrap and Steps all over mTLS), while a worker
  with another CA's certificate cannot register, a forged Step without a
  valid client certificate is refused, and an unauthenticated rendezvous
  read is refused;
- private keys readable by other users, and --http_port next to TLS, stop
  the binaries at start-up with a message that names the fix."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from cluster import MODEL, Cluster, _runfile, client_package, stubs

pb, gpb = stubs("generation")
wpb, wgpb = stubs("worker")


def _script():
    for base in (os.path.join(os.environ.get("TEST_SRCDIR", ""),
                              os.environ.get("TEST_WORKSPACE", "tpserve")),
                 os.path.join(os.path.dirname(__file__), "../..")):
        p = os.path.join(base, "tests/tls/make_certs.sh")
        if os.path.exists(p):
            return p
    raise FileNotFoundError("tests/tls/make_certs.sh")


class Certs:
    """A folder of CAs and leaf certificates; path("x.crt")."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tpserve_certs_")

    def ca(self, name):
        subprocess.run([_script(), "ca", self.dir, name], check=True)

    def leaf(self, name, ca):
        subprocess.run([_script(), "leaf", self.dir, name, ca], check=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def creds(self, ca=None, client=None):
        """grpc channel credentials trusting `ca`, presenting `client`."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.read(ca + ".crt") if ca else None,
            private_key=self.read(client + ".key") if client else None,
            certificate_chain=self.read(client + ".crt") if client else None)


# A fresh subchannel per channel: every check is a new connection (handshake).
FRESH = [("grpc.use_local_subchannel_pool", 1)]


def health(target, creds, timeout=5):
    """SERVING (1) / NOT_SERVING (2) from grpc.health.v1, or the RpcError's
    code when the call fails (e.g. the handshake is refused)."""
    channel = (grpc.secure_channel(target, creds, options=FRESH) if creds
               else grpc.insecure_channel(target, options=FRESH))
    with channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            resp = check(b"", timeout=timeout)
            return resp[1] if len(resp) >= 2 else 0
        except grpc.RpcError as e:
            return e.code()


def kv_get(target, creds, key=b"tpserve/session"):
    """Raw tpserve.v1.KvStore/Get (KvGetRequest{key, timeout_ms=10}): the
    response bytes, or the RpcError's code."""
    request = b"\x0a" + bytes([len(key)]) + key + b"\x10\x0a"
    channel = (grpc.secure_channel(target, creds, options=FRESH) if creds
               else grpc.insecure_channel(target, options=FRESH))
    with channel:
        try:
            return channel.unary_unary("/tpserve.v1.KvStore/Get")(request, timeout=5)
        except grpc.RpcError as e:
            return e.code()


def start_failure(argv, timeout=60):
    """Runs a binary that must refuse to start; returns (exit code, output)."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


class PublicTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        for ca in ("pub_ca", "pub_ca2", "other_ca"):
            cls.certs.ca(ca)
        cls.certs.leaf("server", "pub_ca")
        cls.certs.leaf("server2", "pub_ca2")
        # The router reads <dir>/current/tls.{crt,key}; `current` is a symlink
        # to a versioned folder, swapped atomically like a Secret volume.
        cls.live = cls.certs.path("live")
        for version, leaf in (("v1", "server"), ("v2", "server2")):
            os.makedirs(os.path.join(cls.live, version))
            for ext in ("crt", "key"):
                shutil.copy2(cls.certs.path(f"{leaf}.{ext}"),
                             os.path.join(cls.live, version, f"tls.{ext}"))
        os.symlink("v1", os.path.join(cls.live, "current"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs.dir, ignore_errors=True)

    def test_tls_port_rotation_and_cli(self):
        current = os.path.join(self.live, "current")
        with Cluster(world_size=1, router_args=[
                f"--tls_cert_file={current}/tls.crt", f"--tls_key_file={current}/tls.key",
                "--tls_reload_interval=1s"],
                channel_credentials=self.certs.creds("pub_ca")) as c:
            target = c.address()
            self.assertIn("(TLS)", c.log_text("router"))
            # Plaintext client: the connection fails.
            self.assertEqual(health(target, None), grpc.StatusCode.UNAVAILABLE)
            # A client that trusts another CA: refused by its own check.
            self.assertEqual(health(target, self.certs.creds("other_ca")),
                             grpc.StatusCode.UNAVAILABLE)
            # The right CA: works, with the Python client too.
            self.assertEqual(health(target, self.certs.creds("pub_ca")), 1)
            tpc = client_package()
            with tpc.Client(target, tls_ca_file=self.certs.path("pub_ca.crt"),
                            timeout=120) as client:
                self.assertGreater(len(client.complete("Hello", max_tokens=4).token_ids), 0)
            # The CLI: with --tls_ca_file it connects; without, it cannot.
            cli = _runfile("tools/cli/tpserve")
            ok = subprocess.run([cli, "info", f"--router={target}",
                                 f"--tls_ca_file={self.certs.path('pub_ca.crt')}"],
                                capture_output=True, timeout=60)
            self.assertEqual(ok.returncode, 0, ok.stderr.decode())
            self.assertIn(b"SmolLM2", ok.stdout + ok.stderr)
            plain = subprocess.run([cli, "info", f"--router={target}", "--timeout=5"],
                                   capture_output=True, timeout=60)
            self.assertNotEqual(plain.returncode, 0)

            # Rotation: a long stream runs on the old certificate's connection.
            stub = gpb.GenerationStub(c.channel())
            got, result = [], {}

            def consume():
                try:
                    for r in stub.Generate(pb.GenerateRequest(
                            text="Tell me a long story.", max_tokens=400, ignore_eos=True),
                            timeout=300):
                        got.extend(r.token_ids)
                        if r.finish_reason:
                            result["finish"] = r.finish_reason
                    result["code"] = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    result["code"], result["details"] = e.code(), e.details()

            t = threading.Thread(target=consume)
            t.start()
            while len(got) < 3 and t.is_alive():
                time.sleep(0.02)
            os.symlink("v2", os.path.join(self.live, "current.new"))
            os.replace(os.path.join(self.live, "current.new"), current)
            swapped_at = len(got)
            # New connections get the new certificate within the reload
            # interval (1 s): they trust CA2 and no longer CA1.
            deadline = time.time() + 20
            while time.time() < deadline and health(target, self.certs.creds("pub_ca2")) != 1:
                time.sleep(0.2)
            self.assertEqual(health(target, self.certs.creds("pub_ca2")), 1)
            self.assertEqual(health(target, self.certs.creds("pub_ca")),
                             grpc.StatusCode.UNAVAILABLE)
            still_running = t.is_alive()
            t.join(300)
            self.assertFalse(t.is_alive())
            self.assertEqual(result.get("code"), grpc.StatusCode.OK, result)
            self.assertEqual(len(got), 400)
            self.assertLess(swapped_at, 400)
            self.assertTrue(still_running, "the stream ended before the new certificate was "
                            "checked; make it longer")

    def test_http_port_is_refused_next_to_tls(self):
        code, out = start_failure([
            _runfile("router/tpserve-router"), f"--model={MODEL}", "--port=0",
            "--metrics_port=0", "--rendezvous_port=0", "--http_port=0",
            f"--tls_cert_file={self.certs.path('server.crt')}",
            f"--tls_key_file={self.certs.path('server.key')}"])
        self.assertEqual(code, 1, out)
        self.assertIn("--http_port", out)
        self.assertIn("ingress", out)

    def test_world_readable_keys_are_refused(self):
        key = self.certs.path("loose.key")
        shutil.copy(self.certs.path("server.key"), key)
        os.chmod(key, 0o644)
        code, out = start_failure([
            _runfile("router/tpserve-router"), f"--model={MODEL}", "--port=0",
            "--metrics_port=0", "--rendezvous_port=0",
            f"--tls_cert_file={self.certs.path('server.crt')}", f"--tls_key_file={key}"])
        self.assertEqual(code, 1, out)
        self.assertIn("0644", out)
        self.assertIn(f"chmod 600 {key}", out)
        code, out = start_failure([
            _runfile("worker/tpserve-worker"), f"--model={MODEL}", "--port=0", "--metrics_port=0",
            f"--cluster_ca_file={self.certs.path('pub_ca.crt')}",
            f"--cluster_cert_file={self.certs.path('server.crt')}", f"--cluster_key_file={key}"])
        self.assertEqual(code, 1, out)
        self.assertIn("--cluster_key_file", out)
        self.assertIn("readable by other users", out)


class ClusterMtlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        for ca in ("pub_ca", "other_ca", "cluster_ca", "rogue_ca"):
            cls.certs.ca(ca)
        cls.certs.leaf("server", "pub_ca")
        cls.certs.leaf("client", "pub_ca")
        cls.certs.leaf("other_client", "other_ca")
        cls.certs.leaf("router", "cluster_ca")
        cls.certs.leaf("worker", "cluster_ca")
        cls.certs.leaf("rogue", "rogue_ca")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certs.dir, ignore_errors=True)

    def cluster_flags(self, leaf, ca="cluster_ca"):
        p = self.certs.path
        return [f"--cluster_ca_file={p(ca + '.crt')}", f"--cluster_cert_file={p(leaf + '.crt')}",
                f"--cluster_key_file={p(leaf + '.key')}"]

    def test_mtls_everywhere(self):
        p = self.certs.path
        with Cluster(world_size=2, comm="gloo",
                     router_args=[f"--tls_cert_file={p('server.crt')}",
                                  f"--tls_key_file={p('server.key')}",
                                  f"--tls_client_ca_file={p('pub_ca.crt')}",
                                  "--health_port=0"]
                     + self.cluster_flags("router"),
                     worker_args=self.cluster_flags("worker") + ["--health_port=0"],
                     channel_credentials=self.certs.creds("pub_ca", "client")) as c:
            target = c.address()
            self.assertIn("(mTLS)", c.log_text("router"))
            self.assertIn("(cluster mTLS)", c.log_text("worker1"))
            # Public port: a client certificate from the client CA is required.
            self.assertEqual(health(target, self.certs.creds("pub_ca", "client")), 1)
            self.assertEqual(health(target, self.certs.creds("pub_ca")),
                             grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(health(target, self.certs.creds("pub_ca", "other_client")),
                             grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(health(target, None), grpc.StatusCode.UNAVAILABLE)
            # Kubelet probes (plaintext, no certificate) use the health ports,
            # which carry the same statuses and nothing else.
            with open(os.path.join(c.tmp, "router.json")) as f:
                router_health = f"127.0.0.1:{json.load(f)['health_port']}"
            with open(os.path.join(c.tmp, "worker1.json")) as f:
                worker_health = f"127.0.0.1:{json.load(f)['health_port']}"
            self.assertEqual(health(router_health, None), 1)
            self.assertEqual(health(worker_health, None), 1)  # a member of a serving group
            with grpc.insecure_channel(router_health, options=FRESH) as channel:
                with self.assertRaises(grpc.RpcError) as ctx:
                    list(gpb.GenerationStub(channel).Generate(
                        pb.GenerateRequest(text="Hi", max_tokens=2), timeout=5))
                self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            with grpc.insecure_channel(worker_health, options=FRESH) as channel:
                with self.assertRaises(grpc.RpcError) as ctx:
                    wgpb.WorkerStub(channel).Step(wpb.StepRequest(epoch=1), timeout=5)
                self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            # The group formed and serves over cluster mTLS (TP=2, Gloo
            # bootstrapped through the mTLS store).
            with c.client(tls_ca_file=p("pub_ca.crt"), tls_cert_file=p("client.crt"),
                          tls_key_file=p("client.key"), timeout=120) as client:
                out = client.complete("The capital of France is", max_tokens=8)
                self.assertEqual(len(out.token_ids), 8)

            member = self.certs.creds("cluster_ca", "worker")
            outsider = self.certs.creds("cluster_ca", "rogue")  # trusts us, we do not trust it
            anonymous = self.certs.creds("cluster_ca")
            # Rendezvous store: members read it, nobody else does.
            store = f"127.0.0.1:{c.rendezvous_port}"
            self.assertIsInstance(kv_get(store, member), bytes)
            self.assertTrue(kv_get(store, member).startswith(b"\x08\x01"))  # found=true
            for creds in (None, anonymous, outsider):
                self.assertEqual(kv_get(store, creds), grpc.StatusCode.UNAVAILABLE)
            # A forged Step straight to a worker: refused without a cluster
            # certificate; the same port answers a member (so the refusal is
            # the certificate, not the address).
            worker = f"127.0.0.1:{c.worker_ports[1]}"
            for creds in (None, anonymous, outsider):
                channel = (grpc.secure_channel(worker, creds, options=FRESH) if creds
                           else grpc.insecure_channel(worker, options=FRESH))
                with channel, self.assertRaises(grpc.RpcError) as ctx:
                    wgpb.WorkerStub(channel).Step(wpb.StepRequest(epoch=1), timeout=5)
                self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            with grpc.secure_channel(worker, member, options=FRESH) as channel:
                info = wgpb.WorkerStub(channel).Info(wpb.InfoRequest(), timeout=5)
                self.assertEqual(info.rank, 1)

            # A worker with another CA's certificate (trusting ours) cannot
            # register: it never gets past the store, and the group keeps serving.
            rogue_log = os.path.join(c.tmp, "rogue.log")
            with open(rogue_log, "w") as f:
                rogue = subprocess.Popen([
                    _runfile("worker/tpserve-worker"), f"--model={MODEL}", "--rank=0",
                    "--world_size=2", f"--rendezvous=127.0.0.1:{c.rendezvous_port}",
                    "--host=127.0.0.1", "--port=0", "--metrics_port=0", "--threads=1",
                    "--kv_cache_mb=16"] + self.cluster_flags("rogue", ca="cluster_ca"),
                    stdout=f, stderr=subprocess.STDOUT)
            try:
                deadline = time.time() + 8
                while time.time() < deadline and rogue.poll() is None:
                    time.sleep(0.2)
            finally:
                rogue.terminate()
                rogue.wait(timeout=15)
            with open(rogue_log) as f:
                text = f.read()
            self.assertIn("unreachable", text)
            self.assertNotIn("registered as rank", text)
            self.assertEqual(c.health(), 1)
            with c.client(tls_ca_file=p("pub_ca.crt"), tls_cert_file=p("client.crt"),
                          tls_key_file=p("client.key"), timeout=120) as client:
                self.assertEqual(len(client.complete("Hi", max_tokens=4).token_ids), 4)


if __name__ == "__main__":
    unittest.main()
