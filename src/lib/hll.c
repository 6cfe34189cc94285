/*
 * hll.c - HyperLogLog with a sparse representation for small sets and Ertl's improved
 * estimator (see hll.h).
 *
 * Design. A hash h picks register idx = h >> (64 - p); the register keeps the largest
 * rho = (leading zeros of h << p) + 1 seen, capped at q + 1 = 65 - p. Registers are one
 * byte each (m bytes dense; 16 KiB at p = 14).
 *
 * Sparse. Until more than m / 4 distinct prefixes are seen, the sketch holds a sorted
 * array of 32-bit entries, one per 25-bit prefix idx' = h >> 39 (HLL++'s encoding, with
 * p' = 25): if the 25 - p bits of idx' below the register index are not all zero they
 * determine rho, and the entry is idx' << 7; otherwise it is idx' << 7 | rho' << 1 | 1,
 * rho' the rho of h << 25 over 39 bits. Either way the dense register follows from the
 * entry exactly, so converting loses nothing; for one idx' the larger entry wins. The
 * estimate while sparse is linear counting over 2^25 cells, -2^25 ln(1 - k / 2^25) for k
 * entries: k plus about k^2 / 2^26 for the prefixes that collided (0.25 at k = 4096).
 *
 * Dense estimate: Ertl's improved raw estimator, m^2 / (2 ln 2) / z with z built from the
 * register histogram through his sigma and tau series; unbiased from 0 to far beyond
 * 2^64 / m without HLL++'s empirical bias tables or a linear-counting switch.
 *
 * Invariants: sparse == (regs == NULL); sparse entries are strictly ascending by idx' and
 * number at most m / 4; the state is a function of the set of hashes added.
 *
 * References: P. Flajolet, E. Fusy, O. Gandouet, F. Meunier, "HyperLogLog: the analysis
 * of a near-optimal cardinality estimation algorithm", AofA 2007; S. Heule, M. Nunkesser,
 * A. Hall, "HyperLogLog in practice" (HLL++), EDBT 2013 (sparse encoding); O. Ertl, "New
 * cardinality estimation algorithms for HyperLogLog sketches", arXiv:1702.01284 (2017),
 * sections 4-5 (improved estimator); W. Wang, wyhash (the multiply-fold hash design).
 */
#include "hll.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define P2 25   /* sparse prefix bits */

struct tlm_hll {
    int p;            /* precision */
    uint32_t m;       /* 2^p registers */
    uint8_t *regs;    /* m registers when dense, else NULL */
    uint32_t *sp;     /* nsp sparse entries ascending, room for spcap */
    uint32_t nsp, spcap;
};

/* ---------------------------------------------------------------- hashing */

static inline uint64_t mum(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline uint64_t rd32(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

uint64_t tlm_hll_hash(const void *data, size_t n)
{
    static const uint64_t s0 = UINT64_C(0xa0761d6478bd642f), s1 = UINT64_C(0xe7037ed1a0b428db),
                          s2 = UINT64_C(0x8ebc6af09c88c6e3), s3 = UINT64_C(0x589965cc75374cc3);
    const unsigned char *p = data;
    uint64_t seed = mum(s0 ^ (uint64_t)n, s1);
    size_t i = n;
    while (i > 16) {
        seed = mum(rd64(p) ^ s1, rd64(p + 8) ^ seed);
        p += 16;
        i -= 16;
    }
    uint64_t a = 0, b = 0;
    if (i >= 8) {
        a = rd64(p);
        b = rd64(p + i - 8);
    } else if (i >= 4) {
        a = rd32(p);
        b = rd32(p + i - 4);
    } else if (i > 0) {
        a = (uint64_t)p[0] << 16 | (uint64_t)p[i >> 1] << 8 | p[i - 1];
    }
    uint64_t h = mum(a ^ s1, b ^ seed ^ s2);
    h = mum(h ^ s3, (uint64_t)n ^ s0);
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

/* ---------------------------------------------------------------- registers */

static inline uint32_t sparse_entry(uint64_t hash, int p)
{
    uint32_t idx2 = (uint32_t)(hash >> (64 - P2));
    uint32_t mask = (1u << (P2 - p)) - 1;
    if (idx2 & mask)
        return idx2 << 7;
    uint64_t w = hash << P2;
    uint32_t rho = w ? (uint32_t)__builtin_clzll(w) + 1 : 64 - P2 + 1;
    return idx2 << 7 | rho << 1 | 1;
}

/* register index and value of a sparse entry */
static inline void entry_reg(uint32_t e, int p, uint32_t *idx, uint8_t *val)
{
    uint32_t idx2 = e >> 7;
    *idx = idx2 >> (P2 - p);
    if (e & 1) {
        *val = (uint8_t)((P2 - p) + ((e >> 1) & 63));
    } else {
        uint32_t bits = idx2 & ((1u << (P2 - p)) - 1);
        int len = 32 - __builtin_clz(bits);
        *val = (uint8_t)((P2 - p) - len + 1);
    }
}

static int to_dense(struct tlm_hll *h)
{
    uint8_t *r = calloc(h->m, 1);
    if (!r)
        return TLM_ENOMEM;
    for (uint32_t i = 0; i < h->nsp; i++) {
        uint32_t idx;
        uint8_t v;
        entry_reg(h->sp[i], h->p, &idx, &v);
        if (v > r[idx])
            r[idx] = v;
    }
    free(h->sp);
    h->sp = NULL;
    h->nsp = h->spcap = 0;
    h->regs = r;
    return 0;
}

/* ---------------------------------------------------------------- API */

struct tlm_hll *tlm_hll_create(int precision)
{
    if (precision < TLM_HLL_MIN_PRECISION || precision > TLM_HLL_MAX_PRECISION)
        return NULL;
    struct tlm_hll *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->p = precision;
    h->m = 1u << precision;
    return h;
}

void tlm_hll_destroy(struct tlm_hll *h)
{
    if (!h)
        return;
    free(h->regs);
    free(h->sp);
    free(h);
}

int tlm_hll_precision(const struct tlm_hll *h)
{
    return h->p;
}

/* first position whose idx' >= that of e */
static size_t sp_find(const uint32_t *sp, size_t n, uint32_t e)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((sp[mid] >> 7) < (e >> 7))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int tlm_hll_add_hash(struct tlm_hll *h, uint64_t hash)
{
    if (h->regs) {
        uint32_t idx = (uint32_t)(hash >> (64 - h->p));
        uint64_t w = hash << h->p;
        uint8_t v = w ? (uint8_t)(__builtin_clzll(w) + 1) : (uint8_t)(65 - h->p);
        if (v > h->regs[idx])
            h->regs[idx] = v;
        return 0;
    }
    uint32_t e = sparse_entry(hash, h->p);
    size_t at = sp_find(h->sp, h->nsp, e);
    if (at < h->nsp && (h->sp[at] >> 7) == (e >> 7)) {
        if (e > h->sp[at])
            h->sp[at] = e;
        return 0;
    }
    if (h->nsp + 1 > h->m / 4) {
        if (to_dense(h))
            return TLM_ENOMEM;
        return tlm_hll_add_hash(h, hash);
    }
    if (h->nsp == h->spcap) {
        uint32_t cap = h->spcap ? h->spcap + h->spcap / 2 + 4 : 4;
        if (cap > h->m / 4)
            cap = h->m / 4;
        uint32_t *s = realloc(h->sp, cap * sizeof *s);
        if (!s)
            return TLM_ENOMEM;
        h->sp = s;
        h->spcap = cap;
    }
    memmove(h->sp + at + 1, h->sp + at, (h->nsp - at) * sizeof *h->sp);
    h->sp[at] = e;
    h->nsp++;
    return 0;
}

int tlm_hll_merge(struct tlm_hll *dst, const struct tlm_hll *src)
{
    if (dst->p != src->p)
        return TLM_EINVAL;
    if (dst == src)
        return 0;
    if (!dst->regs && !src->regs) {
        /* union of two sorted lists */
        size_t cap = (size_t)dst->nsp + src->nsp, k = 0, i = 0, j = 0;
        uint32_t *u = malloc((cap ? cap : 1) * sizeof *u);
        if (!u)
            return TLM_ENOMEM;
        while (i < dst->nsp || j < src->nsp) {
            uint32_t a = i < dst->nsp ? dst->sp[i] : UINT32_MAX;
            uint32_t b = j < src->nsp ? src->sp[j] : UINT32_MAX;
            if (j >= src->nsp || (i < dst->nsp && (a >> 7) < (b >> 7))) {
                u[k++] = a;
                i++;
            } else if (i >= dst->nsp || (b >> 7) < (a >> 7)) {
                u[k++] = b;
                j++;
            } else {
                u[k++] = a > b ? a : b;
                i++;
                j++;
            }
        }
        uint32_t *old = dst->sp;
        uint32_t oldn = dst->nsp, oldcap = dst->spcap;
        dst->sp = u;
        dst->nsp = (uint32_t)k;
        dst->spcap = (uint32_t)cap;
        if (k > dst->m / 4 && to_dense(dst)) {
            dst->sp = old;
            dst->nsp = oldn;
            dst->spcap = oldcap;
            free(u);
            return TLM_ENOMEM;
        }
        free(old);
        return 0;
    }
    if (!dst->regs && to_dense(dst))
        return TLM_ENOMEM;
    if (src->regs) {
        for (uint32_t i = 0; i < dst->m; i++)
            if (src->regs[i] > dst->regs[i])
                dst->regs[i] = src->regs[i];
    } else {
        for (uint32_t i = 0; i < src->nsp; i++) {
            uint32_t idx;
            uint8_t v;
            entry_reg(src->sp[i], src->p, &idx, &v);
            if (v > dst->regs[idx])
                dst->regs[idx] = v;
        }
    }
    return 0;
}

static double sigma(double x)
{
    if (x == 1)
        return INFINITY;
    double y = 1, z = x, zp;
    do {
        x *= x;
        zp = z;
        z += x * y;
        y += y;
    } while (z != zp);
    return z;
}

static double tau(double x)
{
    if (x == 0 || x == 1)
        return 0;
    double y = 1, z = 1 - x, zp;
    do {
        x = sqrt(x);
        zp = z;
        y *= 0.5;
        z -= (1 - x) * (1 - x) * y;
    } while (z != zp);
    return z / 3;
}

double tlm_hll_estimate(const struct tlm_hll *h)
{
    if (!h->regs) {
        double m2 = (double)(1u << P2);
        return -m2 * log1p(-(double)h->nsp / m2);
    }
    int q = 64 - h->p;
    uint32_t c[66] = { 0 };
    for (uint32_t i = 0; i < h->m; i++)
        c[h->regs[i]]++;
    double m = h->m;
    double z = m * tau(1 - c[q + 1] / m);
    for (int k = q; k >= 1; k--)
        z = 0.5 * (z + c[k]);
    z += m * sigma(c[0] / m);
    return m * m / (2 * M_LN2) / z;
}

size_t tlm_hll_bytes(const struct tlm_hll *h)
{
    return sizeof *h + (h->regs ? h->m : 0) + (size_t)h->spcap * sizeof(uint32_t);
}

/* ---------------------------------------------------------------- serialization */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int tlm_hll_write(const struct tlm_hll *h, struct tlm_buf *out)
{
    int bad = tlm_buf_printf(out, "{\"p\":%d,", h->p);
    if (h->regs) {
        bad |= tlm_buf_puts(out, "\"r\":\"");
        bad |= tlm_buf_reserve(out, h->m + 2);
        if (!bad) {
            for (uint32_t i = 0; i < h->m; i++)
                out->data[out->len + i] = b64[h->regs[i]];
            out->len += h->m;
            out->data[out->len] = '\0';
        }
        bad |= tlm_buf_puts(out, "\"}");
    } else {
        bad |= tlm_buf_puts(out, "\"s\":[");
        for (uint32_t i = 0; i < h->nsp; i++)
            bad |= tlm_buf_printf(out, i ? ",%u" : "%u", h->sp[i]);
        bad |= tlm_buf_puts(out, "]}");
    }
    return bad ? TLM_ENOMEM : 0;
}

struct tlm_hll *tlm_hll_read(const char *json, size_t n, struct tlm_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, n, JSON_DECODE_ANY, &je);
    if (!root) {
        tlm_error_set(err, TLM_EPARSE, "hll: %s", je.text);
        return NULL;
    }
    struct tlm_hll *h = NULL;
    const char *why = NULL;
    json_t *jp = json_object_get(root, "p"), *js = json_object_get(root, "s"),
           *jr = json_object_get(root, "r");
    if (!json_is_object(root) || !json_is_integer(jp) || json_integer_value(jp) < 4 ||
        json_integer_value(jp) > 18 || (!js == !jr)) {
        why = "expected {\"p\": 4..18} with one of \"s\" and \"r\"";
        goto fail;
    }
    h = tlm_hll_create((int)json_integer_value(jp));
    if (!h)
        goto oom;
    if (jr) {
        if (!json_is_string(jr) || json_string_length(jr) != h->m) {
            why = "\"r\" must be a string of 2^p register digits";
            goto fail;
        }
        if (!(h->regs = malloc(h->m)))
            goto oom;
        const char *s = json_string_value(jr);
        for (uint32_t i = 0; i < h->m; i++) {
            const char *c = s[i] ? strchr(b64, s[i]) : NULL;
            if (!c || c - b64 > 65 - h->p) {
                why = "bad register digit";
                goto fail;
            }
            h->regs[i] = (uint8_t)(c - b64);
        }
    } else {
        size_t k = json_array_size(js);
        if (!json_is_array(js) || k > h->m / 4) {
            why = "\"s\" must be an array of at most 2^p / 4 entries";
            goto fail;
        }
        h->sp = malloc((k ? k : 1) * sizeof *h->sp);
        if (!h->sp)
            goto oom;
        h->spcap = (uint32_t)(k ? k : 1);
        for (size_t i = 0; i < k; i++) {
            json_t *x = json_array_get(js, i);
            json_int_t v = json_is_integer(x) ? json_integer_value(x) : -1;
            uint32_t e = (uint32_t)v, mask = (1u << (P2 - h->p)) - 1;
            int ok = v >= 0 && v <= (json_int_t)UINT32_MAX;
            if (ok && (e & 1)) /* rho' in 1..40 and the low prefix bits zero */
                ok = ((e >> 1) & 63) >= 1 && ((e >> 1) & 63) <= 64 - P2 + 1 &&
                     ((e >> 7) & mask) == 0;
            else if (ok)
                ok = (e & 127) == 0 && ((e >> 7) & mask) != 0;
            if (ok && i > 0)
                ok = (e >> 7) > (h->sp[i - 1] >> 7);
            if (!ok) {
                why = "bad or unordered sparse entry";
                goto fail;
            }
            h->sp[i] = e;
            h->nsp++;
        }
    }
    json_decref(root);
    return h;
oom:
    tlm_error_set(err, TLM_ENOMEM, "hll: out of memory");
    tlm_hll_destroy(h);
    json_decref(root);
    return NULL;
fail:
    tlm_error_set(err, TLM_EPARSE, "hll: %s", why);
    tlm_hll_destroy(h);
    json_decref(root);
    return NULL;
}
