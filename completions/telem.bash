# bash completion for telem                                      -*- shell-script -*-
#
# Thin on purpose: the commands come from `telem --list-commands` and the options from
# `telem <command> --list-options`, and which options take a <file> (or a <dir>) from
# the option lines of `telem <command> --help`, so a new command or option needs no
# change here. Only the fixed values of a few options are spelled out.
#
# Works with or without the bash-completion package; also completes the multi-call
# links `telem-<command>`.

# _telem_run PROG ARGS...: runs the telem being completed (PROG as typed, "~/" expanded).
_telem_run()
{
    local prog=$1
    shift
    case $prog in
    "~/"*) prog=$HOME/${prog#"~/"} ;;
    esac
    "$prog" "$@" 2>/dev/null
}

# _telem_argkind PROG CMD... OPTION: prints the placeholder OPTION takes ("<file>",
# "<dur>"...), or nothing if it takes no value or is unknown.
_telem_argkind()
{
    local opt=${*: -1}
    _telem_run "${@:1:$#-1}" --help | awk -v opt="$opt" '
        $1 ~ /^-[^-],$/ { s = substr($1, 1, 2); l = $2; a = $3 }
        $1 ~ /^--/      { s = ""; l = $1; a = $2 }
        $1 !~ /^-/      { next }
        (opt == s || opt == l) && a ~ /^</ { print a; exit }'
}

_telem()
{
    local cur prev prog base cmd kind
    local -a run
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    prog=${COMP_WORDS[0]}
    base=${prog##*/}

    # --opt=value (bash splits at "=" by default, or the word may hold both)
    if [[ $cur == "=" && $prev == -* ]]; then
        cur=
    elif [[ $prev == "=" ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    elif [[ $cur == --*=* ]]; then
        prev=${cur%%=*}
        cur=${cur#*=}
    fi

    if [[ $base == telem-?* ]]; then
        cmd=${base#telem-}
        run=("$prog")
    else
        if ((COMP_CWORD == 1)); then
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W '--help --version --list-commands' -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$(_telem_run "$prog" --list-commands) help" -- "$cur"))
            fi
            return 0
        fi
        cmd=${COMP_WORDS[1]}
        if [[ $cmd == help ]]; then
            ((COMP_CWORD == 2)) &&
                COMPREPLY=($(compgen -W "$(_telem_run "$prog" --list-commands)" -- "$cur"))
            return 0
        fi
        [[ $cmd == -* ]] && return 0
        run=("$prog" "$cmd")
    fi

    # a URL typed after --listen: readline splits words at ":" (COMP_WORDBREAKS), so
    # rejoin "tcp" ":" "//127.0.0.1" ":" into one word to see the option before it
    local i=$COMP_CWORD url=$cur
    if [[ $COMP_WORDBREAKS == *:* ]]; then
        while ((i > 1)) && [[ ${COMP_WORDS[i]} == : || ${COMP_WORDS[i - 1]} == : ]]; do
            ((i--))
        done
        if ((i < COMP_CWORD)) && [[ ${COMP_WORDS[i - 1]} == --listen ]]; then
            prev=--listen
            url=$(printf '%s' "${COMP_WORDS[@]:i:COMP_CWORD-i+1}")
        fi
    fi

    # the value of the option before the cursor
    if [[ $prev == -* ]]; then
        case $cmd:$prev in
        *:-f | *:--format)
            COMPREPLY=($(compgen -W 'ndjson csv tokens influx graphite prom' -- "$cur"))
            return 0
            ;;
        *:--time-unit)
            COMPREPLY=($(compgen -W 'auto s ms us ns' -- "$cur"))
            return 0
            ;;
        *:--time-unit-out | gen:--unit)
            COMPREPLY=($(compgen -W 's ms us ns' -- "$cur"))
            return 0
            ;;
        window:--sketch)
            COMPREPLY=($(compgen -W 'tdigest ddsketch' -- "$cur"))
            return 0
            ;;
        window:--fill)
            COMPREPLY=($(compgen -W 'last zero' -- "$cur"))
            return 0
            ;;
        ingest:--listen)
            # the start of each URL form, without a space after it; readline replaces
            # only what follows the last ":" typed
            compopt -o nospace 2>/dev/null
            COMPREPLY=($(compgen -W 'tcp://127.0.0.1: udp://127.0.0.1: unix:' -- "$url"))
            if [[ $url == *:* ]]; then
                COMPREPLY=("${COMPREPLY[@]#"${url%"${url##*:}"}"}")
                [[ ${COMPREPLY[*]} ]] || COMPREPLY=()
            fi
            return 0
            ;;
        esac
        kind=$(_telem_argkind "${run[@]}" "$prev")
        case $kind in
        "<file>")
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
            return 0
            ;;
        "<dir>")
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -d -- "$cur"))
            return 0
            ;;
        "<"*)
            return 0 # a value telem cannot guess
            ;;
        esac
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_telem_run "${run[@]}" --list-options)" -- "$cur"))
        return 0
    fi
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
    return 0
}

complete -F _telem telem
# the multi-call links, for the commands this telem has
_telem_links=$(command -v telem >/dev/null 2>&1 && telem --list-commands 2>/dev/null | sed 's/^/telem-/')
[[ -n $_telem_links ]] && complete -F _telem $_telem_links
unset _telem_links
