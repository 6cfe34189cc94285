/* test_time.c - units, RFC 3339, durations and watermarks (lib/time.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "time.h"

static void test_units(void **state)
{
    enum tlm_time_unit u;
    (void)state;
    assert_int_equal(tlm_time_unit_parse("ms", &u, NULL), 0);
    assert_int_equal(u, TLM_UNIT_MS);
    assert_int_equal(tlm_time_unit_parse("\xc2\xb5s", &u, NULL), 0);
    assert_int_equal(u, TLM_UNIT_US);
    assert_int_equal(tlm_time_unit_parse("min", &u, NULL), TLM_EINVAL);
    assert_int_equal(tlm_time_unit_guess(1700000000), TLM_UNIT_S);
    assert_int_equal(tlm_time_unit_guess(1700000000123.0), TLM_UNIT_MS);
    assert_int_equal(tlm_time_unit_guess(12385439653.0), TLM_UNIT_MS); /* seed 001 */
    assert_int_equal(tlm_time_unit_guess(1700000000123456.0), TLM_UNIT_US);
    assert_int_equal(tlm_time_unit_guess(1700000000123456789.0), TLM_UNIT_NS);
    assert_string_equal(tlm_time_unit_name(TLM_UNIT_NS), "ns");
}

static void test_from_numbers(void **state)
{
    tlm_time_t t;
    struct tlm_error err;
    (void)state;
    tlm_error_clear(&err);
    assert_int_equal(tlm_time_from_int(1700000000, TLM_UNIT_AUTO, &t, &err), 0);
    assert_true(t == INT64_C(1700000000000000000));
    assert_int_equal(tlm_time_from_int(1700000000123, TLM_UNIT_AUTO, &t, &err), 0);
    assert_true(t == INT64_C(1700000000123000000));
    assert_int_equal(tlm_time_from_int(5, TLM_UNIT_MS, &t, &err), 0);
    assert_true(t == 5000000);
    assert_int_equal(tlm_time_from_double(1.5, TLM_UNIT_AUTO, &t, &err), 0);
    assert_true(t == 1500000000);
    assert_int_equal(tlm_time_from_int(INT64_C(9300000000), TLM_UNIT_S, &t, &err), TLM_ERANGE);
    assert_non_null(strstr(err.text, "out of range"));
    assert_int_equal(tlm_time_from_double(1.0 / 0.0, TLM_UNIT_S, &t, &err), TLM_ERANGE);
    assert_true(tlm_time_to_unit(-1, TLM_UNIT_MS) == -1); /* floor, not truncation */
    assert_true(tlm_time_to_unit(1999999, TLM_UNIT_MS) == 1);
}

static void test_rfc3339(void **state)
{
    static const struct { const char *in; int64_t want; } ok[] = {
        { "1970-01-01T00:00:00Z", 0 },
        { "2024-01-01T00:00:00Z", INT64_C(1704067200000000000) },
        { "2024-01-01T02:00:00+02:00", INT64_C(1704067200000000000) },
        { "2023-12-31T19:30:00-04:30", INT64_C(1704067200000000000) },
        { "2024-01-01t00:00:00.25z", INT64_C(1704067200250000000) },
        { "2024-01-01 00:00:00.123456789Z", INT64_C(1704067200123456789) },
        { "2024-01-01T00:00:00.1234567891Z", INT64_C(1704067200123456789) },
        { "2024-02-29T12:00:00Z", INT64_C(1709208000000000000) },
        { "1969-12-31T23:59:59.5Z", INT64_C(-500000000) },
    };
    static const char *bad[] = {
        "2024-01-01", "2024-01-01T00:00:00", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00Zjunk",
        "2024-01-01T00:00:00+2:00", "24-01-01T00:00:00Z", "",
    };
    tlm_time_t t;
    char buf[48];
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(tlm_time_parse_rfc3339(ok[i].in, strlen(ok[i].in), &t, NULL), 0);
        assert_true(t == ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tlm_time_parse_rfc3339(bad[i], strlen(bad[i]), &t, NULL), TLM_EPARSE);
    assert_string_equal(tlm_time_format_rfc3339(INT64_C(1704067200250000000), buf, sizeof(buf)),
                        "2024-01-01T00:00:00.25Z");
    assert_string_equal(tlm_time_format_rfc3339(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
    assert_string_equal(tlm_time_format_rfc3339(-500000000, buf, sizeof(buf)),
                        "1969-12-31T23:59:59.5Z");
}

static void test_durations(void **state)
{
    static const struct { const char *in; int64_t want; } ok[] = {
        { "0", 0 }, { "250ms", 250000000 }, { "10s", INT64_C(10000000000) },
        { "5m", INT64_C(300000000000) }, { "24h", INT64_C(86400000000000) },
        { "7d", INT64_C(604800000000000) }, { "1h30m", INT64_C(5400000000000) },
        { "1.5s", 1500000000 }, { "2us", 2000 }, { "3ns", 3 }, { "1w", INT64_C(604800000000000) },
    };
    static const char *bad[] = { "", "10", "s", "5 m", "5min", "1.5", "-5s", "1e3s" };
    int64_t ns;
    char buf[48];
    struct tlm_error err;
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(tlm_duration_parse(ok[i].in, &ns, NULL), 0);
        assert_true(ns == ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tlm_duration_parse(bad[i], &ns, &err), TLM_EINVAL);
    assert_int_equal(tlm_duration_parse("10", &ns, &err), TLM_EINVAL);
    assert_string_equal(err.text, "duration '10' needs a unit (ns, us, ms, s, m, h, d, w)");
    assert_int_equal(tlm_duration_parse("999999999d", &ns, &err), TLM_ERANGE);
    assert_string_equal(tlm_duration_format(INT64_C(5400000000000), buf, sizeof(buf)), "1h30m");
    assert_string_equal(tlm_duration_format(250000000, buf, sizeof(buf)), "250ms");
    assert_string_equal(tlm_duration_format(0, buf, sizeof(buf)), "0s");
}

static void test_watermark(void **state)
{
    struct tlm_wm w;
    const int64_t ms = TLM_NS_PER_MS;
    (void)state;
    tlm_wm_init(&w, 10 * ms);
    assert_false(tlm_wm_is_late(&w, 0)); /* nothing is late before any time */
    assert_int_equal(tlm_wm_observe(&w, 100 * ms), 1);
    assert_true(w.wm == 89 * ms); /* Flink: highest - delay - 1 ms */
    assert_true(tlm_wm_is_late(&w, 89 * ms));
    assert_false(tlm_wm_is_late(&w, 90 * ms));
    assert_int_equal(tlm_wm_observe(&w, 95 * ms), 0); /* out of order: no change */
    assert_int_equal(tlm_wm_raise(&w, 50 * ms), 0);   /* never lowered */
    assert_int_equal(tlm_wm_raise(&w, 120 * ms), 1);
    assert_true(w.wm == 120 * ms);
    assert_int_equal(tlm_wm_observe(&w, 125 * ms), 0); /* 125-11 < 120 */
    assert_int_equal(tlm_wm_idle(&w, 100 * ms), 1);
    assert_true(w.wm == (125 + 100 - 11) * ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units),      cmocka_unit_test(test_from_numbers),
        cmocka_unit_test(test_rfc3339),    cmocka_unit_test(test_durations),
        cmocka_unit_test(test_watermark),
    };
    return cmocka_run_group_tests_name("time", tests, NULL, NULL);
}
