#!/usr/bin/env bash
# promtool (Prometheus' rule checker) for tests/k8s: taken from Debian's
# prometheus package without installing it (the package would also bring the
# server and its service). Kept once per machine in the tpserve cache
# (${TPSERVE_CACHE:-~/.cache/tpserve}) and linked as .deps/promtool.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${TPSERVE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tpserve}
BIN="$CACHE/promtool/promtool"
mkdir -p "$ROOT/.deps"
if [ ! -x "$BIN" ]; then
  echo "[setup] extracting promtool from Debian's prometheus package into $CACHE/promtool"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"  # apt's download user must be able to write here
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) ||
    (apt-get update -qq && cd "$tmp" && apt-get download -qq prometheus)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$CACHE/promtool"
  cp "$tmp/x/usr/bin/promtool" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
fi
[ -L "$ROOT/.deps/promtool" ] || [ -e "$ROOT/.deps/promtool" ] || ln -s "$BIN" "$ROOT/.deps/promtool"
echo "[setup] promtool: $("$BIN" --version 2>&1 | head -1)"
