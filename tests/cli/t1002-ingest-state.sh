#!/bin/sh
# t1002: snapshots and replay with a real stage: SIGTERM snapshots and a restart
# continues exactly; SIGKILL at random points loses nothing; refusals are clear.
. "$top_srcdir/tests/cli/lib.sh"

test_expect_success 'setup: 200k events in a file and zstd-compressed' '
    "$TELEM" gen -n 200000 --devices 1000 > ev &&
    zstd -q -c ev > ev.zst
'

test_expect_success 'EOF with --state snapshots; rerun over the same log emits nothing more' '
    "$TELEM" ingest --state s1 ev > out &&
    test_cmp ev out &&
    "$TELEM" ingest --state s1 ev > out2 &&
    test ! -s out2
'

test_expect_success 'a log that grew continues where the snapshot stopped' '
    head -n 1000 ev > grow &&
    "$TELEM" ingest --state s2 grow > out &&
    sed -n "1001,1500p" ev >> grow &&
    "$TELEM" ingest --state s2 grow > out2 &&
    sed -n "1001,1500p" ev > want &&
    test_cmp want out2
'

test_expect_success 'a growing CSV file continues under its header' '
    printf "a,b\n1,2\n" > grow.csv &&
    "$TELEM" ingest -f csv --state s9 grow.csv > out &&
    printf "3,4\n" >> grow.csv &&
    "$TELEM" ingest -f csv --state s9 grow.csv >> out &&
    printf "{\"a\":1,\"b\":2}\n{\"a\":3,\"b\":4}\n" > want &&
    test_cmp want out
'

test_expect_success 'output appended after a clean end is left alone on restart' '
    head -n 5 ev > five &&
    "$TELEM" ingest --state s10 five > log &&
    echo "{\"note\":\"written by someone else\"}" >> log &&
    "$TELEM" ingest --state s10 five >> log &&
    test "$(wc -l < log)" = 6
'

test_expect_success 'next hour'"'"'s log under the same name is read from its start' '
    head -n 10 ev > hour && "$TELEM" ingest --state s3 hour > /dev/null &&
    sed -n "11,20p" ev > hour && "$TELEM" ingest --state s3 hour > out &&
    test_cmp hour out
'

test_expect_success 'SIGTERM snapshots; the restarted run continues exactly (zstd through a FIFO)' '
    mkfifo slow || exit 1
    ( zstd -dc ev.zst | head -n 50000; sleep 2; zstd -dc ev.zst | tail -n +50001 ) > slow &
    feeder=$!
    "$TELEM" ingest --state s4 slow > part1 &
    pid=$! &&
    wait_for part1 "\"eventId\":50000}" 100 &&
    kill -TERM $pid && wait $pid &&
    wait $feeder ;
    test "$(wc -l < part1)" = 50000 || exit 1
    cat ev.zst > slow &
    "$TELEM" ingest --state s4 slow > part2 &&
    cat part1 part2 > all &&
    test_cmp ev all
'

test_expect_success 'SIGKILL at random points with --checkpoint-interval loses nothing' '
    rm -f s5 out5 &&
    i=0 &&
    while [ $i -lt 6 ]; do
        i=$((i + 1))
        "$TELEM" ingest --state s5 --checkpoint-interval 1ms -i ev.zst >> out5 &
        pid=$! &&
        sleep 0.0$(( (i * 37) % 9 + 1 )) &&
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null;
        true
    done &&
    "$TELEM" ingest --state s5 -i ev.zst >> out5 &&
    sort -u out5 > got && sort -u ev > want &&
    test_cmp want got &&
    test "$(wc -l < out5)" -ge 200000
'

test_expect_success 'with -o FILE a restart cuts the output back: exactly once after SIGKILL' '
    rm -f s8 out8 &&
    i=0 &&
    while [ $i -lt 5 ]; do
        i=$((i + 1))
        "$TELEM" ingest --state s8 --checkpoint-interval 1ms -o out8 ev.zst &
        pid=$! &&
        sleep 0.0$(( (i * 53) % 9 + 1 )) &&
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null;
        true
    done &&
    "$TELEM" ingest --state s8 -o out8 ev.zst &&
    test_cmp ev out8
'

test_expect_success 'a snapshot taken under other time options is refused' '
    "$TELEM" ingest --time-field timestamp --state s6 ev > /dev/null &&
    { "$TELEM" ingest --time-field timestamp --max-out-of-order 5s --state s6 ev > out 2> err; test $? = 1; } &&
    echo "telem ingest: s6: snapshot was written with max_out_of_order=\"0s\", now max_out_of_order=\"5s\"; use another --state file or the same options" > want &&
    test_cmp want err && test ! -s out
'

test_expect_success 'a truncated or damaged snapshot is a clear error, never a crash' '
    "$TELEM" ingest --state s7 ev > /dev/null &&
    head -c 60 s7 > s7cut &&
    { "$TELEM" ingest --state s7cut ev > out 2> err; test $? = 1; } &&
    grep -q "^telem ingest: s7cut: snapshot is unreadable: truncated zstd stream" err &&
    echo "hello" > s7junk &&
    { "$TELEM" ingest --state s7junk ev > out 2> err; test $? = 1; } &&
    grep -q "^telem ingest: s7junk: not a telem snapshot (not zstd-compressed)" err
'

test_done
