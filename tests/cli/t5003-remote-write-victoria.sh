#!/bin/sh
# t5003: telem remote-write into VictoriaMetrics (Debian's 1.79) on 127.0.0.1: every
# sample sent comes back exactly through /api/v1/export. (VictoriaMetrics accepts what
# Prometheus refuses, out-of-order samples included, so ordering is tested in t5001.)
. "$top_srcdir/tests/cli/lib.sh"
. "$top_srcdir/tests/cli/rw-lib.sh"

if ! command -v victoria-metrics >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1 ||
    ! command -v curl >/dev/null 2>&1; then
    test_skip "victoria-metrics, curl or jq not installed"
    test_done
fi

VM_PORT=$(free_port)
VM="http://127.0.0.1:$VM_PORT"
victoria-metrics -httpListenAddr=127.0.0.1:$VM_PORT -storageDataPath="$TRASH/vm" \
    -retentionPeriod=1d -search.latencyOffset=1s -search.disableCache > "$TRASH/vm.log" 2>&1 &
STUB_PID=$! # stopped by rw_cleanup
echo "$STUB_PID" >> "$TRASH/.rw-pids"
n=0
until curl -sf "$VM/health" > /dev/null 2>&1; do
    n=$((n + 1)); [ $n -gt 300 ] && { echo "victoria-metrics did not start"; exit 1; }
    sleep 0.1
done

NOW=$(date +%s)
B=$((NOW - 600))

test_expect_success 'push 2 values x 4 hosts x 50 s; /api/v1/export returns every sample' '
    awk -v b=$B "BEGIN { for (i = 0; i < 50; i++) for (h = 0; h < 4; h++)
        printf \"{\\\"timestamp\\\":%d000,\\\"host\\\":\\\"h%d\\\",\\\"cpu\\\":%d.25,\\\"mem\\\":%d}\\n\", b + i, h, h * 100 + i, i }" > ev &&
    ARGS="--name vmt --value cpu,mem --label host" &&
    "$TELEM" remote-write --dry-run --format json $ARGS ev |
        jq -r "\"\(.labels.__name__) \(.labels.host) \(.value) \(.timestamp)\"" | LC_ALL=C sort > want &&
    test $(wc -l < want) = 400 &&
    "$TELEM" remote-write --url "$VM/api/v1/write" $ARGS --shards 2 --batch 64 ev &&
    n=0 &&
    while :; do
        curl -s -G "$VM/api/v1/export" --data-urlencode "match[]={__name__=~\"vmt_.*\"}" |
            jq -r ".metric as \$m | [.values, .timestamps] | transpose[] |
                   \"\(\$m.__name__) \(\$m.host) \(.[0]) \(.[1])\"" | LC_ALL=C sort > got
        cmp -s want got && break
        n=$((n + 1)); [ $n -lt 100 ] || break
        sleep 0.2
    done &&
    test_cmp want got
'

test_expect_success '--allow-out-of-order: older samples sent after newer ones are stored too' '
    printf "{\"timestamp\":%s000,\"v\":2}\n{\"timestamp\":%s000,\"v\":1}\n" $((B + 10)) $B > ooo &&
    "$TELEM" remote-write --url "$VM/api/v1/write" --name vmooo --value v --batch 1 \
        --allow-out-of-order --reject rej ooo &&
    test ! -s rej &&
    printf "1 %s000\n2 %s000\n" $B $((B + 10)) > want &&
    n=0 &&
    while :; do
        curl -s -G "$VM/api/v1/export" --data-urlencode "match[]=vmooo" |
            jq -r "[.values, .timestamps] | transpose[] | \"\(.[0]) \(.[1])\"" > got
        cmp -s want got && break
        n=$((n + 1)); [ $n -lt 100 ] || break
        sleep 0.2
    done &&
    test_cmp want got
'

test_done
