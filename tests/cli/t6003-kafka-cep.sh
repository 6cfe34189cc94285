#!/bin/sh
# t6003: `telem cep` reading Kafka (mock cluster) with one engine per partition: a pattern,
# a threshold rule from --rules, a rule added by --control at an event time and
# bootstrapped from --history (each partition's engine replays the keys of its own
# partition only). One copy equals the file run; two copies in one group, one killed with
# SIGKILL and restarted: the union of their alerts and matches, deduplicated, equals one
# uninterrupted run over the same events.
KAFKA_TOPICS="cp1:4 cp2:4"
. "$top_srcdir/tests/cli/kafka-lib.sh"

PAT='hot: cpuUsage > 70 -> hotter: cpuUsage > hot.cpuUsage + 10 within 5s'

# cep ARGS...: the pipeline every run uses (start runs the same with telem's own pid)
cep() {
    "$TELEM" cep --key deviceId --pattern "$PAT" --rules rules.ndjson --control ctl.ndjson \
        --history ev.ndjson --no-watermarks "$@"
}

# start NAME STATE GROUP TOPIC: a copy in the background (NAME.out, NAME.err); pid in $pid
start() {
    "$TELEM" cep --key deviceId --pattern "$PAT" --rules rules.ndjson --control ctl.ndjson \
        --history ev.ndjson --no-watermarks --checkpoint-interval 20ms --state "$2" \
        -i "kafka://$BOOT/$4?group=$3&$KOPT" > "$1.out" 2> "$1.err" &
    pid=$!
}

test_expect_success 'setup: events, rules, the output of one uninterrupted run' '
    "$TELEM" gen -n 20000 --devices 16 --rate 100 > ev.ndjson &&
    head -n 10000 ev.ndjson > first.ndjson &&
    tail -n 10000 ev.ndjson > second.ndjson &&
    echo "{\"id\":\"warm\",\"when\":\"temperature > 60\",\"threshold\":20,\"window\":\"20s\"}" > rules.ndjson &&
    echo "{\"at\":1704067300000,\"op\":\"add\",\"rule\":{\"id\":\"cool\",\"when\":\"temperature < 40\",\"threshold\":30,\"window\":\"30s\"}}" > ctl.ndjson &&
    cep -i ev.ndjson | sort > want &&
    test "$(grep -c "\"pattern\":\"p1\"" want)" -gt 100 &&
    test "$(grep -c "\"rule\":\"warm\"" want)" -gt 5 &&
    test "$(grep -c "\"rule\":\"cool\"" want)" -gt 10 &&
    test "$(grep -c "\"replay\":true" want)" -gt 5
'

test_expect_success 'one copy, one engine per partition: the file run (replays not repeated)' '
    produce cp1 ev.ndjson &&
    cep -i "kafka://$BOOT/cp1?group=g1&eof=1&$KOPT" > one 2> one.err &&
    sort one > one.s &&
    test_cmp want one.s
'

test_expect_success 'two copies, one killed (SIGKILL) and restarted: the union is exact' '
    mkdir st &&
    kill_and_restart st/c g2 cp2 cep &&
    test_cmp want union
'

test_done
