#!/bin/sh
# t1004: the raw archive: segments rotate, replay equals what was accepted, and an
# archiving ingest killed with SIGKILL leaves only readable segments.
. "$top_srcdir/tests/cli/lib.sh"

test_expect_success 'setup' '
    "$TELEM" gen -n 100000 --devices 500 > ev
'

test_expect_success 'every accepted record is archived; bad lines are not' '
    { cat ev; echo "not json"; } | "$TELEM" ingest --archive arch --archive-segment-size 200000 --stats > out 2> err &&
    test_cmp ev out &&
    test "$(ls arch/*.zst | wc -l)" -gt 3 &&
    zstdcat arch/*.zst > replay &&
    test_cmp ev replay &&
    grep -q "\"archived\":100000" err
'

test_expect_success 'a replay through telem reads the segments in order' '
    "$TELEM" ingest arch/*.zst > replay2 &&
    test_cmp ev replay2
'

test_expect_success 'a second run starts new segments after the old ones' '
    before=$(ls arch/*.zst | wc -l) &&
    head -n 10 ev | "$TELEM" ingest --archive arch > /dev/null &&
    test "$(ls arch/*.zst | wc -l)" = $((before + 1)) &&
    zstdcat "$(ls arch/*.zst | tail -n 1)" > last &&
    head -n 10 ev > want && test_cmp want last
'

test_expect_success 'SIGKILL mid-stream: every segment is readable and holds a prefix' '
    mkfifo feed || exit 1
    ( cat ev; sleep 30 ) > feed &
    feeder=$!
    "$TELEM" ingest --archive killed --archive-segment-size 100000 < feed > kout &
    pid=$!
    wait_for kout "\"eventId\":60000}" 100 &&
    sleep 0.3 &&
    kill -9 $pid; wait $pid; kill $feeder 2>/dev/null; wait $feeder;
    for f in killed/*.zst; do zstd -q -t "$f" || { echo "unreadable $f"; exit 1; }; done &&
    "$TELEM" ingest killed/*.zst > got 2> err &&
    test ! -s err &&
    n=$(wc -l < got) &&
    test "$n" -ge 60000 &&
    head -n "$n" ev > want && test_cmp want got
'

test_expect_success '--received-at stamps the arrival wall time' '
    before=$(date +%s) &&
    printf "{\"a\":1}\n" | "$TELEM" ingest --received-at rcv --time-unit-out s > out &&
    after=$(date +%s) &&
    t=$(sed "s/.*\"rcv\":\([0-9]*\)}/\1/" out) &&
    test "$t" -ge "$before" && test "$t" -le "$after" &&
    grep -q "^{\"a\":1,\"rcv\":[0-9]*}$" out
'

test_done
