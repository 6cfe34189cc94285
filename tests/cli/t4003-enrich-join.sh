#!/bin/sh
# t4003: the interval join's expiry, live: impressions on stdin (left) and actions on a
# FIFO (right). An event leaves the join buffer only when the watermark - the lower of
# both sides' - passes its bound (left: L + upper, right: R - lower); then, if it never
# joined, it is written to --unjoined. The right side is read by event time: the join
# waits for it, as Flink waits for its slower input.
. "$top_srcdir/tests/cli/lib.sh"

test_expect_success 'expiry follows the lower of both watermarks' '
    mkfifo left right || exit 1
    "$TELEM" enrich --join right --on k --within 5s --time-unit ms --unjoined un \
        --stats < left > out 2> err &
    pid=$!
    exec 3> left
    echo "{\"timestamp\":1000,\"k\":\"a\"}" >&3
    # the right FIFO is opened when the first left event asks for right events
    exec 4> right
    echo "{\"timestamp\":500,\"k\":\"x\"}" >&4 &&
    echo "{\"timestamp\":2000,\"k\":\"a\"}" >&4 &&
    wait_for out "\"right\":{\"timestamp\":2000" &&
    echo "{\"timestamp\":3000,\"k\":\"b\"}" >&3 &&
    echo "{\"timestamp\":9000,\"k\":\"zz\"}" >&4 &&
    wait_for un "\"k\":\"x\"" &&
    echo "{\"side\":\"right\",\"event\":{\"timestamp\":500,\"k\":\"x\"}}" > want &&
    test_cmp want un &&
    echo "{\"timestamp\":12000,\"k\":\"c\"}" >&3 &&
    exec 4>&- &&
    wait_for un "\"k\":\"zz\"" &&
    cat > want <<-\EOT &&
	{"side":"right","event":{"timestamp":500,"k":"x"}}
	{"side":"left","event":{"timestamp":3000,"k":"b"}}
	{"side":"right","event":{"timestamp":9000,"k":"zz"}}
	EOT
    test_cmp want un &&
    exec 3>&- &&
    wait $pid &&
    cat >> want <<-\EOT &&
	{"side":"left","event":{"timestamp":12000,"k":"c"}}
	EOT
    test_cmp want un &&
    cat > want <<-\EOT &&
	{"timestamp":1000,"k":"a","right":{"timestamp":2000,"k":"a"}}
	{"__watermark":-4001}
	{"__watermark":-2001}
	{"__watermark":6999}
	EOT
    test_cmp want out &&
    grep -q "\"pairs\":1,\"unjoined_left\":2,\"unjoined_right\":2,\"late_left\":0,\"late_right\":0," err
'

test_expect_success 'late events are not joined: they go to --unjoined marked late' '
    printf "{\"timestamp\":1000,\"k\":\"a\"}\n{\"timestamp\":9000,\"k\":\"b\"}\n" > r &&
    printf "{\"timestamp\":8000,\"k\":\"b\"}\n{\"timestamp\":1500,\"k\":\"a\"}\n" |
    "$TELEM" enrich --join r --on k --within 2s --time-unit ms --unjoined un2 --no-watermarks > out2 &&
    echo "{\"timestamp\":8000,\"k\":\"b\",\"right\":{\"timestamp\":9000,\"k\":\"b\"}}" > want &&
    test_cmp want out2 &&
    cat > want <<-\EOT &&
	{"side":"right","event":{"timestamp":1000,"k":"a"}}
	{"side":"left","late":true,"event":{"timestamp":1500,"k":"a"}}
	EOT
    test_cmp want un2
'

test_expect_success 'a hot id on both sides costs what its pairs cost' '
    awk "BEGIN { for (i = 0; i < 20000; i++) printf \"{\\\"timestamp\\\":%d,\\\"k\\\":\\\"hot\\\",\\\"i\\\":%d}\n\", i * 10, i }" > l &&
    awk "BEGIN { for (i = 0; i < 20000; i++) printf \"{\\\"timestamp\\\":%d,\\\"k\\\":\\\"hot\\\",\\\"j\\\":%d}\n\", i * 10 + 5, i }" > r2 &&
    "$TELEM" enrich --join r2 --on k --within 20ms --time-unit ms --no-watermarks --stats l > out3 2> err3 &&
    test "$(wc -l < out3)" = 39999 &&
    grep -q "\"pairs\":39999,\"unjoined_left\":0,\"unjoined_right\":0," err3 &&
    grep -q "\"buffered_left\":0,\"buffered_right\":0,\"keys\":0," err3
'

J="--join R --on k --within 90s --max-out-of-order 2s --time-unit ms"

test_expect_success 'four runs through --state equal one run (buffers and the right position kept)' '
    awk "BEGIN { for (i = 0; i < 8000; i++) printf \"{\\\"timestamp\\\":%d,\\\"k\\\":\\\"k%d\\\",\\\"i\\\":%d}\n\", 1000 * i, i % 50, i }" > L &&
    awk "BEGIN { for (i = 0; i < 6000; i++) printf \"{\\\"timestamp\\\":%d,\\\"k\\\":\\\"k%d\\\",\\\"j\\\":%d}\n\", 1333 * i + 7, (i * 7) % 50, i }" > R &&
    "$TELEM" enrich $J --unjoined un.all L > one &&
    test "$(wc -l < one)" -gt 1000 &&
    split -l 2000 L part. &&
    rm -f st un.parts &&
    "$TELEM" enrich $J --unjoined un.parts --state st part.aa > four &&
    "$TELEM" enrich $J --unjoined un.parts --state st part.ab >> four &&
    "$TELEM" enrich $J --unjoined un.parts --state st part.ac >> four &&
    "$TELEM" enrich $J --unjoined un.parts --state st --drain part.ad >> four &&
    test_cmp one four &&
    test_cmp un.all un.parts
'

test_expect_success 'SIGKILL at random points, restart from the last snapshot: same pairs' '
    rm -f sk out.sk un.sk &&
    i=0 &&
    while [ $i -lt 6 ]; do
        i=$((i + 1))
        "$TELEM" enrich $J --unjoined un.sk --state sk --checkpoint-interval 1ms --drain -o out.sk L &
        pid=$! &&
        sleep 0.0$(( (i * 37) % 9 + 1 )) &&
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null;
        true
    done &&
    "$TELEM" enrich $J --unjoined un.sk --state sk --drain -o out.sk L &&
    test_cmp one out.sk &&
    test_cmp un.all un.sk
'

test_expect_success 'a right file that grew after a run that read it to its end is read on' '
    printf "{\"t\":100,\"k\":\"a\",\"r\":1}\n" > GR &&
    printf "{\"t\":100,\"k\":\"a\"}\n{\"t\":200,\"k\":\"x\"}\n" > GL1 &&
    G="--join GR --on k --within 100s --time-unit s --time-field t --no-watermarks --state gs" &&
    rm -f gs &&
    "$TELEM" enrich $G GL1 > g.out &&
    printf "{\"t\":300,\"k\":\"b\",\"r\":2}\n" >> GR &&
    printf "{\"t\":250,\"k\":\"b\"}\n" > GL2 &&
    "$TELEM" enrich $G GL2 >> g.out &&
    cat > g.exp <<-\EOF &&
	{"t":100,"k":"a","right":{"t":100,"k":"a","r":1}}
	{"t":250,"k":"b","right":{"t":300,"k":"b","r":2}}
	EOF
    test_cmp g.exp g.out
'

test_done
