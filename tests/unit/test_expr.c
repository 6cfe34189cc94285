/*
 * test_expr.c - cmocka tests of the public API of expr.h: compile errors and their
 * columns, tlm_expr_root_paths, bindings, ownership of results (run under ASan for leaks
 * and use-after-free), truthiness of tlm_expr_test, and the JSONPath entry points.
 * The language itself is tested by the tables in tests/expr (test_expr_table.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "expr.h"

static json_t *parse(const char *s)
{
    json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    return j;
}

static void compile_error(const char *src, long column, const char *text)
{
    struct tlm_error err;
    struct tlm_expr *e = tlm_expr_compile(src, &err);
    assert_null(e);
    assert_int_equal(err.code, TLM_EPARSE);
    assert_int_equal(err.column, column);
    assert_string_equal(err.text, text);
}

static void test_compile_errors(void **state)
{
    (void)state;
    compile_error("max(a, b", 9, "expected ')' after arguments, found end of expression");
    compile_error("a + nope(1)", 5, "unknown function 'nope'");
    compile_error("a = 1", 3, "use '==' to compare");
    compile_error("$.a[", 5, "expected a selector, found end of expression");
    compile_error("1 < 2 < 3", 7, "comparisons cannot be chained; use '&&'");
    compile_error("\"abc", 1, "unterminated string");
}

static void test_jsonpath_errors(void **state)
{
    (void)state;
    struct tlm_error err;
    assert_null(tlm_jsonpath_compile(" $", &err));
    assert_int_equal(err.column, 1);
    assert_null(tlm_jsonpath_compile("$ ", &err));
    assert_null(tlm_jsonpath_compile("$[?@.a + 1 == 2]", &err));
    assert_null(tlm_jsonpath_compile("$[?length(@.*) == 1]", &err));
    assert_null(tlm_jsonpath_compile("$.x[?foo(@)]", &err));
    assert_string_equal(err.text, "unknown function 'foo'");
    assert_int_equal(err.column, 6);
    /* the expression language is a superset */
    struct tlm_expr *e = tlm_expr_compile("$[?@.a + 1 == 2]", &err);
    assert_non_null(e);
    tlm_expr_destroy(e);
}

static void check_paths(const char *src, long n, const char *const *want)
{
    struct tlm_error err;
    struct tlm_expr *e = tlm_expr_compile(src, &err);
    assert_non_null(e);
    const struct tlm_path *p = (const struct tlm_path *)1;
    long got = tlm_expr_root_paths(e, &p);
    assert_int_equal(got, n);
    if (n < 0) {
        assert_null(p);
    } else {
        /* want: the segments of each path joined by '.', in order */
        for (long i = 0; i < n; i++) {
            char buf[256] = "";
            for (size_t k = 0; k < p[i].nseg; k++) {
                if (k)
                    strcat(buf, ".");
                strcat(buf, p[i].seg[k]);
            }
            assert_string_equal(buf, want[i]);
        }
    }
    tlm_expr_destroy(e);
}

static void test_root_paths(void **state)
{
    (void)state;
    static const char *const a[] = { "mem.used", "host.name" };
    check_paths("mem.used > 3 && $.host['name'] == \"a\"", 2, a);
    static const char *const b[] = { "items" };
    check_paths("sum(items[*].price) > 10", 1, b);
    static const char *const c[] = { "a" };
    check_paths("a.b + a + a.c", 1, c);
    static const char *const d[] = { "x y", "z" };
    check_paths("$['x y'] == z", 2, d);
    static const char *const f[] = { "a", "min" };
    check_paths("$.a[?@.v > $.min]", 2, f);
    static const char *const g[] = { "cpu", "prev.cpu" };
    check_paths("cpu > prev.cpu", 2, g); /* without binding names, prev is a field */
    check_paths("1 + 2", 0, NULL);
    check_paths("$", -1, NULL);
    check_paths("a > 1 || $.*", -1, NULL);
    check_paths("$..name", -1, NULL);
    check_paths("$[?@.a]", -1, NULL);

    /* binding names are not root paths */
    struct tlm_error err;
    const char *names[] = { "prev" };
    struct tlm_expr *e = tlm_expr_compile_with("cpu > prev.cpu", names, 1, &err);
    const struct tlm_path *p;
    assert_int_equal(tlm_expr_root_paths(e, &p), 1);
    assert_int_equal(p[0].nseg, 1);
    assert_string_equal(p[0].seg[0], "cpu");
    tlm_expr_destroy(e);
}

static void test_bindings(void **state)
{
    (void)state;
    struct tlm_error err;
    const char *names[] = { "start", "end", "items" };
    struct tlm_expr *e = tlm_expr_compile_with(
        "{\"metric\": \"t\", \"value\": end.timestamp - start.timestamp, \"n\": length(items)}",
        names, 3, &err);
    assert_non_null(e);
    json_t *s = parse("{\"timestamp\": 10}"), *en = parse("{\"timestamp\": 25}");
    json_t *items = parse("[1, 2, 3]");
    json_t *vals[] = { s, en, items };
    struct tlm_expr_env env = { 3, names, vals };
    json_t *ev = parse("{}"), *out = NULL;
    assert_int_equal(tlm_expr_eval(e, ev, &env, &out, &err), 1);
    json_t *want = parse("{\"metric\": \"t\", \"value\": 15, \"n\": 3}");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);

    /* env in a different order, and an unbound name */
    const char *names2[] = { "items", "end", "start" };
    json_t *vals2[] = { NULL, en, s };
    struct tlm_expr_env env2 = { 3, names2, vals2 };
    assert_int_equal(tlm_expr_eval(e, ev, &env2, &out, &err), 1);
    want = parse("{\"metric\": \"t\", \"value\": 15}");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);

    /* no env at all: bindings are nothing */
    assert_int_equal(tlm_expr_eval(e, ev, NULL, &out, &err), 1);
    want = parse("{\"metric\": \"t\"}");
    assert_true(json_equal(out, want));
    json_decref(want);
    json_decref(out);

    tlm_expr_destroy(e);
    json_decref(s);
    json_decref(en);
    json_decref(items);
    json_decref(ev);
}

static void test_ownership(void **state)
{
    (void)state;
    struct tlm_error err;
    struct tlm_expr *e = tlm_expr_compile("a.b", &err);
    json_t *ev = parse("{\"a\": {\"b\": [1, 2]}}"), *out = NULL;
    assert_int_equal(tlm_expr_eval(e, ev, NULL, &out, &err), 1);
    /* the result is a new reference: it outlives the event */
    json_decref(ev);
    assert_int_equal(json_array_size(out), 2);
    json_decref(out);
    tlm_expr_destroy(e);

    /* a literal result outlives the expression */
    e = tlm_expr_compile("\"lit\"", &err);
    assert_int_equal(tlm_expr_eval(e, NULL, NULL, &out, &err), 1);
    tlm_expr_destroy(e);
    assert_string_equal(json_string_value(out), "lit");
    json_decref(out);

    /* nothing stores NULL */
    e = tlm_expr_compile("missing", &err);
    out = (json_t *)1;
    ev = parse("{}");
    assert_int_equal(tlm_expr_eval(e, ev, NULL, &out, &err), 0);
    assert_null(out);
    json_decref(ev);
    tlm_expr_destroy(e);

    /* the same expression evaluates many times */
    e = tlm_expr_compile("count($.x[?match(@, 'a+')]) + length(concat(\"x\", n))", &err);
    assert_non_null(e);
    for (int i = 0; i < 100; i++) {
        ev = json_pack("{s:[s,s,s],s:i}", "x", "aa", "b", "a", "n", i);
        assert_int_equal(tlm_expr_eval(e, ev, NULL, &out, &err), 1);
        assert_int_equal(json_integer_value(out), 2 + 1 + (i >= 10 ? 2 : 1));
        json_decref(out);
        json_decref(ev);
    }
    tlm_expr_destroy(e);
    tlm_expr_destroy(NULL);
    tlm_jsonpath_destroy(NULL);
}

static int test_of(const char *src, const char *event)
{
    struct tlm_error err;
    struct tlm_expr *e = tlm_expr_compile(src, &err);
    assert_non_null(e);
    json_t *ev = parse(event);
    int r = tlm_expr_test(e, ev, NULL, &err);
    json_decref(ev);
    tlm_expr_destroy(e);
    return r;
}

static void test_truthiness(void **state)
{
    (void)state;
    assert_int_equal(test_of("x", "{}"), 0);
    assert_int_equal(test_of("x", "{\"x\": false}"), 0);
    assert_int_equal(test_of("x", "{\"x\": null}"), 0);
    assert_int_equal(test_of("x", "{\"x\": true}"), 1);
    assert_int_equal(test_of("x", "{\"x\": 0}"), 1);
    assert_int_equal(test_of("x", "{\"x\": \"\"}"), 1);
    assert_int_equal(test_of("x", "{\"x\": []}"), 1);
    assert_int_equal(test_of("x", "{\"x\": {}}"), 1);
    assert_int_equal(test_of("cpu > 90", "{\"cpu\": 95}"), 1);
    assert_int_equal(test_of("cpu > 90", "{\"cpu\": \"95\"}"), 0);
    assert_int_equal(test_of("$.a[?@ > 1]", "{\"a\": [1]}"), 0);
    assert_int_equal(test_of("$.a[?@ > 1]", "{\"a\": [1, 2]}"), 1);
    assert_int_equal(test_of("1 - \"a\"", "{}"), TLM_ETYPE);
    assert_int_equal(test_of("1 / 0", "{}"), TLM_ERANGE);
}

static void test_runtime_error(void **state)
{
    (void)state;
    struct tlm_error err;
    struct tlm_expr *e = tlm_expr_compile("a + (b - c)", &err);
    json_t *ev = parse("{\"a\": 1, \"b\": 2, \"c\": \"x\"}"), *out = NULL;
    assert_int_equal(tlm_expr_eval(e, ev, NULL, &out, &err), TLM_ETYPE);
    assert_null(out);
    assert_int_equal(err.code, TLM_ETYPE);
    assert_string_equal(err.text, "cannot subtract a string from a number");
    assert_int_equal(err.column, 8);
    json_decref(ev);
    tlm_expr_destroy(e);
}

static void test_jsonpath_query(void **state)
{
    (void)state;
    struct tlm_error err;
    struct tlm_jsonpath *p = tlm_jsonpath_compile("$..['a', 0]", &err);
    assert_non_null(p);
    json_t *doc = parse("{\"a\": [\"x\", {\"a\": \"it's\\n\"}]}"), *paths = NULL;
    json_t *got = tlm_jsonpath_query(p, doc, &paths);
    json_t *want = parse("[[\"x\", {\"a\": \"it's\\n\"}], \"x\", \"it's\\n\"]");
    json_t *wantp = parse("[\"$['a']\", \"$['a'][0]\", \"$['a'][1]['a']\"]");
    assert_true(json_equal(got, want));
    assert_true(json_equal(paths, wantp));
    json_decref(got);
    json_decref(paths);
    json_decref(want);
    json_decref(wantp);
    got = tlm_jsonpath_query(p, doc, NULL);
    assert_int_equal(json_array_size(got), 3);
    json_decref(got);
    json_decref(doc);
    tlm_jsonpath_destroy(p);

    p = tlm_jsonpath_compile("$[\"a'\\\\\"]", &err);
    assert_non_null(p);
    doc = parse("{\"a'\\\\\": 1}");
    got = tlm_jsonpath_query(p, doc, &paths);
    assert_int_equal(json_integer_value(json_array_get(got, 0)), 1);
    assert_string_equal(json_string_value(json_array_get(paths, 0)), "$['a\\'\\\\']");
    json_decref(got);
    json_decref(paths);
    json_decref(doc);
    tlm_jsonpath_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_errors), cmocka_unit_test(test_jsonpath_errors),
        cmocka_unit_test(test_root_paths),     cmocka_unit_test(test_bindings),
        cmocka_unit_test(test_ownership),      cmocka_unit_test(test_truthiness),
        cmocka_unit_test(test_runtime_error),  cmocka_unit_test(test_jsonpath_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
