#!/bin/sh
# t6001: Kafka input and output on librdkafka's mock cluster: keyed production, group
# consumption with key and partition fields, offsets, a topic that does not exist, a
# message that cannot be a line, a stop without --state, a failed delivery.
KAFKA_TOPICS="events:4 rows:4 bin:1 hold:2 big:1"
. "$top_srcdir/tests/cli/kafka-lib.sh"

test_expect_success 'keyed events go in; a group member reads each once' '
    "$TELEM" gen -n 2000 --devices 12 > ev.ndjson &&
    "$TELEM" ingest -i ev.ndjson -o "kafka://$BOOT/events?key=deviceId" &&
    "$TELEM" ingest -i "kafka://$BOOT/events?group=g1&eof=1&key-field=k&partition-field=p&$KOPT" > got &&
    test "$(wc -l < got)" = 2000 &&
    sed "s/^{\"k\":\"[^\"]*\",\"p\":[0-9],/{/" got | sort > got.sorted &&
    sort ev.ndjson > want && test_cmp want got.sorted
'

test_expect_success 'the message key is the key field; each key lives in one partition' '
    sed -n "s/^{\"k\":\"\([^\"]*\)\",\"p\":\([0-9]\),\"deviceId\":\"\([^\"]*\)\".*/\1 \2 \3/p" got > kpd &&
    test "$(wc -l < kpd)" = 2000 &&
    awk "\$1 != \$3" kpd > mismatch && test ! -s mismatch &&
    test "$(cut -d" " -f1,2 kpd | sort -u | wc -l)" = 12 &&
    test "$(cut -d" " -f2 kpd | sort -u | wc -l)" -gt 1
'

test_expect_success 'offsets are committed: the group resumes where it stopped' '
    "$TELEM" ingest -i "kafka://$BOOT/events?group=g1&eof=1&$KOPT" > again &&
    test ! -s again &&
    head -n 10 ev.ndjson | "$TELEM" ingest -o "kafka://$BOOT/events?key=deviceId" &&
    "$TELEM" ingest -i "kafka://$BOOT/events?group=g1&eof=1&$KOPT" | sort > ten &&
    head -n 10 ev.ndjson | sort > want10 && test_cmp want10 ten
'

test_expect_success 'a window writes its rows to a topic; they read back unchanged' '
    "$TELEM" window --key deviceId --tumble 1s --agg count -i ev.ndjson --no-watermarks > rows.file &&
    "$TELEM" window --key deviceId --tumble 1s --agg count -i ev.ndjson -o "kafka://$BOOT/rows?key=deviceId" &&
    "$TELEM" ingest -i "kafka://$BOOT/rows?group=r&eof=1&$KOPT" | sort > rows.kafka &&
    sort rows.file > rows.want && test_cmp rows.want rows.kafka
'

test_expect_success 'the output key may be an expression' '
    head -n 100 ev.ndjson > ev100 &&
    "$TELEM" ingest -i ev100 -o "kafka://$BOOT/rows?key=concat(deviceId,\"/\",eventId%2)" &&
    "$TELEM" ingest -i "kafka://$BOOT/rows?group=kx&eof=1&key-field=k&$KOPT" > kx &&
    grep "\"eventId\"" kx | sed -n "s/^{\"k\":\"\([^\"]*\)\",\"deviceId\":\"\([^\"]*\)\".*\"eventId\":\([0-9]*\)}$/\1 \2\/\3/p" |
        awk "{ split(\$2, a, \"/\"); if (\$1 != a[1] \"/\" (a[2] % 2)) bad++ } END { print NR, bad + 0 }" > kx.check &&
    echo "100 0" > kx.want && test_cmp kx.want kx.check
'

test_expect_success 'a rejected message is named by topic, partition and offset' '
    "$TELEM" window --key deviceId --tumble 1s --time-field nosuch --reject rej.ndjson \
        -i "kafka://$BOOT/events?group=rj&eof=1&$KOPT" > /dev/null &&
    test "$(wc -l < rej.ndjson)" = 2010 &&
    grep -c "^{\"source\":\"kafka://$BOOT/events#[0-3]\",\"line\":[0-9]*,\"reason\":\"no time field .nosuch.\"" rej.ndjson > n &&
    echo 2010 > want.n && test_cmp want.n n
'

test_expect_success 'a topic that does not exist is a clear error' '
    test_must_fail_1() { "$@"; test $? = 1; } &&
    test_must_fail_1 "$TELEM" ingest -i "kafka://$BOOT/nosuch?group=g&eof=1" 2> err &&
    grep "telem ingest: kafka://$BOOT/nosuch: topic .nosuch. does not exist" err &&
    echo "{}" > one && test_must_fail_1 "$TELEM" ingest -i one -o "kafka://$BOOT/nosuch" 2> err2 &&
    grep "topic .nosuch. does not exist" err2
'

test_expect_success 'an input needs a group; passwords never come from the command line' '
    ! "$TELEM" ingest -i "kafka://$BOOT/events?eof=1" 2> err &&
    grep "needs group=NAME" err &&
    ! "$TELEM" ingest -i "kafka://$BOOT/events?group=g&sasl.password=x" 2> err &&
    grep "sasl.password is never taken from the command line" err &&
    ! "$TELEM" ingest -i "kafka://$BOOT/events?group=g&no.such.property=1" 2> err &&
    grep "no.such.property" err
'

test_expect_success 'a message whose key is not UTF-8 is rejected with its own offset and value' '
    "$MOCK" --produce "$BOOT" bin 6b "{\"a\":0}" &&
    "$MOCK" --produce "$BOOT" bin fffe "{\"a\":1}" &&
    "$MOCK" --produce "$BOOT" bin 6b "{\"a\":2}" &&
    "$TELEM" ingest -i "kafka://$BOOT/bin?group=b&eof=1&key-field=k&$KOPT" --reject bin.rej > bin.out &&
    printf "%s\n" "{\"k\":\"k\",\"a\":0}" "{\"k\":\"k\",\"a\":2}" > bin.want &&
    test_cmp bin.want bin.out &&
    echo "{\"source\":\"kafka://$BOOT/bin#0\",\"line\":1,\"reason\":\"message key is not UTF-8\",\"raw\":\"{\\\"a\\\":1}\"}" > bin.rwant &&
    test_cmp bin.rwant bin.rej
'

test_expect_success 'a window stopped by SIGTERM without --state commits nothing it held' '
    "$TELEM" gen -n 3000 --devices 4 --seed 3 > hold.ndjson &&
    "$TELEM" window --key deviceId --tumble 1s --agg count --no-watermarks -i hold.ndjson | sort > hold.want &&
    produce hold hold.ndjson &&
    "$TELEM" window --key deviceId --tumble 1s --agg count --no-watermarks \
        -i "kafka://$BOOT/hold?group=h&$KOPT" > hold1.out 2> hold1.err &
    w=$! &&
    wait_for hold1.out deviceId &&
    kill -TERM $w && { wait $w; test $? = 143; } &&
    test "$(wc -l < hold1.out)" -lt "$(wc -l < hold.want)" &&
    "$TELEM" window --key deviceId --tumble 1s --agg count --no-watermarks \
        -i "kafka://$BOOT/hold?group=h&eof=1&$KOPT" | sort > hold2.out &&
    test_cmp hold.want hold2.out
'

test_expect_success 'a failed delivery ends the run at once, naming the reason' '
    mkfifo big.fifo &&
    { awk "BEGIN { printf \"{\\\"x\\\":\\\"\"; for (i = 0; i < 1100000; i++) printf \"a\"; print \"\\\"}\" }" &&
      sleep 1 && echo "{\"x\":1}" && sleep 300; } > big.fifo &
    feeder=$! &&
    { timeout 60 "$TELEM" ingest -i big.fifo -o "kafka://$BOOT/big" 2> big.err; echo $? > big.rc; } &&
    kill $feeder 2> /dev/null; pkill -P $feeder sleep 2> /dev/null;
    echo 1 > big.rcwant && test_cmp big.rcwant big.rc &&
    grep "kafka://$BOOT/big: cannot produce: " big.err
'

test_expect_success 'a reader that goes away (| head) ends a Kafka input quietly' '
    for i in 1 2 3 4 5; do
        { "$TELEM" ingest -i "kafka://$BOOT/events?group=head$i&$KOPT" 2> head.err; echo $? > head.rc; } |
            head -n 3 > head.out &&
        echo 0 > head.rcwant && test_cmp head.rcwant head.rc &&
        test ! -s head.err && test "$(wc -l < head.out)" = 3 || return 1
    done
'

test_done
