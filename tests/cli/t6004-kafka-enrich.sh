#!/bin/sh
# t6004: `telem enrich --join` reading its left side from Kafka (mock cluster) with one join
# per partition (each reads the whole --join file and keeps its own buffers). One copy
# equals the file run; two copies in one group, one killed with SIGKILL and restarted: the
# union of their pairs, deduplicated, equals one uninterrupted run over the same events.
# With a kafka:// input, --unjoined and a --join that is not a regular file are refused.
KAFKA_TOPICS="ej1:4 ej2:4"
. "$top_srcdir/tests/cli/kafka-lib.sh"

# join ARGS...: the pipeline every run uses
join() {
    "$TELEM" enrich --join right.ndjson --on deviceId --within 1s --no-watermarks "$@"
}

# start NAME STATE GROUP TOPIC: a copy in the background (NAME.out, NAME.err); pid in $pid
start() {
    "$TELEM" enrich --join right.ndjson --on deviceId --within 1s --no-watermarks \
        --checkpoint-interval 20ms --state "$2" -i "kafka://$BOOT/$4?group=$3&$KOPT" \
        > "$1.out" 2> "$1.err" &
    pid=$!
}

test_expect_success 'setup: events, a second stream, the pairs of one uninterrupted run' '
    "$TELEM" gen -n 20000 --devices 16 --rate 100 > ev.ndjson &&
    "$TELEM" gen -n 2000 --devices 16 --rate 10 --seed 7 > right.ndjson &&
    head -n 10000 ev.ndjson > first.ndjson &&
    tail -n 10000 ev.ndjson > second.ndjson &&
    join -i ev.ndjson | sort > want &&
    test "$(wc -l < want)" -gt 10000
'

test_expect_success 'one copy, one join per partition: the file run' '
    produce ej1 ev.ndjson &&
    join -i "kafka://$BOOT/ej1?group=g1&eof=1&$KOPT" > one 2> one.err &&
    sort one > one.s &&
    test_cmp want one.s
'

test_expect_success 'two copies, one killed (SIGKILL) and restarted: the union is exact' '
    mkdir st &&
    kill_and_restart st/j g2 ej2 join &&
    test_cmp want union
'

test_expect_success 'kafka input: --unjoined and a --join FIFO are refused' '
    { join --unjoined u.ndjson -i "kafka://$BOOT/ej1?group=g3" 2> err; test $? = 2; } &&
    grep "unjoined: not with a kafka:// input" err &&
    mkfifo rf &&
    { "$TELEM" enrich --join rf --on deviceId --within 1s -i "kafka://$BOOT/ej1?group=g3" 2> err;
      test $? = 2; } &&
    grep "join: with a kafka:// input, a regular file" err
'

test_done
