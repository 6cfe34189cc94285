#!/bin/sh
# t1003: ingest --listen over loopback: concurrent clients, every line exactly once,
# partial lines at disconnect reported, UDP, unix sockets, limits.
. "$top_srcdir/tests/cli/lib.sh"

# start_listener URL ARGS...: runs ingest in the background, sets $pid and $port
start_listener() {
    url=$1
    shift
    rm -f out err
    "$TELEM" ingest --listen "$url" "$@" > out 2> err &
    pid=$!
    wait_for err "listening on" || return 1
    port=$(sed -n 's/.*listening on [a-z]*:\/\/[^ ]*:\([0-9]*\)$/\1/p' err | head -n 1)
}

stop_listener() {
    kill -TERM "$pid" && { wait "$pid"; true; }
}

test_expect_success 'eight concurrent TCP clients: every line arrives exactly once' '
    start_listener tcp://127.0.0.1:0 -f tokens &&
    for c in 1 2 3 4 5 6 7 8; do
        bash -c "exec 3<>/dev/tcp/127.0.0.1/$port &&
            i=0; while [ \$i -lt 2000 ]; do i=\$((i+1)); printf \"c$c-m-%d \" \$i; [ \$((i % 7)) = 0 ] && printf \"\\n\"; done >&3; echo >&3" &
    done &&
    for c in 1 2 3 4 5 6 7 8; do
        wait_for out "\"key\":\"c$c\",\"metric\":\"m\",\"value\":2000}" 300 || exit 1
    done &&
    sleep 0.2 &&
    stop_listener &&
    test "$(wc -l < out)" = 16000 &&
    test "$(sort -u out | wc -l)" = 16000 &&
    for c in 1 2 3 4 5 6 7 8; do
        grep "\"key\":\"c$c\"" out | sed "s/.*\"value\":\([0-9]*\).*/\1/" > got.$c &&
        seq 1 2000 > want && test_cmp want got.$c || exit 1
    done
'

test_expect_success 'a client that disconnects inside a line is reported with its bytes' '
    start_listener tcp://127.0.0.1:0 --reject rej.ndjson &&
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf \"{\\\"a\\\":1}\\n{\\\"b\\\":\" >&3" &&
    wait_for rej.ndjson "connection closed inside a line" &&
    stop_listener &&
    echo "{\"a\":1}" > want && test_cmp want out &&
    grep -q "^{\"source\":\"tcp:127.0.0.1:[0-9]*\",\"line\":2,\"reason\":\"connection closed inside a line (5 bytes)\",\"raw\":\"{\\\\\"b\\\\\":\"}$" rej.ndjson
'

test_expect_success 'UDP datagrams, several lines each' '
    start_listener udp://127.0.0.1:0 -f graphite &&
    bash -c "printf \"a.cpu 1 1704067200\\nb.cpu 2 1704067200\\n\" > /dev/udp/127.0.0.1/$port" &&
    bash -c "printf \"c.cpu 3 1704067200\" > /dev/udp/127.0.0.1/$port" &&
    wait_for out "c.cpu" &&
    stop_listener &&
    test "$(wc -l < out)" = 3
'

test_expect_success 'a line over --max-line is rejected; the connection goes on' '
    start_listener tcp://127.0.0.1:0 --max-line 64 &&
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf \"{\\\"x\\\":\\\"%0100d\\\"}\\n{\\\"ok\\\":1}\\n\" 0 >&3" &&
    wait_for out "\"ok\":1" &&
    stop_listener &&
    grep -q "line longer than 64 bytes" err
'

test_expect_success 'a busy port is a clear error' '
    start_listener tcp://127.0.0.1:0 &&
    { "$TELEM" ingest --listen tcp://127.0.0.1:$port > /dev/null 2> err2; test $? = 1; } &&
    grep -q "Address already in use" err2 &&
    stop_listener
'

if command -v nc > /dev/null 2>&1 && nc -h 2>&1 | grep -q -- "-U"; then
test_expect_success 'unix socket' '
    start_listener unix:$TRASH/sock &&
    printf "{\"u\":1}\n" | nc -N -U "$TRASH/sock" &&
    wait_for out "\"u\":1" &&
    stop_listener &&
    test ! -e "$TRASH/sock"
'
else
test_skip 'nc with -U (netcat-openbsd) not installed'
fi

test_done
