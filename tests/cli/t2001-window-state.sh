#!/bin/sh
# t2001: the three state properties of telem window:
#   (1) killed with SIGKILL at random points and restarted from its last snapshot over
#       the same input, it writes what an uninterrupted run writes;
#   (2) the same data fed live over a socket, slowly, and replayed from a file give
#       byte-identical output;
#   (3) an hourly cron backfill over 24 archive segments, one snapshot carried between
#       runs, equals one run over all 24.
. "$top_srcdir/tests/cli/lib.sh"

ARGS="--key deviceId --tumble 10m --agg count,avg(cpuUsage),p99(cpuUsage),max(temperature) --max-out-of-order 30s --allowed-lateness 5m --late late.ndjson"

test_expect_success 'setup: 24 hours of disordered events with late ones' '
    "$TELEM" gen -n 48000 --devices 20 --rate 0.5555556 --disorder 20s --late-fraction 0.01 --late-by 8m --seed 5 > ev &&
    zstd -q -c ev > ev.zst &&
    "$TELEM" window $ARGS ev > want 2> err &&
    test -s want && test -s late.ndjson && mv late.ndjson want.late &&
    grep -q "\"revision\":1" want
'

test_expect_success '(1) SIGKILL at random points, restart from the last snapshot: same output' '
    rm -f s1 out1 late.ndjson &&
    i=0 &&
    while [ $i -lt 8 ]; do
        i=$((i + 1))
        "$TELEM" window $ARGS --state s1 --checkpoint-interval 1ms --drain -o out1 ev.zst &
        pid=$! &&
        sleep 0.0$(( (i * 41) % 9 + 1 )) &&
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null;
        true
    done &&
    "$TELEM" window $ARGS --state s1 --drain -o out1 ev.zst &&
    test_cmp want out1 &&
    sort -u late.ndjson > got.late && sort -u want.late > want.late.s && test_cmp want.late.s got.late
'

test_expect_success '(2) live over a socket at a slow rate equals the replay of the file' '
    rm -f late.ndjson err2 &&
    mkfifo pipe || exit 1
    "$TELEM" ingest --listen tcp://127.0.0.1:0 2> err2 > pipe &
    ing=$!
    "$TELEM" window $ARGS < pipe > live &
    win=$!
    wait_for err2 "listening on" || exit 1
    port=$(sed -n "s/.*listening on tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p" err2)
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && split -l 4000 --filter=\"cat >&3; sleep 0.05\" ev" &&
    wait_for live "window_start" 100 &&
    n=$(wc -l < ev) &&
    sleep 1 &&
    kill -TERM $ing; wait $ing; wait $win &&
    test_cmp want live
'

test_expect_success '(3) 24 hourly runs carrying a snapshot equal one run over all' '
    rm -f late.ndjson s3 cron.out &&
    mkdir -p arch &&
    awk -F"\"timestamp\":" "{ split(\$2, a, \",\"); h = int((a[1] - 1704067200000) / 3600000); if (h < 0) h = 0; f = sprintf(\"arch/h%02d.ndjson\", h); print > f }" ev &&
    for f in arch/*.ndjson; do zstd -q --rm "$f" || exit 1; done &&
    test "$(ls arch/*.zst | wc -l)" = 24 &&
    "$TELEM" window $ARGS arch/*.zst > all &&
    mv late.ndjson all.late &&
    last=$(ls arch/*.zst | tail -n 1) &&
    for f in arch/*.zst; do
        if [ "$f" = "$last" ]; then d=--drain; else d=; fi
        "$TELEM" window $ARGS --state s3 $d "$f" >> cron.out || exit 1
    done &&
    test_cmp all cron.out &&
    test_cmp all.late late.ndjson
'

TD="--key deviceId --tumble 10s --agg count,p50(cpuUsage),p99(cpuUsage),quantile(temperature,0.9) --no-watermarks"

test_expect_success '(4) t-digests with centroids and raw samples: a checkpoint every 1 ms and a split run give the rows of one run' '
    "$TELEM" gen -n 40000 --devices 2 --rate 1000 --seed 2 > td &&
    "$TELEM" window $TD td > td.want &&
    test "$(wc -l < td.want)" = 8 &&
    rm -f s4 &&
    "$TELEM" window $TD --state s4 --drain --checkpoint-interval 1ms td > td.ckpt &&
    test_cmp td.want td.ckpt &&
    head -n 23457 td > td.1 && tail -n +23458 td > td.2 &&
    rm -f s4 &&
    "$TELEM" window $TD --state s4 td.1 > td.split &&
    "$TELEM" window $TD --state s4 --drain td.2 >> td.split &&
    test_cmp td.want td.split
'

test_done
