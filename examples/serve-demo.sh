#!/usr/bin/env bash
# Starts `strata serve` on a fresh temporary data directory, runs
# examples/quickstart.sh against it, then (in a terminal) keeps serving so
# the web console can be opened, until Ctrl-C; elsewhere it stops.
#
#   examples/serve-demo.sh path/to/strata
set -euo pipefail

STRATA="${1:?usage: serve-demo.sh path/to/strata}"
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="$(mktemp -d)"
LOG="$DATA/serve.log"
cleanup() {
  if [ -n "${SERVER:-}" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

"$STRATA" serve --data-dir "$DATA/data" --listen 127.0.0.1:0 --plugins "$HERE/../plugins/dist" >"$LOG" 2>&1 &
SERVER=$!
for _ in $(seq 1 600); do
  url=$(sed -n 's/^strata listening on //p' "$LOG")
  [ -n "$url" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; echo "serve-demo: strata serve exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$LOG" >&2; echo "serve-demo: strata serve did not start" >&2; exit 1; }
echo "strata serve is listening on $url (data in $DATA/data)"

MP_API_URL="$url" MP_API_KEY="$(cat "$DATA/data/admin.key")" MP_NAMESPACE=default \
  "$HERE/quickstart.sh" "$HERE/data/docs"

if [ -t 0 ] && [ -t 1 ]; then
  echo
  echo "Open the console at $url/console/ and sign in with the key"
  echo "  $(cat "$DATA/data/admin.key")   (namespace: default)"
  echo "Ctrl-C stops the server and removes its data."
  MP_API_URL="$url" MP_API_KEY="$(cat "$DATA/data/admin.key")" MP_NAMESPACE=default \
    "$HERE/quickstart.sh" "$HERE/data/docs" >/dev/null &
  wait "$SERVER"
fi
