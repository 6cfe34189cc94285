#!/bin/sh
# samples/seed000-tokens-socket/run.sh - seed 000's input: "key-metric-value" tokens sent
# to a socket, read by telem ingest --listen, written as one JSON event per token.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
"$TELEM" ingest -f tokens --listen tcp://127.0.0.1:0 > "$tmp/events.ndjson" 2> "$tmp/err" &
pid=$!
# the port was chosen by the system: ingest announces it on stderr
n=0
until grep -q "listening on" "$tmp/err"; do
    n=$((n + 1)); [ $n -lt 100 ] || { cat "$tmp/err" >&2; exit 1; }; sleep 0.1
done
port=$(sed -n 's/.*listening on tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/err")
# a client sends the tokens, as `nc localhost 9000` does in the seed
nc -N 127.0.0.1 "$port" < input.txt
want=$(wc -w < input.txt)
n=0
until [ "$(wc -l < "$tmp/events.ndjson")" -ge "$want" ]; do
    n=$((n + 1)); [ $n -lt 100 ] || { echo "events missing" >&2; exit 1; }; sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || true
pid=""
cat "$tmp/events.ndjson"
