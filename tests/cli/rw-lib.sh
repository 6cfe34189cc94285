# rw-lib.sh - helpers of the remote-write shell tests (t50NN): a real Prometheus on
# loopback, and a scripted stub receiver (rw-stub.py). Source after lib.sh.
#   prom_start [extra prometheus.yml lines]  -> PROM_PID, PROM_URL (http://127.0.0.1:PORT)
#   prom_stop;  prom_restart (same port, same data)
#   prom_raw QUERY TIME     -> "value@ts" lines of QUERY[...] at TIME (raw samples)
# Every server started here is stopped by PID when the script exits (trap).

PROM_PID= STUB_PID= PROM_DIR= PROM_PORT=

# every server started (also inside a test step, a subshell whose variables the trap does
# not see) is listed in $TRASH/.rw-pids and stopped at exit
rw_cleanup() {
    [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
    [ -n "$STUB_PID" ] && kill "$STUB_PID" 2>/dev/null && wait "$STUB_PID" 2>/dev/null
    if [ -f "$TRASH/.rw-pids" ]; then
        for p in $(cat "$TRASH/.rw-pids"); do kill "$p" 2>/dev/null; done
        for p in $(cat "$TRASH/.rw-pids"); do
            n=0
            while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do n=$((n + 1)); sleep 0.1; done
        done
    fi
    rm -rf "$TRASH"
}
trap rw_cleanup EXIT

# a free port on 127.0.0.1 (asks the kernel)
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

have_prometheus() {
    command -v prometheus >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 &&
        command -v jq >/dev/null 2>&1
}

prom_launch() {
    prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
        --web.listen-address=127.0.0.1:$PROM_PORT --web.enable-remote-write-receiver \
        --log.level=debug >>"$PROM_DIR/prom.log" 2>&1 3>&- 4>&- &
    PROM_PID=$!
    echo "$PROM_PID" >> "$TRASH/.rw-pids"
    n=0
    until curl -sf "$PROM_URL/-/ready" >/dev/null 2>&1; do
        n=$((n + 1))
        if [ $n -gt 300 ] || ! kill -0 "$PROM_PID" 2>/dev/null; then
            echo "prometheus did not start"; tail -5 "$PROM_DIR/prom.log"; return 1
        fi
        sleep 0.1
    done
}

prom_start() {
    PROM_DIR="$TRASH/prom"
    mkdir -p "$PROM_DIR"
    printf 'global:\n  scrape_interval: 15s\n%sscrape_configs: []\n' "${1:-}" > "$PROM_DIR/prometheus.yml"
    PROM_PORT=$(free_port)
    PROM_URL="http://127.0.0.1:$PROM_PORT"
    prom_launch
}

# stops Prometheus and waits until it is gone (it may not be our child: a test step runs
# in a subshell)
prom_stop() {
    kill "$PROM_PID" 2>/dev/null
    wait "$PROM_PID" 2>/dev/null
    n=0
    while kill -0 "$PROM_PID" 2>/dev/null; do
        n=$((n + 1)); [ $n -gt 300 ] && { echo "prometheus did not stop"; return 1; }
        sleep 0.1
    done
    PROM_PID=
}

prom_restart() {
    prom_launch
}

# prom_raw QUERY TIME [RANGE]: the raw samples of QUERY in (TIME-RANGE, TIME], one
# "labels value ts_ms" line each, sorted (labels as compact JSON).
prom_raw() {
    curl -s -G "$PROM_URL/api/v1/query" --data-urlencode "query=$1[${3:-1h}]" \
        --data-urlencode "time=$2" |
        jq -r '.data.result[] | (.metric | tojson) as $m | .values[] |
               "\($m) \(.[1]) \((.[0] * 1000) | round)"' | LC_ALL=C sort
}

stub_start() {
    STUB_PORT=$(free_port)
    rm -f "$TRASH/stub.log"
    python3 "$top_srcdir/tests/cli/rw-stub.py" "$STUB_PORT" "$@" > "$TRASH/stub.log" 2>&1 &
    STUB_PID=$!
    echo "$STUB_PID" >> "$TRASH/.rw-pids"
    STUB_URL="http://127.0.0.1:$STUB_PORT/api/v1/write"
    n=0
    until grep -q "listening $STUB_PORT" "$TRASH/stub.log" 2>/dev/null; do
        n=$((n + 1)); [ $n -gt 100 ] && { echo "stub did not start"; return 1; }
        sleep 0.1
    done
}
