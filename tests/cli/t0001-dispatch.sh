#!/bin/sh
# t0001: dispatch by argv[0], telem help, exit codes, closed pipes and failed writes.
. "$top_srcdir/tests/cli/lib.sh"

test_expect_success 'telem-<cmd> link runs <cmd>' '
    ln -s "$TELEM" telem-gen &&
    ./telem-gen -n 2 > a &&
    "$TELEM" gen -n 2 > b &&
    test_cmp a b &&
    ln -s "$TELEM" telem-nope &&
    { ./telem-nope; test $? = 2; }
'

test_expect_success 'every command answers -h with its usage and exit 0' '
    for c in $("$TELEM" --list-commands); do
        "$TELEM" $c -h > out &&
        head -n 1 out | grep -q "^usage: telem $c" || { echo "bad -h for $c"; return 1; }
    done
'

test_expect_success 'telem help <cmd> shows the manual page' '
    "$TELEM" help ingest > page 2>&1 &&
    grep -q "telem-ingest" page &&
    grep -q "SYNOPSIS" page
'

test_expect_success 'telem help of an unknown command suggests and exits 2' '
    { "$TELEM" help ingets 2> err; test $? = 2; } &&
    grep -q "did you mean .ingest.?" err
'

test_expect_success 'a closed pipe ends quietly with status 0' '
    "$TELEM" gen -n 2000000 2> err | head -n 1 > first &&
    test ! -s err &&
    test "$(wc -l < first)" = 1 &&
    "$TELEM" gen -n 300000 > big &&
    { "$TELEM" ingest big 2> err2; echo $? > rc; } | head -n 2 > two &&
    test "$(cat rc)" = 0 && test ! -s err2 && test "$(wc -l < two)" = 2
'

test_expect_success 'a failed write is an error (exit 1, message)' '
    { "$TELEM" gen -n 1000 > /dev/full 2> err; test $? = 1; } &&
    grep -q "write failed: No space left on device" err &&
    { printf "{\"a\":1}\n" | "$TELEM" ingest > /dev/full 2> err; test $? = 1; } &&
    grep -q "^telem ingest: -: write failed: No space left on device" err
'

test_expect_success 'a bad option value is a usage error naming the option' '
    { "$TELEM" ingest --checkpoint-interval soon 2> err; test $? = 2; } &&
    grep -q "^telem ingest: --checkpoint-interval: bad duration .soon." err &&
    { "$TELEM" ingest --time-unit min 2> err; test $? = 2; } &&
    grep -q "unknown time unit .min." err
'

test_done
