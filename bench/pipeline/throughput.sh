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
#   and, reading FIFO, the top 10 devices by p99 per window, with the same lateness:
#   telem window (the same window and --agg) --allowed-lateness 5m --top 10 --by p99_cpuUsage
# Sample 5 (seed 004, samples/seed004-pipeline) at scale: 10000 devices, 1 % of events
# sent twice, a SQLite registry that knows 9000 of the devices:
#   telem gen -n N --devices 10000 --rate 2000 --duplicates 0.01 --seed 4
#   | telem ingest --dedup eventId --dedup-window 10m
#   | telem enrich --sqlite REG --query 'select make, model, site from devices where id = ?'
#       --on deviceId --missing default --default '{"make":"unknown",...}'
#   | tee FIFO
#   | telem window --tumble 1m --key model --agg 'count as readings, avg(temperature) as
#       temperature_avg, max(temperature) as temperature_max'
#   | telem remote-write --url PROM --name seed004_model --value readings,temperature_avg,
#       temperature_max --label model --time-field window_end --const-label job=seed004
#   and, reading FIFO, the per-device state machine (the time spent overheating):
#   telem cep --key deviceId --pattern 'hot: temperature > 60 -> cool: temperature <= 60
#       skip past last event' --emit '{deviceId, model, timestamp: cool, overheated_s}'
#   | telem remote-write --url PROM --name seed004_device_overheat_seconds
#       --value overheated_s --label deviceId,model --const-label job=seed004
# into a real Prometheus (Debian's, --web.enable-remote-write-receiver) on a free
# loopback port with a temporary data directory: a fresh one for every run (a run
# re-sends the same event times, which a Prometheus that has them would refuse as out of
# order), started before the run's clock starts and stopped by PID after it. The sample
# says 80 degrees; `telem gen` temperatures lie between 35 and 67, so the bench says 60
# (about 5 % of readings; ~160 k episodes in 5 M events). Every run checks that both
# remote-writes had nothing refused; Prometheus's CPU time (from /proc) and peak RSS
# (VmHWM) during the run are shown beside the stages.
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
tmp=$(mktemp -d "${TMPDIR:-/tmp}/telem-pipe.XXXXXX")
PROM_PID=
cleanup() {
    if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for c in prometheus sqlite3 curl python3 bc /usr/bin/time; do
    command -v $c > /dev/null 2>&1 || { echo "throughput.sh: needs $c" >&2; exit 1; }
done
T="/usr/bin/time -f"
PIN=
[ "$CPUS" != all ] && PIN="taskset -c $CPUS"

# registry: 9000 of the 10000 devices
awk 'BEGIN { print "create table devices (id text primary key, make text not null, model text not null, site text not null);";
    print "begin;";
    for (i = 0; i < 9000; i++) printf "insert into devices values (\x27device-%d\x27, \x27make-%d\x27, \x27model-%d\x27, \x27site-%d\x27);\n", i, i % 7, i % 50, i % 13;
    print "commit;" }' | sqlite3 "$tmp/reg.db"

# a fresh Prometheus for sample 5's run: free loopback port, new data directory
prom_start() {
    prom_stop
    rm -rf "$tmp/prom"; mkdir "$tmp/prom"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$tmp/prom/p.yml"
    prometheus --config.file="$tmp/prom/p.yml" --storage.tsdb.path="$tmp/prom/data" \
        --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
        > "$tmp/prom/log" 2>&1 &
    PROM_PID=$!
    n=0; until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null 2>&1; do
        n=$((n + 1))
        if [ $n -gt 300 ] || ! kill -0 "$PROM_PID" 2>/dev/null; then
            echo "prometheus did not start:" >&2; cat "$tmp/prom/log" >&2; exit 1
        fi
        sleep 0.1
    done
    URL="http://127.0.0.1:$port/api/v1/write"
    prom_cpu0=$(prom_cpu)
}
prom_stop() {
    if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null || true; fi
    PROM_PID=
}
# Prometheus's user and sys CPU seconds so far (fields 14 and 15 of /proc/PID/stat)
prom_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f %.2f", $12 / hz, $13 / hz }' \
        "/proc/$PROM_PID/stat"
}
# after a run: the receiver's row in the same shape as GNU time's (wall user sys KiB)
prom_after() { # wall
    set -- "$1" $prom_cpu0 $(prom_cpu)
    echo "$1 $(echo "$4 - $2" | bc) $(echo "$5 - $3" | bc) $(awk '/^VmHWM/ { print $2 }' "/proc/$PROM_PID/status")" \
        > "$tmp/s.prom"
}

now() { date +%s.%N; }

sample2() { # n
    rm -f "$tmp/fifo"; mkfifo "$tmp/fifo"
    $PIN $T '%e %U %S %M' -o "$tmp/s.top10" "$TELEM" window --key deviceId --slide 10m --every 1m \
        --max-out-of-order 10s --allowed-lateness 5m --agg "count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)" \
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
    rm -f "$tmp/fifo"; mkfifo "$tmp/fifo"
    $PIN $T '%e %U %S %M' -o "$tmp/s.cep" "$TELEM" cep --key deviceId \
        --pattern 'hot: temperature > 60 -> cool: temperature <= 60 skip past last event' \
        --emit '{"deviceId": hot.deviceId, "model": hot.model, "timestamp": cool.timestamp,
                 "overheated_s": (cool.timestamp - hot.timestamp) / 1000}' < "$tmp/fifo" |
    $PIN $T '%e %U %S %M' -o "$tmp/s.rw2" "$TELEM" remote-write --url "$URL" \
        --name seed004_device_overheat_seconds --value overheated_s --label deviceId,model \
        --time-field timestamp --const-label job=seed004 --max-future 0 \
        --stats 2> "$tmp/rw2.stats" > /dev/null &
    cep_pid=$!
    $PIN $T '%e %U %S %M' -o "$tmp/s.gen" "$TELEM" gen -n "$1" --devices 10000 --rate 2000 \
        --duplicates 0.01 --seed 4 |
    $PIN $T '%e %U %S %M' -o "$tmp/s.ingest" "$TELEM" ingest --dedup eventId --dedup-window 10m |
    $PIN $T '%e %U %S %M' -o "$tmp/s.enrich" "$TELEM" enrich --sqlite "$tmp/reg.db" \
        --query 'select make, model, site from devices where id = ?' --on deviceId \
        --missing default --default '{"make":"unknown","model":"unknown","site":"unknown"}' |
    $PIN $T '%e %U %S %M' -o "$tmp/s.tee" tee "$tmp/fifo" |
    $PIN $T '%e %U %S %M' -o "$tmp/s.window" "$TELEM" window --tumble 1m --key model \
        --agg 'count as readings, avg(temperature) as temperature_avg, max(temperature) as temperature_max' |
    $PIN $T '%e %U %S %M' -o "$tmp/s.rw" "$TELEM" remote-write --url "$URL" --name seed004_model \
        --value readings,temperature_avg,temperature_max --label model --time-field window_end \
        --const-label job=seed004 --max-future 0 --stats 2> "$tmp/rw.stats" > /dev/null
    wait "$cep_pid"
    # the lines out: the window's rows and the cep's episodes, as remote-write read them
    for f in rw rw2; do
        grep -q '"refused":0,' "$tmp/$f.stats" || { echo "remote-write refused samples:" >&2; cat "$tmp/$f.stats" >&2; exit 1; }
    done
    # lines out: the rows of both remote-writes (window rows + overheating episodes)
    sed -n 's/.*"events":\([0-9]*\).*/\1/p' "$tmp/rw.stats" "$tmp/rw2.stats" | paste -sd+ | bc > "$tmp/nout"
}
STAGES5="gen ingest enrich tee window rw cep rw2 prom"

measure() { # name function stages [before-run after-run]
    name=$1 fn=$2 stages=$3 pre=${4:-:} post=${5:-:}
    $pre; $fn $((N / 10)); $post 0
    : > "$tmp/runs"
    r=1
    while [ $r -le "$RUNS" ]; do
        rm -f "$tmp/nout"
        $pre
        t0=$(now); $fn "$N"; t1=$(now)
        w=$(echo "$t1 - $t0" | bc -l)
        $post "$w"
        line="$w"
        for s in $stages; do line="$line $s $(cat "$tmp/s.$s" | tail -n 1 | tr ' ' ':')"; done
        if [ -f "$tmp/nout" ]; then nout=$(cat "$tmp/nout"); else nout=$(wc -l < "$tmp/out"); fi
        echo "$line out=$nout" >> "$tmp/runs"
        echo "  run $r: $w s" >&2
        r=$((r + 1))
    done
    sort -g "$tmp/runs" | sed -n "$(( (RUNS + 1) / 2 ))p" | awk -v n="$N" -v name="$name" '{
        printf "%s: %d events in %.2f s wall = %.2f M events/s; lines out: %s\n", name, n, $1, n / $1 / 1e6, substr($NF, 5)
        printf "| stage | wall s | user s | sys s | CPU s | CPU share of pipeline wall | peak RSS |\n|---|---|---|---|---|---|---|\n"
        tot = 0; extra = 0
        for (i = 2; i < NF; i += 2) { split($(i + 1), a, ":");
            printf "| %s | %.2f | %.2f | %.2f | %.2f | %.0f %% | %.1f MiB |\n", $i, a[1], a[2], a[3], a[2] + a[3], 100 * (a[2] + a[3]) / $1, a[4] / 1024
            if ($i == "prom") extra += a[2] + a[3]; else tot += a[2] + a[3] }
        printf "| all telem stages | %.2f | | | %.2f | %.0f %% of one core | |\n", $1, tot, 100 * tot / $1
        if (extra > 0) printf "| all, with prom | %.2f | | | %.2f | %.0f %% of one core | |\n", $1, tot + extra, 100 * (tot + extra) / $1 }'
}

echo "machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo); telem $("$TELEM" --version | head -n1)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); stages: ${PIN:-unpinned}; $RUNS timed runs, the median shown"
echo
echo "== sample 2 (seed 001): gen | ingest | window sliding 10m/1m p50/p90/p99, lateness, top 10" >&2
measure "sample 2" sample2 "$STAGES2"
echo "late events (side file) in the last run: $(wc -l < "$tmp/late.ndjson")"
echo
echo "== sample 5 (seed 004): gen | ingest --dedup | enrich --sqlite | tee | window 1m per model | remote-write, and cep per device | remote-write, into Prometheus" >&2
measure "sample 5" sample5 "$STAGES5" prom_start prom_after
prom_stop
echo "receiver: $(prometheus --version 2>&1 | head -n1); 'prom' is its CPU time during the run (/proc) and its peak RSS (VmHWM)"
echo "remote-write (per model) stats of the last run: $(tail -n 1 "$tmp/rw.stats" | sed 's/^telem remote-write: stats //')"
echo "remote-write (overheating, from cep) stats of the last run: $(tail -n 1 "$tmp/rw2.stats" | sed 's/^telem remote-write: stats //')"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
