/*
 * rw.c - Prometheus remote write encoding (see rw.h).
 *
 * Protobuf by hand. A length-delimited field is tag, varint length, bytes; nested messages
 * need their length before their bytes, so each encoder computes the sizes first (they are
 * sums of small terms) and then writes the whole request into one reserved region of the
 * output buffer. Wire facts used (1.0): WriteRequest.timeseries = 1; TimeSeries.labels = 1,
 * samples = 2; Label.name = 1, value = 2; Sample.value = 1 (fixed64 double), timestamp = 2
 * (varint int64). 2.0: Request.symbols = 4, timeseries = 5; TimeSeries.labels_refs = 1
 * (packed uint32), samples = 2, metadata = 5; Metadata.type = 1.
 *
 * Invariants: the encoders write exactly the sizes they computed (asserted); a negative
 * timestamp is written as its two's-complement 10-byte varint, as protobuf does.
 */
#define _GNU_SOURCE
#include "rw.h"

#include <assert.h>
#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- varints --------------------------------------------------------------------- */

static inline size_t vlen(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline char *vput(char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (char)v;
    return p;
}

static inline char *put_double(char *p, double d)
{
    uint64_t b;
    memcpy(&b, &d, 8);
    for (int i = 0; i < 8; i++)
        *p++ = (char)(b >> (8 * i)); /* little-endian on any host */
    return p;
}

/* bytes of a length-delimited field holding n bytes (tag < 16) */
static inline size_t ld(size_t n)
{
    return 1 + vlen(n) + n;
}

static inline size_t sample_msg(const struct tlm_rw_sample *s)
{
    return 1 + 8 + 1 + vlen((uint64_t)s->ts);
}

static inline char *put_sample(char *p, const struct tlm_rw_sample *s)
{
    size_t m = sample_msg(s);
    *p++ = 0x12;
    p = vput(p, m);
    *p++ = 0x09;
    p = put_double(p, s->value);
    *p++ = 0x10;
    return vput(p, (uint64_t)s->ts);
}

static inline size_t label_msg(const struct tlm_rw_label *l)
{
    return ld(l->nlen) + ld(l->vlen);
}

static char *put_label(char *p, const struct tlm_rw_label *l)
{
    *p++ = 0x0a;
    p = vput(p, label_msg(l));
    *p++ = 0x0a;
    p = vput(p, l->nlen);
    memcpy(p, l->name, l->nlen);
    p += l->nlen;
    *p++ = 0x12;
    p = vput(p, l->vlen);
    memcpy(p, l->value, l->vlen);
    return p + l->vlen;
}

/* ---- 1.0 ------------------------------------------------------------------------- */

int tlm_rw_labels_pb(const struct tlm_rw_label *labels, size_t n, struct tlm_buf *out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ld(label_msg(&labels[i]));
    if (tlm_buf_reserve(out, total))
        return TLM_ENOMEM;
    char *p = out->data + out->len, *start = p;
    for (size_t i = 0; i < n; i++)
        p = put_label(p, &labels[i]);
    assert((size_t)(p - start) == total);
    out->len += total;
    out->data[out->len] = '\0';
    return 0;
}

static size_t series_labels_size(const struct tlm_rw_series *s)
{
    size_t n = 0;
    if (s->lpb)
        return s->lpb_len;
    for (size_t i = 0; i < s->nlabels; i++)
        n += ld(label_msg(&s->labels[i]));
    return n;
}

static size_t series_samples_size(const struct tlm_rw_sample *smp, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += ld(sample_msg(&smp[i]));
    return t;
}

static char *put_series_v1(char *p, const struct tlm_rw_series *s, size_t msg)
{
    *p++ = 0x0a;
    p = vput(p, msg);
    if (s->lpb) {
        memcpy(p, s->lpb, s->lpb_len);
        p += s->lpb_len;
    } else {
        for (size_t j = 0; j < s->nlabels; j++)
            p = put_label(p, &s->labels[j]);
    }
    for (size_t j = 0; j < s->nsamples; j++)
        p = put_sample(p, &s->samples[j]);
    return p;
}

int tlm_rw_encode_v1(const struct tlm_rw_series *series, size_t n, struct tlm_buf *out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ld(series_labels_size(&series[i]) +
                    series_samples_size(series[i].samples, series[i].nsamples));
    if (tlm_buf_reserve(out, total))
        return TLM_ENOMEM;
    char *p = out->data + out->len, *start = p;
    for (size_t i = 0; i < n; i++) {
        const struct tlm_rw_series *s = &series[i];
        p = put_series_v1(p, s, series_labels_size(s) + series_samples_size(s->samples, s->nsamples));
    }
    assert((size_t)(p - start) == total);
    (void)start;
    out->len += total;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- 2.0 ------------------------------------------------------------------------- */

struct sym {
    const char *s;
    size_t n;
    uint32_t ref;
};

struct tlm_rw_v2 {
    struct sym *tab;      /* open addressing, cap a power of two */
    size_t cap, used;
    struct sym *order;    /* symbols by ref (order[0] = "") */
    size_t norder, cap_order;
    uint32_t *refs;       /* label refs of all series, pairs */
    size_t nrefs, cap_refs;
};

struct tlm_rw_v2 *tlm_rw_v2_create(void)
{
    return calloc(1, sizeof(struct tlm_rw_v2));
}

void tlm_rw_v2_destroy(struct tlm_rw_v2 *v)
{
    if (!v)
        return;
    free(v->tab);
    free(v->order);
    free(v->refs);
    free(v);
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int sym_grow(struct tlm_rw_v2 *v)
{
    size_t ncap = v->cap ? v->cap * 2 : 256;
    struct sym *t = calloc(ncap, sizeof(*t));
    if (!t)
        return TLM_ENOMEM;
    for (size_t i = 0; i < v->cap; i++) {
        if (!v->tab[i].s)
            continue;
        size_t j = hash_bytes(v->tab[i].s, v->tab[i].n) & (ncap - 1);
        while (t[j].s)
            j = (j + 1) & (ncap - 1);
        t[j] = v->tab[i];
    }
    free(v->tab);
    v->tab = t;
    v->cap = ncap;
    return 0;
}

/* The ref of s[0..n), added to the table on first use. Returns ref, or -1 without memory. */
static long sym_ref(struct tlm_rw_v2 *v, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if ((v->used + 1) * 2 > v->cap && sym_grow(v))
        return -1;
    size_t j = hash_bytes(s, n) & (v->cap - 1);
    while (v->tab[j].s) {
        if (v->tab[j].n == n && memcmp(v->tab[j].s, s, n) == 0)
            return v->tab[j].ref;
        j = (j + 1) & (v->cap - 1);
    }
    if (v->norder == v->cap_order) {
        size_t nc = v->cap_order ? v->cap_order * 2 : 256;
        struct sym *o = realloc(v->order, nc * sizeof(*o));
        if (!o)
            return -1;
        v->order = o;
        v->cap_order = nc;
    }
    struct sym e = { s, n, (uint32_t)v->norder };
    v->tab[j] = e;
    v->used++;
    v->order[v->norder++] = e;
    return e.ref;
}

int tlm_rw_encode_v2(struct tlm_rw_v2 *v, const struct tlm_rw_series *series, size_t n,
                     int metric_type, struct tlm_buf *out)
{
    size_t nl = 0, total = 0, k = 0;
    if (v->cap)
        memset(v->tab, 0, v->cap * sizeof(*v->tab));
    v->used = 0;
    v->norder = 0;
    v->nrefs = 0;
    {
        /* symbols[0] is the empty string */
        struct sym e = { "", 0, 0 };
        if (v->cap_order == 0) {
            v->order = malloc(256 * sizeof(*v->order));
            if (!v->order)
                return TLM_ENOMEM;
            v->cap_order = 256;
        }
        v->order[v->norder++] = e;
    }
    for (size_t i = 0; i < n; i++)
        nl += series[i].nlabels;
    if (nl * 2 > v->cap_refs) {
        uint32_t *r = realloc(v->refs, nl * 2 * sizeof(*r));
        if (!r)
            return TLM_ENOMEM;
        v->refs = r;
        v->cap_refs = nl * 2;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < series[i].nlabels; j++) {
            const struct tlm_rw_label *l = &series[i].labels[j];
            long a = sym_ref(v, l->name, l->nlen), b = sym_ref(v, l->value, l->vlen);
            if (a < 0 || b < 0)
                return TLM_ENOMEM;
            v->refs[v->nrefs++] = (uint32_t)a;
            v->refs[v->nrefs++] = (uint32_t)b;
        }
    /* sizes */
    for (size_t i = 0; i < v->norder; i++)
        total += ld(v->order[i].n);
    for (size_t i = 0; i < n; i++) {
        size_t r = 0, msg;
        for (size_t j = 0; j < series[i].nlabels * 2; j++)
            r += vlen(v->refs[k + j]);
        k += series[i].nlabels * 2;
        msg = (series[i].nlabels ? ld(r) : 0) +
              series_samples_size(series[i].samples, series[i].nsamples) +
              (metric_type ? ld(2) : 0);
        total += ld(msg);
    }
    if (tlm_buf_reserve(out, total))
        return TLM_ENOMEM;
    char *p = out->data + out->len, *start = p;
    for (size_t i = 0; i < v->norder; i++) {
        *p++ = 0x22;
        p = vput(p, v->order[i].n);
        memcpy(p, v->order[i].s, v->order[i].n);
        p += v->order[i].n;
    }
    k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tlm_rw_series *s = &series[i];
        size_t r = 0, m = s->nlabels * 2, msg;
        for (size_t j = 0; j < m; j++)
            r += vlen(v->refs[k + j]);
        msg = (s->nlabels ? ld(r) : 0) + series_samples_size(s->samples, s->nsamples) +
              (metric_type ? ld(2) : 0);
        *p++ = 0x2a;
        p = vput(p, msg);
        if (s->nlabels) {
            *p++ = 0x0a;
            p = vput(p, r);
            for (size_t j = 0; j < m; j++)
                p = vput(p, v->refs[k + j]);
        }
        k += m;
        for (size_t j = 0; j < s->nsamples; j++)
            p = put_sample(p, &s->samples[j]);
        if (metric_type) {
            *p++ = 0x2a;
            *p++ = 0x02;
            *p++ = 0x08;
            *p++ = (char)metric_type;
        }
    }
    assert((size_t)(p - start) == total);
    (void)start;
    out->len += total;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- decoding 1.0 ------------------------------------------------------------------ */

struct rd {
    const unsigned char *p, *end, *start;
};

static int rd_varint(struct rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return -1;
        unsigned char b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Skips a field of wire type wt. */
static int rd_skip(struct rd *r, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0: return rd_varint(r, &v);
    case 1:
        if (r->end - r->p < 8)
            return -1;
        r->p += 8;
        return 0;
    case 2:
        if (rd_varint(r, &v) || (uint64_t)(r->end - r->p) < v)
            return -1;
        r->p += v;
        return 0;
    case 5:
        if (r->end - r->p < 4)
            return -1;
        r->p += 4;
        return 0;
    default: return -1;
    }
}

/* Reads a length-delimited field's body into sub. */
static int rd_sub(struct rd *r, struct rd *sub)
{
    uint64_t v;
    if (rd_varint(r, &v) || (uint64_t)(r->end - r->p) < v)
        return -1;
    sub->start = r->start;
    sub->p = r->p;
    sub->end = r->p + v;
    r->p += v;
    return 0;
}

#define GROW(arr, n, cap)                                                              \
    do {                                                                               \
        if ((n) == (cap)) {                                                            \
            size_t nc_ = (cap) ? (cap) * 2 : 64;                                       \
            void *np_ = realloc((arr), nc_ * sizeof(*(arr)));                          \
            if (!np_)                                                                  \
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");                \
            (arr) = np_;                                                               \
            (cap) = nc_;                                                               \
        }                                                                              \
    } while (0)

static int bad(struct tlm_error *err, const struct rd *r, const char *what)
{
    return tlm_error_set(err, TLM_EPARSE, "malformed WriteRequest at byte %ld: %s",
                         (long)(r->p - r->start), what);
}

int tlm_rw_decode_v1(const char *p, size_t n, struct tlm_rw_req *req, struct tlm_error *err)
{
    struct rd r = { (const unsigned char *)p, (const unsigned char *)p + n,
                    (const unsigned char *)p };
    req->nseries = req->nlabels = req->nsamples = 0;
    while (r.p < r.end) {
        uint64_t tag;
        if (rd_varint(&r, &tag))
            return bad(err, &r, "bad tag");
        if (tag != 0x0a) {
            if (rd_skip(&r, tag & 7))
                return bad(err, &r, "bad field");
            continue;
        }
        struct rd ts;
        if (rd_sub(&r, &ts))
            return bad(err, &r, "truncated TimeSeries");
        GROW(req->series, req->nseries, req->cap_series);
        struct tlm_rw_series *s = &req->series[req->nseries++];
        memset(s, 0, sizeof(*s));
        /* labels and samples hold indices until the arrays stop moving */
        s->labels = (void *)(uintptr_t)req->nlabels;
        s->samples = (void *)(uintptr_t)req->nsamples;
        while (ts.p < ts.end) {
            if (rd_varint(&ts, &tag))
                return bad(err, &ts, "bad tag");
            if (tag == 0x0a) {
                struct rd lb;
                struct tlm_rw_label l = { "", 0, "", 0 };
                if (rd_sub(&ts, &lb))
                    return bad(err, &ts, "truncated Label");
                while (lb.p < lb.end) {
                    struct rd str;
                    if (rd_varint(&lb, &tag))
                        return bad(err, &lb, "bad tag");
                    if ((tag == 0x0a || tag == 0x12)) {
                        if (rd_sub(&lb, &str))
                            return bad(err, &lb, "truncated string");
                        if (tag == 0x0a) {
                            l.name = (const char *)str.p;
                            l.nlen = (size_t)(str.end - str.p);
                        } else {
                            l.value = (const char *)str.p;
                            l.vlen = (size_t)(str.end - str.p);
                        }
                    } else if (rd_skip(&lb, tag & 7)) {
                        return bad(err, &lb, "bad field");
                    }
                }
                GROW(req->labels, req->nlabels, req->cap_labels);
                req->labels[req->nlabels++] = l;
                s->nlabels++;
            } else if (tag == 0x12) {
                struct rd sm;
                struct tlm_rw_sample x = { 0, 0 };
                if (rd_sub(&ts, &sm))
                    return bad(err, &ts, "truncated Sample");
                while (sm.p < sm.end) {
                    uint64_t v;
                    if (rd_varint(&sm, &tag))
                        return bad(err, &sm, "bad tag");
                    if (tag == 0x09) {
                        if (sm.end - sm.p < 8)
                            return bad(err, &sm, "truncated double");
                        uint64_t b = 0;
                        for (int i = 0; i < 8; i++)
                            b |= (uint64_t)sm.p[i] << (8 * i);
                        memcpy(&x.value, &b, 8);
                        sm.p += 8;
                    } else if (tag == 0x10) {
                        if (rd_varint(&sm, &v))
                            return bad(err, &sm, "bad varint");
                        x.ts = (int64_t)v;
                    } else if (rd_skip(&sm, tag & 7)) {
                        return bad(err, &sm, "bad field");
                    }
                }
                GROW(req->samples, req->nsamples, req->cap_samples);
                req->samples[req->nsamples++] = x;
                s->nsamples++;
            } else if (rd_skip(&ts, tag & 7)) {
                return bad(err, &ts, "bad field");
            }
        }
    }
    for (size_t i = 0; i < req->nseries; i++) {
        struct tlm_rw_series *s = &req->series[i];
        s->labels = req->labels + (uintptr_t)s->labels;
        s->samples = req->samples + (uintptr_t)s->samples;
    }
    return 0;
}

void tlm_rw_req_free(struct tlm_rw_req *r)
{
    free(r->series);
    free(r->labels);
    free(r->samples);
    memset(r, 0, sizeof(*r));
}

size_t tlm_rw_req_series_of(const struct tlm_rw_req *r, size_t i)
{
    size_t lo = 0, hi = r->nseries;
    /* samples of series k start at r->series[k].samples - r->samples */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((size_t)(r->series[mid].samples - r->samples) <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int tlm_rw_encode_v1_range(const struct tlm_rw_req *r, size_t from, size_t to,
                           struct tlm_buf *out)
{
    struct tlm_rw_series one[64];
    size_t k = 0;
    if (from >= to)
        return 0;
    for (size_t i = tlm_rw_req_series_of(r, from); i < r->nseries; i++) {
        const struct tlm_rw_series *s = &r->series[i];
        size_t a = (size_t)(s->samples - r->samples), b = a + s->nsamples;
        if (a >= to)
            break;
        if (b <= from)
            continue;
        size_t lo = a > from ? a : from, hi = b < to ? b : to;
        one[k] = *s;
        one[k].lpb = NULL;
        one[k].samples = r->samples + lo;
        one[k].nsamples = hi - lo;
        if (++k == 64) {
            if (tlm_rw_encode_v1(one, k, out))
                return TLM_ENOMEM;
            k = 0;
        }
    }
    return k ? tlm_rw_encode_v1(one, k, out) : 0;
}

/* ---- snappy ---------------------------------------------------------------------- */

int tlm_rw_snappy(const char *p, size_t n, struct tlm_buf *out)
{
    size_t m = snappy_max_compressed_length(n);
    if (tlm_buf_reserve(out, m))
        return TLM_ENOMEM;
    if (snappy_compress(p, n, out->data + out->len, &m) != SNAPPY_OK)
        return TLM_ENOMEM;
    out->len += m;
    out->data[out->len] = '\0';
    return 0;
}

int tlm_rw_unsnappy(const char *p, size_t n, struct tlm_buf *out)
{
    size_t m;
    if (snappy_uncompressed_length(p, n, &m) != SNAPPY_OK)
        return TLM_EPARSE;
    if (tlm_buf_reserve(out, m))
        return TLM_ENOMEM;
    if (snappy_uncompress(p, n, out->data + out->len, &m) != SNAPPY_OK)
        return TLM_EPARSE;
    out->len += m;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- names ------------------------------------------------------------------------ */

static inline int name_char(unsigned char c, int first, int metric)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return 1;
    if (metric && c == ':')
        return 1;
    return !first && c >= '0' && c <= '9';
}

static int valid(const char *s, size_t n, int metric)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i], i == 0, metric))
            return 0;
    return 1;
}

int tlm_rw_valid_metric(const char *s, size_t n)
{
    return valid(s, n, 1);
}

int tlm_rw_valid_label(const char *s, size_t n)
{
    return valid(s, n, 0);
}

int tlm_rw_sanitize(const char *s, size_t n, int metric, struct tlm_buf *out)
{
    if (tlm_buf_reserve(out, n + 1))
        return TLM_ENOMEM;
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        out->data[out->len++] = '_';
    for (size_t i = 0; i < n; i++)
        out->data[out->len++] = name_char((unsigned char)s[i], 0, metric) ? s[i] : '_';
    out->data[out->len] = '\0';
    return 0;
}

/* ---- retry timing ----------------------------------------------------------------- */

double tlm_rw_backoff(int attempt, double min_ms, double max_ms, double u)
{
    double d = min_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    return d / 2 + u * d / 2;
}

int tlm_rw_retry_after(const char *s, int64_t now, double *secs)
{
    const char *p = s;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p >= '0' && *p <= '9') {
        char *end;
        double v = strtod(p, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (*end || !(v >= 0))
            return TLM_EPARSE;
        *secs = v;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(p, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end)
        return TLM_EPARSE;
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    if (*end)
        return TLM_EPARSE;
    int64_t t = (int64_t)timegm(&tm);
    *secs = t > now ? (double)(t - now) : 0;
    return 0;
}

/* ---- values ----------------------------------------------------------------------- */

int tlm_rw_format_value(double v, struct tlm_buf *out)
{
    char b[40];
    if (isnan(v))
        return tlm_buf_puts(out, "NaN") ? TLM_ENOMEM : 0;
    if (isinf(v))
        return tlm_buf_puts(out, v > 0 ? "+Inf" : "-Inf") ? TLM_ENOMEM : 0;
    if (v == trunc(v) && fabs(v) < 1e15) {
        /* whole numbers as integers: 40, not the shortest %g's 4e+01 */
        snprintf(b, sizeof(b), "%lld", (long long)v);
        if (v == 0 && signbit(v))
            snprintf(b, sizeof(b), "-0");
        return tlm_buf_puts(out, b) ? TLM_ENOMEM : 0;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(b, sizeof(b), "%.*g", prec, v);
        if (strtod(b, NULL) == v)
            break;
    }
    return tlm_buf_puts(out, b) ? TLM_ENOMEM : 0;
}

int tlm_rw_is_stale(double d)
{
    uint64_t b;
    memcpy(&b, &d, 8);
    return b == TLM_RW_STALE_BITS;
}

double tlm_rw_stale(void)
{
    uint64_t b = TLM_RW_STALE_BITS;
    double d;
    memcpy(&d, &b, 8);
    return d;
}
