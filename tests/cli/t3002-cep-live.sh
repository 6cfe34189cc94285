#!/bin/sh
# t3002: telem cep in a live pipeline behind telem ingest --listen: a partial match
# expires while the input is still open, as soon as the watermark (from ingest's
# watermark records, driven by other keys' events) passes its within; the abandoned cart
# of a silent session is written without waiting for the end of the input (ingest writes
# times in ms; the end of the input then ends time and the last session expires too).
. "$top_srcdir/tests/cli/lib.sh"

test_expect_success 'setup' '
    printf "%s\n" \
        "{\"timestamp\":\"2026-03-01T10:00:00Z\",\"session\":\"s1\",\"metric\":\"app_start\"}" \
        "{\"timestamp\":\"2026-03-01T10:01:00Z\",\"session\":\"s1\",\"metric\":\"add_to_basket\",\"sku\":\"tea\"}" \
        "{\"timestamp\":\"2026-03-01T10:02:00Z\",\"session\":\"s2\",\"metric\":\"app_start\"}" \
        "{\"timestamp\":\"2026-03-01T10:03:00Z\",\"session\":\"s2\",\"metric\":\"checkout\"}" > first &&
    printf "%s\n" \
        "{\"timestamp\":\"2026-03-02T10:30:00Z\",\"session\":\"s3\",\"metric\":\"app_start\"}" > later &&
    printf "%s\n" \
        "{\"pattern\":\"p1\",\"key\":\"s1\",\"timeout\":1772445600000,\"start\":{\"timestamp\":1772359200000,\"session\":\"s1\",\"metric\":\"app_start\"},\"items\":[{\"timestamp\":1772359260000,\"session\":\"s1\",\"metric\":\"add_to_basket\",\"sku\":\"tea\"}]}" \
        "{\"pattern\":\"p1\",\"key\":\"s3\",\"timeout\":1772533800000,\"start\":{\"timestamp\":1772447400000,\"session\":\"s3\",\"metric\":\"app_start\"}}" > want.to &&
    echo "{\"checkout\":\"s2\"}" > want.out
'

test_expect_success 'a timeout fires live, from upstream watermarks' '
    rm -f pipe to.ndjson out err &&
    mkfifo pipe || exit 1
    "$TELEM" ingest --listen tcp://127.0.0.1:0 --time-field timestamp 2> err > pipe &
    ing=$!
    "$TELEM" cep --key session --no-watermarks --timeouts to.ndjson \
        --pattern "start: metric == \"app_start\" -> items: metric == \"add_to_basket\"* greedy -> checkout: metric == \"checkout\" within 24h skip past last event" \
        --emit "{\"checkout\": key}" < pipe > out &
    cep=$!
    trap "kill $ing $cep 2>/dev/null" EXIT
    wait_for err "listening on" || exit 1
    port=$(sed -n "s/.*listening on tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p" err)
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && cat first >&3 && sleep 0.3 && cat later >&3 && exec sleep 60" &
    client=$!
    wait_for to.ndjson "s1" 100 &&
    kill -0 $cep &&
    kill $client 2>/dev/null; kill -TERM $ing; wait $ing; wait $cep;
    test_cmp want.to to.ndjson &&
    test_cmp want.out out
'

test_done
