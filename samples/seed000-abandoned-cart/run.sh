#!/bin/sh
# samples/seed000-abandoned-cart/run.sh - seed 000's abandoned cart: an app start, any
# number of items added to the basket, and no checkout within 24 hours of event time.
set -eu
TELEM=${TELEM:-telem}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# a checkout within 24 h is a match (written through --emit); a session whose 24 h run
# out first is a timed-out partial match, written to --timeouts with the items it holds:
# the abandoned cart (the seed's ABANDONED_CART_EMAIL, through --timeout-emit). The
# greedy loop keeps one partial match per session (all items), and skipping past the
# checkout drops the others of a session that checked out.
"$TELEM" cep --key session --max-out-of-order 5m --no-watermarks \
    --pattern 'start: metric == "app_start" -> items: metric == "add_to_basket"* greedy
               -> checkout: metric == "checkout" within 24h skip past last event' \
    --emit '{"checkout": key, "items": count(items), "total": sum(items.price)}' \
    --timeouts "$tmp/abandoned.ndjson" \
    --timeout-emit '{"abandoned_cart_email": key, "items": count(items), "total": sum(items.price), "since": start.timestamp}' \
    --state "$tmp/state" events.ndjson
# the run ends with a snapshot (--state): only the 24 h that passed in event time have
# fired, so s5 (started on the last day) is still open
"$TELEM" inspect "$tmp/state" > /dev/null
cat "$tmp/abandoned.ndjson"

# the same rule with a trailing notFollowedBy: the match itself is written when the 24 h
# run out without a checkout (Flink's notFollowedBy at the end of a pattern with within)
"$TELEM" cep --key session --max-out-of-order 5m --no-watermarks \
    --pattern 'start: metric == "app_start" -> !checkout: metric == "checkout" within 24h' \
    --emit '{"no_checkout": key, "since": start.timestamp}' --state "$tmp/state2" events.ndjson
