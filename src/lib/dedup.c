/*
 * dedup.c - time-windowed duplicate detection in bounded memory (see dedup.h).
 *
 * Design. Two structures share the records:
 *
 *   ring   a FIFO of records {h1, h2, t} in the order they were recorded (a circular
 *          array, grown by doubling up to max_ids). Expiry pops its head while the head
 *          is older than (newest time seen - window); eviction pops it when the ring is
 *          full at max_ids. A record replaced by a newer one of the same id stays in place
 *          as a dead slot (t == DEAD) until it reaches the head; growing the ring drops
 *          dead slots.
 *   table  open addressing with linear probing, 8-byte slots {ring position + 1, low 32
 *          bits of h1}; 0 marks an empty slot. The low bits of h1 give both the home slot
 *          and a tag compared before the ring is touched, so a miss usually costs one
 *          cache line. Deletion is by backward shift (no tombstones), so probe lengths
 *          stay those of the current load, which is at most 2/3 (table size: the power of
 *          two at or above 1.5 times the ring's capacity). Rebuilt when the ring grows.
 *
 * Per check: one hash of the id (two 64-bit hashes), expiry of what fell out of the window
 * (amortised O(1): each record is popped once), one probe sequence, and possibly one
 * append. Memory: 24 bytes per ring slot plus 8 bytes per table slot: about 37 bytes per
 * id at max_ids = 10 M, 36-52 typically, under 100 just after the ring doubled
 * (tlm_dedup_bytes reports it). Measured (test_dedup, -O2, a shared 2-core Xeon VM):
 * 10-12 M checks/s for new ids, over 20 M/s for duplicates.
 *
 * Ordering caveat: the ring is ordered by recording, not by time. With out-of-order times a
 * record younger than its successors may sit at the head and hold older ones behind it
 * until it expires itself; they are then kept a little longer than the window, which only
 * costs memory (bounded by max_ids) since every decision compares |t - te| explicitly.
 *
 * Hashes: a wyhash-style function (W. Wang's wyhash design: 128-bit multiply, fold the
 * halves) written here, run twice with independent seeds. Invariant: the table holds
 * exactly one slot for each live ring record, and no two live records have equal (h1, h2).
 */
#include "dedup.h"

#include <stdlib.h>
#include <string.h>

#define DEAD INT64_MIN   /* t of a dead ring slot; real times are clamped above it */
#define MIN_CAP 1024u

struct rec {
    uint64_t h1, h2;  /* the id's hashes */
    int64_t t;        /* time recorded, or DEAD */
};

struct slot {
    uint32_t pos1;    /* ring index + 1; 0 = empty */
    uint32_t tag;     /* low 32 bits of h1: home slot and quick compare */
};

struct tlm_dedup {
    int64_t window;      /* ns, > 0 */
    size_t max_ids;      /* ring capacity limit */
    struct rec *ring;    /* cap records, circular from head */
    size_t cap, head;
    size_t count;        /* ring slots in use (live + dead) */
    size_t live;         /* live records = table slots in use */
    struct slot *tab;    /* tmask + 1 slots */
    size_t tmask;
    int cannot_grow;     /* an allocation failed: behave as if cap were max_ids */
    int64_t newest;      /* highest t seen, TLM_TIME_MIN before any */
    long long evicted;
};

/* ---- hashing -------------------------------------------------------------------------- */

static const uint64_t S0 = UINT64_C(0xa0761d6478bd642f), S1 = UINT64_C(0xe7037ed1a0b428db),
                      S2 = UINT64_C(0x8ebc6af09c88c6e3), S3 = UINT64_C(0x589965cc75374cc3);
static const uint64_t SEED1 = UINT64_C(0x9e3779b97f4a7c15), SEED2 = UINT64_C(0xd1b54a32d192ed03);

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd8(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t rd4(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t hash64(const unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t a, b;
    seed ^= mix(seed ^ S0, S1);
    if (n <= 16) {
        if (n >= 4) {
            size_t k = (n >> 3) << 2;
            a = (rd4(p) << 32) | rd4(p + k);
            b = (rd4(p + n - 4) << 32) | rd4(p + n - 4 - k);
        } else if (n > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = n;
        if (i > 48) {
            uint64_t s1 = seed, s2 = seed;
            do {
                seed = mix(rd8(p) ^ S1, rd8(p + 8) ^ seed);
                s1 = mix(rd8(p + 16) ^ S2, rd8(p + 24) ^ s1);
                s2 = mix(rd8(p + 32) ^ S3, rd8(p + 40) ^ s2);
                p += 48;
                i -= 48;
            } while (i > 48);
            seed ^= s1 ^ s2;
        }
        while (i > 16) {
            seed = mix(rd8(p) ^ S1, rd8(p + 8) ^ seed);
            p += 16;
            i -= 16;
        }
        a = rd8(p + i - 16);
        b = rd8(p + i - 8);
    }
    a ^= S1;
    b ^= seed;
    __uint128_t r = (__uint128_t)a * b;
    a = (uint64_t)r;
    b = (uint64_t)(r >> 64);
    return mix(a ^ S0 ^ (uint64_t)n, b ^ S1);
}

void tlm_dedup_hash(const void *id, size_t n, uint64_t *h1, uint64_t *h2)
{
    *h1 = hash64(id, n, SEED1);
    *h2 = hash64(id, n, SEED2);
}

/* ---- table ------------------------------------------------------------------------------ */

/* Slot holding (h1, h2), or -1. */
static inline long find(const struct tlm_dedup *d, uint64_t h1, uint64_t h2)
{
    uint32_t tag = (uint32_t)h1;
    size_t i = tag & d->tmask;
    for (;;) {
        struct slot s = d->tab[i];
        if (!s.pos1)
            return -1;
        if (s.tag == tag) {
            const struct rec *r = &d->ring[s.pos1 - 1];
            if (r->h1 == h1 && r->h2 == h2)
                return (long)i;
        }
        i = (i + 1) & d->tmask;
    }
}

/* Slot pointing at ring index pos (whose record has hash h1). */
static size_t find_pos(const struct tlm_dedup *d, uint64_t h1, size_t pos)
{
    size_t i = (uint32_t)h1 & d->tmask;
    while (d->tab[i].pos1 != pos + 1)
        i = (i + 1) & d->tmask;
    return i;
}

static inline void tab_insert(struct tlm_dedup *d, uint64_t h1, size_t pos)
{
    size_t i = (uint32_t)h1 & d->tmask;
    while (d->tab[i].pos1)
        i = (i + 1) & d->tmask;
    d->tab[i].pos1 = (uint32_t)(pos + 1);
    d->tab[i].tag = (uint32_t)h1;
}

/* Backward-shift deletion (Knuth 6.4, algorithm R). */
static void tab_delete(struct tlm_dedup *d, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & d->tmask;
        if (!d->tab[j].pos1)
            break;
        size_t k = d->tab[j].tag & d->tmask; /* home of the slot at j */
        /* move it into the hole unless its home lies cyclically in (i, j] */
        if (((j - k) & d->tmask) >= ((j - i) & d->tmask)) {
            d->tab[i] = d->tab[j];
            i = j;
        }
    }
    d->tab[i].pos1 = 0;
}

static size_t table_size_for(size_t cap)
{
    size_t want = cap + cap / 2, n = 16;
    while (n < want)
        n <<= 1;
    return n;
}

/* ---- ring --------------------------------------------------------------------------------- */

/* Removes the head record. Returns 1 if it was live. */
static int pop_head(struct tlm_dedup *d)
{
    struct rec *r = &d->ring[d->head];
    int was_live = r->t != DEAD;
    if (was_live) {
        tab_delete(d, find_pos(d, r->h1, d->head));
        d->live--;
    }
    d->head = d->head + 1 == d->cap ? 0 : d->head + 1;
    d->count--;
    return was_live;
}

/* Doubles the ring (up to max_ids), compacting out dead slots, and rebuilds the table.
 * Returns 0, or -1 with nothing changed when memory is short. */
static int grow(struct tlm_dedup *d)
{
    size_t ncap = d->cap * 2;
    if (ncap > d->max_ids)
        ncap = d->max_ids;
    size_t tsize = table_size_for(ncap);
    struct rec *nr = malloc(ncap * sizeof *nr);
    struct slot *nt = calloc(tsize, sizeof *nt);
    if (!nr || !nt) {
        free(nr);
        free(nt);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0, p = d->head; i < d->count; i++) {
        if (d->ring[p].t != DEAD)
            nr[k++] = d->ring[p];
        p = p + 1 == d->cap ? 0 : p + 1;
    }
    free(d->ring);
    free(d->tab);
    d->ring = nr;
    d->cap = ncap;
    d->head = 0;
    d->count = d->live = k;
    d->tab = nt;
    d->tmask = tsize - 1;
    for (size_t i = 0; i < k; i++)
        tab_insert(d, nr[i].h1, i);
    return 0;
}

/* Appends a live record, making room first (grow, else evict the oldest). */
static void append(struct tlm_dedup *d, uint64_t h1, uint64_t h2, int64_t t)
{
    if (d->count == d->cap) {
        if (d->cap < d->max_ids && !d->cannot_grow && grow(d) != 0)
            d->cannot_grow = 1;
        while (d->count == d->cap)
            d->evicted += pop_head(d);
    }
    size_t pos = d->head + d->count;
    if (pos >= d->cap)
        pos -= d->cap;
    d->ring[pos] = (struct rec){ h1, h2, t };
    d->count++;
    d->live++;
    tab_insert(d, h1, pos);
}

/* Marks the record in table slot i dead and removes the slot. */
static void kill_slot(struct tlm_dedup *d, size_t i)
{
    d->ring[d->tab[i].pos1 - 1].t = DEAD;
    tab_delete(d, i);
    d->live--;
}

static void advance(struct tlm_dedup *d, int64_t t)
{
    if (t <= d->newest)
        return;
    d->newest = t;
    if (t < INT64_MIN + d->window)
        return; /* nothing can be older than the window yet */
    int64_t cutoff = t - d->window;
    while (d->count && d->ring[d->head].t < cutoff) /* DEAD is below any cutoff */
        pop_head(d);
}

/* ---- API ------------------------------------------------------------------------------------ */

struct tlm_dedup *tlm_dedup_create(const struct tlm_dedup_opts *o)
{
    if (!o || o->window <= 0)
        return NULL;
    struct tlm_dedup *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->window = o->window;
    d->max_ids = o->max_ids ? o->max_ids : TLM_DEDUP_DEFAULT_MAX_IDS;
    if (d->max_ids > UINT32_MAX - 1u)
        d->max_ids = UINT32_MAX - 1u;
    d->cap = d->max_ids < MIN_CAP ? d->max_ids : MIN_CAP;
    size_t tsize = table_size_for(d->cap);
    d->ring = malloc(d->cap * sizeof *d->ring);
    d->tab = calloc(tsize, sizeof *d->tab);
    d->tmask = tsize - 1;
    d->newest = TLM_TIME_MIN;
    if (!d->ring || !d->tab) {
        tlm_dedup_destroy(d);
        return NULL;
    }
    return d;
}

void tlm_dedup_destroy(struct tlm_dedup *d)
{
    if (!d)
        return;
    free(d->ring);
    free(d->tab);
    free(d);
}

static inline int within(int64_t a, int64_t b, int64_t window)
{
    uint64_t dist = a > b ? (uint64_t)a - (uint64_t)b : (uint64_t)b - (uint64_t)a;
    return dist < (uint64_t)window;
}

int tlm_dedup_check(struct tlm_dedup *d, const void *id, size_t n, tlm_time_t t)
{
    if (t == DEAD)
        t = DEAD + 1;
    uint64_t h1, h2;
    tlm_dedup_hash(id, n, &h1, &h2);
    advance(d, t);
    long i = find(d, h1, h2);
    if (i >= 0) {
        if (within(t, d->ring[d->tab[i].pos1 - 1].t, d->window))
            return 1;
        kill_slot(d, (size_t)i); /* seen, but out of the window: record it anew */
    }
    append(d, h1, h2, t);
    return 0;
}

int tlm_dedup_restore(struct tlm_dedup *d, uint64_t h1, uint64_t h2, tlm_time_t t)
{
    if (t == DEAD)
        t = DEAD + 1;
    if (t > d->newest)
        d->newest = t;
    long i = find(d, h1, h2);
    if (i >= 0)
        kill_slot(d, (size_t)i);
    append(d, h1, h2, t);
    return 0;
}

int tlm_dedup_foreach(const struct tlm_dedup *d,
                      int (*fn)(void *arg, uint64_t h1, uint64_t h2, tlm_time_t t), void *arg)
{
    for (size_t i = 0, p = d->head; i < d->count; i++) {
        const struct rec *r = &d->ring[p];
        if (r->t != DEAD) {
            int rc = fn(arg, r->h1, r->h2, r->t);
            if (rc)
                return rc;
        }
        p = p + 1 == d->cap ? 0 : p + 1;
    }
    return 0;
}

long long tlm_dedup_evicted(const struct tlm_dedup *d)
{
    return d ? d->evicted : 0;
}

size_t tlm_dedup_size(const struct tlm_dedup *d)
{
    return d ? d->live : 0;
}

size_t tlm_dedup_bytes(const struct tlm_dedup *d)
{
    if (!d)
        return 0;
    return sizeof *d + d->cap * sizeof *d->ring + (d->tmask + 1) * sizeof *d->tab;
}
