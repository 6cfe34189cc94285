#!/bin/sh
# samples/ingest-clean/run.sh - validate a feed, park bad lines, stamp watermarks.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$TELEM" ingest --time-field timestamp --max-out-of-order 5s \
    --reject "$out/rejects.ndjson" input.ndjson
cat "$out/rejects.ndjson"
"$TELEM" gen -n 5 --devices 3 --seed 42 | "$TELEM" ingest --no-watermarks
