#!/bin/sh
# t6005: a copy reading Kafka (mock cluster) that writes a file (-o FILE) with --state is
# exactly-once per file: killed with SIGKILL and restarted, it cuts the file back to the
# size its partitions' snapshots recorded, so the file ends up equal to one uninterrupted
# run (no row twice, none lost). Back-pressure: a copy whose output pipe is not read
# stops taking messages (it sits in write(2), its snapshots stay behind) and, once the
# pipe is read again, writes everything exactly once.
KAFKA_TOPICS="fo1:4 fo2:4 bp1:4"
. "$top_srcdir/tests/cli/kafka-lib.sh"

W="window --key deviceId --tumble 10s --agg count,max(temperature) --no-watermarks"

test_expect_success 'setup: events, the rows of one uninterrupted run' '
    "$TELEM" gen -n 40000 --devices 16 --rate 100 > ev.ndjson &&
    "$TELEM" $W -i ev.ndjson | sort > want &&
    "$TELEM" ingest -i ev.ndjson -o "kafka://$BOOT/fo1?key=deviceId" &&
    "$TELEM" ingest -i ev.ndjson -o "kafka://$BOOT/fo2?key=deviceId" &&
    "$TELEM" ingest -i ev.ndjson -o "kafka://$BOOT/bp1?key=deviceId"
'

test_expect_success 'file output: killed before its first checkpoint, restarted: the file is exact' '
    mkdir st &&
    "$TELEM" $W --state st/w --checkpoint-interval 1h -o out.ndjson \
        -i "kafka://$BOOT/fo1?group=g1&$KOPT" 2> a.err &
    a=$!
    wait_for out.ndjson window_start 600 &&
    kill -KILL $a && { wait $a; true; } &&
    test -s out.ndjson &&
    "$TELEM" $W --state st/w -o out.ndjson --drain \
        -i "kafka://$BOOT/fo1?group=g1&eof=1&$KOPT" 2> b.err &&
    sort out.ndjson > got &&
    test_cmp want got
'

test_expect_success 'two copies, one killed; its partitions move; restarted on its file: each row in one file once' '
    mkdir st2 &&
    "$TELEM" $W --state st2/w --checkpoint-interval 1h -o fa.ndjson \
        -i "kafka://$BOOT/fo2?group=g3&$KOPT" 2> a.err &
    a=$!
    "$TELEM" $W --state st2/w --checkpoint-interval 1h -o fb.ndjson \
        -i "kafka://$BOOT/fo2?group=g3&$KOPT" 2> b.err &
    b=$!
    wait_for fa.ndjson window_start 600 &&
    kill -KILL $a && { wait $a; true; } &&
    need=$(($(wc -l < want) - 16)) &&
    n=0 &&
    while [ "$(wc -l < fb.ndjson)" -lt $need ] && [ $n -lt 600 ]; do
        n=$((n + 1)); sleep 0.1
    done &&
    "$TELEM" $W --state st2/w -o fa.ndjson --drain \
        -i "kafka://$BOOT/fo2?group=g3&eof=1&$KOPT" 2> a2.err &&
    kill -TERM $b && wait $b &&
    "$TELEM" $W --state st2/w --drain -i "kafka://$BOOT/fo2?group=g3&eof=1&$KOPT" \
        > fc.ndjson 2> c.err &&
    cat fa.ndjson fb.ndjson fc.ndjson | sort > got2 &&
    test_cmp want got2
'

test_expect_success 'back-pressure: a blocked output pipe stops the copy; nothing is lost' '
    mkdir bst && mkfifo pipe &&
    exec 5<> pipe &&
    "$TELEM" ingest --state bst/i --checkpoint-interval 10ms \
        -i "kafka://$BOOT/bp1?group=g2&eof=1&$KOPT" > pipe 2> i.err &
    i=$!
    n=0 blocked=no
    while [ $n -lt 600 ]; do
        grep -q pipe_write /proc/$i/wchan 2>/dev/null && { blocked=yes; break; }
        n=$((n + 1))
        sleep 0.1
    done
    at=$(consumed bst/i)
    cat pipe > got.ndjson &
    c=$!
    exec 5<&-
    wait $i && wait $c &&
    test $blocked = yes &&
    test "$at" -lt 40000 &&
    sort got.ndjson > got.sorted && sort ev.ndjson > ev.sorted &&
    test_cmp ev.sorted got.sorted &&
    test "$(consumed bst/i)" = 40000
'

test_done
