#!/bin/sh
# t4002: telem enrich --sqlite: a device registry in SQLite (created here with the sqlite3
# shell): lookups through one prepared statement, the cache's hits, misses, evictions and
# time to live, SIGHUP emptying the cache, several parameters, and the errors a user
# meets at start (no database, no table, a bad query, a wrong number of parameters).
. "$top_srcdir/tests/cli/lib.sh"

if ! command -v sqlite3 > /dev/null; then
    test_skip "sqlite3 shell not installed"
    test_done
fi

Q="select make, model, site, rating from devices where id = ?"

test_expect_success 'setup: a registry database' '
    sqlite3 reg.db "create table devices(id text primary key, make text, model text, site text, rating real);
        insert into devices values (\"d1\", \"Acme\", \"X1\", \"north\", 4.5), (\"d2\", \"Bolt\", null, \"south\", 3);
        create table racks(site text, rack integer, room text);
        insert into racks values (\"north\", 1, \"101\"), (\"north\", 2, \"102\");" &&
    cat > ev <<-\EOT
	{"deviceId":"d1","v":1}
	{"deviceId":"d2","v":2}
	{"deviceId":"d1","v":3}
	{"deviceId":"d9","v":4}
	{"deviceId":"d9","v":5}
	{"v":6}
	{"deviceId":"d\u0031","v":7}
	EOT
'

test_expect_success 'rows are added by column name; no row and no key are unmatched' '
    "$TELEM" enrich --sqlite reg.db --query "$Q" --on deviceId --stats ev > out 2> err &&
    cat > want <<-\EOT &&
	{"deviceId":"d1","v":1,"make":"Acme","model":"X1","site":"north","rating":4.5}
	{"deviceId":"d2","v":2,"make":"Bolt","model":null,"site":"south","rating":3.0}
	{"deviceId":"d1","v":3,"make":"Acme","model":"X1","site":"north","rating":4.5}
	{"deviceId":"d9","v":4}
	{"deviceId":"d9","v":5}
	{"v":6}
	{"deviceId":"d\u0031","v":7,"make":"Acme","model":"X1","site":"north","rating":4.5}
	EOT
    test_cmp want out &&
    grep -q "\"matched\":4,\"unmatched\":3,\"unmatched_keys\":1,\"without_key\":1," err &&
    grep -q "\"cache_hits\":3,\"cache_misses\":3,\"cache_expired\":0,\"cache_evictions\":0,\"cache_entries\":3,\"queries_without_row\":1" err
'

test_expect_success 'a cache of one entry evicts; --cache-size 0 queries every time' '
    "$TELEM" enrich --sqlite reg.db --query "$Q" --on deviceId --cache-size 1 --stats ev > out1 2> err &&
    test_cmp want out1 &&
    grep -q "\"cache_hits\":1,\"cache_misses\":5,\"cache_expired\":0,\"cache_evictions\":4," err &&
    "$TELEM" enrich --sqlite reg.db --query "$Q" --on deviceId --cache-size 0 --stats ev > out0 2> err &&
    test_cmp want out0 &&
    grep -q "\"cache_hits\":0,\"cache_misses\":6," err
'

test_expect_success 'several parameters, --into, --missing default' '
    printf "{\"s\":\"north\",\"r\":2}\n{\"s\":\"north\",\"r\":3}\n" |
    "$TELEM" enrich --sqlite reg.db --query "select room from racks where site = ? and rack = ?" \
        --on s,r --into rack --default "{\"room\":\"?\"}" > out &&
    cat > want <<-\EOT &&
	{"s":"north","r":2,"rack":{"room":"102"}}
	{"s":"north","r":3,"rack":{"room":"?"}}
	EOT
    test_cmp want out
'

test_expect_success 'the cache time to live, and SIGHUP, read changed rows again' '
    mkfifo in || exit 1
    "$TELEM" enrich --sqlite reg.db --query "select make from devices where id = ?" --on id \
        --cache-ttl 50ms < in > out 2> err &
    pid=$!
    exec 3> in
    echo "{\"id\":\"d1\",\"n\":1}" >&3 &&
    wait_for out "\"n\":1" &&
    sqlite3 reg.db "update devices set make = \"Acme2\" where id = \"d1\"" &&
    sleep 0.2 &&
    echo "{\"id\":\"d1\",\"n\":2}" >&3 &&
    wait_for out "\"n\":2" &&
    exec 3>&- && wait $pid &&
    cat > want <<-\EOT &&
	{"id":"d1","n":1,"make":"Acme"}
	{"id":"d1","n":2,"make":"Acme2"}
	EOT
    test_cmp want out &&
    rm -f in && mkfifo in || exit 1
    "$TELEM" enrich --sqlite reg.db --query "select make from devices where id = ?" --on id \
        --cache-ttl 1h < in > out 2> err &
    pid=$!
    exec 3> in
    echo "{\"id\":\"d1\",\"n\":1}" >&3 &&
    wait_for out "\"n\":1" &&
    sqlite3 reg.db "update devices set make = \"Acme3\" where id = \"d1\"" &&
    echo "{\"id\":\"d1\",\"n\":2}" >&3 &&
    wait_for out "\"n\":2" &&
    kill -HUP $pid && wait_for err "cache emptied" &&
    echo "{\"id\":\"d1\",\"n\":3}" >&3 &&
    exec 3>&- && wait $pid &&
    cat > want <<-\EOT &&
	{"id":"d1","n":1,"make":"Acme2"}
	{"id":"d1","n":2,"make":"Acme2"}
	{"id":"d1","n":3,"make":"Acme3"}
	EOT
    test_cmp want out
'

test_expect_success 'errors at start: no database, no table, bad query, parameters, writes' '
    test_expect_code() { want=$1; shift; "$@"; test $? = "$want"; } &&
    test_expect_code 1 "$TELEM" enrich --sqlite nope.db --query "$Q" --on id < /dev/null 2> e1 &&
    echo "telem enrich: nope.db: unable to open database file" > want && test_cmp want e1 &&
    test ! -e nope.db &&
    test_expect_code 1 "$TELEM" enrich --sqlite reg.db --query "select make from nodev where id = ?" --on id < /dev/null 2> e2 &&
    echo "telem enrich: reg.db: --query: no such table: nodev" > want && test_cmp want e2 &&
    test_expect_code 1 "$TELEM" enrich --sqlite reg.db --query "selec make" --on id < /dev/null 2> e3 &&
    echo "telem enrich: reg.db: --query: near \"selec\": syntax error" > want && test_cmp want e3 &&
    test_expect_code 1 "$TELEM" enrich --sqlite reg.db --query "select make from devices where id = ? and site = ?" --on id < /dev/null 2> e4 &&
    echo "telem enrich: reg.db: --query takes 2 parameters, --on gives 1 key" > want && test_cmp want e4 &&
    test_expect_code 1 "$TELEM" enrich --sqlite reg.db --query "delete from devices where id = ?" --on id < /dev/null 2> e5 &&
    echo "telem enrich: reg.db: --query: only a read-only query (select) is allowed" > want && test_cmp want e5 &&
    test_expect_code 2 "$TELEM" enrich --sqlite reg.db --on id < /dev/null 2> e6 &&
    grep -q "^telem enrich: --sqlite needs --query <sql>$" e6
'

test_done
