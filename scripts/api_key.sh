#!/usr/bin/env bash
# Makes lines for the router's --api_keys_file (docs/operations.md "API keys
# and quotas"). The file stores only SHA-256 hashes; the key itself is shown
# once, here, and never written anywhere by this script.
#
#   scripts/api_key.sh new alice rps=5 tpm=60000 streams=4
#       key:  tps-3f9c...           (give this to the client)
#       line: alice 5e88...  rps=5 tpm=60000 streams=4   (append to the keys file)
#   printf '%s' "$KEY" | scripts/api_key.sh hash alice tpm=1000
#       alice 5e88...  tpm=1000     (the line for an existing key, read from stdin)
set -euo pipefail
usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 name=$2
shift 2
[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "name may use letters, digits, '.', '_' and '-'" >&2; exit 2; }
case $cmd in
  new)
    key="tps-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
    echo "key:  $key"
    echo "line: $name $hash $*"
    ;;
  hash)
    key=$(cat)
    [ -n "$key" ] || { echo "no key on stdin" >&2; exit 2; }
    echo "$name $(printf '%s' "$key" | sha256sum | cut -d' ' -f1) $*"
    ;;
  *) usage ;;
esac
