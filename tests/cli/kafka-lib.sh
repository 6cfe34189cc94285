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
