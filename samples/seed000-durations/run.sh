#!/bin/sh
# samples/seed000-durations/run.sh - seed 000's SocketMetricDifference: tokens
# "key-metric-value" sent to a socket (the value is the time the metric was taken), a
# start followed by an end per key, and the time taken between them, as the seed's
# Metric(key, timeTaken, duration).
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# telem ingest listens as `nc -l 9000` does in the seed (on a free port here) and turns
# each token into an event; telem cep matches a start then an end per key. The value is
# the event time, in seconds; b's start arrives before c's start, 150 s out of order, so
# the watermark allows 10 minutes of disorder.
( "$TELEM" ingest -f tokens --listen tcp://127.0.0.1:0 2> "$tmp/err" & echo $! > "$tmp/pid"; wait ) |
    tee "$tmp/events.ndjson" |
    "$TELEM" cep --key key --time-field value --time-unit s --max-out-of-order 10m \
        --pattern 'start: metric == "start" -> end: metric == "end"' \
        --emit '{"key": start.key, "metric": "timeTaken", "value": end.value - start.value}' \
        --no-watermarks > "$tmp/out" &
cep=$!
n=0
until [ -s "$tmp/pid" ] && grep -q "listening on" "$tmp/err" 2>/dev/null; do
    n=$((n + 1)); [ $n -lt 100 ] || { cat "$tmp/err" >&2; exit 1; }; sleep 0.1
done
pid=$(cat "$tmp/pid")
port=$(sed -n 's/.*listening on tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/err")
# a client sends the tokens, as the seed's terminal does
nc -N 127.0.0.1 "$port" < input.txt
want=$(wc -w < input.txt)
n=0
until [ "$(wc -l < "$tmp/events.ndjson")" -ge "$want" ]; do
    n=$((n + 1)); [ $n -lt 100 ] || { echo "events missing" >&2; exit 1; }; sleep 0.1
done
# the end of the stream ends time: telem cep writes the matches in event-time order
kill -TERM "$pid"
pid=""
wait "$cep"
cat "$tmp/out"
