#!/usr/bin/env python3
"""Per-kernel table of an Nsight Compute CSV of gpu__time_duration.sum.

    ncu --csv --metrics gpu__time_duration.sum ... > step.csv
    ncu_summary.py step.csv STEPS

STEPS: how many decode steps the profiled range held (decode_bench
--profile_steps). Prints a markdown table, kernels by time per step:
launches per step, mean microseconds per launch, microseconds per step and
share of the summed kernel time. Nsight Compute runs kernels one at a time,
so the sum is close to, not equal to, a step's time without the profiler.
"""
import csv
import sys
from collections import defaultdict

UNIT_US = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}


def rows(path):
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # skip ==PROF== and program output
    return csv.DictReader(lines)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ncu_summary.py CSV STEPS")
    steps = int(sys.argv[2])
    total_us = defaultdict(float)
    launches = defaultdict(int)
    for r in rows(sys.argv[1]):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = r.get("Metric Unit", "")
        if unit not in UNIT_US:
            sys.exit("ncu_summary.py: unknown unit %r" % unit)
        name = r["Kernel Name"]
        total_us[name] += float(r["Metric Value"].replace(",", "")) * UNIT_US[unit]
        launches[name] += 1
    if not launches:
        sys.exit("ncu_summary.py: no gpu__time_duration.sum rows in %s" % sys.argv[1])
    grand = sum(total_us.values())
    print("| kernel | launches per step | mean us | us per step | share |")
    print("|---|---|---|---|---|")
    for name in sorted(total_us, key=total_us.get, reverse=True):
        print("| %s | %.1f | %.2f | %.1f | %.1f%% |" % (
            name, launches[name] / steps, total_us[name] / launches[name], total_us[name] / steps,
            100.0 * total_us[name] / grand))
    print("| total | %.1f | | %.1f | |" % (sum(launches.values()) / steps, grand / steps))


if __name__ == "__main__":
    main()
