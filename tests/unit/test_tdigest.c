/*
 * test_tdigest.c - the merging t-digest: exact type 7 answers for small inputs (by hand and
 * against a sorted reference), bad samples, merge, JSON round trip and validation, memory
 * per digest, and the accuracy test: rank error |F(estimate) - q| on 1 M samples of
 * uniform, normal, lognormal and Pareto data against the exact quantiles, printed as TAP
 * comments and bounded (0.005 at q = 0.5, 0.001 at 0.99 and 0.999). Rates of add() are
 * printed too (never asserted).
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
#include "error.h"
#include "rng.h"
#include "tdigest.h"

#define NBIG 1000000

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* type 7 on sorted x[0..n) */
static double type7(const double *x, size_t n, double q)
{
    double h = q * (double)(n - 1);
    size_t j = (size_t)h;
    if (j >= n - 1)
        return x[n - 1];
    return x[j] + (h - (double)j) * (x[j + 1] - x[j]);
}

/* the inverse of type 7: the fraction of the way through the ranks at which v falls */
static double rank_of(const double *x, size_t n, double v)
{
    if (v <= x[0])
        return 0;
    if (v >= x[n - 1])
        return 1;
    size_t lo = 0, hi = n - 1; /* x[lo] <= v < x[hi] */
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
    default: /* Pareto, x_m = 1, alpha = 1.16 (the "80/20" tail; infinite variance) */
        return pow(1 - tlm_rng_double(r), -1 / 1.16);
    }
}

static void test_small_by_hand(void **state)
{
    (void)state;
    struct tlm_tdigest *t = tlm_tdigest_create(100);
    assert_non_null(t);
    assert_true(isnan(tlm_tdigest_quantile(t, 0.5)));
    assert_true(isnan(tlm_tdigest_min(t)));
    assert_int_equal(tlm_tdigest_add(t, NAN), TLM_EINVAL);
    assert_int_equal(tlm_tdigest_add(t, INFINITY), TLM_EINVAL);
    assert_true(tlm_tdigest_count(t) == 0);
    assert_int_equal(tlm_tdigest_add(t, 7), 0);
    for (double q = 0; q <= 1; q += 0.125)
        assert_true(tlm_tdigest_quantile(t, q) == 7);
    /* 4, 1, 3, 2: h = q * 3 */
    tlm_tdigest_destroy(t);
    t = tlm_tdigest_create(100);
    double in[] = { 4, 1, 3, 2 };
    for (int i = 0; i < 4; i++)
        assert_int_equal(tlm_tdigest_add(t, in[i]), 0);
    assert_true(tlm_tdigest_quantile(t, 0) == 1);
    assert_true(tlm_tdigest_quantile(t, 0.5) == 2.5);
    assert_true(tlm_tdigest_quantile(t, 0.25) == 1.75);
    assert_true(tlm_tdigest_quantile(t, 0.9) == 3.7);
    assert_true(tlm_tdigest_quantile(t, 1) == 4);
    assert_true(tlm_tdigest_quantile(t, 2) == 4);   /* clamped */
    assert_true(tlm_tdigest_quantile(t, -1) == 1);
    assert_true(isnan(tlm_tdigest_quantile(t, NAN)));
    /* adding after a query (the buffer was sorted) */
    assert_int_equal(tlm_tdigest_add(t, 0), 0);
    assert_true(tlm_tdigest_quantile(t, 0.5) == 2);
    assert_true(tlm_tdigest_quantile(t, 0.125) == 0.5);
    assert_true(tlm_tdigest_count(t) == 5);
    assert_true(tlm_tdigest_min(t) == 0 && tlm_tdigest_max(t) == 4);
    tlm_tdigest_destroy(t);
    tlm_tdigest_destroy(NULL);
    assert_null(tlm_tdigest_create(0));
    assert_null(tlm_tdigest_create(NAN));
    assert_null(tlm_tdigest_create(1e9));
}

/* up to compression samples: exactly type 7, for every size and many q */
static void test_small_exact(void **state)
{
    (void)state;
    struct tlm_rng r;
    tlm_rng_seed(&r, 1);
    double x[200], s[200];
    const double deltas[] = { 20, 100, 150 };
    for (int d = 0; d < 3; d++) {
        for (size_t n = 1; n <= (size_t)deltas[d]; n += (n < 20 ? 1 : 7)) {
            struct tlm_tdigest *t = tlm_tdigest_create(deltas[d]);
            for (size_t i = 0; i < n; i++) {
                /* some ties, some negatives */
                x[i] = (double)(tlm_rng_below(&r, 50)) - 10 + (i % 3 ? 0.25 : 0);
                assert_int_equal(tlm_tdigest_add(t, x[i]), 0);
            }
            memcpy(s, x, n * sizeof *x);
            qsort(s, n, sizeof *s, cmp_double);
            for (int k = 0; k <= 1000; k++) {
                double q = k / 1000.0;
                assert_true(tlm_tdigest_quantile(t, q) == type7(s, n, q));
            }
            tlm_tdigest_destroy(t);
        }
    }
}

/* past the raw buffer: a digest of a few thousand points, sane and monotone */
static void test_monotone_and_bounds(void **state)
{
    (void)state;
    struct tlm_tdigest *t = tlm_tdigest_create(100);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(tlm_tdigest_add(t, (double)((i * 7919) % 10000)), 0);
    assert_true(tlm_tdigest_count(t) == 10000);
    assert_true(tlm_tdigest_quantile(t, 0) == 0);
    assert_true(tlm_tdigest_quantile(t, 1) == 9999);
    double prev = -1;
    for (int k = 0; k <= 1000; k++) {
        double v = tlm_tdigest_quantile(t, k / 1000.0);
        assert_true(v >= prev);
        assert_true(fabs(v - k / 1000.0 * 9999) <= 10); /* uniform: within 0.1 % */
        prev = v;
    }
    assert_true(tlm_tdigest_centroids(t) < 200);
    /* sorted and reverse-sorted input, constant input */
    struct tlm_tdigest *u = tlm_tdigest_create(100), *v = tlm_tdigest_create(100),
                       *w = tlm_tdigest_create(100);
    for (int i = 0; i < 100000; i++) {
        tlm_tdigest_add(u, i);
        tlm_tdigest_add(v, 99999 - i);
        tlm_tdigest_add(w, 42);
    }
    for (int k = 0; k <= 100; k++) {
        double q = k / 100.0;
        assert_true(fabs(tlm_tdigest_quantile(u, q) - q * 99999) <= 100);
        assert_true(fabs(tlm_tdigest_quantile(v, q) - q * 99999) <= 100);
        assert_true(tlm_tdigest_quantile(w, q) == 42);
    }
    tlm_tdigest_destroy(t);
    tlm_tdigest_destroy(u);
    tlm_tdigest_destroy(v);
    tlm_tdigest_destroy(w);
}

static void test_merge(void **state)
{
    (void)state;
    /* raw + raw within the buffer: still exact */
    struct tlm_tdigest *a = tlm_tdigest_create(100), *b = tlm_tdigest_create(100);
    for (int i = 0; i < 30; i++) {
        tlm_tdigest_add(a, i);
        tlm_tdigest_add(b, 100 + i);
    }
    assert_int_equal(tlm_tdigest_merge(a, b), 0);
    assert_true(tlm_tdigest_count(a) == 60);
    assert_true(tlm_tdigest_quantile(a, 0.5) == 64.5); /* h = 29.5: (29 + 100) / 2 */
    assert_int_equal(tlm_tdigest_merge(a, a), 0);       /* doubles every sample */
    assert_true(tlm_tdigest_count(a) == 120);
    assert_true(tlm_tdigest_quantile(a, 0) == 0 && tlm_tdigest_quantile(a, 1) == 129);
    tlm_tdigest_destroy(a);
    tlm_tdigest_destroy(b);

    /* 10 digests of 100 k uniform samples each, merged: as good as one digest */
    struct tlm_rng r;
    tlm_rng_seed(&r, 2);
    size_t n = 1000000;
    double *x = malloc(n * sizeof *x);
    struct tlm_tdigest *all = tlm_tdigest_create(100);
    for (int p = 0; p < 10; p++) {
        struct tlm_tdigest *part = tlm_tdigest_create(100);
        for (size_t i = 0; i < n / 10; i++) {
            double v = draw(&r, LOGNORMAL);
            x[p * (n / 10) + i] = v;
            tlm_tdigest_add(part, v);
        }
        assert_int_equal(tlm_tdigest_merge(all, part), 0);
        tlm_tdigest_destroy(part);
    }
    assert_true(tlm_tdigest_count(all) == (double)n);
    qsort(x, n, sizeof *x, cmp_double);
    const double qs[] = { 0.5, 0.99, 0.999 };
    for (int k = 0; k < 3; k++) {
        double e = fabs(rank_of(x, n, tlm_tdigest_quantile(all, qs[k])) - qs[k]);
        printf("# tdigest merged-10 lognormal q=%g rank error %.5f\n", qs[k], e);
        assert_true(e <= (qs[k] == 0.5 ? 0.005 : 0.001));
    }
    assert_true(tlm_tdigest_quantile(all, 0) == x[0]);
    assert_true(tlm_tdigest_quantile(all, 1) == x[n - 1]);
    assert_true(tlm_tdigest_bytes(all) <= 4096);
    tlm_tdigest_destroy(all);
    free(x);
}

static void round_trip(struct tlm_tdigest *t)
{
    struct tlm_buf b = TLM_BUF_INIT, b2 = TLM_BUF_INIT;
    assert_int_equal(tlm_tdigest_write(t, &b), 0);
    struct tlm_error err;
    struct tlm_tdigest *u = tlm_tdigest_read(b.data, b.len, &err);
    assert_non_null(u);
    assert_int_equal(tlm_tdigest_write(u, &b2), 0);
    assert_string_equal(b.data, b2.data);
    assert_true(tlm_tdigest_count(u) == tlm_tdigest_count(t));
    for (int k = 0; k <= 100; k++) {
        double q = k / 100.0, v1 = tlm_tdigest_quantile(t, q), v2 = tlm_tdigest_quantile(u, q);
        assert_true(v1 == v2 || (isnan(v1) && isnan(v2)));
    }
    /* continuing after the round trip gives the same digest */
    for (int i = 0; i < 1000; i++) {
        tlm_tdigest_add(t, i * 0.37);
        tlm_tdigest_add(u, i * 0.37);
    }
    tlm_buf_reset(&b);
    tlm_buf_reset(&b2);
    tlm_tdigest_write(t, &b);
    tlm_tdigest_write(u, &b2);
    assert_string_equal(b.data, b2.data);
    tlm_tdigest_destroy(u);
    tlm_buf_free(&b);
    tlm_buf_free(&b2);
}

static void test_serialize(void **state)
{
    (void)state;
    struct tlm_tdigest *t = tlm_tdigest_create(100);
    struct tlm_buf b = TLM_BUF_INIT;
    assert_int_equal(tlm_tdigest_write(t, &b), 0);
    assert_string_equal(b.data, "{\"c\":100,\"n\":0,\"r\":[]}");
    round_trip(t);
    tlm_tdigest_destroy(t);
    t = tlm_tdigest_create(50);
    tlm_tdigest_add(t, 27.508);
    tlm_tdigest_add(t, -1);
    tlm_tdigest_add(t, 0.1);
    tlm_buf_reset(&b);
    assert_int_equal(tlm_tdigest_write(t, &b), 0);
    assert_string_equal(b.data,
                        "{\"c\":50,\"n\":3,\"min\":-1.0,\"max\":27.508,\"r\":[27.508,-1.0,0.1]}");
    round_trip(t);
    tlm_tdigest_destroy(t);
    /* digest state */
    struct tlm_rng r;
    tlm_rng_seed(&r, 3);
    t = tlm_tdigest_create(100);
    for (int i = 0; i < 100000; i++)
        tlm_tdigest_add(t, draw(&r, NORMAL) * 1e-3);
    round_trip(t);
    tlm_tdigest_destroy(t);

    /* centroids and unmerged samples: written as they are, without merging (writing
     * does not change the digest), and read back to the same state */
    struct tlm_tdigest *t1 = tlm_tdigest_create(100), *t2 = tlm_tdigest_create(100);
    struct tlm_buf b2 = TLM_BUF_INIT;
    tlm_rng_seed(&r, 4);
    for (int i = 0; i < 1000; i++) {
        double x = draw(&r, NORMAL);
        tlm_tdigest_add(t1, x);
        tlm_tdigest_add(t2, x);
        if (i % 7 == 0) {
            tlm_buf_reset(&b);
            assert_int_equal(tlm_tdigest_write(t1, &b), 0);
        }
    }
    tlm_buf_reset(&b);
    assert_int_equal(tlm_tdigest_write(t1, &b), 0);
    assert_int_equal(tlm_tdigest_write(t2, &b2), 0);
    assert_string_equal(b.data, b2.data);
    assert_non_null(strstr(b.data, "\"m\":[["));
    assert_non_null(strstr(b.data, "],\"r\":["));
    tlm_buf_free(&b2);
    tlm_tdigest_destroy(t2);
    t2 = tlm_tdigest_read(b.data, b.len, NULL);
    assert_non_null(t2);
    for (int i = 0; i < 300; i++) {
        tlm_tdigest_add(t1, i * 0.01);
        tlm_tdigest_add(t2, i * 0.01);
    }
    for (int k = 0; k <= 100; k++)
        assert_true(tlm_tdigest_quantile(t1, k / 100.0) == tlm_tdigest_quantile(t2, k / 100.0));
    tlm_tdigest_destroy(t2);
    tlm_tdigest_destroy(t1);
    /* a sorted raw buffer says so */
    t = tlm_tdigest_create(100);
    tlm_tdigest_add(t, 2);
    tlm_tdigest_add(t, 1);
    (void)tlm_tdigest_quantile(t, 0.5);
    tlm_buf_reset(&b);
    assert_int_equal(tlm_tdigest_write(t, &b), 0);
    assert_string_equal(b.data, "{\"c\":100,\"n\":2,\"min\":1.0,\"max\":2.0,\"r\":[1.0,2.0],\"s\":true}");
    round_trip(t);
    tlm_tdigest_destroy(t);
    tlm_buf_free(&b);

    /* validation */
    const char *bad[] = {
        "",
        "[]",
        "{\"c\":100}",
        "{\"c\":0,\"n\":0}",
        "{\"c\":100,\"n\":1,\"r\":[1]}",                          /* no min/max */
        "{\"c\":100,\"n\":2,\"min\":1,\"max\":1,\"r\":[1]}",      /* n mismatch */
        "{\"c\":100,\"n\":1,\"min\":1,\"max\":1,\"r\":[2]}",      /* outside [min, max] */
        "{\"c\":100,\"n\":1,\"min\":1,\"max\":1,\"r\":[\"1\"]}",
        "{\"c\":100,\"n\":3,\"min\":1,\"max\":2,\"m\":[[2,1],[1,2]]}", /* not ascending */
        "{\"c\":100,\"n\":1,\"min\":1,\"max\":2,\"m\":[[1,0],[2,1]]}", /* weight 0 */
        "{\"c\":100,\"n\":1,\"min\":1,\"max\":1,\"m\":[[1]]}",
        "{\"c\":100,\"n\":1,\"min\":1,\"max\":1,\"m\":{}}",
        "{\"c\":100,\"n\":1,\"min\":2,\"max\":1,\"r\":[1]}",
        "{\"c\":100,\"n\":2,\"min\":1,\"max\":2,\"r\":[2,1],\"s\":true}", /* not sorted */
        "{\"c\":100,\"n\":1,\"min\":1,\"max\":1,\"r\":[1],\"s\":1}",
        "{\"c\":2,\"n\":17,\"min\":1,\"max\":1,\"r\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}", /* > buffer */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct tlm_error err;
        tlm_error_clear(&err);
        assert_null(tlm_tdigest_read(bad[i], strlen(bad[i]), &err));
        assert_int_equal(err.code, TLM_EPARSE);
    }
    const char *good = "{\"c\":100,\"n\":4,\"min\":1,\"max\":3,\"m\":[[1,1],[2,2],[3,1]]}";
    t = tlm_tdigest_read(good, strlen(good), NULL);
    assert_non_null(t);
    /* centres at ranks 0, 1.5, 3 */
    assert_true(tlm_tdigest_quantile(t, 0.5) == 2);
    assert_true(tlm_tdigest_quantile(t, 0.25) == 1.5);
    tlm_tdigest_destroy(t);
}

static void test_memory(void **state)
{
    (void)state;
    const size_t counts[] = { 0, 1, 10, 100, 1000, 10000, 1000000 };
    struct tlm_rng r;
    tlm_rng_seed(&r, 4);
    struct tlm_tdigest *t = tlm_tdigest_create(100);
    size_t have = 0, most = 0;
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
        for (; have < counts[k]; have++) {
            tlm_tdigest_add(t, draw(&r, LOGNORMAL));
            size_t b = tlm_tdigest_bytes(t);
            if (b > most)
                most = b;
        }
        printf("# tdigest c=100 bytes at n=%zu: %zu (%zu centroids+samples)\n", counts[k],
               tlm_tdigest_bytes(t), tlm_tdigest_centroids(t));
    }
    printf("# tdigest c=100 most bytes seen: %zu\n", most);
    assert_true(most <= 4096);
    tlm_tdigest_destroy(t);
}

static void test_accuracy(void **state)
{
    (void)state;
    double *x = malloc(NBIG * sizeof *x);
    assert_non_null(x);
    const double qs[] = { 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999 };
    const size_t nq = sizeof qs / sizeof *qs;
    double worst[3] = { 0, 0, 0 };
    for (int d = 0; d < NDIST; d++) {
        struct tlm_rng r;
        tlm_rng_seed(&r, 100 + (uint64_t)d);
        struct tlm_tdigest *t = tlm_tdigest_create(100);
        for (size_t i = 0; i < NBIG; i++) {
            x[i] = draw(&r, (enum dist)d);
            tlm_tdigest_add(t, x[i]);
        }
        qsort(x, NBIG, sizeof *x, cmp_double);
        for (size_t k = 0; k < nq; k++) {
            double est = tlm_tdigest_quantile(t, qs[k]);
            double e = fabs(rank_of(x, NBIG, est) - qs[k]);
            printf("# tdigest %s q=%g rank error %.5f (estimate %.6g, exact %.6g)\n",
                   dist_name[d], qs[k], e, est, type7(x, NBIG, qs[k]));
            if (qs[k] == 0.5 && e > worst[0])
                worst[0] = e;
            if (qs[k] == 0.99 && e > worst[1])
                worst[1] = e;
            if (qs[k] == 0.999 && e > worst[2])
                worst[2] = e;
        }
        assert_true(tlm_tdigest_quantile(t, 0) == x[0]);
        assert_true(tlm_tdigest_quantile(t, 1) == x[NBIG - 1]);
        printf("# tdigest %s: %zu centroids, %zu bytes\n", dist_name[d],
               tlm_tdigest_centroids(t), tlm_tdigest_bytes(t));
        tlm_tdigest_destroy(t);
    }
    printf("# tdigest worst rank error: q=0.5 %.5f, q=0.99 %.5f, q=0.999 %.5f\n", worst[0],
           worst[1], worst[2]);
    assert_true(worst[0] <= 0.005);
    assert_true(worst[1] <= 0.001);
    assert_true(worst[2] <= 0.001);
    free(x);
}

static void test_rate(void **state)
{
    (void)state;
    size_t n = 2000000;
    double *x = malloc(n * sizeof *x);
    struct tlm_rng r;
    tlm_rng_seed(&r, 5);
    for (size_t i = 0; i < n; i++)
        x[i] = draw(&r, UNIFORM) * 100;
    struct tlm_tdigest *t = tlm_tdigest_create(100);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t i = 0; i < n; i++)
        tlm_tdigest_add(t, x[i]);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    printf("# tdigest add: %.1f M/s (%.1f ns each; this build's flags)\n", (double)n / s / 1e6,
           s / (double)n * 1e9);
    tlm_tdigest_destroy(t);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_by_hand), cmocka_unit_test(test_small_exact),
        cmocka_unit_test(test_monotone_and_bounds), cmocka_unit_test(test_merge),
        cmocka_unit_test(test_serialize), cmocka_unit_test(test_memory),
        cmocka_unit_test(test_accuracy), cmocka_unit_test(test_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
