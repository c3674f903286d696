#!/usr/bin/env bash
# Builds the model-format libFuzzer targets with Debian's clang 14
# (-fsanitize=fuzzer,address) and runs them, one after another, each for
# SECONDS with -jobs=1. Results: docs/fuzzing.md.
#
#   scripts/fuzz.sh [gguf|safetensors|all] [SECONDS]      # default: all 300
#   FUZZ_OUT=/tmp/f scripts/fuzz.sh gguf 60
#
# The working corpus starts from fuzz/model/corpus/<target>/ and grows under
# $FUZZ_OUT (never in the source tree). Crashes land in $FUZZ_OUT/artifacts_<target>/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
WHICH=${1:-all}
SECONDS_EACH=${2:-300}
OUT=${FUZZ_OUT:-${TMPDIR:-/tmp}/tpserve-fuzz}
CXX=${CXX_FUZZ:-clang++-14}
mkdir -p "$OUT"

ABSL_MODULES="absl_status absl_statusor absl_strings absl_str_format absl_hash absl_raw_hash_set"
ABSL_LIBS=$(pkg-config --libs $ABSL_MODULES)
MODEL_SRCS="formats/dtype.cc formats/mapped_file.cc formats/gguf_reader.cc
  worker/model/safetensors.cc worker/model/tensor_names.cc worker/model/mapped_model_source.cc
  worker/model/gguf_model.cc worker/model/hf_model.cc worker/model/model_source.cc
  worker/model/quantize.cc worker/model/kquant.cc worker/model/ggml_convert.cc
  common/status.cc common/check.cc"

build() {  # build NAME
  local name=$1
  echo "== building $OUT/${name}_fuzz"
  $CXX -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address -I"$ROOT" \
    fuzz/model/${name}_fuzz.cc $MODEL_SRCS $ABSL_LIBS -o "$OUT/${name}_fuzz"
}

run() {  # run NAME
  local name=$1
  local corpus=$OUT/corpus_$name
  mkdir -p "$corpus" "$OUT/artifacts_$name"
  cp -n fuzz/model/corpus/$name/* "$corpus"/ 2>/dev/null || true
  echo "== fuzzing $name for ${SECONDS_EACH}s (log: $OUT/fuzz-$name.log)"
  (cd "$OUT" && ./${name}_fuzz -jobs=1 -workers=1 -max_total_time="$SECONDS_EACH" -timeout=10 \
     -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/artifacts_$name/" "$corpus" \
     > "$OUT/fuzz-$name.driver.log" 2>&1) || true
  mv -f "$OUT/fuzz-0.log" "$OUT/fuzz-$name.log" 2>/dev/null || true
  grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY" \
    "$OUT/fuzz-$name.log" | tail -6
  local crashes
  crashes=$(ls "$OUT/artifacts_$name" | wc -l)
  echo "== $name: $crashes artifact(s) in $OUT/artifacts_$name"
  [ "$crashes" -eq 0 ]
}

targets=(gguf safetensors)
[ "$WHICH" != all ] && targets=("$WHICH")
for t in "${targets[@]}"; do build "$t"; done
status=0
for t in "${targets[@]}"; do run "$t" || status=1; done
exit $status
