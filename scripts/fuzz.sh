#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang 14 and runs them, one after
# another, each for SECONDS with -jobs=1. Results: docs/fuzzing.md.
#   gguf, safetensors   model readers (fuzz/model), -fsanitize=fuzzer,address
#   request             public request path: GenerateRequest bytes -> validation
#                       -> tokenization / chat rendering (fuzz/request)
#   template            chat-template engine, arbitrary templates and
#                       arguments (fuzz/template)
# request and template also run UBSan; they need the default model
# (scripts/setup.sh) and protoc for generation.pb.cc.
#
#   scripts/fuzz.sh [gguf|safetensors|request|template|all] [SECONDS]   # default: all 300
#   FUZZ_OUT=/tmp/f scripts/fuzz.sh request 600
#
# The working corpus starts from fuzz/<dir>/corpus/ and grows under $FUZZ_OUT
# (never in the source tree). Crashes land in $FUZZ_OUT/artifacts_<target>/.
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

TOKENIZER_SRCS="router/tokenizer/unicode.cc router/tokenizer/pre_tokenizer.cc
  router/tokenizer/bpe_model.cc router/tokenizer/tokenizer.cc router/tokenizer/tokenizer_data.cc
  router/tokenizer/incremental_detokenizer.cc router/tokenizer/tokenizer_gguf.cc
  router/tokenizer/chat_template.cc router/tokenizer/jinja/value.cc router/tokenizer/jinja/lexer.cc
  router/tokenizer/jinja/parser.cc router/tokenizer/jinja/builtins.cc
  router/tokenizer/jinja/template.cc common/status.cc common/check.cc
  formats/gguf_reader.cc formats/mapped_file.cc formats/dtype.cc common/hf_chat_template.cc"
TEMPLATE_SRCS="router/tokenizer/unicode.cc router/tokenizer/chat_template.cc
  router/tokenizer/jinja/value.cc router/tokenizer/jinja/lexer.cc router/tokenizer/jinja/parser.cc
  router/tokenizer/jinja/builtins.cc router/tokenizer/jinja/template.cc
  router/tokenizer/tokenizer.cc router/tokenizer/tokenizer_data.cc router/tokenizer/pre_tokenizer.cc
  router/tokenizer/bpe_model.cc common/status.cc common/check.cc common/hf_chat_template.cc"
SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

# Compiles SRC to an object under $OUT/obj, again only when the source or any
# header it may include changed (a stale object against a changed header is
# an ODR mismatch, not a finding).
compile() {  # compile SRC -> prints the object path
  local src=$1 obj
  obj="$OUT/obj/$(echo "$src" | tr / _).o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$NEWEST_HEADER" -nt "$obj" ]; then
    echo "[fuzz] compiling $src" >&2
    $CXX -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $SAN_FLAGS \
      -I"$ROOT" -I"$OUT/gen" -c "$src" -o "$obj"
  fi
  echo "$obj"
}

build_sources() {  # build_sources NAME SRC... : one sanitized fuzzer from sources
  local name=$1 objs=() s
  shift
  mkdir -p "$OUT/obj"
  NEWEST_HEADER=$(ls -t router/tokenizer/*.h router/tokenizer/jinja/*.h router/api/*.h common/*.h \
    formats/*.h "$OUT"/gen/proto/tpserve/v1/*.h 2>/dev/null | head -1 || true)
  for s in "$@"; do objs+=("$(compile "$s")"); done
  $CXX -fsanitize=fuzzer $SAN_FLAGS "${objs[@]}" $ABSL_LIBS \
    $(pkg-config --libs absl_flat_hash_map absl_synchronization protobuf) -o "$OUT/${name}_fuzz"
}

build() {  # build NAME
  local name=$1
  echo "== building $OUT/${name}_fuzz"
  case $name in
    request)
      mkdir -p "$OUT/gen"
      protoc --proto_path=. --cpp_out="$OUT/gen" proto/tpserve/v1/generation.proto
      build_sources request fuzz/request/request_fuzz.cc router/api/prompt_tokens.cc \
        router/api/request_validation.cc "$OUT/gen/proto/tpserve/v1/generation.pb.cc" $TOKENIZER_SRCS
      ;;
    template)
      build_sources template fuzz/template/template_fuzz.cc $TEMPLATE_SRCS
      ;;
    *)
      $CXX -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address -I"$ROOT" \
        fuzz/model/${name}_fuzz.cc $MODEL_SRCS $ABSL_LIBS -o "$OUT/${name}_fuzz"
      ;;
  esac
}

corpus_dir() {  # corpus_dir NAME: the checked-in seeds
  case $1 in
    request | template) echo "fuzz/$1/corpus" ;;
    *) echo "fuzz/model/corpus/$1" ;;
  esac
}

run() {  # run NAME
  local name=$1
  local corpus=$OUT/corpus_$name
  mkdir -p "$corpus" "$OUT/artifacts_$name"
  cp -n "$(corpus_dir "$name")"/* "$corpus"/ 2>/dev/null || true
  echo "== fuzzing $name for ${SECONDS_EACH}s (log: $OUT/fuzz-$name.log)"
  (cd "$OUT" && TPSERVE_ROOT="$ROOT" ./${name}_fuzz -jobs=1 -workers=1 -max_total_time="$SECONDS_EACH" -timeout=10 \
     -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/artifacts_$name/" "$corpus" \
     > "$OUT/fuzz-$name.driver.log" 2>&1) || true
  mv -f "$OUT/fuzz-0.log" "$OUT/fuzz-$name.log" 2>/dev/null || true
  grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY" \
    "$OUT/fuzz-$name.log" | tail -6
  local crashes slow
  # slow-unit-* are libFuzzer's reports of inputs over 10 s, not findings.
  crashes=$(ls "$OUT/artifacts_$name" | grep -vc '^slow-unit-' || true)
  slow=$(ls "$OUT/artifacts_$name" | grep -c '^slow-unit-' || true)
  echo "== $name: $crashes crash/timeout/oom artifact(s), $slow slow unit(s) in $OUT/artifacts_$name"
  [ "$crashes" -eq 0 ]
}

targets=(gguf safetensors request template)
[ "$WHICH" != all ] && targets=("$WHICH")
for t in "${targets[@]}"; do build "$t"; done
status=0
for t in "${targets[@]}"; do run "$t" || status=1; done
exit $status
