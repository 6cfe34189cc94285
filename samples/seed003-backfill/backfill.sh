#!/bin/sh
# samples/seed003-backfill/backfill.sh - seed 003's counter job as a cron job: each run
# takes the oldest archive segment not yet processed, joins its impressions with their
# actions, counts both per segment and hour, and appends the finished counts. Each run
# reads only its own segment: the state of every stage (the join's impressions and
# actions still waiting for a partner, the hourly windows still open) is carried to the
# next run in snapshots (--state), so running it once per segment gives what one run over
# the whole archive gives.
#
# usage: backfill.sh [--live] [--drain] <archive-dir> <work-dir>
#   --live    leave the newest segment alone (the collector may still be writing it)
#   --drain   the input is complete: end time after this run (the join's last waiting
#             impressions leave, the last windows fire)
# Writes <work-dir>/impressions.ndjson, actions.ndjson (counts, appended),
# flat.ndjson (the joined impression-action pairs, appended), done (segments processed)
# and the stages' snapshots *.snap. Exit 0 with nothing done when no segment is waiting.
set -eu
TELEM=${TELEM:-telem}
live=false drain=
while [ $# -gt 0 ]; do
    case $1 in
    --live) live=true; shift ;;
    --drain) drain=--drain; shift ;;
    --) shift; break ;;
    -*) echo "backfill.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -eq 2 ] || { echo "usage: backfill.sh [--live] [--drain] <archive-dir> <work-dir>" >&2; exit 2; }
archive=$1 work=$2
mkdir -p "$work"
touch "$work/done"
# one run at a time (cron may start the next while this one is still running)
exec 9> "$work/.lock"
command -v flock > /dev/null && ! flock -n 9 && { echo "backfill.sh: another run is in progress" >&2; exit 1; }

# the oldest segment not done yet (segment names sort in arrival order)
segs=$(ls "$archive" | grep '^raw-.*\.zst$' | sort) || true
$live && segs=$(printf '%s\n' "$segs" | sed '$d')
seg=
for s in $segs; do
    grep -qxF "$s" "$work/done" || { seg=$s; break; }
done
# nothing to do (unless the input is complete: then end time)
if [ -z "$seg" ] && [ -z "$drain" ]; then exit 0; fi

# this run's input, at fixed paths (a snapshot's input is known by its name and first
# bytes: a new segment under the same name is read whole)
tmp=$work/run
rm -rf "$tmp"
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/raw.ndjson"
if [ -n "$seg" ]; then "$TELEM" ingest --strict "$archive/$seg" > "$tmp/raw.ndjson"; fi
grep '"type":"impression"' "$tmp/raw.ndjson" > "$tmp/imp.ndjson" || true
grep '"type":"action"' "$tmp/raw.ndjson" > "$tmp/act.ndjson" || true

# the flat output job: an impression and an action of it within 10 minutes make a pair.
# An impression of the hour's last 10 minutes waits in the join's snapshot for its
# actions, which come with the next segment
"$TELEM" enrich --join "$tmp/act.ndjson" --on impressionId --within 10m --prefix action_ \
    --time-unit s --state "$work/join.snap" $drain "$tmp/imp.ndjson" > "$tmp/flat.ndjson"
# the counter job: impressions, and actions by type, per segment and hour
"$TELEM" window --tumble 1h --key segment --agg 'count as impressions' --time-unit s \
    --no-watermarks --state "$work/impressions.snap" $drain "$tmp/imp.ndjson" > "$tmp/ci.ndjson"
"$TELEM" window --tumble 1h --key segment,action_actionType --agg 'count as actions' --max-out-of-order 10m \
    --time-unit s --no-watermarks --state "$work/actions.snap" $drain "$tmp/flat.ndjson" > "$tmp/ca.ndjson"

grep -v '^{"__watermark"' "$tmp/flat.ndjson" >> "$work/flat.ndjson" || true
cat "$tmp/ci.ndjson" >> "$work/impressions.ndjson"
cat "$tmp/ca.ndjson" >> "$work/actions.ndjson"
if [ -n "$seg" ]; then echo "$seg" >> "$work/done"; fi
