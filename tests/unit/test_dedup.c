/*
 * test_dedup.c - the windowed deduplicator: duplicates within the window, forgetting after
 * it, out-of-order times, the max_ids bound and its eviction count, memory per id,
 * snapshot round trip, a cross-check against a brute-force model, and a 1 M-id run whose
 * rate is printed as a TAP comment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dedup.h"
#include "rng.h"

#define S TLM_NS_PER_S
#define T0 ((tlm_time_t)INT64_C(1704103200) * S)

static int chk(struct tlm_dedup *d, const char *id, tlm_time_t t)
{
    return tlm_dedup_check(d, id, strlen(id), t);
}

static void test_window(void **state)
{
    (void)state;
    struct tlm_dedup_opts o = { .window = 10 * S };
    struct tlm_dedup *d = tlm_dedup_create(&o);
    assert_non_null(d);
    assert_int_equal(chk(d, "a", T0), 0);
    assert_int_equal(chk(d, "a", T0 + 5 * S), 1);
    assert_int_equal(chk(d, "b", T0 + 5 * S), 0);
    assert_int_equal(chk(d, "a", T0 + 10 * S - 1), 1);
    assert_int_equal(tlm_dedup_size(d), 2);
    /* exactly one window after the recorded copy: new again, recorded anew (dups did
     * not extend the window) */
    assert_int_equal(chk(d, "a", T0 + 10 * S), 0);
    assert_int_equal(chk(d, "a", T0 + 15 * S), 1);
    assert_int_equal(chk(d, "b", T0 + 15 * S - 1), 1); /* 10 s - 1 ns after b */
    assert_int_equal(chk(d, "b", T0 + 15 * S), 0);     /* one window after b: new */
    assert_int_equal(tlm_dedup_size(d), 2);
    /* ids are bytes: length and NULs matter */
    assert_int_equal(tlm_dedup_check(d, "a\0", 2, T0 + 15 * S), 0);
    assert_int_equal(tlm_dedup_check(d, "a\0", 2, T0 + 15 * S), 1);
    assert_int_equal(tlm_dedup_check(d, "", 0, T0 + 15 * S), 0);
    assert_int_equal(tlm_dedup_check(d, "", 0, T0 + 15 * S), 1);
    assert_int_equal(tlm_dedup_check(d, "a", 1, T0 + 15 * S), 1);
    /* long ids (all hash paths: <4, <=16, <=48, >48 bytes) */
    char big[300];
    memset(big, 'x', sizeof big);
    for (size_t n = 1; n <= sizeof big; n += 7) {
        assert_int_equal(tlm_dedup_check(d, big, n, T0 + 16 * S), 0);
        assert_int_equal(tlm_dedup_check(d, big, n, T0 + 16 * S), 1);
    }
    big[299] = 'y';
    assert_int_equal(tlm_dedup_check(d, big, 300, T0 + 16 * S), 0);
    assert_int_equal(tlm_dedup_evicted(d), 0);
    tlm_dedup_destroy(d);
    tlm_dedup_destroy(NULL);

    struct tlm_dedup_opts bad = { .window = 0 };
    assert_null(tlm_dedup_create(&bad));
    bad.window = -1;
    assert_null(tlm_dedup_create(&bad));
    assert_null(tlm_dedup_create(NULL));
}

static void test_expiry(void **state)
{
    (void)state;
    struct tlm_dedup_opts o = { .window = 60 * S };
    struct tlm_dedup *d = tlm_dedup_create(&o);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        assert_int_equal(chk(d, id, T0 + i * (S / 1000)), 0); /* 5 s of ids */
    }
    assert_int_equal(tlm_dedup_size(d), 5000);
    size_t full = tlm_dedup_bytes(d);
    /* time moves past the window of the first half */
    assert_int_equal(chk(d, "later", T0 + 62500 * (S / 1000)), 0);
    size_t held = tlm_dedup_size(d);
    assert_true(held >= 2500 && held <= 2502);
    assert_int_equal(chk(d, "id-0", T0 + 62500 * (S / 1000)), 0);   /* forgotten */
    assert_int_equal(chk(d, "id-4999", T0 + 62500 * (S / 1000)), 1); /* still held */
    /* everything expires */
    assert_int_equal(chk(d, "much-later", T0 + 3600 * S), 0);
    assert_int_equal(tlm_dedup_size(d), 1);
    assert_int_equal(tlm_dedup_evicted(d), 0); /* expiry is not eviction */
    assert_true(tlm_dedup_bytes(d) <= full);
    tlm_dedup_destroy(d);
}

static void test_out_of_order(void **state)
{
    (void)state;
    struct tlm_dedup_opts o = { .window = 10 * S };
    struct tlm_dedup *d = tlm_dedup_create(&o);
    assert_int_equal(chk(d, "x", T0 + 100 * S), 0);
    assert_int_equal(chk(d, "x", T0 + 95 * S), 1); /* late copy within the window */
    assert_int_equal(chk(d, "x", T0 + 90 * S), 0); /* late copy 10 s off: new */
    /* a late original, then its copy in time order */
    assert_int_equal(chk(d, "y", T0 + 95 * S), 0);
    assert_int_equal(chk(d, "y", T0 + 104 * S), 1);
    assert_int_equal(chk(d, "y", T0 + 105 * S), 0);
    /* a copy older than newest - window is still caught while its original is held */
    assert_int_equal(chk(d, "z", T0 + 80 * S), 0);
    assert_int_equal(chk(d, "z", T0 + 85 * S), 1);
    /* far enough on, all of them are forgotten */
    assert_int_equal(chk(d, "w", T0 + 200 * S), 0);
    assert_int_equal(tlm_dedup_size(d), 1);
    assert_int_equal(chk(d, "z", T0 + 85 * S), 0);
    /* extreme times do not overflow */
    assert_int_equal(tlm_dedup_check(d, "m", 1, TLM_TIME_MIN), 0);
    assert_int_equal(tlm_dedup_check(d, "m", 1, TLM_TIME_MIN + 1), 1);
    assert_int_equal(tlm_dedup_check(d, "m", 1, TLM_TIME_MAX), 0);
    assert_int_equal(tlm_dedup_check(d, "m", 1, TLM_TIME_MAX), 1);
    assert_int_equal(tlm_dedup_size(d), 1);
    tlm_dedup_destroy(d);
}

static void test_max_ids(void **state)
{
    (void)state;
    /* 3000 is reached by growing 1024 -> 2048 -> 3000 */
    struct tlm_dedup_opts o = { .window = 3600 * S, .max_ids = 3000 };
    struct tlm_dedup *d = tlm_dedup_create(&o);
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        assert_int_equal(chk(d, id, T0 + i), 0);
        assert_true(tlm_dedup_size(d) <= 3000);
    }
    assert_int_equal(tlm_dedup_size(d), 3000);
    assert_int_equal(tlm_dedup_evicted(d), 7000);
    size_t bytes = tlm_dedup_bytes(d);
    assert_true(bytes <= 3000 * 24 + 8192 * 8 + 256);
    for (int i = 7000; i < 10000; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        assert_int_equal(chk(d, id, T0 + 10000), 1);
    }
    /* an evicted id comes back as new, and evicts the oldest held */
    assert_int_equal(chk(d, "id-0", T0 + 10000), 0);
    assert_int_equal(tlm_dedup_evicted(d), 7001);
    assert_int_equal(chk(d, "id-7000", T0 + 10000), 0);
    assert_int_equal(chk(d, "id-7002", T0 + 10000), 1);
    assert_int_equal(tlm_dedup_size(d), 3000);
    assert_int_equal(tlm_dedup_bytes(d), bytes);
    tlm_dedup_destroy(d);

    /* a bound of 1 */
    struct tlm_dedup_opts one = { .window = S, .max_ids = 1 };
    d = tlm_dedup_create(&one);
    assert_int_equal(chk(d, "a", T0), 0);
    assert_int_equal(chk(d, "a", T0), 1);
    assert_int_equal(chk(d, "b", T0), 0);
    assert_int_equal(chk(d, "a", T0), 0);
    assert_int_equal(tlm_dedup_evicted(d), 2);
    assert_int_equal(tlm_dedup_size(d), 1);
    tlm_dedup_destroy(d);
}

static void test_memory_per_id(void **state)
{
    (void)state;
    struct tlm_dedup_opts o = { .window = 3600 * S };
    struct tlm_dedup *d = tlm_dedup_create(&o);
    size_t empty = tlm_dedup_bytes(d);
    assert_true(empty < 64 * 1024);
    char id[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(id, sizeof id, "%08x-%d", i * 2654435761u, i);
        assert_int_equal(chk(d, id, T0 + i), 0);
    }
    double per = (double)tlm_dedup_bytes(d) / (double)tlm_dedup_size(d);
    print_message("# %zu ids held in %zu bytes: %.1f bytes per id\n", tlm_dedup_size(d),
                  tlm_dedup_bytes(d), per);
    assert_true(per >= 24 && per < 100);
    tlm_dedup_destroy(d);
}

/* ---- snapshot round trip ---------------------------------------------------------- */

struct dump {
    uint64_t h1[64], h2[64];
    tlm_time_t t[64];
    int n;
};

static int collect(void *arg, uint64_t h1, uint64_t h2, tlm_time_t t)
{
    struct dump *x = arg;
    assert_true(x->n < 64);
    x->h1[x->n] = h1;
    x->h2[x->n] = h2;
    x->t[x->n] = t;
    x->n++;
    return 0;
}

static int stop_at_3(void *arg, uint64_t h1, uint64_t h2, tlm_time_t t)
{
    (void)h1;
    (void)h2;
    (void)t;
    int *n = arg;
    return ++*n == 3 ? 42 : 0;
}

static void test_foreach_restore(void **state)
{
    (void)state;
    struct tlm_dedup_opts o = { .window = 10 * S };
    struct tlm_dedup *a = tlm_dedup_create(&o), *b = tlm_dedup_create(&o);
    char id[32];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "k%d", i);
        assert_int_equal(chk(a, id, T0 + i * S / 2), 0);
    }
    assert_int_equal(chk(a, "k3", T0 + 12 * S), 0); /* re-recorded: leaves a dead slot */
    assert_int_equal(chk(a, "k19", T0 + 8 * S), 1); /* late copy */
    struct dump x = { .n = 0 };
    assert_int_equal(tlm_dedup_foreach(a, collect, &x), 0);
    assert_int_equal(x.n, (int)tlm_dedup_size(a));
    for (int i = 1; i < x.n; i++)
        assert_false(x.h1[i] == x.h1[i - 1] && x.h2[i] == x.h2[i - 1]);
    uint64_t h1, h2;
    tlm_dedup_hash("k3", 2, &h1, &h2);
    assert_true(h1 == x.h1[x.n - 1] && h2 == x.h2[x.n - 1]); /* newest record last */
    assert_int_equal(x.t[x.n - 1], T0 + 12 * S);
    int cnt = 0;
    assert_int_equal(tlm_dedup_foreach(a, stop_at_3, &cnt), 42);
    assert_int_equal(cnt, 3);

    for (int i = 0; i < x.n; i++)
        assert_int_equal(tlm_dedup_restore(b, x.h1[i], x.h2[i], x.t[i]), 0);
    assert_int_equal(tlm_dedup_size(b), tlm_dedup_size(a));
    struct dump y = { .n = 0 };
    tlm_dedup_foreach(b, collect, &y);
    assert_int_equal(y.n, x.n);
    assert_memory_equal(x.h1, y.h1, sizeof x.h1[0] * (size_t)x.n);
    assert_memory_equal(x.h2, y.h2, sizeof x.h2[0] * (size_t)x.n);
    assert_memory_equal(x.t, y.t, sizeof x.t[0] * (size_t)x.n);
    /* both answer alike from here on */
    for (int i = 0; i < 24; i++) {
        snprintf(id, sizeof id, "k%d", i);
        tlm_time_t t = T0 + 12 * S + i * S / 4;
        assert_int_equal(chk(a, id, t), chk(b, id, t));
    }
    /* restoring an id held replaces its record */
    size_t before = tlm_dedup_size(b);
    assert_int_equal(tlm_dedup_restore(b, h1, h2, T0 + 100 * S), 0);
    assert_int_equal(tlm_dedup_size(b), before);
    assert_int_equal(chk(b, "k3", T0 + 105 * S), 1);
    tlm_dedup_destroy(a);
    tlm_dedup_destroy(b);
}

/* ---- against a brute-force model (non-decreasing times: the semantics are exact) ---- */

static void test_model(void **state)
{
    (void)state;
    enum { IDS = 1000, OPS = 300000 };
    const int64_t window = 5 * S;
    struct tlm_dedup_opts o = { .window = window };
    struct tlm_dedup *d = tlm_dedup_create(&o);
    static int64_t last[IDS];
    static char held[IDS];
    memset(held, 0, sizeof held);
    struct tlm_rng r;
    tlm_rng_seed(&r, 12345);
    tlm_time_t t = T0;
    long long dups = 0;
    char id[32];
    for (int k = 0; k < OPS; k++) {
        t += (tlm_time_t)(tlm_rng_next(&r) % (S / 200)); /* ~2.5 ms apart on average */
        if (tlm_rng_next(&r) % 5000 == 0)
            t += window / 2;
        int i = (int)(tlm_rng_next(&r) % IDS);
        int want = held[i] && t - last[i] < window;
        if (!want) {
            held[i] = 1;
            last[i] = t;
        }
        snprintf(id, sizeof id, "dev-%d", i);
        int got = chk(d, id, t);
        if (got != want)
            fail_msg("op %d id %d: got %d want %d", k, i, got, want);
        dups += got;
    }
    print_message("# model: %d checks, %lld duplicates, %zu held at the end\n", OPS, dups,
                  tlm_dedup_size(d));
    assert_true(dups > OPS / 10 && dups < OPS);
    tlm_dedup_destroy(d);
}

/* ---- speed -------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_speed(void **state)
{
    (void)state;
    enum { N = 1000000, W = 40 };
    char *ids = malloc((size_t)N * W);
    size_t *len = malloc(N * sizeof *len);
    assert_non_null(ids);
    assert_non_null(len);
    for (int i = 0; i < N; i++)
        len[i] = (size_t)snprintf(ids + (size_t)i * W, W,
                                  "7f3c%08x-4d2a-9b1e-%012d", i * 2654435761u, i);
    /* best of three runs: the machine may be shared */
    double best_new = 0, best_dup = 0, best_exp = 0, per_id = 0;
    for (int run = 0; run < 3; run++) {
        struct tlm_dedup_opts o = { .window = 3600 * S };
        struct tlm_dedup *d = tlm_dedup_create(&o);
        double t0 = now_s();
        long long dups = 0;
        for (int i = 0; i < N; i++)
            dups += tlm_dedup_check(d, ids + (size_t)i * W, len[i], T0 + i * 1000);
        double t1 = now_s();
        for (int i = 0; i < N; i++)
            dups += tlm_dedup_check(d, ids + (size_t)i * W, len[i], T0 + N * 1000 + i);
        double t2 = now_s();
        assert_int_equal(dups, N); /* no false positive among 1 M distinct ids */
        assert_int_equal(tlm_dedup_size(d), N);
        per_id = (double)tlm_dedup_bytes(d) / (double)tlm_dedup_size(d);
        if (N / (t1 - t0) > best_new)
            best_new = N / (t1 - t0);
        if (N / (t2 - t1) > best_dup)
            best_dup = N / (t2 - t1);
        tlm_dedup_destroy(d);
        /* steady state: ids expire as fast as they come (window = 100 k ids) */
        struct tlm_dedup_opts o2 = { .window = 100000 };
        d = tlm_dedup_create(&o2);
        t0 = now_s();
        for (int i = 0; i < N; i++)
            tlm_dedup_check(d, ids + (size_t)i * W, len[i], T0 + i);
        t1 = now_s();
        if (N / (t1 - t0) > best_exp)
            best_exp = N / (t1 - t0);
        assert_true(tlm_dedup_size(d) <= 100001);
        tlm_dedup_destroy(d);
    }
    print_message("# 1M new ids: %.2f M checks/s; 1M duplicates: %.2f M checks/s; "
                  "%.1f bytes per id (best of 3)\n", best_new / 1e6, best_dup / 1e6, per_id);
    print_message("# 1M ids with expiry (about 100 k held): %.2f M checks/s\n",
                  best_exp / 1e6);
    free(ids);
    free(len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window),         cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_out_of_order),   cmocka_unit_test(test_max_ids),
        cmocka_unit_test(test_memory_per_id),  cmocka_unit_test(test_foreach_restore),
        cmocka_unit_test(test_model),          cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
