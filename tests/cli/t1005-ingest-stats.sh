#!/bin/sh
# t1005: --stats counts add up: lines read = blank + events + rejected + watermarks in;
# events = events written + deduplicated; lines out = events written + watermarks out.
. "$top_srcdir/tests/cli/lib.sh"

# stat NAME: the value of NAME in the stats line of file err
stat() {
    sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" err
}

test_expect_success 'ndjson with blanks, bad lines, watermarks and duplicates' '
    "$TELEM" gen -n 5000 --duplicates 0.1 --seed 3 > ev &&
    { cat ev; echo; echo "oops"; echo "{\"__watermark\":5}"; echo "[1]"; } > in &&
    "$TELEM" ingest --dedup eventId --stats --reject rej in > out 2> err &&
    test "$(stat lines)" = "$(wc -l < in)" &&
    test "$(stat lines)" = $(( $(stat blank) + $(stat events) + $(stat rejected) + $(stat watermarks_in) )) &&
    test "$(stat rejected)" = 2 && test "$(wc -l < rej)" = 2 &&
    test "$(stat events)" = $(( $(grep -c eventId out) + $(stat deduplicated) )) &&
    test "$(stat lines_out)" = "$(wc -l < out)" &&
    test "$(stat lines_out)" = $(( $(grep -c eventId out) + $(stat watermarks_out) )) &&
    test "$(grep -c eventId out)" = 5000
'

test_expect_success 'tokens: several events per line, a bad token counted once' '
    printf "a-s-1 b-s-2 bad\nc-s-3\n" | "$TELEM" ingest -f tokens --stats --reject rej > out 2> err &&
    test "$(stat lines)" = 2 && test "$(stat events)" = 3 && test "$(stat rejected)" = 1 &&
    test "$(stat lines_out)" = 3
'

test_done
