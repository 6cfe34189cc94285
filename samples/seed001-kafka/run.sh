#!/bin/sh
# samples/seed001-kafka/run.sh - two copies of seed 001's window pipeline sharing a Kafka
# topic of 4 partitions keyed by deviceId, in one consumer group: per-device CPU
# percentiles over 10-minute windows sliding every minute, 5 minutes of allowed lateness
# that revise rows, too-late events to a side file per copy, and a global top 10 ranked
# by one downstream stage over both copies' rows.
#
# Each copy owns some partitions and keeps one window state and one snapshot per
# partition (the copies share one set of state/w.pN files). With late events, the rows of
# a partition are those of one run over that partition alone, so the union of the
# copies is checked against ONE copy reading the whole topic (another consumer group),
# not against a run over the event file: run.sh fails if they differ.
#
# The broker is librdkafka's mock cluster (tests/kafka/mock-cluster), found next to
# $TELEM or through $TELEM_MOCK_CLUSTER. Without it, run.sh runs one window per
# partition over the event file (the rows telem(1) says a partition gives) instead.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
mock=""
trap '[ -n "$mock" ] && kill "$mock" 2>/dev/null; rm -rf "$tmp"' EXIT

# 6000 IoT events from 20 devices, 10 per second of event time, up to 30 s out of
# order (the window allows 10 s: later ones revise rows within the 5 minutes of allowed
# lateness); 1 % arrive 30 minutes late, too late for any window (as seed001-iot-window)
"$TELEM" gen -n 6000 --devices 20 --rate 10 --disorder 30s --late-fraction 0.01 \
    --late-by 30m --seed 1 > "$tmp/events.ndjson"
W="window --key deviceId --slide 10m --every 1m --max-out-of-order 10s --allowed-lateness 5m --no-watermarks"
AGG="count, p50(cpuUsage), p90(cpuUsage), p99(cpuUsage)"

# The partition of each device: what librdkafka's default partitioner (CRC32 of the key,
# modulo 4) gives the keys device-0 ... device-19; checked against the topic below.
PARTS="device-0:3 device-1:1 device-2:3 device-3:1 device-4:2 device-5:0 device-6:2
device-7:0 device-8:1 device-9:3 device-10:3 device-11:1 device-12:3 device-13:1
device-14:2 device-15:0 device-16:2 device-17:0 device-18:1 device-19:3"

MOCK=${TELEM_MOCK_CLUSTER:-$(dirname "$(command -v "$TELEM")")/tests/kafka/mock-cluster}
if [ -x "$MOCK" ]; then
    "$MOCK" iot:4 > "$tmp/boot" &
    mock=$!
    while ! [ -s "$tmp/boot" ]; do sleep 0.1; done
    BOOT=$(cat "$tmp/boot")
    # the producer side: events keyed by device, so each device lives in one partition
    "$TELEM" ingest -i "$tmp/events.ndjson" -o "kafka://$BOOT/iot?key=deviceId"
    K="eof=1&session.timeout.ms=4000&heartbeat.interval.ms=300"

    # two copies in group "seed001", sharing one snapshot per partition (state/w.p0 ...
    # state/w.p3), each with its own side file of too-late events; eof=1 ends each copy
    # when its partitions are read, --drain then closes its windows
    mkdir "$tmp/state"
    IN="kafka://$BOOT/iot?group=seed001&$K"
    "$TELEM" $W --agg "$AGG" --state "$tmp/state/w" --drain --late "$tmp/late1.ndjson" \
        -i "$IN" > "$tmp/copy1.ndjson" &
    c1=$!
    "$TELEM" $W --agg "$AGG" --state "$tmp/state/w" --drain --late "$tmp/late2.ndjson" \
        -i "$IN" > "$tmp/copy2.ndjson" &
    c2=$!
    wait $c1
    wait $c2

    # the reference: ONE copy reading the whole topic in another group, own state
    "$TELEM" $W --agg "$AGG" --state "$tmp/state/one" --drain --late "$tmp/late-one.ndjson" \
        -i "kafka://$BOOT/iot?group=seed001-one&$K" > "$tmp/one.ndjson"

    # the device -> partition table above is what the topic holds
    "$TELEM" ingest -i "kafka://$BOOT/iot?group=seed001-parts&partition-field=partition&$K" |
        sed -n 's/^{"partition":\([0-9]*\),"deviceId":"\([^"]*\)".*/\2:\1/p' |
        sort -u > "$tmp/parts.topic"
    for p in $PARTS; do echo "$p"; done | sort > "$tmp/parts.table"
    if ! cmp -s "$tmp/parts.table" "$tmp/parts.topic"; then
        echo "seed001-kafka: FAILED: the topic's device -> partition map is not PARTS:" >&2
        diff "$tmp/parts.table" "$tmp/parts.topic" >&2 || true
        exit 1
    fi
else
    echo "seed001-kafka: the mock cluster (tests/kafka/mock-cluster, built by" \
        "\`make check\` or \`make tests/kafka/mock-cluster\` when telem has Kafka) was" \
        "not found at $MOCK: running one window per partition over the event file" \
        "instead of two copies on Kafka" >&2
    : > "$tmp/copy1.ndjson"
    : > "$tmp/late1.ndjson"
    for n in 0 1 2 3; do
        devs=$(for p in $PARTS; do case $p in *:$n) printf '%s|' "${p%:*}" ;; esac; done)
        grep -E "\"deviceId\":\"(${devs%|})\"" "$tmp/events.ndjson" > "$tmp/p$n.ndjson" || true
        "$TELEM" $W --agg "$AGG" --late "$tmp/late-p$n.ndjson" "$tmp/p$n.ndjson" >> "$tmp/copy1.ndjson"
        cat "$tmp/late-p$n.ndjson" >> "$tmp/late1.ndjson"
    done
    : > "$tmp/copy2.ndjson"
    : > "$tmp/late2.ndjson"
    cp "$tmp/copy1.ndjson" "$tmp/one.ndjson"
    cp "$tmp/late1.ndjson" "$tmp/late-one.ndjson"
fi

# the union of both copies, deduplicated by row identity (key, window, revision), must
# be byte-identical to the one copy's rows, and their too-late events to its own
sort -u "$tmp/copy1.ndjson" "$tmp/copy2.ndjson" > "$tmp/union.ndjson"
sort -u "$tmp/one.ndjson" > "$tmp/one.sorted"
if ! cmp -s "$tmp/union.ndjson" "$tmp/one.sorted"; then
    echo "seed001-kafka: FAILED: the union of the two copies differs from one copy:" >&2
    diff "$tmp/one.sorted" "$tmp/union.ndjson" | head -n 20 >&2 || true
    exit 1
fi
sort "$tmp/late1.ndjson" "$tmp/late2.ndjson" > "$tmp/late.union"
sort "$tmp/late-one.ndjson" > "$tmp/late.one"
if ! cmp -s "$tmp/late.union" "$tmp/late.one"; then
    echo "seed001-kafka: FAILED: the copies' too-late events differ from one copy's" >&2
    exit 1
fi

# per-device history (seed 001's cpu_metrics_by_device): device-7's rows, by window
# and revision
grep '"deviceId":"device-7"' "$tmp/union.ndjson" | sort -t: -k3,3n -k9,9n

# rows revised by late events, and events too late for any window (both late files)
echo "{\"revised_rows\":$(grep -c '"revision":[1-9]' "$tmp/union.ndjson"),\"too_late\":$(cat "$tmp/late1.ndjson" "$tmp/late2.ndjson" | wc -l | tr -d ' ')}"

# the global top 10 by p99 (seed 001's /metrics/top/10), ranked by ONE downstream stage
# over both copies' rows: the rows in order of window start and revision, one ranking
# window per window start (--tumble 1m on window_start), each device's p99 of its last
# revision; the last window shown
sort -t: -k3,3n -k9,9n "$tmp/union.ndjson" |
    "$TELEM" window --time-field window_start --tumble 1m --key deviceId \
        --agg 'last(p99_cpuUsage) as p99_cpuUsage' --top 10 --by p99_cpuUsage --no-watermarks |
    tail -n 10
