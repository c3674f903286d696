#!/usr/bin/env python3
"""Summarises the CUDA emulator's memory-transaction MODEL of a decode step
(kernels/cuda/emu/memory_model.h, written by decode_model under
scripts/gpu_model.sh) as a Markdown table per step: per kernel and per step,
the warp requests, sectors and lines per request, useful-byte efficiency, the
distinct bytes (DRAM traffic if L2 holds each kernel's working set), and an
H100 time estimate from stated constants. A model, not a measurement.

    gpu_model_report.py model.tsv [weight_bytes_by_tag.txt]
"""
import collections
import sys

# H100 SXM constants (NVIDIA's datasheet): HBM3 bandwidth and dense bf16
# tensor throughput. Decode kernels are bandwidth-bound, so the estimate is
# bytes / HBM bandwidth; the flop term is not modelled (see docs).
HBM_BYTES_PER_S = 3.35e12
BF16_FLOPS = 989e12


def main():
    rows = collections.OrderedDict()
    launch_bytes = {}
    with open(sys.argv[1]) as f:
        for line in f:
            tag, launch, kernel, site, kind, req, sec, lines, useful, distinct = line.rstrip("\n").split("\t")
            k = rows.setdefault((tag, kernel), collections.Counter())
            k["requests"] += int(req)
            k["sectors"] += int(sec)
            k["lines"] += int(lines)
            k["useful"] += int(useful)
            k[kind + "_requests"] += int(req)
            if (tag, launch) not in launch_bytes:
                launch_bytes[(tag, launch)] = (kernel, int(distinct))
                k["distinct"] += int(distinct)
                k["launches"] += 1
    weights = {}
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            for line in f:
                if ": weight bytes " in line:
                    tag, n = line.strip().split(": weight bytes ")
                    weights[tag] = int(n)
    tags = []
    for tag, _ in rows:
        if tag not in tags:
            tags.append(tag)
    for tag in tags:
        print(f"\n**{tag}** (modelled, H100 at {HBM_BYTES_PER_S / 1e12:.2f} TB/s)\n")
        print("| kernel | launches | warp requests | sectors/request | lines/request | useful-byte efficiency | distinct MB | modelled µs | measured µs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        total = collections.Counter()
        for (t, kernel), k in sorted(rows.items(), key=lambda kv: -kv[1]["distinct"]):
            if t != tag:
                continue
            total.update(k)
            us = k["distinct"] / HBM_BYTES_PER_S * 1e6
            print(f"| {kernel} | {k['launches']} | {k['requests']} | {k['sectors'] / max(k['requests'], 1):.2f} | "
                  f"{k['lines'] / max(k['requests'], 1):.2f} | {k['useful'] / max(32 * k['sectors'], 1):.0%} | "
                  f"{k['distinct'] / 1e6:.2f} | {us:.1f} | |")
        step_us = total["distinct"] / HBM_BYTES_PER_S * 1e6
        print(f"| **step** | {total['launches']} | {total['requests']} | {total['sectors'] / max(total['requests'], 1):.2f} | "
              f"{total['lines'] / max(total['requests'], 1):.2f} | {total['useful'] / max(32 * total['sectors'], 1):.0%} | "
              f"{total['distinct'] / 1e6:.2f} | {step_us:.1f} | |")
        if tag in weights:
            roof_us = weights[tag] / HBM_BYTES_PER_S * 1e6
            print(f"\nweight-streaming roofline {roof_us:.1f} µs ({weights[tag] / 1e6:.1f} MB of weights); "
                  f"modelled step traffic is {total['distinct'] / max(weights[tag], 1):.2f}x the weight bytes, "
                  f"roofline fraction {roof_us / max(step_us, 1e-9):.0%}; "
                  f"L1/L2 sector traffic {32 * total['sectors'] / 1e6:.1f} MB ({32 * total['sectors'] / max(total['distinct'], 1):.1f}x the distinct bytes)")


if __name__ == "__main__":
    main()
