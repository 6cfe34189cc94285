/*
 * test_jscan.c - unit tests of the validating JSON scanner (src/lib/jscan.h).
 *
 * Tables of valid and invalid lines with the exact column and reason, extraction of nested,
 * missing, duplicate and escaped members, the watermark detector, a 1 MiB string, the
 * regression inputs under tests/data/jscan/, and a deterministic differential test: a
 * fixed-seed generator writes JSON-ish lines (valid ones and mutated ones) and every line
 * must be accepted by tlm_json_validate exactly when jansson's json_loadb(..., 0, ...)
 * returns an object, with every extracted member json_equal to jansson's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "buf.h"
#include "error.h"
#include "jscan.h"
#include "path.h"

/* ---- valid and invalid lines ------------------------------------------------------------ */

/* Builds paths from strings like "mem.used" (dot-separated, for tests only). */
struct test_paths {
    struct tlm_path p[16];
    char *segs[16][8];
    char store[16][8][64];
};

static void make_paths(struct test_paths *tp, const char **specs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *s = specs[i];
        size_t k = 0;
        while (*s) {
            size_t l = strcspn(s, ".");
            memcpy(tp->store[i][k], s, l);
            tp->store[i][k][l] = '\0';
            tp->segs[i][k] = tp->store[i][k];
            k++;
            s += l;
            if (*s == '.')
                s++;
        }
        tp->p[i].nseg = k;
        tp->p[i].seg = tp->segs[i];
    }
}

static void assert_span(const struct tlm_jval *v, enum tlm_jtype t, const char *text)
{
    assert_int_equal(v->type, t);
    assert_int_equal(v->n, strlen(text));
    assert_memory_equal(v->p, text, v->n);
}


struct bad_case {
    const char *line;
    size_t len; /* 0: strlen(line) */
    long column;
    const char *reason;
};

#define BAD(s, col, why) { s, sizeof(s) - 1, col, why }

static const struct bad_case bad_cases[] = {
    BAD("", 1, "empty line (expected a JSON object)"),
    BAD("  \t", 4, "empty line (expected a JSON object)"),
    BAD("[1,2]", 1, "not a JSON object"),
    BAD("1", 1, "not a JSON object"),
    BAD("\"a\"", 1, "not a JSON object"),
    BAD("\xef\xbb\xbf{}", 1, "not a JSON object"),
    BAD("\xff{}", 1, "invalid UTF-8 byte 0xff"),
    BAD("\f{}", 1, "not a JSON object"),
    BAD("{", 2, "unexpected end of line"),
    BAD("{\"a\"", 5, "unexpected end of line"),
    BAD("{\"a\":", 6, "unexpected end of line"),
    BAD("{\"a\":1", 7, "unexpected end of line"),
    BAD("{\"a\":1,", 8, "unexpected end of line"),
    BAD("{\"a", 4, "unexpected end of line"),
    BAD("{\"a\":1,}", 8, "expected a member name (a string)"),
    BAD("{a:1}", 2, "expected a member name (a string)"),
    BAD("{\"a\" 1}", 6, "expected ':' after a member name"),
    BAD("{\"a\":1 \"b\":2}", 8, "expected ',' or '}' after a member value"),
    BAD("{\"a\":[1,]}", 9, "unexpected character ']' (expected a value)"),
    BAD("{\"a\":[1 2]}", 9, "expected ',' or ']' after an array element"),
    BAD("{\"a\":1}x", 8, "unexpected data after the object"),
    BAD("{\"a\":1}{}", 8, "unexpected data after the object"),
    BAD("{\"a\":1}\0", 8, "unexpected data after the object"),
    BAD("{\"a\":tru}", 6, "invalid literal (expected true)"),
    BAD("{\"a\":nul", 9, "unexpected end of line"),
    BAD("{\"a\":NULL}", 6, "unexpected character 'N' (expected a value)"),
    BAD("{\"a\":true1}", 10, "expected ',' or '}' after a member value"),
    BAD("{\"a\":01}", 6, "invalid number (leading zero)"),
    BAD("{\"a\":-01}", 7, "invalid number (leading zero)"),
    BAD("{\"a\":1.}", 7, "invalid number (digit expected after '.')"),
    BAD("{\"a\":.5}", 6, "unexpected character '.' (expected a value)"),
    BAD("{\"a\":1e}", 8, "invalid number (digit expected in exponent)"),
    BAD("{\"a\":1e+}", 9, "invalid number (digit expected in exponent)"),
    BAD("{\"a\":-}", 6, "invalid number"),
    BAD("{\"a\":+1}", 6, "unexpected character '+' (expected a value)"),
    BAD("{\"a\":1x}", 7, "expected ',' or '}' after a member value"),
    BAD("{\"a\":9223372036854775808}", 6, "too big integer"),
    BAD("{\"a\":-9223372036854775809}", 6, "too big negative integer"),
    BAD("{\"a\":123456789012345678901234567890}", 6, "too big integer"),
    BAD("{\"a\":1e309}", 6, "real number overflow"),
    BAD("{\"a\":-1.7976931348623159e308}", 6, "real number overflow"),
    BAD("{\"a\":\"\\q\"}", 7, "invalid escape '\\q' in string"),
    BAD("{\"a\":\"\\\x01\"}", 7, "invalid escape (backslash before byte 0x01) in string"),
    BAD("{\"a\":\"\\u12G4\"}", 7, "invalid \\u escape in string (4 hex digits expected)"),
    BAD("{\"a\":\"\\u12", 11, "unexpected end of line"),
    BAD("{\"a\":\"\\u0000\"}", 7, "\\u0000 is not allowed in a string"),
    BAD("{\"\\u0000\":1}", 3, "\\u0000 is not allowed in a member name"),
    BAD("{\"a\":\"\\ud800\"}", 7, "invalid Unicode '\\uD800' (lone high surrogate) in string"),
    BAD("{\"a\":\"\\udc00\"}", 7, "invalid Unicode '\\uDC00' (lone low surrogate) in string"),
    BAD("{\"a\":\"\\ud800\\u0041\"}", 7,
        "invalid Unicode '\\uD800\\u0041' (bad surrogate pair) in string"),
    BAD("{\"a\":\"\\ud800\\n\"}", 7, "invalid Unicode '\\uD800' (lone high surrogate) in string"),
    BAD("{\"a\":\"x\x01\"}", 8, "control character 0x01 in string"),
    BAD("{\"a\":\"x\ty\"}", 8, "control character 0x09 in string"),
    BAD("{\"a\":\"\xc0\x80\"}", 7, "invalid UTF-8 byte 0xc0 in string"),
    BAD("{\"a\":\"\xed\xa0\x80\"}", 7, "invalid UTF-8 byte 0xed in string"),
    BAD("{\"a\":\"\xf4\x90\x80\x80\"}", 7, "invalid UTF-8 byte 0xf4 in string"),
    BAD("{\"a\":\"\xe2\x82\"}", 7, "invalid UTF-8 byte 0xe2 in string"),
    BAD("{\"a\":\"\x80\"}", 7, "invalid UTF-8 byte 0x80 in string"),
    BAD("{\"a\":\xc3\xa9}", 6, "unexpected byte 0xc3 (expected a value)"),
    BAD("{\"a\":\"x\"\xc3\xa9}", 9, "expected ',' or '}' after a member value"),
    /* one NUL after a number or literal vanishes (jansson quirk), a second one does not */
    BAD("{\"a\":1\0\0}", 8, "expected ',' or '}' after a member value"),
    BAD("{\"a\":\"x\"\0}", 9, "expected ',' or '}' after a member value"),
    BAD("{\"a\":\0 1}", 6, "unexpected byte 0x00 (expected a value)"),
    BAD("{\"a\":1}\0", 8, "unexpected data after the object"),
};

static const char *good_lines[] = {
    "{}",
    " \t\r\n{ } \r\n",
    "{\"a\":1}\n",
    "{\"a\":-0,\"b\":-0.0,\"c\":0e99999,\"d\":1e-400,\"e\":1E+2,\"f\":1.7976931348623157e308}",
    "{\"a\":9223372036854775807,\"b\":-9223372036854775808}",
    "{\"a\":\"\\ud83d\\ude00 \\u00e9 \\/\\b\\f\\n\\r\\t\\\"\\\\\",\"b\":\"\x7f\xc3\xa9\xf0\x9f\x98\x80\"}",
    "{\"a\":[],\"b\":{},\"c\":[{}, [true, false, null]],\"d\":\"\"}",
    "{\"a\":1,\"a\":2}",
    "{\"a\":0.000000000000000000000000000000000000000000000000001e359}",
};

static void test_bad_lines(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct tlm_error err;
        tlm_error_clear(&err);
        int rc = tlm_json_validate(c->line, c->len, &err);
        if (rc != TLM_EPARSE || err.column != c->column || strcmp(err.text, c->reason) != 0)
            print_error("case %zu %s: rc %d column %ld '%s'\n", i, c->line, rc, err.column,
                        err.text);
        assert_int_equal(rc, TLM_EPARSE);
        assert_int_equal(err.code, TLM_EPARSE);
        assert_int_equal(err.column, c->column);
        assert_string_equal(err.text, c->reason);
        /* jansson agrees that it is not an object */
        json_t *j = json_loadb(c->line, c->len, 0, NULL);
        assert_true(j == NULL || !json_is_object(j));
        json_decref(j);
    }
}

static void test_good_lines(void **state)
{
    (void)state;
    /* jansson quirk: a NUL byte right after a number or literal is dropped */
    static const char nul1[] = "{\"a\":1\0,\"b\":true\0,\"c\":[null\0,-2.5e3\0]}";
    static const char *specs[] = { "a", "c" };
    struct test_paths tp;
    struct tlm_jval out[2];
    struct tlm_error e;
    make_paths(&tp, specs, 2);
    struct tlm_jscan *s = tlm_jscan_create(tp.p, 2);
    assert_int_equal(tlm_jscan_run(s, nul1, sizeof(nul1) - 1, out, &e), 0);
    assert_span(&out[0], TLM_JINT, "1");
    assert_int_equal(out[1].type, TLM_JARRAY);
    assert_int_equal(out[1].n, 15); /* [null<NUL>,-2.5e3<NUL>] */
    tlm_jscan_destroy(s);
    json_t *jn = json_loadb(nul1, sizeof(nul1) - 1, 0, NULL);
    assert_non_null(jn);
    json_decref(jn);
    for (size_t i = 0; i < sizeof(good_lines) / sizeof(good_lines[0]); i++) {
        struct tlm_error err;
        tlm_error_clear(&err);
        assert_int_equal(tlm_json_validate(good_lines[i], strlen(good_lines[i]), &err), 0);
        json_t *j = json_loadb(good_lines[i], strlen(good_lines[i]), 0, NULL);
        assert_non_null(j);
        json_decref(j);
    }
}

/* "{"a":" + levels '[' + inner + levels ']' + "}" */
static char *nested(int levels, const char *inner, size_t *n)
{
    size_t il = strlen(inner);
    char *s = malloc(2 * (size_t)levels + il + 8);
    size_t k = 0;
    memcpy(s, "{\"a\":", 5);
    k = 5;
    for (int i = 0; i < levels; i++)
        s[k++] = '[';
    memcpy(s + k, inner, il);
    k += il;
    for (int i = 0; i < levels; i++)
        s[k++] = ']';
    s[k++] = '}';
    *n = k;
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    struct tlm_error err;
    size_t n;
    /* object (1) + 2046 arrays + a scalar = 2048 levels: the deepest jansson takes */
    char *s = nested(2046, "1", &n);
    assert_int_equal(tlm_json_validate(s, n, &err), 0);
    free(s);
    s = nested(2047, "", &n);
    assert_int_equal(tlm_json_validate(s, n, &err), 0);
    free(s);
    s = nested(2047, "1", &n);
    assert_int_equal(tlm_json_validate(s, n, &err), TLM_EPARSE);
    assert_int_equal(err.column, 5 + 2047 + 1);
    assert_string_equal(err.text, "nesting deeper than 2048 levels");
    free(s);
    s = nested(100000, "", &n);
    assert_int_equal(tlm_json_validate(s, n, &err), TLM_EPARSE);
    assert_int_equal(err.column, 5 + 2048);
    free(s);
}

/* ---- extraction ------------------------------------------------------------------------- */

static void test_extract(void **state)
{
    (void)state;
    static const char *specs[] = { "deviceId", "mem.used", "mem.total", "missing", "a.b.c",
                                   "s", "t", "f", "z", "arr", "arr.x", "esc", "r", "deviceId" };
    size_t np = sizeof(specs) / sizeof(specs[0]);
    struct test_paths tp;
    make_paths(&tp, specs, np);
    struct tlm_jscan *s = tlm_jscan_create(tp.p, np);
    assert_non_null(s);
    assert_int_equal(tlm_jscan_npaths(s), np);
    const char *line = "{\"deviceId\":\"device-11\",\"mem\":{\"used\":41.5,\"x\":[1,{\"used\":2}]},"
                       "\"a\":{\"b\":{\"c\":null}},\"s\":\"x\\ny\",\"t\":true,\"f\":false,"
                       "\"z\":-12,\"arr\":[1,2],\"\\u0065sc\":{\"k\":\"v\"},\"r\":1e2}";
    struct tlm_jval out[16];
    struct tlm_error err;
    assert_int_equal(tlm_jscan_run(s, line, strlen(line), out, &err), 0);
    assert_span(&out[0], TLM_JSTRING, "\"device-11\"");
    assert_int_equal(out[0].escaped, 0);
    assert_span(&out[1], TLM_JREAL, "41.5");
    assert_int_equal(out[2].type, TLM_JNONE);
    assert_null(out[2].p);
    assert_int_equal(out[3].type, TLM_JNONE);
    assert_span(&out[4], TLM_JNULL, "null");
    assert_span(&out[5], TLM_JSTRING, "\"x\\ny\"");
    assert_int_equal(out[5].escaped, 1);
    assert_span(&out[6], TLM_JTRUE, "true");
    assert_span(&out[7], TLM_JFALSE, "false");
    assert_span(&out[8], TLM_JINT, "-12");
    assert_span(&out[9], TLM_JARRAY, "[1,2]");
    assert_int_equal(out[10].type, TLM_JNONE); /* a path through an array yields nothing */
    assert_span(&out[11], TLM_JOBJECT, "{\"k\":\"v\"}"); /* "\u0065sc" is "esc" */
    assert_span(&out[12], TLM_JREAL, "1e2");
    assert_span(&out[13], TLM_JSTRING, "\"device-11\""); /* the same path twice */

    double d;
    long long i;
    assert_int_equal(tlm_jval_double(&out[1], &d), 0);
    assert_true(d == 41.5);
    assert_int_equal(tlm_jval_double(&out[8], &d), 0);
    assert_true(d == -12.0);
    assert_int_equal(tlm_jval_double(&out[12], &d), 0);
    assert_true(d == 100.0);
    assert_int_equal(tlm_jval_double(&out[0], &d), TLM_ETYPE);
    assert_int_equal(tlm_jval_int64(&out[8], &i), 0);
    assert_int_equal(i, -12);
    assert_int_equal(tlm_jval_int64(&out[12], &i), TLM_ETYPE);
    assert_int_equal(tlm_jval_int64(&out[2], &i), TLM_ETYPE);

    struct tlm_buf b = TLM_BUF_INIT;
    assert_int_equal(tlm_jval_string(&out[5], &b), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "x\ny", 3);
    assert_int_equal(tlm_jval_string(&out[0], &b), 0);
    assert_string_equal(b.data, "x\nydevice-11");
    assert_int_equal(tlm_jval_string(&out[1], &b), TLM_ETYPE);
    tlm_buf_free(&b);

    json_t *j = tlm_jval_to_json(&out[11]);
    json_t *want = json_pack("{s:s}", "k", "v");
    assert_true(json_equal(j, want));
    json_decref(j);
    json_decref(want);
    assert_null(tlm_jval_to_json(&out[3]));
    tlm_jscan_destroy(s);
    tlm_jscan_destroy(NULL);
}

static void test_duplicates(void **state)
{
    (void)state;
    static const char *specs[] = { "a", "a.b", "c" };
    struct test_paths tp;
    make_paths(&tp, specs, 3);
    struct tlm_jscan *s = tlm_jscan_create(tp.p, 3);
    struct tlm_jval out[3];
    struct tlm_error err;
    const char *l1 = "{\"a\":{\"b\":1},\"c\":1,\"a\":2,\"c\":\"x\"}";
    assert_int_equal(tlm_jscan_run(s, l1, strlen(l1), out, &err), 0);
    assert_span(&out[0], TLM_JINT, "2");
    assert_int_equal(out[1].type, TLM_JNONE); /* the later "a" replaced the object */
    assert_span(&out[2], TLM_JSTRING, "\"x\"");
    const char *l2 = "{\"a\":{\"b\":1},\"a\":{\"c\":2}}";
    assert_int_equal(tlm_jscan_run(s, l2, strlen(l2), out, &err), 0);
    assert_span(&out[0], TLM_JOBJECT, "{\"c\":2}");
    assert_int_equal(out[1].type, TLM_JNONE);
    const char *l3 = "{\"a\":{\"b\":1,\"b\":[3]},\"\\u0061\":{\"b\":4,\"b\":5}}";
    assert_int_equal(tlm_jscan_run(s, l3, strlen(l3), out, &err), 0);
    assert_span(&out[1], TLM_JINT, "5");
    /* escaped keys match unescaped names, including non-ASCII and surrogate pairs */
    static const char *specs2[] = { "caf\xc3\xa9", "\xf0\x9f\x98\x80", "q\"/\\", "tab\t" };
    struct test_paths tp2;
    make_paths(&tp2, specs2, 4);
    struct tlm_jscan *s2 = tlm_jscan_create(tp2.p, 4);
    struct tlm_jval o2[4];
    const char *l4 = "{\"caf\\u00e9\":1,\"\\ud83d\\ude00\":2,\"q\\\"\\/\\\\\":3,\"tab\\t\":4,"
                     "\"caf\\u00e9x\":5,\"tab\":6}";
    assert_int_equal(tlm_jscan_run(s2, l4, strlen(l4), o2, &err), 0);
    assert_span(&o2[0], TLM_JINT, "1");
    assert_span(&o2[1], TLM_JINT, "2");
    assert_span(&o2[2], TLM_JINT, "3");
    assert_span(&o2[3], TLM_JINT, "4");
    /* an invalid line reports the error even when the fields were found first */
    const char *l5 = "{\"a\":1,\"c\":2,\"d\":\"\\x\"}";
    assert_int_equal(tlm_jscan_run(s, l5, strlen(l5), out, &err), TLM_EPARSE);
    assert_int_equal(err.column, 19);
    assert_string_equal(err.text, "invalid escape '\\x' in string");
    tlm_jscan_destroy(s);
    tlm_jscan_destroy(s2);
    struct tlm_path empty = { 0, NULL };
    assert_null(tlm_jscan_create(&empty, 1));
    struct tlm_jscan *none = tlm_jscan_create(NULL, 0);
    assert_non_null(none);
    assert_int_equal(tlm_jscan_run(none, "{\"a\":1}", 7, NULL, &err), 0);
    tlm_jscan_destroy(none);
}

static void test_values(void **state)
{
    (void)state;
    static const char *specs[] = { "v" };
    struct test_paths tp;
    make_paths(&tp, specs, 1);
    struct tlm_jscan *s = tlm_jscan_create(tp.p, 1);
    static const char *vals[] = { "0", "-0", "-0.0", "27.508", "78.986", "1e-400", "5e-324",
                                  "2.2250738585072011e-308", "1.7976931348623157e308",
                                  "123456789012345678901234567890.5", "0.1e1", "-1E-2",
                                  "9007199254740993.0", "4.9406564584124654e-324",
                                  "9223372036854775807", "-9223372036854775808",
                                  "\"\\ud83d\\ude00\\u20ac\\u0001\"", "[1,{\"a\":[]}]", "{}" };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        char line[256];
        struct tlm_jval v;
        struct tlm_error err;
        int n = snprintf(line, sizeof(line), "{\"v\": %s }", vals[i]);
        assert_int_equal(tlm_jscan_run(s, line, (size_t)n, &v, &err), 0);
        assert_int_equal(v.n, strlen(vals[i]));
        json_t *all = json_loadb(line, (size_t)n, 0, NULL);
        json_t *mine = tlm_jval_to_json(&v);
        assert_non_null(mine);
        assert_true(json_equal(mine, json_object_get(all, "v")));
        if (json_is_real(mine)) {
            double d;
            assert_int_equal(tlm_jval_double(&v, &d), 0);
            assert_memory_equal(&d, &((double){ json_real_value(mine) }), sizeof(d));
        }
        json_decref(mine);
        json_decref(all);
    }
    tlm_jscan_destroy(s);
}

static void test_watermark(void **state)
{
    (void)state;
    long long ms = 0;
    assert_int_equal(tlm_json_is_watermark("{\"__watermark\":1700000000123}", 29, &ms), 1);
    assert_int_equal(ms, 1700000000123LL);
    const char *w2 = " { \"__watermark\" : -5 } \n";
    assert_int_equal(tlm_json_is_watermark(w2, strlen(w2), &ms), 1);
    assert_int_equal(ms, -5);
    static const char *no[] = {
        "{\"__watermark\":1.5}", "{\"__watermark\":\"1\"}", "{\"__watermark\":1,\"a\":2}",
        "{\"a\":2,\"__watermark\":1}", "{\"__watermark\":01}", "{\"__watermark\":1}x",
        "{\"__watermark\":99999999999999999999}", "{\"__watermarks\":1}", "{\"__watermark\":}",
        "{\"__w\":1}", "{\"deviceId\":\"device-11\",\"timestamp\":1700000000123}", "", "{",
        "{\"__watermark\":1", "{\"\\u005f_watermark\":1}", "{\"__watermark\":1,\"__watermark\":2}",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        ms = 42;
        assert_int_equal(tlm_json_is_watermark(no[i], strlen(no[i]), &ms), 0);
        assert_int_equal(ms, 42);
    }
    assert_int_equal(tlm_json_is_watermark("{\"__watermark\":7}", 17, NULL), 1);
}

static void test_long_line(void **state)
{
    (void)state;
    size_t big = 1 << 20;
    char *line = malloc(big + 64);
    size_t n = 0;
    n += (size_t)sprintf(line, "{\"x\":1,\"big\":\"");
    for (size_t i = 0; i < big; i++)
        line[n++] = (char)('a' + i % 26);
    line[n++] = '\\';
    line[n++] = 'n';
    n += (size_t)sprintf(line + n, "\",\"y\":2}");
    static const char *specs[] = { "big", "y" };
    struct test_paths tp;
    make_paths(&tp, specs, 2);
    struct tlm_jscan *s = tlm_jscan_create(tp.p, 2);
    struct tlm_jval out[2];
    struct tlm_error err;
    assert_int_equal(tlm_jscan_run(s, line, n, out, &err), 0);
    assert_int_equal(out[0].type, TLM_JSTRING);
    assert_int_equal(out[0].n, big + 4);
    assert_span(&out[1], TLM_JINT, "2");
    struct tlm_buf b = TLM_BUF_INIT;
    assert_int_equal(tlm_jval_string(&out[0], &b), 0);
    assert_int_equal(b.len, big + 1);
    assert_int_equal(b.data[big], '\n');
    assert_int_equal(b.data[big - 1], 'a' + (big - 1) % 26);
    tlm_buf_free(&b);
    /* a control byte deep inside is found at its column */
    line[14 + 777777] = '\x1f';
    assert_int_equal(tlm_json_validate(line, n, &err), TLM_EPARSE);
    assert_int_equal(err.column, 14 + 777777 + 1);
    assert_string_equal(err.text, "control character 0x1f in string");
    tlm_jscan_destroy(s);
    free(line);
}

/* ---- differential against jansson --------------------------------------------------------- */

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static unsigned rn(struct rng *r, unsigned n)
{
    return (unsigned)(rnd(r) % n);
}

static void put(struct tlm_buf *b, const char *s)
{
    tlm_buf_puts(b, s);
}

static const char *const keys[] = { "a", "b", "deviceId", "cpu", "t", "\\u0061", "x\\ny",
                                    "caf\xc3\xa9", "\\ud83d\\ude00", "" };
static const char *const numbers[] = {
    "0", "-0", "1", "-1", "27.508", "1e2", "1E-2", "0.1", "-0.0", "1e308", "1e309", "-1e309",
    "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "1e-400",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "12345678901234567890", "00", "01", "1.", ".1", "1e", "1e+",
    "-", "+1", "0x10", "1.5e+3", "123456789012345678901234567890.0", "0e999999999999",
    "100000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000.0",
    "0.0000000000000000000000000000000000000000001e351", "4.9e-324", "2.5e-324", "NaN",
    "Infinity", "1e0000000000000000000000308", "-1e0000000000000000000000309",
};
static const char *const strings[] = {
    "", "x", "\\u0000", "\\ud800", "\\udc00", "\\ud800\\udc00", "\\udbff\\udfff",
    "\\ud800\\u0041", "\\uD83D\\uDE00", "\\u00e9", "\\u20AC", "\\q", "\\u12", "\\u12g4", "\\/",
    "\\\"", "\\\\", "\\b\\f\\n\\r\\t", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xc0\x80",
    "\xed\xa0\x80", "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xe2\x82", "\x80", "\xff",
    "\xef\xbb\xbf", "\xf0\x9f\x98\x80", "\t", "\\u0020", "\\uFFFF", "\\ud800\\\\", "\\", "\\ud800\\",
};

static void gen_value(struct rng *r, struct tlm_buf *b, int depth);

static void gen_string(struct rng *r, struct tlm_buf *b)
{
    put(b, "\"");
    unsigned n = rn(r, 4);
    for (unsigned i = 0; i < n; i++) {
        if (rn(r, 3) == 0)
            put(b, strings[rn(r, sizeof(strings) / sizeof(strings[0]))]);
        else
            tlm_buf_putc(b, (char)('a' + rn(r, 26)));
    }
    put(b, "\"");
}

static void gen_object(struct rng *r, struct tlm_buf *b, int depth)
{
    unsigned n = rn(r, depth ? 4 : 7);
    put(b, "{");
    for (unsigned i = 0; i < n; i++) {
        if (i)
            put(b, rn(r, 8) ? "," : " , ");
        if (rn(r, 5) == 0) {
            gen_string(r, b);
        } else {
            put(b, "\"");
            put(b, keys[rn(r, sizeof(keys) / sizeof(keys[0]))]);
            put(b, "\"");
        }
        put(b, rn(r, 6) ? ":" : " :\t");
        gen_value(r, b, depth + 1);
    }
    put(b, rn(r, 10) ? "}" : "\r\n}");
}

static void gen_value(struct rng *r, struct tlm_buf *b, int depth)
{
    unsigned k = rn(r, depth > 4 ? 7 : 10);
    switch (k) {
    case 0: case 1:
        put(b, numbers[rn(r, sizeof(numbers) / sizeof(numbers[0]))]);
        break;
    case 2:
        tlm_buf_printf(b, "%lld", (long long)rnd(r) >> rn(r, 64));
        break;
    case 3: case 4:
        gen_string(r, b);
        break;
    case 5:
        put(b, (const char *[]){ "true", "false", "null", "tru", "nul", "True" }[rn(r, 6)]);
        break;
    case 6:
        tlm_buf_printf(b, "%.*g", 1 + (int)rn(r, 17), (double)rnd(r) / (double)(rnd(r) | 1));
        break;
    case 7: case 8:
        gen_object(r, b, depth);
        break;
    default: {
        unsigned n = rn(r, 4);
        put(b, "[");
        for (unsigned i = 0; i < n; i++) {
            if (i)
                put(b, ",");
            gen_value(r, b, depth + 1);
        }
        put(b, "]");
    }
    }
}

static const char specials[] = "{}[]\",:\\ \t\r\n0-1.eE+ux\x00\x01\x7f\x80\xc3\xff";

static void mutate(struct rng *r, struct tlm_buf *b)
{
    unsigned m = 1 + rn(r, 3);
    for (unsigned i = 0; i < m && b->len; i++) {
        size_t at = rn(r, (unsigned)b->len);
        switch (rn(r, 4)) {
        case 0: /* byte flip */
            b->data[at] = (char)(b->data[at] ^ (1u << rn(r, 8)));
            break;
        case 1: /* truncation */
            b->len = at;
            break;
        case 2: /* insertion of a special byte */
            tlm_buf_putc(b, 0);
            memmove(b->data + at + 1, b->data + at, b->len - at - 1);
            b->data[at] = specials[rn(r, sizeof(specials) - 1)];
            break;
        default: /* deletion */
            memmove(b->data + at, b->data + at + 1, b->len - at - 1);
            b->len--;
        }
    }
}

static void deep(struct rng *r, struct tlm_buf *b)
{
    int levels = 2040 + (int)rn(r, 12);
    put(b, "{\"a\":");
    for (int i = 0; i < levels; i++)
        put(b, rn(r, 2) ? "[" : "{\"k\":");
    /* close in the reverse order: read the kinds back from what was written */
    struct tlm_buf kinds = TLM_BUF_INIT;
    for (size_t i = 5; i < b->len;) {
        if (b->data[i] == '[') {
            tlm_buf_putc(&kinds, ']');
            i++;
        } else {
            tlm_buf_putc(&kinds, '}');
            i += 5;
        }
    }
    put(b, rn(r, 2) ? "1" : "[]");
    for (size_t i = kinds.len; i-- > 0;)
        tlm_buf_putc(b, kinds.data[i]);
    put(b, "}");
    tlm_buf_free(&kinds);
}

/* Compares one line; returns 1 if jansson accepted it. */
static int check_line(const char *line, size_t n)
{
    json_error_t jerr;
    struct tlm_error err;
    json_t *j = json_loadb(line, n, 0, &jerr);
    int want = j && json_is_object(j);
    int got = tlm_json_validate(line, n, &err) == 0;
    if (want != got) {
        print_error("disagreement (jansson %d, jscan %d: %s / %s) on %zu bytes:", want, got,
                    j ? "ok" : jerr.text, err.text, n);
        for (size_t i = 0; i < n && i < 400; i++)
            print_error(line[i] >= 0x20 && line[i] < 0x7f ? "%c" : "\\x%02x", (unsigned char)line[i]);
        print_error("\n");
        fail();
    }
    if (!want) {
        json_decref(j);
        return 0;
    }
    /* extract every top-level member, the members of member objects, and a missing one */
    struct tlm_path paths[64];
    char *segs[64][2];
    size_t np = 0;
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        if (np >= 63)
            break;
        segs[np][0] = (char *)key;
        paths[np].nseg = 1;
        paths[np].seg = segs[np];
        np++;
        if (json_is_object(val)) {
            const char *k2;
            json_t *v2;
            json_object_foreach(val, k2, v2)
            {
                if (np >= 63)
                    break;
                segs[np][0] = (char *)key;
                segs[np][1] = (char *)k2;
                paths[np].nseg = 2;
                paths[np].seg = segs[np];
                np++;
            }
        }
    }
    segs[np][0] = "no such member";
    paths[np].nseg = 1;
    paths[np].seg = segs[np];
    np++;
    struct tlm_jscan *s = tlm_jscan_create(paths, np);
    struct tlm_jval out[64];
    assert_non_null(s);
    assert_int_equal(tlm_jscan_run(s, line, n, out, &err), 0);
    for (size_t i = 0; i < np; i++) {
        json_t *expect = json_object_get(j, paths[i].seg[0]);
        if (paths[i].nseg == 2)
            expect = json_object_get(expect, paths[i].seg[1]);
        if (!expect) {
            assert_int_equal(out[i].type, TLM_JNONE);
            continue;
        }
        json_t *mine = tlm_jval_to_json(&out[i]);
        if (!json_equal(mine, expect)) {
            print_error("value of member %zu differs in %.*s\n", i, (int)n, line);
            fail();
        }
        if (json_is_number(expect)) {
            double d;
            assert_int_equal(tlm_jval_double(&out[i], &d), 0);
            assert_true(d == json_number_value(expect));
        }
        if (json_is_string(expect)) {
            struct tlm_buf sb = TLM_BUF_INIT;
            assert_int_equal(tlm_jval_string(&out[i], &sb), 0);
            assert_int_equal(sb.len, json_string_length(expect));
            assert_memory_equal(sb.data ? sb.data : "", json_string_value(expect), sb.len);
            tlm_buf_free(&sb);
        }
        json_decref(mine);
    }
    tlm_jscan_destroy(s);
    json_decref(j);
    return 1;
}

static void test_differential(void **state)
{
    (void)state;
    struct rng r = { 0x9e3779b97f4a7c15ULL };
    struct tlm_buf b = TLM_BUF_INIT;
    long accepted = 0, total = 200000;
    for (long i = 0; i < total; i++) {
        tlm_buf_reset(&b);
        if (i % 2000 == 0)
            deep(&r, &b);
        else
            gen_object(&r, &b, 0);
        if (rn(&r, 2))
            mutate(&r, &b);
        accepted += check_line(b.data ? b.data : "", b.len);
    }
    tlm_buf_free(&b);
    /* both kinds are well represented */
    assert_true(accepted > total / 10);
    assert_true(accepted < total * 9 / 10);
}

/* Regression inputs: tests/data/jscan/regressions.ndjson, one case per line (fuzz finds and
 * hand-written edge cases); each is checked differentially like the generated lines. */
static void test_regressions(void **state)
{
    (void)state;
    const char *top = getenv("top_srcdir");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/data/jscan/regressions.ndjson", top ? top : ".");
    FILE *f = fopen(path, "rb");
    if (!f)
        skip();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            len--;
        check_line(line, (size_t)len);
        n++;
    }
    free(line);
    fclose(f);
    assert_true(n > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_lines),     cmocka_unit_test(test_good_lines),
        cmocka_unit_test(test_depth),         cmocka_unit_test(test_extract),
        cmocka_unit_test(test_duplicates),    cmocka_unit_test(test_values),
        cmocka_unit_test(test_watermark),     cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_differential),  cmocka_unit_test(test_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
