# bench/rows.sh - the rows of bench/run.sh, one line each (sourced by bash).
#
#   row NAME [--check=MODE] [--note=TEXT] 'TELEM COMMAND' 'PEER COMMAND'...
#
# Every command runs as `sh -c COMMAND < data > /dev/null`: it reads the generated events on
# stdin and writes to stdout. Single-quote the commands; these are expanded when they run:
#   $TELEM      the telem binary under test          $DATA  the data file (also stdin)
#   $GEN        telem gen's options for that data    $MLR_JSONL  mlr's JSON Lines output flag
# --check=MODE, run once before the timed runs (a failing telem command makes run.sh exit 1;
# a failing or missing peer is shown as n/a):
#   same        telem's output is the input, byte for byte (cmp); peers write as many lines
#   lines       every command writes as many lines as the input has events
#   telemlines  every peer writes as many lines as the telem command does
#   telemsame   every peer writes exactly telem's output, byte for byte (cmp)
#   none        no check (default)
# --floor=CMD (repeatable) adds a lower bound (cat-like: reads and writes, computes nothing),
# shown after the peers as "(lower bound)" and checked to write as many lines as the input.
# Extra inputs: $DATA_TABLE (CSV, one row per device: id,make,model,site), $DATA_TABLE_JSON
# (the same, one JSON object keyed by id), $BENCH_DIR (bench/, for peer scripts).
# A peer whose program is not installed is shown as n/a.

row ingest-ndjson --check=same \
    '$TELEM ingest -f ndjson' 'cat' 'jq -c .' 'mlr --ijson $MLR_JSONL cat'

row gen-pipe-ingest --check=same \
    --note='both commands generate the events themselves (stdin unused); the difference is the cost of telem ingest at the end of a pipe, against cat there' \
    '$TELEM gen $GEN | $TELEM ingest -f ndjson' '$TELEM gen $GEN | cat'

row ingest-csv --check=lines \
    --note='reads DATA_CSV (the same events as CSV with a header row); cat is the lower bound' \
    '$TELEM ingest -f csv "$DATA_CSV"' 'tail -n +2 "$DATA_CSV"' 'mlr --icsv $MLR_JSONL cat "$DATA_CSV"'

row ingest-tokens --check=lines \
    --note='reads DATA_TOKENS (seed 000 tokens key-metric-value, one per line); jq splits each token as telem does (program in DATA_TOKENS_JQ: capture("^(?<key>.*)-(?<metric>[^-]*)-(?<value>[^-]*)$") | .value |= tonumber)' \
    '$TELEM ingest -f tokens "$DATA_TOKENS"' 'cat "$DATA_TOKENS"' \
    'jq -cR -f "$DATA_TOKENS_JQ" "$DATA_TOKENS"'

row window-tumble --check=telemlines \
    --note='per device and minute: count, mean, p50, p99 of cpuUsage; mlr groups by deviceId and a minute field it computes (stats1 has no event-time windows)' \
    '$TELEM window --key deviceId --tumble 1m --agg "count, avg(cpuUsage), p50(cpuUsage), p99(cpuUsage)" --no-watermarks' \
    'mlr --ijson $MLR_JSONL put '"'"'$minute = int($timestamp / 60000)'"'"' then stats1 -a count,mean,p50,p99 -f cpuUsage -g deviceId,minute'

row enrich-table --check=lines \
    --note='every event joined with its row of a 100 k-row CSV table (DATA_TABLE: id,make,model,site; every device is in it, so each command must write every event: mlr join without --ul drops unpaired events, the jq program selects matched ones; no `|` in the jq program, as run.sh reads `|` as a pipe to find the programs a command needs); each command loads the table itself; jq reads it as one JSON object (DATA_TABLE_JSON) with --slurpfile' \
    --floor='cat' \
    '$TELEM enrich --table "$DATA_TABLE" --on deviceId=id --missing drop' \
    'mlr --ijson $MLR_JSONL join -i csv -f "$DATA_TABLE" -j deviceId -l id -r deviceId' \
    'jq -c --slurpfile m "$DATA_TABLE_JSON" '"'"'select($m[0][.deviceId]) + $m[0][.deviceId]'"'"''

row cep-two-stage --check=telemsame \
    --note='two-stage pattern per device, hot: cpuUsage > 60 -> cool: cpuUsage < 50 within 10m (Flink followedBy, no skip): 42 248 matches in the 1 M events. No peer does CEP: the peer is an awk script keeping the open partial matches per device (bench/peers/cep-hot-cool.awk), whose output is checked to be telem'"'"'s byte for byte; cat is the lower bound' \
    --floor='cat' \
    '$TELEM cep --key deviceId --no-watermarks --pattern "hot: cpuUsage > 60 -> cool: cpuUsage < 50 within 10m" --emit "{\"deviceId\": key, \"hot\": hot.timestamp, \"cool\": cool.timestamp}"' \
    'awk -f "$BENCH_DIR/peers/cep-hot-cool.awk"'

row remote-write-encode --check=lines \
    --note='each event to one sample in Prometheus text exposition (name{label} value timestamp), no network; jq and mlr print the same lines (compared sorted, they differ only in number formatting: mlr writes 0 as 0.0; telem writes samples grouped by batch and series, not in input order); the binary protobuf + snappy path (--format pb) is in bench/remote-write/run.sh' \
    --floor='cat' \
    '$TELEM remote-write --dry-run --format prom --name cpu --value cpuUsage --label deviceId --max-future 0' \
    'jq -r '"'"'"cpu{deviceId=\"\(.deviceId)\"} \(.cpuUsage) \(.timestamp)"'"'"'' \
    'mlr --ijson --onidx put -q '"'"'print "cpu{deviceId=\"" . $deviceId . "\"} " . $cpuUsage . " " . $timestamp'"'"''

row window-slide --check=telemlines \
    --note='10-minute windows sliding every minute over all devices (one stream: per device, mlr would hold 10 M groups), count, mean, p50, p99 of cpuUsage; mlr copies each event into its 10 windows (nest --explode) and groups by window. telem p50/p99 are t-digest estimates, mlr'"'"'s exact' \
    '$TELEM window --slide 10m --every 1m --agg "count, avg(cpuUsage), p50(cpuUsage), p99(cpuUsage)" --no-watermarks' \
    'mlr --ijson $MLR_JSONL put '"'"'m = int($timestamp / 60000); $w = joinv([m, m-1, m-2, m-3, m-4, m-5, m-6, m-7, m-8, m-9], ";")'"'"' then nest --explode --values --across-records -f w --nested-fs ";" then stats1 -a count,mean,p50,p99 -f cpuUsage -g w'
