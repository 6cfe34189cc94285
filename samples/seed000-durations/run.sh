#!/bin/sh
# samples/seed000-durations/run.sh - seed 000's SocketMetricDifference: tokens
# "key-metric-value" (the value is the time the metric was taken), a start followed by an
# end per key, and the time taken between them, as Metric(key, timeTaken, duration).
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"

# the value is the event time, in seconds; b's start comes before c's start, out of
# order by 150 s, so the watermark allows 10 minutes of disorder
"$TELEM" ingest -f tokens < input.txt |
    "$TELEM" cep --key key --time-field value --time-unit s --max-out-of-order 10m \
        --pattern 'start: metric == "start" -> end: metric == "end"' \
        --emit '{"key": start.key, "metric": "timeTaken", "value": end.value - start.value}' \
        --no-watermarks
