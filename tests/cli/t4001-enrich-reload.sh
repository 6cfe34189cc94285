#!/bin/sh
# t4001: telem enrich reads a changed table again without losing an event:
#   (1) a table replaced (rename) while a million events flow: every event is enriched
#       from the old or the new table, in that order, and none is lost or doubled;
#   (2) SIGHUP with a broken table keeps the old one and says why; SIGHUP with a good one
#       swaps it in for the events that follow;
#   (3) killed with SIGKILL and restarted from --state: the output and --unmatched of one
#       run, each line once;
#   (4) a zstd-compressed table.
. "$top_srcdir/tests/cli/lib.sh"

test_expect_success 'setup: two versions of a 100-row table and a million events' '
    awk "BEGIN { print \"id,ver,site\"; for (i = 0; i < 100; i++) printf \"d%d,1,s%d\n\", i, i % 7 }" > v1.csv &&
    awk "BEGIN { print \"id,ver,site\"; for (i = 0; i < 100; i++) printf \"d%d,2,s%d\n\", i, i % 7 }" > v2.csv &&
    awk "BEGIN { for (i = 0; i < 1000000; i++) printf \"{\\\"seq\\\":%d,\\\"id\\\":\\\"d%d\\\"}\n\", i, i % 100 }" > ev &&
    head -n 500000 ev > ev1 && tail -n 500000 ev > ev2 &&
    test "$(wc -l < ev2)" = 500000
'

test_expect_success '(1) table replaced under load: old then new, nothing lost' '
    cp v1.csv tab.csv &&
    mkfifo in || exit 1
    "$TELEM" enrich --table tab.csv --on id --add ver --reload-interval 0 --stats < in > out 2> err &
    pid=$!
    exec 3> in
    cat ev1 >&3 &&
    wait_for out "\"seq\":499999," 300 &&
    cp v2.csv tab.new && mv tab.new tab.csv &&
    cat ev2 >&3 &&
    exec 3>&- &&
    wait $pid &&
    test "$(wc -l < out)" = 1000000 &&
    sed "s/,\"id\".*//; s/{\"seq\"://" out > seqs &&
    awk "{ if (\$1 != NR - 1) { print \"line \" NR \": seq \" \$1; exit 1 } }" seqs &&
    sed "s/.*\"ver\"://; s/}\$//" out | uniq -c | awk "{ print \$2 }" > vers &&
    printf "1\n2\n" > want && test_cmp want vers &&
    head -n 500000 out | grep -c "\"ver\":1}" > n1 && echo 500000 > want && test_cmp want n1 &&
    grep -q "\"reloads\":1," err &&
    grep -q "^telem enrich: tab.csv: reloaded, 100 rows\$" err
'

test_expect_success '(2) SIGHUP: a broken table is refused, a good one swapped in' '
    cp v1.csv tab.csv &&
    rm -f in && mkfifo in || exit 1
    "$TELEM" enrich --table tab.csv --on id --add ver --no-reload < in > out2 2> err2 &
    pid=$!
    exec 3> in
    echo "{\"id\":\"d1\",\"n\":1}" >&3 &&
    wait_for out2 "\"n\":1" &&
    printf "id,ver\nd1,3,extra\n" > tab.csv &&
    kill -HUP $pid &&
    wait_for err2 "keeping the old table" &&
    echo "{\"id\":\"d1\",\"n\":2}" >&3 &&
    wait_for out2 "\"n\":2" &&
    printf "id,ver,site\nd1,4,x\n" > tab.csv &&
    kill -HUP $pid &&
    wait_for err2 "reloaded" &&
    echo "{\"id\":\"d1\",\"n\":3}" >&3 &&
    exec 3>&- &&
    wait $pid &&
    cat > want <<-\EOT &&
	{"id":"d1","n":1,"ver":1}
	{"id":"d1","n":2,"ver":1}
	{"id":"d1","n":3,"ver":4}
	EOT
    test_cmp want out2 &&
    cat > want <<-\EOT &&
	telem enrich: tab.csv changed but does not load, keeping the old table: tab.csv:2: record has 3 fields, the header 2
	telem enrich: tab.csv: reloaded, 1 row
	EOT
    test_cmp want err2
'

test_expect_success '(3) SIGKILL and restart from --state: the output and --unmatched of one run' '
    cp v1.csv tab.csv &&
    awk "BEGIN { for (i = 0; i < 200000; i++) printf \"{\\\"seq\\\":%d,\\\"id\\\":\\\"d%d\\\"}\n\", i, i % 150 }" > ev3 &&
    E="--table tab.csv --on id --add ver --unmatched" &&
    "$TELEM" enrich $E un.one ev3 > one &&
    rm -f sk un.sk out.sk &&
    i=0 &&
    while [ $i -lt 6 ]; do
        i=$((i + 1))
        "$TELEM" enrich $E un.sk --state sk --checkpoint-interval 1ms -o out.sk ev3 &
        pid=$! &&
        sleep 0.0$(( (i * 41) % 9 + 1 )) &&
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null;
        true
    done &&
    "$TELEM" enrich $E un.sk --state sk -o out.sk ev3 &&
    test_cmp one out.sk &&
    test_cmp un.one un.sk
'

test_expect_success '(4) a zstd-compressed table is read like a plain one' '
    printf "id,make,note\nd1,Acme,\"two\nlines\"\r\nd2,B,x\n" > z.csv &&
    zstd -q -f z.csv -o z.csv.zst &&
    printf "{\"id\":\"d1\"}\n{\"id\":\"d2\"}\n" > zev &&
    "$TELEM" enrich --table z.csv.zst --on id zev > zout &&
    cat > want <<-\EOT &&
	{"id":"d1","make":"Acme","note":"two\nlines"}
	{"id":"d2","make":"B","note":"x"}
	EOT
    test_cmp want zout
'

test_done
