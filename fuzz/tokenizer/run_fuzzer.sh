#!/usr/bin/env bash
# Builds the tokenizer libFuzzer target with clang (-fsanitize=fuzzer,address,
# plus UBSan) and runs it for SECONDS (default 300) over a scratch copy of the
# checked-in seed corpus. Needs the default model and models/vocab (setup.sh).
#
#   fuzz/tokenizer/run_fuzzer.sh 300
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SECONDS_TO_RUN=${1:-300}
CXX=${CXX:-clang++-14}
WORK=${TPSERVE_FUZZ_DIR:-/tmp/tpserve-fuzz-tokenizer}
mkdir -p "$WORK/obj" "$WORK/corpus"
FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
       -I"$ROOT" -Wall -Wextra -Werror)
SRCS=(router/tokenizer/unicode.cc router/tokenizer/pre_tokenizer.cc router/tokenizer/bpe_model.cc
      router/tokenizer/tokenizer.cc router/tokenizer/tokenizer_data.cc
      router/tokenizer/incremental_detokenizer.cc router/tokenizer/tokenizer_gguf.cc
      router/tokenizer/chat_template.cc router/tokenizer/jinja/value.cc
      router/tokenizer/jinja/lexer.cc router/tokenizer/jinja/parser.cc router/tokenizer/jinja/builtins.cc
      router/tokenizer/jinja/template.cc common/status.cc common/check.cc
      formats/gguf_reader.cc formats/mapped_file.cc formats/dtype.cc
      fuzz/tokenizer/tokenizer_fuzz.cc)
# Objects are rebuilt when their source or any header they may include changed
# (a stale object against a changed header is an ODR mismatch, not a finding).
newest_header=$(ls -t router/tokenizer/*.h router/tokenizer/jinja/*.h common/*.h formats/*.h worker/model/*.h | head -1)
objs=()
for s in "${SRCS[@]}"; do
  o="$WORK/obj/$(echo "$s" | tr / _).o"
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ "$newest_header" -nt "$o" ]; then
    echo "[fuzz] compiling $s"
    "$CXX" "${FLAGS[@]}" -c "$s" -o "$o"
  fi
  objs+=("$o")
done
ABSL=$(pkg-config --libs absl_status absl_statusor absl_strings absl_str_format absl_hash \
       absl_raw_hash_set absl_flat_hash_map)
"$CXX" -fsanitize=fuzzer,address,undefined "${objs[@]}" $ABSL -o "$WORK/tokenizer_fuzz"
cp -n fuzz/tokenizer/corpus/* "$WORK/corpus/" 2>/dev/null || true
echo "[fuzz] running $WORK/tokenizer_fuzz for ${SECONDS_TO_RUN}s"
TPSERVE_ROOT="$ROOT" "$WORK/tokenizer_fuzz" -max_total_time="$SECONDS_TO_RUN" -max_len=2048 \
  -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$WORK/" "$WORK/corpus"
