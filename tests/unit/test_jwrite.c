/*
 * test_jwrite.c - unit tests of the DOM-free JSON writer (src/lib/jwrite.h).
 *
 * Strings must be escaped byte for byte as jansson's json_dumps(JSON_COMPACT) does; doubles
 * must read back to the same bits over millions of random bit patterns and be no longer than
 * the first "%.Ng" (N = 15, 16, 17) that reads back; known values pin the format; and
 * tlm_json_write must equal json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) but for the reals.
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

#include "buf.h"
#include "error.h"
#include "jwrite.h"

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* put_string(s) must equal json_dumps of json_stringn(s) */
static void check_string(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    struct tlm_buf b = TLM_BUF_INIT;
    if (!j) { /* not valid UTF-8: jansson refuses it, so do we */
        assert_int_equal(tlm_json_put_string(&b, s, n), TLM_EINVAL);
        assert_int_equal(b.len, 0);
        tlm_buf_free(&b);
        return;
    }
    char *d = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_int_equal(tlm_json_put_string(&b, s, n), 0);
    assert_int_equal(b.len, strlen(d));
    assert_memory_equal(b.data, d, b.len);
    free(d);
    json_decref(j);
    tlm_buf_free(&b);
}

static void test_strings(void **state)
{
    (void)state;
    static const char *fixed[] = { "", "plain", "q\"uote", "back\\slash", "sl/ash", "\b\f\n\r\t",
                                   "\x01\x02\x1f\x7f", "caf\xc3\xa9", "\xe2\x82\xac",
                                   "\xf0\x9f\x98\x80", "\xc3", "\xed\xa0\x80", "\xff",
                                   "</script>" };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        check_string(fixed[i], strlen(fixed[i]));
    check_string("a\0b", 3); /* NUL is written \u0000 */

    struct tlm_buf b = TLM_BUF_INIT;
    assert_int_equal(tlm_json_put_string(&b, "\x01\"\\/\n\x7f", 6), 0);
    assert_string_equal(b.data, "\"\\u0001\\\"\\\\/\\n\x7f\"");
    tlm_buf_reset(&b);
    assert_int_equal(tlm_json_put_string(&b, "\x1f", 1), 0);
    assert_string_equal(b.data, "\"\\u001F\"");
    /* invalid UTF-8 leaves the buffer as it was */
    tlm_buf_reset(&b);
    tlm_buf_puts(&b, "x");
    assert_int_equal(tlm_json_put_string(&b, "ok\xc0\x80", 4), TLM_EINVAL);
    assert_string_equal(b.data, "x");
    tlm_buf_free(&b);

    /* random strings over an alphabet of interesting bytes and sequences */
    static const char *atoms[] = { "a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f",
                                   "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                   "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\x80", "\xc0\xaf",
                                   "\xed\xbf\xbf", "u" };
    uint64_t seed = 12345;
    char s[64];
    for (int i = 0; i < 20000; i++) {
        size_t n = 0;
        unsigned k = (unsigned)(rnd(&seed) % 8);
        for (unsigned j = 0; j < k; j++) {
            const char *a = atoms[rnd(&seed) % (sizeof(atoms) / sizeof(atoms[0]))];
            memcpy(s + n, a, strlen(a));
            n += strlen(a);
        }
        check_string(s, n);
    }
}

static void test_ints(void **state)
{
    (void)state;
    static const long long v[] = { 0, 1, -1, 9, 10, -10, 1700000000123LL, 9223372036854775807LL,
                                   -9223372036854775807LL - 1 };
    static const char *t[] = { "0", "1", "-1", "9", "10", "-10", "1700000000123",
                               "9223372036854775807", "-9223372036854775808" };
    struct tlm_buf b = TLM_BUF_INIT;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        tlm_buf_reset(&b);
        assert_int_equal(tlm_json_put_int(&b, v[i]), 0);
        assert_string_equal(b.data, t[i]);
    }
    tlm_buf_free(&b);
}

static const char *dbl(struct tlm_buf *b, double d)
{
    tlm_buf_reset(b);
    assert_int_equal(tlm_json_put_double(b, d), 0);
    return b->data;
}

static void test_known_doubles(void **state)
{
    (void)state;
    struct tlm_buf b = TLM_BUF_INIT;
    assert_string_equal(dbl(&b, 27.508), "27.508");
    assert_string_equal(dbl(&b, 78.986), "78.986");
    assert_string_equal(dbl(&b, 0.1), "0.1");
    assert_string_equal(dbl(&b, 0.1 + 0.2), "0.30000000000000004");
    assert_string_equal(dbl(&b, 1e300), "1e300");
    assert_string_equal(dbl(&b, -0.0), "-0.0");
    assert_string_equal(dbl(&b, 0.0), "0.0");
    assert_string_equal(dbl(&b, 5e-324), "5e-324");
    assert_string_equal(dbl(&b, 1.0), "1.0");
    assert_string_equal(dbl(&b, -1.0), "-1.0");
    assert_string_equal(dbl(&b, 100.0), "100.0");
    assert_string_equal(dbl(&b, 1e21), "1e21");
    assert_string_equal(dbl(&b, 1e15), "1e15");
    assert_string_equal(dbl(&b, 123456789012345.0), "123456789012345.0");
    assert_string_equal(dbl(&b, 1234567890123456.0), "1234567890123456.0");
    assert_string_equal(dbl(&b, 123456789012345680000.0), "1.2345678901234568e20");
    assert_string_equal(dbl(&b, 1e-7), "1e-7");
    assert_string_equal(dbl(&b, 0.0001), "0.0001");
    assert_string_equal(dbl(&b, 0.00001), "1e-5");
    assert_string_equal(dbl(&b, -0.00012345), "-0.00012345");
    assert_string_equal(dbl(&b, 1.7976931348623157e308), "1.7976931348623157e308");
    assert_string_equal(dbl(&b, 2.2250738585072014e-308), "2.2250738585072014e-308");
    assert_string_equal(dbl(&b, 41.5), "41.5");
    assert_string_equal(dbl(&b, 1.5e-10), "1.5e-10");
    assert_string_equal(dbl(&b, NAN), "null");
    assert_string_equal(dbl(&b, INFINITY), "null");
    assert_string_equal(dbl(&b, -INFINITY), "null");
    /* jansson's own exponent style for the same text */
    json_t *j = json_real(1e300);
    char *d = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    assert_string_equal(d, "1e300");
    free(d);
    json_decref(j);

    tlm_buf_reset(&b);
    assert_int_equal(tlm_json_write_number(&b, 3.0), 0);
    tlm_buf_putc(&b, ' ');
    assert_int_equal(tlm_json_write_number(&b, -0.0), 0);
    tlm_buf_putc(&b, ' ');
    assert_int_equal(tlm_json_write_number(&b, 9007199254740992.0), 0);
    tlm_buf_putc(&b, ' ');
    assert_int_equal(tlm_json_write_number(&b, 18014398509481984.0), 0);
    tlm_buf_putc(&b, ' ');
    assert_int_equal(tlm_json_write_number(&b, 2.5), 0);
    tlm_buf_putc(&b, ' ');
    assert_int_equal(tlm_json_write_number(&b, -7.0), 0);
    tlm_buf_putc(&b, ' ');
    assert_int_equal(tlm_json_write_number(&b, NAN), 0);
    assert_string_equal(b.data, "3 0 9007199254740992 18014398509481984.0 2.5 -7 null");
    tlm_buf_free(&b);
}

/* Significant digits of a number text: the digits before the exponent without leading and
 * trailing zeros ("100.0" has 1, "0.00012345" has 5), i.e. the precision it shows. */
static int sig_digits(const char *s)
{
    char d[64];
    int n = 0;
    for (; *s && *s != 'e' && n < 63; s++)
        if (*s >= '0' && *s <= '9')
            d[n++] = *s;
    int a = 0;
    while (a < n && d[a] == '0')
        a++;
    while (n > a && d[n - 1] == '0')
        n--;
    return n - a;
}

static void check_double(struct tlm_buf *b, double d, int with_jansson)
{
    const char *s = dbl(b, d);
    double back = strtod(s, NULL);
    if (memcmp(&back, &d, sizeof(d)) != 0) {
        print_error("%.17g written as %s reads back as %.17g\n", d, s, back);
        fail();
    }
    /* no "%.Ng" shorter than ours reads back */
    char g[512];
    int prec = 15;
    snprintf(g, sizeof(g), "%.15g", d);
    if (strtod(g, NULL) == d || fabs(d) < 2.2250738585072014e-308) {
        /* search downwards for the smallest precision that reads back */
        while (prec > 1) {
            snprintf(g, sizeof(g), "%.*g", prec - 1, d);
            if (strtod(g, NULL) != d)
                break;
            prec--;
        }
        if (prec == 15) { /* a subnormal may need more than 15 */
            for (; prec < 17; prec++) {
                snprintf(g, sizeof(g), "%.*g", prec, d);
                if (strtod(g, NULL) == d)
                    break;
            }
        }
    } else {
        snprintf(g, sizeof(g), "%.16g", d);
        prec = strtod(g, NULL) == d ? 16 : 17;
    }
    if (sig_digits(s) > prec) {
        print_error("%s has more than %d digits\n", s, prec);
        fail();
    }
    /* and it is what jansson prints with that precision (when 15..17) */
    if (prec >= 15 && with_jansson) {
        json_t *j = json_real(d);
        char *js = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(prec));
        assert_string_equal(s, js);
        free(js);
        json_decref(j);
    }
}

static void test_random_doubles(void **state)
{
    (void)state;
    struct tlm_buf b = TLM_BUF_INIT;
    uint64_t seed = 0x243f6a8885a308d3ULL;
    long n = 0;
    /* random bit patterns: all exponents */
    while (n < 1000000) {
        uint64_t bits = rnd(&seed);
        double d;
        memcpy(&d, &bits, sizeof(d));
        if (!isfinite(d))
            continue;
        check_double(&b, d, (n & 7) == 0);
        n++;
    }
    /* decimals with few digits, the fast path's domain (telemetry readings) */
    for (long i = 0; i < 1000000; i++) {
        uint64_t r = rnd(&seed);
        double d = (double)(long long)(r % 2000000001ULL - 1000000000LL) /
                   pow(10.0, (double)((r >> 40) % 12));
        check_double(&b, d, (i & 7) == 0);
    }
    /* full-precision values in [1e-4, 1e15), the middle path's domain (averages,
     * interpolated quantiles): 16 or 17 digits, each compared with jansson's text */
    for (long i = 0; i < 300000; i++) {
        uint64_t r = rnd(&seed);
        double d = ldexp((double)(r >> 11), (int)((r % 64) - 66)) * pow(10.0, (double)(i % 19) - 4);
        if (!(d >= 1e-4 && d < 1e15))
            continue;
        check_double(&b, (i & 1) ? d : -d, 1);
    }
    tlm_buf_free(&b);
}

static void test_write_values(void **state)
{
    (void)state;
    const char *text = "{\"deviceId\":\"device-11\",\"n\":[1,-2,true,false,null,{},[]],"
                       "\"s\":\"\\u0001\\/\\\"\\u00e9\",\"o\":{\"z\":1,\"a\":{\"\\n\":\"x\"}}}";
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    struct tlm_buf b = TLM_BUF_INIT;
    tlm_buf_puts(&b, ">");
    assert_int_equal(tlm_json_write(&b, j), 0);
    char *d = json_dumps(j, JSON_COMPACT);
    assert_string_equal(b.data + 1, d);
    free(d);
    json_decref(j);
    /* reals: shortest form instead of %.17g */
    j = json_pack("{s:f,s:f,s:i,s:[f]}", "cpu", 27.508, "one", 1.0, "i", 3, "a", 1e300);
    tlm_buf_reset(&b);
    assert_int_equal(tlm_json_write(&b, j), 0);
    assert_string_equal(b.data, "{\"cpu\":27.508,\"one\":1.0,\"i\":3,\"a\":[1e300]}");
    json_decref(j);
    /* scalars (JSON_ENCODE_ANY) */
    tlm_buf_reset(&b);
    j = json_string("x");
    assert_int_equal(tlm_json_write(&b, j), 0);
    assert_string_equal(b.data, "\"x\"");
    json_decref(j);
    /* a string jansson would not dump leaves the buffer alone */
    tlm_buf_reset(&b);
    j = json_pack("{s:[o]}", "k", json_stringn_nocheck("\xff", 1));
    assert_int_equal(tlm_json_write(&b, j), TLM_EINVAL);
    assert_int_equal(b.len, 0);
    json_decref(j);
    assert_int_equal(tlm_json_write(&b, NULL), TLM_EINVAL);
    tlm_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),       cmocka_unit_test(test_ints),
        cmocka_unit_test(test_known_doubles), cmocka_unit_test(test_random_doubles),
        cmocka_unit_test(test_write_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
