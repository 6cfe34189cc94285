#!/bin/sh
# samples/seed001-kafka/run.sh - two copies of seed 001's window pipeline sharing a Kafka
# topic of 4 partitions keyed by deviceId, in one consumer group: each copy owns some
# partitions, keeps one window state and one snapshot per partition, and the union of
# their rows is what one copy over all events writes.
#
# The broker is librdkafka's mock cluster (tests/kafka/mock-cluster, built by
# `make check`), found next to $TELEM or through $TELEM_MOCK_CLUSTER. When telem was
# built without Kafka, the sample runs the one-copy pipeline instead (same rows).
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
mock=""
trap '[ -n "$mock" ] && kill "$mock" 2>/dev/null; rm -rf "$tmp"' EXIT

# 6000 IoT events from 20 devices, 10 per second of event time, up to 10 s out of order
"$TELEM" gen -n 6000 --devices 20 --rate 10 --disorder 10s --seed 1 > "$tmp/events.ndjson"
W="window --key deviceId --slide 10m --every 1m --max-out-of-order 10s --no-watermarks"
AGG="count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)"

MOCK=${TELEM_MOCK_CLUSTER:-$(dirname "$(command -v "$TELEM")")/tests/kafka/mock-cluster}
if [ -x "$MOCK" ]; then
    "$MOCK" iot:4 > "$tmp/boot" &
    mock=$!
    while ! [ -s "$tmp/boot" ]; do sleep 0.1; done
    BOOT=$(cat "$tmp/boot")
    # the producer side: events keyed by device, so each device lives in one partition
    "$TELEM" ingest -i "$tmp/events.ndjson" -o "kafka://$BOOT/iot?key=deviceId"
    # two copies in group "seed001", one snapshot per partition under $tmp/state/w;
    # eof=1 ends each copy when its partitions are read, --drain then closes its windows
    mkdir "$tmp/state"
    IN="kafka://$BOOT/iot?group=seed001&eof=1&session.timeout.ms=4000&heartbeat.interval.ms=300"
    "$TELEM" $W --agg "$AGG" --state "$tmp/state/w" --drain -i "$IN" > "$tmp/copy1.ndjson" &
    c1=$!
    "$TELEM" $W --agg "$AGG" --state "$tmp/state/w" --drain -i "$IN" > "$tmp/copy2.ndjson" &
    c2=$!
    wait $c1
    wait $c2
else
    echo "seed001-kafka: telem was built without Kafka: running one copy" >&2
    "$TELEM" $W --agg "$AGG" "$tmp/events.ndjson" > "$tmp/copy1.ndjson"
    : > "$tmp/copy2.ndjson"
fi

# the union, deduplicated by row identity (key, window, revision): one device shown
sort -u "$tmp/copy1.ndjson" "$tmp/copy2.ndjson" > "$tmp/union.ndjson"
grep '"deviceId":"device-7"' "$tmp/union.ndjson" | sort -t: -k3,3n
echo "{\"rows\":$(wc -l < "$tmp/union.ndjson" | tr -d ' ')}"
