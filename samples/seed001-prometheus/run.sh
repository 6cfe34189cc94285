#!/bin/sh
# samples/seed001-prometheus/run.sh - seed 001's per-device p99 of CPU usage, pushed into
# a local Prometheus with `telem remote-write`, then read back with the two queries that
# replace the seed's REST API: the top 10 devices by p99 (topk) and one device's history.
# Starts Prometheus (Debian's, --web.enable-remote-write-receiver) on a free port of
# 127.0.0.1 with a temporary data directory, and stops it at the end.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
PROM_PID=
cleanup() {
    if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
if ! command -v prometheus >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1 ||
    ! command -v curl >/dev/null 2>&1; then
    echo "seed001-prometheus: needs prometheus, curl and jq" >&2
    exit 77
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api="http://127.0.0.1:$port/api/v1"
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address=127.0.0.1:$port --web.enable-remote-write-receiver > "$tmp/prom.log" 2>&1 &
PROM_PID=$!
n=0
until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do
    n=$((n + 1))
    [ $n -gt 300 ] && { echo "prometheus did not start" >&2; exit 1; }
    sleep 0.1
done

# seed 001's job (see samples/seed001-iot-window): per device, p99 of cpuUsage over
# 10-minute windows sliding every minute, 5 minutes of allowed lateness
"$TELEM" gen -n 6000 --devices 20 --rate 10 --disorder 30s --late-fraction 0.01 \
    --late-by 30m --seed 1 |
"$TELEM" window --key deviceId --slide 10m --every 1m --max-out-of-order 10s \
    --allowed-lateness 5m --agg 'p99(cpuUsage)' --late /dev/null --no-watermarks > "$tmp/p99.ndjson"

# one series per device, a sample at each window's end; a revised row (a late event)
# replaces the earlier value of its window in the same batch (one batch here)
"$TELEM" remote-write --url "$api/write" --name cpu_usage_p99 --value p99_cpuUsage \
    --label deviceId --const-label job=seed001 --time-field window_end --time-unit ms \
    --batch 100000 --flush-interval 1h --max-future 0 --stats "$tmp/p99.ndjson" 2> "$tmp/stats"
grep -q '"refused":0,' "$tmp/stats"

last=$(jq -s 'map(.window_end) | max / 1000' "$tmp/p99.ndjson")
first=$(jq -s 'map(.window_end) | min / 1000' "$tmp/p99.ndjson")

# the top 10 devices by p99 at the last window's end (the seed's /metrics/top/10)
curl -s -G "$api/query" --data-urlencode 'query=topk(10, cpu_usage_p99{job="seed001"})' \
    --data-urlencode "time=$last" |
    jq -c '.data.result | map({deviceId: .metric.deviceId, p99: (.value[1] | tonumber),
           time: .value[0]}) | sort_by(-.p99, .deviceId) | .[]'

# device-7's history, one point per minute (the seed's per-device endpoint)
curl -s -G "$api/query_range" --data-urlencode 'query=cpu_usage_p99{deviceId="device-7"}' \
    --data-urlencode "start=$first" --data-urlencode "end=$last" --data-urlencode step=60s |
    jq -c '.data.result[] | .metric.deviceId as $d | .values[] |
           {deviceId: $d, time: .[0], p99: (.[1] | tonumber)}'
