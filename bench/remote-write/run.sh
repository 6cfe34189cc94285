#!/bin/sh
# bench/remote-write/run.sh [TELEM] - throughput of `telem remote-write`:
#   1. the wire encoder: lib/rw.c's hand encoder against protobuf-c (encbench.c, code
#      generated from prw.proto by protoc-c here);
#   2. encode + snappy + HTTP to a discarding receiver on loopback (sink.c, 204 to every
#      request, keep-alive): samples/s, CPU seconds, peak RSS, with 1 and 2 shards;
#   3. memory over a 10 M-sample run (peak RSS must stay what it is at 1 M);
#   4. samples/s into a real Prometheus (Debian's 2.42) on loopback.
# Lower bound for comparison: cat of the same input, and --dry-run --format pb (no network).
# Needs: cc, protoc-c, libprotobuf-c, prometheus, curl, /usr/bin/time.
set -eu
TELEM=$(realpath "${1:-telem}")
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(dirname "$TELEM")
tmp=$(mktemp -d)
SINK_PID= PROM_PID=
cleanup() {
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
    [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "== 1. encoder: hand-written vs protobuf-c"
protoc-c --c_out="$tmp" -I"$here" prw.proto
cc -O2 -o "$tmp/encbench" -iquote "$src/src/lib" -I"$tmp" "$here/encbench.c" "$tmp/prw.pb-c.c" \
    "$build/libtelem.a" $(pkg-config --cflags --libs libprotobuf-c) -lsnappy
"$tmp/encbench"

cc -O2 -pthread -o "$tmp/sink" "$here/sink.c"
"$tmp/sink" 0 > "$tmp/sink.out" 2> "$tmp/sink.err" &
SINK_PID=$!
sleep 0.3
PORT=$(awk '{ print $2 }' "$tmp/sink.out")
URL="http://127.0.0.1:$PORT/api/v1/write"
MAP="--name dev --value cpuUsage,memUsage,temperature --label deviceId --max-future 0"

# 1 M events = 3 M samples (3 values each), 1000 devices = 3000 series
"$TELEM" gen -n 1000000 --devices 1000 --seed 3 > "$tmp/e1m"

run() { # label samples args...
    label=$1; samples=$2; shift 2
    best=
    for i in 1 2 3; do
        /usr/bin/time -f "%e %U %S %M" -o "$tmp/t" "$@" > /dev/null 2> "$tmp/err" || { cat "$tmp/err"; exit 1; }
        read -r wall user sys rss < "$tmp/t"
        if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$wall; bu=$user; bs=$sys; br=$rss
        fi
    done
    awk -v l="$label" -v n="$samples" -v w="$best" -v u="$bu" -v s="$bs" -v r="$br" 'BEGIN {
        printf "%-44s %6.2f s  %5.2f M samples/s  cpu %5.2f s (%5.2f M samples/cpu-s)  rss %6.1f MB\n",
            l, w, n / w / 1e6, u + s, n / (u + s + 1e-9) / 1e6, r / 1024 }'
}

echo "== 2. 3 M samples, best of 3 (wall clock; 2 cores shared)"
run "cat (lower bound)" 3000000 cat "$tmp/e1m"
run "--dry-run --format pb (map+encode)" 3000000 "$TELEM" remote-write --dry-run --format pb $MAP "$tmp/e1m"
run "to sink, --shards 1" 3000000 "$TELEM" remote-write --url "$URL" --shards 1 $MAP "$tmp/e1m"
run "to sink, --shards 2" 3000000 "$TELEM" remote-write --url "$URL" --shards 2 $MAP "$tmp/e1m"
if command -v taskset >/dev/null 2>&1; then
    run "to sink, --shards 1, telem pinned to one core" 3000000 taskset -c 0 "$TELEM" remote-write --url "$URL" --shards 1 $MAP "$tmp/e1m"
fi
run "to sink, --shards 1 --protocol v2" 3000000 "$TELEM" remote-write --url "$URL" --shards 1 --protocol v2 $MAP "$tmp/e1m"

echo "== 3. memory over 10 M samples (3.34 M events) vs 1 M (0.34 M events)"
"$TELEM" gen -n 3340000 --devices 1000 --seed 4 > "$tmp/e10m"
head -n 334000 "$tmp/e10m" > "$tmp/e01m"
run "1 M samples to sink" 1002000 "$TELEM" remote-write --url "$URL" $MAP "$tmp/e01m"
run "10 M samples to sink" 10020000 "$TELEM" remote-write --url "$URL" $MAP "$tmp/e10m"
rm -f "$tmp/e10m"

if command -v prometheus >/dev/null 2>&1; then
    echo "== 4. into Prometheus 2.42 on loopback (fresh TSDB, 3000 series)"
    PP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$tmp/prom"
    printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$tmp/prom/p.yml"
    prometheus --config.file="$tmp/prom/p.yml" --storage.tsdb.path="$tmp/prom/data" \
        --web.listen-address=127.0.0.1:$PP --web.enable-remote-write-receiver > "$tmp/prom/log" 2>&1 &
    PROM_PID=$!
    n=0; until curl -sf "http://127.0.0.1:$PP/-/ready" > /dev/null; do n=$((n + 1)); [ $n -gt 300 ] && exit 1; sleep 0.1; done
    for sh in 1 2 4; do
        # a metric name per run: each run writes new series into the same TSDB
        /usr/bin/time -f "%e %U %S %M" -o "$tmp/t" "$TELEM" remote-write --url "http://127.0.0.1:$PP/api/v1/write" \
            --shards $sh --stats --name "dev$sh" --value cpuUsage,memUsage,temperature \
            --label deviceId --max-future 0 "$tmp/e1m" 2> "$tmp/err" || { cat "$tmp/err"; exit 1; }
        read -r wall user sys rss < "$tmp/t"
        sent=$(tr ',' '\n' < "$tmp/err" | sed -n 's/"sent":\([0-9]*\)/\1/p')
        awk -v w="$wall" -v s="$sent" -v l="Prometheus, --shards $sh" 'BEGIN { printf "%-44s %6.2f s  %5.2f M samples/s  (%d samples acknowledged)\n", l, w, s / w / 1e6, s }'
    done
fi
