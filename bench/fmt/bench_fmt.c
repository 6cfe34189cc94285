/*
 * bench_fmt.c - records/s of the csv and tokens parsers (lib/fmt*.c) on one core.
 *
 * Builds 1 M synthetic records in memory (IoT-like, ~40-60 bytes each), feeds them line by
 * line to tlm_fmt_line and reports the median of 5 runs. The output buffer is emptied every
 * 4096 lines, as a writer flushing pipe-sized pieces would. Build (from the top directory):
 *
 *   gcc -std=gnu11 -O2 -iquote src/lib src/lib/{error,buf,time,jwrite,fmt,fmt_csv,fmt_tokens,\
 *       fmt_influx,fmt_graphite,fmt_prom}.c bench/fmt/bench_fmt.c -ljansson -lcsv -lm \
 *       -o bench_fmt && ./bench_fmt
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "error.h"
#include "fmt.h"

#define N 1000000
#define RUNS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run(const struct tlm_fmt_opts *o, const char *text, const size_t *off,
                  const size_t *len, size_t nlines, size_t *bytes_out)
{
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
        struct tlm_error err;
        struct tlm_buf out = TLM_BUF_INIT;
        struct tlm_fmt *f = tlm_fmt_create(o, &err);
        size_t total = 0;
        long events = 0;
        double t0;
        if (!f) {
            fprintf(stderr, "create: %s\n", err.text);
            exit(1);
        }
        t0 = now();
        for (size_t i = 0; i < nlines; i++) {
            int n = tlm_fmt_line(f, text + off[i], len[i], &out, &err);
            if (n < 0) {
                fprintf(stderr, "line %zu: %s\n", i + 1, err.text);
                exit(1);
            }
            events += n;
            if ((i & 4095) == 4095) {
                total += out.len;
                tlm_buf_reset(&out);
            }
        }
        t[r] = now() - t0;
        total += out.len;
        *bytes_out = total;
        if (events != N) {
            fprintf(stderr, "expected %d events, got %ld\n", N, events);
            exit(1);
        }
        tlm_fmt_destroy(f);
        tlm_buf_free(&out);
    }
    qsort(t, RUNS, sizeof(t[0]), cmp_d);
    return N / t[RUNS / 2];
}

int main(void)
{
    size_t cap = (size_t)N * 80 + 100, used = 0;
    char *text = malloc(cap);
    size_t *off = malloc((N + 1) * sizeof(size_t)), *len = malloc((N + 1) * sizeof(size_t));
    size_t nlines = 0, bytes;
    struct tlm_fmt_opts o;
    unsigned seed = 1;
    double rate;
    if (!text || !off || !len)
        return 1;

    /* csv: header + N records */
    off[nlines] = used;
    used += (size_t)sprintf(text + used, "deviceId,timestamp,cpuUsage,status");
    len[nlines] = used - off[nlines];
    nlines++;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        off[nlines] = used;
        used += (size_t)sprintf(text + used, "device-%u,%lld,%u.%u,%s", seed % 100000,
                                1700000000000LL + i, (seed >> 8) % 100, (seed >> 4) % 10,
                                (seed & 16) ? "ok" : "warn");
        len[nlines] = used - off[nlines];
        nlines++;
    }
    memset(&o, 0, sizeof(o));
    o.kind = TLM_FMT_CSV;
    o.time_field = "no_such_column";
    rate = run(&o, text, off, len, nlines, &bytes);
    printf("csv     (no time field): %.2f M records/s, %.1f MB in, %.1f MB out\n", rate / 1e6,
           used / 1e6, bytes / 1e6);
    o.time_field = "timestamp";
    rate = run(&o, text, off, len, nlines, &bytes);
    printf("csv     (time column):   %.2f M records/s\n", rate / 1e6);

    /* tokens: N tokens, one per line, and 10 per line */
    used = nlines = 0;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        off[nlines] = used;
        used += (size_t)sprintf(text + used, "%08x-d3e3-48f6-9539-e6ac5c3f9149-%s-%u", seed,
                                (seed & 1) ? "products_fetch_start" : "products_fetch_end",
                                seed % 2000000000u);
        len[nlines] = used - off[nlines];
        nlines++;
    }
    memset(&o, 0, sizeof(o));
    o.kind = TLM_FMT_TOKENS;
    rate = run(&o, text, off, len, nlines, &bytes);
    printf("tokens  (1 per line):    %.2f M records/s, %.1f MB in, %.1f MB out\n", rate / 1e6,
           used / 1e6, bytes / 1e6);
    used = nlines = 0;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        if (i % 10 == 0) {
            if (i)
                len[nlines - 1] = used - off[nlines - 1];
            off[nlines++] = used;
        } else {
            text[used++] = ' ';
        }
        used += (size_t)sprintf(text + used, "k%u-start-%u", seed % 100000, seed % 1000);
    }
    len[nlines - 1] = used - off[nlines - 1];
    rate = run(&o, text, off, len, nlines, &bytes);
    printf("tokens  (10 per line):   %.2f M records/s\n", rate / 1e6);
    free(text);
    free(off);
    free(len);
    return 0;
}
