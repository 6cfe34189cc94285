#!/bin/sh
# t3001: the state properties of telem cep:
#   (1) a run split in four through one --state file (the last with --drain) writes what
#       one run writes: the matches, the timeouts and the late events;
#   (2) killed with SIGKILL at random points and restarted from its last snapshot over
#       the same input, it writes what an uninterrupted run writes;
#   (3) the snapshot can be read by telem inspect and holds the buffered events and
#       partial matches (a run that ends without --drain keeps them open).
. "$top_srcdir/tests/cli/lib.sh"

PAT='hot: cpuUsage > 70 -> hotter: cpuUsage > hot.cpuUsage + 10 -> peak: cpuUsage > 88 within 20s skip past last event'
ARGS="--key deviceId --max-out-of-order 3s --timeouts to.ndjson --late late.ndjson --no-watermarks"

test_expect_success 'setup: disordered events, some late' '
    "$TELEM" gen -n 20000 --devices 30 --rate 20 --disorder 2s --late-fraction 0.005 \
        --late-by 1m --seed 3 > ev &&
    "$TELEM" cep $ARGS --pattern "$PAT" ev > want &&
    mv to.ndjson want.to && mv late.ndjson want.late &&
    test -s want && test -s want.to && test -s want.late
'

test_expect_success '(1) four runs through one snapshot equal one run' '
    rm -f s1 split.out to.ndjson late.ndjson &&
    split -l 5000 -d ev part. &&
    for f in part.00 part.01 part.02; do
        "$TELEM" cep $ARGS --pattern "$PAT" --state s1 "$f" >> split.out || exit 1
    done &&
    "$TELEM" cep $ARGS --pattern "$PAT" --state s1 --drain part.03 >> split.out &&
    test_cmp want split.out &&
    test_cmp want.to to.ndjson &&
    test_cmp want.late late.ndjson
'

test_expect_success '(2) SIGKILL at random points, restart from the last snapshot: same output' '
    rm -f s2 out2 to.ndjson late.ndjson &&
    i=0 &&
    while [ $i -lt 6 ]; do
        i=$((i + 1))
        "$TELEM" cep $ARGS --pattern "$PAT" --state s2 --checkpoint-interval 1ms --drain -o out2 ev &
        pid=$! &&
        sleep 0.0$(( (i * 37) % 9 + 1 )) &&
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null;
        true
    done &&
    "$TELEM" cep $ARGS --pattern "$PAT" --state s2 --drain -o out2 ev &&
    test_cmp want out2 &&
    sort -u to.ndjson > got.to && sort -u want.to > want.to.s && test_cmp want.to.s got.to
'

test_expect_success '(3) an open snapshot holds buffered events and partial matches' '
    rm -f s3 to.ndjson late.ndjson &&
    "$TELEM" cep $ARGS --pattern "$PAT" --state s3 part.00 > /dev/null &&
    "$TELEM" inspect s3 > info &&
    grep -q "\"command\": *\"cep\"" info &&
    zstdcat s3 | grep -q "\"t\":\"ev\"" &&
    "$TELEM" cep $ARGS --pattern "hot: cpuUsage > 71" --state s3 part.01 > /dev/null 2> err;
    test $? = 1 && grep -q "options" err
'

test_done
