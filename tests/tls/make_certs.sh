#!/usr/bin/env bash
# Test certificates made with openssl at test time (nothing is checked in).
#
#   make_certs.sh ca   DIR NAME           -> DIR/NAME.crt, DIR/NAME.key (self-signed CA)
#   make_certs.sh leaf DIR NAME CA [CN]   -> DIR/NAME.crt, DIR/NAME.key signed by DIR/CA.*
#
# Leaf certificates name localhost and 127.0.0.1 (or what $SAN lists, e.g.
# SAN=DNS:tpserve-router.tpserve.svc.cluster.local) and are good for both
# server and client authentication; keys are EC P-256, mode 0600.
set -euo pipefail
kind=$1 dir=$2 name=$3
cd "$dir"
umask 077
case "$kind" in
  ca)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=${name}" -keyout "${name}.key" -out "${name}.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      2>/dev/null
    ;;
  leaf)
    ca=$4 cn=${5:-$3}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=${cn}" \
      -keyout "${name}.key" -out "${name}.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=${SAN:-DNS:localhost,IP:127.0.0.1}" \
      > "${name}.ext"
    openssl x509 -req -in "${name}.csr" -CA "${ca}.crt" -CAkey "${ca}.key" -CAcreateserial \
      -days 2 -extfile "${name}.ext" -out "${name}.crt" 2>/dev/null
    rm -f "${name}.csr" "${name}.ext"
    ;;
  *) echo "usage: make_certs.sh ca|leaf DIR NAME [CA [CN]]" >&2; exit 2 ;;
esac
chmod 600 "${name}.key"
chmod 644 "${name}.crt"
