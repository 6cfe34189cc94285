#!/bin/sh
# t6002: copies of `telem window` sharing a Kafka topic in one consumer group (mock
# cluster): one killed with SIGKILL and restarted, a third copy joining (rebalance), an
# idle partition. In each case the union of the copies' rows, deduplicated, equals the
# rows of one uninterrupted run over the same events.
KAFKA_TOPICS="ev1:4 ev2:4 ev3:4"
. "$top_srcdir/tests/cli/kafka-lib.sh"

AGG="count,avg(cpuUsage),max(temperature)"

# the pipeline each copy runs: "$TELEM" $W --state FILE -i URL
W="window --key deviceId --tumble 10s --agg $AGG --no-watermarks --checkpoint-interval 20ms"

# start NAME STATE GROUP TOPIC: a copy in the background (output NAME.out, errors
# NAME.err); its process id in $pid
start() {
    "$TELEM" $W --state "$2" -i "kafka://$BOOT/$4?group=$3&$KOPT" > "$1.out" 2> "$1.err" &
    pid=$!
}

# produce TOPIC FILE
# rows FILE...: the rows of the files, deduplicated and sorted
rows() {
    cat "$@" | grep -v __watermark | sort -u
}

# wait_rows FILE...: wait (up to 60 s) until the files hold every row but the last window
# of each of the 16 keys (those fire only at the end): the group has read everything
wait_rows() {
    need=$(($(wc -l < want) - 16))
    for i in $(seq 1 600); do
        [ "$(rows "$@" | wc -l)" -ge $need ] && return 0
        sleep 0.1
    done
    echo "the copies did not read everything: $(rows "$@" | wc -l) of $need rows"
    return 1
}

test_expect_success 'setup: events, halves, the rows of one uninterrupted run' '
    "$TELEM" gen -n 20000 --devices 16 --rate 100 > ev.ndjson &&
    head -n 10000 ev.ndjson > first.ndjson &&
    tail -n 10000 ev.ndjson > second.ndjson &&
    split -l 1000 second.ndjson chunk. &&
    "$TELEM" window --key deviceId --tumble 10s --agg "$AGG" --no-watermarks -i ev.ndjson |
        sort > want &&
    test "$(wc -l < want)" -gt 300
'

test_expect_success 'two copies, one killed (SIGKILL) and restarted: the union is exact' '
    mkdir st1 &&
    produce ev1 first.ndjson &&
    start a1 st1/w g1 ev1 &&
    a=$pid &&
    start b st1/w g1 ev1 &&
    b=$pid &&
    for i in $(seq 1 300); do
        test -s a1.out || test -s b.out && break
        sleep 0.1
    done &&
    kill -KILL $a && { wait $a; true; } &&
    start a2 st1/w g1 ev1 &&
    a=$pid &&
    produce ev1 second.ndjson &&
    wait_rows a1.out a2.out b.out &&
    kill -TERM $a $b && wait $a && wait $b &&
    "$TELEM" $W --state st1/w -i "kafka://$BOOT/ev1?group=g1&eof=1&$KOPT" --drain > d.out 2> d.err &&
    rows a1.out a2.out b.out d.out > union &&
    test_cmp want union
'

test_expect_success 'a third copy joins: partitions and their state move to it' '
    mkdir st2 &&
    produce ev2 first.ndjson &&
    start a st2/w g2 ev2 &&
    a=$pid &&
    start b st2/w g2 ev2 &&
    b=$pid &&
    for i in $(seq 1 300); do
        test -s a.out || test -s b.out && break
        sleep 0.1
    done &&
    start c st2/w g2 ev2 &&
    c=$pid &&
    for f in chunk.*; do
        produce ev2 $f &&
        { test -s c.out || wait_for c.out window_start 20 || true; }
    done &&
    wait_rows a.out b.out c.out &&
    test -s c.out &&
    kill -TERM $a $b $c && wait $a && wait $b && wait $c &&
    "$TELEM" $W --state st2/w -i "kafka://$BOOT/ev2?group=g2&eof=1&$KOPT" --drain > d.out 2> d.err &&
    rows a.out b.out c.out d.out > union &&
    test_cmp want union
'

test_expect_success 'an idle partition holds the watermark back until --idle-timeout' '
    sed "s/\"deviceId\":\"device-[0-9]*\"/\"deviceId\":\"one\"/" first.ndjson > one.ndjson &&
    produce ev3 one.ndjson &&
    "$TELEM" window --key deviceId --tumble 10s --agg count -i one.ndjson --no-watermarks > one.want &&
    "$TELEM" window --key deviceId --tumble 10s --agg count \
        -i "kafka://$BOOT/ev3?group=g3&eof=1&$KOPT" > held &&
    ! grep -q __watermark held &&
    "$TELEM" window --key deviceId --tumble 10s --agg count --idle-timeout 1ms \
        -i "kafka://$BOOT/ev3?group=g4&eof=1&$KOPT" > idle &&
    grep -q __watermark idle &&
    grep -v __watermark held > held.rows && test_cmp one.want held.rows &&
    grep -v __watermark idle > idle.rows && test_cmp one.want idle.rows
'

test_done
