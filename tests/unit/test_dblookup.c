/* test_dblookup.c - SQLite lookups behind the LRU cache (lib/dblookup.c): fragments,
 * cached answers (rows and "no row"), LRU eviction order, the time to live (driven by
 * the caller's clock, so no test waits), type-tagged keys and errors at open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "dblookup.h"

static char db[64];

static int setup(void **state)
{
    sqlite3 *h;
    (void)state;
    snprintf(db, sizeof(db), "/tmp/test_dblookup.%d.db", (int)getpid());
    unlink(db);
    if (sqlite3_open(db, &h) != SQLITE_OK)
        return -1;
    int rc = sqlite3_exec(h,
                          "create table d(id text, n integer, make text, r real, b blob);"
                          "insert into d values ('a', 1, 'Acme', 1.5, x'ff');"
                          "insert into d values ('b', 2, null, 2.0, 'ok');"
                          "insert into d values ('17', 17, 'text17', 0.1, null);",
                          NULL, NULL, NULL);
    sqlite3_close(h);
    return rc == SQLITE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    unlink(db);
    return 0;
}

/* A scanned value over the JSON text s (a string with quotes, or a number). */
static struct tlm_jval val(const char *s)
{
    struct tlm_jval v = { TLM_JSTRING, s, strlen(s), 0 };
    if (s[0] != '"')
        v.type = strchr(s, '.') ? TLM_JREAL : TLM_JINT;
    return v;
}

static const char *look(struct tlm_dblookup *d, const char *key, int64_t now, int *rc)
{
    static char out[256];
    struct tlm_jval v = val(key);
    const char *f;
    size_t n;
    *rc = tlm_dblookup_find(d, &v, 1, now, &f, &n, NULL);
    if (*rc != 1)
        return "";
    snprintf(out, sizeof(out), "%.*s", (int)n, f);
    return out;
}

static void test_rows(void **state)
{
    struct tlm_frag_opts fo = { NULL, NULL };
    struct tlm_dblookup_stats s;
    struct tlm_error err;
    struct tlm_dblookup *d;
    int rc;
    (void)state;
    tlm_error_clear(&err);
    d = tlm_dblookup_open(db, "select n, make, r, b from d where id = ?", 1, &fo, 10, 0, &err);
    assert_non_null(d);
    assert_string_equal(look(d, "\"a\"", 0, &rc), "\"n\":1,\"make\":\"Acme\",\"r\":1.5,\"b\":null");
    assert_string_equal(look(d, "\"b\"", 0, &rc), "\"n\":2,\"make\":null,\"r\":2.0,\"b\":\"ok\"");
    look(d, "\"zz\"", 0, &rc);
    assert_int_equal(rc, 0);
    look(d, "\"zz\"", 0, &rc); /* "no row" is cached too */
    assert_int_equal(rc, 0);
    assert_string_equal(look(d, "\"a\"", 0, &rc), "\"n\":1,\"make\":\"Acme\",\"r\":1.5,\"b\":null");
    /* 17 and "17" are different keys (bound as INTEGER and TEXT) */
    assert_string_equal(look(d, "\"17\"", 0, &rc), "\"n\":17,\"make\":\"text17\",\"r\":0.1,\"b\":null");
    assert_string_equal(look(d, "17", 0, &rc), "\"n\":17,\"make\":\"text17\",\"r\":0.1,\"b\":null");
    tlm_dblookup_stats(d, &s);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 5);
    assert_int_equal(s.no_row, 1);
    assert_int_equal(s.entries, 5);
    tlm_dblookup_destroy(d);

    /* --into and --prefix name the members */
    fo.into = "dev";
    d = tlm_dblookup_open(db, "select make as m from d where id = ?", 1, &fo, 10, 0, &err);
    assert_non_null(d);
    assert_string_equal(look(d, "\"a\"", 0, &rc), "\"dev\":{\"m\":\"Acme\"}");
    tlm_dblookup_destroy(d);
    fo.into = NULL;
    fo.prefix = "x_";
    d = tlm_dblookup_open(db, "select make from d where id = ?", 1, &fo, 10, 0, &err);
    assert_non_null(d);
    assert_string_equal(look(d, "\"a\"", 0, &rc), "\"x_make\":\"Acme\"");
    tlm_dblookup_destroy(d);
}

static void test_lru_and_ttl(void **state)
{
    struct tlm_frag_opts fo = { NULL, NULL };
    struct tlm_dblookup_stats s;
    struct tlm_dblookup *d;
    int rc;
    (void)state;
    d = tlm_dblookup_open(db, "select n from d where id = ?", 1, &fo, 2, 100, NULL);
    assert_non_null(d);
    look(d, "\"a\"", 0, &rc);  /* miss: [a] */
    look(d, "\"b\"", 0, &rc);  /* miss: [b a] */
    look(d, "\"a\"", 0, &rc);  /* hit: [a b] */
    look(d, "\"17\"", 0, &rc); /* miss, evicts b: [17 a] */
    look(d, "\"a\"", 0, &rc);  /* hit */
    look(d, "\"b\"", 0, &rc);  /* miss, evicts 17 */
    tlm_dblookup_stats(d, &s);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 4);
    assert_int_equal(s.evictions, 2);
    assert_int_equal(s.entries, 2);
    /* the time to live: a at 0 is still good at 99, stale at 100 */
    look(d, "\"a\"", 99, &rc);
    tlm_dblookup_stats(d, &s);
    assert_int_equal(s.hits, 3);
    assert_string_equal(look(d, "\"a\"", 100, &rc), "\"n\":1");
    tlm_dblookup_stats(d, &s);
    assert_int_equal(s.expired, 1);
    assert_int_equal(s.misses, 5);
    tlm_dblookup_clear(d);
    look(d, "\"a\"", 100, &rc);
    tlm_dblookup_stats(d, &s);
    assert_int_equal(s.misses, 6);
    /* many keys through a small cache: the index stays consistent */
    for (int i = 0; i < 5000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "\"k%d\"", i % 7);
        look(d, k, 200, &rc);
        assert_int_equal(rc, 0);
    }
    tlm_dblookup_destroy(d);
}

static void test_errors(void **state)
{
    struct tlm_frag_opts fo = { NULL, NULL };
    struct tlm_error err;
    (void)state;
    tlm_error_clear(&err);
    assert_null(tlm_dblookup_open("/nonexistent/x.db", "select 1", 0, &fo, 1, 0, &err));
    assert_string_equal(err.text, "unable to open database file");
    assert_null(tlm_dblookup_open(db, "select x from nope where id = ?", 1, &fo, 1, 0, &err));
    assert_string_equal(err.text, "--query: no such table: nope");
    assert_null(tlm_dblookup_open(db, "select n from d where id = ?", 2, &fo, 1, 0, &err));
    assert_string_equal(err.text, "--query takes 1 parameter, --on gives 2 keys");
    assert_null(tlm_dblookup_open(db, "update d set n = ?", 1, &fo, 1, 0, &err));
    assert_string_equal(err.text, "--query: only a read-only query (select) is allowed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_lru_and_ttl),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("dblookup", tests, setup, teardown);
}
