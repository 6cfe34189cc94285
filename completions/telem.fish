# fish completion for telem.
#
# Thin on purpose: the commands come from `telem --list-commands` and the options from
# `telem <command> --list-options`, and which options take a <file> (or a <dir>) from
# the option lines of `telem <command> --help`, so a new command or option needs no
# change here. Only the fixed values of a few options are spelled out.

# __telem_argkind CMD... OPTION: prints the placeholder OPTION takes ("<file>", "<dur>"),
# or nothing if it takes no value.
function __telem_argkind
    set -l opt $argv[-1]
    $argv[1..-2] --help 2>/dev/null | awk -v opt="$opt" '
        $1 ~ /^-[^-],$/ { s = substr($1, 1, 2); l = $2; a = $3 }
        $1 ~ /^--/      { s = ""; l = $1; a = $2 }
        $1 !~ /^-/      { next }
        (opt == s || opt == l) && a ~ /^</ { print a; exit }'
end

# Prints the candidates for the token under the cursor (fish filters them by prefix).
function __telem_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l prog $words[1]
    set -l base (string replace -r '.*/' '' -- $prog)
    set -l cmd
    set -l run
    if string match -qr '^telem-.' -- $base
        set cmd (string replace 'telem-' '' -- $base)
        set run $prog
    else
        if test (count $words) -eq 1
            if string match -q -- '-*' $cur
                printf '%s\n' --help --version --list-commands
            else
                $prog --list-commands 2>/dev/null
                echo help
            end
            return
        end
        set cmd $words[2]
        if test "$cmd" = help
            test (count $words) -eq 2; and $prog --list-commands 2>/dev/null
            return
        end
        string match -q -- '-*' $cmd; and return
        set run $prog $cmd
    end

    # --opt=value
    set -l prev $words[-1]
    set -l pre ''
    if string match -qr -- '^--[^=]+=' $cur
        set prev (string replace -r -- '=.*' '' $cur)
        set pre "$prev="
        set cur (string replace -r -- '^[^=]*=' '' $cur)
    else if test (count $words) -le (count $run)
        set prev ''
    end

    # the value of the option before the cursor
    if string match -q -- '-*' $prev
        switch "$cmd:$prev"
            case '*:-f' '*:--format'
                printf "$pre%s\n" ndjson csv tokens influx graphite prom
                return
            case '*:--time-unit'
                printf "$pre%s\n" auto s ms us ns
                return
            case '*:--time-unit-out' 'gen:--unit'
                printf "$pre%s\n" s ms us ns
                return
            case 'window:--sketch'
                printf "$pre%s\n" tdigest ddsketch
                return
            case 'window:--fill'
                printf "$pre%s\n" last zero
                return
            case 'ingest:--listen'
                # (fish adds no space after a candidate ending in ":")
                printf "$pre%s\n" tcp://127.0.0.1: udp://127.0.0.1: unix:
                return
        end
        switch (__telem_argkind $run $prev)
            case '<file>'
                __fish_complete_path $cur | string replace -r '^' -- $pre
                return
            case '<dir>'
                __fish_complete_directories $cur | string replace -r '^' -- $pre
                return
            case '<*'
                return
        end
    end

    if string match -q -- '-*' $cur
        $run --list-options 2>/dev/null
        return
    end
    __fish_complete_path $cur
end

complete -c telem -f -a '(__telem_complete)'
# the multi-call links, for the commands this telem has
for __telem_c in (command -q telem; and telem --list-commands 2>/dev/null)
    complete -c telem-$__telem_c -f -a '(__telem_complete)'
end
set -e __telem_c
