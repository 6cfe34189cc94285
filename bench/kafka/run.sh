#!/bin/sh
# bench/kafka/run.sh - Kafka input throughput: one copy of `telem window` consuming a
# keyed 4-partition topic from librdkafka's mock cluster (the real client code paths,
# over loopback TCP), against reading the same events from a file.
#
# usage: sh bench/kafka/run.sh [/path/to/opt/telem [events [runs [partitions]]]]
# The mock cluster keeps only the last 5 MB of each partition (older messages are
# deleted), so the topic has 32 partitions by default: 1 M events of ~130 bytes fit.
# The mock cluster helper is tests/kafka/mock-cluster next to the telem binary's build
# directory (make tests/kafka/mock-cluster). Group joins on the mock cluster take about
# 3 s, so rates count from each run's first message (--stats kafka_first_message_s).
set -eu
TELEM=${1:-./telem}
N=${2:-1000000}
P=${4:-32}
RUNS=${3:-3}
BUILD=$(cd "$(dirname "$TELEM")" && pwd)
MOCK=$BUILD/tests/kafka/mock-cluster
[ -x "$MOCK" ] || { echo "no $MOCK: run make tests/kafka/mock-cluster in $BUILD" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/telem-kbench.XXXXXX")
"$MOCK" events:$P > "$TMP/boot" &
MPID=$!
trap 'kill $MPID 2>/dev/null; rm -rf "$TMP"' EXIT
while ! [ -s "$TMP/boot" ]; do sleep 0.1; done
BOOT=$(cat "$TMP/boot")
OPT="session.timeout.ms=6000&heartbeat.interval.ms=500"
WIN="window --key deviceId --tumble 1m --agg count,avg(cpuUsage),max(temperature)"

now() { date +%s.%N; }
# best RUNS time of a command (seconds)
best() {
    b=""
    for r in $(seq 1 "$RUNS"); do
        t0=$(now); "$@" > /dev/null; t1=$(now)
        t=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    echo "$b"
}

echo "events: $N, $P partitions, one copy, mock cluster at $BOOT (machine: $(nproc) cores)"
"$TELEM" gen -n "$N" --devices 10000 > "$TMP/ev.ndjson"
t0=$(now)
"$TELEM" ingest -i "$TMP/ev.ndjson" -o "kafka://$BOOT/events?key=deviceId"
t1=$(now)
echo "produce (ingest -o kafka://, keyed): $(echo "$N / ($t1 - $t0)" | bc) events/s"

# rate RUN...: events/s of the best of RUNS runs of a consuming command, counted from its
# first message (--stats: seconds - kafka_first_message_s), so the group join is left out
rate() {
    b=""
    for r in $(seq 1 "$RUNS"); do
        # every run a new group (a group's second member waits for the first one's session)
        "$TELEM" "$@" -i "kafka://$BOOT/events?group=b$(date +%s%N)&eof=1&$OPT" --stats \
            2> "$TMP/stats" > /dev/null
        t=$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' "$TMP/stats")
        f=$(sed -n 's/.*"kafka_first_message_s":\([0-9.]*\).*/\1/p' "$TMP/stats")
        t=$(echo "$t - $f" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    echo "$N / $b" | bc
}
t_file=$(best "$TELEM" $WIN -i "$TMP/ev.ndjson")
echo "window from a file:             $(echo "$N / $t_file" | bc) events/s"
echo "window from Kafka (one copy):   $(rate $WIN) events/s"
echo "ingest from Kafka (one copy):   $(rate ingest) events/s"
got=$("$TELEM" ingest -i "kafka://$BOOT/events?group=c$$&eof=1&$OPT" | wc -l)
[ "$got" = "$N" ] || echo "warning: the topic holds $got events, not $N (mock retention)"
