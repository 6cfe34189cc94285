#!/bin/sh
# bench/enrich/run.sh - time `telem enrich` against its peers (issue 6's targets):
#   - a 1 M-row CSV table loads in under 1 s (table_load_ms of --stats, and wall time);
#   - enrich from that table at >= 1.5 M events/s (one core);
#   - the SQLite path at >= 500 k events/s with a 99 % cache hit rate;
#   - memory per table row (bytes_per_row of --stats, and the process's max RSS);
#   - the interval join: events/s counts both inputs (left and right);
#   - peers on the same data: a cat lower bound, mlr join, jq with a pre-built map.
#
# Usage: sh bench/enrich/run.sh /path/to/telem [events] [runs]
# Data is generated in a temporary directory (about 400 MB for 1 M events and the
# table). Every command is pinned to CPU 0 with taskset when it is there. Never used by
# the tests. Prints one line per row: median seconds, events/s, ratio to telem.
set -eu
export LC_ALL=C
TELEM=${1:-${TELEM:-telem}}
EVENTS=${2:-1000000}
RUNS=${3:-5}
PEER_EVENTS=${PEER_EVENTS:-200000}
ROWS=1000000
tmp=$(mktemp -d "${TMPDIR:-/tmp}/telem-bench-enrich.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pin=""
command -v taskset > /dev/null && pin="taskset -c 0"

now() { date +%s.%N; }

# median of RUNS timings of: sh -c "$1" (output to /dev/null)
median() {
    i=0
    : > "$tmp/times"
    while [ $i -lt "$RUNS" ]; do
        t0=$(now)
        $pin sh -c "$1" > /dev/null
        t1=$(now)
        echo "$t1 - $t0" | bc -l >> "$tmp/times"
        i=$((i + 1))
    done
    sort -g "$tmp/times" | awk '{ a[NR] = $1 } END { printf "%.3f\n", a[int((NR + 1) / 2)] }'
}

row() { # name, events, seconds, telem seconds
    awk -v n="$1" -v e="$2" -v s="$3" -v ref="$4" 'BEGIN {
        printf "%-34s %8.3f s %12.0f events/s  x%.2f\n", n, s, e / s, s / ref }'
}

echo "generating $EVENTS events and a $ROWS-row table in $tmp" >&2
"$TELEM" gen -n "$EVENTS" --devices 100000 --seed 1 > "$tmp/ev.ndjson"
head -n "$PEER_EVENTS" "$tmp/ev.ndjson" > "$tmp/ev.small"
awk -v n=$ROWS 'BEGIN { print "id,make,model,site,owner";
    for (i = 0; i < n; i++) printf "device-%d,make%d,model-%d,site-%d,owner%d\n", i, i % 37, i % 101, i % 13, i }' > "$tmp/table.csv"
# the SQLite registry, and events over 10000 devices (99 % of lookups hit the cache)
sqlite3 "$tmp/reg.db" "create table devices(id text primary key, make text, model text, site text, owner text);" \
    ".mode csv" ".import --skip 1 $tmp/table.csv devices"
"$TELEM" gen -n "$EVENTS" --devices 10000 --seed 2 > "$tmp/ev10k.ndjson"
# jq: the table as one object (built once, untimed)
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; printf "{"; next }
    { printf "%s\"%s\":{", (NR > 2 ? "," : ""), $1;
      for (i = 1; i <= NF; i++) printf "%s\"%s\":\"%s\"", (i > 1 ? "," : ""), h[i], $i; printf "}" }
    END { print "}" }' "$tmp/table.csv" > "$tmp/map.json"

echo "machine: $(nproc) cores, $(uname -m); telem $("$TELEM" --version)"
echo

# ---- the table load -------------------------------------------------------------------
"$TELEM" enrich --table "$tmp/table.csv" --on deviceId=id --stats < /dev/null 2> "$tmp/stats" > /dev/null
load_ms=$(sed -n 's/.*"table_load_ms":\([0-9.]*\).*/\1/p' "$tmp/stats")
bpr=$(sed -n 's/.*"bytes_per_row":\([0-9]*\).*/\1/p' "$tmp/stats")
tb=$(sed -n 's/.*"table_bytes":\([0-9]*\).*/\1/p' "$tmp/stats")
load_s=$(median "$TELEM enrich --table $tmp/table.csv --on deviceId=id < /dev/null")
rss=$( { /usr/bin/time -f %M "$TELEM" enrich --table "$tmp/table.csv" --on deviceId=id < /dev/null > /dev/null; } 2>&1 | tail -1)
echo "table load: $ROWS rows, $(wc -c < "$tmp/table.csv") bytes of CSV"
echo "  load (table_load_ms):     $load_ms ms"
echo "  whole run, no events:     $load_s s (median of $RUNS)"
echo "  memory: $tb bytes held = $bpr bytes per row; max RSS $rss KiB = $((rss * 1024 / ROWS)) bytes per row"
echo

# ---- enrich from the table --------------------------------------------------------------
t_cat=$(median "cat $tmp/ev.ndjson")
t_tab=$(median "$TELEM enrich --table $tmp/table.csv --on deviceId=id < $tmp/ev.ndjson")
# events/s of the enrichment alone: the run less the load
t_ev=$(echo "$t_tab - $load_s" | bc -l)
t_into=$(median "$TELEM enrich --table $tmp/table.csv --on deviceId=id --into dev --add make,model < $tmp/ev.ndjson")
t_sql=$(median "$TELEM enrich --sqlite $tmp/reg.db --query 'select make, model, site, owner from devices where id = ?' --on deviceId < $tmp/ev10k.ndjson")
"$TELEM" enrich --sqlite "$tmp/reg.db" --query 'select make, model, site, owner from devices where id = ?' \
    --on deviceId --stats < "$tmp/ev10k.ndjson" 2> "$tmp/sqlstats" > /dev/null
hits=$(sed -n 's/.*"cache_hits":\([0-9]*\).*/\1/p' "$tmp/sqlstats")
misses=$(sed -n 's/.*"cache_misses":\([0-9]*\).*/\1/p' "$tmp/sqlstats")

echo "enrich, $EVENTS events (~$(($(wc -c < "$tmp/ev.ndjson") / EVENTS)) bytes each), median of $RUNS runs, one core:"
row "cat (lower bound)" "$EVENTS" "$t_cat" "$t_tab"
row "telem enrich --table (with load)" "$EVENTS" "$t_tab" "$t_tab"
row "telem enrich --table (less load)" "$EVENTS" "$t_ev" "$t_tab"
row "telem enrich --into --add" "$EVENTS" "$t_into" "$t_tab"
row "telem enrich --sqlite ($hits hits, $misses misses)" "$EVENTS" "$t_sql" "$t_tab"

# ---- the interval join (seed 003): impressions, and clicks on them within 1 minute ----
awk -v n="$EVENTS" 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"timestamp\":%.0f,\"impressionId\":\"imp-%d\",\"contentId\":\"c%d\"}\n", 1704067200000 + i * 10, i, i % 5000 }' > "$tmp/imp.ndjson"
awk -v n="$EVENTS" 'BEGIN { srand(3); for (i = 0; i < n; i++) { j = i - int(rand() * 300); if (j < 0) j = 0;
    printf "{\"timestamp\":%.0f,\"impressionId\":\"imp-%d\",\"action\":\"click\"}\n", 1704067200000 + i * 10 + 5, j } }' > "$tmp/act.ndjson"
t_join=$(median "$TELEM enrich --join $tmp/act.ndjson --on impressionId --within 1m --max-out-of-order 5s $tmp/imp.ndjson")
"$TELEM" enrich --join "$tmp/act.ndjson" --on impressionId --within 1m --max-out-of-order 5s --stats \
    "$tmp/imp.ndjson" 2> "$tmp/joinstats" > /dev/null
pairs=$(sed -n 's/.*"pairs":\([0-9]*\).*/\1/p' "$tmp/joinstats")
row "telem enrich --join ($pairs pairs)" "$((EVENTS * 2))" "$t_join" "$t_tab"

# ---- peers, on fewer events (they are slow) --------------------------------------------
RUNS_PEER=$RUNS
[ "$RUNS_PEER" -gt 3 ] && RUNS_PEER=3
RUNS_SAVE=$RUNS
RUNS=$RUNS_PEER
t_tab_s=$(median "$TELEM enrich --table $tmp/table.csv --on deviceId=id < $tmp/ev.small")
t_mlr=$(median "mlr --ijson --ojsonl join --ur -i csv -f $tmp/table.csv -l id -r deviceId -j deviceId $tmp/ev.small")
t_jq=$(median "jq -c --slurpfile m $tmp/map.json '. + ((\$m[0][.deviceId] // {}) | del(.id))' $tmp/ev.small")
RUNS=$RUNS_SAVE
echo
echo "peers, $PEER_EVENTS events and the same 1 M-row table (each loads it too):"
row "telem enrich --table" "$PEER_EVENTS" "$t_tab_s" "$t_tab_s"
row "mlr join (unsorted)" "$PEER_EVENTS" "$t_mlr" "$t_tab_s"
row "jq with a pre-built map" "$PEER_EVENTS" "$t_jq" "$t_tab_s"
