#!/usr/bin/env python3
"""The kernels' ptxas reports (`nvcc -Xptxas=-v`, kept by bazel/cuda.bzl as
`<library>_ptxas`): registers, stack frame and spills per kernel and
architecture, checked against a baseline.

    ptxas_report.py table REPORT...              # every kernel, one row each
    ptxas_report.py check BASELINE REPORT...     # exit 1 on a difference
    ptxas_report.py write BASELINE REPORT...     # the baseline from the reports

The baseline lists the kernels that spill, with their bytes. `check` fails
when a kernel spills that is not listed, spills more or less than listed
(a kernel that stopped spilling is taken off the list, so the list stays
true), or when a listed kernel is gone; and when a kernel breaks a register
rule (REGISTER_RULES). ptxas, not a GPU, produces every figure here.
"""
import re
import subprocess
import sys

# Kernels whose register count at launch something else relies on:
# (demangled-name substring, architecture, registers, why).
REGISTER_RULES = [
    ("GemmWgmmaTmaKernel", "sm_90a", 168,
     "gemm_wgmma.cu's setmaxnreg counts (producers 40 or 120, two consumer warpgroups at 232 or "
     "192) add up to the 64512 registers of a 384-thread block launched at 168 per thread; at "
     "fewer, the consumers' setmaxnreg.inc would wait forever"),
]

COMPILING = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
PROPERTIES = re.compile(r"Function properties for (\S+)")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers")


def parse(paths):
    """{(mangled name, arch): {"registers", "stack", "spill_stores", "spill_loads"}} of the
    entry functions in the reports."""
    kernels = {}
    for path in paths:
        arch = None
        current = None  # the entry function the next figures belong to
        with open(path) as f:
            for line in f:
                m = COMPILING.search(line)
                if m:
                    current = (m.group(1), m.group(2))
                    arch = m.group(2)
                    kernels.setdefault(current, {"registers": 0, "stack": 0, "spill_stores": 0,
                                                 "spill_loads": 0})
                    continue
                m = PROPERTIES.search(line)
                if m:
                    # A device function's properties (not an entry) are not counted.
                    current = (m.group(1), arch) if (m.group(1), arch) in kernels else None
                    continue
                if current is None:
                    continue
                m = FRAME.search(line)
                if m:
                    k = kernels[current]
                    k["stack"], k["spill_stores"], k["spill_loads"] = map(int, m.groups())
                    continue
                m = USED.search(line)
                if m:
                    kernels[current]["registers"] = int(m.group(1))
    return kernels


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                             check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return dict(zip(names, names))
    return dict(zip(names, out))


def readable(kernels):
    """{(demangled name, arch): figures}, the anonymous-namespace hash removed
    (it changes with the file's contents)."""
    names = demangle(sorted({name for name, _ in kernels}))
    out = {}
    for (name, arch), v in kernels.items():
        out[(names[name].replace("(anonymous namespace)::", ""), arch)] = v
    return out


def load_baseline(path):
    rows = {}
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            kernel, arch, stores, loads = line.rstrip("\n").split("\t")
            rows[(kernel, arch)] = (int(stores), int(loads))
    return rows


def spills(kernels):
    return {key: (v["spill_stores"], v["spill_loads"]) for key, v in kernels.items()
            if v["spill_stores"] or v["spill_loads"]}


def check(baseline_path, kernels):
    """Problems found, one line each."""
    problems = []
    if not kernels:
        return ["no entry functions in the reports: were they built with -Xptxas=-v?"]
    want = load_baseline(baseline_path)
    have = spills(kernels)
    for key in sorted(set(want) | set(have)):
        kernel, arch = key
        if key not in kernels:
            problems.append("%s (%s): in the baseline, not built any more" % (kernel, arch))
        elif key not in want:
            problems.append("%s (%s): spills %d bytes stored, %d loaded; the baseline says none"
                            % (kernel, arch, *have[key]))
        elif have.get(key, (0, 0)) != want[key]:
            problems.append("%s (%s): spills %d bytes stored, %d loaded; the baseline says %d, %d"
                            % (kernel, arch, *have.get(key, (0, 0)), *want[key]))
    for part, arch, registers, why in REGISTER_RULES:
        matched = [(k, v) for (k, a), v in kernels.items() if part in k and a == arch]
        if not matched:
            problems.append("register rule for %s (%s): no such kernel built" % (part, arch))
        for kernel, v in matched:
            if v["registers"] != registers:
                problems.append("%s (%s): %d registers, not %d: %s"
                                % (kernel, arch, v["registers"], registers, why))
    return problems


def write(baseline_path, kernels):
    with open(baseline_path, "w") as f:
        f.write("# Kernels that spill registers, as ptxas reports them (ptxas_report.py write).\n"
                "# kernel\tarchitecture\tspill stores (bytes)\tspill loads (bytes)\n")
        for (kernel, arch), (stores, loads) in sorted(spills(kernels).items()):
            f.write("%s\t%s\t%d\t%d\n" % (kernel, arch, stores, loads))


def table(kernels):
    print("| kernel | arch | registers | stack | spill stores | spill loads |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (kernel, arch), v in sorted(kernels.items()):
        print("| %s | %s | %d | %d | %d | %d |" % (kernel, arch, v["registers"], v["stack"],
                                                 v["spill_stores"], v["spill_loads"]))


def main(argv):
    if len(argv) < 3 or argv[1] not in ("table", "check", "write"):
        sys.exit(__doc__)
    if argv[1] == "table":
        table(readable(parse(argv[2:])))
        return 0
    if len(argv) < 4:
        sys.exit(__doc__)
    kernels = readable(parse(argv[3:]))
    if argv[1] == "write":
        write(argv[2], kernels)
        return 0
    problems = check(argv[2], kernels)
    for p in problems:
        print("ptxas_report: " + p)
    if problems:
        print("ptxas_report: %d problem(s) in %d kernels. If a change in spills is intended: "
              "python3 kernels/cuda/ptxas_report.py write kernels/cuda/ptxas_baseline.tsv "
              "bazel-bin/kernels/cuda/_objs_cuda/*/*.ptxas.txt" % (len(problems), len(kernels)))
        return 1
    print("ptxas_report: %d kernels, %d spilling as the baseline lists; register rules hold"
          % (len(kernels), len(spills(kernels))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
