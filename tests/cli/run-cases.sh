#!/bin/sh
# run-cases.sh - runs the table-driven pipeline cases in tests/cases/<cmd>/*.case and
# prints TAP. One file is one case, in sections (see tests/cases/README):
#
#   # comment lines describe the case
#   args: ingest --strict          arguments after "telem" (sh quoting)
#   file: NAME                     a fixture written to NAME in the case's directory
#   ...lines...                    (until the next section)
#   stdin:                         lines fed to standard input (default: none)
#   stdout:                        the exact expected standard output
#   stderr:                        the exact expected standard error (default: not checked)
#   exit: 0                        the expected exit status (default 0)
#   state: split                   also run in two halves through one --state file (the
#                                  second with --drain) and expect the same stdout
#   output: NAME                   after the run, file NAME must equal the lines below
#
# Runs in a fresh temporary directory per case, so relative fixture names work.
set -u
: "${TELEM:?TELEM must name the telem binary}"
: "${top_srcdir:?top_srcdir must name the source tree}"
dir="$top_srcdir/tests/cases"
if [ $# -gt 0 ]; then cases="$*"; else cases=$(find "$dir" -name '*.case' | LC_ALL=C sort); fi
n=$(printf '%s\n' $cases | grep -c .)
echo "1..$n"
work=$(mktemp -d "${TMPDIR:-/tmp}/telem-cases.XXXXXX")
trap 'rm -rf "$work"' EXIT
i=0
failed=0
for c in $cases; do
    i=$((i + 1))
    name=${c#"$dir"/}
    t="$work/$i"
    mkdir -p "$t"
    # split the case into files: args, stdin, stdout, stderr, exit, state, file.NAME
    awk -v out="$t" '
        function start(f) { cur = out "/" f; printf "" > cur; has[f] = 1 }
        /^#/ && cur == "" { next }
        /^args:/    { v = substr($0, 6); sub(/^ /, "", v); print v > (out "/args"); cur = ""; next }
        /^exit: /   { print substr($0, 7) > (out "/exit"); cur = ""; next }
        /^state: /  { print substr($0, 8) > (out "/state"); cur = ""; next }
        /^file: /   { start("file." substr($0, 7)); next }
        /^output: / { start("output." substr($0, 9)); next }
        /^stdin:$/  { start("stdin"); next }
        /^stdout:$/ { start("stdout"); next }
        /^stderr:$/ { start("stderr"); next }
        cur != ""   { print >> cur; next }
        /^[ \t]*$/  { next }
        { printf "bad line in case: %s\n", $0 > "/dev/stderr"; exit 1 }
    ' "$c" || { echo "not ok $i - $name # malformed case"; failed=$((failed + 1)); continue; }
    mkdir -p "$t/run"
    for f in "$t"/file.*; do
        [ -e "$f" ] || continue
        cp "$f" "$t/run/${f##*/file.}"
    done
    [ -f "$t/stdin" ] || : > "$t/stdin"
    want_exit=$(cat "$t/exit" 2>/dev/null || echo 0)
    args=$(cat "$t/args")
    (cd "$t/run" && eval "set -- $args" && "$TELEM" "$@" < "$t/stdin" > "$t/got.out" 2> "$t/got.err")
    got_exit=$?
    why=""
    if [ "$got_exit" != "$want_exit" ]; then
        why="exit $got_exit, expected $want_exit"
    elif [ -f "$t/stdout" ] && ! cmp -s "$t/stdout" "$t/got.out"; then
        why="stdout differs"
    elif [ ! -f "$t/stdout" ] && [ -s "$t/got.out" ]; then
        why="unexpected stdout"
    elif [ -f "$t/stderr" ] && ! cmp -s "$t/stderr" "$t/got.err"; then
        why="stderr differs"
    fi
    if [ -z "$why" ]; then
        for f in "$t"/output.*; do
            [ -e "$f" ] || continue
            o=${f##*/output.}
            if ! cmp -s "$f" "$t/run/$o"; then why="file $o differs"; break; fi
        done
    fi
    if [ -z "$why" ] && [ -f "$t/state" ]; then
        # the same input in two runs through one snapshot gives the same output
        total=$(wc -l < "$t/stdin")
        half=$((total / 2))
        head -n "$half" "$t/stdin" > "$t/in1"
        tail -n "+$((half + 1))" "$t/stdin" > "$t/in2"
        mkdir -p "$t/run2"
        for f in "$t"/file.*; do [ -e "$f" ] && cp "$f" "$t/run2/${f##*/file.}"; done
        (cd "$t/run2" && eval "set -- $args" &&
            "$TELEM" "$@" --state "$t/state.zst" < "$t/in1" > "$t/s.out" 2>/dev/null &&
            "$TELEM" "$@" --state "$t/state.zst" --drain < "$t/in2" >> "$t/s.out" 2>/dev/null)
        if [ -f "$t/stdout" ] && ! cmp -s "$t/stdout" "$t/s.out"; then
            why="output through a snapshot differs"
            cp "$t/s.out" "$t/got.out"
        fi
    fi
    if [ -z "$why" ]; then
        echo "ok $i - $name"
    else
        echo "not ok $i - $name # $why"
        failed=$((failed + 1))
        echo "# command: telem $args"
        if [ -f "$t/stdout" ]; then diff "$t/stdout" "$t/got.out" | sed 's/^/#   /' | head -20; fi
        if [ -f "$t/stderr" ]; then diff "$t/stderr" "$t/got.err" | sed 's/^/#   /' | head -10; fi
        [ -s "$t/got.err" ] && sed 's/^/# stderr: /' "$t/got.err" | head -5
    fi
done
exit 0
