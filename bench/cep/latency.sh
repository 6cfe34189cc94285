#!/bin/sh
# bench/cep/latency.sh - ingest-to-alert latency of `telem cep --rules` behind
# `telem ingest --listen`, at a fixed event rate (seed 002: < 2 s; issue 5: median <= 5 ms
# at 10 k events/s). Not used by the tests.
#
# Usage: sh bench/cep/latency.sh [/path/to/telem] [rate/s] [seconds] [rules]
#   (default: telem on PATH, 10000 events/s, 10 s, 1000 rules)
#
# A python3 sender writes `rate` events a second over TCP to
#   telem ingest --listen tcp://127.0.0.1:PORT --received-at recv --time-unit-out us
# (paced every millisecond against the clock, so the rate holds on average), which adds
# the arrival wall time in us to each event, piped into
#   telem cep --rules R --time-field recv --time-unit us
# so that an alert's "time" is the received-at of the event that crossed its threshold.
# R holds `rules` background threshold rules (bench/rules' mix: global and per customer,
# type/amount/country predicates, some windowed) plus one probe rule, `$.probe == true`
# with threshold 1 keyed by a unique "seq": one probe event in 100 fires exactly one alert.
# A python3 reader stamps each alert line with the wall clock as it reads it from cep's
# stdout: latency = that time - received-at. Prints the count, median, p90, p99 and max
# of the probe alerts in ms.
set -eu
TELEM=${1:-${TELEM:-telem}}
RATE=${2:-10000}
SECS=${3:-10}
NRULES=${4:-1000}
tmp=$(mktemp -d)
ing=
trap '[ -n "$ing" ] && kill $ing 2>/dev/null; rm -rf "$tmp"' EXIT

python3 - "$NRULES" > "$tmp/rules.ndjson" <<'EOF'
import random, sys
random.seed(42)
countries = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU", "ES"]
for i in range(int(sys.argv[1])):
    scope = '"global"' if i % 2 == 0 else '{"key":"c%d"}' % random.randrange(200)
    t = random.randrange(50)
    if i % 3 == 0:
        when = '$.country in [\\"%s\\", \\"%s\\"] && $.type == \\"t%d\\"' % (
            random.choice(countries), random.choice(countries), t)
    else:
        when = '$.type == \\"t%d\\" && amount > %d' % (t, random.randrange(1000))
    win = ',"window":"1m"' if i % 4 == 0 else ''
    print('{"id":"r%d","scope":%s,"when":"%s","threshold":%d%s}' % (
        i, scope, when, 2 + random.randrange(20), win))
print('{"id":"probe","key":"seq","when":"$.probe == true","threshold":1}')
EOF

mkfifo "$tmp/alerts" "$tmp/events"
"$TELEM" ingest --listen tcp://127.0.0.1:0 --received-at recv --time-unit-out us \
    2> "$tmp/ingest.err" < /dev/null > "$tmp/events" &
ing=$!
"$TELEM" cep --rules "$tmp/rules.ndjson" --time-field recv --time-unit us \
    --no-watermarks --stats < "$tmp/events" > "$tmp/alerts" 2> "$tmp/cep.err" &
cep=$!
python3 - "$tmp/alerts" > "$tmp/lat" <<'EOF' &
import sys, time, json
out = []
with open(sys.argv[1], "rb", buffering=0) as f:
    buf = b""
    while True:
        d = f.read(65536)
        if not d:
            break
        now = time.time_ns() // 1000
        buf += d
        *lines, buf = buf.split(b"\n")
        for l in lines:
            if b'"probe"' in l:
                out.append((now - json.loads(l)["time"]) / 1000.0)
for v in out:
    print("%.3f" % v)
EOF
reader=$!
n=0
until grep -q "listening on" "$tmp/ingest.err" 2>/dev/null; do
    n=$((n + 1)); [ $n -gt 100 ] && { echo "ingest did not start" >&2; exit 1; }
    sleep 0.1
done
port=$(sed -n 's/.*listening on tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/ingest.err")

python3 - "$port" "$RATE" "$SECS" <<'EOF'
import random, socket, sys, time
port, rate, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
random.seed(1)
countries = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU", "ES"]
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t0 = time.monotonic()
sent = 0
total = int(rate * secs)
while sent < total:
    due = min(total, int((time.monotonic() - t0) * rate) + 1)
    lines = []
    while sent < due:
        ts = time.time_ns() // 1000000
        cust = random.randrange(200) if random.randrange(5) == 0 else random.randrange(10000)
        probe = ',"probe":true,"seq":%d' % sent if sent % 100 == 0 else ''
        lines.append('{"timestamp":%d,"customerId":"c%d","type":"t%d","amount":%d,"country":"%s"%s}\n'
                     % (ts, cust, random.randrange(50), random.randrange(1000),
                        random.choice(countries), probe))
        sent += 1
    if lines:
        s.sendall("".join(lines).encode())
    time.sleep(0.001)
elapsed = time.monotonic() - t0
s.close()
print("sent %d events in %.2f s (%.0f events/s)" % (sent, elapsed, sent / elapsed))
EOF
sleep 1
kill -TERM $ing 2>/dev/null || true
wait $cep || true
wait $reader || true
ing=
sed -n 's/.*"events":\([0-9]*\).*"rules_alerts":\([0-9]*\).*/cep: \1 events, \2 alerts/p' "$tmp/cep.err"
sort -n "$tmp/lat" | awk -v rules="$NRULES" '
function at(q,  i) { i = int(NR * q); if (i < 1) i = 1; return v[i] }
{ v[NR] = $1 }
END {
    if (NR == 0) { print "no alerts"; exit 1 }
    printf "%d threshold rules + probe: %d probe alerts, latency ms: median %.2f, p90 %.2f, p99 %.2f, max %.2f\n",
        rules, NR, at(0.5), at(0.9), at(0.99), v[NR] }'
