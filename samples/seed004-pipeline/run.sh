#!/bin/sh
# samples/seed004-pipeline/run.sh - seed 004's whole pipeline: device readings, sent
# again by some devices (same eventId), deduplicated (telem ingest --dedup); enriched
# from the device registry in SQLite (telem enrich --sqlite); per-model aggregates each
# minute (telem window --tumble 1m --key model: fewer series, coarser time); a per-device
# state-machine metric, the time spent overheating (telem cep); both pushed into a local
# Prometheus (telem remote-write) and read back with PromQL.
# Starts Prometheus (--web.enable-remote-write-receiver) on a free port of 127.0.0.1 with
# a temporary data directory, and stops it at the end.
set -eu
TELEM=${TELEM:-telem}
here=$(cd "$(dirname "$0")" && pwd)
for c in prometheus sqlite3 curl jq python3; do
    command -v $c > /dev/null 2>&1 ||
        { echo "seed004-pipeline: needs $c (prometheus, sqlite3, curl, jq, python3)" >&2; exit 1; }
done
tmp=$(mktemp -d)
PROM_PID=
cleanup() {
    if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api="http://127.0.0.1:$port/api/v1"
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address=127.0.0.1:$port --web.enable-remote-write-receiver > "$tmp/prom.log" 2>&1 &
PROM_PID=$!
n=0
until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do
    n=$((n + 1))
    if [ $n -gt 300 ] || ! kill -0 "$PROM_PID" 2>/dev/null; then
        echo "seed004-pipeline: prometheus did not start:" >&2; cat "$tmp/prom.log" >&2; exit 1
    fi
    sleep 0.1
done

# the registry the devices do not send: make, model, site, owner
sqlite3 "$tmp/registry.db" < "$here/registry.sql"

# deduplicated input: a reading sent twice (same eventId) counts once; enriched with
# its model; device-12, not registered, gets model "unknown"
awk -f "$here/gen-devices.awk" |
    "$TELEM" ingest --dedup eventId --dedup-window 10m --stats 2> "$tmp/ingest.stats" |
    "$TELEM" enrich --sqlite "$tmp/registry.db" \
        --query 'select make, model, site from devices where id = ?' --on deviceId \
        --default '{"make":"unknown","model":"unknown","site":"unknown"}' > "$tmp/enriched.ndjson"
sed -n 's/.*"deduplicated":\([0-9]*\).*/{"duplicates_dropped":\1}/p' "$tmp/ingest.stats"

# cardinality and granularity reduction: per model and minute instead of per device and
# reading
"$TELEM" window --tumble 1m --key model \
    --agg 'count as readings, avg(temperature) as temperature_avg, max(temperature) as temperature_max' \
    --no-watermarks "$tmp/enriched.ndjson" > "$tmp/models.ndjson"

# the state machine, per device: from the first reading above 80 degrees to the first
# one at or below it, the time spent overheating, written when the device cools down
"$TELEM" cep --key deviceId \
    --pattern 'hot: temperature > 80 -> cool: temperature <= 80 skip past last event' \
    --emit '{"deviceId": hot.deviceId, "model": hot.model, "timestamp": cool.timestamp,
             "overheated_s": (cool.timestamp - hot.timestamp) / 1000}' \
    --no-watermarks "$tmp/enriched.ndjson" > "$tmp/overheat.ndjson"

rw() {
    "$TELEM" remote-write --url "$api/write" --const-label job=seed004 --time-unit ms \
        --batch 100000 --flush-interval 1h --max-future 0 --stats "$@" 2> "$tmp/rw.stats"
    grep -q '"refused":0,' "$tmp/rw.stats" || { cat "$tmp/rw.stats" >&2; exit 1; }
}
rw --name seed004_model --value readings,temperature_avg,temperature_max --label model \
    --time-field window_end "$tmp/models.ndjson"
rw --name seed004_device_overheat_seconds --value overheated_s --label deviceId,model \
    --time-field timestamp "$tmp/overheat.ndjson"

first=$(jq -s 'map(.window_end) | min / 1000' "$tmp/models.ndjson")
last=$(jq -s 'map(.window_end) | max / 1000' "$tmp/models.ndjson")
q() { curl -sf -G "$api/query" --data-urlencode "query=$1" --data-urlencode "time=$last"; }

# readings per model over the 6 minutes (after deduplication)
q 'sum_over_time(seed004_model_readings{job="seed004"}[10m])' |
    jq -c '.data.result | map({model: .metric.model, readings: (.value[1] | tonumber)}) |
           sort_by(.model) | .[]'
# the hottest reading per model and minute
curl -sf -G "$api/query_range" --data-urlencode 'query=seed004_model_temperature_max{job="seed004"}' \
    --data-urlencode "start=$first" --data-urlencode "end=$last" --data-urlencode step=60s |
    jq -c '.data.result | sort_by(.metric.model) | .[] | .metric.model as $m | .values[] |
           {model: $m, time: .[0], temperature_max: (.[1] | tonumber)}'
# overheating per device: episodes and total time
q 'count_over_time(seed004_device_overheat_seconds{job="seed004"}[10m])' |
    jq -c '.data.result | map({deviceId: .metric.deviceId, model: .metric.model,
           episodes: (.value[1] | tonumber)}) | sort_by(.deviceId) | .[]'
q 'sum_over_time(seed004_device_overheat_seconds{job="seed004"}[10m])' |
    jq -c '.data.result | map({deviceId: .metric.deviceId, model: .metric.model,
           overheated_s: (.value[1] | tonumber)}) | sort_by(.deviceId) | .[]'
