#!/bin/sh
# bench/window/run.sh - telem window at issue 4's scale: throughput against mlr, and the
# memory an open key takes with and without a t-digest. Not used by the tests; prints a
# Markdown table.
#
# Usage: sh bench/window/run.sh [/path/to/telem] [events]   (default: telem on PATH, 5000000)
#        MLR=0 sh bench/window/run.sh ...   skips mlr (it needs about 8 GiB and a minute
#                                           per million events)
#
# Throughput data: `telem gen -n EVENTS --devices 100000 --rate 20000 --seed 1`, so that a
# device sees about 12 events in each 1-minute window (with gen's default rate of 1000
# events/s nearly every event would open a window of its own). telem: tumbling 1 m per
# deviceId, count, avg, p50 and p99 of cpuUsage, three runs pinned to one core (taskset
# -c 0 when available), median wall and CPU time (user + sys from /usr/bin/time: on a
# shared machine the steadier measure), peak RSS. mlr: `stats1` with the same grouping
# (deviceId and a minute field it computes), one run.
#
# Memory per open key: 1 M events over 1 M possible devices within one minute (about
# 632 k distinct keys, all in one open window at the end of input), count only and then
# with p99 (a t-digest per key): (peak RSS - the peak RSS of a 1-event run) / keys. The
# last run also shows that 1 M distinct keys in one window work: --key eventId.
set -eu
export LC_ALL=C
TELEM=${1:-${TELEM:-telem}}
N=${2:-5000000}
MLR=${MLR:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PIN=""
command -v taskset > /dev/null 2>&1 && PIN="taskset -c 0"
[ -x /usr/bin/time ] || { echo "bench/window/run.sh: needs /usr/bin/time (Debian package time)" >&2; exit 2; }

AGG='count, avg(cpuUsage), p50(cpuUsage), p99(cpuUsage)'
$TELEM gen -n "$N" --devices 100000 --rate 20000 --seed 1 > "$tmp/ev"
bytes=$(wc -c < "$tmp/ev")

# one timed run of a command line: "wall cpu peak_rss_kib"
run1() {
    s=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$tmp/t" sh -c "$1" > /dev/null 2>&1
    e=$(date +%s.%N)
    echo "$(echo "$e - $s" | bc -l) $(awk '{ print $1 + $2, $3 }' "$tmp/t")"
}
# three runs: medians of wall and CPU, the largest peak RSS
run3() {
    for r in 1 2 3; do run1 "$1"; done > "$tmp/runs"
    echo "$(cut -d' ' -f1 "$tmp/runs" | sort -n | sed -n 2p) $(cut -d' ' -f2 "$tmp/runs" | sort -n | sed -n 2p) $(cut -d' ' -f3 "$tmp/runs" | sort -n | tail -n 1)"
}
row() { # name, "wall cpu rss"
    set -- "$1" $2
    printf '| %s | %.3f | %.2f M | %.3f | %.2f M | %.1f MiB |\n' "$1" "$2" \
        "$(echo "$N / $2 / 1000000" | bc -l)" "$3" "$(echo "$N / $3 / 1000000" | bc -l)" \
        "$(echo "$4 / 1024" | bc -l)"
}

echo "events: $N ($bytes bytes), 100000 devices, 20000 events/s of event time; --agg '$AGG'"
echo
echo "| command | wall s | events/s | CPU s | events/s of CPU | peak RSS |"
echo "|---|---|---|---|---|---|"
t_cat=$(run3 "$PIN cat $tmp/ev | wc -l")
row "cat \| wc -l (lower bound)" "$t_cat"
t_tel=$(run3 "$PIN $TELEM window --key deviceId --tumble 1m --agg '$AGG' --no-watermarks $tmp/ev")
row "telem window --key deviceId --tumble 1m" "$t_tel"
if [ "$MLR" != 0 ] && command -v mlr > /dev/null 2>&1; then
    t_mlr=$(run1 "$PIN mlr --ijson --ojsonl put '\$minute = int(\$timestamp / 60000)' then stats1 -a count,mean,p50,p99 -f cpuUsage -g deviceId,minute $tmp/ev")
    row "mlr stats1 -g deviceId,minute" "$t_mlr"
    set -- $t_tel
    tw=$1 tr=$3
    set -- $t_mlr
    echo
    echo "telem / mlr: $(echo "$1 / $tw" | bc -l | cut -c1-5)x faster (wall), $(echo "$3 / $tr" | bc -l | cut -c1-5)x less peak memory"
fi

# memory per open key
$TELEM gen -n 1 --seed 1 > "$tmp/one"
$TELEM gen -n 1000000 --devices 1000000 --rate 1000000 --seed 1 > "$tmp/keys"
base=$(run1 "$TELEM window --key deviceId --tumble 1m --agg 'count, p99(cpuUsage)' --no-watermarks $tmp/one" | cut -d' ' -f3)
echo
echo "| open keys in one window | aggregates | keys | peak RSS | bytes per open key |"
echo "|---|---|---|---|---|"
for agg in count 'count, p99(cpuUsage)'; do
    keys=$($TELEM window --key deviceId --tumble 1m --agg "$agg" --no-watermarks "$tmp/keys" | wc -l)
    rss=$(run1 "$TELEM window --key deviceId --tumble 1m --agg '$agg' --no-watermarks $tmp/keys" | cut -d' ' -f3)
    printf '| deviceId | %s | %d | %.1f MiB | %d |\n' "$agg" "$keys" "$(echo "$rss / 1024" | bc -l)" \
        "$(( (rss - base) * 1024 / keys ))"
done
keys=$($TELEM window --key eventId --tumble 1m --agg count --no-watermarks "$tmp/keys" | wc -l)
rss=$(run1 "$TELEM window --key eventId --tumble 1m --agg count --no-watermarks $tmp/keys" | cut -d' ' -f3)
printf '| eventId | count | %d | %.1f MiB | %d |\n' "$keys" "$(echo "$rss / 1024" | bc -l)" \
    "$(( (rss - base) * 1024 / keys ))"
echo
echo "base (one event): $((base)) KiB peak RSS"
