#!/bin/sh
# samples/seed003-backfill/backfill.sh - seed 003's counter job as a cron job: each run
# takes the oldest archive segment not yet processed, joins its impressions with their
# actions, counts both per segment and hour, and appends the finished counts; the state
# of the counting stages (the hourly windows still open) is carried to the next run in
# snapshots (--state), so running it once per segment gives what one run over the whole
# archive gives. A segment is processed once the next one exists: its actions complete
# the joins of the segment's last impressions.
#
# usage: backfill.sh [--live] [--drain] <archive-dir> <work-dir>
#   --live    leave the newest segment alone (the collector may still be writing it)
#   --drain   the input is complete: end time after this run (fire the last windows)
# Writes <work-dir>/impressions.ndjson, actions.ndjson (counts, appended),
# flat.ndjson (the joined impression-action pairs, appended), done (segments processed)
# and the windows' snapshots *.snap. Exit 0 with nothing done when no segment is waiting.
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

# the oldest segment not done yet (segment names sort in arrival order) and the one after
# it, which holds the rest of the actions of this segment's last impressions
segs=$(ls "$archive" | grep '^raw-.*\.zst$' | sort) || true
$live && segs=$(printf '%s\n' "$segs" | sed '$d')
seg= next=
for s in $segs; do
    if [ -n "$seg" ]; then next=$s; break; fi
    grep -qxF "$s" "$work/done" || seg=$s
done
# nothing to do, or the next segment is not there yet (unless the input is complete)
if [ -z "$drain" ] && { [ -z "$seg" ] || [ -z "$next" ]; }; then exit 0; fi

# this run's input, at a fixed path
tmp=$work/run
rm -rf "$tmp"
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/raw.ndjson"
: > "$tmp/next.ndjson"
if [ -n "$seg" ]; then "$TELEM" ingest --strict "$archive/$seg" > "$tmp/raw.ndjson"; fi
if [ -n "$next" ]; then "$TELEM" ingest --strict "$archive/$next" > "$tmp/next.ndjson"; fi
grep '"type":"impression"' "$tmp/raw.ndjson" > "$tmp/imp.ndjson" || true
cat "$tmp/raw.ndjson" "$tmp/next.ndjson" | grep '"type":"action"' > "$tmp/act.ndjson" || true

# the flat output job: an impression and an action of it within 10 minutes make a pair.
# This segment's impressions find all their actions in this segment and the next
# (segments are hours, the join 10 minutes), so the join needs no state across runs
"$TELEM" enrich --join "$tmp/act.ndjson" --on impressionId --within 10m --prefix action_ \
    --time-unit s "$tmp/imp.ndjson" > "$tmp/flat.ndjson"
# the counter job: impressions, and actions by type, per segment and hour
"$TELEM" window --tumble 1h --key segment --agg 'count as impressions' --time-unit s \
    --no-watermarks --state "$work/impressions.snap" $drain "$tmp/imp.ndjson" > "$tmp/ci.ndjson"
"$TELEM" window --tumble 1h --key segment,action_actionType --agg 'count as actions' --max-out-of-order 10m \
    --time-unit s --no-watermarks --state "$work/actions.snap" $drain "$tmp/flat.ndjson" > "$tmp/ca.ndjson"

grep -v '^{"__watermark"' "$tmp/flat.ndjson" >> "$work/flat.ndjson" || true
cat "$tmp/ci.ndjson" >> "$work/impressions.ndjson"
cat "$tmp/ca.ndjson" >> "$work/actions.ndjson"
if [ -n "$seg" ]; then echo "$seg" >> "$work/done"; fi
