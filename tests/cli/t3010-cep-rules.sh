#!/bin/sh
# t3010: telem cep --rules / --control / --history while events flow (seed 002): control
# messages through a FIFO (writers come and go), SIGHUP re-reading --rules, a rule added
# late bootstrapped from an archive written by `telem ingest --archive` (history before the
# live stream: events up to the highest live event time are replayed), and a restart
# through --state that continues the counts and the rule set. Each step waits for the
# output of the one before (wait_for), so nothing depends on timing.
. "$top_srcdir/tests/cli/lib.sh"

ev() { # ev TIME_S CUSTOMER TYPE [AMOUNT]
    printf '{"timestamp":%s000,"customerId":"%s","type":"%s","amount":%s}\n' "$1" "$2" "$3" "${4:-1}"
}

test_expect_success 'setup' '
    echo "{\"id\":\"fails\",\"when\":\"type == \\\"fail\\\"\",\"threshold\":2}" > rules.ndjson
'

test_expect_success 'control messages through a FIFO while events flow from another' '
    rm -f ev ctl out err && mkfifo ev ctl || exit 1
    "$TELEM" cep --rules rules.ndjson --control ctl --no-watermarks < ev > out 2> err &
    pid=$!
    trap "kill $pid 2>/dev/null" EXIT
    exec 4> ev
    ev 1700000001 c1 fail >&4 &&
    ev 1700000002 c1 fail >&4 &&
    wait_for out "\"time\":1700000002000" &&
    echo "{\"op\":\"add\",\"rule\":{\"id\":\"c2-big\",\"scope\":{\"key\":\"c2\"},\"when\":\"amount > 100\",\"threshold\":1,\"name\":\"big\"}}" > ctl &&
    ev 1700000003 c2 buy 500 >&4 &&
    ev 1700000004 c3 buy 500 >&4 &&
    wait_for out "c2-big" &&
    echo "{\"op\":\"delete\",\"id\":\"c2-big\"}" > ctl &&
    echo "{\"op\":\"replace\",\"rule\":{\"id\":\"fails\",\"when\":\"type == \\\"fail\\\"\",\"threshold\":1}}" > ctl &&
    echo "{\"op\":\"delete\",\"id\":\"nope\"}" > ctl &&
    ev 1700000005 c2 buy 600 >&4 &&
    ev 1700000006 c3 fail >&4 &&
    wait_for out "\"time\":1700000006000" &&
    exec 4>&- &&
    wait $pid &&
    cat > want <<-\EOT &&
	{"rule":"fails","key":"c1","count":2,"threshold":2,"time":1700000002000}
	{"rule":"c2-big","name":"big","key":"c2","count":1,"threshold":1,"time":1700000003000}
	{"rule":"fails","key":"c3","count":1,"threshold":1,"time":1700000006000}
	EOT
    test_cmp want out &&
    echo "telem cep: ctl:4: rule nope: delete of an unknown id (rules unchanged)" > want &&
    test_cmp want err
'

test_expect_success 'SIGHUP re-reads --rules: new rules added, missing ones deleted, others keep counts; a bad file is refused' '
    rm -f ev out err && mkfifo ev || exit 1
    echo "{\"id\":\"fails\",\"when\":\"type == \\\"fail\\\"\",\"threshold\":3}" > rules.ndjson &&
    echo "{\"id\":\"buys\",\"when\":\"type == \\\"buy\\\"\",\"threshold\":2}" >> rules.ndjson &&
    "$TELEM" cep --rules rules.ndjson --no-watermarks < ev > out 2> err &
    pid=$!
    trap "kill $pid 2>/dev/null" EXIT
    exec 4> ev
    ev 1700000001 c1 fail >&4 &&
    ev 1700000002 c1 buy >&4 &&
    ev 1700000003 c1 fail >&4 &&
    ev 1700000004 c1 buy >&4 &&
    wait_for out "buys" &&
    echo "{\"id\":\"fails\",\"when\":\"type == \\\"fail\\\"\",\"threshold\":3}" > rules.ndjson &&
    echo "{\"id\":\"logins\",\"when\":\"type == \\\"login\\\"\",\"threshold\":1}" >> rules.ndjson &&
    kill -HUP $pid &&
    wait_for err "reloaded" &&
    ev 1700000005 c1 fail >&4 &&
    ev 1700000006 c1 login >&4 &&
    ev 1700000007 c1 buy >&4 &&
    wait_for out "logins" &&
    echo "{\"id\":\"fails\",\"when\":\"type ==\",\"threshold\":3}" > rules.ndjson &&
    kill -HUP $pid &&
    wait_for err "keeping" &&
    ev 1700000008 c2 login >&4 &&
    exec 4>&- &&
    wait $pid &&
    cat > want <<-\EOT &&
	{"rule":"buys","key":"c1","count":2,"threshold":2,"time":1700000004000}
	{"rule":"fails","key":"c1","count":3,"threshold":3,"time":1700000005000}
	{"rule":"logins","key":"c1","count":1,"threshold":1,"time":1700000006000}
	{"rule":"logins","key":"c2","count":1,"threshold":1,"time":1700000008000}
	EOT
    test_cmp want out &&
    cat > want <<-\EOT &&
	telem cep: rules.ndjson: reloaded, 2 rules, 2 changed
	telem cep: rules.ndjson:1: rule fails: "when": 8: expected a value, found end of expression
	telem cep: --rules: keeping the rules in force
	EOT
    test_cmp want err
'

test_expect_success 'a rule added late is bootstrapped from the archive of telem ingest' '
    rm -rf arch ev ctl out err && mkfifo ev ctl || exit 1
    { ev 1699999990 c1 fail; ev 1699999991 c2 fail; ev 1699999992 c1 fail; } > past &&
    "$TELEM" ingest --archive arch < past > /dev/null &&
    echo "{\"id\":\"fails\",\"when\":\"type == \\\"fail\\\"\",\"threshold\":2}" > rules.ndjson &&
    "$TELEM" cep --rules rules.ndjson --control ctl --history arch --no-watermarks < ev > out 2> err &
    pid=$!
    trap "kill $pid 2>/dev/null" EXIT
    exec 4> ev
    ev 1700000001 c2 fail >&4 &&
    ev 1700000002 c3 fail >&4 &&
    ev 1700000003 c2 fail >&4 &&
    wait_for out "\"time\":1700000003000" &&
    echo "{\"op\":\"add\",\"rule\":{\"id\":\"two\",\"when\":\"type == \\\"fail\\\"\",\"threshold\":2}}" > ctl &&
    ev 1700000004 c1 fail >&4 &&
    ev 1700000005 c2 fail >&4 &&
    wait_for out "\"time\":1700000005000" &&
    exec 4>&- &&
    wait $pid &&
    cat > want <<-\EOT &&
	{"rule":"fails","key":"c2","count":2,"threshold":2,"time":1700000003000}
	{"rule":"two","key":"c1","count":2,"threshold":2,"time":1699999992000,"replay":true}
	{"rule":"two","key":"c2","count":2,"threshold":2,"time":1700000005000}
	EOT
    test_cmp want out &&
    test_cmp /dev/null err
'

test_expect_success '--state: a restart continues the counts and the rule set' '
    rm -f ev ctl out err st.zst && mkfifo ev ctl || exit 1
    echo "{\"id\":\"fails\",\"when\":\"type == \\\"fail\\\"\",\"threshold\":3}" > rules.ndjson &&
    "$TELEM" cep --rules rules.ndjson --control ctl --state st.zst --no-watermarks < ev > out 2> err &
    pid=$!
    trap "kill $pid 2>/dev/null" EXIT
    exec 4> ev
    exec 5<> ctl
    echo "{\"op\":\"add\",\"rule\":{\"id\":\"buys\",\"when\":\"type == \\\"buy\\\"\",\"threshold\":2}}" >&5 &&
    ev 1700000001 c1 fail >&4 &&
    ev 1700000002 c1 buy >&4 &&
    ev 1700000003 c1 fail >&4 &&
    exec 4>&- &&
    wait $pid &&
    exec 5>&- &&
    test -s st.zst &&
    test_cmp /dev/null out &&
    { ev 1700000004 c1 buy; ev 1700000005 c1 fail; } |
        "$TELEM" cep --rules rules.ndjson --control ctl --state st.zst --drain --no-watermarks > out 2> err &&
    cat > want <<-\EOT &&
	{"rule":"buys","key":"c1","count":2,"threshold":2,"time":1700000004000}
	{"rule":"fails","key":"c1","count":3,"threshold":3,"time":1700000005000}
	EOT
    test_cmp want out &&
    test_cmp /dev/null err
'

test_done
