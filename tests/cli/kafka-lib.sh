# kafka-lib.sh - for the Kafka tests: skips them all when telem was built without Kafka,
# otherwise starts librdkafka's mock cluster (tests/kafka/mock-cluster) with the topics
# in $KAFKA_TOPICS ("name:partitions ..."), sets $BOOT to its address and $KOPT to client
# settings that make group rebalances quick, and stops it when the test ends.
. "$top_srcdir/tests/cli/lib.sh"
MOCK="${top_builddir:-.}/tests/kafka/mock-cluster"
if [ ! -x "$MOCK" ]; then
    echo "1..0 # SKIP built without Kafka (librdkafka)"
    exit 0
fi
"$MOCK" $KAFKA_TOPICS > "$TRASH/.mock" 2> "$TRASH/.mock-err" &
mock_pid=$!
trap 'kill -TERM $mock_pid 2>/dev/null; wait $mock_pid 2>/dev/null; rm -rf "$TRASH"' EXIT
wait_for "$TRASH/.mock" "127.0.0.1:" || { echo "Bail out! the mock cluster did not start"; exit 1; }
BOOT=$(head -n 1 "$TRASH/.mock")
KOPT="session.timeout.ms=4000&heartbeat.interval.ms=300"

# produce TOPIC FILE: the events of FILE into TOPIC, keyed by deviceId
produce() {
    "$TELEM" ingest -i "$2" -o "kafka://$BOOT/$1?key=deviceId"
}

# consumed STATE: the messages the partitions' snapshots cover (their next offsets;
# partitions 0-3)
consumed() {
    n=0
    for p in 0 1 2 3; do
        o=$("$TELEM" inspect "$1.p$p" 2>/dev/null | sed -n "s/.*\"offset\": \([0-9]*\).*/\1/p" | head -n 1)
        n=$((n + ${o:-0}))
    done
    echo $n
}

# wait_consumed STATE N: until the snapshots cover N messages (up to 60 s)
wait_consumed() {
    for i in $(seq 1 600); do
        [ "$(consumed "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    echo "the copies did not read everything: $(consumed "$1") of $2"
    return 1
}

# kill_and_restart STATE GROUP TOPIC RUN: the test's `start NAME STATE GROUP TOPIC` (a
# copy in the background, output NAME.out, $pid) twice in GROUP over TOPIC, with
# first.ndjson produced before and second.ndjson after; the first copy is killed with
# SIGKILL as soon as a copy has written, and restarted; once the snapshots cover every
# message both are stopped, and `RUN --state STATE -i TOPIC --drain` finishes. The
# outputs of all, deduplicated, go to the file union.
kill_and_restart() {
    produce "$3" first.ndjson &&
    start a1 "$1" "$2" "$3" &&
    a=$pid &&
    start b "$1" "$2" "$3" &&
    b=$pid &&
    for i in $(seq 1 300); do
        test -s a1.out || test -s b.out && break
        sleep 0.1
    done &&
    kill -KILL $a && { wait $a; true; } &&
    start a2 "$1" "$2" "$3" &&
    a=$pid &&
    produce "$3" second.ndjson &&
    wait_consumed "$1" "$(cat first.ndjson second.ndjson | wc -l)" &&
    kill -TERM $a $b && wait $a && wait $b &&
    $4 --state "$1" -i "kafka://$BOOT/$3?group=$2&eof=1&$KOPT" --drain > d.out 2> d.err &&
    cat a1.out a2.out b.out d.out | sort -u > union
}
