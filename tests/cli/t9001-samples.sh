#!/bin/sh
# t9001: every samples/<name>/run.sh prints exactly its expected.ndjson.
. "$top_srcdir/tests/cli/lib.sh"

# A sample that exits 77 lacks a tool it needs (it says which on stderr): a skip.
for s in "$top_srcdir"/samples/*/; do
    name=$(basename "$s")
    rc=0
    TELEM="$TELEM" sh "$top_srcdir/samples/$name/run.sh" > "$name.out" 2> "$name.err" || rc=$?
    if [ "$rc" = 77 ]; then
        test_skip "sample $name: $(tail -n 1 "$name.err")"
        continue
    fi
    test_expect_success "sample $name" '
        { [ '"$rc"' = 0 ] || { cat "'"$name"'.err"; false; }; } &&
        test_cmp "$top_srcdir/samples/'"$name"'/expected.ndjson" "'"$name"'.out"
    '
done

test_done
