#!/bin/sh
# t0450-synopsis.sh - the manual and the completions agree with the binary (TAP).
#
# For telem itself and for every command of `telem --list-commands`:
#   - man/telem-<cmd>.1 exists and has the sections of style.md 3.8;
#   - its SYNOPSIS is exactly the usage lines of `telem <cmd> -h` (the lines before the
#     first blank line, without their "usage: " / "   or: " prefix; man markup removed);
#   - every option that `telem <cmd> --list-options` prints is the tag of an entry
#     (.TP) of its OPTIONS section;
#   - telem.1 lists the command under COMMANDS.
# And each completion file asks the binary (--list-commands, --list-options).
set -u
: "${TELEM:?TELEM must name the telem binary}"
: "${top_srcdir:?top_srcdir must name the source tree}"
man="$top_srcdir/man"
work=$(mktemp -d "${TMPDIR:-/tmp}/telem-t0450.XXXXXX")
trap 'rm -rf "$work"' EXIT
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1))
    failed=$((failed + 1))
    echo "not ok $n - $1"
    [ $# -gt 1 ] && [ -s "$2" ] && sed 's/^/# /' "$2"
    return 0
}

# Removes the man markup used in the pages: font escapes, \- \e \(dq \& and "\ ".
unman() {
    sed -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\-/-/g' -e 's/\\(dq/"/g' \
        -e 's/\\(aq/'"'"'/g' -e 's/\\&//g' -e 's/\\ / /g' -e 's/\\e/\\/g'
}

# section FILE NAME: the source lines of section NAME (without the .SH line).
section() {
    awk -v name="$2" '
        /^\.SH / { s = substr($0, 5); gsub(/"/, "", s); on = (s == name); next }
        on' "$1"
}

# The SYNOPSIS of a page as plain text: requests (.nf, .fi, ...) dropped.
man_synopsis() {
    section "$1" SYNOPSIS | grep -v '^[.'"'"']' | unman
}

# The usage lines of -h / --help output on stdin.
help_synopsis() {
    awk '/^$/ { exit }
        /^usage: / || /^   or: / || /^       / { print substr($0, 8); next }
        { print "?" $0 }'
}

# The option names in the tags of the OPTIONS section's .TP entries, one a line.
man_options() {
    section "$1" OPTIONS | awk '/^\.TP/ { tag = 1; next } tag { print; tag = 0 }' | unman |
        sed -e 's/^\.[A-Z]* *//' -e 's/"//g' -e 's/,/ /g' | tr ' \t' '\n\n' | grep '^-'
}

check_sections() { # page, sections...
    page=$1
    shift
    missing=
    for s in "$@"; do
        grep -q "^\.SH \"*$s\"*\$" "$page" || missing="$missing [$s]"
    done
    if [ -z "$missing" ]; then
        ok "$(basename "$page") has the sections of style.md 3.8"
    else
        echo "missing:$missing" > "$work/out"
        not_ok "$(basename "$page") has the sections of style.md 3.8" "$work/out"
    fi
}

check_synopsis() { # page, label, command...
    page=$1
    label=$2
    shift 2
    "$@" -h > "$work/help" 2>&1
    help_synopsis < "$work/help" > "$work/want"
    man_synopsis "$page" > "$work/got"
    if [ -s "$work/want" ] && diff -u "$work/want" "$work/got" > "$work/out" 2>&1; then
        ok "$label: SYNOPSIS of $(basename "$page") is the usage of -h"
    else
        not_ok "$label: SYNOPSIS of $(basename "$page") is the usage of -h" "$work/out"
    fi
}

cmds=$("$TELEM" --list-commands)
if [ -z "$cmds" ]; then
    echo "1..1"
    echo "not ok 1 - telem --list-commands lists commands"
    exit 1
fi
ncmds=$(printf '%s\n' $cmds | grep -c .)
echo "1..$((3 + ncmds * 5 + 3))"

# ---- telem itself --------------------------------------------------------------------
if [ -f "$man/telem.1" ]; then ok "telem.1 exists"; else not_ok "telem.1 exists"; fi
check_synopsis "$man/telem.1" telem "$TELEM"
if [ -f "$man/telem.7" ]; then ok "telem.7 exists"; else not_ok "telem.7 exists"; fi

# ---- every command -------------------------------------------------------------------
for c in $cmds; do
    page="$man/telem-$c.1"
    if [ ! -f "$page" ]; then
        not_ok "$c: man/telem-$c.1 exists"
        for t in sections synopsis options listed; do
            not_ok "$c: $t (no page)"
        done
        continue
    fi
    ok "$c: man/telem-$c.1 exists"
    check_sections "$page" NAME SYNOPSIS DESCRIPTION OPTIONS INPUT OUTPUT "EXIT STATUS" \
        EXAMPLES "SEE ALSO"
    check_synopsis "$page" "$c" "$TELEM" "$c"

    "$TELEM" "$c" --list-options > "$work/opts" 2> "$work/out"
    man_options "$page" > "$work/documented"
    : > "$work/undocumented"
    while read -r o; do
        grep -qxF -- "$o" "$work/documented" || echo "$o" >> "$work/undocumented"
    done < "$work/opts"
    if [ -s "$work/opts" ] && [ ! -s "$work/undocumented" ]; then
        ok "$c: every option of --list-options is in OPTIONS of telem-$c.1"
    else
        { echo "not documented:"; cat "$work/undocumented" "$work/out"; } > "$work/msg"
        not_ok "$c: every option of --list-options is in OPTIONS of telem-$c.1" "$work/msg"
    fi

    if section "$man/telem.1" COMMANDS | awk '/^\.TP/ { tag = 1; next }
            tag { print; tag = 0 }' | unman | grep -qx "\.B $c"; then
        ok "$c: telem.1 lists it under COMMANDS"
    else
        not_ok "$c: telem.1 lists it under COMMANDS"
    fi
done

# ---- completions ---------------------------------------------------------------------
for f in telem.bash _telem telem.fish; do
    file="$top_srcdir/completions/$f"
    if [ -f "$file" ] && grep -q -- '--list-options' "$file" &&
        grep -q -- '--list-commands' "$file"; then
        ok "completions/$f asks --list-commands and --list-options"
    else
        not_ok "completions/$f asks --list-commands and --list-options"
    fi
done

[ "$failed" -eq 0 ]
