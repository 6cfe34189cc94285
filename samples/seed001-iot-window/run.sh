#!/bin/sh
# samples/seed001-iot-window/run.sh - seed 001's job: per-device CPU percentiles over
# 10-minute windows sliding every minute, in event time with bounded disorder, 5 minutes
# of allowed lateness that revise a window's row, too-late events in a side file, and the
# top 10 devices by p99 per window.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 6000 IoT events from 20 devices, 10 per second of event time, up to 30 s out of
# order (the window allows 10 s: later ones revise rows within the 5 minutes of allowed
# lateness); 1 % arrive 30 minutes late, too late for any window
"$TELEM" gen -n 6000 --devices 20 --rate 10 --disorder 30s --late-fraction 0.01 \
    --late-by 30m --seed 1 > "$tmp/events.ndjson"

WINDOW="--key deviceId --slide 10m --every 1m --max-out-of-order 10s --allowed-lateness 5m"
AGG="count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)"

# per-device history (seed 001's cpu_metrics_by_device): one device shown
"$TELEM" window $WINDOW --agg "$AGG" --late "$tmp/late.ndjson" --no-watermarks \
    "$tmp/events.ndjson" > "$tmp/by-device.ndjson"
grep '"deviceId":"device-7"' "$tmp/by-device.ndjson"

# the top 10 devices by p99 in each window (seed 001's /metrics/top/10): the last window
"$TELEM" window $WINDOW --agg "$AGG" --top 10 --by p99_cpuUsage --late /dev/null --no-watermarks \
    "$tmp/events.ndjson" > "$tmp/top10.ndjson"
tail -n 10 "$tmp/top10.ndjson"

# rows revised by late events, and events too late for any window
echo "{\"revised_rows\":$(grep -c '"revision":[1-9]' "$tmp/by-device.ndjson"),\"too_late\":$(wc -l < "$tmp/late.ndjson" | tr -d ' ')}"
