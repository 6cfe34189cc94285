# lib.sh - a small TAP library for telem's shell tests, in the manner of git's test-lib:
#   test_expect_success 'what it checks' '
#       commands chained with && ...
#   '
#   test_done
# Each test runs in the test's own scratch directory ($TRASH, removed at the end);
# $TELEM is the binary under test and $top_srcdir the source tree.
set -u
: "${TELEM:?TELEM must name the telem binary}"
: "${top_srcdir:?top_srcdir must name the source tree}"
TRASH=$(mktemp -d "${TMPDIR:-/tmp}/telem-t.XXXXXX")
trap 'rm -rf "$TRASH"' EXIT
cd "$TRASH" || exit 1
test_count=0
test_failed=0
test_plan=""

test_expect_success() {
    test_count=$((test_count + 1))
    # background jobs a failed step left behind are stopped with it
    if (eval "$2"; rc=$?; for j in $(jobs -p); do kill "$j" 2>/dev/null; done; exit $rc) \
        > "$TRASH/.out" 2>&1; then
        echo "ok $test_count - $1"
    else
        echo "not ok $test_count - $1"
        sed 's/^/# /' "$TRASH/.out" | tail -30
        test_failed=$((test_failed + 1))
    fi
}

test_skip() {
    test_count=$((test_count + 1))
    echo "ok $test_count # SKIP $1"
}

test_done() {
    echo "1..$test_count"
    exit 0
}

# test_cmp EXPECTED ACTUAL: like cmp, but shows a diff on failure
test_cmp() {
    if ! cmp -s "$1" "$2"; then
        echo "files differ: $1 $2"
        diff -u "$1" "$2" | head -40
        return 1
    fi
}

# wait_for FILE PATTERN [TENTHS]: wait until FILE contains PATTERN (default 5 s)
wait_for() {
    n=0
    while ! grep -q -- "$2" "$1" 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -gt "${3:-50}" ] && { echo "timed out waiting for '$2' in $1"; return 1; }
        sleep 0.1
    done
}
