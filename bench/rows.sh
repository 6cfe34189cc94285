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
#   none        no check (default)
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
