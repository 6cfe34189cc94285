/*
 * gen.c - synthetic IoT telemetry (see gen.h). Formatting is by hand (no printf) so
 * that millions of lines take a second or two.
 */
#include "gen.h"

#include <math.h>
#include <string.h>

#include "error.h"

void tlm_gen_defaults(struct tlm_gen_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->count = 1000;
    o->devices = 100;
    o->rate = 1000;
    o->start = INT64_C(1704067200) * TLM_NS_PER_S; /* 2024-01-01T00:00:00Z */
    o->late_by = 600 * TLM_NS_PER_S;
    o->seed = 1;
    o->unit = TLM_UNIT_MS;
}

void tlm_gen_init(struct tlm_gen *g, const struct tlm_gen_opts *o)
{
    g->o = *o;
    if (g->o.devices == 0)
        g->o.devices = 1;
    tlm_rng_seed(&g->rng, o->seed);
    g->i = 0;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

/* A non-negative value with up to `dec` decimals, trailing zeros dropped, at least one. */
static char *put_fixed(char *p, double v, int dec)
{
    static const uint64_t pow10[] = { 1, 10, 100, 1000, 10000 };
    uint64_t m = pow10[dec];
    uint64_t x = (uint64_t)llround(v * (double)m);
    uint64_t ip = x / m, fp = x % m;
    p = put_u64(p, ip);
    *p++ = '.';
    if (fp == 0) {
        *p++ = '0';
        return p;
    }
    for (int d = dec - 1; d >= 0 && fp; d--) {
        uint64_t div = pow10[d];
        *p++ = (char)('0' + fp / div);
        fp %= div;
    }
    return p;
}

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

int tlm_gen_next(struct tlm_gen *g, struct tlm_buf *out)
{
    struct tlm_rng dev;
    uint64_t d;
    double base, cpu, mem, temp;
    tlm_time_t t;
    char *p, *start;
    size_t len;
    int lines = 1;

    if (g->i >= g->o.count)
        return 0;
    d = tlm_rng_below(&g->rng, g->o.devices);
    /* per-device constants come from a generator seeded by the device number */
    tlm_rng_seed(&dev, g->o.seed * UINT64_C(0x100000001b3) + d);
    base = 10 + 70 * tlm_rng_double(&dev);
    cpu = clamp(base + 20 * (tlm_rng_double(&g->rng) + tlm_rng_double(&g->rng) - 1), 0, 100);
    mem = clamp(20 + 60 * tlm_rng_double(&dev) + 5 * (tlm_rng_double(&g->rng) - 0.5), 0, 100);
    temp = 35 + cpu * 0.3 + 2 * tlm_rng_double(&g->rng);

    t = g->o.start + (tlm_time_t)((double)g->i * 1e9 / g->o.rate);
    if (g->o.disorder > 0)
        t -= (tlm_time_t)tlm_rng_below(&g->rng, (uint64_t)g->o.disorder + 1);
    if (g->o.late_fraction > 0 && tlm_rng_double(&g->rng) < g->o.late_fraction)
        t -= g->o.late_by;
    if (g->o.dup_fraction > 0 && tlm_rng_double(&g->rng) < g->o.dup_fraction)
        lines = 2;

    if (tlm_buf_reserve(out, 256 * 2))
        return TLM_ENOMEM;
    start = p = out->data + out->len;
    memcpy(p, "{\"deviceId\":\"device-", 20);
    p = put_u64(p + 20, d);
    memcpy(p, "\",\"timestamp\":", 14);
    p = put_i64(p + 14, tlm_time_to_unit(t, g->o.unit));
    memcpy(p, ",\"cpuUsage\":", 12);
    p = put_fixed(p + 12, cpu, 3);
    memcpy(p, ",\"memUsage\":", 12);
    p = put_fixed(p + 12, mem, 2);
    memcpy(p, ",\"temperature\":", 15);
    p = put_fixed(p + 15, temp, 1);
    memcpy(p, ",\"eventId\":", 11);
    p = put_u64(p + 11, g->i + 1);
    memcpy(p, "}\n", 2);
    p += 2;
    len = (size_t)(p - start);
    if (lines == 2) {
        memcpy(p, start, len);
        p += len;
    }
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    g->i++;
    return lines;
}
