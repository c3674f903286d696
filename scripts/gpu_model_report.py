#!/usr/bin/env python3
"""Summarises the CUDA emulator's memory-transaction MODEL of decode steps
(kernels/cuda/emu/memory_model.h, written by decode_model under
scripts/gpu_model.sh) as a Markdown table per step: per kernel and per step,
the warp requests, sectors and lines per request, useful-byte efficiency,
the distinct bytes (the DRAM traffic if L2 holds each kernel's working set),
and an H100 time estimate from the constants below. A model, not a
measurement: a fixed cost per launch (calibrated on the first device run)
plus memory time; it ignores occupancy, L2 misses, shared-memory and
instruction throughput, and latency beyond the launch cost.

    gpu_model_report.py model.tsv [decode_model_stdout.txt] [--tsv]

--tsv prints kernels/cuda/model_h100.tsv lines instead (the step's tag, a
decode_bench row prefix, then the prediction), for scripts/gpu_check.sh.

Steps tagged "<name> (layers K of L)" at two layer counts K1 < K2 of the
same model stand for one step <name> of L layers: every count of every
kernel (and the weight bytes) is extrapolated linearly, c(K1) + (L - K1)
(c(K2) - c(K1)) / (K2 - K1), exact when every layer launches the same
kernels on the same shapes (decode at a fixed context).
"""
import collections
import re
import sys

# H100 SXM5 constants. HBM3 bandwidth 3.35 TB/s (NVIDIA datasheet). The L1
# term: 132 SMs at the 1.98 GHz boost clock, each L1 serving one 128-byte
# wavefront per clock, a request costing one wavefront per distinct line it
# touches. Decode kernels are bandwidth-bound; the 989 TFLOP/s dense bf16
# rate is not reached by any decode kernel and is not modelled.
HBM_BYTES_PER_S = 3.35e12
SMS, CLOCK_HZ, L1_WAVEFRONT_BYTES = 132, 1.98e9, 128
L1_BYTES_PER_S = SMS * CLOCK_HZ * L1_WAVEFRONT_BYTES


# Per launch, added to the memory time: what a decode step's small kernels
# cost on the H100 beyond moving their bytes. Calibrated on the first device
# run (2026-12-05, docs/data/gpu/h100_2026-12-05/ncu_decode_step_quick.md,
# warm caches, after): the step's 89 launches other than attention averaged
# 4.3 µs each, for 0.0-0.5 µs of modelled memory time.
LAUNCH_US = 4.0


def modelled_us(k):
    """launches x LAUNCH_US + max(HBM time of the distinct bytes, L1 time of the lines requested)."""
    memory_s = max(k["distinct"] / HBM_BYTES_PER_S, k["lines"] * L1_WAVEFRONT_BYTES / L1_BYTES_PER_S)
    return k["launches"] * LAUNCH_US + memory_s * 1e6


def load(path):
    rows = collections.OrderedDict()
    seen = set()
    with open(path) as f:
        for line in f:
            tag, launch, kernel, _site, kind, req, sec, lines, useful, distinct = line.rstrip("\n").split("\t")
            k = rows.setdefault((tag, kernel), collections.Counter())
            k["requests"] += int(req)
            k["sectors"] += int(sec)
            k["lines"] += int(lines)
            k["useful"] += int(useful)
            if (tag, launch) not in seen:
                seen.add((tag, launch))
                k["distinct"] += int(distinct)
                k["launches"] += 1
    return rows


def weights(path):
    out = {}
    with open(path) as f:
        for line in f:
            if ": weight bytes " in line:
                tag, n = line.strip().split(": weight bytes ")
                out[tag] = int(n)
    return out


def extrapolate(rows, w):
    """Merges "<name> (layers K of L)" steps into <name> at L layers (module doc)."""
    runs = collections.defaultdict(dict)  # name -> {K: tag}
    target = {}
    for tag in dict.fromkeys(t for t, _ in rows):
        m = re.fullmatch(r"(.*) \(layers (\d+) of (\d+)\)", tag)
        if m is not None:
            runs[m.group(1)][int(m.group(2))] = tag
            target[m.group(1)] = int(m.group(3))
    for name, by_layers in runs.items():
        if len(by_layers) < 2:
            continue  # one layer count: printed as run
        (k1, t1), (k2, t2) = sorted(by_layers.items())[:2]
        f = (target[name] - k1) / (k2 - k1)
        kernels = dict.fromkeys(kn for t, kn in rows if t in (t1, t2))
        for kn in kernels:
            a, b = rows.get((t1, kn), collections.Counter()), rows.get((t2, kn), collections.Counter())
            rows[(name, kn)] = collections.Counter({c: round(a[c] + f * (b[c] - a[c])) for c in set(a) | set(b)})
        if t1 in w and t2 in w:
            w[name] = round(w[t1] + f * (w[t2] - w[t1]))
        for key in [k for k in rows if k[0] in by_layers.values()]:
            del rows[key]


def row(name, k, per_kernel_us):
    req = max(k["requests"], 1)
    return (f"| {name} | {k['launches']} | {k['requests']} | {k['sectors'] / req:.2f} | {k['lines'] / req:.2f} | "
            f"{k['useful'] / max(32 * k['sectors'], 1):.0%} | {k['distinct'] / 1e6:.2f} | "
            f"{32 * k['sectors'] / 1e6:.1f} | {per_kernel_us:.1f} | |")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rows = load(args[0])
    w = weights(args[1]) if len(args) > 1 else {}
    extrapolate(rows, w)
    tags = list(dict.fromkeys(tag for tag, _ in rows))
    for tag in tags:
        total = collections.Counter()
        kernels = sorted(((kn, k) for (t, kn), k in rows.items() if t == tag), key=lambda x: -modelled_us(x[1]))
        step_us = sum(modelled_us(k) for _, k in kernels)
        for _, k in kernels:
            total.update(k)
        if "--tsv" in sys.argv:
            batch = int(tag.split("-")[1].split()[0])
            print(f"{tag}\tmodel {batch / step_us * 1e6:.0f} tok/s ({step_us:.1f} µs/step)")
            continue
        print(f"\n**{tag}** (modelled H100; the measured column is for the first device run)\n")
        print("| kernel | launches | warp requests | sectors/request | lines/request | useful-byte efficiency "
              "| distinct MB | sector MB | modelled µs | measured µs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for kn, k in kernels:
            print(row(kn.replace("|", "\\|"), k, modelled_us(k)))
        print(row("**step**", total, step_us))
        if tag in w:
            roof_us = w[tag] / HBM_BYTES_PER_S * 1e6
            print(f"\nWeights {w[tag] / 1e6:.1f} MB: weight-streaming roofline {roof_us:.1f} µs per step; "
                  f"modelled step {step_us:.1f} µs = {roof_us / step_us:.0%} of the roofline.")


if __name__ == "__main__":
    main()
