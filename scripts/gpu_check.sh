#!/usr/bin/env bash
# GPU check in two steps, for a GPU machine that has only the NVIDIA driver
# (CUDA runtime / NCCL optional) and no network.
#
#   scripts/gpu_check.sh pack   # here (no GPU needed): bazel build, then copy every
#                               # "gpu"-tagged test and benchmark binary plus the
#                               # shared libraries they need into .gpu_bundle/
#                               # (64 MiB at most; libcuda and libnccl are not
#                               # packed: they come from the target machine).
#   scripts/gpu_check.sh run    # on the GPU machine, from a copy of .gpu_bundle/
#                               # (.gpu_bundle/gpu_check.sh run) or from the repo:
#                               # runs every test and benchmark within 8 minutes
#                               # and prints one results table; exits non-zero on
#                               # any failure. Then, with the time left and where
#                               # ncu exists, per-kernel times of a batch-1 decode
#                               # step, and per-launch throughputs, occupancy and
#                               # stalls of a prefill's first layer on each GEMM
#                               # kernel (Nsight Compute; scripts/ncu_summary.py).
#
# Environment: GPU_CHECK_SCOPE (pack; space-separated target patterns, default //...),
# BAZEL_OUTPUT_BASE (pack; passed as --output_base), GPU_CHECK_BUDGET_S (run;
# default 450 seconds for everything), GPU_CHECK_PROFILE (run; 0 skips the
# profiles).
set -uo pipefail

MAX_BUNDLE_BYTES=$((64 * 1024 * 1024))

die() { echo "gpu_check: $*" >&2; exit 1; }

pack() {
  local root
  root="$(cd "$(dirname "$0")/.." && pwd)"
  cd "$root" || die "no repo at $root"
  local scope="${GPU_CHECK_SCOPE:-//...}"
  local patterns
  read -ra patterns <<<"$scope"
  local union="${patterns[0]}" p
  for p in "${patterns[@]:1}"; do union="$union + $p"; done
  local bazel=(bazel)
  [ -n "${BAZEL_OUTPUT_BASE:-}" ] && bazel+=("--output_base=${BAZEL_OUTPUT_BASE}")
  # Default dynamic mode: tests share one copy of each project library (the
  # CUDA kernels are ~5 MB of SASS), which keeps the bundle small.
  local flags=(--symlink_prefix=/)

  echo "gpu_check: building ${scope} ..."
  "${bazel[@]}" build "${flags[@]}" -- "${patterns[@]}" || die "bazel build ${scope} failed"
  local targets
  targets=$("${bazel[@]}" query "attr(tags, '\\bgpu\\b', kind('cc_test|cc_binary', ${union}))" 2>/dev/null) ||
    die "bazel query failed"
  [ -n "$targets" ] || die "no gpu-tagged targets under ${scope}"
  local bin
  bin=$("${bazel[@]}" info "${flags[@]}" bazel-bin 2>/dev/null) || die "bazel info failed"

  local out="$root/.gpu_bundle"
  rm -rf "$out"
  mkdir -p "$out/bin" "$out/lib"
  echo '*' >"$out/.gitignore"  # the bundle ignores itself: never committed
  : >"$out/manifest.txt"
  local originals=()
  local t rel kind name
  for t in $targets; do
    rel="${t#//}"
    rel="${rel/://}"  # //kernels/cuda:gemm_test -> kernels/cuda/gemm_test
    [ -x "$bin/$rel" ] || die "missing binary $bin/$rel for $t"
    if "${bazel[@]}" query "kind(cc_test, $t)" 2>/dev/null | grep -q .; then kind=test; else kind=bench; fi
    name="${rel//\//__}"
    originals+=("$bin/$rel")
    cp "$bin/$rel" "$out/bin/$name"
    chmod u+w "$out/bin/$name"
    strip --strip-debug "$out/bin/$name" 2>/dev/null || true
    echo "$kind $name $t" >>"$out/manifest.txt"
  done

  # Shared libraries: everything ldd resolves except the C runtime, the driver
  # (libcuda) and NCCL (taken from the target machine's installation). ldd runs
  # on the originals so their rpaths find Bazel's project libraries.
  local lib base
  for f in "${originals[@]}"; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
    if ldd "$f" | grep -q "not found"; then die "unresolved libraries in $f"; fi
  done | sort -u | while read -r lib; do
    base=$(basename "$lib")
    case "$base" in
      libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libcuda.so* | libnccl.so*) ;;
      *) cp -L "$lib" "$out/lib/$base" && strip --strip-unneeded "$out/lib/$base" 2>/dev/null ;;
    esac
  done
  # Small generated models for the full-model parity test (the default model
  # is ~100 MB, over the bundle limit): GQA Q4_1 llama, Q8_0 qwen2 with biases.
  mkdir -p "$out/models"
  "${bazel[@]}" build "${flags[@]}" //tests/testmodel:make_test_model || die "building make_test_model failed"
  local gen="$bin/tests/testmodel/make_test_model"
  TPSERVE_ROOT="$root" "$gen" --out="$out/models/tiny_llama_q4_1.gguf" --dtype=q4_1 --hidden=256 --layers=3 \
    --heads=4 --kv_heads=2 --ffn=512 --vocab=4096 || die "generating a test model failed"
  TPSERVE_ROOT="$root" "$gen" --out="$out/models/tiny_qwen2_q8_0.gguf" --arch=qwen2 --qkv_bias --dtype=q8_0 \
    --hidden=192 --layers=2 --heads=6 --kv_heads=2 --ffn=320 --vocab=3000 --tied=false ||
    die "generating a test model failed"

  # Tests first, then benchmarks.
  sort -s -k1,1r "$out/manifest.txt" -o "$out/manifest.txt"
  cp "$root/scripts/gpu_check.sh" "$out/gpu_check.sh"
  cp "$root/scripts/ncu_summary.py" "$out/ncu_summary.py"
  # The emulator's memory-transaction model's predictions (scripts/gpu_model.sh),
  # printed next to each benchmark row so the first device run calibrates it.
  cp "$root/kernels/cuda/model_h100.tsv" "$out/model_h100.tsv"

  local size
  size=$(du -sb "$out" | cut -f1)
  echo "gpu_check: packed $(wc -l <"$out/manifest.txt") binaries and $(ls "$out/lib" | wc -l) libraries" \
    "into .gpu_bundle/: $((size / 1024 / 1024)) MiB (${size} bytes, limit ${MAX_BUNDLE_BYTES})"
  [ "$size" -le "$MAX_BUNDLE_BYTES" ] || die "bundle exceeds 64 MiB"
  echo "gpu_check: on the GPU machine run: .gpu_bundle/gpu_check.sh run"
}

# Runs decode_bench under Nsight Compute for at most `limit` seconds, only
# its profiler range (--profile-from-start off), warm caches, unlocked
# clocks, CSV; prints the benchmark's rows and ncu_summary.py's table of it
# (`summary`: that script's arguments, CSV standing for the file), or the
# end of what ncu said when it failed.
ncu_decode_bench() {  # bundle, ncu, limit, summary, ncu options..., --, decode_bench options...
  local bundle=$1 ncu=$2 limit=$3 summary=$4 csv ncu_args=()
  shift 4
  while [ "$1" != -- ]; do
    ncu_args+=("$1")
    shift
  done
  shift
  csv=$(mktemp)
  if timeout --kill-after=5 "$limit" "$ncu" --profile-from-start off --clock-control none \
    --cache-control none --csv "${ncu_args[@]}" \
    "$bundle/bin/worker__engine__cuda__decode_bench" "$@" >"$csv" 2>"$csv.err"; then
    grep -h '^| bench:' "$csv" || true
    # shellcheck disable=SC2086  # the summary's arguments split on purpose
    python3 "$bundle/ncu_summary.py" ${summary//CSV/$csv} || tail -n 5 "$csv"
  else
    echo "gpu_check: ncu failed or timed out after ${limit}s:"
    tail -n 5 "$csv.err" "$csv"
  fi
  rm -f "$csv" "$csv.err"
}

# Per-kernel times of a warm batch-1 decode step of decode_bench's 1.1B
# model with graphs (only the timed steps: decode_bench --profile_steps),
# where `left` seconds allow.
profile_decode() {  # bundle, ncu, seconds left
  local steps=4
  if [ "$3" -le 60 ]; then
    echo "gpu_check: time budget spent: decode step not profiled"
    return 0
  fi
  echo
  echo "Nsight Compute ($2), decode_bench --profile_steps=$steps: batch-1 decode of the generated"
  echo "1.1B Q4_1 model with graphs, $steps warm steps (--cache-control none --clock-control none):"
  echo
  ncu_decode_bench "$1" "$2" "$(($3 < 180 ? $3 : 180))" "CSV $steps" \
    --metrics gpu__time_duration.sum -- --profile_steps="$steps"
}

# Per-launch Nsight Compute sections (duration, Speed Of Light, occupancy,
# registers, warp cycles per issued instruction) of the first `launches`
# kernels of one warm 2048-token prefill of the 1.1B model (about its first
# layer: conversions to bf16, the four GEMMs, RoPE, attention, norms), on
# each prefill GEMM kernel (decode_bench
# --profile_prefill=mma|mma_dequant|wgmma_tma|wgmma).
profile_prefill() {  # bundle, ncu, seconds left
  local kernel launches=24 left=$3 t0
  for kernel in mma mma_dequant wgmma_tma wgmma; do
    if [ "$left" -le 60 ]; then
      echo "gpu_check: time budget spent: prefill ($kernel) not profiled"
      return 0
    fi
    t0=$SECONDS
    echo
    echo "Nsight Compute ($2), decode_bench --profile_prefill=$kernel: the first $launches kernels of"
    echo "a warm 2048-token prefill of the generated 1.1B Q4_1 model (--cache-control none):"
    echo
    ncu_decode_bench "$1" "$2" "$((left < 150 ? left : 150))" "--launches CSV" \
      --launch-count "$launches" --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats -- --profile_prefill="$kernel"
    left=$((left - (SECONDS - t0)))
  done
}

# Counts from gtest's summary lines ("[  PASSED  ] 3 tests.", "[  SKIPPED ] 2 tests, ...").
gtest_count() {  # file, label
  sed -n "s/^\[ *$2 *\] \([0-9]*\) tests\{0,1\}[.,].*/\1/p" "$1" | head -1
}

# A benchmark row with the model's prediction for it appended: the entry of
# model_h100.tsv ("<row name or prefix>\t<prediction>") that names the row
# exactly, else the longest one that starts it, else "not modelled".
with_model() {  # bundle, row
  local name prediction
  name=$(printf '%s' "$2" | awk -F' [|] ' '{sub(/^[|] bench: /, "", $1); print $1}')
  prediction=$(awk -F'\t' -v n="$name" '
    !/^#/ && NF >= 2 && index(n, $1) == 1 && length($1) > best {best = length($1); p = $2}
    END {if (best > 0) print p}' "$1/model_h100.tsv" 2>/dev/null)
  printf '%s %s |\n' "$2" "${prediction:-not modelled}"
}

run() {
  local here bundle
  here="$(cd "$(dirname "$0")" && pwd)"
  if [ -f "$here/manifest.txt" ]; then
    bundle="$here"
  elif [ -f "$here/../.gpu_bundle/manifest.txt" ]; then
    bundle="$(cd "$here/../.gpu_bundle" && pwd)"
  else
    die "no bundle found: run 'scripts/gpu_check.sh pack' first"
  fi
  export TPSERVE_GPU_TEST_MODELS
  TPSERVE_GPU_TEST_MODELS=$(find "$bundle/models" -name '*.gguf' 2>/dev/null | sort | paste -sd: -)
  # Tests that generate models copy this one's vocabulary (4096 tokens).
  export TPSERVE_TEST_VOCAB="$bundle/models/tiny_llama_q4_1.gguf"
  export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # NCCL is not packed. Where the loader does not find it, use one that a
  # Python package installed (the 2026-12-05 machines had it only there).
  if ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2' &&
    ! find ${LD_LIBRARY_PATH//:/ } -maxdepth 1 -name 'libnccl.so.2' 2>/dev/null | grep -q .; then
    local nccl
    nccl=$(find /usr /opt /root /home -name 'libnccl.so.2' 2>/dev/null | head -1)
    if [ -n "$nccl" ]; then
      LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$nccl")"
      echo "gpu_check: NCCL from $nccl"
    else
      echo "gpu_check: no libnccl.so.2 found: binaries linked with NCCL will not start"
    fi
  fi
  local budget="${GPU_CHECK_BUDGET_S:-450}"
  local start=$SECONDS
  local logs
  logs=$(mktemp -d)
  trap 'rm -rf "$logs"' RETURN

  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L 2>/dev/null | sed 's/^/gpu_check: /'
  else
    echo "gpu_check: nvidia-smi not found"
  fi

  local rows=() failed=0
  local kind name target left limit rc log passed skipped failures status item_failed
  while read -r kind name target; do
    left=$((budget - (SECONDS - start)))
    if [ "$left" -le 5 ]; then
      rows+=("| ${kind}: ${target} | NOT RUN: time budget spent | | | | |")
      failed=1
      continue
    fi
    log="$logs/$name.log"
    item_failed=0
    if [ "$kind" = test ]; then
      limit=$((left < 120 ? left : 120))
      timeout --kill-after=5 "$limit" "$bundle/bin/$name" --gtest_color=no >"$log" 2>&1
      rc=$?
      passed=$(gtest_count "$log" PASSED)
      skipped=$(gtest_count "$log" SKIPPED)
      failures=$(gtest_count "$log" FAILED)
      if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        status="FAIL: timed out after ${limit}s"
      elif [ "$rc" -ne 0 ]; then
        status="FAIL (rc=$rc, ${failures:-?} failed)"
      elif [ "${passed:-0}" -eq 0 ] && [ "${skipped:-0}" -gt 0 ]; then
        status="SKIPPED ($(grep -m1 -o 'skipped: [^]]*' "$log" || echo skipped), ${skipped} cases)"
      else
        status="PASS (${passed:-0} passed, ${skipped:-0} skipped)"
      fi
      [ "${status#FAIL}" != "$status" ] && item_failed=1
      rows+=("| test: ${target} | ${status} | | | | |")
    else
      limit=$((left < 300 ? left : 300))
      timeout --kill-after=5 "$limit" "$bundle/bin/$name" >"$log" 2>"$log.err"
      rc=$?
      while IFS= read -r line; do rows+=("$(with_model "$bundle" "$line")"); done < <(grep '^| bench:' "$log")
      if [ "$rc" -ne 0 ]; then
        rows+=("| bench: ${target} | FAIL (rc=$rc) | | | | |")
        item_failed=1
      fi
      grep '^| bench:' "$log" | grep -qE 'FAIL|MISMATCH|CUDA ERROR' && item_failed=1
    fi
    [ "$item_failed" -ne 0 ] && failed=1
    if [ "$item_failed" -ne 0 ] && [ -s "$log" ]; then
      echo "---- ${target} (last lines) ----" >&2
      tail -n 15 "$log" >&2
    fi
  done <"$bundle/manifest.txt"

  echo
  echo "| what | status | ours | baseline | ratio | modelled H100 (a model, not a measurement) |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  if [ "${GPU_CHECK_PROFILE:-1}" != 0 ]; then
    local ncu
    ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    if [ -z "$ncu" ] || ! command -v python3 >/dev/null; then
      echo "gpu_check: no ncu or python3: nothing profiled"
    else
      profile_decode "$bundle" "$ncu" "$((budget - (SECONDS - start)))"
      profile_prefill "$bundle" "$ncu" "$((budget - (SECONDS - start)))"
    fi
  fi
  echo "gpu_check: finished in $((SECONDS - start)) s: $([ "$failed" -eq 0 ] && echo OK || echo FAILED)"
  return "$failed"
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *) die "usage: $0 pack|run" ;;
esac
