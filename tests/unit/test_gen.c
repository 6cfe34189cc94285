/* test_gen.c - the synthetic telemetry generator (lib/gen.c): exact bytes for a seed,
 * determinism, duplicates, disorder and late events within their bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "gen.h"

static void test_golden(void **state)
{
    struct tlm_gen_opts o;
    struct tlm_gen g;
    struct tlm_buf b = TLM_BUF_INIT;
    (void)state;
    tlm_gen_defaults(&o);
    o.count = 3;
    o.devices = 3;
    tlm_gen_init(&g, &o);
    while (tlm_gen_next(&g, &b) > 0)
        ;
    assert_string_equal(b.data,
        "{\"deviceId\":\"device-2\",\"timestamp\":1704067200000,\"cpuUsage\":46.057,\"memUsage\":21.02,\"temperature\":50.2,\"eventId\":1}\n"
        "{\"deviceId\":\"device-0\",\"timestamp\":1704067200001,\"cpuUsage\":55.77,\"memUsage\":71.62,\"temperature\":52.8,\"eventId\":2}\n"
        "{\"deviceId\":\"device-2\",\"timestamp\":1704067200002,\"cpuUsage\":61.966,\"memUsage\":22.41,\"temperature\":54.8,\"eventId\":3}\n");
    tlm_buf_free(&b);
}

static void run(const struct tlm_gen_opts *o, struct tlm_buf *b, long long *lines)
{
    struct tlm_gen g;
    int n;
    tlm_gen_init(&g, o);
    *lines = 0;
    while ((n = tlm_gen_next(&g, b)) > 0)
        *lines += n;
    assert_int_equal(n, 0);
}

static void test_properties(void **state)
{
    struct tlm_gen_opts o;
    struct tlm_buf a = TLM_BUF_INIT, b = TLM_BUF_INIT;
    long long la, lb, dups = 0, late = 0, maxdev = 0;
    (void)state;
    tlm_gen_defaults(&o);
    o.count = 20000;
    o.devices = 50;
    o.rate = 100; /* 10 ms apart */
    o.disorder = 2 * TLM_NS_PER_S;
    o.late_fraction = 0.01;
    o.late_by = 600 * TLM_NS_PER_S;
    o.dup_fraction = 0.05;
    o.seed = 7;
    run(&o, &a, &la);
    run(&o, &b, &lb);
    assert_int_equal(la, lb);
    assert_true(a.len == b.len && memcmp(a.data, b.data, a.len) == 0); /* deterministic */

    /* every line is valid JSON; check bounds */
    char *save = NULL, *prev = NULL;
    long long i = 0, last_id = 0;
    for (char *line = strtok_r(a.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *v = json_loads(line, 0, &je);
        assert_non_null(v);
        long long id = json_integer_value(json_object_get(v, "eventId"));
        long long ts = json_integer_value(json_object_get(v, "timestamp"));
        long long nominal = 1704067200000LL + (id - 1) * 10;
        double cpu = json_real_value(json_object_get(v, "cpuUsage"));
        int dev = atoi(json_string_value(json_object_get(v, "deviceId")) + 7);
        if (prev && strcmp(prev, line) == 0)
            dups++;
        else
            assert_int_equal(id, last_id + 1);
        last_id = id;
        if (ts < nominal - 2000) {
            late++;
            assert_true(ts >= nominal - 600000 - 2000);
        }
        assert_true(ts <= nominal && ts >= nominal - 602000);
        assert_true(cpu >= 0 && cpu <= 100);
        if (dev > maxdev)
            maxdev = dev;
        assert_true(dev >= 0 && dev < 50);
        json_decref(v);
        prev = line;
        i++;
    }
    assert_int_equal(i, la);
    assert_int_equal(la, 20000 + dups);
    assert_true(dups > 800 && dups < 1200);  /* ~5 % */
    assert_true(late > 120 && late < 280);   /* ~1 % */
    assert_int_equal(maxdev, 49);
    tlm_buf_free(&a);
    tlm_buf_free(&b);

    /* another seed gives other data */
    o.seed = 8;
    o.count = 10;
    run(&o, &a, &la);
    o.seed = 9;
    run(&o, &b, &lb);
    assert_true(a.len != b.len || memcmp(a.data, b.data, a.len) != 0);
    tlm_buf_free(&a);
    tlm_buf_free(&b);
}

static void test_units(void **state)
{
    struct tlm_gen_opts o;
    struct tlm_gen g;
    struct tlm_buf b = TLM_BUF_INIT;
    (void)state;
    tlm_gen_defaults(&o);
    o.count = 1;
    o.unit = TLM_UNIT_S;
    tlm_gen_init(&g, &o);
    assert_int_equal(tlm_gen_next(&g, &b), 1);
    assert_non_null(strstr(b.data, "\"timestamp\":1704067200,"));
    assert_int_equal(tlm_gen_next(&g, &b), 0);
    tlm_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_units),
    };
    return cmocka_run_group_tests_name("gen", tests, NULL, NULL);
}
