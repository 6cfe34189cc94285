#!/bin/sh
# bench/cep/run.sh - telem cep throughput on a two-stage pattern over 100 k keys, and the
# memory a partial match takes. Not used by the tests; prints a Markdown table.
#
# Usage: sh bench/cep/run.sh [/path/to/telem] [events]   (default: telem on PATH, 2000000)
#
# Data: `events` events (awk, fixed seed), keys k0..k99999 drawn at random, alternately
# metric "start" and "end", timestamps 1 ms apart, about 70 bytes each. The pattern is
# `start: metric == "start" -> end: metric == "end" within 1h`, per key. There is no jq
# or mlr equivalent of a CEP pattern (both would have to keep per-key state in a script
# of their own), so the peer is a cat-like lower bound: reading the bytes with cat and
# counting lines with wc -l. One core (taskset -c 0 when available); the median of 3 runs,
# wall time and CPU time (user + sys of the whole command line, from /usr/bin/time when
# it is there): on a shared machine the CPU time is the steadier measure.
set -eu
export LC_ALL=C
TELEM=${1:-${TELEM:-telem}}
N=${2:-2000000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PIN=""
command -v taskset > /dev/null 2>&1 && PIN="taskset -c 0"

awk -v n="$N" 'BEGIN { srand(1); for (i = 0; i < n; i++) { k = int(rand() * 100000);
    printf "{\"timestamp\":%.0f,\"session\":\"k%d\",\"metric\":\"%s\",\"value\":%d}\n",
    1700000000000 + i, k, (i % 2) ? "end" : "start", i % 1000 } }' > "$tmp/ev"
bytes=$(wc -c < "$tmp/ev")

# 3 runs of a shell command line: "median wall seconds, median CPU seconds" (CPU 0 when
# /usr/bin/time is missing)
timeit() {
    for r in 1 2 3; do
        s=$(date +%s.%N)
        if [ -x /usr/bin/time ]; then
            /usr/bin/time -f "%U %S" -o "$tmp/cpu" sh -c "$1" > /dev/null 2>&1
        else
            sh -c "$1" > /dev/null 2>&1
            echo "0 0" > "$tmp/cpu"
        fi
        e=$(date +%s.%N)
        echo "$(echo "$e - $s" | bc -l) $(awk '{ print $1 + $2 }' "$tmp/cpu")"
    done > "$tmp/runs"
    echo "$(cut -d' ' -f1 "$tmp/runs" | sort -n | sed -n 2p) $(cut -d' ' -f2 "$tmp/runs" | sort -n | sed -n 2p)"
}

PAT='start: metric == "start" -> end: metric == "end" within 1h'
row() { # name, "wall cpu"
    set -- "$1" $2
    if [ "$(echo "$3 > 0" | bc -l)" = 1 ]; then
        printf '| %s | %.3f | %.2f M | %.3f | %.2f M |\n' "$1" "$2" "$(echo "$N / $2 / 1000000" | bc -l)" \
            "$3" "$(echo "$N / $3 / 1000000" | bc -l)"
    else
        printf '| %s | %.3f | %.2f M | - | - |\n' "$1" "$2" "$(echo "$N / $2 / 1000000" | bc -l)"
    fi
}
echo "events: $N ($bytes bytes), keys: 100000, pattern: $PAT"
echo
echo "| command | wall s | events/s | CPU s | events/s of CPU |"
echo "|---|---|---|---|---|"
t_cat=$(timeit "$PIN cat $tmp/ev | wc -l")
row "cat \| wc -l (lower bound)" "$t_cat"
t_def=$(timeit "$PIN $TELEM cep --key session --no-watermarks --pattern '$PAT' $tmp/ev")
row "telem cep (matches as events)" "$t_def"
t_emit=$(timeit "$PIN $TELEM cep --key session --no-watermarks --pattern '$PAT' --emit '{\"key\": key, \"ms\": end.timestamp - start.timestamp}' $tmp/ev")
row "telem cep --emit template" "$t_emit"
t_nok=$(timeit "$PIN $TELEM cep --no-watermarks --pattern '$PAT' $tmp/ev")
row "telem cep without --key (one stream)" "$t_nok"
RARE='start: metric == "start" -> end: metric == "end" && value > 990 within 1h'
t_rare=$(timeit "$PIN $TELEM cep --key session --no-watermarks --pattern '$RARE' $tmp/ev")
row "telem cep, 1 % of ends match (~10 open partial matches per key)" "$t_rare"
echo
echo "ratio telem cep / cat (wall): $(echo "${t_def%% *} / ${t_cat%% *}" | bc -l | cut -c1-5)"

# memory per partial match: only starts, so every event opens a partial match that stays
# open (within 1h is not reached); the run ends with a snapshot (--state) so --stats
# reports the open state, and /usr/bin/time the peak RSS
awk -v n=1000000 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"timestamp\":%.0f,\"session\":\"k%d\",\"metric\":\"start\"}\n", 1700000000000 + i, i % 100000 }' > "$tmp/open"
$TELEM cep --key session --no-watermarks --pattern "$PAT" --state "$tmp/st" --stats \
    "$tmp/open" > /dev/null 2> "$tmp/stats"
pm=$(sed -n 's/.*"partial_matches":\([0-9]*\).*/\1/p' "$tmp/stats")
sb=$(sed -n 's/.*"state_bytes":\([0-9]*\).*/\1/p' "$tmp/stats")
echo
echo "open partial matches: $pm, state_bytes: $sb, bytes per partial match: $((sb / pm))"
if [ -x /usr/bin/time ]; then
    rm -f "$tmp/st"
    /usr/bin/time -f "%M" $TELEM cep --key session --no-watermarks --pattern "$PAT" \
        --state "$tmp/st" "$tmp/open" > /dev/null 2> "$tmp/rss"
    rss=$(tail -n 1 "$tmp/rss")
    echo "peak RSS: $rss KiB, $((rss * 1024 / pm)) bytes per open partial match"
fi
