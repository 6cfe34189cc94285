#!/bin/sh
# samples/seed000-load-time/run.sh - seed 000's products load time: per session, a
# products_fetch_start followed by a products_fetch_end, and the seed's
# Metric(session_id, "productsLoadTime", end.timestamp - start.timestamp).
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"

# the seed's table as CSV (its three rows first, then three more sessions); telem ingest
# makes events of the rows (times kept in seconds), telem cep matches the pattern per
# session_id in event time; the rows arrive up to a minute out of order (the seed's
# session ends at 210 after another session started at 200)
"$TELEM" ingest -f csv --time-unit-out s input.csv |
    "$TELEM" cep --key session_id --time-unit s --max-out-of-order 1m --no-watermarks \
        --pattern 'start: metric == "products_fetch_start" -> end: metric == "products_fetch_end"' \
        --emit '{"session_id": start.session_id, "metric": "productsLoadTime",
                 "value": end.timestamp - start.timestamp}'
