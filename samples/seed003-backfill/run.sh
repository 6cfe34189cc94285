#!/bin/sh
# samples/seed003-backfill/run.sh - seed 003's raw output job and counter job: a day of
# raw log records (ad impressions, and the clicks and purchases that reference them by
# impressionId) archived by the hour with `telem ingest --archive`; impressions joined
# with their actions within 10 minutes (`telem enrich --join`); impressions and actions
# counted per segment and hour (`telem window --tumble 1h`). backfill.sh processes the 24
# hourly segments one run each, reading only that segment and carrying each stage's state
# (the join's too) in snapshots; run.sh checks that its pairs and counts equal one run
# over the whole archive, and prints that run's counts.
set -eu
TELEM=${TELEM:-telem}
export TELEM
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the collector: one `telem ingest --archive` per hour of records (here 24 runs in a row,
# standing for a day); each run closes its segment, so the archive holds 24 segments in
# arrival order (raw-<UTC hour of arrival>-<sequence>.ndjson.zst)
awk -f "$here/gen-logs.awk" > "$tmp/day.ndjson"
for h in $(seq 0 23); do
    awk -v lo=$((1704067200 + h * 3600)) -v hi=$((1704067200 + (h + 1) * 3600)) \
        '{ t = substr($0, 14, 10) + 0 } t >= lo && t < hi' "$tmp/day.ndjson" |
        "$TELEM" ingest --archive "$tmp/archive" > /dev/null
done
[ "$(ls "$tmp/archive" | grep -c '^raw-')" -eq 24 ] || { echo "expected 24 segments" >&2; exit 1; }

# the backfill, as cron would run it: one segment per run, the last run ends the day
for h in $(seq 1 24); do
    sh "$here/backfill.sh" "$tmp/archive" "$tmp/hourly"
done
sh "$here/backfill.sh" --drain "$tmp/archive" "$tmp/hourly"
[ "$(wc -l < "$tmp/hourly/done")" -eq 24 ] || { echo "backfill missed segments" >&2; exit 1; }

# the same pipeline in one run over the whole archive
mkdir "$tmp/once"
"$TELEM" ingest --strict "$tmp"/archive/raw-*.zst > "$tmp/raw.ndjson"
grep '"type":"impression"' "$tmp/raw.ndjson" > "$tmp/imp.ndjson"
grep '"type":"action"' "$tmp/raw.ndjson" > "$tmp/act.ndjson"
"$TELEM" enrich --join "$tmp/act.ndjson" --on impressionId --within 10m --prefix action_ \
    --time-unit s "$tmp/imp.ndjson" > "$tmp/flat.ndjson"
"$TELEM" window --tumble 1h --key segment --agg 'count as impressions' --time-unit s \
    --no-watermarks "$tmp/imp.ndjson" > "$tmp/once/impressions.ndjson"
"$TELEM" window --tumble 1h --key segment,action_actionType --agg 'count as actions' --max-out-of-order 10m \
    --time-unit s --no-watermarks "$tmp/flat.ndjson" > "$tmp/once/actions.ndjson"
grep -v '^{"__watermark"' "$tmp/flat.ndjson" > "$tmp/once/flat.ndjson"

# 24 runs with snapshots between them = one run: the same joined pairs and the same
# counts, byte for byte (a pair whose action came in the next hour is written by the next
# run, where the single run writes it too: when the action is read)
cmp "$tmp/once/flat.ndjson" "$tmp/hourly/flat.ndjson" >&2
cmp "$tmp/once/impressions.ndjson" "$tmp/hourly/impressions.ndjson" >&2
cmp "$tmp/once/actions.ndjson" "$tmp/hourly/actions.ndjson" >&2
cat "$tmp/once/impressions.ndjson" "$tmp/once/actions.ndjson"
