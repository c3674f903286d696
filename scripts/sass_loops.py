#!/usr/bin/env python3
"""Local-memory traffic inside a kernel's loops, from its SASS: where ptxas's
"N bytes spill stores" lands. ptxas reports a function's spill bytes, not
whether the reloads sit in a hot loop or once at entry; this prints, for
each innermost loop of each function (a backward branch to a label before
it), the loop's instructions and its local (LDL/STL), generic (LD/ST),
global (LDG/STG) and shared (LDS/STS) memory instructions, shuffles and
special-function ops, with the source lines most of it came from.

    nvcc -cubin -lineinfo -O3 --expt-relaxed-constexpr -std=c++20 -I. \\
      -Ibazel-main/external/abseil-cpp~ -gencode=arch=compute_90a,code=sm_90a \\
      kernels/cuda/decode_persistent.cu -o /tmp/k.cubin
    nvdisasm -c -g /tmp/k.cubin > /tmp/k.sass
    scripts/sass_loops.py /tmp/k.sass [--function SUBSTRING] [--local]

--local lists only loops with local-memory instructions. nvdisasm is not
part of the CUDA toolkit installed here; the `nvidia-cuda-nvdisasm` Python
package carries it (nvidia/cu13/bin/nvdisasm). A callee that is not inlined
appears as `$<entry>$<callee>`, once per entry function that calls it.
Static counts: how often a loop runs, and what a local load costs there
(an L1 hit, usually), only a device says.
"""
import argparse
import collections
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_summary import short_name  # noqa: E402

COUNTED = ("LDL", "STL", "LD", "ST", "LDG", "STG", "LDS", "STS", "SHFL", "MUFU")
LINE = re.compile(r'//## File "([^"]+)", line (\d+)')
LABEL = re.compile(r"^\s*(\.L_x_\d+):")
INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;")
INTERNAL = re.compile(r"_INTERNAL_\w+?::")  # a file's internal-linkage prefix (hashed)
BACKWARD = re.compile(r"\bBRA\s+(?:\S+,\s*)?`?\(?(\.L_x_\d+)")


def functions(lines):
    """[(name, [(instruction text, (file, line) or None)], {label: index})]"""
    out = []
    where = None
    for line in lines:
        if line.startswith(".text.") or line.startswith("$"):
            out.append((line.strip().rstrip(":").removeprefix(".text."), [], {}))
            where = None
            continue
        if not out:
            continue
        m = LINE.search(line)
        if m:
            where = (m.group(1), int(m.group(2)))
            continue
        m = LABEL.match(line)
        if m:
            out[-1][2][m.group(1)] = len(out[-1][1])
            continue
        m = INSTRUCTION.search(line)
        if m:
            out[-1][1].append((m.group(1), where))
    return out


def readable(names):
    """{symbol: short name}: "$<entry>$<callee>" (a callee not inlined) becomes
    "Entry<...> > Callee<...>", each part demangled and without namespaces or
    parameters; where c++filt is missing, the symbols stay as they are."""
    parts = sorted({p for n in names for p in n.split("$") if p})
    try:
        out = subprocess.run(["c++filt"], input="\n".join(parts), capture_output=True, text=True,
                             check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        out = parts
    short = {p: INTERNAL.sub("", short_name(d)) for p, d in zip(parts, out)}
    return {n: " > ".join(short[p] for p in n.split("$") if p) for n in names}


def opcode(text):
    """The opcode without its modifiers or predicate: "@!P0 LDL.64 R2, [R1]" -> "LDL"."""
    words = text.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0].split(".")[0] if words else ""


def loops(instructions, labels):
    """Innermost loops as (first, last) instruction indices."""
    found = []
    for i, (text, _) in enumerate(instructions):
        m = BACKWARD.search(text)
        if m and opcode(text) == "BRA" and labels.get(m.group(1), i + 1) <= i:
            found.append((labels[m.group(1)], i))
    return sorted({(a, b) for a, b in found
                   if not any((c, d) != (a, b) and a <= c and d <= b for c, d in found)})


def summary(instructions, first, last):
    body = instructions[first:last + 1]
    counts = collections.Counter(opcode(t) for t, _ in body)
    where = collections.Counter((f.rsplit("/", 1)[-1], n) for _, w in body if w for f, n in [w])
    files = collections.Counter(f for f, _ in where.elements())
    top = []
    for f, _ in files.most_common(2):
        lines = sorted(n for (g, n) in where.elements() if g == f)
        top.append("%s:%d-%d" % (f, lines[0], lines[-1]))
    return len(body), {k: counts[k] for k in COUNTED if counts[k]}, ", ".join(top)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sass", help="nvdisasm -c -g output")
    parser.add_argument("--function", default="", help="only functions whose name contains this")
    parser.add_argument("--local", action="store_true", help="only loops with LDL or STL")
    args = parser.parse_args(argv)
    with open(args.sass) as f:
        found = functions(f)
    if not found:
        sys.exit("sass_loops.py: no function in %s (nvdisasm -c -g output expected)" % args.sass)
    names = readable([name for name, _, _ in found])
    print("| function | loop (instructions) | size | memory and other ops | source |")
    print("| --- | --- | ---: | --- | --- |")
    for name, instructions, labels in found:
        if args.function not in names[name]:
            continue
        for first, last in loops(instructions, labels):
            size, counts, source = summary(instructions, first, last)
            if args.local and not (counts.get("LDL") or counts.get("STL")):
                continue
            ops = " ".join("%s %d" % kv for kv in counts.items()) or "-"
            print("| %s | %d-%d | %d | %s | %s |" % (names[name], first, last, size, ops, source))


if __name__ == "__main__":
    main()
