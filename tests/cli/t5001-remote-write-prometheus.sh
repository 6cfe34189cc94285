#!/bin/sh
# t5001: telem remote-write against a real Prometheus (Debian's 2.42) on 127.0.0.1: every
# sample pushed comes back exactly; out-of-order and conflicting samples a receiver refuses
# are isolated by splitting the batch (the valid ones land); invalid names; stale markers;
# --protocol v2 falls back to 1.0; Prometheus stopped mid-stream and restarted, and telem
# killed while Prometheus is down, lose nothing with --spool. One Prometheus per script.
. "$top_srcdir/tests/cli/lib.sh"
. "$top_srcdir/tests/cli/rw-lib.sh"

if ! have_prometheus; then
    test_skip "prometheus, curl or jq not installed"
    test_done
fi
prom_start || exit 1

NOW=$(date +%s)
B=$((NOW - 600))        # samples 10 to 5 minutes ago, one per second
W="$PROM_URL/api/v1/write"

# events: SECONDS x 3 hosts, cpu and mem unique per (host, second)
gen_events() { # name first_second count
    awk -v b="$2" -v n="$3" -v m="$1" 'BEGIN { for (i = 0; i < n; i++) for (h = 0; h < 3; h++)
        printf "{\"timestamp\":%d000,\"metric\":\"%s\",\"host\":\"h%d\",\"cpu\":%d.%03d,\"mem\":%d.5}\n",
            b + i, m, h, h * 100 + i, i * 7 % 1000, 1000 + h * 100 + i }'
}

# the samples telem would send, as "name host value ts_ms", sorted
expected() { # telem args...
    "$TELEM" remote-write --dry-run --format json --max-future 0 "$@" |
        jq -r '"\(.labels.__name__) \(.labels.host) \(.value) \(.timestamp)"' | LC_ALL=C sort
}

# what Prometheus holds, read with query_range at every second, same form
stored() { # selector start end
    curl -s -G "$PROM_URL/api/v1/query_range" --data-urlencode "query=$1" \
        --data-urlencode "start=$2" --data-urlencode "end=$3" --data-urlencode step=1s |
        jq -r '.data.result[] | .metric as $m | .values[] |
               "\($m.__name__) \($m.host) \(.[1]) \(.[0] * 1000 | round)"' | LC_ALL=C sort
}

# raw sample count of a selector over the last 15 minutes
raw_count() {
    curl -s -G "$PROM_URL/api/v1/query" --data-urlencode "query=$1[15m]" \
        --data-urlencode "time=$NOW" | jq -r '[.data.result[].values | length] | add // 0'
}

test_expect_success 'push 2 values x 3 hosts x 60 s in several batches and shards; every sample reads back exactly' '
    gen_events node $B 60 > ev &&
    ARGS="--name node --value cpu,mem --label host --const-label job=t1" &&
    expected $ARGS ev > want &&
    test $(wc -l < want) = 360 &&
    "$TELEM" remote-write --url "$W" $ARGS --shards 3 --batch 50 --stats ev 2> err &&
    grep -q "\"sent\":360," err && grep -q "\"refused\":0," err &&
    stored "{job=\"t1\"}" $B $((B + 59)) > got &&
    test_cmp want got &&
    test "$(raw_count "{job=\"t1\"}")" = 360
'

test_expect_success 'golden 1.0 request bytes (--format pb)' '
    echo "{\"timestamp\":1700000000000,\"v\":1}" |
        "$TELEM" remote-write --dry-run --format pb --name test_metric --value v \
        --const-label job=telem --max-future 0 > out.pb &&
    od -An -tx1 out.pb | tr -d " \n" > got &&
    printf 0a390a170a085f5f6e616d655f5f120b746573745f6d65747269630a0c0a036a6f62120574656c656d121009000000000000f03f1080d095ffbc31 > want &&
    test_cmp want got
'

test_expect_success 'out-of-order and conflicting samples refused by Prometheus are isolated; the rest lands' '
    echo "{\"timestamp\":$((B + 100))000,\"host\":\"z\",\"v\":1}" > seed &&
    "$TELEM" remote-write --url "$W" --name t2 --value v --label host seed &&
    {
        for i in 0 1 2 3 4; do
            echo "{\"timestamp\":$((B + i))000,\"host\":\"z\",\"v\":7}"
            echo "{\"timestamp\":$((B + i))000,\"host\":\"y\",\"v\":$i}"
        done
        echo "{\"timestamp\":$((B + 100))000,\"host\":\"z\",\"v\":2}"
        echo "{\"timestamp\":$((B + 100))000,\"host\":\"y\",\"v\":9}"
        echo "{\"timestamp\":$((B + 101))000,\"host\":\"z\",\"v\":3}"
    } > ev2 &&
    "$TELEM" remote-write --url "$W" --name t2 --value v --label host --shards 1 \
        --reject rej --stats ev2 2> err &&
    jq -r "\"\(.line) \(.series) \(.timestamp) \(.value) \(.reason)\"" rej > got &&
    {
        for i in 0 1 2 3 4; do
            echo "$((2 * i + 1)) t2{host=\"z\"} $((B + i))000 7 refused by the receiver: 400 out of order sample"
        done
        echo "11 t2{host=\"z\"} $((B + 100))000 2 refused by the receiver: 400 duplicate sample for timestamp"
    } > want &&
    test_cmp want got &&
    grep -q "\"sent\":7," err && grep -q "\"refused\":6," err &&
    stored "t2" $B $((B + 101)) | grep " y " | head -5 > got &&
    printf "t2 y %s %s000\n" 0 $B 1 $((B + 1)) 2 $((B + 2)) 3 $((B + 3)) 4 $((B + 4)) > want &&
    test_cmp want got &&
    test "$(raw_count t2)" = 8
'

test_expect_success 'an exact duplicate of the newest sample (a resent batch) is accepted as a no-op' '
    echo "{\"timestamp\":$((B + 101))000,\"host\":\"z\",\"v\":3}" > last &&
    "$TELEM" remote-write --url "$W" --name t2 --value v --label host --reject rej2 last &&
    test ! -s rej2 && test "$(raw_count t2)" = 8
'

test_expect_success 'invalid names: rejected with the reason, or rewritten with --sanitize' '
    printf "{\"timestamp\":%s000,\"m\":\"9bad.metric\",\"v\":1}\n" $B > ev4 &&
    "$TELEM" remote-write --url "$W" --name "\$.m" --value v ev4 2> err &&
    grep -q "'"'"'9bad.metric'"'"' is not a valid metric name" err &&
    "$TELEM" remote-write --url "$W" --name "\$.m" --value v --sanitize ev4 &&
    test "$(raw_count _9bad_metric)" = 1
'

test_expect_success 'a stale marker ends the series for instant queries' '
    printf "{\"timestamp\":%s000,\"v\":5}\n{\"timestamp\":%s000,\"v\":\"stale\"}\n" \
        $((NOW - 20)) $((NOW - 10)) > ev5 &&
    "$TELEM" remote-write --url "$W" --name t5 --value v ev5 &&
    curl -s -G "$PROM_URL/api/v1/query" --data-urlencode query=t5 --data-urlencode time=$((NOW - 15)) |
        jq -r ".data.result[0].value[1]" > got && echo 5 > want && test_cmp want got &&
    curl -s -G "$PROM_URL/api/v1/query" --data-urlencode query=t5 --data-urlencode time=$NOW |
        jq -r ".data.result | length" > got && echo 0 > want && test_cmp want got
'

test_expect_success '--protocol v2: Prometheus 2.42 ignores it (204, no written count); telem falls back to 1.0' '
    gen_events v2 $B 10 > ev6 &&
    "$TELEM" remote-write --url "$W" --protocol v2 --name t6 --value cpu --label host --stats ev6 2> err &&
    grep -q "does not support remote write 2.0" err &&
    grep -q "\"protocol\":\"v1\"" err &&
    test "$(raw_count t6)" = 30
'

test_expect_success 'Prometheus stopped mid-stream and restarted: with --spool every sample arrives' '
    gen_events s7 $((B + 200)) 40 > ev7 &&
    head -n 60 ev7 > part1 && tail -n +61 ev7 > part2 &&
    mkfifo fifo7 || exit 1
    "$TELEM" remote-write --url "$W" --name t7 --value cpu --label host --spool spool7 \
        --flush-interval 100ms --batch 20 --max-backoff 200ms --stats < fifo7 2> err7 &
    tw=$!
    exec 3> fifo7 &&
    cat part1 >&3 &&
    n=0 && until [ "$(raw_count t7)" = 60 ]; do n=$((n + 1)); [ $n -lt 100 ] || exit 1; sleep 0.1; done &&
    prom_stop &&
    cat part2 >&3 &&
    n=0 && until ls spool7 | grep -q seg; do n=$((n + 1)); [ $n -lt 100 ] || exit 1; sleep 0.1; done &&
    prom_restart &&
    exec 3>&- &&
    wait $tw &&
    grep -q "\"sent\":120," err7 && grep -q "\"retried\":[1-9]" err7 &&
    test -z "$(ls spool7)" &&
    expected --name t7 --value cpu --label host ev7 > want &&
    stored t7 $((B + 200)) $((B + 239)) > got &&
    test_cmp want got &&
    prom_stop
'

test_expect_success 'telem killed while Prometheus is down: the spool is sent first on the next run' '
    gen_events s8 $((B + 300)) 30 > ev8 &&
    head -n 45 ev8 > p1 && tail -n +46 ev8 > p2 || exit 1
    "$TELEM" remote-write --url "$W" --name t8 --value cpu --label host --spool spool8 \
        --batch 10 --max-backoff 100ms p1 2> err8 &
    tw=$!
    n=0 && until [ "$(ls spool8 2>/dev/null | grep -c seg)" -ge 5 ]; do n=$((n + 1)); [ $n -lt 100 ] || exit 1; sleep 0.1; done &&
    kill -9 $tw; wait $tw;
    prom_restart &&
    "$TELEM" remote-write --url "$W" --name t8 --value cpu --label host --spool spool8 \
        --batch 10 --stats p2 2> err8b &&
    grep -q "sending 5 batches left in the spool" err8b &&
    test -z "$(ls spool8)" &&
    expected --name t8 --value cpu --label host ev8 > want &&
    stored t8 $((B + 300)) $((B + 329)) > got &&
    test_cmp want got &&
    prom_stop
'

test_done
