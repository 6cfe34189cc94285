/*
 * bench_rules.c - times the rule engine of src/lib/rules.h (seed 002): N threshold rules
 * with expression/JSONPath predicates over generated events, indexed against naive (every
 * rule evaluated through tlm_expr_test on a DOM, as the seed's authors did with JsonPath).
 *
 *   bench_rules [--rules N] [--events N] [--naive-events N] [--customers N]
 *               [--range N] [--complex N] [--seed N] [--write PREFIX]
 *
 * Rule mix (deterministic from --seed): half global, half per customer; most rules test
 * `type == "tK" && amount > C` or `country in [...] && type == "tK"` (indexed, simple);
 * --range rules have no equality (`amount > C && country != "US"`: found through the
 * range index on amount, evaluated on scanned values); --complex rules are indexed but need
 * a DOM (`type == "tK" && contains(user, "adm")`). Events: 50 types, 10 countries,
 * --customers customer ids, about 116 bytes each. Prints events/s for both engines, the
 * ratio, and that both gave the same alerts (on the naive subset). Times are the thread's
 * CPU time (the wall rate is printed too): the machine may be shared. Timings only: never
 * run by make check. --write PREFIX writes PREFIX.rules.ndjson and PREFIX.events.ndjson
 * instead of timing (for bench/cep/rules.sh: the same rules through `telem cep --rules`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"
#include "rules.h"

/* CPU time of this thread: the machine is shared, and the target is per core. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *const countries[] = { "US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU",
                                         "ES" };

static long arg(int argc, char **argv, const char *name, long def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return strtol(argv[i + 1], NULL, 10);
    return def;
}

static struct tlm_rules *make_engine(struct tlm_buf *rules, int naive)
{
    struct tlm_rules_opts o = { .out_unit = TLM_UNIT_MS, .naive = naive };
    struct tlm_error err;
    tlm_error_clear(&err);
    struct tlm_rules *rs = tlm_rules_create(&o, &err);
    if (!rs || tlm_rules_reload(rs, rules->data, rules->len, "bench", &err) < 0) {
        fprintf(stderr, "bench_rules: %s\n", err.text);
        exit(1);
    }
    return rs;
}

static double run(struct tlm_rules *rs, const struct tlm_buf *ev, const size_t *off, long n,
                  struct tlm_buf *out, long long *alerts)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    double t0 = now();
    *alerts = 0;
    for (long i = 0; i < n; i++) {
        const char *line = ev->data + off[i];
        size_t len = off[i + 1] - off[i] - 1;
        int a = tlm_rules_event(rs, line, len, (tlm_time_t)i * 1000000, out, &err);
        if (a < 0) {
            fprintf(stderr, "bench_rules: %s\n", err.text);
            exit(1);
        }
        *alerts += a;
        if (i % 1000 == 999) /* a stage's watermark, 1 s behind: closes 1 m windows */
            tlm_rules_watermark(rs, (tlm_time_t)(i - 1000) * 1000000);
        if (out->len > (1u << 20) && out != NULL)
            tlm_buf_reset(out);
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    long nrules = arg(argc, argv, "--rules", 1000);
    long nev = arg(argc, argv, "--events", 1000000);
    long nnaive = arg(argc, argv, "--naive-events", 50000);
    long ncust = arg(argc, argv, "--customers", 10000);
    long nrange = arg(argc, argv, "--range", 20);
    long ncomplex = arg(argc, argv, "--complex", 10);
    struct tlm_rng g;
    tlm_rng_seed(&g, (uint64_t)arg(argc, argv, "--seed", 42));

    struct tlm_buf rules = TLM_BUF_INIT;
    for (long i = 0; i < nrules; i++) {
        char scope[64] = "\"global\"";
        if (i % 2)
            snprintf(scope, sizeof scope, "{\"key\":\"c%ld\"}", (long)tlm_rng_below(&g, 200));
        int t = (int)tlm_rng_below(&g, 50);
        long c = (long)tlm_rng_below(&g, 1000);
        char when[256];
        if (i < nrange)
            snprintf(when, sizeof when, "amount > %ld && country != \\\"US\\\"", 900 + c / 10);
        else if (i < nrange + ncomplex)
            snprintf(when, sizeof when, "type == \\\"t%d\\\" && contains(user, \\\"adm\\\")", t);
        else if (i % 3 == 0)
            snprintf(when, sizeof when,
                     "$.country in [\\\"%s\\\", \\\"%s\\\"] && $.type == \\\"t%d\\\"",
                     countries[tlm_rng_below(&g, 10)], countries[tlm_rng_below(&g, 10)], t);
        else
            snprintf(when, sizeof when, "$.type == \\\"t%d\\\" && amount > %ld", t, c);
        tlm_buf_printf(&rules,
                       "{\"id\":\"r%ld\",\"scope\":%s,\"when\":\"%s\",\"threshold\":%ld%s}\n", i,
                       scope, when, 2 + (long)tlm_rng_below(&g, 20),
                       i % 4 == 0 ? ",\"window\":\"1m\"" : "");
    }

    /* events: customers c0..c199 (the per-customer rules' keys) get a fifth of them */
    struct tlm_buf ev = TLM_BUF_INIT;
    size_t *off = malloc((size_t)(nev + 1) * sizeof *off);
    if (!off)
        return 1;
    for (long i = 0; i < nev; i++) {
        off[i] = ev.len;
        long cust = tlm_rng_below(&g, 5) == 0 ? (long)tlm_rng_below(&g, 200)
                                              : (long)tlm_rng_below(&g, (uint64_t)ncust);
        tlm_buf_printf(&ev,
                       "{\"timestamp\":%ld,\"customerId\":\"c%ld\",\"type\":\"t%d\",\"amount\":%d,"
                       "\"country\":\"%s\",\"user\":\"%s%d\",\"ok\":true}\n",
                       1700000000000L + i, cust, (int)tlm_rng_below(&g, 50),
                       (int)tlm_rng_below(&g, 1000), countries[tlm_rng_below(&g, 10)],
                       tlm_rng_below(&g, 20) ? "user" : "admin", (int)tlm_rng_below(&g, 1000));
    }
    off[nev] = ev.len;
    /* --write PREFIX: the rules and the events as files for `telem cep --rules` (the
     * command-level bench, bench/cep/rules.sh), nothing timed */
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--write"))
            continue;
        char path[4096];
        FILE *f;
        snprintf(path, sizeof path, "%s.rules.ndjson", argv[i + 1]);
        if (!(f = fopen(path, "w")) || fwrite(rules.data, 1, rules.len, f) != rules.len ||
            fclose(f))
            return 1;
        snprintf(path, sizeof path, "%s.events.ndjson", argv[i + 1]);
        if (!(f = fopen(path, "w")) || fwrite(ev.data, 1, ev.len, f) != ev.len || fclose(f))
            return 1;
        return 0;
    }
    if (nnaive > nev)
        nnaive = nev;

    struct tlm_buf out = TLM_BUF_INIT, out2 = TLM_BUF_INIT;
    long long a1, a2, a3;
    struct tlm_rules *ix = make_engine(&rules, 0);
    double w0 = wall();
    double t1 = run(ix, &ev, off, nev, &out, &a1);
    double w1 = wall() - w0;
    struct tlm_rules_stats st;
    tlm_rules_get_stats(ix, &st);
    tlm_rules_destroy(ix);

    /* the same prefix through both, for the ratio and the equality check */
    ix = make_engine(&rules, 0);
    struct tlm_rules *nv = make_engine(&rules, 1);
    tlm_buf_reset(&out);
    double t2 = run(ix, &ev, off, nnaive, &out, &a2);
    double t3 = run(nv, &ev, off, nnaive, &out2, &a3);
    int same = out.len == out2.len && (out.len == 0 || !memcmp(out.data, out2.data, out.len));
    tlm_rules_destroy(ix);
    tlm_rules_destroy(nv);

    printf("rules %ld (%ld range-only, %ld need a DOM; unindexed %lld, indexed %lld), "
           "events %ld, %.1f bytes/event\n",
           nrules, nrange, ncomplex, st.unindexed, st.indexed, nev,
           (double)ev.len / (double)nev);
    printf("indexed: %.0f events/s CPU (%.3f s; wall %.0f events/s), %lld alerts, "
           "%.2f candidates/event, %.4f DOM parses/event, %lld (rule, key) states\n",
           (double)nev / t1, t1, (double)nev / w1, a1, (double)st.candidates / (double)nev,
           (double)st.dom_parses / (double)nev, st.keys);
    printf("naive:   %.0f events/s CPU over the first %ld events (indexed there: %.0f)\n",
           (double)nnaive / t3, nnaive, (double)nnaive / t2);
    printf("speed-up: %.1fx; same alerts on the prefix: %s (%lld)\n", t3 / t2,
           same && a2 == a3 ? "yes" : "NO", a2);
    tlm_buf_free(&rules);
    tlm_buf_free(&ev);
    tlm_buf_free(&out);
    tlm_buf_free(&out2);
    free(off);
    return same && a2 == a3 ? 0 : 1;
}
