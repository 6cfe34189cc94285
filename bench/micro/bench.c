/*
 * bench.c - microbenchmark of the hot-path JSON choices (see run.sh).
 *
 * 1 M generated seed-001-like lines (~95 bytes, deterministic) in one buffer; for each
 * method the events/s of a full pass, median of 5 runs: memchr line split only; jscan
 * validate + extract 3 fields (spans), and the same plus decoding them (int64, double);
 * jansson json_loadb + 3 json_object_get; simdjson On-Demand reading 3 fields (bench_sj.cpp,
 * when built with -DHAVE_SIMDJSON).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "jscan.h"

#define NLINES 1000000
#define RUNS 5

#ifdef HAVE_SIMDJSON
size_t bench_simdjson(const char *buf, size_t len, size_t padded_cap, double *sink);
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *buf;
static size_t len;
static volatile double sink;

static size_t run_split(void)
{
    size_t n = 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        n++;
        p = nl + 1;
    }
    return n;
}

static struct tlm_jscan *scan;

static size_t run_jscan(int decode)
{
    size_t n = 0;
    double acc = 0;
    const char *p = buf, *end = buf + len;
    struct tlm_jval out[3];
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (tlm_jscan_run(scan, p, (size_t)(nl - p), out, NULL) != 0)
            abort();
        if (decode) {
            long long ts;
            double cpu;
            if (tlm_jval_int64(&out[1], &ts) || tlm_jval_double(&out[2], &cpu))
                abort();
            acc += (double)ts + cpu + (double)out[0].n;
        } else {
            acc += (double)out[0].n + (double)out[2].n;
        }
        n++;
        p = nl + 1;
    }
    sink = acc;
    return n;
}

static size_t run_jansson(void)
{
    size_t n = 0;
    double acc = 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
        if (!j)
            abort();
        acc += (double)json_string_length(json_object_get(j, "deviceId")) +
               (double)json_integer_value(json_object_get(j, "timestamp")) +
               json_real_value(json_object_get(j, "cpuUsage"));
        json_decref(j);
        n++;
        p = nl + 1;
    }
    sink = acc;
    return n;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median events/s of RUNS runs of method m */
static double measure(int m)
{
    double r[RUNS];
    for (int i = 0; i < RUNS; i++) {
        double t0 = now();
        size_t n = 0;
        double dummy = 0;
        switch (m) {
        case 0: n = run_split(); break;
        case 1: n = run_jscan(0); break;
        case 2: n = run_jscan(1); break;
        case 3: n = run_jansson(); break;
#ifdef HAVE_SIMDJSON
        case 4: n = bench_simdjson(buf, len, len + 64, &dummy); break;
#endif
        }
        sink += dummy;
        double t = now() - t0;
        if (n != NLINES) {
            fprintf(stderr, "method %d saw %zu lines\n", m, n);
            exit(1);
        }
        r[i] = (double)n / t;
    }
    qsort(r, RUNS, sizeof(r[0]), cmpd);
    return r[RUNS / 2];
}

int main(void)
{
    /* deterministic seed-001-like lines */
    size_t cap = (size_t)NLINES * 128 + 64;
    buf = malloc(cap);
    uint64_t s = 1;
    for (size_t i = 0; i < NLINES; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned r = (unsigned)(s >> 33);
        len += (size_t)sprintf(buf + len,
                               "{\"deviceId\":\"device-%u\",\"timestamp\":%llu,\"cpuUsage\":%u.%03u,"
                               "\"memUsage\":%u.%u,\"site\":\"site-%u\"}\n",
                               r % 100, 1700000000000ULL + i * 7, r % 100, (r >> 8) % 1000,
                               (r >> 4) % 100, (r >> 12) % 10, (r >> 16) % 8);
    }
    memset(buf + len, 0, 64); /* padding for simdjson */
    char *segs[3][1] = { { "deviceId" }, { "timestamp" }, { "cpuUsage" } };
    struct tlm_path paths[3] = { { 1, segs[0] }, { 1, segs[1] }, { 1, segs[2] } };
    scan = tlm_jscan_create(paths, 3);
    printf("%zu lines, %.1f bytes/line on average; median of %d runs, one core\n\n",
           (size_t)NLINES, (double)len / NLINES, RUNS);
    static const char *names[] = { "memchr line split only", "jscan validate + 3 fields (spans)",
                                   "jscan validate + 3 fields + decode", "jansson json_loadb + 3 json_object_get",
                                   "simdjson On-Demand, 3 fields" };
    double rate[5] = { 0 };
    int nm = 4;
#ifdef HAVE_SIMDJSON
    nm = 5;
#endif
    for (int m = 0; m < nm; m++)
        rate[m] = measure(m);
    printf("| %-40s | %12s | %10s | %10s |\n", "method", "events/s", "vs jansson", "vs jscan");
    printf("|%.42s|%.14s|%.12s|%.12s|\n", "------------------------------------------",
           "--------------", "------------", "------------");
    for (int m = 0; m < nm; m++)
        printf("| %-40s | %10.2f M | %9.2fx | %9.2fx |\n", names[m], rate[m] / 1e6,
               rate[m] / rate[3], rate[m] / rate[1]);
#ifndef HAVE_SIMDJSON
    printf("| %-40s | %12s | %10s | %10s |\n", names[4], "skipped", "-", "-");
    printf("\nsimdjson row skipped: simdjson.h not found (apt-get install libsimdjson-dev)\n");
#else
    printf("\nnote: simdjson On-Demand does not validate the parts of a line it does not read.\n");
#endif
    tlm_jscan_destroy(scan);
    free(buf);
    return (int)(sink < 0);
}
