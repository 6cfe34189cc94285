#!/usr/bin/env bash
# bench/run.sh - time telem commands against their peers on the same generated data.
#
# Usage: bench/run.sh [--events N] [--runs R] [--telem PATH] [--only NAME[,NAME...]]
#                     [--out FILE] [--cpus LIST|all] [--slow SECONDS] [--data-dir DIR]
#                     [--rows FILE] [--list]
#
# The rows (what is timed against what) are in bench/rows.sh, one line each.
# See bench/README.md for what is measured and the rules. Never used by the tests.
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)

usage() {
    cat <<'EOF'
usage: bench/run.sh [--events N] [--runs R] [--telem PATH] [--only NAME[,NAME...]]
                    [--out FILE] [--cpus LIST|all] [--slow SECONDS] [--data-dir DIR]
                    [--rows FILE] [--list]

  --events N      events to generate (telem gen -n N --devices 100000 --seed 1); default 1000000
  --runs R        timed runs per command (after one untimed check/warm-up run); default 5
  --telem PATH    the telem binary; default $TELEM, else ../telem beside bench/, else telem on PATH
  --only NAMES    run only these rows (comma-separated names from bench/rows.sh)
  --out FILE      also write the Markdown report to FILE
  --cpus LIST     pin every command to these CPUs with taskset (default 0: one core);
                  "all" runs unpinned
  --slow S        a command whose check run takes more than S seconds (default 20) gets
                  at most 3 timed runs
  --data-dir DIR  where generated data is cached (default bench/.data)
  --rows FILE     read the rows from FILE instead of bench/rows.sh
  --list          print the rows and exit
EOF
}

die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 2; }
say() { printf '%s\n' "$*" >&2; }

EVENTS=1000000
RUNS=5
DEVICES=100000
SEED=1
TELEM_ARG=
ONLY=
OUT=
CPUS=0
SLOW=20
SLOW_RUNS=3
DATA_DIR=${TELEM_BENCH_DATA:-$here/.data}
LIST=0
ROWS=$here/rows.sh
ARGV="$*"

while [ $# -gt 0 ]; do
    case $1 in
        --events) [ $# -ge 2 ] || die "--events needs a value"; EVENTS=$2; shift 2 ;;
        --events=*) EVENTS=${1#*=}; shift ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --telem) [ $# -ge 2 ] || die "--telem needs a value"; TELEM_ARG=$2; shift 2 ;;
        --telem=*) TELEM_ARG=${1#*=}; shift ;;
        --only) [ $# -ge 2 ] || die "--only needs a value"; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --cpus) [ $# -ge 2 ] || die "--cpus needs a value"; CPUS=$2; shift 2 ;;
        --cpus=*) CPUS=${1#*=}; shift ;;
        --slow) [ $# -ge 2 ] || die "--slow needs a value"; SLOW=$2; shift 2 ;;
        --slow=*) SLOW=${1#*=}; shift ;;
        --data-dir) [ $# -ge 2 ] || die "--data-dir needs a value"; DATA_DIR=$2; shift 2 ;;
        --data-dir=*) DATA_DIR=${1#*=}; shift ;;
        --rows) [ $# -ge 2 ] || die "--rows needs a value"; ROWS=$2; shift 2 ;;
        --rows=*) ROWS=${1#*=}; shift ;;
        --list) LIST=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case $RUNS in ''|*[!0-9]*|0) die "--runs must be a positive integer" ;; esac
case $SLOW in ''|*[!0-9.]*) die "--slow must be a number of seconds" ;; esac
case $EVENTS in ''|*[!0-9kKmMgG]*) die "--events must be a count like 1000000 or 5M" ;; esac

# ---- the rows ---------------------------------------------------------------------------
# row NAME [--check=MODE] [--note=TEXT] TELEM_COMMAND [PEER_COMMAND...]
# --floor=CMD (repeatable) adds CMD as a lower bound (a cat-like command that reads and
# writes the events without computing anything): it comes after the peers, is checked to
# write as many lines as the input whatever the row's check, and is marked in the report.
ROW_NAME=() ROW_CHECK=() ROW_NOTE=() ROW_CMDS=() ROW_NFLOOR=()
US=$'\037'
row() {
    [ $# -ge 2 ] || die "rows.sh: row needs a name and a telem command: row $*"
    local name=$1 check=none note='' cmds='' c floors=()
    shift
    while [ $# -gt 0 ]; do
        case $1 in
            --check=*) check=${1#*=}; shift ;;
            --note=*) note=${1#*=}; shift ;;
            --floor=*) floors+=("${1#*=}"); shift ;;
            --*) die "rows.sh: row $name: unknown option $1" ;;
            *) break ;;
        esac
    done
    case $check in same|lines|telemlines|telemsame|none) ;; *) die "rows.sh: row $name: unknown check $check" ;; esac
    [ $# -ge 1 ] || die "rows.sh: row $name has no telem command"
    for c in "$@" "${floors[@]+"${floors[@]}"}"; do cmds=${cmds:+$cmds$US}$c; done
    ROW_NAME+=("$name") ROW_CHECK+=("$check") ROW_NOTE+=("$note") ROW_CMDS+=("$cmds")
    ROW_NFLOOR+=("${#floors[@]}")
}

# ---- tools ------------------------------------------------------------------------------
if [ -n "$TELEM_ARG" ]; then TELEM=$TELEM_ARG
elif [ -n "${TELEM:-}" ]; then :
elif [ -x "$here/../telem" ]; then TELEM=$here/../telem
else TELEM=$(command -v telem || true)
fi
[ -n "$TELEM" ] || die "no telem binary: give --telem PATH"
case $TELEM in */*) ;; *) TELEM=$(command -v "$TELEM" || printf '%s' "$TELEM") ;; esac
case $TELEM in /*) ;; */*) TELEM=$(cd "$(dirname "$TELEM")" && pwd)/$(basename "$TELEM") ;; esac
[ -x "$TELEM" ] || [ "$LIST" = 1 ] || die "not an executable: $TELEM"
GEN="-n $EVENTS --devices $DEVICES --seed $SEED"

# Miller: one JSON object per line. Miller 6 has --ojsonl; Miller 5 writes one record per
# line with plain --ojson. Miller 6's plain --ojson prints one pretty-printed array instead.
MLR_JSONL=--ojsonl
MLR_NOTE=
if command -v mlr >/dev/null 2>&1; then
    if mlr -n --ojsonl cat >/dev/null 2>&1; then
        MLR_JSONL=--ojsonl
    elif mlr -n --ojson --no-jvstack --no-jlistwrap cat >/dev/null 2>&1; then
        MLR_JSONL="--ojson --no-jvstack --no-jlistwrap"
    else
        MLR_JSONL=--ojson
    fi
    MLR_NOTE="mlr output flag: $MLR_JSONL (JSON Lines, one record per line)"
fi
export TELEM GEN MLR_JSONL

[ -r "$ROWS" ] || die "cannot read rows file $ROWS"
# shellcheck source=bench/rows.sh
. "$ROWS"

# A command as shown in the report: variables replaced by what they stand for.
# shellcheck disable=SC2016 # the single-quoted '$TELEM' etc. are meant literally
show() {
    local s=$1
    s=${s//"$TELEM"/telem}
    s=${s//'${TELEM}'/telem}
    s=${s//'$TELEM'/telem}
    s=${s//'${GEN}'/$GEN}
    s=${s//'$GEN'/$GEN}
    s=${s//'${MLR_JSONL}'/$MLR_JSONL}
    s=${s//'$MLR_JSONL'/$MLR_JSONL}
    printf '%s' "$s"
}

if [ "$LIST" = 1 ]; then
    for i in "${!ROW_NAME[@]}"; do
        printf '%s (check: %s)\n' "${ROW_NAME[$i]}" "${ROW_CHECK[$i]}"
        IFS=$US read -r -a cmds <<<"${ROW_CMDS[$i]}"
        for c in "${cmds[@]}"; do printf '    %s\n' "$(show "$c")"; done
    done
    exit 0
fi

selected() {
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *,"$1",*) return 0 ;; esac
    return 1
}
if [ -n "$ONLY" ]; then
    IFS=, read -r -a wanted <<<"$ONLY"
    for w in "${wanted[@]}"; do
        found=0
        for n in "${ROW_NAME[@]}"; do [ "$n" = "$w" ] && found=1; done
        [ $found = 1 ] || die "--only: no row named '$w' in bench/rows.sh (try --list)"
    done
fi

PIN=()
PIN_NOTE="unpinned (all $(nproc 2>/dev/null || echo '?') CPUs)"
if [ "$CPUS" != all ]; then
    if command -v taskset >/dev/null 2>&1 && taskset -c "$CPUS" true 2>/dev/null; then
        PIN=(taskset -c "$CPUS")
        PIN_NOTE="pinned with taskset -c $CPUS"
    else
        PIN_NOTE="unpinned: taskset missing or CPUs '$CPUS' not usable"
        say "warning: $PIN_NOTE"
    fi
fi

TIMEBIN=
if [ -x /usr/bin/time ] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
    TIMEBIN=/usr/bin/time
fi
[ -n "$TIMEBIN" ] || say "warning: GNU time (/usr/bin/time) not found: peak RSS is shown as n/a (apt-get install time)"

now_us() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        local t=$EPOCHREALTIME
        printf '%s' "${t/./}"
    else
        printf '%s' $(( $(date +%s%N) / 1000 ))
    fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/telem-bench.XXXXXX") || die "mktemp failed"
partial=
trap 'rm -rf "$tmp" ${partial:+"$partial"}' EXIT
trap 'exit 130' INT TERM

# ---- data -------------------------------------------------------------------------------
mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"
DATA=$DATA_DIR/events-n$EVENTS-d$DEVICES-s$SEED.ndjson
meta="telem gen $GEN | $("$TELEM" --version 2>&1 | head -n1) | $(cksum <"$TELEM")"
if [ -f "$DATA" ] && [ -f "$DATA.meta" ] && [ "$(cat "$DATA.meta")" = "$meta" ]; then
    say "data: $DATA (cached)"
else
    say "data: generating $DATA with telem gen $GEN"
    partial=$DATA.tmp
    rm -f "$DATA.meta"
    # shellcheck disable=SC2086 # $GEN is a list of options
    "$TELEM" gen $GEN >"$partial" || die "telem gen failed"
    mv "$partial" "$DATA"
    partial=
    printf '%s\n' "$meta" >"$DATA.meta"
fi
export DATA
NLINES=$(wc -l <"$DATA" | tr -d ' ')
NBYTES=$(wc -c <"$DATA" | tr -d ' ')
[ "$NLINES" -gt 0 ] || die "no events in $DATA"

# Inputs for the format rows, derived from the same events and cached beside DATA:
# CSV with a header row, and seed 000 tokens (deviceId-cpu-cpuUsage, one per line).
DATA_CSV=$DATA.csv
DATA_TOKENS=$DATA.tokens
if [ ! -s "$DATA_CSV" ] || [ "$DATA_CSV" -ot "$DATA" ]; then
    { echo deviceId,timestamp,cpuUsage,memUsage,temperature,eventId
      sed -E 's/^\{"deviceId":"([^"]*)","timestamp":([^,]*),"cpuUsage":([^,]*),"memUsage":([^,]*),"temperature":([^,]*),"eventId":([^}]*)\}$/\1,\2,\3,\4,\5,\6/' "$DATA"
    } >"$DATA_CSV.tmp" && mv "$DATA_CSV.tmp" "$DATA_CSV"
fi
if [ ! -s "$DATA_TOKENS" ] || [ "$DATA_TOKENS" -ot "$DATA" ]; then
    sed -E 's/^\{"deviceId":"([^"]*)","timestamp":[^,]*,"cpuUsage":([^,]*),.*$/\1-cpu-\2/' "$DATA" \
        >"$DATA_TOKENS.tmp" && mv "$DATA_TOKENS.tmp" "$DATA_TOKENS"
fi
DATA_TOKENS_JQ=$DATA_DIR/tokens.jq
printf '%s\n' 'capture("^(?<key>.*)-(?<metric>[^-]*)-(?<value>[^-]*)$") | .value |= tonumber' >"$DATA_TOKENS_JQ"
export DATA_CSV DATA_TOKENS DATA_TOKENS_JQ

# The enrich row's reference table: every device of the data ($DEVICES rows, id make
# model site), as CSV (telem, mlr) and as one JSON object keyed by id (jq --slurpfile).
DATA_TABLE=$DATA_DIR/devices-d$DEVICES.csv
DATA_TABLE_JSON=$DATA_DIR/devices-d$DEVICES.json
if [ ! -s "$DATA_TABLE" ] || [ ! -s "$DATA_TABLE_JSON" ]; then
    awk -v n="$DEVICES" 'BEGIN { print "id,make,model,site";
        for (i = 0; i < n; i++) printf "device-%d,make-%d,model-%d,site-%d\n", i, i % 37, i % 101, i % 13 }' \
        >"$DATA_TABLE.tmp" && mv "$DATA_TABLE.tmp" "$DATA_TABLE"
    awk -F, 'NR == 1 { printf "{"; next }
        { printf "%s\"%s\":{\"make\":\"%s\",\"model\":\"%s\",\"site\":\"%s\"}", (NR > 2 ? "," : ""), $1, $2, $3, $4 }
        END { print "}" }' "$DATA_TABLE" >"$DATA_TABLE_JSON.tmp" && mv "$DATA_TABLE_JSON.tmp" "$DATA_TABLE_JSON"
fi
BENCH_DIR=$here
export DATA_TABLE DATA_TABLE_JSON BENCH_DIR

# ---- measuring --------------------------------------------------------------------------
# Every command runs as `sh -c CMD <DATA >/dev/null`, pinned as chosen, under GNU time.
# run_once CMD SINK: sets T_US (wall microseconds), T_RSS (KiB or empty),
# T_CPU (user+sys CPU microseconds of all its processes, or empty), T_RC.
# SINK is "null" (timed runs) or a check: "cmp" (output == DATA) or "lines" (count lines).
run_once() {
    local cmd=$1 sink=$2 t0 t1
    : >"$tmp/rss"; : >"$tmp/err"; : >"$tmp/check"
    local wrap=("${PIN[@]}")
    [ -n "$TIMEBIN" ] && wrap+=("$TIMEBIN" -f '%M %U %S' -o "$tmp/rss")
    t0=$(now_us)
    case $sink in
        null)
            "${wrap[@]}" sh -c "$cmd" <"$DATA" >/dev/null 2>"$tmp/err"
            T_RC=$? ;;
        cmp)
            set -o pipefail
            "${wrap[@]}" sh -c "$cmd" <"$DATA" 2>"$tmp/err" | cmp - "$DATA" >"$tmp/check" 2>&1
            local st=("${PIPESTATUS[@]}")
            set +o pipefail
            T_RC=${st[0]}; T_CHECK=${st[1]} ;;
        lines)
            "${wrap[@]}" sh -c "$cmd" <"$DATA" 2>"$tmp/err" | wc -l | tr -d ' ' >"$tmp/check"
            T_RC=${PIPESTATUS[0]} ;;
        save) # telem's output, kept for the peers' telemsame check
            "${wrap[@]}" sh -c "$cmd" <"$DATA" >"$tmp/telem.out" 2>"$tmp/err"
            T_RC=$?
            wc -l <"$tmp/telem.out" | tr -d ' ' >"$tmp/check" ;;
        cmpsaved)
            set -o pipefail
            "${wrap[@]}" sh -c "$cmd" <"$DATA" 2>"$tmp/err" | cmp - "$tmp/telem.out" >"$tmp/check" 2>&1
            local st2=("${PIPESTATUS[@]}")
            set +o pipefail
            T_RC=${st2[0]}; T_CHECK=${st2[1]} ;;
    esac
    t1=$(now_us)
    T_US=$((t1 - t0))
    T_RSS='' T_CPU=''
    if [ -n "$TIMEBIN" ]; then
        local m u sy
        read -r m u sy < <(tail -n1 "$tmp/rss")
        case $m in ''|*[!0-9]*) ;; *) T_RSS=$m ;; esac
        case $u$sy in ''|*[!0-9.]*) ;; *) T_CPU=$(awk -v u="$u" -v s="$sy" 'BEGIN { printf "%d", (u + s) * 1e6 }') ;; esac
    fi
    return 0
}

# ": first line of the command's stderr", if it wrote any
errline() { local l; l=$(head -n1 "$tmp/err" | cut -c1-80); [ -n "$l" ] && printf ': %s' "$l"; return 0; }

# the programs a command needs, other than telem: first word of each pipeline segment
missing_tool() {
    local seg w
    IFS='|' read -r -a segs <<<"$1"
    for seg in "${segs[@]}"; do
        read -r w _ <<<"$seg"
        [ -z "$w" ] && continue
        case $w in \$*|"$TELEM"|*=*|\(*|\{*) continue ;; esac
        command -v "$w" >/dev/null 2>&1 || { printf '%s' "$w"; return 0; }
    done
    return 1
}

fmt_rate() { awk -v n="$NLINES" -v us="$1" 'BEGIN { r = n / (us / 1e6);
    if (r >= 1e6) printf "%.2f M", r / 1e6; else printf "%.0f k", r / 1e3 }'; }
fmt_s() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1e6 }'; }
fmt_mib() { [ -z "$1" ] && { printf 'n/a'; return; }; awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%d", v[(NR + 1) / 2]; else printf "%d", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { tr ' ' '\n' | grep . | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END {
    printf "%.3f–%.3f", lo / 1e6, hi / 1e6 }'; }
ratio() { # telem_us peer_us -> "12.3x faster" / "2.0x slower"
    awk -v t="$1" -v p="$2" 'BEGIN { r = p / t;
        if (r >= 1) { f = r; w = "faster" } else { f = 1 / r; w = "slower" }
        if (f >= 10) printf "%.0fx %s", f, w; else printf "%.1fx %s", f, w }'; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown; }
LOAD_START=$(loadavg)
case $LOAD_START in
    [0-9]*) awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l >= 0.5) }' &&
        say "warning: load average $LOAD_START: the machine is not idle, the numbers will be noisy" ;;
esac

STATUS=0
TABLE=()
NOTES=()
SLOWED=0

for i in "${!ROW_NAME[@]}"; do
    name=${ROW_NAME[$i]}
    selected "$name" || continue
    check=${ROW_CHECK[$i]}
    IFS=$US read -r -a cmds <<<"${ROW_CMDS[$i]}"
    ncmd=${#cmds[@]}
    say ""
    say "== $name (check: $check)"
    [ -n "${ROW_NOTE[$i]}" ] && NOTES+=("$name: ${ROW_NOTE[$i]}")

    state=() runs=() times=() rss=() why=() telem_lines=
    nfloor=${ROW_NFLOOR[$i]}
    for ((c = 0; c < ncmd; c++)); do
        isfloor=0
        [ "$c" -ge $((ncmd - nfloor)) ] && isfloor=1
        cmd=${cmds[$c]}
        state[c]=ok runs[c]=$RUNS times[c]='' cpus[c]='' rss[c]='' why[c]=''
        if [ "$c" -gt 0 ] && tool=$(missing_tool "$cmd"); then
            state[c]=na why[c]="$tool not installed"
            say "   $(show "$cmd"): n/a ($tool not installed)"
            continue
        fi
        # the check run: also the warm-up, never timed into the medians
        sink=null
        case $check in
            same) if [ "$c" = 0 ]; then sink='cmp'; else sink='lines'; fi ;;
            lines|telemlines) sink=lines ;;
            telemsame) if [ "$c" = 0 ]; then sink=save; else sink=cmpsaved; fi ;;
        esac
        [ "$isfloor" = 1 ] && [ "$check" != none ] && sink=lines
        T_CHECK=0
        run_once "$cmd" "$sink"
        # a command killed by SIGPIPE (141) because cmp stopped at a difference is a
        # failed check, not a failed command
        if [ "$T_RC" != 0 ] && ! { { [ "$sink" = cmp ] || [ "$sink" = cmpsaved ]; } && [ "$T_CHECK" != 0 ] && [ "$T_RC" = 141 ]; }; then
            state[c]=na why[c]="exit $T_RC$(errline)"
        elif [ "$sink" = cmp ] && [ "$T_CHECK" != 0 ]; then
            state[c]=na why[c]="output differs from the input: $(head -n1 "$tmp/check" | cut -c1-80)"
        elif [ "$sink" = cmpsaved ] && [ "$T_CHECK" != 0 ]; then
            state[c]=na why[c]="output differs from telem's: $(head -n1 "$tmp/check" | cut -c1-80)"
        elif [ "$sink" = save ] && [ "$(cat "$tmp/check")" = 0 ]; then
            state[c]=na why[c]="wrote no output (nothing to compare the peers with)"
        elif [ "$sink" = lines ]; then
            got=$(cat "$tmp/check")
            want=$NLINES
            if [ "$check" = telemlines ] && [ "$c" -gt 0 ] && [ "$isfloor" = 0 ]; then want=$telem_lines; fi
            if [ "$check" = telemlines ] && [ "$c" = 0 ]; then telem_lines=$got; want=$got; fi
            if [ "$got" != "$want" ]; then
                state[c]=na why[c]="wrote $got lines, expected $want"
            fi
        fi
        if [ "${state[c]}" != ok ]; then
            say "   $(show "$cmd"): n/a (${why[c]})"
            [ "$c" = 0 ] && STATUS=1
            continue
        fi
        if awk -v us="$T_US" -v s="$SLOW" 'BEGIN { exit !(us / 1e6 > s) }' && [ "$RUNS" -gt "$SLOW_RUNS" ]; then
            runs[c]=$SLOW_RUNS
            SLOWED=1
        fi
        say "   $(show "$cmd"): check ok ($(fmt_s "$T_US") s), ${runs[c]} timed runs"
    done

    # timed runs, round-robin over the commands so that drift hits them all alike
    for ((r = 1; r <= RUNS; r++)); do
        for ((c = 0; c < ncmd; c++)); do
            [ "${state[c]}" = ok ] && [ "$r" -le "${runs[c]}" ] || continue
            run_once "${cmds[$c]}" null
            if [ "$T_RC" != 0 ]; then
                state[c]=na why[c]="exit $T_RC in run $r$(errline)"
                [ "$c" = 0 ] && STATUS=1
                continue
            fi
            times[c]="${times[c]} $T_US"
            [ -n "$T_CPU" ] && cpus[c]="${cpus[c]} $T_CPU"
            if [ -n "$T_RSS" ] && { [ -z "${rss[c]}" ] || [ "$T_RSS" -gt "${rss[c]}" ]; }; then rss[c]=$T_RSS; fi
            say "   run $r: $(show "${cmds[$c]}"): $(fmt_s "$T_US") s"
        done
    done

    tmed=
    [ "${state[0]}" = ok ] && tmed=$(printf '%s' "${times[0]}" | median)
    for ((c = 0; c < ncmd; c++)); do
        label=$name
        [ "$c" -gt 0 ] && label=
        shown=$(show "${cmds[$c]}")
        [ "$c" -ge $((ncmd - ${ROW_NFLOOR[$i]})) ] && label="(lower bound)"
        shown=${shown//|/\\|}
        if [ "${state[c]}" != ok ]; then
            TABLE+=("| $label | \`$shown\` | n/a | n/a | n/a | n/a | n/a | n/a | n/a: ${why[c]//|/\\|} |")
            continue
        fi
        med=$(printf '%s' "${times[c]}" | median)
        mm=$(printf '%s' "${times[c]}" | minmax)
        cpu_s=n/a
        [ -n "${cpus[c]}" ] && cpu_s=$(printf '%s' "${cpus[c]}" | median | awk '{ printf "%.2f", $1 / 1e6 }')
        nr=${runs[c]}
        [ "$nr" -lt "$RUNS" ] && nr="$nr*"
        if [ "$c" = 0 ]; then
            vs="—"
        elif [ -n "$tmed" ]; then
            vs="telem $(ratio "$tmed" "$med")"
        else
            vs="n/a"
        fi
        TABLE+=("| $label | \`$shown\` | $nr | $(fmt_s "$med") | $mm | $cpu_s | $(fmt_rate "$med") | $(fmt_mib "${rss[c]}") | $vs |")
    done
done

# ---- report -----------------------------------------------------------------------------
LOAD_END=$(loadavg)
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
report() {
    echo "### telem benchmark"
    echo
    echo "- data: \`telem gen $GEN\`: $NLINES events, $NBYTES bytes, same file for every command (stdin)"
    echo "- each command: \`sh -c CMD < data > /dev/null\`, $PIN_NOTE; one untimed check run, then $RUNS timed runs, round-robin; median wall time"
    echo "- machine: $(nproc 2>/dev/null) CPUs, ${cpu:-unknown CPU}; telem: $("$TELEM" --version 2>&1 | head -n1)"
    echo "- load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END"
    echo "- command line: \`bench/run.sh${ARGV:+ $ARGV}\`"
    echo
    echo "| row | command | runs | median s | min–max s | CPU s | events/s | peak RSS | vs telem |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${TABLE[@]}"
    echo
    [ "$SLOWED" = 1 ] && echo "\\* slower than $SLOW s in its check run: $SLOW_RUNS timed runs instead of $RUNS."
    [ -n "$MLR_NOTE" ] && echo "- $MLR_NOTE"
    [ -z "$TIMEBIN" ] && echo "- CPU s and peak RSS: n/a, GNU time (/usr/bin/time) is not installed"
    [ -n "$TIMEBIN" ] && echo "- CPU s: median user+sys time of all the command's processes (GNU time %U+%S, 10 ms resolution); peak RSS: GNU time %M, largest single process of the command, highest over the runs"
    echo "- events/s: $NLINES events / median wall time; \"vs telem\": how much faster telem's median is than this command's"
    local n
    for n in "${NOTES[@]+"${NOTES[@]}"}"; do echo "- $n"; done
}
say ""
report
if [ -n "$OUT" ]; then
    report >"$OUT" || die "cannot write $OUT"
    say "report written to $OUT"
fi
exit $STATUS
