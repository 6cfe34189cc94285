#!/bin/sh
# bench/pipeline/latency.sh - end-to-end latency of a live pipeline into a real Prometheus
# (issue 9): from the moment `telem ingest` receives an event on its socket to the moment
# the sample it ends up in is accepted by Prometheus. Not used by the tests.
#
# Usage: sh bench/pipeline/latency.sh /path/to/opt/telem [rate/s] [seconds] [poll-ms]
#   (defaults 10000 events/s, 20 s, poll every 5 ms)
#
# The pipeline (100 devices, 1-second tumbling windows in event time):
#   telem ingest --listen tcp://127.0.0.1:PORT --received-at recv --time-unit-out us
#   | telem window --key deviceId --tumble 1s --watermark-interval 10ms
#       --agg 'count, max(recv) as recv, avg(cpuUsage) as cpu'
#   | telem cep --key deviceId --time-field window_end --watermark-interval 10ms
#       --pattern 'a: count > 0 => b: count > 0'   (two consecutive windows of a device)
#       --emit '{"deviceId": key, "timestamp": b.window_end, "recv": b.recv}'
#   | telem remote-write --url PROM --name e2e --value recv --label deviceId
#       --flush-interval 5ms --shards 1 --max-future 0 --stats
# A python3 sender writes `rate` events a second (paced every millisecond against the
# clock) with timestamp = the wall clock in ms at sending.
#
# What is measured. Each sample's value is the received-at time (us) of the last event
# of its window, as `ingest` stamped it on arrival. A python3 poller asks Prometheus for
# every e2e series (`/api/v1/query?query=e2e`, an instant query) every poll-ms; when a
# series' value changes, the sample is there: latency = the wall clock when that query
# was sent - the value. "Accepted" is therefore "visible to a query": Prometheus's remote
# write handler appends to the head and commits before it answers, so a sample is
# queryable as soon as the 204 is sent. The error: the poller sees a sample up to one
# poll interval plus one query's duration after it was accepted (the script prints the
# median and max query duration; the true latency is between the measured value minus
# that bound and the measured value; using the send time of the query as the clock
# makes it at most one poll interval late). The windowing itself holds every event until
# its window closes (up to 1 s for the first event of a window); the value is the
# receipt of the window's LAST event, so the number is the pipeline's latency, not the
# window length. The first 2 s (start-up) are not counted.
# Tuning that matters: cep handles an event once the watermark passes its time, and a
# window row's time (window_end) is just above the watermark that closed it, so the row
# waits in cep for the next watermark record: --watermark-interval 10ms on window (and on
# cep, for remote-write) bounds that wait to ~10 ms instead of the default 1 s.
# remote-write's --flush-interval 5ms does the same for its batches (default 1 s).
# Environment: WMI (default 10ms) and FLUSH (default 5ms) set those two, e.g. WMI=1s
# FLUSH=1s for telem's defaults.
set -eu
TELEM=$(realpath "${1:-telem}")
RATE=${2:-10000}
SECS=${3:-20}
POLL=${4:-5}
WMI=${WMI:-10ms}      # --watermark-interval of window and cep
FLUSH=${FLUSH:-5ms}   # --flush-interval of remote-write
tmp=$(mktemp -d "${TMPDIR:-/tmp}/telem-lat.XXXXXX")
PROM_PID= ING_PID= POLL_PID=
cleanup() {
    [ -n "$POLL_PID" ] && kill "$POLL_PID" 2>/dev/null
    [ -n "$ING_PID" ] && kill "$ING_PID" 2>/dev/null
    [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PP=$(freeport)
mkdir -p "$tmp/prom"
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$tmp/prom/p.yml"
prometheus --config.file="$tmp/prom/p.yml" --storage.tsdb.path="$tmp/prom/data" \
    --web.listen-address="127.0.0.1:$PP" --web.enable-remote-write-receiver > "$tmp/prom/log" 2>&1 &
PROM_PID=$!
n=0; until curl -sf "http://127.0.0.1:$PP/-/ready" > /dev/null 2>&1; do
    n=$((n + 1)); [ $n -gt 300 ] && { echo "prometheus did not start" >&2; exit 1; }; sleep 0.1; done

mkfifo "$tmp/ev"
"$TELEM" ingest --listen tcp://127.0.0.1:0 --received-at recv --time-unit-out us \
    < /dev/null > "$tmp/ev" 2> "$tmp/ingest.err" &
ING_PID=$!
"$TELEM" window --key deviceId --tumble 1s --watermark-interval "$WMI" \
    --agg 'count, max(recv) as recv, avg(cpuUsage) as cpu' < "$tmp/ev" 2> "$tmp/window.err" |
"$TELEM" cep --key deviceId --time-field window_end --watermark-interval "$WMI" \
    --pattern 'a: count > 0 => b: count > 0' \
    --emit '{"deviceId": key, "timestamp": b.window_end, "recv": b.recv}' 2> "$tmp/cep.err" |
"$TELEM" remote-write --url "http://127.0.0.1:$PP/api/v1/write" --name e2e --value recv \
    --label deviceId --flush-interval "$FLUSH" --shards 1 --max-future 0 --stats \
    > /dev/null 2> "$tmp/rw.err" &
PIPE_PID=$!

n=0
until grep -q "listening on" "$tmp/ingest.err" 2>/dev/null; do
    n=$((n + 1)); [ $n -gt 100 ] && { echo "ingest did not start" >&2; cat "$tmp/ingest.err" >&2; exit 1; }
    sleep 0.1
done
port=$(sed -n 's/.*listening on tcp:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/ingest.err")

# the poller: until the file "stop" exists
python3 - "$PP" "$POLL" "$tmp/stop" > "$tmp/lat" 2> "$tmp/poll.err" <<'PY' &
import sys, time, json, os, urllib.request
port, poll, stop = sys.argv[1], float(sys.argv[2]) / 1000, sys.argv[3]
url = "http://127.0.0.1:%s/api/v1/query?query=e2e" % port
last, qd = {}, []
t_start = time.time()
while not os.path.exists(stop):
    t0 = time.time_ns() // 1000
    with urllib.request.urlopen(url) as r:
        d = json.load(r)
    t1 = time.time_ns() // 1000
    qd.append(t1 - t0)
    for s in d["data"]["result"]:
        k, v = s["metric"]["deviceId"], float(s["value"][1])
        if last.get(k) != v:
            last[k] = v
            if time.time() - t_start > 2:
                print("%.3f" % ((t0 - v) / 1000.0))
    time.sleep(max(0.0, poll - (time.time_ns() // 1000 - t0) / 1e6))
qd.sort()
print("query_ms median %.2f max %.2f n %d" % (qd[len(qd) // 2] / 1000, qd[-1] / 1000, len(qd)), file=sys.stderr)
PY
POLL_PID=$!

# the sender: RATE events/s for SECS seconds, paced every millisecond
python3 - "$port" "$RATE" "$SECS" <<'PY'
import socket, sys, time, random
port, rate, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
random.seed(9)
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t0 = time.time(); sent = 0; i = 0
while True:
    now = time.time()
    if now - t0 >= secs:
        break
    due = int((now - t0) * rate)
    if due > sent:
        ms = int(now * 1000)
        buf = "".join('{"deviceId":"d%d","timestamp":%d,"cpuUsage":%.2f}\n' % ((sent + j) % 100, ms, random.random() * 100)
                      for j in range(due - sent))
        s.sendall(buf.encode())
        sent = due
    time.sleep(0.001)
s.close()
print("sent %d events in %.1f s" % (sent, time.time() - t0), file=sys.stderr)
PY
sleep 2
touch "$tmp/stop"
wait "$POLL_PID" || true
POLL_PID=
kill "$ING_PID" 2>/dev/null || true
wait "$ING_PID" 2>/dev/null || true
ING_PID=
wait "$PIPE_PID" 2>/dev/null || true

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); telem $("$TELEM" --version | head -n1); $(prometheus --version 2>&1 | head -n1)"
echo "rate $RATE events/s for $SECS s, 100 devices, 1 s tumbling windows; poll every $POLL ms; --watermark-interval $WMI, --flush-interval $FLUSH"
sort -g "$tmp/lat" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "no samples seen"; exit 1 }
    printf "samples seen: %d; latency receipt -> visible in Prometheus, ms: median %.1f, p90 %.1f, p99 %.1f, max %.1f, min %.1f\n",
        NR, v[int(NR * 0.5) + 1], v[int(NR * 0.9) + 1], v[int(NR * 0.99) + 1], v[NR], v[1] }'
echo "poller: $(cat "$tmp/poll.err" | tail -n 1)"
echo "remote-write: $(tail -n 1 "$tmp/rw.err" | sed 's/^telem remote-write: stats //')"
