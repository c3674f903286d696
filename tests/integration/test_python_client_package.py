"""clients/python installs into a fresh venv (python -m venv
--system-site-packages: grpcio and protobuf from Debian, nothing fetched) and
its own tests pass there, importing the installed copy; the checked-in stubs
equal what clients/python/regen_stubs.sh generates from the proto now; and
the installed client talks to a real router."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from cluster import Cluster, _proto_dir

SRC = os.path.join(_proto_dir(), "clients", "python")


class PythonClientPackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tpserve_client_pkg_")
        # A private copy: pip builds in the source tree, which is read-only here.
        cls.src = os.path.join(cls.tmp, "src")
        shutil.copytree(SRC, cls.src, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        cls.venv = os.path.join(cls.tmp, "venv")
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", cls.venv],
                       check=True)
        cls.py = os.path.join(cls.venv, "bin", "python3")
        r = subprocess.run([cls.py, "-m", "pip", "install", "-q", "--no-index",
                            "--no-build-isolation", "--disable-pip-version-check", cls.src],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"pip install failed:\n{r.stdout}\n{r.stderr}")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_py(self, *args, **kw):
        # cwd outside the source tree, so only the installed package can be imported.
        return subprocess.run([self.py, *args], capture_output=True, text=True, cwd=self.tmp,
                              timeout=300, **kw)

    def test_installed_into_the_venv(self):
        r = self.run_py("-c", "import tpserve_client, sys; print(tpserve_client.__file__)")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip().startswith(self.venv), r.stdout)

    def test_own_tests_pass_against_the_installed_package(self):
        tests = os.path.join(self.src, "tests")
        r = self.run_py("-m", "unittest", "discover", "-s", tests, "-t", tests)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("OK", r.stderr)

    def test_checked_in_stubs_are_current(self):
        out = os.path.join(self.tmp, "regen")
        env = dict(os.environ)
        # regen_stubs.sh finds the proto two levels above itself.
        root = os.path.join(self.tmp, "root")
        os.makedirs(os.path.join(root, "clients"), exist_ok=True)
        shutil.copytree(os.path.join(_proto_dir(), "proto"), os.path.join(root, "proto"))
        shutil.copytree(self.src, os.path.join(root, "clients", "python"))
        subprocess.run(["bash", os.path.join(root, "clients", "python", "regen_stubs.sh"), out],
                       check=True, env=env)
        for name in ("generation_pb2.py", "generation_pb2_grpc.py", "__init__.py"):
            with open(os.path.join(out, name)) as a, \
                    open(os.path.join(self.src, "tpserve_client", "_generated", name)) as b:
                self.assertEqual(a.read(), b.read(),
                                 f"{name} is stale: run clients/python/regen_stubs.sh")

    def test_installed_client_against_a_real_router(self):
        script = (
            "import sys, tpserve_client\n"
            "c = tpserve_client.Client(sys.argv[1], timeout=120)\n"
            "info = c.model_info()\n"
            "chunks = list(c.generate('The capital of France is', max_tokens=6, ignore_eos=True))\n"
            "out = tpserve_client.Completion\n"
            "print(info.model_name, len(chunks), sum(len(x.token_ids) for x in chunks),\n"
            "      chunks[-1].usage.completion_tokens, chunks[-1].finish_reason)\n")
        with Cluster(world_size=1) as cluster:
            r = self.run_py("-c", script, cluster.address())
        self.assertEqual(r.returncode, 0, r.stderr)
        name, n_chunks, n_tokens, usage, finish = r.stdout.split()
        self.assertEqual(name, "SmolLM2-135M-Instruct")
        self.assertGreater(int(n_chunks), 1)
        self.assertEqual(int(n_tokens), 6)
        self.assertEqual(int(usage), 6)
        self.assertEqual(finish, "length")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
