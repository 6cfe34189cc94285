#!/bin/sh
# bench/rules/run.sh - time the seed 002 rule engine: 1 000 threshold rules, indexed vs naive.
# Usage: sh bench/rules/run.sh BUILD_DIR [bench_rules options]
#   BUILD_DIR is a -O2 build directory (plain ./configure); the driver is built there with
#   `make bench/rules/bench_rules` if missing. See bench/rules/README.md.
set -eu
b=${1:?usage: run.sh BUILD_DIR [options]}
shift
[ -x "$b/bench/rules/bench_rules" ] || make -C "$b" bench/rules/bench_rules >/dev/null
echo "== 1000 rules (20 range-only, 10 needing a DOM), 1M events"
"$b/bench/rules/bench_rules" --rules 1000 "$@"
echo "== 1000 rules, all indexed and simple"
"$b/bench/rules/bench_rules" --rules 1000 --range 0 --complex 0 "$@"
echo "== 1000 rules, 100 range-only, 50 needing a DOM"
"$b/bench/rules/bench_rules" --rules 1000 --range 100 --complex 50 "$@"
echo "== 1000 rules, all range-only (amount > C && country != \"US\")"
"$b/bench/rules/bench_rules" --rules 1000 --range 1000 --complex 0 --events 300000 --naive-events 5000 "$@"
echo "== 10000 rules"
"$b/bench/rules/bench_rules" --rules 10000 --naive-events 2000 "$@"
