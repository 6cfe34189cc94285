#!/bin/sh
# run.sh - build and run the JSON hot-path microbenchmark (outside automake).
# Usage: bench/micro/run.sh   (from anywhere; builds into ${TMPDIR:-/tmp}/telem-bench)
# Needs gcc, jansson; the simdjson row needs g++ and libsimdjson-dev (skipped otherwise).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${TMPDIR:-/tmp}/telem-bench
mkdir -p "$out"
lib="$top/src/lib"
# -iquote, not -I: src/lib has a time.h that must not shadow <time.h>
CFLAGS="-std=gnu11 -O2 -g -iquote $lib"
objs=""
for f in error buf jscan jwrite; do
    gcc $CFLAGS -c "$lib/$f.c" -o "$out/$f.o"
    objs="$objs $out/$f.o"
done
if [ -f /usr/include/simdjson.h ] && command -v g++ >/dev/null 2>&1; then
    g++ -std=c++17 -O2 -c "$here/bench_sj.cpp" -o "$out/bench_sj.o"
    gcc $CFLAGS -DHAVE_SIMDJSON -c "$here/bench.c" -o "$out/bench.o"
    g++ -o "$out/bench" "$out/bench.o" "$out/bench_sj.o" $objs -lsimdjson -ljansson -lm
else
    echo "simdjson.h not found: the simdjson row will be skipped" >&2
    gcc $CFLAGS -c "$here/bench.c" -o "$out/bench.o"
    gcc -o "$out/bench" "$out/bench.o" $objs -ljansson -lm
fi
"$out/bench"
