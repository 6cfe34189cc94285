#!/bin/sh
# bench/pipeline/throughput.sh - whole-pipeline throughput of samples 2 and 5 (issue 9),
# with CPU time and peak RSS per stage. Not used by the tests.
#
# Usage: sh bench/pipeline/throughput.sh /path/to/opt/telem [events] [cpus]
#   events: default 5000000; cpus: "all" (default: the pipeline spreads over the
#   machine's cores) or a taskset list such as 0 (every stage on that one core: the
#   pipeline's total CPU cost).
#
# Sample 2 (seed 001, samples/seed001-iot-window) at scale:
#   telem gen -n N --devices 10000 --rate 2000 --disorder 30s --late-fraction 0.01
#       --late-by 30m --seed 1
#   | telem ingest
#   | tee FIFO
#   | telem window --key deviceId --slide 10m --every 1m --max-out-of-order 10s
#       --allowed-lateness 5m --agg "count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)"
#       --late LATE                                  (per-device rows, revised by late events)
#   and, reading FIFO, the top 10 devices by p99 per window:
#   telem window (the same window and --agg) --top 10 --by p99_cpuUsage
#       WITHOUT --allowed-lateness: --top with --allowed-lateness is pathologically slow
#       (50 k events: 22 s against 0.49 s without --top; see the notes), so at 5 M events
#       the top 10 ranks each window once, when it closes.
# Sample 5 (seed 004, samples/seed004-registry) at scale: 10000 devices, 1 % of events
# sent twice, a SQLite registry that knows 9000 of the devices:
#   telem gen -n N --devices 10000 --rate 2000 --duplicates 0.01 --seed 4
#   | telem ingest --dedup eventId
#   | telem enrich --sqlite REG --query 'select make, model, site from devices where id = ?'
#       --on deviceId --missing default --default '{"make":"unknown",...}'
#   | telem window --tumble 1m --key model --agg 'count, avg(cpuUsage) as cpu,
#       max(temperature) as temp_max'
#   | telem remote-write --url SINK --name fleet --value count,cpu,temp_max --label model
#       --time-field window_end --max-future 0
# into bench/remote-write/sink.c, a receiver on loopback that answers 204 and discards.
#
# Every stage runs under GNU time (-f '%e %U %S %M': wall, user, sys, max RSS); the whole
# pipeline's wall time is taken around it. Events/s = N / pipeline wall time. One
# untimed warm-up at 1/10 of N, then RUNS (default 3) timed runs; the run with the
# median wall time is reported with its per-stage numbers.
set -eu
export LC_ALL=C
TELEM=$(realpath "${1:-telem}")
N=${2:-5000000}
CPUS=${3:-all}
RUNS=${RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/telem-pipe.XXXXXX")
SINK_PID=
trap '[ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null; rm -rf "$tmp"' EXIT
T="/usr/bin/time -f"
PIN=
[ "$CPUS" != all ] && PIN="taskset -c $CPUS"

# registry: 9000 of the 10000 devices
awk 'BEGIN { print "create table devices (id text primary key, make text not null, model text not null, site text not null);";
    print "begin;";
    for (i = 0; i < 9000; i++) printf "insert into devices values (\x27device-%d\x27, \x27make-%d\x27, \x27model-%d\x27, \x27site-%d\x27);\n", i, i % 7, i % 50, i % 13;
    print "commit;" }' | sqlite3 "$tmp/reg.db"

cc -O2 -pthread -o "$tmp/sink" "$here/../remote-write/sink.c"
"$tmp/sink" 0 > "$tmp/sink.out" 2> "$tmp/sink.err" &
SINK_PID=$!
i=0; until [ -s "$tmp/sink.out" ]; do i=$((i + 1)); [ $i -gt 50 ] && { echo "sink did not start" >&2; exit 1; }; sleep 0.1; done
URL="http://127.0.0.1:$(awk '{ print $2 }' "$tmp/sink.out")/api/v1/write"

now() { date +%s.%N; }

sample2() { # n
    rm -f "$tmp/fifo"; mkfifo "$tmp/fifo"
    $PIN $T '%e %U %S %M' -o "$tmp/s.top10" "$TELEM" window --key deviceId --slide 10m --every 1m \
        --max-out-of-order 10s --agg "count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)" \
        --top 10 --by p99_cpuUsage --late /dev/null --no-watermarks < "$tmp/fifo" > "$tmp/top10" &
    top_pid=$!
    $PIN $T '%e %U %S %M' -o "$tmp/s.gen" "$TELEM" gen -n "$1" --devices 10000 --rate 2000 \
        --disorder 30s --late-fraction 0.01 --late-by 30m --seed 1 |
    $PIN $T '%e %U %S %M' -o "$tmp/s.ingest" "$TELEM" ingest |
    $PIN $T '%e %U %S %M' -o "$tmp/s.tee" tee "$tmp/fifo" |
    $PIN $T '%e %U %S %M' -o "$tmp/s.window" "$TELEM" window --key deviceId --slide 10m --every 1m \
        --max-out-of-order 10s --allowed-lateness 5m \
        --agg "count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)" \
        --late "$tmp/late.ndjson" --no-watermarks > "$tmp/out"
    wait "$top_pid"
}
STAGES2="gen ingest tee window top10"

sample5() { # n
    $PIN $T '%e %U %S %M' -o "$tmp/s.gen" "$TELEM" gen -n "$1" --devices 10000 --rate 2000 \
        --duplicates 0.01 --seed 4 |
    $PIN $T '%e %U %S %M' -o "$tmp/s.ingest" "$TELEM" ingest --dedup eventId |
    $PIN $T '%e %U %S %M' -o "$tmp/s.enrich" "$TELEM" enrich --sqlite "$tmp/reg.db" \
        --query 'select make, model, site from devices where id = ?' --on deviceId \
        --missing default --default '{"make":"unknown","model":"unknown","site":"unknown"}' |
    $PIN $T '%e %U %S %M' -o "$tmp/s.window" "$TELEM" window --tumble 1m --key model \
        --agg 'count, avg(cpuUsage) as cpu, max(temperature) as temp_max' |
    $PIN $T '%e %U %S %M' -o "$tmp/s.rw" "$TELEM" remote-write --url "$URL" --name fleet \
        --value count,cpu,temp_max --label model --time-field window_end --max-future 0 \
        --stats 2> "$tmp/rw.stats" > "$tmp/out"
}
STAGES5="gen ingest enrich window rw"

measure() { # name function stages
    name=$1 fn=$2 stages=$3
    $fn $((N / 10))
    : > "$tmp/runs"
    r=1
    while [ $r -le "$RUNS" ]; do
        t0=$(now); $fn "$N"; t1=$(now)
        w=$(echo "$t1 - $t0" | bc -l)
        line="$w"
        for s in $stages; do line="$line $s $(cat "$tmp/s.$s" | tail -n 1 | tr ' ' ':')"; done
        echo "$line out=$(wc -l < "$tmp/out")" >> "$tmp/runs"
        echo "  run $r: $w s" >&2
        r=$((r + 1))
    done
    sort -g "$tmp/runs" | sed -n "$(( (RUNS + 1) / 2 ))p" | awk -v n="$N" -v name="$name" '{
        printf "%s: %d events in %.2f s wall = %.2f M events/s; lines out: %s\n", name, n, $1, n / $1 / 1e6, substr($NF, 5)
        printf "| stage | wall s | user s | sys s | CPU s | CPU share of pipeline wall | peak RSS |\n|---|---|---|---|---|---|---|\n"
        tot = 0
        for (i = 2; i < NF; i += 2) { split($(i + 1), a, ":");
            printf "| %s | %.2f | %.2f | %.2f | %.2f | %.0f %% | %.1f MiB |\n", $i, a[1], a[2], a[3], a[2] + a[3], 100 * (a[2] + a[3]) / $1, a[4] / 1024
            tot += a[2] + a[3] }
        printf "| all stages | %.2f | | | %.2f | %.0f %% of one core | |\n", $1, tot, 100 * tot / $1 }'
}

echo "machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo); telem $("$TELEM" --version | head -n1)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); stages: ${PIN:-unpinned}; $RUNS timed runs, the median shown"
echo
echo "== sample 2 (seed 001): gen | ingest | window sliding 10m/1m p50/p90/p99, lateness, top 10" >&2
measure "sample 2" sample2 "$STAGES2"
echo "late events (side file) in the last run: $(wc -l < "$tmp/late.ndjson")"
echo
echo "== sample 5 (seed 004): gen | ingest --dedup | enrich --sqlite | window 1m per model | remote-write" >&2
measure "sample 5" sample5 "$STAGES5"
echo "remote-write stats of the last run: $(tail -n 1 "$tmp/rw.stats" | sed 's/^telem remote-write: stats //')"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
