#!/bin/sh
# run-fuzz.sh - run every built libFuzzer harness for a while; the CI fuzz step.
#
#   tests/fuzz/run-fuzz.sh BUILDDIR SECONDS
#
# Runs each executable BUILDDIR/tests/fuzz/fuzz_* (built by configure --enable-fuzzing) for
# SECONDS seconds, one after the other, starting from a temporary copy of its seed corpus
# tests/fuzz/corpus/<target>/ plus its earlier finds tests/data/fuzz/<target>-* (which so act
# as regression tests), so the source tree is never written. Prints "1..N" and one TAP-style
# line per target with runs, exec/s and coverage. A crash, leak, timeout or out-of-memory
# fails the target: the sanitizer report, the path of the saved input and a hex dump of it
# are printed, so the CI log alone shows what broke. Inputs and logs are kept in
# BUILDDIR/tests/fuzz/artifacts/<target>/ (FUZZ_ARTIFACTS overrides); reproduce with
# `BUILDDIR/tests/fuzz/<target> <file>`, then save the input as tests/data/fuzz/<target>-<name>.
#
# Exit status: 0 when every target ran clean, 1 when any failed, 2 on a usage error or when
# no target is built. Extra libFuzzer flags can be given in FUZZ_FLAGS (e.g. -jobs=2).
set -u

usage() {
    echo "usage: $0 BUILDDIR SECONDS" >&2
    exit 2
}

[ $# -eq 2 ] || usage
builddir=$1
seconds=$2
case $seconds in
'' | *[!0-9]*) usage ;;
esac
[ "$seconds" -gt 0 ] || usage

srcdir=$(cd "$(dirname "$0")" && pwd) || exit 2
finds=$srcdir/../data/fuzz
fuzzdir=$builddir/tests/fuzz
artifacts=${FUZZ_ARTIFACTS:-$fuzzdir/artifacts}

targets=
for f in "$fuzzdir"/fuzz_*; do
    if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
    case $f in *.o | *.c) continue ;; esac
    targets="$targets ${f##*/}"
done
if [ -z "$targets" ]; then
    echo "$0: no fuzz targets in $fuzzdir (configure CC=clang --enable-fuzzing; make)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/telem-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# a UBSan report is a crash, not a warning; the caller's settings come last and win
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
ASAN_OPTIONS="abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS ASAN_OPTIONS

hexdump_head() {
    if command -v xxd >/dev/null 2>&1; then
        xxd "$1" | head -n 32
    else
        od -A x -t x1z "$1" | head -n 32
    fi
}

# shellcheck disable=SC2086 # the names are fuzz_<word>: split on purpose
set -- $targets
echo "1..$#"
n=0
failed=0
for t in "$@"; do
    n=$((n + 1))
    corpus=$work/corpus/$t
    out=$artifacts/$t
    log=$out/fuzz.log
    mkdir -p "$corpus" "$out" || exit 2
    if [ -d "$srcdir/corpus/$t" ]; then
        cp -R "$srcdir/corpus/$t/." "$corpus/" || exit 2
    fi
    # earlier finds run first, with the seeds: a regression fails at once
    for f in "$finds/$t"-*; do
        [ -f "$f" ] && cp "$f" "$corpus/"
    done
    seeds=$(find "$corpus" -type f | wc -l | tr -d ' ')
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$fuzzdir/$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/" ${FUZZ_FLAGS:-} "$corpus" >"$log" 2>&1
    status=$?
    elapsed=$(($(date +%s) - start))

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    re='.*[[:space:]]cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*'
    cov=$(sed -n "s/$re/cov \\1 ft \\2 corpus \\3/p" "$log" | tail -n 1)
    units=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
    summary="${elapsed}s, ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov ?}, $seeds seeds"
    summary="$summary, rss ${rss:-?} MB"

    if [ "$status" -eq 0 ] && [ -z "$units" ]; then
        echo "ok $n - $t: $summary"
        continue
    fi
    failed=$((failed + 1))
    kind=$(grep -o -E 'ERROR: [A-Za-z]*Sanitizer: [a-z-]*|ERROR: libFuzzer: [a-z-]*' "$log" |
        head -n 1)
    detail=$(grep -o -E 'runtime error: .*|check failed: .*' "$log" | head -n 1 | cut -c 1-100)
    kind=${detail:-$kind}
    echo "not ok $n - $t: exit $status${kind:+, $kind}; $summary"
    # the report itself (sanitizer stack or failed check), else the end of the log
    first=$(grep -n -m 1 -E 'ERROR: |runtime error: |check failed: ' "$log" | cut -d: -f1)
    if [ -n "$first" ]; then
        echo "---- $t: $log from line $first"
        sed -n "${first},$((first + 40))p" "$log"
    else
        echo "---- $t: end of $log"
        tail -n 40 "$log"
    fi | sed 's/^/# /'
    if [ -z "$units" ]; then
        echo "# $t: no input was saved (the harness failed to start or was killed)"
    fi
    for u in $units; do
        [ -f "$u" ] || continue
        echo "# $t: input saved as $u ($(wc -c <"$u" | tr -d ' ') bytes); reproduce: $fuzzdir/$t $u"
        hexdump_head "$u" | sed 's/^/#   /'
    done
done

if [ "$failed" -gt 0 ]; then
    echo "# $failed of $n fuzz targets failed"
    exit 1
fi
exit 0
