#!/bin/sh
# t5002: telem remote-write against a scripted receiver (tests/cli/rw-stub.py): 5xx and
# 429 are retried (Retry-After honoured), a 400 splits the batch, the retry limit sends
# samples to --reject and fails the run, or keeps them in the spool for the next run;
# headers (the four of the protocol, --header, credentials from a file or the environment);
# a receiver that speaks 2.0 keeps v2, one that answers 415 gets 1.0.
. "$top_srcdir/tests/cli/lib.sh"
. "$top_srcdir/tests/cli/rw-lib.sh"

if ! command -v python3 >/dev/null 2>&1; then
    test_skip "python3 not installed"
    test_done
fi

ev() { # n: n events of 2 series at whole seconds in 2023
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "{\"timestamp\":%d000,\"k\":\"%s\",\"v\":%d}\n", 1700000000 + int(i / 2), (i % 2 ? "b" : "a"), i }'
}
RW="remote-write --name m --value v --label k --shards 1 --max-future 0 --min-backoff 1ms --max-backoff 5ms"

# the stub's log without the body hash: n status type version bytes retry-after auth org
log() { awk '{ $6 = ""; print }' "$TRASH/stub.log" | grep -v listening; }

test_expect_success '500 and 429 with Retry-After are retried; the same body each time' '
    stub_start 500 503 429:1 &&
    ev 4 > e1 &&
    "$TELEM" $RW --url "$STUB_URL" --stats e1 2> err &&
    awk "!/listening/ { print \$1, \$2, \$7 }" "$TRASH/stub.log" > got &&
    printf "1 500 -\n2 503 -\n3 429 1\n4 204 -\n" > want && test_cmp want got &&
    test $(awk "!/listening/ { print \$6 }" "$TRASH/stub.log" | sort -u | wc -l) = 1 &&
    grep -q "\"retried\":3," err && grep -q "\"sent\":4," err &&
    kill $STUB_PID
'

test_expect_success 'the four protocol headers, --header, a bearer token from a file' '
    stub_start &&
    echo s3cret > tok &&
    "$TELEM" $RW --url "$STUB_URL" --header "X-Scope-OrgID: tenant1" --bearer-token-file tok e1 &&
    log > got &&
    echo "1 204 application/x-protobuf 0.1.0 73  - auth=Bearer s3cret org=tenant1" > want &&
    test_cmp want got &&
    kill $STUB_PID
'

test_expect_success 'basic auth from the environment (never from the command line)' '
    stub_start &&
    TELEM_RW_BASIC_AUTH=user:pw "$TELEM" $RW --url "$STUB_URL" e1 &&
    log | sed "s/.* auth=/auth=/; s/ org=.*//" > got &&
    echo "auth=Basic $(printf user:pw | base64)" > want && test_cmp want got &&
    kill $STUB_PID
'

test_expect_success 'a 400 splits the batch down to the refused samples; the others land' '
    stub_start "400=bad sample" "400=bad sample" 204 "400=bad sample" &&
    ev 4 > e4 &&
    "$TELEM" $RW --url "$STUB_URL" --reject rej --stats e4 2> err &&
    awk "!/listening/ { print \$1, \$2, \$5 }" "$TRASH/stub.log" > got &&
    jq -c "[.line, .series, .timestamp, .value, .reason]" rej > rgot &&
    echo "[3,\"m{k=\\\"a\\\"}\",1700000001000,2,\"refused by the receiver: 400 bad sample\"]" > rwant &&
    test_cmp rwant rgot &&
    grep -q "\"sent\":3," err && grep -q "\"refused\":1," err && grep -q "\"splits\":2," err &&
    kill $STUB_PID
'

test_expect_success 'retry limit without a spool: samples go to --reject, exit 1' '
    stub_start 500 500 500 &&
    test_must_fail() { "$@"; test $? = 1; } &&
    test_must_fail "$TELEM" $RW --url "$STUB_URL" --max-retries 2 --reject rej5 e1 2> err &&
    grep -q "4 samples not delivered" err &&
    jq -r .reason rej5 | sort -u > got &&
    echo "not delivered after 2 retries: 500" > want && test_cmp want got &&
    kill $STUB_PID
'

test_expect_success 'retry limit with a spool: the batch stays there and goes first next time' '
    stub_start 500 500 &&
    test_must_fail() { "$@"; test $? = 1; } &&
    test_must_fail "$TELEM" $RW --url "$STUB_URL" --max-retries 1 --spool sp e1 2> err &&
    grep -q "kept in the spool" err && test $(ls sp | wc -l) = 1 &&
    first=$(awk "\$1 == 1 { print \$6 }" "$TRASH/stub.log") &&
    kill $STUB_PID && wait $STUB_PID;
    stub_start &&
    awk "{ sub(/\"v\":/, \"\\\"v\\\":1\") } 1" e1 | sed "s/17000000/17000001/" > e6 &&
    "$TELEM" $RW --url "$STUB_URL" --spool sp e6 2> err &&
    grep -q "sending 1 batch left in the spool" err &&
    test "$(awk "\$1 == 1 { print \$6 }" "$TRASH/stub.log")" = "$first" &&
    test $(grep -c " 204 " "$TRASH/stub.log") = 2 && test -z "$(ls sp)" &&
    kill $STUB_PID
'

test_expect_success 'a receiver that speaks 2.0 keeps --protocol v2' '
    stub_start v2ok &&
    "$TELEM" $RW --url "$STUB_URL" --protocol v2 --stats e1 2> err &&
    log | cut -d" " -f2-4 > got &&
    echo "204 application/x-protobuf;proto=io.prometheus.write.v2.Request 2.0.0" > want &&
    test_cmp want got && grep -q "\"protocol\":\"v2\"" err &&
    kill $STUB_PID
'

test_expect_success 'a 415 to a 2.0 request: telem says so and resends as 1.0' '
    stub_start 415 &&
    "$TELEM" $RW --url "$STUB_URL" --protocol v2 e1 2> err &&
    grep -q "falling back to 1.0" err &&
    log | cut -d" " -f2-4 > got &&
    printf "415 application/x-protobuf;proto=io.prometheus.write.v2.Request 2.0.0\n204 application/x-protobuf 0.1.0\n" > want &&
    test_cmp want got &&
    kill $STUB_PID
'

test_expect_success 'SIGTERM: the samples read so far are still sent' '
    stub_start &&
    mkfifo f9 || exit 1
    "$TELEM" $RW --url "$STUB_URL" --batch 3 --flush-interval 1h --stats < f9 2> err9 &
    tw=$!
    exec 3> f9 &&
    cat e1 >&3 &&
    wait_for "$TRASH/stub.log" "^1 204" &&
    kill -TERM $tw &&
    { wait $tw; test $? = 143; } &&
    exec 3>&- &&
    awk "/^2 204/ { print \$5 }" "$TRASH/stub.log" > got && echo 45 > want && test_cmp want got &&
    kill $STUB_PID
'

test_expect_success 'a 404 (wrong URL) stops the run after one request: no retries, no splitting' '
    stub_start "404=not found" &&
    ev 20 > e10 &&
    { "$TELEM" $RW --url "$STUB_URL" --batch 2 --reject rej10 e10 2> err; test $? = 1; } &&
    grep -q "the receiver answered 404 not found" err &&
    test $(grep -vc listening "$TRASH/stub.log") = 1 &&
    jq -r .reason rej10 | sort -u > got &&
    echo "not delivered: the receiver answered 404 not found" > want && test_cmp want got &&
    kill $STUB_PID
'

test_done
