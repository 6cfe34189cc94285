/*
 * test_ddsketch.c - DDSketch: small inputs by hand, signs and zero, the relative-error
 * guarantee (every quantile estimate within alpha of the true type 7 value, on 1 M samples
 * of uniform, normal, lognormal and Pareto data, with rank errors printed as TAP comments),
 * order-independent adds and merges (byte-identical serializations), collapsing of the
 * lowest bins, JSON round trip and validation, memory per sketch and add rate (printed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "ddsketch.h"
#include "error.h"
#include "rng.h"

#define NBIG 1000000
#define ALPHA 0.01

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

static double rank_of(const double *x, size_t n, double v)
{
    if (v <= x[0])
        return 0;
    if (v >= x[n - 1])
        return 1;
    size_t lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (x[mid] <= v)
            lo = mid;
        else
            hi = mid;
    }
    double f = x[hi] > x[lo] ? (v - x[lo]) / (x[hi] - x[lo]) : 0;
    return ((double)lo + f) / (double)(n - 1);
}

static double normal(struct tlm_rng *r)
{
    double u = 1 - tlm_rng_double(r), v = tlm_rng_double(r);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

enum dist { UNIFORM, NORMAL, LOGNORMAL, PARETO, NDIST };
static const char *const dist_name[NDIST] = { "uniform", "normal", "lognormal", "pareto" };

static double draw(struct tlm_rng *r, enum dist d)
{
    switch (d) {
    case UNIFORM:
        return tlm_rng_double(r);
    case NORMAL:
        return normal(r);
    case LOGNORMAL:
        return exp(normal(r));
    default:
        return pow(1 - tlm_rng_double(r), -1 / 1.16);
    }
}

static char *dump(const struct tlm_ddsketch *s)
{
    struct tlm_buf b = TLM_BUF_INIT;
    assert_int_equal(tlm_ddsketch_write(s, &b), 0);
    return b.data;
}

/* |est - true| within the guarantee at q over sorted x */
static int within(const double *x, size_t n, double q, double est, double alpha)
{
    double h = q * (double)(n - 1);
    size_t j = (size_t)h;
    if (j >= n - 1)
        return est == x[n - 1];
    double f = h - (double)j;
    double tv = x[j] + f * (x[j + 1] - x[j]);
    double bound = alpha * ((1 - f) * fabs(x[j]) + f * fabs(x[j + 1]));
    return fabs(est - tv) <= bound * (1 + 1e-9) + 1e-300;
}

static void test_small(void **state)
{
    (void)state;
    struct tlm_ddsketch *s = tlm_ddsketch_create(ALPHA);
    assert_non_null(s);
    assert_true(isnan(tlm_ddsketch_quantile(s, 0.5)));
    assert_int_equal(tlm_ddsketch_add(s, NAN), TLM_EINVAL);
    assert_int_equal(tlm_ddsketch_add(s, -INFINITY), TLM_EINVAL);
    assert_int_equal(tlm_ddsketch_add(s, 42.5), 0);
    assert_true(tlm_ddsketch_quantile(s, 0) == 42.5);
    assert_true(tlm_ddsketch_quantile(s, 0.5) == 42.5);
    assert_true(tlm_ddsketch_quantile(s, 1) == 42.5);
    assert_int_equal(tlm_ddsketch_add(s, 1), 0);
    /* two samples: exact (min and max), interpolated as type 7 */
    assert_true(tlm_ddsketch_quantile(s, 0.5) == 21.75);
    assert_true(tlm_ddsketch_quantile(s, 0.25) == 11.375);
    tlm_ddsketch_destroy(s);
    /* -3, -1, 0, 0, 2, 5, 100: middle ranks within 1 % */
    s = tlm_ddsketch_create(ALPHA);
    double in[] = { 100, -1, 0, 5, -3, 0, 2 };
    for (int i = 0; i < 7; i++)
        assert_int_equal(tlm_ddsketch_add(s, in[i]), 0);
    assert_true(tlm_ddsketch_count(s) == 7);
    assert_true(tlm_ddsketch_quantile(s, 0) == -3);
    assert_true(tlm_ddsketch_quantile(s, 1) == 100);
    assert_true(fabs(tlm_ddsketch_quantile(s, 1 / 6.0) - -1) <= 0.01);
    assert_true(tlm_ddsketch_quantile(s, 2 / 6.0) == 0);
    assert_true(tlm_ddsketch_quantile(s, 3 / 6.0) == 0);
    assert_true(fabs(tlm_ddsketch_quantile(s, 4 / 6.0) - 2) <= 0.02);
    assert_true(fabs(tlm_ddsketch_quantile(s, 5 / 6.0) - 5) <= 0.05);
    /* between 0 (exact) and 2: f * v(4) */
    double v = tlm_ddsketch_quantile(s, 3.5 / 6.0);
    assert_true(fabs(v - 1) <= 0.01);
    assert_true(isnan(tlm_ddsketch_quantile(s, NAN)));
    assert_true(tlm_ddsketch_quantile(s, 7) == 100);
    tlm_ddsketch_destroy(s);
    tlm_ddsketch_destroy(NULL);
    assert_null(tlm_ddsketch_create(0));
    assert_null(tlm_ddsketch_create(1));
    assert_null(tlm_ddsketch_create_bins(0.01, 2));
}

static void test_guarantee(void **state)
{
    (void)state;
    double *x = malloc(NBIG * sizeof *x);
    assert_non_null(x);
    const double qs[] = { 0.001, 0.01, 0.5, 0.9, 0.99, 0.999 };
    for (int d = 0; d < NDIST; d++) {
        struct tlm_rng r;
        tlm_rng_seed(&r, 200 + (uint64_t)d);
        struct tlm_ddsketch *s = tlm_ddsketch_create(ALPHA);
        for (size_t i = 0; i < NBIG; i++) {
            x[i] = draw(&r, (enum dist)d);
            if (d == UNIFORM)
                x[i] = x[i] * 200 - 100; /* both signs */
            assert_int_equal(tlm_ddsketch_add(s, x[i]), 0);
        }
        qsort(x, NBIG, sizeof *x, cmp_double);
        int bad = 0;
        for (int k = 0; k <= 10000; k++) {
            double q = k / 10000.0;
            if (!within(x, NBIG, q, tlm_ddsketch_quantile(s, q), ALPHA))
                bad++;
        }
        for (size_t k = 0; k < sizeof qs / sizeof *qs; k++) {
            double est = tlm_ddsketch_quantile(s, qs[k]);
            printf("# ddsketch %s q=%g rank error %.5f (estimate %.6g, exact %.6g)\n",
                   dist_name[d], qs[k], fabs(rank_of(x, NBIG, est) - qs[k]), est,
                   x[(size_t)(qs[k] * (NBIG - 1))]);
        }
        printf("# ddsketch %s: %d of 10001 quantiles outside alpha, %zu bytes\n", dist_name[d],
               bad, tlm_ddsketch_bytes(s));
        assert_int_equal(bad, 0);
        tlm_ddsketch_destroy(s);
    }
    free(x);
}

static void test_order_independent(void **state)
{
    (void)state;
    struct tlm_rng r;
    tlm_rng_seed(&r, 7);
    size_t n = 200000;
    double *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (i % 5 == 0) ? -draw(&r, LOGNORMAL) : (i % 97 == 0 ? 0 : draw(&r, PARETO));
    const uint32_t bins[] = { 2048, 64 }; /* with and without collapsing */
    for (int bi = 0; bi < 2; bi++) {
        struct tlm_ddsketch *part[3], *all = tlm_ddsketch_create_bins(ALPHA, bins[bi]),
                                      *rev = tlm_ddsketch_create_bins(ALPHA, bins[bi]);
        for (int p = 0; p < 3; p++)
            part[p] = tlm_ddsketch_create_bins(ALPHA, bins[bi]);
        for (size_t i = 0; i < n; i++) {
            tlm_ddsketch_add(part[i * 3 / n], x[i]);
            tlm_ddsketch_add(all, x[i]);
            tlm_ddsketch_add(rev, x[n - 1 - i]);
        }
        /* (a + b) + c, c + (b + a), b + (c + a) */
        struct tlm_ddsketch *m1 = tlm_ddsketch_create_bins(ALPHA, bins[bi]),
                            *m2 = tlm_ddsketch_create_bins(ALPHA, bins[bi]),
                            *m3 = tlm_ddsketch_create_bins(ALPHA, bins[bi]),
                            *t = tlm_ddsketch_create_bins(ALPHA, bins[bi]);
        assert_int_equal(tlm_ddsketch_merge(m1, part[0]), 0);
        assert_int_equal(tlm_ddsketch_merge(m1, part[1]), 0);
        assert_int_equal(tlm_ddsketch_merge(m1, part[2]), 0);
        assert_int_equal(tlm_ddsketch_merge(t, part[1]), 0);
        assert_int_equal(tlm_ddsketch_merge(t, part[0]), 0);
        assert_int_equal(tlm_ddsketch_merge(m2, part[2]), 0);
        assert_int_equal(tlm_ddsketch_merge(m2, t), 0);
        tlm_ddsketch_destroy(t);
        t = tlm_ddsketch_create_bins(ALPHA, bins[bi]);
        assert_int_equal(tlm_ddsketch_merge(t, part[2]), 0);
        assert_int_equal(tlm_ddsketch_merge(t, part[0]), 0);
        assert_int_equal(tlm_ddsketch_merge(m3, part[1]), 0);
        assert_int_equal(tlm_ddsketch_merge(m3, t), 0);
        /* merge(a, b) == merge(b, a) directly */
        struct tlm_ddsketch *ab = tlm_ddsketch_create_bins(ALPHA, bins[bi]),
                            *ba = tlm_ddsketch_create_bins(ALPHA, bins[bi]);
        tlm_ddsketch_merge(ab, part[0]);
        tlm_ddsketch_merge(ab, part[1]);
        tlm_ddsketch_merge(ba, part[1]);
        tlm_ddsketch_merge(ba, part[0]);
        char *s_all = dump(all), *s_rev = dump(rev), *s1 = dump(m1), *s2 = dump(m2),
             *s3 = dump(m3), *sab = dump(ab), *sba = dump(ba);
        assert_string_equal(s_all, s_rev);
        assert_string_equal(s_all, s1);
        assert_string_equal(s_all, s2);
        assert_string_equal(s_all, s3);
        assert_string_equal(sab, sba);
        printf("# ddsketch max_bins=%u: merges in 3 orders and adds in 2 orders give one "
               "%zu-byte serialization\n",
               bins[bi], strlen(s_all));
        if (bins[bi] == 64) {
            /* collapsed: the top quantiles keep the guarantee, bins bounded */
            qsort(x, n, sizeof *x, cmp_double);
            int checked = 0;
            for (int k = 0; k <= 10000; k++) {
                double q = k / 10000.0;
                if (x[(size_t)(q * (double)(n - 1))] < x[n - 1] / 3)
                    continue; /* within gamma^63 = 3.5 of the max: not collapsed */
                assert_true(within(x, n, q, tlm_ddsketch_quantile(all, q), ALPHA));
                checked++;
            }
            assert_true(checked > 0);
            assert_true(tlm_ddsketch_bytes(all) <= 200 + 2 * 64 * 8);
        }
        free(s_all);
        free(s_rev);
        free(s1);
        free(s2);
        free(s3);
        free(sab);
        free(sba);
        for (int p = 0; p < 3; p++)
            tlm_ddsketch_destroy(part[p]);
        tlm_ddsketch_destroy(all);
        tlm_ddsketch_destroy(rev);
        tlm_ddsketch_destroy(m1);
        tlm_ddsketch_destroy(m2);
        tlm_ddsketch_destroy(m3);
        tlm_ddsketch_destroy(t);
        tlm_ddsketch_destroy(ab);
        tlm_ddsketch_destroy(ba);
    }
    /* self-merge doubles; alpha mismatch refused */
    struct tlm_ddsketch *a = tlm_ddsketch_create(ALPHA), *b = tlm_ddsketch_create(0.02);
    tlm_ddsketch_add(a, 3);
    tlm_ddsketch_add(a, -3);
    assert_int_equal(tlm_ddsketch_merge(a, a), 0);
    assert_true(tlm_ddsketch_count(a) == 4);
    assert_int_equal(tlm_ddsketch_merge(a, b), TLM_EINVAL);
    tlm_ddsketch_destroy(a);
    tlm_ddsketch_destroy(b);
    free(x);
}

static void test_collapse(void **state)
{
    (void)state;
    struct tlm_ddsketch *s = tlm_ddsketch_create_bins(ALPHA, 16);
    /* 1, 2, 4, ... 2^40: ~35 bins apart each, far beyond 16 bins */
    for (int i = 0; i <= 40; i++)
        assert_int_equal(tlm_ddsketch_add(s, ldexp(1, i)), 0);
    assert_true(tlm_ddsketch_bytes(s) <= 200 + 16 * 8);
    assert_true(tlm_ddsketch_quantile(s, 1) == ldexp(1, 40));
    assert_true(tlm_ddsketch_quantile(s, 0) == 1);
    /* all but the top value collapsed into the lowest kept bin (2^40 / gamma^15) */
    double v = tlm_ddsketch_quantile(s, 0.5);
    assert_true(v > ldexp(1, 39) && v < ldexp(1, 40));
    tlm_ddsketch_destroy(s);
}

static void test_serialize(void **state)
{
    (void)state;
    struct tlm_ddsketch *s = tlm_ddsketch_create(ALPHA);
    char *t = dump(s);
    assert_string_equal(t, "{\"a\":0.01,\"b\":2048,\"n\":0,\"z\":0}");
    free(t);
    tlm_ddsketch_add(s, 1);
    tlm_ddsketch_add(s, 1.01);
    tlm_ddsketch_add(s, 1.05);
    tlm_ddsketch_add(s, 0);
    tlm_ddsketch_add(s, -2);
    t = dump(s);
    /* ln(1.05) / ln(1.01 / 0.99) = 2.44 -> bin 3; 1.01 -> bin 1; ln 2 / 0.0200 = 34.66 */
    assert_string_equal(t, "{\"a\":0.01,\"b\":2048,\"n\":5,\"min\":-2.0,\"max\":1.05,\"z\":1,"
                           "\"p\":[0,[1,1,0,1]],\"m\":[35,[1]]}");
    struct tlm_error err;
    struct tlm_ddsketch *u = tlm_ddsketch_read(t, strlen(t), &err);
    assert_non_null(u);
    char *t2 = dump(u);
    assert_string_equal(t, t2);
    for (int k = 0; k <= 100; k++)
        assert_true(tlm_ddsketch_quantile(s, k / 100.0) == tlm_ddsketch_quantile(u, k / 100.0));
    free(t);
    free(t2);
    tlm_ddsketch_destroy(u);
    tlm_ddsketch_destroy(s);
    const char *bad[] = {
        "{",
        "{\"a\":0.01,\"b\":2048,\"n\":1,\"z\":0}",
        "{\"a\":2,\"b\":2048,\"n\":0,\"z\":0}",
        "{\"a\":0.01,\"b\":2048,\"n\":1,\"min\":1,\"max\":1,\"z\":0,\"p\":[0,[0,1]]}",
        "{\"a\":0.01,\"b\":2048,\"n\":1,\"min\":1,\"max\":1,\"z\":0,\"p\":[0,[-1]]}",
        "{\"a\":0.01,\"b\":2048,\"n\":1,\"min\":-1,\"max\":1,\"z\":0,\"p\":[0,[1]]}",
        "{\"a\":0.01,\"b\":2048,\"n\":1,\"min\":1,\"max\":1,\"z\":0,\"p\":[0.5,[1]]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tlm_error_clear(&err);
        assert_null(tlm_ddsketch_read(bad[i], strlen(bad[i]), &err));
        assert_int_equal(err.code, TLM_EPARSE);
    }
}

static void test_memory_rate(void **state)
{
    (void)state;
    struct tlm_rng r;
    tlm_rng_seed(&r, 9);
    const size_t counts[] = { 0, 10, 100, 1000, 1000000 };
    struct tlm_ddsketch *s = tlm_ddsketch_create(ALPHA);
    size_t have = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
        for (; have < counts[k]; have++)
            tlm_ddsketch_add(s, draw(&r, LOGNORMAL));
        printf("# ddsketch alpha=0.01 lognormal bytes at n=%zu: %zu\n", counts[k],
               tlm_ddsketch_bytes(s));
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double sec = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    printf("# ddsketch add (with lognormal generation): %.1f M/s\n", (double)have / sec / 1e6);
    tlm_ddsketch_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small),    cmocka_unit_test(test_guarantee),
        cmocka_unit_test(test_order_independent), cmocka_unit_test(test_collapse),
        cmocka_unit_test(test_serialize), cmocka_unit_test(test_memory_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
