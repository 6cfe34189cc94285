#!/bin/sh
# t1001: live input: results flushed at once, idle time advancing watermarks, SIGHUP,
# SIGTERM, progress on a terminal.
. "$top_srcdir/tests/cli/lib.sh"

test_expect_success 'a live pipe sees each event at once (flush when input is idle)' '
    mkfifo in || exit 1
    "$TELEM" ingest < in > out 2> err &
    pid=$! &&
    exec 3> in &&
    echo "{\"n\":1}" >&3 &&
    wait_for out "\"n\":1" &&
    echo "{\"n\":2}" >&3 &&
    wait_for out "\"n\":2" &&
    exec 3>&- &&
    wait $pid &&
    test "$(cat out)" = "$(printf "{\"n\":1}\n{\"n\":2}")"
'

test_expect_success '--idle-timeout advances the watermark on a quiet live input' '
    rm -f in && mkfifo in || exit 1
    "$TELEM" ingest --time-field ts --idle-timeout 300ms < in > out 2> err &
    pid=$! &&
    exec 3> in &&
    echo "{\"ts\":1704067200000}" >&3 &&
    wait_for out "__watermark\":1704067199999" &&
    wait_for out "__watermark\":17040672[0-9][0-9][0-9][0-9][0-9]}" &&
    sleep 1 &&
    exec 3>&- &&
    wait $pid &&
    test "$(grep -c __watermark out)" -ge 2 &&
    last=$(grep __watermark out | tail -n 1 | tr -dc 0-9) &&
    test "$last" -gt 1704067200200
'

test_expect_success 'SIGHUP does not stop a stage' '
    rm -f in && mkfifo in || exit 1
    "$TELEM" ingest < in > out 2> err &
    pid=$! &&
    exec 3> in &&
    echo "{\"n\":1}" >&3 &&
    wait_for out "\"n\":1" &&
    kill -HUP $pid &&
    echo "{\"n\":2}" >&3 &&
    wait_for out "\"n\":2" &&
    exec 3>&- &&
    wait $pid
'

test_expect_success 'SIGTERM without --state stops with 128+15' '
    rm -f in && mkfifo in || exit 1
    "$TELEM" ingest < in > out 2> err &
    pid=$! &&
    exec 3> in &&
    echo "{\"n\":1}" >&3 &&
    wait_for out "\"n\":1" &&
    kill -TERM $pid &&
    { wait $pid; rc=$?; } ;
    exec 3>&- ;
    test "$rc" = 143
'

if command -v script >/dev/null 2>&1; then
test_expect_success '--progress shows rate, watermark and share read on a terminal' '
    "$TELEM" gen -n 200000 > ev &&
    script -qec "\"$TELEM\" ingest --progress --time-field timestamp ev -o /dev/null" /dev/null > tty &&
    grep -q "telem ingest: 200000 events" tty &&
    grep -q "watermark 2024-01-01T00:03:19.998Z" tty &&
    grep -q "100.0% read" tty
'
else
test_skip 'script(1) not installed'
fi

test_expect_success '--progress is silent when stderr is not a terminal' '
    "$TELEM" gen -n 1000 | "$TELEM" ingest --progress > /dev/null 2> err &&
    test ! -s err
'

test_done
