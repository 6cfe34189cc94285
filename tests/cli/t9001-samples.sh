#!/bin/sh
# t9001: every samples/<name>/run.sh prints exactly its expected.ndjson.
. "$top_srcdir/tests/cli/lib.sh"

for s in "$top_srcdir"/samples/*/; do
    name=$(basename "$s")
    test_expect_success "sample $name" '
        TELEM="$TELEM" sh "$top_srcdir/samples/'"$name"'/run.sh" > out &&
        test_cmp "$top_srcdir/samples/'"$name"'/expected.ndjson" out
    '
done

test_done
