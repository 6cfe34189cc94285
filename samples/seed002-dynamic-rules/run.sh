#!/bin/sh
# samples/seed002-dynamic-rules/run.sh - seed 002: rules that change while events flow.
# A global rule from rules.ndjson, a per-customer rule and a replacement sent through a
# control FIFO while `telem cep` reads live events from another FIFO, and a rule added late
# that counts the past from the archive `telem ingest --archive` wrote. Each step waits
# for the alerts of the one before, so the output never depends on timing.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT

wait_for() { # wait_for FILE TEXT: until FILE holds TEXT (10 s at most)
    n=0
    while ! grep -q -- "$2" "$1" 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -gt 100 ] && { echo "timed out waiting for $2" >&2; exit 1; }
        sleep 0.1
    done
}

# 1. the past: events of the morning, archived as telem ingest --archive keeps them
"$TELEM" ingest --archive "$tmp/archive" < history.ndjson > /dev/null

# 2. the live stage: rules from rules.ndjson, control messages from a FIFO, history from
#    the archive for rules added later
mkfifo "$tmp/events" "$tmp/control"
"$TELEM" cep --rules rules.ndjson --control "$tmp/control" --history "$tmp/archive" \
    --no-watermarks < "$tmp/events" > "$tmp/alerts" &
pid=$!
exec 4> "$tmp/events" 5<> "$tmp/control"

# 3. a per-customer rule arrives on the control stream before the first live event
echo '{"op":"add","rule":{"id":"acme-failures","scope":{"key":"acme"},"when":"$.status == \"failed\"","threshold":2,"name":"acme payment failures"}}' >&5
cat live1.ndjson >&4
wait_for "$tmp/alerts" '"big-orders","name":"big orders","description":"two orders over 1000 within one hour","key":"globex"'
wait_for "$tmp/alerts" '"acme-failures"'

# 4. while events flow: a global rule added late (bootstrapped from the archive: the
#    morning's logins from Germany count), and the acme rule replaced by a stricter one
echo '{"op":"add","rule":{"id":"de-logins","when":"$.event == \"login\" && $.geo.country == \"DE\"","threshold":3,"name":"logins from Germany"}}' >&5
echo '{"op":"replace","rule":{"id":"acme-failures","scope":{"key":"acme"},"when":"$.status == \"failed\"","threshold":1,"name":"acme payment failure"}}' >&5
echo '{"op":"delete","id":"big-orders"}' >&5
cat live2.ndjson >&4
exec 4>&-
wait $pid
pid=
cat "$tmp/alerts"
