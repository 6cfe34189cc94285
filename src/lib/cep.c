/*
 * cep.c - the CEP engine: per-key NFA state of a set of patterns, event-time buffering,
 * timeouts, after-match skip strategies and snapshots.
 *
 * Design. It follows Flink CEP's NFA (org.apache.flink.cep.nfa.NFA) step for step, with one
 * change of representation: instead of the shared buffer with Dewey-numbered versions, a
 * partial match (a "computation state") points at the newest node of a persistent chain of
 * (stage, event) nodes shared with the partial matches it branched from; nodes are
 * reference counted. Extracting a match walks its own chain, so every computation state
 * yields exactly the events Flink's versioned extraction yields.
 *
 * Per event and pattern (NFA.doProcess): every computation state of the key computes its
 * next states through the decision graph (PROCEED edges are followed as epsilon moves,
 * TAKE and IGNORE edges whose conditions hold are collected); states reaching the final
 * state are potential matches; a branch reaching a Stop state discards the states it
 * produced; the start state is always kept. Matches are emitted at once (no skip) or after
 * the skip strategy's pruning once no earlier partial match can still complete (Flink's
 * processMatchesAccordingToSkipStrategy). Timeouts (NFA.advanceTime): a computation state
 * whose start is `within` or more before the current time expires; in a Pending state (a
 * trailing notFollowedBy) it is a match, otherwise a timed-out partial match.
 *
 * Time (CepOperator in event time): pushed events wait in one heap ordered by (time,
 * arrival); when the watermark passes them they run in that order, each after the timeouts
 * due at its time (a heap of per-key deadlines), and after the last event the timeouts due
 * at the watermark fire. Output is therefore in event-time order across keys.
 *
 * Non-iterative stage conditions are evaluated once per event when it is pushed (a bit per
 * stage); iterative ones (reading other stages or prev) once per partial match and event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cep_int.h"
#include "expr.h"
#include "jwrite.h"

/* ---- types ------------------------------------------------------------------------ */

struct key;

/* An event: this header, then nmask masks (per slot: bit i = stage i's condition holds),
 * then the line and a NUL. Kept small and 64-byte aligned (most events come from the
 * arena): a 75-byte line takes three cache lines with its header. */
struct tlm_cep_event {
    tlm_time_t ts;
    unsigned long long seq;       /* arrival order */
    json_t *json;                 /* parsed on demand */
    struct key *key;              /* (the free list's link while free) */
    int32_t refs;                 /* buffer + chain nodes */
    uint32_t len;
    int32_t sid;                  /* snapshot id while saving (at most 1e8 on load) */
    uint32_t nmask;               /* pattern slots when it was pushed */
};

static inline uint64_t *ev_masks(const struct tlm_cep_event *e)
{
    return (uint64_t *)(e + 1);
}

static inline char *ev_line(const struct tlm_cep_event *e)
{
    return (char *)(ev_masks(e) + e->nmask);
}

struct node {
    struct node *parent;
    struct tlm_cep_event *ev;
    int32_t refs;
    int32_t stage;
};

/* A computation state. Its prev_ts of Flink (the time of its newest event) is the time
 * of its chain's head event, so it is not stored. head is chain->ev (NULL without a
 * chain), kept here so that the read-ahead fetches the node and its event together. */
struct cs {
    int state;
    int has_start;
    struct node *chain;
    struct tlm_cep_event *head;
    tlm_time_t start_ts;
    unsigned long long start_seq;
};

struct csvec {
    struct cs *v;
    uint32_t n;
    uint32_t cap : 31;
    uint32_t heap : 1;            /* v was malloc'd (else it is an inline array) */
};

#define CEP_INLINE 2
struct nfa {
    struct csvec pm;              /* partial matches, the start state last */
    struct csvec done;            /* matches waiting for earlier partial matches (skip) */
    struct cs inl[CEP_INLINE];    /* pm's first entries, in the key's own block */
};

/* A key's block (from the arena, 64-byte aligned, never freed alone): this header, the
 * key's text, then (16-aligned) the state of each pattern slot that existed when the key
 * was made. For short keys and one pattern it takes three cache lines. */
struct key {
    tlm_time_t timer;             /* registered deadline, TLM_TIME_MAX = none */
    struct nfa *more;             /* slots added after the key was made (ninl + i) */
    uint32_t ninl, nmore;
    uint32_t klen;
    uint16_t has_nfa;             /* the inline states are set up (at the first event) */
    uint16_t heap;                /* a big block, malloc'd (not the arena's) */
    char k[];                     /* the key's JSON text, NUL-terminated */
};

/* The key's inline pattern states. */
static inline struct nfa *key_nfa(const struct key *k)
{
    return (struct nfa *)((char *)(uintptr_t)k->k + ((k->klen + 1 + 15) & ~(size_t)15));
}

struct slot {
    uint64_t hash;                /* of the key, so that probes rarely touch the key */
    struct key *k;
};

struct hent {
    tlm_time_t ts;
    unsigned long long seq;
    struct tlm_cep_event *e;
};

struct timer {
    tlm_time_t at;
    struct key *key;
};

struct tlm_cep {
    struct tlm_cep_pattern **pat;
    size_t npat;
    struct slot *tab;             /* open addressing, linear probing */
    size_t tcap, nkeys;
    /* buffered events: those arriving in order in a ring (a FIFO), the others in a heap;
     * the next event is the smaller of the two heads */
    struct hent *heap;
    size_t nheap, hcap;
    struct hent *ring;
    size_t rhead, rcount, rcap;
    struct timer *timers;
    size_t ntim, tcap2;
    unsigned long long seq;
    /* paths pushed events carry: the union of the stages' root paths */
    struct tlm_path *paths;
    size_t npaths;
    int whole;                    /* some condition needs the whole event */
    int paths_done;
    size_t paths_npat;            /* slots whose paths are in paths (later ones: parse) */
    int any_within;               /* some pattern has a within */
    /* scratch */
    struct csvec res, np, pm;
    size_t *cnt;
    struct tlm_cep_event ***evs;
    struct tlm_cep_event **evpool;
    size_t evpool_cap;
    /* the arena (key blocks, nodes, events up to 2 KiB): 64-byte aligned pieces cut from
     * big chunks, freed all at once by tlm_cep_destroy; its free lists: nodes, and events
     * by size class (64-byte steps) */
    void *chunks;                 /* list through each chunk's first word */
    char *apos, *aend;
    long long arena_bytes;
    struct node *free_nodes;
    struct tlm_cep_event *free_ev[32];
    /* loading */
    struct tlm_cep_event **loaded;
    size_t nloaded;
    /* counters */
    long long nnodes, nbuffered, nevents, evbytes, matches, timeouts, cond_errors;
};

/* ---- small pieces ------------------------------------------------------------------ */

const char *tlm_cep_event_line(const struct tlm_cep_event *e, size_t *len)
{
    *len = e->len;
    return ev_line(e);
}

tlm_time_t tlm_cep_event_time(const struct tlm_cep_event *e) { return e->ts; }

json_t *tlm_cep_event_json(struct tlm_cep_event *e)
{
    if (!e->json)
        e->json = json_loadb(ev_line(e), e->len, 0, NULL);
    return e->json;
}

/* Chunks of 2 MiB at 2 MiB boundaries, which the kernel may back with one huge page each
 * (asked for where madvise has MADV_HUGEPAGE): per-key state is reached at random, and
 * with 4 KiB pages most of those reaches also miss the TLB. */
#define ARENA_CHUNK (1u << 21)

static void *big_alloc(size_t sz)
{
    void *p = aligned_alloc(ARENA_CHUNK, (sz + ARENA_CHUNK - 1) & ~(size_t)(ARENA_CHUNK - 1));
#ifdef MADV_HUGEPAGE
    if (p)
        madvise(p, sz, MADV_HUGEPAGE);
#endif
    return p;
}

/* sz bytes (sz <= ARENA_CHUNK - 64) at a 64-byte boundary, or NULL. */
static void *arena_alloc(struct tlm_cep *c, size_t sz)
{
    sz = (sz + 63) & ~(size_t)63;
    if (!c->apos || (size_t)(c->aend - c->apos) < sz) {
        char *ch = big_alloc(ARENA_CHUNK);
        if (!ch)
            return NULL;
        *(void **)ch = c->chunks;
        c->chunks = ch;
        c->apos = ch + 64;
        c->aend = ch + ARENA_CHUNK;
        c->arena_bytes += ARENA_CHUNK;
    }
    void *p = c->apos;
    c->apos += sz;
    return p;
}

/* Size class of an event allocation of sz bytes (its size in 64-byte lines), or -1 for
 * a big one (malloc'd). */
static int ev_class(size_t sz)
{
    size_t k = (sz + 63) / 64;
    return k < 32 ? (int)k : -1;
}

static size_t ev_size(const struct tlm_cep_event *e)
{
    return sizeof(*e) + (size_t)e->nmask * 8 + e->len + 1;
}

static void ev_release(struct tlm_cep *c, struct tlm_cep_event *e)
{
    if (--e->refs > 0)
        return;
    size_t sz = ev_size(e);
    int k = ev_class(sz);
    c->nevents--;
    c->evbytes -= k < 0 ? (long long)sz : (long long)k * 64;
    json_decref(e->json);
    if (k < 0) {
        free(e);
        return;
    }
    e->key = (struct key *)c->free_ev[k]; /* the free list runs through key */
    c->free_ev[k] = e;
}

static struct node *node_alloc(struct tlm_cep *c)
{
    struct node *n = c->free_nodes;
    if (n) {
        c->free_nodes = n->parent;
        return n;
    }
    /* a line's worth at a time: the first is returned, the others go to the free list */
    n = arena_alloc(c, 64);
    if (!n)
        return NULL;
    for (size_t i = 1; i < 64 / sizeof(*n); i++) {
        n[i].parent = c->free_nodes;
        c->free_nodes = &n[i];
    }
    return n;
}

static void node_release(struct tlm_cep *c, struct node *n)
{
    while (n && --n->refs == 0) {
        struct node *p = n->parent;
        ev_release(c, n->ev);
        n->parent = c->free_nodes;
        c->free_nodes = n;
        c->nnodes--;
        n = p;
    }
}

static __attribute__((noinline)) int vreserve(struct csvec *v, size_t want)
{
    if (want <= v->cap)
        return 0;
    size_t nc = v->cap ? v->cap * 2 : 4;
    while (nc < want)
        nc *= 2;
    struct cs *n = v->heap ? realloc(v->v, nc * sizeof(*n)) : malloc(nc * sizeof(*n));
    if (!n)
        return TLM_ENOMEM;
    if (!v->heap && v->n)
        memcpy(n, v->v, v->n * sizeof(*n));
    v->v = n;
    v->cap = nc;
    v->heap = 1;
    return 0;
}

static inline __attribute__((always_inline)) int vpush(struct csvec *v, const struct cs *s)
{
    if (__builtin_expect(v->n == v->cap, 0) && vreserve(v, v->n + 1))
        return TLM_ENOMEM;
    v->v[v->n++] = *s;
    return 0;
}

static void vfree(struct csvec *v)
{
    if (v->heap)
        free(v->v);
}

/* Flink's COMPUTATION_STATE_COMPARATOR: by start event (time, arrival), start state last. */
static int cs_cmp(const struct cs *a, const struct cs *b)
{
    tlm_time_t at = a->has_start ? a->start_ts : TLM_TIME_MAX;
    tlm_time_t bt = b->has_start ? b->start_ts : TLM_TIME_MAX;
    unsigned long long as = a->has_start ? a->start_seq : ~0ULL;
    unsigned long long bs = b->has_start ? b->start_seq : ~0ULL;
    if (at != bt)
        return at < bt ? -1 : 1;
    return as < bs ? -1 : as > bs;
}

/* Stable insertion sort (lists are short and nearly sorted). */
static void vsort(struct csvec *v)
{
    for (size_t i = 1; i < v->n; i++) {
        struct cs t = v->v[i];
        size_t j = i;
        while (j > 0 && cs_cmp(&v->v[j - 1], &t) > 0) {
            v->v[j] = v->v[j - 1];
            j--;
        }
        v->v[j] = t;
    }
}

static int ev_cmp(const struct tlm_cep_event *a, const struct tlm_cep_event *b)
{
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33; /* finalizer (murmur3's fmix64): spread the low bits the table uses */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* ---- the engine object -------------------------------------------------------------- */

struct tlm_cep *tlm_cep_create(void)
{
    return calloc(1, sizeof(struct tlm_cep));
}

static void nfa_free(struct tlm_cep *c, struct nfa *f)
{
    for (size_t i = 0; i < f->pm.n; i++)
        node_release(c, f->pm.v[i].chain);
    for (size_t i = 0; i < f->done.n; i++)
        node_release(c, f->done.v[i].chain);
    vfree(&f->pm);
    vfree(&f->done);
    f->pm.n = f->done.n = 0;
    f->pm.heap = f->done.heap = 0;
}

static void key_free(struct tlm_cep *c, struct key *k)
{
    if (k->has_nfa)
        for (size_t p = 0; p < k->ninl; p++)
            nfa_free(c, &key_nfa(k)[p]);
    for (size_t p = 0; p < k->nmore; p++)
        nfa_free(c, &k->more[p]);
    free(k->more);
    if (k->heap)
        free(k); /* else the block is the arena's */
}

static void drop_loaded(struct tlm_cep *c);

void tlm_cep_destroy(struct tlm_cep *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->tcap; i++) {
        if (i + 8 < c->tcap && c->tab[i + 8].k) {
            __builtin_prefetch(c->tab[i + 8].k);
            __builtin_prefetch((const char *)c->tab[i + 8].k + 64);
            __builtin_prefetch((const char *)c->tab[i + 8].k + 128);
        }
        if (c->tab[i].k)
            key_free(c, c->tab[i].k);
    }
    for (size_t i = 0; i < c->nheap; i++)
        ev_release(c, c->heap[i].e);
    for (size_t i = 0; i < c->rcount; i++)
        ev_release(c, c->ring[(c->rhead + i) & (c->rcap - 1)].e);
    free(c->ring);
    drop_loaded(c);
    for (size_t i = 0; i < c->npat; i++)
        tlm_cep_pattern_destroy(c->pat[i]);
    for (size_t i = 0; i < c->npaths; i++) {
        for (size_t k = 0; k < c->paths[i].nseg; k++)
            free(c->paths[i].seg[k]);
        free(c->paths[i].seg);
    }
    for (void *ch = c->chunks, *nx; ch; ch = nx) {
        nx = *(void **)ch;
        free(ch);
    }
    free(c->paths);
    free(c->pat);
    free(c->tab);
    free(c->heap);
    free(c->timers);
    vfree(&c->res);
    vfree(&c->np);
    vfree(&c->pm);
    free(c->cnt);
    free(c->evs);
    free(c->evpool);
    free(c);
}

int tlm_cep_add(struct tlm_cep *c, struct tlm_cep_pattern *p, struct tlm_error *err)
{
    for (size_t i = 0; i < c->npat; i++)
        if (c->pat[i] && strcmp(c->pat[i]->id, p->id) == 0) {
            tlm_error_set(err, TLM_EINVAL, "two patterns have the id '%s'", p->id);
            tlm_cep_pattern_destroy(p);
            return TLM_EINVAL;
        }
    struct tlm_cep_pattern **n = realloc(c->pat, (c->npat + 1) * sizeof(*n));
    if (!n) {
        tlm_cep_pattern_destroy(p);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    c->pat = n;
    c->pat[c->npat++] = p;
    if (p->within)
        c->any_within = 1;
    return 0;
}

size_t tlm_cep_count(const struct tlm_cep *c) { return c->npat; }

static struct nfa *nfa_of(struct tlm_cep *c, struct key *k, size_t p, int create);

int tlm_cep_remove(struct tlm_cep *c, const char *id, struct tlm_error *err)
{
    size_t p;
    for (p = 0; p < c->npat && !(c->pat[p] && strcmp(c->pat[p]->id, id) == 0); p++)
        ;
    if (p == c->npat)
        return tlm_error_set(err, TLM_ENOTFOUND, "no pattern has the id '%s'", id);
    for (size_t i = 0; i < c->tcap; i++) {
        struct key *k = c->tab[i].k;
        struct nfa *f = k ? nfa_of(c, k, p, 0) : NULL;
        if (f)
            nfa_free(c, f);
    }
    tlm_cep_pattern_destroy(c->pat[p]);
    c->pat[p] = NULL;
    return 0;
}
const struct tlm_cep_pattern *tlm_cep_get(const struct tlm_cep *c, size_t i) { return c->pat[i]; }

static int path_eq(const struct tlm_path *a, const struct tlm_path *b)
{
    if (a->nseg != b->nseg)
        return 0;
    for (size_t i = 0; i < a->nseg; i++)
        if (strcmp(a->seg[i], b->seg[i]))
            return 0;
    return 1;
}

/* Index of path q in the engine's list, added if new; -1 on ENOMEM. */
static long path_add(struct tlm_cep *c, const struct tlm_path *q)
{
    for (size_t i = 0; i < c->npaths; i++)
        if (path_eq(&c->paths[i], q))
            return (long)i;
    struct tlm_path *n = realloc(c->paths, (c->npaths + 1) * sizeof(*n));
    if (!n)
        return -1;
    c->paths = n;
    struct tlm_path *d = &c->paths[c->npaths];
    d->nseg = q->nseg;
    d->seg = calloc(q->nseg, sizeof(char *));
    if (!d->seg)
        return -1;
    for (size_t k = 0; k < q->nseg; k++)
        if (!(d->seg[k] = strdup(q->seg[k])))
            return -1;
    return (long)c->npaths++;
}

size_t tlm_cep_paths(struct tlm_cep *c, const struct tlm_path **paths)
{
    if (!c->paths_done) {
        c->paths_done = 1;
        c->paths_npat = c->npat;
        for (size_t p = 0; p < c->npat; p++)
            for (size_t i = 0; c->pat[p] && i < c->pat[p]->n; i++) {
                struct cep_stage *s = &c->pat[p]->st[i];
                if (s->iterative)
                    continue;
                if (s->fast.ok) {
                    long k = path_add(c, &s->fast.p);
                    s->fast.path = k < 0 ? 0 : (size_t)k;
                    continue;
                }
                if (s->npaths < 0)
                    c->whole = 1;
                for (long j = 0; j < s->npaths; j++)
                    path_add(c, &s->paths[j]);
            }
    }
    *paths = c->paths;
    return c->npaths;
}

/* ---- conditions -------------------------------------------------------------------- */

/* The fast form on a scanned value: 1 true, 0 false. */
static int fast_test(const struct cep_fast *f, const struct tlm_jval *v)
{
    int cmp;
    if (v->type == TLM_JNONE)
        return f->op == 1;
    if (f->is_str) {
        if (v->type != TLM_JSTRING)
            return f->op == 1;
        const char *s = v->p + 1;
        size_t n = v->n - 2;
        struct tlm_buf b = TLM_BUF_INIT;
        if (v->escaped) {
            if (tlm_jval_string(v, &b))
                return 0;
            s = b.data;
            n = b.len;
        }
        size_t m = n < f->slen ? n : f->slen;
        cmp = memcmp(s, f->str, m);
        if (cmp == 0)
            cmp = n < f->slen ? -1 : n > f->slen;
        if (v->escaped)
            tlm_buf_free(&b);
    } else {
        double d;
        if (v->type != TLM_JINT && v->type != TLM_JREAL)
            return f->op == 1;
        if (tlm_jval_double(v, &d))
            return 0;
        cmp = d < f->num ? -1 : d > f->num;
    }
    switch (f->op) {
    case 0: return cmp == 0;
    case 1: return cmp != 0;
    case 2: return cmp < 0;
    case 3: return cmp <= 0;
    case 4: return cmp > 0;
    default: return cmp >= 0;
    }
}


/* Evaluates the non-iterative conditions of every pattern into e->masks. vals may be NULL
 * (the event is parsed). */
static int compute_masks(struct tlm_cep *c, struct tlm_cep_event *e, const struct tlm_jval *vals,
                         struct tlm_error *err)
{
    json_t *obj = NULL;
    int rc = 0;
    for (size_t p = 0; p < c->npat && rc == 0; p++) {
        const struct tlm_cep_pattern *pat = c->pat[p];
        uint64_t m = 0;
        int late = p >= c->paths_npat; /* added after the paths were chosen */
        if (!pat) {
            ev_masks(e)[p] = 0;
            continue;
        }
        if (late && vals && !obj && !(obj = json_incref(tlm_cep_event_json(e))))
            return tlm_error_set(err, TLM_EPARSE, "not a JSON object");
        for (size_t i = 0; i < pat->n; i++) {
            const struct cep_stage *s = &pat->st[i];
            int r;
            if (s->iterative)
                continue;
            if (s->fast.ok && vals && !late) {
                r = fast_test(&s->fast, &vals[s->fast.path]);
            } else {
                if (!obj) {
                    if (!vals || c->whole) {
                        obj = json_incref(tlm_cep_event_json(e));
                        if (!obj) {
                            rc = tlm_error_set(err, TLM_EPARSE, "not a JSON object");
                            break;
                        }
                    } else {
                        obj = json_object();
                        for (size_t k = 0; obj && k < c->npaths; k++)
                            if (vals[k].type != TLM_JNONE && tlm_jval_put_path(obj, &c->paths[k], &vals[k])) {
                                json_decref(obj);
                                obj = NULL;
                            }
                        if (!obj) {
                            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
                            break;
                        }
                    }
                }
                r = tlm_expr_test(s->expr, obj, NULL, err);
                if (r < 0) {
                    char t[TLM_ERROR_TEXT];
                    snprintf(t, sizeof(t), "%.400s", err->text);
                    rc = tlm_error_set(err, r, "pattern %.40s, stage %.40s: %s", pat->id, s->name, t);
                    break;
                }
            }
            if (r)
                m |= 1ULL << i;
        }
        ev_masks(e)[p] = m;
    }
    json_decref(obj);
    return rc;
}

/* Per partial match and event: the iterative conditions' values and their bindings. */
struct ictx {
    struct tlm_cep *c;
    const struct tlm_cep_pattern *pat;
    size_t pidx;
    const struct cs *cs;
    struct tlm_cep_event *ev;
    signed char memo[CEP_MAX_STAGES];
    signed char umemo[CEP_MAX_STAGES];
    int bound;
    json_t *vals[CEP_MAX_STAGES + 1];
};

static void ictx_init(struct ictx *x, struct tlm_cep *c, size_t pidx, const struct cs *cs,
                      struct tlm_cep_event *ev)
{
    x->c = c;
    x->pat = c->pat[pidx];
    x->pidx = pidx;
    x->cs = cs;
    x->ev = ev;
    x->bound = 0;
    memset(x->memo, -1, x->pat->n);
    memset(x->umemo, -1, x->pat->n);
}

static void ictx_done(struct ictx *x)
{
    if (!x->bound)
        return;
    for (size_t i = 0; i <= x->pat->n; i++)
        json_decref(x->vals[i]);
    x->bound = 0;
}

/* Bindings of a chain: stage objects (the latest event of a singleton stage), arrays for
 * looping stages (in order), prev = the newest event. */
static int bind_chain(const struct tlm_cep_pattern *pat, struct node *chain, json_t **vals)
{
    for (size_t i = 0; i <= pat->n; i++)
        if (!(vals[i] = i < pat->n && pat->loops[i] ? json_array() : NULL) && i < pat->n &&
            pat->loops[i])
            return TLM_ENOMEM;
    for (struct node *n = chain; n; n = n->parent) {
        json_t *j = tlm_cep_event_json(n->ev);
        if (!j)
            continue;
        if (n == chain)
            vals[pat->n] = json_incref(j);
        if (pat->loops[n->stage]) {
            json_array_insert(vals[n->stage], 0, j);
        } else if (!vals[n->stage]) {
            vals[n->stage] = json_incref(j);
        }
    }
    return 0;
}

/* expr on the event, with the stages matched so far (and prev) bound: 1 or 0; an
 * evaluation error counts in cond_errors and is 0; -1 when the bindings cannot be made
 * (out of memory: the caller answers 0 without remembering it). */
static int test_bound(struct ictx *x, const struct tlm_expr *expr)
{
    if (!x->bound) {
        if (bind_chain(x->pat, x->cs->chain, x->vals))
            return -1;
        x->bound = 1;
    }
    const char *names[CEP_MAX_STAGES + 1];
    for (size_t k = 0; k < x->pat->n; k++)
        names[k] = x->pat->st[k].name;
    names[x->pat->n] = "prev";
    struct tlm_expr_env env = { x->pat->n + 1, names, x->vals };
    struct tlm_error e;
    int r = tlm_expr_test(expr, tlm_cep_event_json(x->ev), &env, &e);
    if (r < 0) {
        x->c->cond_errors++;
        r = 0;
    }
    return r;
}

static int stage_holds(struct ictx *x, int i)
{
    const struct cep_stage *s = &x->pat->st[i];
    if (!s->iterative && x->pidx < x->ev->nmask)
        return (int)((ev_masks(x->ev)[x->pidx] >> i) & 1);
    if (x->memo[i] >= 0)
        return x->memo[i];
    if (!s->iterative) { /* an event pushed before its pattern was added */
        struct tlm_error e;
        int r = tlm_expr_test(s->expr, tlm_cep_event_json(x->ev), NULL, &e);
        if (r < 0)
            x->c->cond_errors++;
        x->memo[i] = (signed char)(r > 0);
        return r > 0;
    }
    int r = test_bound(x, s->expr);
    if (r < 0)
        return 0;
    x->memo[i] = (signed char)r;
    return r;
}

/* A looping stage's until condition on the event, with the partial match's bindings. */
static int until_holds(struct ictx *x, int i)
{
    if (x->umemo[i] >= 0)
        return x->umemo[i];
    int r = test_bound(x, x->pat->st[i].until);
    if (r < 0)
        return 0;
    x->umemo[i] = (signed char)r;
    return r;
}

static int cond_eval(struct ictx *x, int ci)
{
    const struct cep_cond *k = &x->pat->c[ci];
    switch (k->kind) {
    case CC_TRUE: return 1;
    case CC_STAGE: return stage_holds(x, k->a);
    case CC_NOT: return !cond_eval(x, k->a);
    case CC_OR: return cond_eval(x, k->a) || cond_eval(x, k->b);
    case CC_UNTIL: return until_holds(x, k->a);
    default: return cond_eval(x, k->a) && cond_eval(x, k->b);
    }
}

/* ---- emitting ---------------------------------------------------------------------- */

static int emit_chain(struct tlm_cep *c, size_t pidx, struct key *key, struct node *chain,
                      int timeout, tlm_time_t ts, const struct tlm_cep_sink *sink,
                      struct tlm_error *err)
{
    const struct tlm_cep_pattern *pat = c->pat[pidx];
    size_t total = 0;
    if (!c->cnt) {
        c->cnt = calloc(CEP_MAX_STAGES, sizeof(size_t));
        c->evs = calloc(CEP_MAX_STAGES, sizeof(*c->evs));
        if (!c->cnt || !c->evs)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    memset(c->cnt, 0, pat->n * sizeof(size_t));
    for (struct node *n = chain; n; n = n->parent) {
        c->cnt[n->stage]++;
        total++;
    }
    if (total > c->evpool_cap) {
        struct tlm_cep_event **np = realloc(c->evpool, total * 2 * sizeof(*np));
        if (!np)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        c->evpool = np;
        c->evpool_cap = total * 2;
    }
    size_t at = 0;
    for (size_t i = 0; i < pat->n; i++) {
        c->evs[i] = c->evpool + at;
        at += c->cnt[i];
    }
    size_t fill[CEP_MAX_STAGES];
    memcpy(fill, c->cnt, pat->n * sizeof(size_t));
    for (struct node *n = chain; n; n = n->parent)
        c->evs[n->stage][--fill[n->stage]] = n->ev;
    struct tlm_cep_match m = {
        .pattern = pat, .key = key->k, .keylen = key->klen, .timeout = timeout,
        .ts = timeout ? ts : (chain ? chain->ev->ts : ts), .nstages = pat->n,
        .count = c->cnt, .events = c->evs,
    };
    if (timeout)
        c->timeouts++;
    else
        c->matches++;
    return sink && sink->emit ? sink->emit(sink->arg, &m, err) : 0;
}

int tlm_cep_match_bindings(const struct tlm_cep_match *m, json_t **values)
{
    for (size_t i = 0; i < m->nstages; i++) {
        values[i] = NULL;
        if (!m->count[i] && !tlm_cep_pattern_stage_loops(m->pattern, i))
            continue;
        if (tlm_cep_pattern_stage_loops(m->pattern, i)) {
            values[i] = json_array();
            for (size_t k = 0; values[i] && k < m->count[i]; k++)
                json_array_append(values[i], tlm_cep_event_json(m->events[i][k]));
        } else {
            values[i] = json_incref(tlm_cep_event_json(m->events[i][m->count[i] - 1]));
        }
    }
    values[m->nstages] = json_loadb(m->key, m->keylen, JSON_DECODE_ANY, NULL);
    return 0;
}

/* ---- skip strategies ---------------------------------------------------------------- */

/* The pruning event of a match (time, arrival), or 0 when nothing is pruned. */
static int pruning_id(const struct tlm_cep_pattern *pat, struct node *chain, tlm_time_t *ts,
                      unsigned long long *seq)
{
    struct tlm_cep_event *best = NULL;
    for (struct node *n = chain; n; n = n->parent) {
        struct tlm_cep_event *e = n->ev;
        switch (pat->skip) {
        case CEP_SKIP_NEXT: /* the match's first event */
            if (!best || ev_cmp(e, best) < 0)
                best = e;
            break;
        case CEP_SKIP_PAST_LAST:
            if (!best || ev_cmp(e, best) > 0)
                best = e;
            break;
        case CEP_SKIP_FIRST: /* chains run newest first: the last one seen is the first */
            if (n->stage == pat->skip_stage)
                best = e;
            break;
        case CEP_SKIP_LAST:
            if (n->stage == pat->skip_stage && !best)
                best = e;
            break;
        default: return 0;
        }
    }
    if (!best)
        return 0;
    *ts = best->ts;
    *seq = best->seq;
    return 1;
}

static void prune(struct tlm_cep *c, const struct tlm_cep_pattern *pat, struct csvec *v,
                  tlm_time_t ts, unsigned long long seq)
{
    int strict = pat->skip == CEP_SKIP_FIRST || pat->skip == CEP_SKIP_LAST;
    size_t o = 0;
    for (size_t i = 0; i < v->n; i++) {
        struct cs *s = &v->v[i];
        int cmp = 1;
        if (s->has_start)
            cmp = s->start_ts != ts ? (s->start_ts < ts ? -1 : 1)
                                    : (s->start_seq < seq ? -1 : s->start_seq > seq);
        if (s->has_start && (strict ? cmp < 0 : cmp <= 0)) {
            node_release(c, s->chain);
            continue;
        }
        v->v[o++] = *s;
    }
    v->n = o;
}

/* Flink's processMatchesAccordingToSkipStrategy: completed matches wait in nfa->done until
 * no partial match started earlier; each emitted match prunes both lists. */
static int process_skip(struct tlm_cep *c, size_t pidx, struct key *key, struct nfa *nfa,
                        struct csvec *potential, struct csvec *partial,
                        const struct tlm_cep_sink *sink, struct tlm_error *err)
{
    const struct tlm_cep_pattern *pat = c->pat[pidx];
    for (size_t i = 0; i < potential->n; i++)
        if (vpush(&nfa->done, &potential->v[i]))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    potential->n = 0;
    vsort(&nfa->done);
    while (nfa->done.n) {
        const struct cs *earliest = partial->n ? &partial->v[0] : NULL;
        if (earliest && cs_cmp(&nfa->done.v[0], earliest) > 0)
            break;
        struct cs m = nfa->done.v[0];
        memmove(nfa->done.v, nfa->done.v + 1, (nfa->done.n - 1) * sizeof(struct cs));
        nfa->done.n--;
        tlm_time_t ts;
        unsigned long long seq;
        if (pruning_id(pat, m.chain, &ts, &seq)) {
            prune(c, pat, partial, ts, seq);
            prune(c, pat, &nfa->done, ts, seq);
        }
        int rc = emit_chain(c, pidx, key, m.chain, 0, 0, sink, err);
        node_release(c, m.chain);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- the NFA step ------------------------------------------------------------------- */

struct dedge { int action, target, source; };

static void nfa_init(struct nfa *f, const struct tlm_cep_pattern *pat, int inline_ok)
{
    memset(f, 0, sizeof(*f));
    if (!pat)
        return;
    if (inline_ok) {
        f->pm.v = f->inl;
        f->pm.cap = CEP_INLINE;
    }
    struct cs s = { pat->start, 0, NULL, NULL, 0, 0 };
    if (inline_ok)
        f->pm.v[f->pm.n++] = s;
    else
        vpush(&f->pm, &s); /* on failure the slot stays empty: checked by the caller */
}

/* The state of pattern slot p for key k: NULL when the slot is empty (a removed pattern),
 * or, with create unset, when the key has no state for it yet; NULL on ENOMEM too. The
 * slots that existed when the key was made live in its block (an inline array of
 * partial matches each); later ones in k->more, with their arrays on the heap. */
static struct nfa *nfa_of(struct tlm_cep *c, struct key *k, size_t p, int create)
{
    if (!c->pat[p])
        return NULL;
    if (!k->has_nfa) {
        if (!create)
            return NULL;
        k->has_nfa = 1;
        for (size_t i = 0; i < k->ninl; i++)
            nfa_init(&key_nfa(k)[i], c->pat[i], 1);
    }
    if (p < k->ninl)
        return &key_nfa(k)[p];
    size_t i = p - k->ninl;
    if (i >= k->nmore) {
        if (!create)
            return NULL;
        struct nfa *m = realloc(k->more, (i + 1) * sizeof(*m));
        if (!m)
            return NULL;
        for (size_t j = k->nmore; j <= i; j++)
            memset(&m[j], 0, sizeof(m[j]));
        k->more = m;
        k->nmore = (uint32_t)(i + 1);
    }
    struct nfa *f = &k->more[i];
    if (!f->pm.v) {
        if (!create)
            return NULL;
        nfa_init(f, c->pat[p], 0);
        if (!f->pm.v)
            return NULL;
    }
    return f;
}

/* Appends a computation state holding a reference to chain: a new one, or with *moved
 * unset, the reference of the state it comes from (which then must not drop it; this
 * spares touching the reference count of an old, cold node). moved may be NULL. */
static int add_state(struct csvec *out, int state, struct node *chain,
                     struct tlm_cep_event *head, int has_start, tlm_time_t start_ts,
                     unsigned long long start_seq, int *moved)
{
    struct cs s = { state, has_start, chain, head, start_ts, start_seq };
    if (moved && !*moved)
        *moved = 1;
    else if (chain)
        chain->refs++;
    return vpush(out, &s);
}

/* Flink's findFinalStateAfterProceed. */
static int final_after_proceed(struct ictx *x, int state)
{
    int stack[256], n = 0;
    stack[n++] = state;
    while (n) {
        const struct cep_state *s = &x->pat->s[stack[--n]];
        for (int i = 0; i < s->ne; i++) {
            const struct cep_edge *e = &s->e[i];
            if (e->action != CEP_PROCEED || !cond_eval(x, e->cond))
                continue;
            if (x->pat->s[e->target].type == CEP_FINAL)
                return e->target;
            if (n < 256)
                stack[n++] = e->target;
        }
    }
    return -1;
}

/* Flink's computeNextStates: appends the successors of cs on ev to out. *moved is set
 * when one of them took over cs's reference to its chain. */
static int next_states(struct tlm_cep *c, size_t pidx, const struct cs *cs,
                       struct tlm_cep_event *ev, struct csvec *out, int *moved)
{
    const struct tlm_cep_pattern *pat = c->pat[pidx];
    struct ictx x;
    struct dedge edges[256];
    int ne = 0, stack[256], ns = 0, rc = 0;
    int is_start = cs->state == pat->start;
    ictx_init(&x, c, pidx, cs, ev);
    stack[ns++] = cs->state;
    while (ns) {
        int si = stack[--ns];
        const struct cep_state *s = &pat->s[si];
        for (int i = 0; i < s->ne; i++) {
            const struct cep_edge *e = &s->e[i];
            if (!cond_eval(&x, e->cond))
                continue;
            if (e->action == CEP_PROCEED) {
                if (ns < 256)
                    stack[ns++] = e->target;
            } else if (ne < 256) {
                edges[ne++] = (struct dedge){ e->action, e->target, si };
            }
        }
    }
    for (int i = 0; i < ne && rc == 0; i++) {
        if (edges[i].action == CEP_IGNORE) {
            if (!is_start)
                rc = add_state(out, edges[i].target, cs->chain, cs->head, cs->has_start, cs->start_ts,
                               cs->start_seq, moved);
            continue;
        }
        struct node *n = node_alloc(c);
        if (!n) {
            rc = TLM_ENOMEM;
            break;
        }
        n->parent = cs->chain;
        if (!*moved)
            *moved = 1;
        else if (n->parent)
            n->parent->refs++;
        n->ev = ev;
        ev->refs++;
        n->refs = 0;
        n->stage = pat->s[edges[i].source].stage;
        c->nnodes++;
        tlm_time_t st = is_start ? ev->ts : cs->start_ts;
        unsigned long long sq = is_start ? ev->seq : cs->start_seq;
        rc = add_state(out, edges[i].target, n, ev, 1, st, sq, NULL);
        int f = rc ? -1 : final_after_proceed(&x, edges[i].target);
        if (f >= 0)
            rc = add_state(out, f, n, ev, 1, st, sq, NULL);
    }
    if (is_start && rc == 0)
        rc = add_state(out, pat->start, NULL, NULL, 0, 0, 0, NULL);
    ictx_done(&x);
    return rc;
}

/* Two branches that reach the final state with the same events in the same stages are one
 * match (Flink's shared buffer yields it once; e.g. a greedy loop's ignore state and the
 * stage after it both waiting for the last stage). Keeps the first. */
static int same_chain(const struct node *a, const struct node *b)
{
    for (; a && b; a = a->parent, b = b->parent)
        if (a == b)
            return 1;
        else if (a->ev != b->ev || a->stage != b->stage)
            return 0;
    return a == b;
}

static void dedup(struct tlm_cep *c, struct csvec *v)
{
    size_t o = 0;
    for (size_t i = 0; i < v->n; i++) {
        size_t k;
        for (k = 0; k < o && !same_chain(v->v[k].chain, v->v[i].chain); k++)
            ;
        if (k < o) {
            node_release(c, v->v[i].chain);
            continue;
        }
        v->v[o++] = v->v[i];
    }
    v->n = o;
}

/* NFA.doProcess for one pattern of a key. */
static int process(struct tlm_cep *c, size_t pidx, struct key *key, struct tlm_cep_event *ev,
                   const struct tlm_cep_sink *sink, struct tlm_error *err)
{
    const struct tlm_cep_pattern *pat = c->pat[pidx];
    struct nfa *nfa = nfa_of(c, key, pidx, 1);
    struct csvec np, pm;
    if (!nfa)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    int rc = 0;
    c->np.n = 0;
    c->pm.n = 0;
    np = c->np;
    pm = c->pm;
    for (size_t i = 0; i < nfa->pm.n && rc == 0; i++) {
        struct cs *cs = &nfa->pm.v[i];
        int moved = 0;
        c->res.n = 0;
        rc = next_states(c, pidx, cs, ev, &c->res, &moved);
        int discard = 0;
        for (size_t k = 0; k < c->res.n; k++)
            if (pat->s[c->res.v[k].state].type == CEP_STOP)
                discard = 1;
        for (size_t k = 0; k < c->res.n && rc == 0; k++) {
            struct cs *r = &c->res.v[k];
            int type = pat->s[r->state].type;
            if (type == CEP_FINAL)
                rc = vpush(&pm, r);
            else if (type == CEP_STOP || discard) {
                node_release(c, r->chain);
            } else
                rc = vpush(&np, r);
        }
        if (!moved)
            node_release(c, cs->chain);
    }
    c->np = np;
    c->pm = pm;
    if (rc)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    vsort(&c->np);
    /* copy the new partial matches in */
    if (c->np.n > nfa->pm.cap && vreserve(&nfa->pm, c->np.n))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (c->np.n)
        memcpy(nfa->pm.v, c->np.v, c->np.n * sizeof(struct cs));
    nfa->pm.n = c->np.n;
    c->np.n = 0;
    dedup(c, &c->pm);
    if (pat->skip == CEP_NO_SKIP) {
        vsort(&c->pm);
        for (size_t i = 0; i < c->pm.n; i++) {
            if (rc == 0)
                rc = emit_chain(c, pidx, key, c->pm.v[i].chain, 0, 0, sink, err);
            node_release(c, c->pm.v[i].chain);
        }
        c->pm.n = 0;
        return rc;
    }
    return process_skip(c, pidx, key, nfa, &c->pm, &nfa->pm, sink, err);
}

/* NFA.advanceTime for one key: expires partial matches `within` after their start. */
static int advance_key(struct tlm_cep *c, struct key *key, tlm_time_t t,
                       const struct tlm_cep_sink *sink, struct tlm_error *err)
{
    int rc = 0;
    for (size_t p = 0; p < c->npat && rc == 0; p++) {
        const struct tlm_cep_pattern *pat = c->pat[p];
        struct nfa *nfa = nfa_of(c, key, p, 0);
        if (!nfa || !pat->within)
            continue;
        c->pm.n = 0;
        size_t o = 0;
        int changed = 0;
        for (size_t i = 0; i < nfa->pm.n; i++) {
            struct cs s = nfa->pm.v[i];
            if (s.has_start && t - s.start_ts >= pat->within) {
                changed = 1;
                tlm_time_t at = s.start_ts > TLM_TIME_MAX - pat->within ? TLM_TIME_MAX
                                                                         : s.start_ts + pat->within;
                if (pat->s[s.state].type == CEP_PENDING) {
                    if (vpush(&c->pm, &s))
                        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
                    continue;
                }
                if (rc == 0)
                    rc = emit_chain(c, p, key, s.chain, 1, at, sink, err);
                node_release(c, s.chain);
                continue;
            }
            nfa->pm.v[o++] = s;
        }
        nfa->pm.n = o;
        if (rc == 0 && (changed || nfa->done.n))
            rc = process_skip(c, p, key, nfa, &c->pm, &nfa->pm, sink, err);
    }
    return rc;
}

/* ---- keys, the event heap and timers ------------------------------------------------ */

static struct key *key_get(struct tlm_cep *c, const char *k, size_t n, int create)
{
    uint64_t h = hash_bytes(k, n);
    if (c->tcap) {
        for (size_t i = h & (c->tcap - 1);; i = (i + 1) & (c->tcap - 1)) {
            struct slot *e = &c->tab[i];
            if (!e->k)
                break;
            if (e->hash == h && e->k->klen == n && memcmp(e->k->k, k, n) == 0)
                return e->k;
        }
    }
    if (!create)
        return NULL;
    if ((c->nkeys + 1) * 2 > c->tcap) {
        size_t nc = c->tcap ? c->tcap * 2 : 1024;
        /* a big table in huge pages too */
        struct slot *t = nc * sizeof(*t) >= ARENA_CHUNK ? big_alloc(nc * sizeof(*t))
                                                        : malloc(nc * sizeof(*t));
        if (!t)
            return NULL;
        memset(t, 0, nc * sizeof(*t));
        for (size_t i = 0; i < c->tcap; i++)
            if (c->tab[i].k) {
                size_t j = c->tab[i].hash & (nc - 1);
                while (t[j].k)
                    j = (j + 1) & (nc - 1);
                t[j] = c->tab[i];
            }
        free(c->tab);
        c->tab = t;
        c->tcap = nc;
    }
    /* the key, its text, then (16-aligned) the state of each pattern */
    size_t sz = sizeof(struct key) + ((n + 1 + 15) & ~(size_t)15) + c->npat * sizeof(struct nfa);
    int big = n > UINT32_MAX - 32 || sz > ARENA_CHUNK / 4;
    struct key *e = big ? malloc(sz) : arena_alloc(c, sz);
    if (!e)
        return NULL;
    memcpy(e->k, k, n);
    e->k[n] = 0;
    e->klen = (uint32_t)n;
    e->heap = (uint16_t)big;
    e->has_nfa = 0;
    e->timer = TLM_TIME_MAX;
    e->more = NULL;
    e->ninl = (uint32_t)c->npat;
    e->nmore = 0;
    size_t j = h & (c->tcap - 1);
    while (c->tab[j].k)
        j = (j + 1) & (c->tcap - 1);
    c->tab[j].hash = h;
    c->tab[j].k = e;
    c->nkeys++;
    return e;
}

static int hent_cmp(const struct hent *a, const struct hent *b)
{
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int heap_push(struct tlm_cep *c, struct hent x)
{
    if (c->nheap == c->hcap) {
        size_t nc = c->hcap ? c->hcap * 2 : 1024;
        struct hent *h = realloc(c->heap, nc * sizeof(*h));
        if (!h)
            return TLM_ENOMEM;
        c->heap = h;
        c->hcap = nc;
    }
    size_t i = c->nheap++;
    while (i > 0 && hent_cmp(&x, &c->heap[(i - 1) / 2]) < 0) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = x;
    return 0;
}

static void heap_pop(struct tlm_cep *c)
{
    struct hent last = c->heap[--c->nheap];
    size_t i = 0, n = c->nheap;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && hent_cmp(&c->heap[l], &last) < 0)
            m = l;
        if (l + 1 < n && hent_cmp(&c->heap[l + 1], m == i ? &last : &c->heap[l]) < 0)
            m = l + 1;
        if (m == i)
            break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n)
        c->heap[i] = last;
}

/* Buffers an event: appended to the ring when it is not older than the ring's newest. */
static int buf_push(struct tlm_cep *c, struct tlm_cep_event *e)
{
    struct hent x = { e->ts, e->seq, e };
    if (c->rcount && hent_cmp(&x, &c->ring[(c->rhead + c->rcount - 1) & (c->rcap - 1)]) < 0)
        return heap_push(c, x);
    if (c->rcount == c->rcap) {
        size_t nc = c->rcap ? c->rcap * 2 : 1024;
        struct hent *r = malloc(nc * sizeof(*r));
        if (!r)
            return TLM_ENOMEM;
        for (size_t i = 0; i < c->rcount; i++)
            r[i] = c->ring[(c->rhead + i) & (c->rcap - 1)];
        free(c->ring);
        c->ring = r;
        c->rhead = 0;
        c->rcap = nc;
    }
    c->ring[(c->rhead + c->rcount++) & (c->rcap - 1)] = x;
    return 0;
}

/* The next buffered event in (time, arrival) order, or NULL; *from_ring says where. */
static const struct hent *buf_peek(const struct tlm_cep *c, int *from_ring)
{
    const struct hent *r = c->rcount ? &c->ring[c->rhead] : NULL;
    const struct hent *h = c->nheap ? &c->heap[0] : NULL;
    *from_ring = r && (!h || hent_cmp(r, h) < 0);
    return *from_ring ? r : h;
}

static void buf_pop(struct tlm_cep *c, int from_ring)
{
    if (from_ring) {
        c->rhead = (c->rhead + 1) & (c->rcap - 1);
        c->rcount--;
    } else {
        heap_pop(c);
    }
}

/* The i-th buffered event in no particular order (i < nheap + rcount). */
static struct tlm_cep_event *buf_at(const struct tlm_cep *c, size_t i)
{
    if (i < c->rcount)
        return c->ring[(c->rhead + i) & (c->rcap - 1)].e;
    return c->heap[i - c->rcount].e;
}

/* Timers by deadline, ties by key text: the order does not depend on the history of the
 * heap (a restored run fires equal deadlines in the same order as an uninterrupted one). */
static int tim_less(const struct timer *a, const struct timer *b)
{
    if (a->at != b->at)
        return a->at < b->at;
    size_t n = a->key->klen < b->key->klen ? a->key->klen : b->key->klen;
    int c = memcmp(a->key->k, b->key->k, n);
    return c ? c < 0 : a->key->klen < b->key->klen;
}

static int timer_push(struct tlm_cep *c, tlm_time_t at, struct key *k)
{
    if (c->ntim == c->tcap2) {
        size_t nc = c->tcap2 ? c->tcap2 * 2 : 1024;
        struct timer *t = realloc(c->timers, nc * sizeof(*t));
        if (!t)
            return TLM_ENOMEM;
        c->timers = t;
        c->tcap2 = nc;
    }
    struct timer x = { at, k };
    size_t i = c->ntim++;
    while (i > 0 && tim_less(&x, &c->timers[(i - 1) / 2])) {
        c->timers[i] = c->timers[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->timers[i] = x;
    return 0;
}

static struct timer timer_pop(struct tlm_cep *c)
{
    struct timer top = c->timers[0], last = c->timers[--c->ntim];
    size_t i = 0, n = c->ntim;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && tim_less(&c->timers[l], &last))
            m = l;
        if (l + 1 < n && tim_less(&c->timers[l + 1], m == i ? &last : &c->timers[l]))
            m = l + 1;
        if (m == i)
            break;
        c->timers[i] = c->timers[m];
        i = m;
    }
    if (n)
        c->timers[i] = last;
    return top;
}

/* Registers the key's earliest deadline (start + within of its oldest partial match).
 * A registered timer that is earlier than needed is kept (it fires, finds nothing due and
 * registers the next one), so a key pushes a timer only when its deadline moves earlier:
 * the timer heap holds about one entry per key. */
static int reschedule(struct tlm_cep *c, struct key *k)
{
    tlm_time_t d = TLM_TIME_MAX;
    if (!c->any_within)
        return 0;
    for (size_t p = 0; p < c->npat; p++) {
        const struct nfa *f = nfa_of(c, k, p, 0);
        int64_t w = f ? c->pat[p]->within : 0;
        if (!w)
            continue;
        const struct csvec *v = &f->pm;
        for (size_t i = 0; i < v->n; i++)
            if (v->v[i].has_start) {
                tlm_time_t at = v->v[i].start_ts > TLM_TIME_MAX - w ? TLM_TIME_MAX - 1
                                                                     : v->v[i].start_ts + w;
                if (at < d)
                    d = at;
            }
    }
    if (d >= k->timer)
        return 0;
    k->timer = d;
    return timer_push(c, d, k);
}

/* ---- read-ahead ---------------------------------------------------------------------- */

void tlm_cep_prefetch(struct tlm_cep *c, const char *key, size_t keylen, int pass,
                      struct tlm_cep_hint *hint)
{
    if (pass == 0) {
        hint->h = hash_bytes(key, keylen);
        hint->slot = c->tcap ? &c->tab[hint->h & (c->tcap - 1)] : NULL;
        if (hint->slot)
            __builtin_prefetch(hint->slot);
        return;
    }
    const struct slot *sl = hint->slot;
    if (!sl || !c->tcap || sl < c->tab || sl >= c->tab + c->tcap)
        return;
    if (pass == 1) {
        /* linear probing: the key may sit a few slots past its home (the same or the
         * next cache line); remember where it was found */
        for (int i = 0; i < 8 && sl->k; i++) {
            if (sl->hash == hint->h) {
                hint->slot = sl;
                __builtin_prefetch(sl->k);
                __builtin_prefetch((const char *)sl->k + 64);
                __builtin_prefetch((const char *)sl->k + 128);
                return;
            }
            sl = sl + 1 < c->tab + c->tcap ? sl + 1 : c->tab;
        }
        hint->slot = NULL;
    } else if (sl->k && sl->hash == hint->h && sl->k->has_nfa && sl->k->ninl) {
        /* the chain heads of the first partial matches (of the first pattern) and
         * their events (header and line), read when they complete; when the partial
         * matches are not in the key's block, their array first (pass 2) */
        const struct csvec *v = &key_nfa(sl->k)->pm;
        if (pass == 2 && v->heap) {
            __builtin_prefetch(v->v);
            __builtin_prefetch((const char *)v->v + 64);
            __builtin_prefetch((const char *)v->v + 128);
            return;
        }
        if (pass == 3 && !v->heap)
            return; /* done in pass 2 */
        for (size_t i = 0; i < v->n && i < 4; i++)
            if (v->v[i].chain) {
                const char *e = (const char *)v->v[i].head;
                __builtin_prefetch(v->v[i].chain);
                __builtin_prefetch(e);
                __builtin_prefetch(e + 64);
                __builtin_prefetch(e + 128);
            }
    }
}

/* ---- the public stepping functions ---------------------------------------------------- */

static struct tlm_cep_event *ev_new(struct tlm_cep *c, struct key *k, tlm_time_t ts,
                                    const char *line, size_t len)
{
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len > UINT32_MAX - 4096 || c->npat > UINT32_MAX / 16)
        return NULL;
    size_t sz = sizeof(struct tlm_cep_event) + c->npat * 8 + len + 1;
    int cls = ev_class(sz);
    struct tlm_cep_event *e;
    if (cls >= 0 && c->free_ev[cls]) {
        e = c->free_ev[cls];
        c->free_ev[cls] = (struct tlm_cep_event *)e->key;
    } else {
        e = cls >= 0 ? arena_alloc(c, (size_t)cls * 64) : malloc(sz);
    }
    if (!e)
        return NULL;
    e->ts = ts;
    e->seq = c->seq++;
    e->refs = 0;
    e->json = NULL;
    e->key = k;
    e->len = (uint32_t)len;
    e->sid = -1;
    e->nmask = (uint32_t)c->npat;
    memcpy(ev_line(e), line, len);
    ev_line(e)[len] = 0;
    c->nevents++;
    c->evbytes += cls < 0 ? (long long)sz : (long long)cls * 64;
    return e;
}

int tlm_cep_push(struct tlm_cep *c, const char *key, size_t keylen, tlm_time_t ts,
                 const char *line, size_t len, const struct tlm_jval *vals,
                 struct tlm_error *err)
{
    const struct tlm_path *paths;
    if (!c->paths_done)
        tlm_cep_paths(c, &paths);
    if (c->loaded)
        drop_loaded(c);
    struct key *k = key_get(c, key, keylen, 1);
    struct tlm_cep_event *e = k ? ev_new(c, k, ts, line, len) : NULL;
    if (!e)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    int rc = compute_masks(c, e, c->npaths ? vals : NULL, err);
    if (rc) {
        e->refs = 1;
        ev_release(c, e);
        c->seq--;
        return rc;
    }
    if (c->npat && !(c->whole || c->npaths)) {
        /* no condition reads a field: the event is not needed as JSON */
    }
    json_decref(e->json);
    e->json = NULL;
    e->refs = 1;
    c->nbuffered++;
    return buf_push(c, e) ? tlm_error_set(err, TLM_ENOMEM, "out of memory") : 0;
}

/* After a restore, the table of loaded events (which held one reference each while the
 * chains were rebuilt) is no longer needed. */
static void drop_loaded(struct tlm_cep *c)
{
    for (size_t i = 0; i < c->nloaded; i++)
        if (c->loaded[i])
            ev_release(c, c->loaded[i]);
    free(c->loaded);
    c->loaded = NULL;
    c->nloaded = 0;
}

/* Whether expiring the partial matches left at the end of time can write a match: a
 * trailing negation (a Pending state) completes at its within, a skip strategy may hold
 * matches back until earlier partial matches end. */
static int end_writes_matches(const struct tlm_cep *c)
{
    for (size_t p = 0; p < c->npat; p++) {
        const struct tlm_cep_pattern *pat = c->pat[p];
        if (!pat)
            continue;
        if (pat->skip != CEP_NO_SKIP)
            return 1;
        for (int i = 0; i < pat->ns; i++)
            if (pat->s[i].type == CEP_PENDING)
                return 1;
    }
    return 0;
}

int tlm_cep_advance(struct tlm_cep *c, tlm_time_t wm, const struct tlm_cep_sink *sink,
                    struct tlm_error *err)
{
    int rc = 0;
    /* the end of time that nobody observes: what is left after the last event expires
     * unseen */
    int quiet_end = wm == TLM_TIME_MAX && sink && sink->end_unobserved && !end_writes_matches(c);
    if (c->loaded)
        drop_loaded(c);
    for (;;) {
        int from_ring;
        const struct hent *next = buf_peek(c, &from_ring);
        struct tlm_cep_event *e = next && next->ts <= wm ? next->e : NULL;
        tlm_time_t limit = e ? e->ts : wm;
        if (!e && quiet_end)
            break;
        if (c->ntim && c->timers[0].at <= limit) {
            struct timer t = timer_pop(c);
            /* the next timers to fire are near the top of the heap: fetch their keys
             * (their blocks are cold when time jumps, e.g. at the end of input) */
            for (size_t i = 0; i < 6 && i < c->ntim; i++) {
                __builtin_prefetch(c->timers[i].key);
                __builtin_prefetch((const char *)c->timers[i].key + 64);
                __builtin_prefetch((const char *)c->timers[i].key + 128);
            }
            if (t.key->timer != t.at)
                continue; /* stale */
            t.key->timer = TLM_TIME_MAX;
            if ((rc = advance_key(c, t.key, t.at, sink, err)) != 0)
                return rc;
            if (reschedule(c, t.key))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            continue;
        }
        if (!e)
            break;
        buf_pop(c, from_ring);
        c->nbuffered--;
        struct key *k = e->key;
        for (size_t p = 0; p < c->npat && rc == 0; p++)
            if (c->pat[p])
                rc = process(c, p, k, e, sink, err);
        json_decref(e->json);
        e->json = NULL;
        ev_release(c, e);
        if (rc)
            return rc;
        if (reschedule(c, k))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- snapshots ---------------------------------------------------------------------- */

static int save_ev(struct tlm_cep *c, struct tlm_cep_event *e, long *next, int buffered,
                   int (*put)(void *, const json_t *), void *arg)
{
    if (e->sid >= 0 && !buffered)
        return 0;
    e->sid = (*next)++;
    json_t *r = json_pack("{sssIsIsIss%ss%sb}", "t", "ev", "id", (json_int_t)e->sid,
                          "ts", (json_int_t)e->ts, "seq", (json_int_t)e->seq, "key", e->key->k,
                          e->key->klen, "line", ev_line(e), (size_t)e->len, "buf", buffered);
    (void)c;
    if (!r)
        return TLM_ENOMEM;
    int rc = put(arg, r);
    json_decref(r);
    return rc;
}

static int save_cs(struct tlm_cep *c, struct key *k, size_t p, const struct cs *s, int done,
                   long *next, int (*put)(void *, const json_t *), void *arg)
{
    json_t *chain = json_array();
    int rc = 0;
    for (struct node *n = s->chain; n && rc == 0; n = n->parent) {
        rc = save_ev(c, n->ev, next, 0, put, arg);
        json_array_insert_new(chain, 0, json_pack("[iI]", n->stage, (json_int_t)n->ev->sid));
    }
    json_t *r = rc ? NULL
                   : json_pack("{ssss%sssisisisIsIsIso}", "t", "cs", "key", k->k, k->klen, "p",
                               c->pat[p]->id, "done", done, "state", s->state, "has_start",
                               s->has_start, "start_ts", (json_int_t)s->start_ts, "start_seq",
                               (json_int_t)s->start_seq, "prev_ts",
                               (json_int_t)(s->chain ? s->chain->ev->ts : 0),
                               "chain", chain);
    if (!r) {
        json_decref(chain);
        return rc ? rc : TLM_ENOMEM;
    }
    rc = put(arg, r);
    json_decref(r);
    return rc;
}

int tlm_cep_save(struct tlm_cep *c, int (*put)(void *arg, const json_t *rec), void *arg,
                 struct tlm_error *err)
{
    long next = 0;
    int rc = 0;
    json_t *meta = json_pack("{sssI}", "t", "cep", "seq", (json_int_t)c->seq);
    rc = meta ? put(arg, meta) : TLM_ENOMEM;
    json_decref(meta);
    /* buffered events in (time, arrival) order */
    for (size_t i = 0; i < c->nheap + c->rcount; i++)
        buf_at(c, i)->sid = -1;
    for (size_t i = 0; i < c->tcap && rc == 0; i++) {
        struct key *k = c->tab[i].k;
        if (!k)
            continue;
        for (size_t p = 0; p < c->npat && rc == 0; p++) {
            struct nfa *f = nfa_of(c, k, p, 0);
            for (size_t j = 0; f && j < f->pm.n && rc == 0; j++)
                if (f->pm.v[j].has_start)
                    rc = save_cs(c, k, p, &f->pm.v[j], 0, &next, put, arg);
            for (size_t j = 0; f && j < f->done.n && rc == 0; j++)
                rc = save_cs(c, k, p, &f->done.v[j], 1, &next, put, arg);
        }
    }
    for (size_t i = 0; i < c->nheap + c->rcount && rc == 0; i++)
        rc = save_ev(c, buf_at(c, i), &next, 1, put, arg);
    /* ids are per snapshot: an event buffered now may be in a chain at the next one,
     * which must write it again */
    for (size_t i = 0; i < c->nheap + c->rcount; i++)
        buf_at(c, i)->sid = -1;
    for (size_t i = 0; i < c->tcap; i++) {
        struct key *k = c->tab[i].k;
        if (!k)
            continue;
        for (size_t p = 0; p < c->npat; p++) {
            struct nfa *f = nfa_of(c, k, p, 0);
            for (size_t j = 0; f && j < f->pm.n; j++)
                for (struct node *n = f->pm.v[j].chain; n; n = n->parent)
                    n->ev->sid = -1;
            for (size_t j = 0; f && j < f->done.n; j++)
                for (struct node *n = f->done.v[j].chain; n; n = n->parent)
                    n->ev->sid = -1;
        }
    }
    if (rc)
        return tlm_error_set(err, rc, "cannot write the CEP state");
    return 0;
}

static int bad_state(struct tlm_error *err, const char *what)
{
    return tlm_error_set(err, TLM_ESTATE, "snapshot: bad CEP record (%s)", what);
}

int tlm_cep_load(struct tlm_cep *c, const json_t *rec, struct tlm_error *err)
{
    const char *t = json_string_value(json_object_get(rec, "t"));
    const struct tlm_path *paths;
    if (!c->paths_done)
        tlm_cep_paths(c, &paths);
    if (!t)
        return bad_state(err, "no type");
    if (!strcmp(t, "cep")) {
        c->seq = (unsigned long long)json_integer_value(json_object_get(rec, "seq"));
        return 0;
    }
    if (!strcmp(t, "ev")) {
        json_int_t id = json_integer_value(json_object_get(rec, "id"));
        json_t *k = json_object_get(rec, "key"), *l = json_object_get(rec, "line");
        if (!json_is_string(k) || !json_is_string(l) || id < 0 || id > 100000000)
            return bad_state(err, "event");
        struct key *key = key_get(c, json_string_value(k), json_string_length(k), 1);
        unsigned long long save_seq = c->seq;
        struct tlm_cep_event *e = key ? ev_new(c, key, json_integer_value(json_object_get(rec, "ts")),
                                               json_string_value(l), json_string_length(l))
                                      : NULL;
        c->seq = save_seq;
        if (!e)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        e->seq = (unsigned long long)json_integer_value(json_object_get(rec, "seq"));
        if (compute_masks(c, e, NULL, err)) {
            e->refs = 1;
            ev_release(c, e);
            return bad_state(err, "event condition");
        }
        json_decref(e->json);
        e->json = NULL;
        if ((size_t)id >= c->nloaded) {
            size_t nn = (size_t)id + 1024;
            struct tlm_cep_event **n = realloc(c->loaded, nn * sizeof(*n));
            if (!n)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            memset(n + c->nloaded, 0, (nn - c->nloaded) * sizeof(*n));
            c->loaded = n;
            c->nloaded = nn;
        }
        e->refs = 1; /* held by the load table */
        c->loaded[id] = e;
        if (json_is_true(json_object_get(rec, "buf"))) {
            e->refs++;
            c->nbuffered++;
            if (buf_push(c, e))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        return 0;
    }
    if (!strcmp(t, "cs")) {
        json_t *k = json_object_get(rec, "key"), *chain = json_object_get(rec, "chain"), *it;
        const char *pid = json_string_value(json_object_get(rec, "p"));
        size_t p, i;
        for (p = 0; pid && p < c->npat && !(c->pat[p] && strcmp(c->pat[p]->id, pid) == 0); p++)
            ;
        if (!json_is_string(k) || !json_is_array(chain) || !pid || p == c->npat)
            return bad_state(err, "partial match");
        struct key *key = key_get(c, json_string_value(k), json_string_length(k), 1);
        struct nfa *f = key ? nfa_of(c, key, p, 1) : NULL;
        if (!f)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        const struct tlm_cep_pattern *pat = c->pat[p];
        struct cs s;
        s.state = (int)json_integer_value(json_object_get(rec, "state"));
        s.has_start = (int)json_integer_value(json_object_get(rec, "has_start"));
        s.start_ts = json_integer_value(json_object_get(rec, "start_ts"));
        s.start_seq = (unsigned long long)json_integer_value(json_object_get(rec, "start_seq"));
        s.chain = NULL;
        s.head = NULL;
        if (s.state < 0 || s.state >= pat->ns)
            return bad_state(err, "state");
        json_array_foreach(chain, i, it) {
            json_int_t st = json_integer_value(json_array_get(it, 0));
            json_int_t id = json_integer_value(json_array_get(it, 1));
            if (st < 0 || (size_t)st >= pat->n || id < 0 || (size_t)id >= c->nloaded ||
                !c->loaded[id]) {
                node_release(c, s.chain);
                return bad_state(err, "chain");
            }
            struct node *n = node_alloc(c);
            if (!n) {
                node_release(c, s.chain);
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            }
            n->parent = s.chain;
            n->ev = c->loaded[id];
            n->ev->refs++;
            n->refs = 1;
            n->stage = (int)st;
            c->nnodes++;
            s.chain = n;
            s.head = n->ev;
        }
        struct csvec *v = json_is_true(json_object_get(rec, "done")) ||
                                  json_integer_value(json_object_get(rec, "done"))
                              ? &f->done
                              : &f->pm;
        if (vpush(v, &s))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        vsort(v);
        return reschedule(c, key) ? tlm_error_set(err, TLM_ENOMEM, "out of memory") : 0;
    }
    return bad_state(err, t);
}

void tlm_cep_stats(const struct tlm_cep *c, struct tlm_cep_stats *s)
{
    long long keys = 0, partial = 0;
    for (size_t i = 0; i < c->tcap; i++) {
        struct key *k = c->tab[i].k;
        if (!k)
            continue;
        keys++;
        for (size_t p = 0; p < c->npat; p++) {
            struct nfa *f = nfa_of((struct tlm_cep *)c, k, p, 0);
            for (size_t j = 0; f && j < f->pm.n; j++)
                partial += f->pm.v[j].has_start;
            partial += f ? (long long)f->done.n : 0;
        }
    }
    s->keys = keys;
    s->buffered = c->nbuffered;
    s->partial = partial;
    s->events_held = c->nevents;
    /* events as allocated (64-byte steps), nodes two to a line, a key's block (short
     * text: the states of CEP_INLINE computation states inline) and its two table slots,
     * partial matches beyond the inline ones */
    long long kb = (long long)((sizeof(struct key) + 16 + c->npat * sizeof(struct nfa) + 63) & ~(size_t)63);
    long long extra = partial - keys * (long long)c->npat * (CEP_INLINE - 1);
    s->bytes = c->evbytes + c->nnodes * 32 + keys * (kb + 2 * (long long)sizeof(struct slot)) +
               (extra > 0 ? extra : 0) * (long long)sizeof(struct cs);
    s->matches = c->matches;
    s->timeouts = c->timeouts;
    s->cond_errors = c->cond_errors;
}
