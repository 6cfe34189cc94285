#!/bin/sh
# t5004: telem remote-write over HTTPS (tests/cli/rw-stub.py with a self-signed
# certificate for 127.0.0.1): the receiver's certificate is verified by default (an unknown
# CA fails, --cacert trusts it), and a client certificate is sent with --cert/--key.
. "$top_srcdir/tests/cli/lib.sh"
. "$top_srcdir/tests/cli/rw-lib.sh"

if ! command -v python3 >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    test_skip "python3 or openssl not installed"
    test_done
fi

RW="remote-write --name m --value v --shards 1 --max-future 0 --min-backoff 1ms --max-backoff 2ms"
echo '{"timestamp":1700000000000,"v":1}' > e1

test_expect_success 'setup: a server certificate for 127.0.0.1 and a client certificate' '
    openssl req -x509 -newkey rsa:2048 -nodes -keyout srv.key -out srv.pem -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2> /dev/null &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout cli.key -out cli.pem -days 2 \
        -subj /CN=telem-client 2> /dev/null &&
    test -s srv.pem && test -s cli.pem
'

test_expect_success 'an unknown CA is refused (TLS verified by default); --cacert trusts it' '
    stub_start tls=srv.pem:srv.key &&
    url=$(echo "$STUB_URL" | sed s/^http:/https:/) &&
    { "$TELEM" $RW --url "$url" --max-retries 1 --reject rej e1 2> err; test $? = 1; } &&
    grep -qi "certificate" rej &&
    "$TELEM" $RW --url "$url" --cacert srv.pem e1 &&
    grep -c " 204 " "$TRASH/stub.log" > got && echo 1 > want && test_cmp want got &&
    kill $STUB_PID
'

test_expect_success 'a receiver that requires a client certificate: --cert and --key' '
    stub_start tls=srv.pem:srv.key:cli.pem &&
    url=$(echo "$STUB_URL" | sed s/^http:/https:/) &&
    { "$TELEM" $RW --url "$url" --cacert srv.pem --max-retries 0 --reject rej2 e1 2> err; test $? = 1; } &&
    "$TELEM" $RW --url "$url" --cacert srv.pem --cert cli.pem --key cli.key e1 &&
    grep -c " 204 " "$TRASH/stub.log" > got && echo 1 > want && test_cmp want got &&
    kill $STUB_PID
'

test_done
