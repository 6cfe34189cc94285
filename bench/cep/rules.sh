#!/bin/sh
# bench/cep/rules.sh - `telem cep --rules` with 1 000 active threshold rules of JSONPath
# predicates (issue 5: >= 300 k events/s on one core). Not used by the tests; prints a
# Markdown table.
#
# Usage: sh bench/cep/rules.sh BUILD_DIR [events] [rules]
#   BUILD_DIR is a -O2 build directory (plain ./configure) holding telem; the rule and
#   event generator of bench/rules (bench_rules --write) is built there if missing.
#   Defaults: 1000000 events, 1000 rules.
#
# Data: bench/rules' mix (half global, half per customer of 200; `type == "tK" && amount >
# C`, `country in [..] && type == "tK"`, 20 range-only, 10 needing a DOM; a quarter with a
# 1 m window), events 1 ms apart over 10 000 customers, about 116 bytes each. Rows: the
# cat lower bound, the stage loop with an empty rule set (`--control /dev/null`), and the
# 1 000 rules; events/s is events / wall time, median of 3, one core (taskset -c 0 when
# available). There is no jq or mlr equivalent of a rule set (per-key counts); see
# bench/rules/run.sh for the engine alone against the naive evaluation.
set -eu
export LC_ALL=C
B=${1:?usage: rules.sh BUILD_DIR [events] [rules]}
N=${2:-1000000}
R=${3:-1000}
TELEM="$B/telem"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PIN=""
command -v taskset > /dev/null 2>&1 && PIN="taskset -c 0"
[ -x "$B/bench/rules/bench_rules" ] || make -C "$B" bench/rules/bench_rules > /dev/null
"$B/bench/rules/bench_rules" --rules "$R" --events "$N" --write "$tmp/b"

# median wall time of 3 runs of a shell command line, in seconds
timeit() {
    for r in 1 2 3; do
        s=$(date +%s.%N)
        sh -c "$1" > /dev/null 2>&1
        e=$(date +%s.%N)
        echo "$e - $s" | bc -l
    done | sort -n | sed -n 2p
}
row() { # name, seconds
    printf '| %s | %.3f | %.0f k |\n' "$1" "$2" "$(echo "$N / $2 / 1000" | bc -l)"
}

echo "| $N events ($(wc -c < "$tmp/b.events.ndjson") bytes) | s | events/s |"
echo "|---|---:|---:|"
row "cat (lower bound)" "$(timeit "$PIN cat $tmp/b.events.ndjson")"
row "telem cep, no rules (stage loop)" \
    "$(timeit "$PIN $TELEM cep --control /dev/null $tmp/b.events.ndjson")"
row "telem cep --rules, $R threshold rules" \
    "$(timeit "$PIN $TELEM cep --rules $tmp/b.rules.ndjson $tmp/b.events.ndjson")"
alerts=$($TELEM cep --rules "$tmp/b.rules.ndjson" "$tmp/b.events.ndjson" | grep -c '"rule"')
echo
echo "alerts: $alerts; target: >= 300 k events/s with 1 000 rules"
