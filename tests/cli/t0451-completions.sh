#!/bin/sh
# t0451-completions.sh - the shell completions offer what the binary says (TAP).
#
# Each case below is a command line being completed (the last word is the one under
# the cursor, "_" standing for an empty word) and the exact set of candidates expected
# from bash, zsh and fish ("=" in the zsh or fish column: the same as bash).
#   bash: completions/telem.bash is sourced and _telem driven with COMP_WORDS and
#         COMP_CWORD; COMPREPLY is compared (always run: bash is required).
#   zsh:  completions/_telem is autoloaded with compadd, _files and _call_program
#         replaced by recorders that match on $PREFIX the way compadd does; a file
#         completion shows as <files>. Skipped when zsh is not installed.
#   fish: completions/telem.fish is sourced and `complete -C` asked. Skipped when fish
#         is not installed.
# Commands and options come from the binary: a case expects exactly what
# `telem --list-commands` and `telem <cmd> --list-options` print.
set -u
LC_ALL=C
export LC_ALL
: "${TELEM:?TELEM must name the telem binary}"
: "${top_srcdir:?top_srcdir must name the source tree}"
comp="$top_srcdir/completions"
work=$(mktemp -d "${TMPDIR:-/tmp}/telem-t0451.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin" "$work/dir"
ln -s "$TELEM" "$work/bin/telem"
ln -s "$TELEM" "$work/bin/telem-gen"
ln -s "$TELEM" "$work/bin/telem-window"
: > "$work/dir/xa.ndjson"
: > "$work/dir/xb.ndjson"
: > "$work/dir/y"
mkdir "$work/dir/yd"
PATH="$work/bin:$PATH"
export PATH

words() { tr '\n' ' ' | sed 's/ *$//'; }
cmds=$("$TELEM" --list-commands | words)
st=$("$TELEM" ingest --list-options | grep '^--st' | words)
helpcmds=$(printf '%s\n' $cmds | grep '^ins' | words)

# words | bash | zsh | fish
cat > "$work/cases" <<EOF
telem in|$(printf '%s\n' $cmds | grep '^in' | words)|=|=
telem _|$cmds help|=|=
telem -|--help --version --list-commands|=|=
telem help ins|$helpcmds|=|=
telem gen --un|--unit|=|=
telem ingest --rej|--reject|=|=
telem ingest --st|$st|=|=
telem inspect --r|--records|=|=
telem ingest --time-unit _|auto s ms us ns|=|=
telem ingest --time-unit m|ms|=|=
telem ingest -f _|ndjson csv tokens influx graphite prom|=|=
telem ingest --format=i|influx|=|--format=influx
telem ingest --time-unit-out _|s ms us ns|=|=
telem ingest --listen _|tcp://127.0.0.1: udp://127.0.0.1: unix:|=|=
telem ingest --listen u|udp://127.0.0.1: unix:|=|=
telem ingest --archive y|yd|<files>|yd/
telem gen --unit _|s ms us ns|=|=
telem gen --rate _||=|=
telem window --sketch _|tdigest ddsketch|=|=
telem window --sketch d|ddsketch|=|=
telem window --sketch=t|tdigest|=|--sketch=tdigest
telem window --fill _|last zero|=|=
telem window --fill z|zero|=|=
telem-window --fill l|last|=|=
telem window --every _||=|=
telem window --late x|xa.ndjson xb.ndjson|<files>|=
telem ingest --reject x|xa.ndjson xb.ndjson|<files>|=
telem ingest --reject=x|xa.ndjson xb.ndjson|<files>|--reject=xa.ndjson --reject=xb.ndjson
telem ingest -o _|xa.ndjson xb.ndjson y yd|<files>|xa.ndjson xb.ndjson y yd/
telem inspect x|xa.ndjson xb.ndjson|<files>|=
telem-gen --du|--duplicates|=|=
EOF
ncases=$(grep -c . "$work/cases")

# ---- drivers: print one line of candidates per case ------------------------------------
cat > "$work/drive.bash" <<'EOF'
source "$1/telem.bash" || exit 1
cd "$2/dir" || exit 1
while IFS='|' read -r line rest; do
    read -ra w <<< "$line"
    words=()
    for x in "${w[@]}"; do
        [[ $x == _ ]] && x=
        # readline splits --opt=value at "=" (COMP_WORDBREAKS)
        if [[ $x == --*=* ]]; then words+=("${x%%=*}" "=" "${x#*=}"); else words+=("$x"); fi
    done
    words[0]="$2/bin/${words[0]}"
    COMP_WORDS=("${words[@]}")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _telem
    printf '%s\n' "${COMPREPLY[@]}" | LC_ALL=C sort | tr '\n' ' ' | sed 's/ *$//'
    echo
done < "$2/cases"
EOF

cat > "$work/drive.zsh" <<'EOF'
typeset -ga got
compadd() {
    while [[ $# -gt 0 && $1 != -- ]]; do shift; done
    shift
    local x
    for x; do [[ $x == ${PREFIX}* ]] && got+=("$x"); done
}
_files() { got+=("<files>"); }
_message() { :; }
compset() { [[ $1 == -P ]] && PREFIX=${PREFIX#*=}; }
_call_program() { shift; eval "$@"; }
fpath=("$1" $fpath)
autoload -Uz _telem
cd "$2/dir" || exit 1
while IFS='|' read -r line rest; do
    words=(${=line})
    words=("${(@)words/#%_/}")
    words[1]="$2/bin/${words[1]}"
    CURRENT=${#words}
    PREFIX=${words[CURRENT]}
    got=()
    _telem
    print -r -- ${(j: :)${(o)got}}
done < "$2/cases"
EOF

cat > "$work/drive.fish" <<'EOF'
source $argv[1]/telem.fish; or exit 1
cd $argv[2]/dir; or exit 1
while read -l line
    set -l w (string split '|' -- $line)[1]
    set w (string replace -a -r '(^| )_$' '$1' -- $w)
    # (string join fails, printing nothing, for fewer than two words: echo the result)
    echo (complete -C"$w" | string replace -r '\t.*' '' | sort | string join ' ')
end < $argv[2]/cases
EOF

# ---- compare ---------------------------------------------------------------------------
echo "1..$((ncases * 3))"
n=0
failed=0
check() { # shell, column, output file
    i=0
    while IFS='|' read -r line b z f; do
        i=$((i + 1))
        n=$((n + 1))
        case $2 in
        2) want=$b ;;
        3) want=$z ;;
        4) want=$f ;;
        esac
        [ "$want" = "=" ] && want=$b
        want=$(printf '%s\n' $want | LC_ALL=C sort | words)
        got=$(sed -n "${i}p" "$3")
        if [ "$got" = "$want" ]; then
            echo "ok $n - $1: $line -> $want"
        else
            failed=$((failed + 1))
            echo "not ok $n - $1: $line"
            echo "#   expected: $want"
            echo "#   got:      $got"
        fi
    done < "$work/cases"
}
skip() { # shell
    i=0
    while [ $i -lt "$ncases" ]; do
        i=$((i + 1))
        n=$((n + 1))
        echo "ok $n # SKIP $1 is not installed"
    done
}

bash "$work/drive.bash" "$comp" "$work" > "$work/bash.out" 2> "$work/bash.err"
check bash 2 "$work/bash.out"
[ -s "$work/bash.err" ] && sed 's/^/# bash: /' "$work/bash.err"

if command -v zsh > /dev/null 2>&1; then
    zsh -f "$work/drive.zsh" "$comp" "$work" > "$work/zsh.out" 2> "$work/zsh.err"
    check zsh 3 "$work/zsh.out"
    [ -s "$work/zsh.err" ] && sed 's/^/# zsh: /' "$work/zsh.err"
else
    skip zsh
fi

if command -v fish > /dev/null 2>&1; then
    HOME="$work" XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
        fish --no-config "$work/drive.fish" "$comp" "$work" > "$work/fish.out" 2> "$work/fish.err"
    check fish 4 "$work/fish.out"
    [ -s "$work/fish.err" ] && sed 's/^/# fish: /' "$work/fish.err"
else
    skip fish
fi

[ "$failed" -eq 0 ]
