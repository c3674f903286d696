#!/usr/bin/env python3
"""Tables from an Nsight Compute CSV (ncu --csv).

    ncu --csv --metrics gpu__time_duration.sum ... > step.csv
    ncu_summary.py step.csv STEPS

STEPS: how many decode steps the profiled range held (decode_bench
--profile_steps). Prints a markdown table, kernels by time per step:
launches per step, mean microseconds per launch, microseconds per step and
share of the summed kernel time. Nsight Compute runs kernels one at a time,
so the sum is close to, not equal to, a step's time without the profiler.

    ncu --csv --section SpeedOfLight --section Occupancy --section LaunchStats \\
        --section WarpStateStats ... > prefill.csv
    ncu_summary.py --launches prefill.csv

One row per profiled launch, in launch order: the kernel (return type,
namespaces and parameter list dropped), grid and block, duration, the
Speed Of Light throughputs (SM, memory, DRAM; percent of peak), achieved
occupancy, registers per thread and warp cycles per issued instruction
(how long a warp waits between instructions). A metric the CSV lacks is
left blank.
"""
import csv
import sys
from collections import defaultdict

UNIT_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3,
           "ms": 1e3, "second": 1e6, "s": 1e6}

# (column, the metric's name in the section CSV) for --launches.
LAUNCH_COLUMNS = [
    ("SM %", "Compute (SM) Throughput"),
    ("memory %", "Memory Throughput"),
    ("DRAM %", "DRAM Throughput"),
    ("occupancy %", "Achieved Occupancy"),
    ("registers", "Registers Per Thread"),
    ("cycles per issue", "Warp Cycles Per Issued Instruction"),
]


def rows(path):
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # skip ==PROF== and program output
    return csv.DictReader(lines)


def number(text):
    return float(text.replace(",", ""))


def micros(r):
    unit = r.get("Metric Unit", "")
    if unit not in UNIT_US:
        sys.exit("ncu_summary.py: unknown unit %r for %s" % (unit, r.get("Metric Name")))
    return number(r["Metric Value"]) * UNIT_US[unit]


def short_name(name):
    """'void ns::(anonymous namespace)::K<256, T<int>>(args)' -> 'K<256, T<int>>'."""
    depth = 0
    for i in range(len(name) - 1, -1, -1):  # the parameter list's opening parenthesis
        c = name[i]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
            if depth == 0:
                if i > 0 and name[i - 1] not in " :":
                    name = name[:i]
                break
    depth = 0
    start = 0
    for i, c in enumerate(name):  # after the last top-level space or '::'
        if c in "<(":
            depth += 1
        elif c in ">)":
            depth -= 1
        elif depth == 0 and (c == " " or (c == ":" and name[i - 1:i] == ":")):
            start = i + 1
    return name[start:]


def per_step(path, steps):
    total_us = defaultdict(float)
    launches = defaultdict(int)
    for r in rows(path):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = short_name(r["Kernel Name"])
        total_us[name] += micros(r)
        launches[name] += 1
    if not launches:
        sys.exit("ncu_summary.py: no gpu__time_duration.sum rows in %s" % path)
    grand = sum(total_us.values())
    print("| kernel | launches per step | mean us | us per step | share |")
    print("|---|---|---|---|---|")
    for name in sorted(total_us, key=total_us.get, reverse=True):
        print("| %s | %.1f | %.2f | %.1f | %.1f%% |" % (
            name, launches[name] / steps, total_us[name] / launches[name], total_us[name] / steps,
            100.0 * total_us[name] / grand))
    print("| total | %.1f | | %.1f | |" % (sum(launches.values()) / steps, grand / steps))


def per_launch(path):
    order = []
    launch = {}
    for r in rows(path):
        key = r.get("ID")
        if key not in launch:
            order.append(key)
            launch[key] = {"kernel": short_name(r.get("Kernel Name", "?")),
                           "grid": r.get("Grid Size", ""), "block": r.get("Block Size", "")}
        name = r.get("Metric Name")
        if name == "Duration" or name == "gpu__time_duration.sum":
            launch[key]["us"] = micros(r)
        else:
            launch[key][name] = r.get("Metric Value", "")
    if not order:
        sys.exit("ncu_summary.py: no kernels in %s" % path)
    head = ["#", "kernel", "grid", "block", "us"] + [c for c, _ in LAUNCH_COLUMNS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    total = 0.0
    for i, key in enumerate(order):
        l = launch[key]
        total += l.get("us", 0.0)
        cells = [str(i), l["kernel"], l["grid"], l["block"],
                 "%.2f" % l["us"] if "us" in l else ""]
        cells += [l.get(metric, "") for _, metric in LAUNCH_COLUMNS]
        print("| " + " | ".join(cells) + " |")
    print("| total | %d launches | | | %.1f |%s" % (len(order), total, " |" * len(LAUNCH_COLUMNS)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--launches":
        per_launch(sys.argv[2])
    elif len(sys.argv) == 3:
        per_step(sys.argv[1], int(sys.argv[2]))
    else:
        sys.exit("usage: ncu_summary.py CSV STEPS | ncu_summary.py --launches CSV")


if __name__ == "__main__":
    main()
