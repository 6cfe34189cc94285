/*
 * tdigest.c - the merging t-digest (see tdigest.h for the quantile definition).
 *
 * Design. A digest is a list of centroids (mean, weight) sorted by mean, plus a buffer of
 * raw samples not yet merged. add() appends to the buffer; when the buffer is full it is
 * sorted and merged with the centroids in one pass (Dunning and Ertl's "merging" variant):
 * the sorted sequence of cells is swept left to right, each cell joining the current
 * centroid while the centroid stays within the size limit of its quantile range, and
 * starting the next centroid otherwise. Sorting a buffer of B doubles plus one linear
 * pass per B adds keeps add() at a few tens of ns amortised.
 *
 * Size limit. Dunning's scale functions bound a centroid spanning quantiles [q0, q2] by
 * k(q2) - k(q0) <= 1. We use the derivative form of MergingDigest: the centroid's weight
 * fraction w/n must not exceed L(q) at either end of its range, with
 *
 *     1 / L(q) = k1'(q) + k2'(q) = delta / (2 pi sqrt(q (1 - q))) + c2 / (q (1 - q)),
 *
 * i.e. the sum of the derivatives of k1 (delta/(2 pi) asin(2q - 1)) and of a k2-like log
 * term (c2 log(q / (1 - q))), c2 = delta / 200. L is unimodal (largest at q = 1/2), so
 * checking both ends bounds the centroid everywhere inside it. k1 alone makes the middle
 * fine (q = 1/2: about 3 % of the samples per centroid at delta = 100) but the tails too
 * coarse for q = 0.999 on heavy tails (0.2 % per centroid, about 1000 samples at n = 1 M);
 * the log term makes centroid sizes shrink like q (1 - q) at the ends (0.04 % at 0.999,
 * singletons at the extremes) for about 2 c2 ln(n) more centroids. The number of
 * centroids is about delta / 2 + 2 c2 ln(n / c2) after a merge and never more than twice
 * that (two neighbours that could have merged would have been).
 *
 * Raw state. A new digest keeps samples raw in a buffer that starts inside the struct (16
 * doubles) and doubles up to B = max(16, the power of two >= compression); only when a
 * sample arrives with B already buffered is the buffer merged into centroids (then B is
 * the batch size). Until then quantile() sorts the buffer and answers exactly (type 7).
 *
 * Invariants: ncent == 0 means raw state (every sample is in buf, n == nbuf); centroids
 * are sorted by mean and have weight > 0; min <= every mean and sample <= max; n is the
 * total weight of centroids and buffer; cw is the weight of the centroids.
 *
 * References: T. Dunning and O. Ertl, "Computing extremely accurate quantiles using
 * t-digests", arXiv:1902.04023 (2019); T. Dunning, "The t-digest: Efficient estimates of
 * distributions", Software Impacts 7 (2021); MergingDigest.java in tdunning/t-digest (the
 * size-limit check on both ends); R. J. Hyndman and Y. Fan, "Sample quantiles in
 * statistical packages", The American Statistician 50(4), 1996 (type 7).
 */
#include "tdigest.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwrite.h"

#ifndef TD_C2_DIV
#define TD_C2_DIV 200.0   /* c2 = delta / TD_C2_DIV (tests may override to measure) */
#endif
#define INLINE_CAP 16u      /* raw samples held inside the struct */
#define STACK_CELLS 512u    /* merges up to this many cells use a stack scratch */

struct cell {
    double mean;    /* mean of the samples summarised */
    double weight;  /* how many samples (> 0) */
};

struct tlm_tdigest {
    double delta;       /* compression */
    double a1, c2;      /* size limit constants: delta / (2 pi), delta / TD_C2_DIV */
    double n;           /* total weight (centroids + buffer) */
    double cw;          /* weight of the centroids */
    double min, max;    /* exact extremes; +inf / -inf while empty */
    struct cell *c;     /* ncent centroids sorted by mean, room for ccap */
    double *buf;        /* nbuf unmerged samples, room for bcap; == inl while bcap is INLINE_CAP */
    uint32_t ncent, ccap;
    uint32_t nbuf, bcap;
    uint32_t bmax;      /* the buffer's final size B */
    int sorted;         /* buf[0..nbuf) is sorted ascending */
    double inl[INLINE_CAP];
};

/* ---------------------------------------------------------------- sorting */

static void sort_doubles(double *a, size_t n)
{
    while (n > 16) {
        /* median of three, Hoare partition */
        double x = a[0], y = a[n / 2], z = a[n - 1];
        double p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i >= j)
                break;
            double t = a[i];
            a[i] = a[j];
            a[j] = t;
            i++;
            j--;
        }
        /* [0, j] <= p <= [j + 1, n); recurse on the smaller side */
        size_t left = j + 1;
        if (left < n - left) {
            sort_doubles(a, left);
            a += left;
            n -= left;
        } else {
            sort_doubles(a + left, n - left);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        double v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static int cmp_cell(const void *pa, const void *pb)
{
    const struct cell *a = pa, *b = pb;
    return (a->mean > b->mean) - (a->mean < b->mean);
}

/* ---------------------------------------------------------------- compression */

/* Largest weight fraction a centroid may have at quantile q (see the top comment). */
static inline double limit_at(const struct tlm_tdigest *t, double q)
{
    double x = q * (1 - q);
    if (x <= 0)
        return 0;
    return x / (t->a1 * sqrt(x) + t->c2);
}

/* Merges the sorted cells in[0..nin) (total weight tot) into centroids, in place; returns
 * how many are left (in[0..ret)). */
static size_t compress(const struct tlm_tdigest *t, struct cell *in, size_t nin, double tot)
{
    if (nin == 0)
        return 0;
    double inv = 1 / tot;
    size_t o = 0;
    struct cell cur = in[0];
    double left = 0;                    /* weight before cur */
    double lim0 = limit_at(t, 0);       /* limit at cur's left end */
    for (size_t i = 1; i < nin; i++) {
        double w = cur.weight + in[i].weight;
        double f = w * inv;
        if (f <= lim0 && f <= limit_at(t, (left + w) * inv)) {
            cur.weight = w;
            cur.mean += (in[i].mean - cur.mean) * (in[i].weight / w);
        } else {
            in[o++] = cur;
            left += cur.weight;
            cur = in[i];
            lim0 = limit_at(t, left * inv);
        }
    }
    in[o++] = cur;
    return o;
}

static int ensure_ccap(struct tlm_tdigest *t, size_t need)
{
    if (need <= t->ccap)
        return 0;
    if (need > UINT32_MAX / 2)
        return TLM_ENOMEM;
    size_t cap = (need + 15) & ~(size_t)15;
    struct cell *c = realloc(t->c, cap * sizeof *c);
    if (!c)
        return TLM_ENOMEM;
    t->c = c;
    t->ccap = (uint32_t)cap;
    return 0;
}

/* Replaces the centroids by the compression of cells[0..n) (sorted, total weight tot). */
static int install(struct tlm_tdigest *t, struct cell *cells, size_t n, double tot)
{
    size_t m = compress(t, cells, n, tot);
    if (ensure_ccap(t, m))
        return TLM_ENOMEM;
    memcpy(t->c, cells, m * sizeof *cells);
    t->ncent = (uint32_t)m;
    t->cw = tot;
    return 0;
}

/* Merges the buffer into the centroids. On failure t is unchanged but for the order of
 * the buffer. */
static int flush(struct tlm_tdigest *t)
{
    if (t->nbuf == 0)
        return 0;
    if (!t->sorted)
        sort_doubles(t->buf, t->nbuf);
    t->sorted = 1;
    size_t n = (size_t)t->ncent + t->nbuf;
    struct cell stack[STACK_CELLS];
    struct cell *cells = n <= STACK_CELLS ? stack : malloc(n * sizeof *cells);
    if (!cells)
        return TLM_ENOMEM;
    /* two-way merge of the centroids and the sorted buffer */
    size_t i = 0, j = 0, k = 0;
    while (i < t->ncent && j < t->nbuf) {
        if (t->buf[j] < t->c[i].mean)
            cells[k++] = (struct cell){ t->buf[j++], 1 };
        else
            cells[k++] = t->c[i++];
    }
    while (i < t->ncent)
        cells[k++] = t->c[i++];
    while (j < t->nbuf)
        cells[k++] = (struct cell){ t->buf[j++], 1 };
    int rc = install(t, cells, n, t->n);
    if (cells != stack)
        free(cells);
    if (rc == 0)
        t->nbuf = 0;
    return rc;
}

/* ---------------------------------------------------------------- API */

struct tlm_tdigest *tlm_tdigest_create(double compression)
{
    if (!(compression >= TLM_TDIGEST_MIN_COMPRESSION && compression <= TLM_TDIGEST_MAX_COMPRESSION))
        return NULL;
    struct tlm_tdigest *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->delta = compression;
    t->a1 = compression / (2 * M_PI);
    t->c2 = compression / TD_C2_DIV;
    t->min = INFINITY;
    t->max = -INFINITY;
    t->buf = t->inl;
    t->bcap = INLINE_CAP;
    uint32_t b = 16;
    while (b < compression)
        b *= 2;
    t->bmax = b;
    return t;
}

void tlm_tdigest_destroy(struct tlm_tdigest *t)
{
    if (!t)
        return;
    if (t->buf != t->inl)
        free(t->buf);
    free(t->c);
    free(t);
}

/* Makes room for one more buffered sample: grow the buffer, or merge it. */
static int make_room(struct tlm_tdigest *t)
{
    if (t->bcap < t->bmax) {
        uint32_t cap = t->bcap * 2;
        double *b;
        if (t->buf == t->inl) {
            b = malloc(cap * sizeof *b);
            if (b)
                memcpy(b, t->inl, t->nbuf * sizeof *b);
        } else {
            b = realloc(t->buf, cap * sizeof *b);
        }
        if (b) {
            t->buf = b;
            t->bcap = cap;
            return 0;
        }
        if (t->nbuf == 0)
            return TLM_ENOMEM;
        /* out of memory for a larger buffer: merging what we have frees it */
    }
    return flush(t);
}

int tlm_tdigest_add(struct tlm_tdigest *t, double x)
{
    if (!isfinite(x))
        return TLM_EINVAL;
    if (t->nbuf == t->bcap) {
        int rc = make_room(t);
        if (rc)
            return rc;
    }
    t->buf[t->nbuf++] = x;
    t->n += 1;
    t->sorted = 0;
    if (x < t->min)
        t->min = x;
    if (x > t->max)
        t->max = x;
    return 0;
}

void tlm_tdigest_prefetch_tail(const struct tlm_tdigest *t)
{
    if (t->nbuf < t->bcap)
        __builtin_prefetch(&t->buf[t->nbuf], 1);
}

int tlm_tdigest_merge(struct tlm_tdigest *dst, const struct tlm_tdigest *src)
{
    if (src->n == 0)
        return 0;
    if (dst->ncent == 0 && src->ncent == 0 && (size_t)dst->nbuf + src->nbuf <= dst->bmax) {
        /* both raw and the total fits: stay raw (exact) */
        uint32_t add = src->nbuf, old = dst->nbuf;
        while (dst->bcap < old + add) {
            int rc = make_room(dst);
            if (rc)
                return rc;
        }
        memcpy(dst->buf + old, src->buf, add * sizeof(double)); /* dst == src: copies itself */
        dst->nbuf = old + add;
        dst->n += src->n;
        dst->sorted = 0;
        if (src->min < dst->min)
            dst->min = src->min;
        if (src->max > dst->max)
            dst->max = src->max;
        return 0;
    }
    size_t n = (size_t)dst->ncent + dst->nbuf + src->ncent + src->nbuf;
    struct cell *cells = malloc(n * sizeof *cells);
    if (!cells)
        return TLM_ENOMEM;
    size_t k = 0;
    const struct tlm_tdigest *parts[2] = { dst, src };
    for (int p = 0; p < 2; p++) {
        const struct tlm_tdigest *s = parts[p];
        for (uint32_t i = 0; i < s->ncent; i++)
            cells[k++] = s->c[i];
        for (uint32_t i = 0; i < s->nbuf; i++)
            cells[k++] = (struct cell){ s->buf[i], 1 };
    }
    qsort(cells, n, sizeof *cells, cmp_cell);
    double tot = dst->n + src->n;
    double mn = src->min < dst->min ? src->min : dst->min;
    double mx = src->max > dst->max ? src->max : dst->max;
    int rc = install(dst, cells, n, tot);
    free(cells);
    if (rc)
        return rc;
    dst->nbuf = 0;
    dst->n = tot;
    dst->min = mn;
    dst->max = mx;
    return 0;
}

/* Interpolates the type 7 quantile at rank h over centroids c[0..m) (total weight n). */
static double digest_quantile(const struct tlm_tdigest *t, const struct cell *c, size_t m,
                              double n, double h)
{
    /* points (rank, value): (0, min), centre of each centroid, (n - 1, max) */
    double prev_r = 0, prev_v = t->min;
    double left = 0;
    for (size_t i = 0; i < m; i++) {
        double r = left + (c[i].weight - 1) / 2;
        if (h <= r) {
            if (r <= prev_r)
                return c[i].mean;
            return prev_v + (h - prev_r) / (r - prev_r) * (c[i].mean - prev_v);
        }
        prev_r = r;
        prev_v = c[i].mean;
        left += c[i].weight;
    }
    double r = n - 1;
    if (r <= prev_r)
        return t->max;
    return prev_v + (h - prev_r) / (r - prev_r) * (t->max - prev_v);
}

double tlm_tdigest_quantile(struct tlm_tdigest *t, double q)
{
    if (t->n == 0 || isnan(q))
        return NAN;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    if (t->nbuf && t->ncent)
        (void)flush(t); /* on failure the buffer is folded in below */
    if (!t->sorted) {
        sort_doubles(t->buf, t->nbuf);
        t->sorted = 1;
    }
    double h = q * (t->n - 1);
    double v;
    if (t->ncent == 0) {
        /* raw: exact type 7 */
        size_t j = (size_t)h;
        if (j >= t->nbuf - 1)
            v = t->buf[t->nbuf - 1];
        else
            v = t->buf[j] + (h - (double)j) * (t->buf[j + 1] - t->buf[j]);
    } else if (t->nbuf == 0) {
        v = digest_quantile(t, t->c, t->ncent, t->n, h);
    } else {
        /* a flush failed for memory: walk centroids and sorted buffer merged, without
         * compressing (allocation-free) */
        double left = 0, prev_r = 0, prev_v = t->min;
        size_t i = 0, j = 0;
        v = NAN;
        while (i < t->ncent || j < t->nbuf) {
            struct cell x;
            if (j >= t->nbuf || (i < t->ncent && t->c[i].mean <= t->buf[j]))
                x = t->c[i++];
            else
                x = (struct cell){ t->buf[j++], 1 };
            double r = left + (x.weight - 1) / 2;
            if (h <= r) {
                v = r <= prev_r ? x.mean
                                : prev_v + (h - prev_r) / (r - prev_r) * (x.mean - prev_v);
                break;
            }
            prev_r = r;
            prev_v = x.mean;
            left += x.weight;
        }
        if (isnan(v)) {
            double r = t->n - 1;
            v = r <= prev_r ? t->max : prev_v + (h - prev_r) / (r - prev_r) * (t->max - prev_v);
        }
    }
    if (v < t->min)
        v = t->min;
    if (v > t->max)
        v = t->max;
    return v;
}

double tlm_tdigest_count(const struct tlm_tdigest *t)
{
    return t->n;
}

double tlm_tdigest_min(const struct tlm_tdigest *t)
{
    return t->n > 0 ? t->min : NAN;
}

double tlm_tdigest_max(const struct tlm_tdigest *t)
{
    return t->n > 0 ? t->max : NAN;
}

double tlm_tdigest_compression(const struct tlm_tdigest *t)
{
    return t->delta;
}

size_t tlm_tdigest_centroids(const struct tlm_tdigest *t)
{
    return (size_t)t->ncent + t->nbuf;
}

size_t tlm_tdigest_bytes(const struct tlm_tdigest *t)
{
    size_t b = sizeof *t + (size_t)t->ccap * sizeof(struct cell);
    if (t->buf != t->inl)
        b += (size_t)t->bcap * sizeof(double);
    return b;
}

/* ---------------------------------------------------------------- serialization */

int tlm_tdigest_write(const struct tlm_tdigest *t, struct tlm_buf *out)
{
    /* the exact state, centroids and unmerged buffer as they are (merging the buffer
     * here would change t, and so the rows, by when a snapshot is taken) */
    int bad = 0;
    bad |= tlm_buf_puts(out, "{\"c\":");
    bad |= tlm_json_write_number(out, t->delta);
    bad |= tlm_buf_puts(out, ",\"n\":");
    bad |= tlm_json_write_number(out, t->n);
    if (t->n > 0) {
        bad |= tlm_buf_puts(out, ",\"min\":");
        bad |= tlm_json_put_double(out, t->min);
        bad |= tlm_buf_puts(out, ",\"max\":");
        bad |= tlm_json_put_double(out, t->max);
    }
    if (t->ncent) {
        bad |= tlm_buf_puts(out, ",\"m\":[");
        for (uint32_t i = 0; i < t->ncent; i++) {
            bad |= tlm_buf_puts(out, i ? ",[" : "[");
            bad |= tlm_json_put_double(out, t->c[i].mean);
            bad |= tlm_buf_putc(out, ',');
            bad |= tlm_json_write_number(out, t->c[i].weight);
            bad |= tlm_buf_putc(out, ']');
        }
        bad |= tlm_buf_putc(out, ']');
    }
    if (t->ncent == 0 || t->nbuf) {
        bad |= tlm_buf_puts(out, ",\"r\":[");
        for (uint32_t i = 0; i < t->nbuf; i++) {
            if (i)
                bad |= tlm_buf_putc(out, ',');
            bad |= tlm_json_put_double(out, t->buf[i]);
        }
        bad |= tlm_buf_putc(out, ']');
        if (t->sorted && t->nbuf > 1)
            bad |= tlm_buf_puts(out, ",\"s\":true");
    }
    bad |= tlm_buf_putc(out, '}');
    return bad ? TLM_ENOMEM : 0;
}

static int get_real(json_t *o, const char *key, double *v)
{
    json_t *j = json_object_get(o, key);
    if (!j || !json_is_number(j))
        return -1;
    *v = json_number_value(j);
    return isfinite(*v) ? 0 : -1;
}

struct tlm_tdigest *tlm_tdigest_read(const char *json, size_t n, struct tlm_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, n, JSON_DECODE_ANY, &je);
    if (!root) {
        tlm_error_set(err, TLM_EPARSE, "t-digest: %s", je.text);
        return NULL;
    }
    struct tlm_tdigest *t = NULL;
    const char *why = NULL;
    double c, cnt, mn = INFINITY, mx = -INFINITY;
    json_t *m = json_object_get(root, "m"), *r = json_object_get(root, "r");
    if (!json_is_object(root) || get_real(root, "c", &c) || get_real(root, "n", &cnt)) {
        why = "expected an object with numbers \"c\" and \"n\"";
        goto fail;
    }
    if (!(c >= TLM_TDIGEST_MIN_COMPRESSION && c <= TLM_TDIGEST_MAX_COMPRESSION)) {
        why = "compression out of range";
        goto fail;
    }
    if ((m && !json_is_array(m)) || (r && !json_is_array(r))) {
        why = "\"m\" and \"r\" must be arrays";
        goto fail;
    }
    if (cnt > 0 && (get_real(root, "min", &mn) || get_real(root, "max", &mx) || mn > mx)) {
        why = "expected numbers \"min\" <= \"max\"";
        goto fail;
    }
    t = tlm_tdigest_create(c);
    if (!t) {
        tlm_error_set(err, TLM_ENOMEM, "t-digest: out of memory");
        json_decref(root);
        return NULL;
    }
    size_t nm = m ? json_array_size(m) : 0;
    if (nm) {
        if (ensure_ccap(t, nm)) {
            tlm_error_set(err, TLM_ENOMEM, "t-digest: out of memory");
            goto fail_mem;
        }
        double w = 0, prev = -INFINITY;
        for (size_t i = 0; i < nm; i++) {
            json_t *p = json_array_get(m, i);
            json_t *jm = json_array_get(p, 0), *jw = json_array_get(p, 1);
            if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_number(jm) ||
                !json_is_number(jw)) {
                why = "\"m\" must hold [mean, weight] pairs";
                goto fail;
            }
            double mean = json_number_value(jm), wt = json_number_value(jw);
            if (!isfinite(mean) || !(wt > 0 && isfinite(wt)) || mean < prev || mean < mn ||
                mean > mx) {
                why = "centroids must be ascending, within [min, max], with weights > 0";
                goto fail;
            }
            prev = mean;
            t->c[i] = (struct cell){ mean, wt };
            w += wt;
        }
        t->ncent = (uint32_t)nm;
        t->cw = w;
        t->n = w;
    }
    size_t nr = r ? json_array_size(r) : 0;
    if (nr > t->bmax) {
        why = "\"r\" holds more samples than the buffer";
        goto fail;
    }
    json_t *js = json_object_get(root, "s");
    if (js && !json_is_boolean(js)) {
        why = "\"s\" must be a boolean";
        goto fail;
    }
    for (size_t i = 0; i < nr; i++) {
        json_t *x = json_array_get(r, i);
        double v = json_is_number(x) ? json_number_value(x) : NAN;
        if (!isfinite(v) || v < mn || v > mx) {
            why = "\"r\" must hold finite samples within [min, max]";
            goto fail;
        }
        if (tlm_tdigest_add(t, v)) {
            tlm_error_set(err, TLM_ENOMEM, "t-digest: out of memory");
            goto fail_mem;
        }
    }
    if (json_is_true(js)) {
        /* the buffer was sorted: keep its order as it is (sorting it again may swap
         * equal samples, such as -0 and 0) */
        for (size_t i = 1; i < t->nbuf; i++)
            if (t->buf[i - 1] > t->buf[i]) {
                why = "\"r\" is not sorted";
                goto fail;
            }
        t->sorted = 1;
    }
    if (fabs(t->n - cnt) > 1e-9 * (cnt > 1 ? cnt : 1)) {
        why = "\"n\" differs from the total weight";
        goto fail;
    }
    if (cnt > 0) {
        t->min = mn;
        t->max = mx;
    }
    json_decref(root);
    return t;
fail:
    tlm_error_set(err, TLM_EPARSE, "t-digest: %s", why);
fail_mem:
    tlm_tdigest_destroy(t);
    json_decref(root);
    return NULL;
}
