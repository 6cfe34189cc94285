#!/bin/sh
# bench/pipeline/backfill.sh - backfill (issue 9): events/s replaying a zstd archive of
# 10 M events, written by `telem ingest --archive`, through sample 2's pipeline (seed
# 001: per-device 10-minute windows sliding every minute, p50/p90/p99, 5 minutes of
# allowed lateness, too-late events to a side file, and the top 10 devices per window).
# Not used by the tests.
#
# Usage: sh bench/pipeline/backfill.sh /path/to/opt/telem [events] [data-dir]
#   events default 10000000; the archive is kept in data-dir (default bench/.data,
#   gitignored) and reused while it is there.
#
# The archive: telem gen -n N --devices 10000 --rate 2000 --disorder 30s
#   --late-fraction 0.01 --late-by 30m --seed 1 | telem ingest --archive DIR > /dev/null
# The replay (timed; each stage under GNU time for CPU and peak RSS):
#   telem ingest DIR/raw-*.zst | tee FIFO
#   | telem window --key deviceId --slide 10m --every 1m --max-out-of-order 10s
#       --allowed-lateness 5m --agg "count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)"
#       --late LATE
#   and from FIFO: the same window (with its lateness) and --top 10 --by p99_cpuUsage.
# Lower bound: zstdcat DIR/raw-*.zst > /dev/null (decompression alone), and the replay
# through `telem ingest` alone. Unpinned (the stages spread over the cores); best of 2.
set -eu
export LC_ALL=C
TELEM=$(realpath "${1:-telem}")
N=${2:-10000000}
here=$(cd "$(dirname "$0")" && pwd)
DATA_DIR=${3:-$here/../.data}
ARCH=$DATA_DIR/archive-n$N
tmp=$(mktemp -d "${TMPDIR:-/tmp}/telem-backfill.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
T="/usr/bin/time -f"

if [ ! -f "$ARCH/.done" ]; then
    rm -rf "$ARCH"; mkdir -p "$ARCH"
    echo "writing the archive of $N events to $ARCH" >&2
    "$TELEM" gen -n "$N" --devices 10000 --rate 2000 --disorder 30s --late-fraction 0.01 \
        --late-by 30m --seed 1 | "$TELEM" ingest --archive "$ARCH" > /dev/null
    touch "$ARCH/.done"
fi
nseg=$(ls "$ARCH"/raw-*.zst | wc -l)
zbytes=$(cat "$ARCH"/raw-*.zst | wc -c)

now() { date +%s.%N; }
best() { sort -g | head -n 1; }

echo "machine: $(nproc) CPUs, load average at the start $(cut -d' ' -f1-3 /proc/loadavg); telem $("$TELEM" --version | head -n1)"
echo "archive: $N events in $nseg zstd segments, $zbytes bytes"

for r in 1 2; do t0=$(now); zstdcat "$ARCH"/raw-*.zst > /dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; done | best > "$tmp/zc"
for r in 1 2; do t0=$(now); "$TELEM" ingest "$ARCH"/raw-*.zst > /dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; done | best > "$tmp/ing"

replay() {
    rm -f "$tmp/fifo"; mkfifo "$tmp/fifo"
    $T '%e %U %S %M' -o "$tmp/s.top10" "$TELEM" window --key deviceId --slide 10m --every 1m \
        --max-out-of-order 10s --allowed-lateness 5m \
        --agg "count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)" \
        --top 10 --by p99_cpuUsage --late /dev/null --no-watermarks < "$tmp/fifo" > /dev/null &
    top_pid=$!
    $T '%e %U %S %M' -o "$tmp/s.ingest" "$TELEM" ingest "$ARCH"/raw-*.zst |
    $T '%e %U %S %M' -o "$tmp/s.tee" tee "$tmp/fifo" |
    $T '%e %U %S %M' -o "$tmp/s.window" "$TELEM" window --key deviceId --slide 10m --every 1m \
        --max-out-of-order 10s --allowed-lateness 5m \
        --agg "count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)" \
        --late "$tmp/late" --no-watermarks > "$tmp/out"
    wait "$top_pid"
}
: > "$tmp/runs"
for r in 1 2; do
    t0=$(now); replay; t1=$(now)
    line=$(echo "$t1 - $t0" | bc -l)
    for s in ingest tee window top10; do line="$line $s $(tail -n 1 "$tmp/s.$s" | tr ' ' ':')"; done
    echo "$line" >> "$tmp/runs"
    echo "  replay $r: $(echo "$t1 - $t0" | bc -l) s" >&2
done
awk -v n="$N" -v zc="$(cat "$tmp/zc")" -v ing="$(cat "$tmp/ing")" 'BEGIN {
    printf "zstdcat alone (lower bound): %.2f s = %.2f M events/s\n", zc, n / zc / 1e6
    printf "telem ingest of the archive alone: %.2f s = %.2f M events/s\n", ing, n / ing / 1e6 }'
sort -g "$tmp/runs" | head -n 1 | awk -v n="$N" '{
    printf "replay through sample 2 (best of 2): %.2f s = %.2f M events/s\n", $1, n / $1 / 1e6
    printf "| stage | wall s | CPU s (user+sys) | peak RSS |\n|---|---|---|---|\n"
    tot = 0
    for (i = 2; i < NF; i += 2) { split($(i + 1), a, ":");
        printf "| %s | %.2f | %.2f | %.1f MiB |\n", $i, a[1], a[2] + a[3], a[4] / 1024; tot += a[2] + a[3] }
    printf "| all | %.2f | %.2f (%.0f %% of one core) | |\n", $1, tot, 100 * tot / $1 }'
echo "rows out: $(wc -l < "$tmp/out"), too-late events: $(wc -l < "$tmp/late"); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
