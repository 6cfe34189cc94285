#!/bin/sh
# samples/seed004-registry/run.sh - seed 004: devices send only an id and a measurement;
# the make, model and site live in a registry (SQLite, built here from registry.sql). The
# events are enriched from it and aggregated per model and minute; devices the registry
# does not know are counted apart.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sqlite3 "$tmp/registry.db" < registry.sql
# 14 devices send, the registry knows 12 of them (device-12 and device-13 are new)
"$TELEM" gen -n 3000 --devices 14 --rate 20 --seed 4 |
    "$TELEM" enrich --sqlite "$tmp/registry.db" \
        --query 'select make, model, site from devices where id = ?' --on deviceId \
        --missing default --default '{"make":"unknown","model":"unknown","site":"unknown"}' \
        --unmatched "$tmp/unknown.ndjson" |
    "$TELEM" window --tumble 1m --key model --agg 'count, avg(cpuUsage) as cpu, max(temperature) as temp_max' \
        --no-watermarks
# the unknown devices, for the registry's keepers
"$TELEM" window --tumble 1h --key deviceId --agg count --no-watermarks --time-unit ms "$tmp/unknown.ndjson"
