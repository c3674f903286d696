#!/usr/bin/env bash
# Every thread of a process carries the binary's static TLS on its stack, and
# civetweb (the /metrics server) starts its threads with 100 KB stacks: a
# worker whose TLS outgrows them cannot serve /metrics ("null context when
# constructing CivetServer"). In the CUDA-emulator build, static __shared__
# arrays are thread_local (kernels/cuda/emu/emu.h), so large ones belong in
# dynamic shared memory (kernels/cuda/shared_memory.cuh). Checks each binary
# given against a 64 KiB budget.
set -euo pipefail
status=0
for bin in "$@"; do
  hex=$(readelf -lW "$bin" | awk '$1 == "TLS" { print $6 }')
  size=$((${hex:-0}))
  if [ "$size" -gt $((64 * 1024)) ]; then
    echo "FAIL: $bin has $size bytes of static TLS (budget 65536); its largest TLS symbols:"
    readelf -sW "$bin" | awk '$4 == "TLS"' | sort -k3 -n -r | head -5 | awk '{ print "  " $3, $8 }' | c++filt
    status=1
  else
    echo "ok: $bin has $size bytes of static TLS (budget 65536)"
  fi
done
exit $status
