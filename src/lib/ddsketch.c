/*
 * ddsketch.c - DDSketch with the logarithmic mapping and collapsing-lowest dense stores
 * (see ddsketch.h for the guarantee and the quantile definition).
 *
 * Design. Each sign has a dense store: an array of 64-bit counts covering bin indices
 * [off, off + cap), of which [lo, hi] are in use (lo and hi non-empty). The array grows
 * with slack on the side that grew, never beyond max_bins. When a value needs a bin above
 * lo + max_bins - 1, every count below the new floor hi - max_bins + 1 moves to the floor
 * bin (Datadog's CollapsingLowestDenseStore), so the state after any sequence of adds and
 * merges is collapse(sum of all counts) with collapse depending only on the highest index:
 * adds and merges commute (the collapsed counts of a part sit at or below the whole's
 * floor and move there again). Nothing else depends on order: counts are integers and
 * min/max are exact, and the sketch keeps no floating-point sum.
 *
 * Index: i = ceil(ln|x| / ln gamma), by one log per add. A value exactly on a bin edge may
 * land one bin off after rounding; its bin value is then off by a factor (1 + alpha)
 * (1 +- 1e-15), i.e. the guarantee holds to within rounding.
 *
 * Invariants: a store with total == 0 has no array use (lo, hi meaningless); otherwise
 * off <= lo <= hi < off + cap, hi - lo < max_bins, counts outside [lo, hi] are zero and
 * counts at lo and hi are non-zero; n == pos.total + neg.total + zero.
 *
 * Reference: C. Masson, J. E. Rim, H. K. Lee, "DDSketch: A fast and fully-mergeable
 * quantile sketch with relative-error guarantees", PVLDB 12(12), 2019; DataDog/sketches-java
 * (store layout and collapsing).
 */
#include "ddsketch.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jwrite.h"

struct store {
    uint64_t *counts;  /* cap counts; counts[k] is bin off + k */
    int64_t off;       /* bin index of counts[0] */
    int64_t lo, hi;    /* lowest and highest non-empty bins (when total > 0) */
    uint32_t cap;
    uint64_t total;    /* sum of counts */
};

struct tlm_ddsketch {
    double alpha;
    double gamma;       /* (1 + alpha) / (1 - alpha) */
    double inv_lng;     /* 1 / ln gamma */
    double lng;         /* ln gamma */
    uint32_t max_bins;  /* per store */
    struct store pos;   /* x > 0, by index of x */
    struct store neg;   /* x < 0, by index of -x */
    uint64_t zero;      /* x == 0 */
    uint64_t n;
    double min, max;    /* exact; +inf / -inf when empty */
};

/* ---------------------------------------------------------------- stores */

/* Makes [a, b] (b - a < max_bins) fit in the array. */
static int store_cover(struct store *s, int64_t a, int64_t b, uint32_t maxb)
{
    if (s->cap && a >= s->off && b < s->off + (int64_t)s->cap)
        return 0;
    int64_t na = a, nb = b;
    if (s->total) {
        if (s->lo < na)
            na = s->lo;
        if (s->hi > nb)
            nb = s->hi;
    }
    uint64_t span = (uint64_t)(nb - na + 1);
    uint64_t cap = span + (span / 2 > 8 ? span / 2 : 8);
    if (cap > maxb)
        cap = maxb;
    if (cap < span)
        return TLM_ENOMEM; /* not reached: callers collapse first */
    uint64_t *c = calloc(cap, sizeof *c);
    if (!c)
        return TLM_ENOMEM;
    /* slack on the side that grew (both if new) */
    int64_t slack = (int64_t)(cap - span);
    int64_t noff;
    if (!s->total)
        noff = na - slack / 2;
    else if (na < s->lo)
        noff = na - slack;
    else
        noff = na;
    if (s->total)
        memcpy(c + (s->lo - noff), s->counts + (s->lo - s->off),
               (size_t)(s->hi - s->lo + 1) * sizeof *c);
    free(s->counts);
    s->counts = c;
    s->off = noff;
    s->cap = (uint32_t)cap;
    return 0;
}

/* Adds c at bin i, collapsing the lowest bins as needed. On TLM_ENOMEM s is unchanged. */
static int store_add(struct store *s, int64_t i, uint64_t c, uint32_t maxb)
{
    if (c == 0)
        return 0;
    if (s->total == 0) {
        if (store_cover(s, i, i, maxb))
            return TLM_ENOMEM;
        s->counts[i - s->off] = c;
        s->lo = s->hi = i;
        s->total = c;
        return 0;
    }
    int64_t nhi = i > s->hi ? i : s->hi;
    int64_t floor_ = nhi - (int64_t)maxb + 1;
    if (i < floor_)
        i = floor_;
    if (s->lo < floor_) {
        if (floor_ > s->hi) {
            /* everything held goes to the new floor bin; i is then within range */
            uint64_t all = s->total;
            uint64_t *old = s->counts;
            uint32_t oldcap = s->cap;
            int64_t oldoff = s->off;
            s->counts = NULL;
            s->cap = 0;
            s->total = 0;
            if (store_cover(s, floor_, i, maxb)) {
                s->counts = old;
                s->cap = oldcap;
                s->off = oldoff;
                s->total = all;
                return TLM_ENOMEM;
            }
            free(old);
            s->counts[floor_ - s->off] = all;
            s->lo = s->hi = floor_;
            s->total = all;
        } else {
            uint64_t moved = 0;
            for (int64_t k = s->lo; k < floor_; k++) {
                moved += s->counts[k - s->off];
                s->counts[k - s->off] = 0;
            }
            s->counts[floor_ - s->off] += moved;
            s->lo = floor_;
        }
    }
    int64_t nlo = i < s->lo ? i : s->lo;
    if (store_cover(s, nlo, nhi, maxb))
        return TLM_ENOMEM; /* a collapse above may have happened: same multiset view */
    s->counts[i - s->off] += c;
    s->lo = nlo;
    s->hi = nhi;
    s->total += c;
    return 0;
}

/* ---------------------------------------------------------------- API */

struct tlm_ddsketch *tlm_ddsketch_create_bins(double alpha, uint32_t max_bins)
{
    if (!(alpha > 1e-6 && alpha < 0.5) || max_bins < 16 || max_bins > (1u << 20))
        return NULL;
    struct tlm_ddsketch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->alpha = alpha;
    s->gamma = (1 + alpha) / (1 - alpha);
    s->lng = log1p(2 * alpha / (1 - alpha));
    s->inv_lng = 1 / s->lng;
    s->max_bins = max_bins;
    s->min = INFINITY;
    s->max = -INFINITY;
    return s;
}

struct tlm_ddsketch *tlm_ddsketch_create(double alpha)
{
    return tlm_ddsketch_create_bins(alpha, TLM_DDSKETCH_DEFAULT_MAX_BINS);
}

void tlm_ddsketch_destroy(struct tlm_ddsketch *s)
{
    if (!s)
        return;
    free(s->pos.counts);
    free(s->neg.counts);
    free(s);
}

static inline int64_t index_of(const struct tlm_ddsketch *s, double mag)
{
    return (int64_t)ceil(log(mag) * s->inv_lng);
}

int tlm_ddsketch_add(struct tlm_ddsketch *s, double x)
{
    if (!isfinite(x))
        return TLM_EINVAL;
    int rc = 0;
    if (x > 0)
        rc = store_add(&s->pos, index_of(s, x), 1, s->max_bins);
    else if (x < 0)
        rc = store_add(&s->neg, index_of(s, -x), 1, s->max_bins);
    else
        s->zero++;
    if (rc)
        return rc;
    s->n++;
    if (x < s->min)
        s->min = x;
    if (x > s->max)
        s->max = x;
    return 0;
}

static int store_merge(struct tlm_ddsketch *d, struct store *dst, const struct store *src)
{
    if (!src->total)
        return 0;
    /* highest first, so the floor is set once */
    for (int64_t k = src->hi; k >= src->lo; k--) {
        uint64_t c = src->counts[k - src->off];
        if (c && store_add(dst, k, c, d->max_bins))
            return TLM_ENOMEM;
        if (c)
            d->n += c;
    }
    return 0;
}

int tlm_ddsketch_merge(struct tlm_ddsketch *dst, const struct tlm_ddsketch *src)
{
    if (dst->alpha != src->alpha || dst->max_bins != src->max_bins)
        return TLM_EINVAL;
    if (dst == src) {
        for (uint32_t k = 0; k < dst->pos.cap; k++)
            dst->pos.counts[k] *= 2;
        for (uint32_t k = 0; k < dst->neg.cap; k++)
            dst->neg.counts[k] *= 2;
        dst->pos.total *= 2;
        dst->neg.total *= 2;
        dst->zero *= 2;
        dst->n *= 2;
        return 0;
    }
    if (src->n == 0)
        return 0;
    if (store_merge(dst, &dst->pos, &src->pos) || store_merge(dst, &dst->neg, &src->neg))
        return TLM_ENOMEM;
    dst->zero += src->zero;
    dst->n += src->zero;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

/* The sketch's value for the sample of rank r (0 <= r < n). */
static double value_at(const struct tlm_ddsketch *s, uint64_t r)
{
    if (r == 0)
        return s->min;
    if (r >= s->n - 1)
        return s->max;
    double v;
    const double scale = 2 / (s->gamma + 1);
    if (r < s->neg.total) {
        /* most negative first: highest index of the negative store */
        uint64_t seen = 0;
        int64_t k = s->neg.hi;
        for (;; k--) {
            seen += s->neg.counts[k - s->neg.off];
            if (seen > r)
                break;
        }
        v = -exp((double)k * s->lng) * scale;
    } else if (r < s->neg.total + s->zero) {
        v = 0;
    } else {
        uint64_t rr = r - s->neg.total - s->zero, seen = 0;
        int64_t k = s->pos.lo;
        for (;; k++) {
            seen += s->pos.counts[k - s->pos.off];
            if (seen > rr)
                break;
        }
        v = exp((double)k * s->lng) * scale;
    }
    if (v < s->min)
        v = s->min;
    if (v > s->max)
        v = s->max;
    return v;
}

double tlm_ddsketch_quantile(const struct tlm_ddsketch *s, double q)
{
    if (s->n == 0 || isnan(q))
        return NAN;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double h = q * (double)(s->n - 1);
    uint64_t j = (uint64_t)h;
    if (j >= s->n - 1)
        return s->max;
    double f = h - (double)j;
    double a = value_at(s, j);
    if (f == 0)
        return a;
    double b = value_at(s, j + 1);
    double v = a + f * (b - a);
    return v < a ? a : (v > b ? b : v);
}

double tlm_ddsketch_count(const struct tlm_ddsketch *s)
{
    return (double)s->n;
}

size_t tlm_ddsketch_bytes(const struct tlm_ddsketch *s)
{
    return sizeof *s + ((size_t)s->pos.cap + s->neg.cap) * sizeof(uint64_t);
}

/* ---------------------------------------------------------------- serialization */

static int write_store(struct tlm_buf *out, const char *key, const struct store *st)
{
    if (!st->total)
        return 0;
    int bad = tlm_buf_puts(out, key);
    bad |= tlm_json_put_int(out, st->lo);
    bad |= tlm_buf_puts(out, ",[");
    for (int64_t k = st->lo; k <= st->hi; k++) {
        if (k > st->lo)
            bad |= tlm_buf_putc(out, ',');
        bad |= tlm_json_put_int(out, (long long)st->counts[k - st->off]);
    }
    bad |= tlm_buf_puts(out, "]]");
    return bad;
}

int tlm_ddsketch_write(const struct tlm_ddsketch *s, struct tlm_buf *out)
{
    int bad = tlm_buf_puts(out, "{\"a\":");
    bad |= tlm_json_put_double(out, s->alpha);
    bad |= tlm_buf_puts(out, ",\"b\":");
    bad |= tlm_json_put_int(out, s->max_bins);
    bad |= tlm_buf_puts(out, ",\"n\":");
    bad |= tlm_json_put_int(out, (long long)s->n);
    if (s->n) {
        bad |= tlm_buf_puts(out, ",\"min\":");
        bad |= tlm_json_put_double(out, s->min);
        bad |= tlm_buf_puts(out, ",\"max\":");
        bad |= tlm_json_put_double(out, s->max);
    }
    bad |= tlm_buf_puts(out, ",\"z\":");
    bad |= tlm_json_put_int(out, (long long)s->zero);
    bad |= write_store(out, ",\"p\":[", &s->pos);
    bad |= write_store(out, ",\"m\":[", &s->neg);
    bad |= tlm_buf_putc(out, '}');
    return bad ? TLM_ENOMEM : 0;
}

/* Reads [i0, [c, ...]] into st; returns NULL or why it is wrong (-1 for memory). */
static const char *read_store(struct tlm_ddsketch *s, struct store *st, json_t *j, int *oom)
{
    if (!j)
        return NULL;
    json_t *ji = json_array_get(j, 0), *jc = json_array_get(j, 1);
    if (!json_is_array(j) || json_array_size(j) != 2 || !json_is_integer(ji) ||
        !json_is_array(jc) || json_array_size(jc) == 0 || json_array_size(jc) > s->max_bins)
        return "a store must be [first index, [counts]] of at most max_bins counts";
    json_int_t i0 = json_integer_value(ji);
    if (i0 < -((json_int_t)1 << 40) || i0 > ((json_int_t)1 << 40))
        return "bin index out of range";
    size_t nc = json_array_size(jc);
    for (size_t k = nc; k-- > 0;) {
        json_t *c = json_array_get(jc, k);
        if (!json_is_integer(c) || json_integer_value(c) < 0)
            return "counts must be integers >= 0";
        if ((k == 0 || k == nc - 1) && json_integer_value(c) == 0)
            return "the first and last counts of a store must not be 0";
        if (store_add(st, (int64_t)i0 + (int64_t)k, (uint64_t)json_integer_value(c),
                      s->max_bins)) {
            *oom = 1;
            return "out of memory";
        }
    }
    return NULL;
}

struct tlm_ddsketch *tlm_ddsketch_read(const char *json, size_t n, struct tlm_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, n, JSON_DECODE_ANY, &je);
    if (!root) {
        tlm_error_set(err, TLM_EPARSE, "ddsketch: %s", je.text);
        return NULL;
    }
    struct tlm_ddsketch *s = NULL;
    const char *why = NULL;
    int oom = 0;
    json_t *ja = json_object_get(root, "a"), *jb = json_object_get(root, "b"),
           *jn = json_object_get(root, "n"), *jz = json_object_get(root, "z");
    if (!json_is_object(root) || !json_is_number(ja) || !json_is_integer(jb) ||
        !json_is_integer(jn) || !json_is_integer(jz) || json_integer_value(jn) < 0 ||
        json_integer_value(jz) < 0 || json_integer_value(jb) < 0 ||
        json_integer_value(jb) > (1 << 20)) {
        why = "expected an object with \"a\", \"b\", \"n\" and \"z\"";
        goto fail;
    }
    s = tlm_ddsketch_create_bins(json_number_value(ja), (uint32_t)json_integer_value(jb));
    if (!s) {
        why = "alpha or max_bins out of range";
        goto fail;
    }
    if ((why = read_store(s, &s->pos, json_object_get(root, "p"), &oom)) ||
        (why = read_store(s, &s->neg, json_object_get(root, "m"), &oom)))
        goto fail;
    s->zero = (uint64_t)json_integer_value(jz);
    s->n = s->pos.total + s->neg.total + s->zero;
    if (s->n != (uint64_t)json_integer_value(jn)) {
        why = "\"n\" differs from the total count";
        goto fail;
    }
    if (s->n) {
        json_t *jmin = json_object_get(root, "min"), *jmax = json_object_get(root, "max");
        double mn = json_is_number(jmin) ? json_number_value(jmin) : NAN;
        double mx = json_is_number(jmax) ? json_number_value(jmax) : NAN;
        if (!isfinite(mn) || !isfinite(mx) || mn > mx || (s->neg.total && !(mn < 0)) ||
            (!s->neg.total && mn < 0) || (s->pos.total && !(mx > 0)) ||
            (!s->pos.total && mx > 0)) {
            why = "\"min\" and \"max\" missing or inconsistent with the bins";
            goto fail;
        }
        s->min = mn;
        s->max = mx;
    }
    json_decref(root);
    return s;
fail:
    tlm_error_set(err, oom ? TLM_ENOMEM : TLM_EPARSE, "ddsketch: %s", why);
    tlm_ddsketch_destroy(s);
    json_decref(root);
    return NULL;
}
