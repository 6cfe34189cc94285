/*
 * test_agg.c - unit tests of the --agg aggregate functions (src/lib/agg.h).
 *
 * Events go through the same path as in the window engine: jscan extracts the fields that
 * tlm_aggs_paths names, a partial object is built only when some argument is computed, and
 * tlm_aggs_add gets the raw spans. Results are compared as the exact text tlm_aggs_write
 * appends, so number formats are pinned too. Quantile expectations follow the documented
 * definition of tdigest.h (Hyndman-Fan type 7), exact while the digest holds raw samples.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "agg.h"
#include "buf.h"
#include "error.h"
#include "jscan.h"

#define S (INT64_C(1000000000)) /* one second in ns */

/* ---- fixture: a compiled list, its scanner and one state ---------------------------------- */

struct fx {
    struct tlm_aggs *a;
    struct tlm_jscan *sc;
    long np;
    void *st;
};

static void fx_open_opts(struct fx *f, const char *spec, const struct tlm_aggs_opts *o)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    f->a = tlm_aggs_create(spec, o, &err);
    if (!f->a)
        fail_msg("%s: %s (column %ld)", spec, err.text, err.column);
    const struct tlm_path *paths;
    f->np = tlm_aggs_paths(f->a, &paths);
    f->sc = f->np >= 0 ? tlm_jscan_create(paths, (size_t)f->np) : NULL;
    assert_true(f->np < 0 || f->sc);
    f->st = malloc(tlm_aggs_state_size(f->a) + 1);
    tlm_aggs_init(f->a, f->st);
}

static void fx_open(struct fx *f, const char *spec)
{
    fx_open_opts(f, spec, NULL);
}

static void *fx_state(struct fx *f)
{
    void *st = malloc(tlm_aggs_state_size(f->a) + 1);
    tlm_aggs_init(f->a, st);
    return st;
}

static void fx_drop(struct fx *f, void *st)
{
    tlm_aggs_free(f->a, st);
    free(st);
}

static void fx_close(struct fx *f)
{
    fx_drop(f, f->st);
    tlm_jscan_destroy(f->sc);
    tlm_aggs_destroy(f->a);
}

/* Adds one event (a JSON object text) at ts to st; returns what tlm_aggs_add returns. */
static int fx_add_to(struct fx *f, void *st, const char *line, int64_t ts, struct tlm_error *err)
{
    struct tlm_jval vals[64];
    json_t *partial = NULL;
    if (f->np >= 0) {
        assert_true(f->np <= 64);
        assert_int_equal(tlm_jscan_run(f->sc, line, strlen(line), vals, NULL), 0);
        if (tlm_aggs_needs_json(f->a)) {
            partial = tlm_aggs_partial(f->a, vals);
            assert_non_null(partial);
        }
    } else {
        partial = json_loads(line, 0, NULL);
        assert_non_null(partial);
    }
    int rc = tlm_aggs_add(f->a, st, f->np >= 0 ? vals : NULL, partial, ts, err);
    json_decref(partial);
    return rc;
}

static void fx_add(struct fx *f, const char *line, int64_t ts)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    int rc = fx_add_to(f, f->st, line, ts, &err);
    if (rc)
        fail_msg("%s: %s", line, err.text);
}

static void fx_addf(struct fx *f, int64_t ts, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fx_addf(struct fx *f, int64_t ts, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fx_add(f, line, ts);
}

/* The text tlm_aggs_write appends for st (malloc'd). */
static char *fx_out(struct fx *f, void *st)
{
    struct tlm_buf b = TLM_BUF_INIT;
    assert_int_equal(tlm_aggs_write(f->a, st, &b), 0);
    return b.data ? b.data : strdup("");
}

static void assert_out(struct fx *f, void *st, const char *want)
{
    char *got = fx_out(f, st);
    if (strcmp(got, want) != 0)
        fail_msg("got  %s\nwant %s", got, want);
    free(got);
}

/* ---- parsing ------------------------------------------------------------------------------ */

static void check_names(const char *spec, const char *const *want, size_t n)
{
    struct fx f;
    fx_open(&f, spec);
    assert_int_equal(tlm_aggs_count(f.a), n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tlm_aggs_name(f.a, i), want[i]) != 0)
            fail_msg("%s: name %zu is '%s', want '%s'", spec, i, tlm_aggs_name(f.a, i), want[i]);
        assert_int_equal(tlm_aggs_find(f.a, want[i]), (long)i);
    }
    fx_close(&f);
}

static void test_parse_names(void **state)
{
    (void)state;
    static const char *const w1[] = { "count", "avg_cpuUsage", "cpu_p99",
                                      "p95_mem_used_mem_total", "distinct_userId",
                                      "rate_bytes_total" };
    check_names("count, avg(cpuUsage), p99(cpuUsage) as cpu_p99, quantile(mem.used / "
                "mem.total, 0.95), distinct(userId), rate(bytes_total)",
                w1, 6);
    static const char *const w2[] = { "p50_x", "p999_x", "p25_x", "p05_x", "p90_x", "p999_y",
                                      "p1_x" };
    check_names("quantile(x, 0.5), quantile(x,0.999), quantile( x , 0.25 ), quantile(x, 0.05),"
                "p90(x), P999(y), p1(x) as p1_x",
                w2, 7);
    static const char *const w3[] = { "count_x", "sum_x", "min_x", "max_x", "stddev_x",
                                      "first_x", "last_x", "avg_a_x_y", "cpu avg", "c",
                                      "max_a_0", "sum_x_" };
    check_names("count(x),SUM(x),min(x),max(x),stddev(x),first(x),last(x),avg($.a['x y']),"
                "avg(z) as \"cpu avg\", count AS c, max(a[0]), sum(x_)",
                w3, 12);
}

static void check_error(const char *spec, long column, const char *text)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    struct tlm_aggs *a = tlm_aggs_create(spec, NULL, &err);
    if (a)
        fail_msg("'%s' compiled", spec);
    assert_int_equal(err.code, TLM_EPARSE);
    if (err.column != column || !strstr(err.text, text))
        fail_msg("'%s': got %ld '%s', want %ld '%s'", spec, err.column, err.text, column, text);
}

static void test_parse_errors(void **state)
{
    (void)state;
    check_error("count, med(x)", 8, "unknown aggregate 'med'; expected count, sum, min, max, avg");
    check_error("p99", 1, "p99 needs one argument");
    check_error("count, p99()", 11, "p99 needs one argument");
    check_error("quantile(x)", 9, "quantile needs two arguments");
    check_error("quantile(x, 1.5)", 13, "quantile level must be in (0,1)");
    check_error("quantile(x, 0)", 13, "quantile level must be in (0,1)");
    check_error("quantile(x, abc)", 13, "quantile level must be a number");
    check_error("p0(x)", 1, "quantile level must be in (0,1)");
    check_error("p100(x)", 1, "ambiguous quantile name 'p100'");
    check_error("sum(x, y)", 4, "sum needs one argument");
    check_error("count(x, y)", 6, "count takes at most one argument");
    check_error("count, avg(x), count", 16, "duplicate output name 'count'");
    check_error("avg(x), sum(y) as avg_x", 9, "duplicate output name 'avg_x'");
    check_error("", 1, "empty aggregate list");
    check_error("count,", 7, "expected an aggregate after ','");
    check_error("count,,avg(x)", 7, "expected an aggregate after ','");
    check_error("avg(x", 4, "expected ')'");
    check_error("avg(x) foo", 8, "expected ',' or 'as'");
    check_error("avg(x) as", 8, "expected a name after 'as'");
    check_error("avg(x) as 1", 8, "expected a name after 'as'");
    check_error("avg(x, )", 8, "empty argument");
    check_error("9lives", 1, "expected an aggregate name");
    /* expression errors point into the spec */
    struct tlm_error err;
    tlm_error_clear(&err);
    assert_null(tlm_aggs_create("count, avg(a + )", NULL, &err));
    assert_int_equal(err.code, TLM_EPARSE);
    assert_true(err.column >= 12 && err.column <= 16);
    /* options are checked where they matter */
    struct tlm_aggs_opts o = { TLM_AGGS_TDIGEST, 0.5, 0, 0 };
    tlm_error_clear(&err);
    assert_null(tlm_aggs_create("p99(x)", &o, &err));
    assert_int_equal(err.code, TLM_EINVAL);
    struct tlm_aggs *a = tlm_aggs_create("avg(x)", &o, &err); /* no sketch: fine */
    assert_non_null(a);
    tlm_aggs_destroy(a);
}

static void test_paths(void **state)
{
    (void)state;
    struct fx f;
    const struct tlm_path *p;
    fx_open(&f, "count, avg(cpu), p99(cpu), sum(mem.used / mem.total), first($.host.name), "
                "distinct(user)");
    long n = tlm_aggs_paths(f.a, &p);
    assert_int_equal(n, 5);
    const char *want[] = { "cpu", "mem.used", "mem.total", "host.name", "user" };
    for (long i = 0; i < n; i++) {
        char b[64] = "";
        for (size_t s = 0; s < p[i].nseg; s++)
            snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s", s ? "." : "", p[i].seg[s]);
        assert_string_equal(b, want[i]);
    }
    assert_int_equal(tlm_aggs_arg_path(f.a, 0), -2); /* count */
    assert_false(tlm_aggs_has_arg(f.a, 0));
    assert_true(tlm_aggs_has_arg(f.a, 3));
    assert_int_equal(tlm_aggs_arg_path(f.a, 1), 0);
    assert_int_equal(tlm_aggs_arg_path(f.a, 2), 0);
    assert_int_equal(tlm_aggs_arg_path(f.a, 3), -1); /* computed */
    assert_int_equal(tlm_aggs_arg_path(f.a, 4), 3);
    assert_int_equal(tlm_aggs_arg_path(f.a, 5), 4);
    assert_true(tlm_aggs_needs_json(f.a));
    fx_close(&f);

    fx_open(&f, "count, avg(cpu), max(cpu)");
    assert_false(tlm_aggs_needs_json(f.a));
    assert_int_equal(tlm_aggs_paths(f.a, &p), 1);
    fx_close(&f);

    fx_open(&f, "count");
    assert_int_equal(tlm_aggs_paths(f.a, &p), 0);
    fx_add(&f, "{\"a\":1}", 0);
    assert_out(&f, f.st, ",\"count\":1");
    fx_close(&f);

    /* a path under another one is read through the outer one (computed) */
    fx_open(&f, "count(mem), max(mem.used)");
    assert_int_equal(tlm_aggs_paths(f.a, &p), 1);
    assert_int_equal(p[0].nseg, 1);
    assert_int_equal(tlm_aggs_arg_path(f.a, 1), -1);
    fx_add(&f, "{\"mem\":{\"used\":5,\"total\":8}}", 0);
    fx_add(&f, "{\"mem\":{\"used\":7}}", 0);
    assert_out(&f, f.st, ",\"count_mem\":2,\"max_mem_used\":7");
    fx_close(&f);

    /* the whole event */
    fx_open(&f, "count, first($)");
    assert_int_equal(tlm_aggs_paths(f.a, &p), -1);
    fx_add(&f, "{\"a\": 1}", 0);
    assert_out(&f, f.st, ",\"count\":1,\"first\":{\"a\":1}");
    fx_close(&f);
}

/* ---- results ------------------------------------------------------------------------------- */

static void test_numeric(void **state)
{
    (void)state;
    struct fx f;
    const char *spec = "count, count(x), sum(x), avg(x), min(x), max(x), stddev(x)";
    fx_open(&f, spec);
    assert_out(&f, f.st, ",\"count\":0,\"count_x\":0,\"sum_x\":null,\"avg_x\":null,"
                         "\"min_x\":null,\"max_x\":null,\"stddev_x\":null");
    assert_true(isnan(tlm_aggs_value(f.a, f.st, 3)));
    for (int i = 1; i <= 4; i++)
        fx_addf(&f, i, "{\"x\":%d}", i);
    fx_add(&f, "{\"x\":\"7\"}", 5);  /* strings are not numbers */
    fx_add(&f, "{\"x\":null}", 6);   /* null is absent */
    fx_add(&f, "{\"y\":1}", 7);      /* absent */
    fx_add(&f, "{\"x\":true}", 8);
    /* population stddev of 1..4: sqrt(1.25) */
    assert_out(&f, f.st, ",\"count\":8,\"count_x\":6,\"sum_x\":10,\"avg_x\":2.5,\"min_x\":1,"
                         "\"max_x\":4,\"stddev_x\":1.118033988749895");
    assert_true(tlm_aggs_value(f.a, f.st, 6) == sqrt(1.25));
    assert_true(tlm_aggs_value(f.a, f.st, 0) == 8);
    fx_close(&f);

    /* reals: compensated sum, real formats */
    fx_open(&f, "sum(x), avg(x), min(x), max(x), stddev(x)");
    fx_add(&f, "{\"x\":0.1}", 1);
    fx_add(&f, "{\"x\":0.2}", 2);
    fx_add(&f, "{\"x\":0.3}", 3);
    assert_out(&f, f.st, ",\"sum_x\":0.6,\"avg_x\":0.19999999999999998,\"min_x\":0.1,"
                         "\"max_x\":0.3,\"stddev_x\":0.08164965809277258");
    fx_close(&f);

    fx_open(&f, "sum(x), avg(x), stddev(x), min(x)");
    fx_add(&f, "{\"x\":1.5}", 1);
    fx_add(&f, "{\"x\":1.5}", 2);
    assert_out(&f, f.st, ",\"sum_x\":3.0,\"avg_x\":1.5,\"stddev_x\":0.0,\"min_x\":1.5");
    fx_close(&f);

    /* integer sum: exact past 2^53, a real makes it a double, overflow makes it a double */
    fx_open(&f, "sum(x), max(x)");
    fx_add(&f, "{\"x\":9007199254740995}", 1);
    fx_add(&f, "{\"x\":2}", 2);
    assert_out(&f, f.st, ",\"sum_x\":9007199254740997,\"max_x\":9007199254740996.0");
    fx_add(&f, "{\"x\":9223372036854775807}", 3);
    assert_out(&f, f.st, ",\"sum_x\":9.232379236109517e18,\"max_x\":9.223372036854776e18");
    fx_close(&f);

    /* a large offset does not hurt the variance (Welford) */
    fx_open(&f, "stddev(x), avg(x)");
    for (int i = 0; i < 1000; i++)
        fx_addf(&f, i, "{\"x\":%d}", 1000000000 + (i % 2 ? 1 : -1));
    assert_out(&f, f.st, ",\"stddev_x\":1.0,\"avg_x\":1000000000.0");
    fx_close(&f);

    /* computed arguments */
    fx_open(&f, "avg(mem.used / mem.total), max(abs(t))");
    fx_add(&f, "{\"mem\":{\"used\":1,\"total\":4},\"t\":-3}", 1);
    fx_add(&f, "{\"mem\":{\"used\":3,\"total\":4},\"t\":2.5}", 2);
    fx_add(&f, "{\"mem\":{\"used\":3}}", 3);
    assert_out(&f, f.st, ",\"avg_mem_used_mem_total\":0.5,\"max_abs_t\":3");
    fx_close(&f);
}

static void test_runtime_error(void **state)
{
    (void)state;
    struct fx f;
    struct tlm_error err;
    fx_open(&f, "count, sum(a / b)");
    fx_add(&f, "{\"a\":6,\"b\":3}", 1);
    tlm_error_clear(&err);
    int rc = fx_add_to(&f, f.st, "{\"a\":6,\"b\":0}", 2, &err);
    assert_true(rc < 0);
    assert_int_equal(err.code, rc);
    assert_non_null(strstr(err.text, "a / b: "));
    tlm_error_clear(&err);
    rc = fx_add_to(&f, f.st, "{\"a\":\"x\",\"b\":2}", 3, &err);
    assert_int_equal(rc, TLM_ETYPE);
    /* the failed events left the state alone */
    assert_out(&f, f.st, ",\"count\":1,\"sum_a_b\":2");
    fx_close(&f);
}

static void test_first_last(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "first(v), last(v), first(o), last(n), count");
    assert_out(&f, f.st, ",\"first_v\":null,\"last_v\":null,\"first_o\":null,\"last_n\":null,"
                         "\"count\":0");
    fx_add(&f, "{\"v\":\"c\",\"n\":1.50}", 3 * S);
    fx_add(&f, "{\"v\":\"e\",\"o\":{\"k\": [1, 2.0]}}", 5 * S);
    fx_add(&f, "{\"v\":\"a\",\"n\":2.50}", 1 * S);
    fx_add(&f, "{\"v\":\"a2\",\"o\":{}}", 1 * S);   /* tie with first: earlier arrival wins */
    fx_add(&f, "{\"v\":\"e2\"}", 5 * S);            /* tie with last: later arrival wins */
    fx_add(&f, "{\"v\":null,\"n\":null}", 9 * S);   /* null is absent */
    fx_add(&f, "{\"v\":\"b\\u00e9\"}", 2 * S);
    /* the original JSON text, spaces and number forms included */
    assert_out(&f, f.st, ",\"first_v\":\"a\",\"last_v\":\"e2\",\"first_o\":{},"
                         "\"last_n\":1.50,\"count\":7");
    assert_true(tlm_aggs_value(f.a, f.st, 3) == 1.5);
    assert_true(isnan(tlm_aggs_value(f.a, f.st, 0)));
    fx_close(&f);

    fx_open(&f, "first(x * 2), last(x)");
    fx_add(&f, "{\"x\":2}", 2);
    fx_add(&f, "{\"x\":1.25}", 1);
    assert_out(&f, f.st, ",\"first_x_2\":2.5,\"last_x\":2");
    fx_close(&f);
}

static void test_rate(void **state)
{
    (void)state;
    struct fx f;
    /* 0s:10, 10s:20, 20s:5 (reset), 30s:15: increases 10 + 5 + 10 = 25 over 30 s */
    static const int order[][4] = { { 0, 1, 2, 3 }, { 0, 2, 1, 3 }, { 3, 2, 1, 0 },
                                    { 1, 2, 3, 0 }, { 2, 0, 3, 1 } };
    static const int ts[] = { 0, 10, 20, 30 }, v[] = { 10, 20, 5, 15 };
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        fx_open(&f, "rate(c)");
        assert_out(&f, f.st, ",\"rate_c\":null");
        for (int i = 0; i < 4; i++) {
            fx_addf(&f, ts[order[k][i]] * S, "{\"c\":%d}", v[order[k][i]]);
            if (i == 0)
                assert_out(&f, f.st, ",\"rate_c\":null"); /* one sample */
        }
        assert_out(&f, f.st, ",\"rate_c\":0.8333333333333334");
        fx_close(&f);
    }
    /* two samples at one time: no rate */
    fx_open(&f, "rate(c)");
    fx_add(&f, "{\"c\":1}", S);
    fx_add(&f, "{\"c\":5}", S);
    assert_out(&f, f.st, ",\"rate_c\":null");
    fx_close(&f);

    /* a long series with resets, out of order within the tail, is exact */
    fx_open(&f, "rate(c), count(c)");
    double c = 0, inc = 0, prev = 0;
    double vals[1000];
    for (int i = 0; i < 1000; i++) {
        double next = (i % 97 == 96) ? 3 : c + (i % 7);
        if (i)
            inc += next >= prev ? next - prev : next;
        vals[i] = prev = c = next;
    }
    for (int i = 0; i < 1000; i += 4) { /* blocks of four arrive backwards */
        for (int j = 3; j >= 0; j--)
            fx_addf(&f, (int64_t)(i + j) * S / 2, "{\"c\":%.17g}", vals[i + j]);
    }
    assert_true(fabs(tlm_aggs_value(f.a, f.st, 0) - inc / 499.5) < 1e-9);
    fx_close(&f);
}

static void test_distinct(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "distinct(u), distinct(u.k)");
    assert_out(&f, f.st, ",\"distinct_u\":0,\"distinct_u_k\":0");
    static const char *const lines[] = {
        "{\"u\":1}", "{\"u\":\"1\"}", "{\"u\":1.0}", "{\"u\":1.00}", "{\"u\":\"a\"}",
        "{\"u\":\"\\u0061\"}", "{\"u\":true}", "{\"u\":null}", "{\"w\":1}", "{\"u\":[1,2]}",
        "{\"u\":[1, 2]}", "{\"u\":1}", "{\"u\":false}", "{\"u\":-0.0}", "{\"u\":0.0}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        fx_add(&f, lines[i], (int64_t)i);
    /* 1, "1", 1.0, "a", true, [1,2], false, 0.0 */
    assert_out(&f, f.st, ",\"distinct_u\":8,\"distinct_u_k\":0");
    fx_close(&f);

    /* exact up to TLM_AGG_DISTINCT_EXACT, then a HyperLogLog */
    fx_open(&f, "distinct(u)");
    for (int i = 0; i < TLM_AGG_DISTINCT_EXACT; i++) {
        fx_addf(&f, i, "{\"u\":\"user-%d\"}", i);
        fx_addf(&f, i, "{\"u\":\"user-%d\"}", i / 2);
    }
    assert_true(tlm_aggs_value(f.a, f.st, 0) == TLM_AGG_DISTINCT_EXACT);
    assert_true(tlm_aggs_heap_bytes(f.a, f.st) == TLM_AGG_DISTINCT_EXACT * 8);
    for (int i = 0; i < 100000; i++)
        fx_addf(&f, i, "{\"u\":\"user-%d\"}", i);
    double d = tlm_aggs_value(f.a, f.st, 0);
    assert_true(fabs(d - 100000) / 100000 < 0.03);
    assert_true(d == floor(d));
    fx_close(&f);
}

static void test_quantiles(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "p50(x), p25(x), p90(x), quantile(x, 0.95), p99(x), count");
    assert_out(&f, f.st, ",\"p50_x\":null,\"p25_x\":null,\"p90_x\":null,\"p95_x\":null,"
                         "\"p99_x\":null,\"count\":0");
    static const int v[] = { 4, 1, 5, 3, 2 };
    for (int i = 0; i < 5; i++)
        fx_addf(&f, i, "{\"x\":%d}", v[i]);
    fx_add(&f, "{\"x\":\"9\"}", 9);
    /* type 7: h = q (n - 1) */
    assert_out(&f, f.st, ",\"p50_x\":3.0,\"p25_x\":2.0,\"p90_x\":4.6,\"p95_x\":4.8,"
                         "\"p99_x\":4.96,\"count\":6");
    fx_close(&f);

    /* large: rank error small */
    fx_open(&f, "p50(x), p99(x), p999(x)");
    uint64_t r = 88172645463325252ULL;
    for (int i = 0; i < 100000; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        fx_addf(&f, i, "{\"x\":%d}", (int)(r % 100000));
    }
    assert_true(fabs(tlm_aggs_value(f.a, f.st, 0) - 50000) < 1000);
    assert_true(fabs(tlm_aggs_value(f.a, f.st, 1) - 99000) < 300);
    assert_true(fabs(tlm_aggs_value(f.a, f.st, 2) - 99900) < 100);
    /* memory per key with a t-digest */
    assert_true(tlm_aggs_state_size(f.a) + tlm_aggs_heap_bytes(f.a, f.st) <= 4096);
    fx_close(&f);

    /* DDSketch: relative error alpha */
    struct tlm_aggs_opts o = { TLM_AGGS_DDSKETCH, 0, 0.01, 0 };
    fx_open_opts(&f, "p50(x), p99(x)", &o);
    for (int i = 1; i <= 10000; i++)
        fx_addf(&f, i, "{\"x\":%d}", i);
    assert_true(fabs(tlm_aggs_value(f.a, f.st, 0) / 5000.5 - 1) < 0.03);
    assert_true(fabs(tlm_aggs_value(f.a, f.st, 1) / 9900.01 - 1) < 0.03);
    fx_close(&f);
}

/* ---- merge, snapshots, memory ----------------------------------------------------- */

static const char merge_spec[] =
    "count, count(x), sum(x), avg(x), min(x), max(x), stddev(x), first(s), last(s), "
    "distinct(s), p50(x), p90(x), rate(c)";

static void event(int i, char *line, size_t n)
{
    snprintf(line, n, "{\"x\":%d,\"s\":\"k%d\",\"c\":%d}", (i * 37) % 101, (i * 7) % 50,
             i % 40 == 39 ? 1 : i * 3);
}

static void test_merge(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, merge_spec);
    void *a = fx_state(&f), *b = fx_state(&f), *e = fx_state(&f);
    char line[128];
    /* session windows: a holds 0..59, b holds 60..99, in any arrival order */
    for (int i = 99; i >= 0; i--) {
        event(i, line, sizeof line);
        int64_t ts = (int64_t)i * S;
        assert_int_equal(fx_add_to(&f, f.st, line, ts, NULL), 0);
        assert_int_equal(fx_add_to(&f, i < 60 ? a : b, line, ts, NULL), 0);
    }
    assert_int_equal(tlm_aggs_merge(f.a, e, b), 0); /* into an empty state */
    assert_int_equal(tlm_aggs_merge(f.a, a, e), 0); /* later session into earlier */
    char *whole = fx_out(&f, f.st), *merged = fx_out(&f, a);
    /* stddev may differ in the last bits (Chan vs Welford): compare values */
    for (size_t i = 0; i < tlm_aggs_count(f.a); i++) {
        double x = tlm_aggs_value(f.a, f.st, i), y = tlm_aggs_value(f.a, a, i);
        if (!(fabs(x - y) <= 1e-12 * fabs(x)) && !(isnan(x) && isnan(y)))
            fail_msg("%s: %.17g != %.17g", tlm_aggs_name(f.a, i), x, y);
    }
    char *w = strstr(whole, ",\"stddev_x\""), *m = strstr(merged, ",\"stddev_x\"");
    *w = *m = '\0';
    assert_string_equal(whole, merged);
    assert_string_equal(w + 1 + strcspn(w + 1, ","), m + 1 + strcspn(m + 1, ","));
    free(whole);
    free(merged);

    /* merging the earlier session into the later one gives the same */
    tlm_aggs_free(f.a, e);
    assert_int_equal(tlm_aggs_merge(f.a, e, b), 0);
    tlm_aggs_free(f.a, a);
    for (int i = 0; i < 60; i++) {
        event(i, line, sizeof line);
        assert_int_equal(fx_add_to(&f, a, line, (int64_t)i * S, NULL), 0);
    }
    assert_int_equal(tlm_aggs_merge(f.a, e, a), 0);
    for (size_t i = 0; i < tlm_aggs_count(f.a); i++) {
        double x = tlm_aggs_value(f.a, f.st, i), y = tlm_aggs_value(f.a, e, i);
        if (!(fabs(x - y) <= 1e-12 * fabs(x)) && !(isnan(x) && isnan(y)))
            fail_msg("%s: %.17g != %.17g", tlm_aggs_name(f.a, i), x, y);
    }
    /* src stays valid and unchanged */
    assert_true(tlm_aggs_value(f.a, a, 0) == 60);
    fx_drop(&f, a);
    fx_drop(&f, b);
    fx_drop(&f, e);
    fx_close(&f);

    /* distinct: exact + HLL, HLL + exact */
    fx_open(&f, "distinct(u)");
    a = fx_state(&f);
    for (int i = 0; i < 5000; i++) {
        snprintf(line, sizeof line, "{\"u\":%d}", i);
        assert_int_equal(fx_add_to(&f, i % 50 ? f.st : a, line, 0, NULL), 0);
    }
    assert_true(tlm_aggs_value(f.a, a, 0) == 100);
    assert_int_equal(tlm_aggs_merge(f.a, a, f.st), 0);
    assert_true(fabs(tlm_aggs_value(f.a, a, 0) - 5000) < 150);
    fx_drop(&f, a);
    fx_close(&f);
}

static void test_save_load(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, merge_spec);
    char line[128];
    for (int i = 0; i < 2000; i++) {
        event(i, line, sizeof line);
        fx_add(&f, line, (int64_t)(i ^ 3) * S);
    }
    fx_add(&f, "{\"x\":1e308,\"s\":\"q\\\"\"}", 5000 * S);
    fx_add(&f, "{\"x\":1e308,\"s\":{\"a\": [1]}}", 5001 * S); /* sum overflows to inf */
    struct tlm_buf s1 = TLM_BUF_INIT, s2 = TLM_BUF_INIT;
    assert_int_equal(tlm_aggs_save(f.a, f.st, &s1), 0);
    assert_int_equal(tlm_json_validate(s1.data, s1.len, NULL), 0);
    void *st = fx_state(&f);
    struct tlm_error err;
    tlm_error_clear(&err);
    if (tlm_aggs_load(f.a, st, s1.data, s1.len, &err))
        fail_msg("load: %s", err.text);
    assert_int_equal(tlm_aggs_save(f.a, st, &s2), 0);
    assert_string_equal(s1.data, s2.data);
    char *o1 = fx_out(&f, f.st), *o2 = fx_out(&f, st);
    assert_string_equal(o1, o2);
    free(o1);
    free(o2);
    /* both continue alike */
    fx_add(&f, "{\"x\":3,\"s\":\"z\",\"c\":5}", 6000 * S);
    assert_int_equal(fx_add_to(&f, st, "{\"x\":3,\"s\":\"z\",\"c\":5}", 6000 * S, NULL), 0);
    o1 = fx_out(&f, f.st);
    o2 = fx_out(&f, st);
    assert_string_equal(o1, o2);
    free(o1);
    free(o2);

    /* an empty state round-trips */
    void *z = fx_state(&f);
    tlm_buf_reset(&s2);
    assert_int_equal(tlm_aggs_save(f.a, z, &s2), 0);
    assert_int_equal(tlm_aggs_load(f.a, st, s2.data, s2.len, &err), 0);
    o1 = fx_out(&f, z);
    o2 = fx_out(&f, st);
    assert_string_equal(o1, o2);
    free(o1);
    free(o2);
    fx_drop(&f, z);

    /* errors: malformed, truncated, another spec */
    assert_int_equal(tlm_aggs_load(f.a, st, "{\"sig\":1}", 9, &err), TLM_ESTATE);
    assert_int_equal(tlm_aggs_load(f.a, st, s1.data, s1.len - 1, &err), TLM_ESTATE);
    char *bad = strdup(s1.data);
    char *p = strstr(bad, ",\"1\":");
    p[3] = '9'; /* rename part 1 */
    assert_int_equal(tlm_aggs_load(f.a, st, bad, strlen(bad), &err), TLM_ESTATE);
    free(bad);
    struct fx g;
    fx_open(&g, "count, sum(x)");
    assert_int_equal(tlm_aggs_load(g.a, g.st, s1.data, s1.len, &err), TLM_ESTATE);
    assert_non_null(strstr(err.text, "another --agg"));
    fx_close(&g);
    fx_drop(&f, st);
    tlm_buf_free(&s1);
    tlm_buf_free(&s2);
    fx_close(&f);

    /* a HyperLogLog and a DDSketch round-trip too */
    struct tlm_aggs_opts o = { TLM_AGGS_DDSKETCH, 0, 0, 0 };
    fx_open_opts(&f, "distinct(u), p50(x), p99(x)", &o);
    for (int i = 0; i < 3000; i++)
        fx_addf(&f, i, "{\"u\":%d,\"x\":%d}", i, i % 977);
    assert_int_equal(tlm_aggs_save(f.a, f.st, &s1), 0);
    assert_non_null(strstr(s1.data, "\"0h\":"));
    st = fx_state(&f);
    assert_int_equal(tlm_aggs_load(f.a, st, s1.data, s1.len, &err), 0);
    assert_int_equal(tlm_aggs_save(f.a, st, &s2), 0);
    assert_string_equal(s1.data, s2.data);
    o1 = fx_out(&f, f.st);
    o2 = fx_out(&f, st);
    assert_string_equal(o1, o2);
    free(o1);
    free(o2);
    /* a broken sketch is a state error */
    bad = strdup(s1.data);
    p = strstr(bad, "\"p\":");
    assert_non_null(p);
    p[1] = 'P';
    assert_int_equal(tlm_aggs_load(f.a, st, bad, strlen(bad), &err), TLM_ESTATE);
    free(bad);
    fx_drop(&f, st);
    tlm_buf_free(&s1);
    tlm_buf_free(&s2);
    fx_close(&f);
}

static void test_memory(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "count, avg(x), min(x), max(x)");
    assert_true(tlm_aggs_state_size(f.a) <= 256);
    for (int i = 0; i < 1000; i++)
        fx_addf(&f, i, "{\"x\":%d}", i);
    assert_int_equal(tlm_aggs_heap_bytes(f.a, f.st), 0);
    fx_close(&f);

    fx_open(&f, "count, avg(x), stddev(x), sum(x), p50(x), p99(x), quantile(x, 0.9)");
    /* one numeric part and one sketch pointer for all of them */
    assert_true(tlm_aggs_state_size(f.a) <= 8 + 80 + 8);
    assert_int_equal(tlm_aggs_heap_bytes(f.a, f.st), 0); /* sketches are made on demand */
    for (int i = 0; i < 200000; i++)
        fx_addf(&f, i, "{\"x\":%d.5}", (i * 7919) % 100003);
    assert_true(tlm_aggs_state_size(f.a) + tlm_aggs_heap_bytes(f.a, f.st) <= 4096);
    fx_close(&f);

    fx_open(&f, "first(s), last(s), rate(c), distinct(s)");
    assert_true(tlm_aggs_state_size(f.a) <= 256);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_names), cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_paths),       cmocka_unit_test(test_numeric),
        cmocka_unit_test(test_runtime_error), cmocka_unit_test(test_first_last),
        cmocka_unit_test(test_rate),        cmocka_unit_test(test_distinct),
        cmocka_unit_test(test_quantiles),   cmocka_unit_test(test_merge),
        cmocka_unit_test(test_save_load),   cmocka_unit_test(test_memory),
    };
    return cmocka_run_group_tests_name("agg", tests, NULL, NULL);
}
