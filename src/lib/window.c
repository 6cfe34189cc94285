/*
 * window.c - the keyed event-time window engine (see window.h for the semantics).
 *
 * Data layout. A key (struct wkey) is found through an open-addressing table keyed by
 * the rendered text of its key fields ("deviceId":"device-11"), which is also what rows
 * start with. Each key holds its open windows (struct win) in a small array sorted by
 * start; a window carries the aggregate state block inline. For tumbling and sliding
 * windows every window also belongs to a range (struct range: one [start, end) across
 * keys, in a sorted array), and ranges fire in order; a range is freed once the
 * watermark is past its end - 1 ms + lateness. Session windows fire from a min-heap of
 * (fire time, sequence); entries are checked when popped, so merged or extended
 * sessions need no heap surgery.
 *
 * Invariants: a key's windows are sorted by start and never overlap for sessions; a
 * window is in exactly one range (aligned kinds); ranges[0..nfired) have fired, so that
 * an advance of the watermark looks only at the ranges after them that are due (a late
 * event may fire one further on, which is skipped); a key's windows are dropped oldest
 * first, from the front of its array without moving the others (off).
 */
#include "window.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwrite.h"

#define MS TLM_NS_PER_MS

struct win {
    struct wkey *key;
    int64_t start, end;
    uint64_t seq;        /* creation order: ties in the session heap */
    int32_t revision;    /* rows emitted so far for this window */
    uint8_t fired;
    uint8_t in_top;      /* among the top-N rows its range wrote last */
    unsigned char state[] __attribute__((aligned(16))); /* tlm_aggs state block */
};

#define WIN_INLINE 2     /* window pointers held inside struct wkey */
/* what a key was reported to cost before the inline pointers (--stats state_bytes) */
#define WKEY_BYTES (sizeof(struct wkey) - WIN_INLINE * sizeof(struct win *))

struct wkey {
    uint32_t hash_hi;    /* high half of the key's hash: its home slot */
    uint16_t tag;        /* low 16 bits of the hash, kept in its slot */
    uint32_t klen;
    uint32_t nwin, capwin;
    uint32_t off;        /* windows dropped from the front: the allocation starts at wins - off */
    struct win **wins;   /* sorted by start; == inl while capwin <= WIN_INLINE */
    char *last;          /* --fill last: aggregate text of the last row, or NULL */
    struct win *inl[WIN_INLINE]; /* the first windows, without an allocation */
    char text[];         /* rendered key fields, klen bytes + NUL */
};

struct range {
    int64_t start, end;
    int fired;
    int32_t revision;    /* top-N: rows emitted for the range */
    size_t ntop;         /* top-N: rows written last time, the last of them nth */
    struct win *nth;
    double nth_v;
    size_t n, cap;
    struct win **wins;   /* in arrival order */
};

struct timer {
    int64_t at;
    uint64_t seq;        /* identifies the window within the key (starts move on merges) */
    struct wkey *key;
};

/* A slot is one word: the key's address in the low 48 bits and its hash tag in the high
 * 16, so that a probe touches a key only when the tags agree and the table costs 8 bytes
 * a slot. 0 is a free slot. (User-space addresses on x86-64 and arm64 Linux fit in 48
 * bits; tab_insert refuses one that does not.) */
typedef uint64_t slot_t;
#define SLOT_PTR_BITS 48
#define SLOT_KEY(v) ((struct wkey *)(uintptr_t)((v) & ((UINT64_C(1) << SLOT_PTR_BITS) - 1)))
#define SLOT_TAG(v) ((uint16_t)((v) >> SLOT_PTR_BITS))
#define HASH_HOME(h) ((uint32_t)((h) >> 32))
#define HASH_TAG(h) ((uint16_t)(h))

struct tlm_window {
    struct tlm_window_opts o;
    int (*drain)(void *arg); /* tlm_window_set_drain */
    void *drain_arg;
    const struct tlm_aggs *aggs;
    struct tlm_aggs_event *ev; /* the event being added, resolved once for its windows */
    size_t state_size;
    enum tlm_time_unit unit;
    char **key_names;
    char **key_prefix;     /* "name": per key field, rendered once */
    size_t *key_prefix_len;

    slot_t *tab;         /* open addressing, power of two, at most half full */
    size_t tab_cap, nkeys;
    struct wkey **keys;  /* in first-seen order, for fill and snapshots */
    size_t keys_cap;

    struct range **ranges; /* aligned kinds: sorted by start */
    size_t nranges, ranges_cap;
    size_t nfired;         /* ranges[0..nfired) have all fired (the rest may have, too) */
    int64_t next_fill;     /* fill: start of the next range due to fire */
    int fill_started;

    struct timer *heap;    /* sessions */
    size_t nheap, heap_cap;

    int64_t last_wm;       /* watermark at the last advance */
    uint64_t seq;
    long long open, fired, revisions, bytes;
    struct tlm_buf tmp;
};

/* ---- helpers -------------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= UINT64_C(0x100000001b3);
    }
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 4;
    void *np;
    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    np = realloc(*p, c * elem);
    if (!np)
        return TLM_ENOMEM;
    *p = np;
    *cap = c;
    return 0;
}

/* ---- create / destroy ----------------------------------------------------------- */

struct tlm_window *tlm_window_create(const struct tlm_window_opts *o, const struct tlm_aggs *aggs,
                                     struct tlm_error *err)
{
    struct tlm_window *w;
    if (o->kind == TLM_WIN_SLIDE) {
        if (o->every <= 0 || o->size <= 0 || o->size % o->every != 0) {
            tlm_error_set(err, TLM_EINVAL, "--slide must be a whole multiple of --every");
            return NULL;
        }
    } else if (o->kind == TLM_WIN_TUMBLE) {
        if (o->size <= 0) {
            tlm_error_set(err, TLM_EINVAL, "--tumble must be longer than 0");
            return NULL;
        }
    } else if (o->kind == TLM_WIN_SESSION) {
        if (o->gap <= 0) {
            tlm_error_set(err, TLM_EINVAL, "--session gap must be longer than 0");
            return NULL;
        }
        if (o->fill) {
            tlm_error_set(err, TLM_EINVAL, "--fill applies to --tumble and --slide windows");
            return NULL;
        }
    } else {
        tlm_error_set(err, TLM_EINVAL, "no window kind");
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w || !(w->ev = tlm_aggs_event_new())) {
        free(w);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    w->o = *o;
    if (o->kind == TLM_WIN_TUMBLE)
        w->o.every = o->size;
    w->aggs = aggs;
    w->state_size = tlm_aggs_state_size(aggs);
    w->unit = TLM_UNIT_MS;
    w->last_wm = TLM_TIME_MIN;
    w->tab_cap = 1024;
    w->tab = calloc(w->tab_cap, sizeof(*w->tab));
    w->key_names = calloc(o->nkeys + 1, sizeof(char *));
    if (!w->tab || !w->key_names) {
        tlm_window_destroy(w);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    w->key_prefix = calloc(o->nkeys + 1, sizeof(char *));
    w->key_prefix_len = calloc(o->nkeys + 1, sizeof(size_t));
    if (!w->key_prefix || !w->key_prefix_len) {
        tlm_window_destroy(w);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < o->nkeys; i++) {
        struct tlm_buf b = TLM_BUF_INIT;
        if (!(w->key_names[i] = strdup(o->key_names[i])) ||
            tlm_json_put_string(&b, o->key_names[i], strlen(o->key_names[i])) ||
            tlm_buf_putc(&b, ':')) {
            tlm_buf_free(&b);
            tlm_window_destroy(w);
            tlm_error_set(err, TLM_ENOMEM, "out of memory (or a key name that is not UTF-8)");
            return NULL;
        }
        w->key_prefix[i] = b.data;
        w->key_prefix_len[i] = b.len;
    }
    w->o.key_names = (const char *const *)w->key_names;
    return w;
}

static void free_win(struct tlm_window *w, struct win *x)
{
    tlm_aggs_free(w->aggs, x->state);
    free(x);
}

void tlm_window_destroy(struct tlm_window *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->nkeys; i++) {
        struct wkey *k = w->keys[i];
        for (uint32_t j = 0; j < k->nwin; j++)
            free_win(w, k->wins[j]);
        if (k->wins != k->inl)
            free(k->wins - k->off);
        free(k->last);
        free(k);
    }
    for (size_t i = 0; i < w->nranges; i++) {
        free(w->ranges[i]->wins);
        free(w->ranges[i]);
    }
    for (size_t i = 0; w->key_names && i < w->o.nkeys; i++)
        free(w->key_names[i]);
    for (size_t i = 0; w->key_prefix && i < w->o.nkeys; i++)
        free(w->key_prefix[i]);
    free(w->key_names);
    free(w->key_prefix);
    free(w->key_prefix_len);
    free(w->ranges);
    free(w->heap);
    free(w->keys);
    free(w->tab);
    tlm_buf_free(&w->tmp);
    tlm_aggs_event_free(w->ev);
    free(w);
}

void tlm_window_set_drain(struct tlm_window *w, int (*drain)(void *arg), void *arg)
{
    w->drain = drain;
    w->drain_arg = arg;
}

void tlm_window_set_unit(struct tlm_window *w, enum tlm_time_unit unit)
{
    w->unit = unit == TLM_UNIT_AUTO ? TLM_UNIT_MS : unit;
}

/* ---- keys ----------------------------------------------------------------------- */

/* Renders the key fields into w->tmp: "name":value,... (null for an absent field; a
 * string with escapes in its canonical form, so that equal strings are one key). */
static int render_key(struct tlm_window *w, const struct tlm_jval *keys)
{
    struct tlm_buf *b = &w->tmp;
    int rc = 0;
    tlm_buf_reset(b);
    for (size_t i = 0; i < w->o.nkeys && rc == 0; i++) {
        const struct tlm_jval *v = &keys[i];
        if (i)
            rc |= tlm_buf_putc(b, ',');
        rc |= tlm_buf_append(b, w->key_prefix[i], w->key_prefix_len[i]);
        if (v->type == TLM_JNONE) {
            rc |= tlm_buf_puts(b, "null");
        } else if (v->type == TLM_JSTRING && v->escaped) {
            struct tlm_buf s = TLM_BUF_INIT;
            rc |= tlm_jval_string(v, &s);
            rc |= tlm_json_put_string(b, s.data ? s.data : "", s.len);
            tlm_buf_free(&s);
        } else {
            rc |= tlm_buf_append(b, v->p, v->n);
        }
    }
    if (!b->data)
        rc |= tlm_buf_puts(b, "");
    return rc ? TLM_ENOMEM : 0;
}

static int tab_insert(struct tlm_window *w, struct wkey *k)
{
    size_t j;
    if ((uintptr_t)k >> SLOT_PTR_BITS)
        return TLM_ENOMEM; /* an address beyond 48 bits: no room for the tag */
    if ((w->nkeys + 1) * 2 > w->tab_cap) {
        size_t ncap = w->tab_cap * 2;
        slot_t *nt;
        if (ncap > (size_t)UINT32_MAX + 1)
            return TLM_ENOMEM; /* the home slot is 32 bits of the hash */
        if (!(nt = calloc(ncap, sizeof(*nt))))
            return TLM_ENOMEM;
        for (size_t i = 0; i < w->tab_cap; i++) {
            if (!w->tab[i])
                continue;
            j = SLOT_KEY(w->tab[i])->hash_hi & (ncap - 1);
            while (nt[j])
                j = (j + 1) & (ncap - 1);
            nt[j] = w->tab[i];
        }
        free(w->tab);
        w->tab = nt;
        w->tab_cap = ncap;
    }
    j = k->hash_hi & (w->tab_cap - 1);
    while (w->tab[j])
        j = (j + 1) & (w->tab_cap - 1);
    w->tab[j] = (uint64_t)(uintptr_t)k | (uint64_t)k->tag << SLOT_PTR_BITS;
    return 0;
}

/* The key whose rendered text is text/n, created when absent (NULL on OOM). The slot
 * holds the hash, so a probe touches a key only when its hash matches. */
static struct wkey *get_key_hashed(struct tlm_window *w, const char *text, size_t n,
                                   uint64_t h)
{
    uint16_t tag = HASH_TAG(h);
    size_t j = HASH_HOME(h) & (w->tab_cap - 1);
    struct wkey *k;
    for (; w->tab[j]; j = (j + 1) & (w->tab_cap - 1)) {
        if (SLOT_TAG(w->tab[j]) != tag)
            continue;
        k = SLOT_KEY(w->tab[j]);
        if (k->klen == n && memcmp(k->text, text, n) == 0)
            return k;
    }
    k = calloc(1, sizeof(*k) + n + 1);
    if (!k)
        return NULL;
    k->hash_hi = HASH_HOME(h);
    k->tag = tag;
    k->klen = (uint32_t)n;
    memcpy(k->text, text, n);
    if (grow((void **)&w->keys, &w->keys_cap, w->nkeys + 1, sizeof(*w->keys)) ||
        tab_insert(w, k)) {
        free(k);
        return NULL;
    }
    w->keys[w->nkeys++] = k;
    k->wins = k->inl;
    w->bytes += (long long)(WKEY_BYTES + n + 1 + 3 * sizeof(void *));
    return k;
}

static struct wkey *get_key(struct tlm_window *w, const char *text, size_t n)
{
    return get_key_hashed(w, text, n, hash_bytes(text, n));
}

/* Where the window starting at start is or would go in k->wins (aligned kinds: one
 * window per start, sorted). */
static uint32_t win_pos(const struct wkey *k, int64_t start)
{
    uint32_t lo = 0, hi = k->nwin;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (k->wins[mid]->start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct win *find_win(struct wkey *k, int64_t start)
{
    uint32_t i = win_pos(k, start);
    return i < k->nwin && k->wins[i]->start == start ? k->wins[i] : NULL;
}

/* The same, starting the search at *at (and wrapping), which is left just past the
 * window found: the windows an event updates were mostly made one after another, so
 * consecutive starts sit at consecutive places and each probe reads only a window the
 * event updates anyway (no walk over the key's older windows, each a cache miss). */
static struct win *find_win_at(struct wkey *k, int64_t start, uint32_t *at)
{
    uint32_t n = k->nwin, i = *at < n ? *at : 0;
    if (n == 0)
        return NULL;
    if (k->wins[i]->start == start) {
        *at = i + 1;
        return k->wins[i];
    }
    if (k->wins[n - 1]->start < start)
        return NULL; /* a new window after all the others: the usual miss */
    /* elsewhere (or absent): a binary search, not a walk over the key's windows */
    i = win_pos(k, start);
    if (i < n && k->wins[i]->start == start) {
        *at = i + 1;
        return k->wins[i];
    }
    return NULL;
}

static struct win *find_win_seq(struct wkey *k, uint64_t seq)
{
    for (uint32_t i = 0; i < k->nwin; i++)
        if (k->wins[i]->seq == seq)
            return k->wins[i];
    return NULL;
}

static struct win *new_win(struct tlm_window *w, struct wkey *k, int64_t start, int64_t end)
{
    struct win *x = calloc(1, sizeof(*x) + w->state_size);
    uint32_t i;
    if (!x)
        return NULL;
    if (k->off + k->nwin + 1 > k->capwin && k->off && k->off >= k->nwin) {
        /* as many slots free at the front as windows held: move them back (amortised
         * over the drops that freed those slots) */
        struct win **base = k->wins - k->off;
        memmove(base, k->wins, k->nwin * sizeof(*base));
        k->wins = base;
        k->off = 0;
    }
    if (k->off + k->nwin + 1 > k->capwin) {
        /* capacities as grow() would give (4, 8, ...): the first WIN_INLINE are inline */
        uint32_t cap = k->capwin ? k->capwin * 2 : 4;
        while (cap < k->off + k->nwin + 1)
            cap *= 2;
        if (cap > WIN_INLINE) {
            struct win **nw = k->wins == k->inl ? malloc(cap * sizeof(*nw))
                                                 : realloc(k->wins - k->off, cap * sizeof(*nw));
            if (!nw) {
                free(x);
                return NULL;
            }
            if (k->wins == k->inl)
                memcpy(nw, k->inl, k->nwin * sizeof(*nw));
            k->wins = nw + k->off;
        }
        k->capwin = cap;
    }
    x->key = k;
    x->start = start;
    x->end = end;
    x->seq = w->seq++;
    tlm_aggs_init(w->aggs, x->state);
    for (i = k->nwin; i > 0 && k->wins[i - 1]->start > start; i--)
        k->wins[i] = k->wins[i - 1];
    k->wins[i] = x;
    k->nwin++;
    w->open++;
    return x;
}

static void drop_win(struct tlm_window *w, struct win *x)
{
    struct wkey *k = x->key;
    for (uint32_t i = 0; i < k->nwin; i++) {
        if (k->wins[i] == x) {
            if (i == 0 && k->wins != k->inl) {
                /* the oldest window (windows are freed oldest first): no move */
                k->wins++;
                k->off++;
            } else {
                memmove(&k->wins[i], &k->wins[i + 1], (k->nwin - i - 1) * sizeof(*k->wins));
            }
            k->nwin--;
            if (k->nwin == 0 && k->wins != k->inl) {
                k->wins -= k->off;
                k->off = 0;
            }
            break;
        }
    }
    w->open--;
    free_win(w, x);
}

/* ---- rows ----------------------------------------------------------------------- */

static int put_time(struct tlm_buf *b, tlm_time_t t, enum tlm_time_unit unit)
{
    return tlm_json_put_int(b, tlm_time_to_unit(t, unit));
}

/* One row for window x (or for key k over [start,end) with a fill text). */
static int put_row(struct tlm_window *w, struct wkey *k, int64_t start, int64_t end,
                   struct win *x, const char *fill, int32_t revision, long rank, int final,
                   struct tlm_buf *out)
{
    int rc = tlm_buf_putc(out, '{');
    if (w->o.nkeys) {
        rc |= tlm_buf_append(out, k->text, k->klen);
        rc |= tlm_buf_putc(out, ',');
    }
    rc |= tlm_buf_puts(out, "\"window_start\":");
    rc |= put_time(out, start, w->unit);
    rc |= tlm_buf_puts(out, ",\"window_end\":");
    rc |= put_time(out, end, w->unit);
    if (x) {
        size_t at = out->len;
        rc |= tlm_aggs_write(w->aggs, x->state, out);
        if (w->o.fill == TLM_FILL_LAST && rc == 0) {
            char *copy = malloc(out->len - at + 1);
            if (copy) {
                memcpy(copy, out->data + at, out->len - at);
                copy[out->len - at] = '\0';
                free(k->last);
                k->last = copy;
            }
        }
    } else if (fill) {
        rc |= tlm_buf_puts(out, fill);
    }
    if (rank > 0)
        rc |= tlm_buf_printf(out, ",\"rank\":%ld", rank);
    rc |= tlm_buf_printf(out, ",\"revision\":%ld", (long)revision);
    if (w->o.emit_every)
        rc |= tlm_buf_puts(out, final ? ",\"final\":true" : ",\"final\":false");
    rc |= tlm_buf_puts(out, "}\n");
    if (revision > 0)
        w->revisions++;
    w->fired++;
    if (rc)
        return TLM_ENOMEM;
    /* a watermark may fire a million rows: write them as they come */
    return w->drain && out->len >= TLM_WINDOW_DRAIN_BYTES ? w->drain(w->drain_arg) : 0;
}

static int emit_win(struct tlm_window *w, struct win *x, int final, struct tlm_buf *out,
                    long *rows)
{
    int rc = put_row(w, x->key, x->start, x->end, x, NULL, x->revision, 0, final, out);
    x->revision++;
    (*rows)++;
    return rc;
}

/* ---- ranges (tumbling, sliding) --------------------------------------------------- */

static struct range *find_range(struct tlm_window *w, int64_t start, size_t *pos)
{
    size_t lo = 0, hi = w->nranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->ranges[mid]->start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return (lo < w->nranges && w->ranges[lo]->start == start) ? w->ranges[lo] : NULL;
}

static struct range *get_range(struct tlm_window *w, int64_t start)
{
    size_t pos;
    struct range *r = find_range(w, start, &pos);
    if (r)
        return r;
    if (grow((void **)&w->ranges, &w->ranges_cap, w->nranges + 1, sizeof(*w->ranges)))
        return NULL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->start = start;
    r->end = start + w->o.size;
    memmove(&w->ranges[pos + 1], &w->ranges[pos], (w->nranges - pos) * sizeof(*w->ranges));
    w->ranges[pos] = r;
    w->nranges++;
    if (pos < w->nfired)
        w->nfired = pos; /* not fired (yet): the prefix ends before it */
    return r;
}

struct ranked {
    double v;
    struct win *x;
};

static int cmp_ranked_desc(const void *a, const void *b)
{
    const struct ranked *p = a, *q = b;
    int pn = isnan(p->v), qn = isnan(q->v);
    if (pn != qn)
        return pn - qn; /* rows without a value rank last */
    if (!pn && p->v != q->v)
        return p->v > q->v ? -1 : 1;
    int c = strcmp(p->x->key->text, q->x->key->text);
    return c;
}

static int cmp_ranked_asc(const void *a, const void *b)
{
    const struct ranked *p = a, *q = b;
    int pn = isnan(p->v), qn = isnan(q->v);
    if (pn != qn)
        return pn - qn;
    if (!pn && p->v != q->v)
        return p->v < q->v ? -1 : 1;
    return strcmp(p->x->key->text, q->x->key->text);
}

/* Emits the rows of a range: all windows in arrival order, or the top N. */
/* Ranks the windows of r (free the array returned; NULL on OOM) and records the top N:
 * in_top flags, ntop, and the last of them. */
static struct ranked *rank_top(const struct tlm_window *w, struct range *r)
{
    struct ranked *v = malloc((r->n ? r->n : 1) * sizeof(*v));
    size_t n = r->n;
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i].x = r->wins[i];
        v[i].v = tlm_aggs_value(w->aggs, r->wins[i]->state, (size_t)w->o.top_by);
    }
    qsort(v, n, sizeof(*v), w->o.top_asc ? cmp_ranked_asc : cmp_ranked_desc);
    if ((long)n > w->o.top_n)
        n = (size_t)w->o.top_n;
    for (size_t i = 0; i < r->n; i++)
        v[i].x->in_top = i < n;
    r->ntop = n;
    r->nth = n ? v[n - 1].x : NULL;
    r->nth_v = n ? v[n - 1].v : 0;
    return v;
}

static int emit_range(struct tlm_window *w, struct range *r, int final, struct tlm_buf *out,
                      long *rows)
{
    int rc = 0;
    if (w->o.top_n <= 0) {
        for (size_t i = 0; i < r->n && rc == 0; i++)
            rc = emit_win(w, r->wins[i], final, out, rows);
    } else {
        struct ranked *v = rank_top(w, r);
        size_t n = r->ntop;
        if (!v)
            return TLM_ENOMEM;
        for (size_t i = 0; i < n && rc == 0; i++) {
            rc = put_row(w, v[i].x->key, r->start, r->end, v[i].x, NULL, r->revision,
                         (long)i + 1, final, out);
            (*rows)++;
        }
        r->revision++;
        free(v);
    }
    return rc;
}

/* Can an update of window x change the top N its fired range wrote last? Not when x
 * was not among them, they were N, and x still ranks after the last of them: then the
 * range is not written again (a late event would otherwise cost a sort of all keys). */
static int top_changes(const struct tlm_window *w, struct range *r, struct win *x)
{
    struct ranked a, b;
    if (!r->nth && r->n > 1 && r->revision > 0) {
        /* not known (a snapshot written before the top N was saved with it): rank with
         * x's update. x in the top N now changes the rows written last; if not, the
         * others are as written then (an update of them would have been written) */
        struct ranked *v = rank_top(w, r);
        if (!v)
            return 1;
        free(v);
        return x->in_top;
    }
    if (x->in_top || r->ntop < (size_t)w->o.top_n || !r->nth)
        return 1;
    a.x = x;
    a.v = tlm_aggs_value(w->aggs, x->state, (size_t)w->o.top_by);
    b.x = r->nth;
    b.v = r->nth_v;
    return (w->o.top_asc ? cmp_ranked_asc : cmp_ranked_desc)(&a, &b) < 0;
}

/* Fill rows for keys without a window in range [start, end). */
static int emit_fill(struct tlm_window *w, int64_t start, int64_t end, struct range *r,
                     struct tlm_buf *out, long *rows)
{
    int rc = 0;
    struct tlm_buf zero = TLM_BUF_INIT;
    if (w->o.fill == TLM_FILL_NONE)
        return 0;
    if (w->o.fill == TLM_FILL_ZERO) {
        /* the aggregates of an empty window: count 0, the others null */
        unsigned char *st = calloc(1, w->state_size ? w->state_size : 1);
        if (!st)
            return TLM_ENOMEM;
        tlm_aggs_init(w->aggs, st);
        rc = tlm_aggs_write(w->aggs, st, &zero);
        tlm_aggs_free(w->aggs, st);
        free(st);
        if (rc)
            return TLM_ENOMEM;
    }
    for (size_t i = 0; i < w->nkeys && rc == 0; i++) {
        struct wkey *k = w->keys[i];
        if (find_win(k, start))
            continue;
        if (w->o.fill == TLM_FILL_LAST && !k->last)
            continue; /* no row yet to repeat */
        int32_t rev = 0;
        if (w->o.lateness > 0) {
            /* a late event may still come for this key and window: keep an empty window,
             * so that its row is a revision of this one, never a second revision 0 */
            struct range *rr = r ? r : get_range(w, start);
            struct win *x;
            if (!rr || !(x = new_win(w, k, start, end)) ||
                grow((void **)&rr->wins, &rr->cap, rr->n + 1, sizeof(*rr->wins))) {
                rc = TLM_ENOMEM;
                break;
            }
            rr->fired = 1;
            rr->wins[rr->n++] = x;
            rev = x->revision++;
        }
        rc = put_row(w, k, start, end, NULL,
                     w->o.fill == TLM_FILL_LAST ? k->last : (zero.data ? zero.data : ""), rev, 0,
                     1, out);
        (*rows)++;
    }
    tlm_buf_free(&zero);
    return rc;
}

/* Frees the first n ranges and their windows (one move of the array for all). */
static void free_ranges(struct tlm_window *w, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        struct range *r = w->ranges[j];
        for (size_t i = 0; i < r->n; i++)
            drop_win(w, r->wins[i]);
        free(r->wins);
        free(r);
    }
    if (n == 0)
        return; /* (w->ranges may be NULL) */
    memmove(&w->ranges[0], &w->ranges[n], (w->nranges - n) * sizeof(*w->ranges));
    w->nranges -= n;
    w->nfired = w->nfired > n ? w->nfired - n : 0;
}

static int fire_ready_ranges(struct tlm_window *w, tlm_time_t wm, int finishing,
                             struct tlm_buf *out, long *rows)
{
    int rc = 0;
    /* ranges are in start (so end) order: start past those known fired, stop at the
     * first one not due */
    for (size_t i = w->nfired; i < w->nranges && rc == 0; i++) {
        struct range *r = w->ranges[i];
        if (r->fired)
            continue;
        if (!finishing && r->end - MS > wm)
            break;
        /* fill: ranges with no event at all before this one fire too */
        if (w->o.fill && w->fill_started) {
            while (w->next_fill < r->start && rc == 0) {
                rc = emit_fill(w, w->next_fill, w->next_fill + w->o.size, NULL, out, rows);
                w->next_fill += w->o.every;
            }
        }
        r->fired = 1;
        if (rc == 0)
            rc = emit_range(w, r, 1, out, rows);
        if (rc == 0)
            rc = emit_fill(w, r->start, r->end, r, out, rows);
        if (!w->fill_started || r->start + w->o.every > w->next_fill) {
            w->next_fill = r->start + w->o.every;
            w->fill_started = 1;
        }
    }
    /* fill past the last range with events, as the watermark goes on */
    if (w->o.fill && w->fill_started && !finishing) {
        while (rc == 0 && w->next_fill + w->o.size - MS <= wm) {
            size_t pos;
            if (find_range(w, w->next_fill, &pos))
                break;
            rc = emit_fill(w, w->next_fill, w->next_fill + w->o.size, NULL, out, rows);
            w->next_fill += w->o.every;
        }
    }
    while (w->nfired < w->nranges && w->ranges[w->nfired]->fired)
        w->nfired++;
    /* free what is past its lateness (or everything at the end) */
    if (rc == 0) {
        size_t n = 0;
        while (n < w->nranges && w->ranges[n]->fired &&
               (finishing || w->ranges[n]->end - MS + w->o.lateness <= wm))
            n++;
        free_ranges(w, n);
    }
    return rc;
}

/* ---- sessions ------------------------------------------------------------------- */

static int timer_less(const struct timer *a, const struct timer *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int heap_push(struct tlm_window *w, int64_t at, struct win *x)
{
    size_t i;
    if (grow((void **)&w->heap, &w->heap_cap, w->nheap + 1, sizeof(*w->heap)))
        return TLM_ENOMEM;
    i = w->nheap++;
    w->heap[i] = (struct timer){ at, x->seq, x->key };
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_less(&w->heap[i], &w->heap[p]))
            break;
        struct timer t = w->heap[i];
        w->heap[i] = w->heap[p];
        w->heap[p] = t;
        i = p;
    }
    return 0;
}

static struct timer heap_pop(struct tlm_window *w)
{
    struct timer top = w->heap[0];
    size_t i = 0;
    w->heap[0] = w->heap[--w->nheap];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->nheap && timer_less(&w->heap[l], &w->heap[m]))
            m = l;
        if (r < w->nheap && timer_less(&w->heap[r], &w->heap[m]))
            m = r;
        if (m == i)
            break;
        struct timer t = w->heap[i];
        w->heap[i] = w->heap[m];
        w->heap[m] = t;
        i = m;
    }
    return top;
}

static int cmp_session_end(const void *a, const void *b)
{
    const struct win *p = *(struct win *const *)a, *q = *(struct win *const *)b;
    if (p->end != q->end)
        return p->end < q->end ? -1 : 1;
    return (p->seq > q->seq) - (p->seq < q->seq);
}

/* The end of input: the sessions not fired yet fire in the order of their end, then of
 * their creation (the heap's entries may still be at a session's end before it grew,
 * and a restored heap has none of those), and every session is freed. */
static int finish_sessions(struct tlm_window *w, struct tlm_buf *out, long *rows)
{
    size_t n = 0, m = 0;
    int rc = 0;
    for (size_t i = 0; i < w->nkeys; i++)
        for (uint32_t j = 0; j < w->keys[i]->nwin; j++)
            n += !w->keys[i]->wins[j]->fired;
    struct win **due = malloc((n ? n : 1) * sizeof(*due));
    if (!due)
        return TLM_ENOMEM;
    for (size_t i = 0; i < w->nkeys; i++)
        for (uint32_t j = 0; j < w->keys[i]->nwin; j++)
            if (!w->keys[i]->wins[j]->fired)
                due[m++] = w->keys[i]->wins[j];
    qsort(due, n, sizeof(*due), cmp_session_end);
    for (size_t i = 0; i < n && rc == 0; i++) {
        due[i]->fired = 1;
        rc = emit_win(w, due[i], 1, out, rows);
    }
    free(due);
    if (rc)
        return rc;
    for (size_t i = 0; i < w->nkeys; i++)
        while (w->keys[i]->nwin)
            drop_win(w, w->keys[i]->wins[w->keys[i]->nwin - 1]);
    w->nheap = 0;
    return 0;
}

static int fire_sessions(struct tlm_window *w, tlm_time_t wm, int finishing, struct tlm_buf *out,
                         long *rows)
{
    int rc = 0;
    if (finishing)
        return finish_sessions(w, out, rows);
    while (rc == 0 && w->nheap && (finishing || w->heap[0].at <= wm)) {
        struct timer t = heap_pop(w);
        struct win *x = find_win_seq(t.key, t.seq);
        if (!x)
            continue; /* merged away */
        if (!x->fired) {
            if (!finishing && x->end - MS > t.at) {
                rc = heap_push(w, x->end - MS, x); /* extended since: later */
                continue;
            }
            if (!finishing && x->end - MS > wm) {
                rc = heap_push(w, x->end - MS, x);
                continue;
            }
            x->fired = 1;
            rc = emit_win(w, x, 1, out, rows);
            if (rc == 0 && !finishing && w->o.lateness > 0) {
                rc = heap_push(w, x->end - MS + w->o.lateness, x);
                continue;
            }
        } else if (!finishing && x->end - MS + w->o.lateness > wm) {
            rc = heap_push(w, x->end - MS + w->o.lateness, x);
            continue;
        }
        drop_win(w, x);
    }
    return rc;
}

static int add_session(struct tlm_window *w, struct wkey *k, tlm_time_t ts, tlm_time_t wm,
                       struct tlm_buf *out, long *rows, struct tlm_error *err)
{
    int64_t start = ts, end = ts + w->o.gap;
    struct win *x = NULL;
    int rc;
    /* Flink's rule: sessions that intersect or touch ([a,b] and [c,d] with a <= d and
     * c <= b) merge; the window the event ends up in decides whether it is late */
    for (uint32_t i = 0; i < k->nwin; i++) {
        struct win *s = k->wins[i];
        if (s->start <= end && start <= s->end) {
            if (s->start < start)
                start = s->start;
            if (s->end > end)
                end = s->end;
        }
    }
    if (end - MS + w->o.lateness <= wm)
        return 1; /* the merged session would be past its lateness */
    for (uint32_t i = 0; i < k->nwin;) {
        struct win *s = k->wins[i];
        if (s->start <= end && start <= s->end) {
            if (!x) {
                x = s;
                i++;
                continue;
            }
            if ((rc = tlm_aggs_merge(w->aggs, x->state, s->state)))
                return tlm_error_set(err, rc, "out of memory");
            if (s->revision > x->revision)
                x->revision = s->revision;
            x->fired |= s->fired;
            drop_win(w, s); /* removes it from k->wins: do not advance i */
            continue;
        }
        i++;
    }
    if (!x) {
        if (!(x = new_win(w, k, start, end)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if ((rc = heap_push(w, end - MS, x)))
            return tlm_error_set(err, rc, "out of memory");
    } else {
        x->start = start;
        x->end = end;
        /* keep the key's windows sorted by start after x grew */
        for (uint32_t i = 1; i < k->nwin; i++)
            for (uint32_t j = i; j > 0 && k->wins[j - 1]->start > k->wins[j]->start; j--) {
                struct win *t = k->wins[j];
                k->wins[j] = k->wins[j - 1];
                k->wins[j - 1] = t;
            }
    }
    if ((rc = tlm_aggs_apply(w->aggs, x->state, w->ev, ts, err)))
        return rc;
    if (x->end - MS <= wm) {
        /* due: a late event within lateness for a session that fired (a revision), or
         * a session created behind the watermark: it is emitted at once */
        x->fired = 1;
        rc = emit_win(w, x, 1, out, rows);
        if (rc == 0)
            rc = heap_push(w, x->end - MS + w->o.lateness, x);
        return rc ? tlm_error_set(err, rc, "out of memory") : 0;
    }
    if (x->fired) {
        /* the session grew past the watermark: it fires again when the watermark
         * reaches its new end */
        x->fired = 0;
        if ((rc = heap_push(w, x->end - MS, x)))
            return tlm_error_set(err, rc, "out of memory");
    }
    return 0;
}

/* ---- events --------------------------------------------------------------------- */

void tlm_window_prefetch(struct tlm_window *w, const struct tlm_jval *keys, int pass,
                         struct tlm_window_hint *hint)
{
    size_t mask = w->tab_cap - 1;
    if (pass == 0) {
        hint->p = NULL;
        hint->hash = 0;
        hint->len = 0;
        /* a few thousand keys and their windows stay in the caches: rendering here
         * would cost more than it saves */
        if (w->nkeys < 8192 || render_key(w, keys))
            return;
        hint->hash = hash_bytes(w->tmp.data, w->tmp.len);
        if (w->tmp.len > 0 && w->tmp.len <= sizeof(hint->text)) {
            memcpy(hint->text, w->tmp.data, w->tmp.len);
            hint->len = (uint32_t)w->tmp.len;
        }
        __builtin_prefetch(&w->tab[HASH_HOME(hint->hash) & mask]);
        hint->p = w; /* hashed */
    } else if (pass == 1) {
        const struct wkey *k = NULL;
        if (!hint->p)
            return;
        for (size_t j = HASH_HOME(hint->hash) & mask; w->tab[j]; j = (j + 1) & mask)
            if (SLOT_TAG(w->tab[j]) == HASH_TAG(hint->hash)) {
                k = SLOT_KEY(w->tab[j]);
                break;
            }
        hint->p = k;
        if (k) {
            __builtin_prefetch(k);
            __builtin_prefetch((const char *)k + 64);
        }
    } else {
        /* the key's newest windows, as many as cover one event (they are in start
         * order), then (pass 3) the sketches their states point to, then (pass 4) the
         * buffer slots of those sketches */
        const struct wkey *k = hint->p;
        if (!k)
            return;
        uint32_t per = (uint32_t)(w->o.kind == TLM_WIN_SESSION ? 1 : w->o.size / w->o.every);
        for (uint32_t i = k->nwin > per ? k->nwin - per : 0; i < k->nwin; i++) {
            const struct win *x = k->wins[i];
            if (pass == 3) {
                tlm_aggs_prefetch(w->aggs, x->state);
                continue;
            }
            if (pass == 4) {
                tlm_aggs_prefetch_tails(w->aggs, x->state);
                continue;
            }
            for (size_t off = 0; off < sizeof(*x) + w->state_size; off += 64)
                __builtin_prefetch((const char *)x + off);
        }
    }
}

int tlm_window_add(struct tlm_window *w, const struct tlm_jval *keys,
                   const struct tlm_jval *vals, json_t *partial, tlm_time_t ts,
                   tlm_time_t wm, struct tlm_buf *out, long *rows, struct tlm_error *err)
{
    return tlm_window_add_hinted(w, NULL, keys, vals, partial, ts, wm, out, rows, err);
}

int tlm_window_add_hinted(struct tlm_window *w, const struct tlm_window_hint *hint,
                          const struct tlm_jval *keys, const struct tlm_jval *vals,
                          json_t *partial, tlm_time_t ts, tlm_time_t wm, struct tlm_buf *out,
                          long *rows, struct tlm_error *err)
{
    struct wkey *k;
    int rc, kept = 0;
    /* the arguments first: an event whose aggregate cannot be evaluated (a division by
     * zero) is rejected before it creates, merges or changes any window */
    if ((rc = tlm_aggs_resolve(w->aggs, w->ev, vals, partial, err)))
        return rc;
    if (hint && hint->len) {
        k = get_key_hashed(w, hint->text, hint->len, hint->hash);
    } else {
        if (render_key(w, keys))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        k = get_key(w, w->tmp.data, w->tmp.len);
    }
    if (!k)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (w->o.kind == TLM_WIN_SESSION)
        return add_session(w, k, ts, wm, out, rows, err);

    /* the windows covering ts, oldest first (size is a multiple of every), so that rows
     * written at once for a late event come in time order */
    int64_t last = floor_div(ts - w->o.offset, w->o.every) * w->o.every + w->o.offset;
    /* k->wins is in start order: the windows covering ts are most likely its last
     * size / every ones */
    uint32_t per = (uint32_t)(w->o.size / w->o.every);
    uint32_t at = k->nwin > per ? k->nwin - per : 0;
    for (int64_t s = last - w->o.size + w->o.every; s <= last; s += w->o.every) {
        int64_t end = s + w->o.size;
        struct win *x;
        struct range *r;
        if (end - MS + w->o.lateness <= wm)
            continue; /* this window is past its lateness */
        if (!(r = get_range(w, s)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        x = find_win_at(k, s, &at);
        if (!x) {
            if (!(x = new_win(w, k, s, end)) ||
                grow((void **)&r->wins, &r->cap, r->n + 1, sizeof(*r->wins)))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            r->wins[r->n++] = x;
            /* just past it (pointers compared, no window read) */
            for (at = k->nwin; at > 0 && k->wins[at - 1] != x; at--)
                ;
        }
        if ((rc = tlm_aggs_apply(w->aggs, x->state, w->ev, ts, err)))
            return rc;
        kept = 1;
        if (end - MS > wm)
            continue; /* not due yet */
        /* due: the range fired already (this is a revision), or it was created behind
         * the watermark by an event that is late but within lateness (it fires now) */
        r->fired = 1;
        /* the range has fired: this update is a revision (or a first row if new) */
        if (w->o.top_n > 0 && !top_changes(w, r, x))
            continue;
        rc = w->o.top_n > 0 ? emit_range(w, r, 1, out, rows) : emit_win(w, x, 1, out, rows);
        if (rc)
            return tlm_error_set(err, rc, "out of memory");
    }
    return kept ? 0 : 1;
}

/* Early rows for windows not yet final, each time event time crosses emit_every. */
static int emit_early(struct tlm_window *w, tlm_time_t wm, struct tlm_buf *out, long *rows)
{
    int rc = 0;
    if (!w->o.emit_every || w->last_wm == TLM_TIME_MIN ||
        floor_div(wm, w->o.emit_every) == floor_div(w->last_wm, w->o.emit_every))
        return 0;
    if (w->o.kind == TLM_WIN_SESSION) {
        for (size_t i = 0; i < w->nkeys && rc == 0; i++)
            for (uint32_t j = 0; j < w->keys[i]->nwin && rc == 0; j++)
                if (!w->keys[i]->wins[j]->fired)
                    rc = emit_win(w, w->keys[i]->wins[j], 0, out, rows);
    } else {
        for (size_t i = w->nfired; i < w->nranges && rc == 0; i++)
            if (!w->ranges[i]->fired)
                rc = emit_range(w, w->ranges[i], 0, out, rows);
    }
    return rc;
}

int tlm_window_advance(struct tlm_window *w, tlm_time_t wm, struct tlm_buf *out, long *rows,
                       struct tlm_error *err)
{
    int rc = w->o.kind == TLM_WIN_SESSION ? fire_sessions(w, wm, 0, out, rows)
                                          : fire_ready_ranges(w, wm, 0, out, rows);
    if (rc == 0)
        rc = emit_early(w, wm, out, rows);
    w->last_wm = wm;
    return rc ? tlm_error_set(err, rc, "out of memory") : 0;
}

int tlm_window_finish(struct tlm_window *w, struct tlm_buf *out, long *rows,
                      struct tlm_error *err)
{
    int rc = w->o.kind == TLM_WIN_SESSION ? fire_sessions(w, TLM_TIME_MAX, 1, out, rows)
                                          : fire_ready_ranges(w, TLM_TIME_MAX, 1, out, rows);
    return rc ? tlm_error_set(err, rc, "out of memory") : 0;
}

/* ---- snapshots ------------------------------------------------------------------ */

int tlm_window_save(struct tlm_window *w, int (*put)(void *arg, const char *line, size_t n),
                    void *arg, struct tlm_error *err)
{
    struct tlm_buf b = TLM_BUF_INIT;
    int rc = 0;
    rc |= tlm_buf_printf(&b, "{\"kind\":\"engine\",\"next_fill\":%lld,\"fill_started\":%d,"
                             "\"last_wm\":%lld,\"seq\":%llu}",
                         (long long)w->next_fill, w->fill_started, (long long)w->last_wm,
                         (unsigned long long)w->seq);
    if (rc || put(arg, b.data, b.len))
        goto fail;
    /* keys in first-seen order (with the fill text), then windows */
    for (size_t i = 0; i < w->nkeys; i++) {
        struct wkey *k = w->keys[i];
        tlm_buf_reset(&b);
        rc |= tlm_buf_puts(&b, "{\"kind\":\"key\",\"key\":");
        rc |= tlm_json_put_string(&b, k->text, k->klen);
        if (k->last) {
            rc |= tlm_buf_puts(&b, ",\"last\":");
            rc |= tlm_json_put_string(&b, k->last, strlen(k->last));
        }
        rc |= tlm_buf_putc(&b, '}');
        if (rc || put(arg, b.data, b.len))
            goto fail;
    }
    for (size_t i = 0; i < w->nranges; i++) {
        struct range *r = w->ranges[i];
        tlm_buf_reset(&b);
        rc |= tlm_buf_printf(&b, "{\"kind\":\"range\",\"start\":%lld,\"fired\":%d,\"rev\":%ld",
                             (long long)r->start, r->fired, (long)r->revision);
        if (w->o.top_n > 0 && r->nth && isfinite(r->nth_v)) {
            /* the top N written last (with the windows' "top" and "nth"), so that a late
             * update after a restore is compared with it as in one run */
            rc |= tlm_buf_printf(&b, ",\"ntop\":%zu,\"nth_v\":", r->ntop);
            rc |= tlm_json_put_double(&b, r->nth_v);
        } else if (w->o.top_n > 0 && r->nth && isnan(r->nth_v)) {
            rc |= tlm_buf_printf(&b, ",\"ntop\":%zu,\"nth_v\":null", r->ntop);
        }
        rc |= tlm_buf_putc(&b, '}');
        if (rc || put(arg, b.data, b.len))
            goto fail;
    }
    /* windows: for aligned kinds in range order (arrival order within a range) */
    for (size_t i = 0; i < (w->o.kind == TLM_WIN_SESSION ? w->nkeys : w->nranges); i++) {
        size_t n = w->o.kind == TLM_WIN_SESSION ? w->keys[i]->nwin : w->ranges[i]->n;
        for (size_t j = 0; j < n; j++) {
            struct win *x = w->o.kind == TLM_WIN_SESSION ? w->keys[i]->wins[j] : w->ranges[i]->wins[j];
            tlm_buf_reset(&b);
            rc |= tlm_buf_puts(&b, "{\"kind\":\"window\",\"key\":");
            rc |= tlm_json_put_string(&b, x->key->text, x->key->klen);
            rc |= tlm_buf_printf(&b, ",\"start\":%lld,\"end\":%lld,\"seq\":%llu,\"rev\":%ld,"
                                     "\"fired\":%d,\"aggs\":",
                                 (long long)x->start, (long long)x->end,
                                 (unsigned long long)x->seq, (long)x->revision, x->fired);
            rc |= tlm_aggs_save(w->aggs, x->state, &b);
            if (w->o.top_n > 0 && w->o.kind != TLM_WIN_SESSION) {
                const struct range *r = w->ranges[i];
                if (x->in_top)
                    rc |= tlm_buf_puts(&b, ",\"top\":1");
                if (r->nth == x && (isfinite(r->nth_v) || isnan(r->nth_v)))
                    rc |= tlm_buf_puts(&b, ",\"nth\":1");
            }
            rc |= tlm_buf_putc(&b, '}');
            if (rc || put(arg, b.data, b.len))
                goto fail;
        }
    }
    tlm_buf_free(&b);
    return 0;
fail:
    tlm_buf_free(&b);
    return tlm_error_set(err, TLM_EIO, "cannot write the window state");
}

int tlm_window_load(struct tlm_window *w, const json_t *rec, struct tlm_error *err)
{
    const char *kind = json_string_value(json_object_get(rec, "kind"));
    if (!kind)
        return tlm_error_set(err, TLM_ESTATE, "window state record without a kind");
    if (strcmp(kind, "engine") == 0) {
        json_int_t nf, fs, lw, seq;
        if (json_unpack((json_t *)rec, "{sIsIsIsI}", "next_fill", &nf, "fill_started", &fs,
                        "last_wm", &lw, "seq", &seq))
            return tlm_error_set(err, TLM_ESTATE, "bad engine record");
        w->next_fill = nf;
        w->fill_started = (int)fs;
        w->last_wm = lw;
        w->seq = (uint64_t)seq;
        return 0;
    }
    const char *ktext = json_string_value(json_object_get(rec, "key"));
    if (strcmp(kind, "key") == 0) {
        const char *last = json_string_value(json_object_get(rec, "last"));
        struct wkey *k;
        if (!ktext)
            return tlm_error_set(err, TLM_ESTATE, "bad key record");
        k = get_key(w, ktext, json_string_length(json_object_get(rec, "key")));
        if (!k)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (last && !(k->last = strdup(last)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return 0;
    }
    if (strcmp(kind, "range") == 0) {
        json_int_t start, fired, rev;
        struct range *r;
        if (json_unpack((json_t *)rec, "{sIsIsI}", "start", &start, "fired", &fired, "rev", &rev))
            return tlm_error_set(err, TLM_ESTATE, "bad range record");
        if (!(r = get_range(w, start)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        r->fired = (int)fired;
        r->revision = (int32_t)rev;
        json_t *ntop = json_object_get(rec, "ntop"), *nth_v = json_object_get(rec, "nth_v");
        if (ntop || nth_v) {
            if (!json_is_integer(ntop) || json_integer_value(ntop) < 1 ||
                json_integer_value(ntop) > w->o.top_n ||
                !(json_is_null(nth_v) || json_is_number(nth_v)))
                return tlm_error_set(err, TLM_ESTATE, "bad range record");
            r->ntop = (size_t)json_integer_value(ntop);
            r->nth_v = json_is_null(nth_v) ? NAN : json_number_value(nth_v);
        }
        return 0;
    }
    if (strcmp(kind, "window") == 0) {
        json_int_t start, end, seq, rev, fired;
        json_t *aggs = json_object_get(rec, "aggs");
        struct wkey *k;
        struct win *x;
        char *text;
        int rc;
        if (!ktext || !aggs ||
            json_unpack((json_t *)rec, "{sIsIsIsIsI}", "start", &start, "end", &end, "seq", &seq,
                        "rev", &rev, "fired", &fired))
            return tlm_error_set(err, TLM_ESTATE, "bad window record");
        k = get_key(w, ktext, json_string_length(json_object_get(rec, "key")));
        if (!k || !(x = new_win(w, k, start, end)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        x->seq = (uint64_t)seq;
        x->revision = (int32_t)rev;
        x->fired = (uint8_t)fired;
        text = json_dumps(aggs, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        if (!text)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        tlm_aggs_free(w->aggs, x->state);
        rc = tlm_aggs_load(w->aggs, x->state, text, strlen(text), err);
        free(text);
        if (rc)
            return rc;
        if (w->o.kind == TLM_WIN_SESSION) {
            int64_t at = x->fired ? x->end - MS + w->o.lateness : x->end - MS;
            return heap_push(w, at, x) ? tlm_error_set(err, TLM_ENOMEM, "out of memory") : 0;
        }
        struct range *r = get_range(w, start);
        if (!r || grow((void **)&r->wins, &r->cap, r->n + 1, sizeof(*r->wins)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        r->wins[r->n++] = x;
        x->in_top = json_is_true(json_object_get(rec, "top")) ||
                    json_integer_value(json_object_get(rec, "top")) == 1;
        if (json_integer_value(json_object_get(rec, "nth")) == 1) {
            if (!r->ntop || !x->in_top)
                return tlm_error_set(err, TLM_ESTATE, "bad window record");
            r->nth = x;
        }
        return 0;
    }
    return tlm_error_set(err, TLM_ESTATE, "unknown window state record '%s'", kind);
}

void tlm_window_stats(const struct tlm_window *w, struct tlm_window_stats *s)
{
    long long bytes = w->bytes;
    for (size_t i = 0; i < w->nkeys; i++) {
        struct wkey *k = w->keys[i];
        bytes += (long long)(k->capwin * sizeof(void *));
        for (uint32_t j = 0; j < k->nwin; j++)
            bytes += (long long)(sizeof(struct win) + w->state_size + sizeof(void *) +
                                 tlm_aggs_heap_bytes(w->aggs, k->wins[j]->state));
    }
    s->keys = (long long)w->nkeys;
    s->open = w->open;
    s->fired = w->fired;
    s->revisions = w->revisions;
    s->bytes = bytes;
}
