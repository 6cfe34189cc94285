/*
 * rules.c - the dynamic rule engine of seed 002 (see rules.h for the semantics).
 *
 * Design. Rules live in an array in rule order (the order of first addition; a replace keeps
 * the slot) and in a map by id. Everything derived from the rule set (the distinct field
 * paths, the scanner over them, the equality index) is rebuilt from scratch after every
 * change: changes are rare (a control stream), events are many, and a rebuild of 1 000
 * rules takes well under a millisecond.
 *
 * Predicate analysis reads the private tree of the expression compiler (expr_int.h): the
 * top-level conjunction (&&) is split into conjuncts; a conjunct of the form
 *   path OP literal | literal OP path | path in [literals] | path
 * (path: a plain member path from the root, OP one of == != < <= > >=, literal a scalar) is
 * an atom that can be evaluated on a scanned value exactly as expr_eval.c would (same
 * comparison rules: deep equality with 1 == 1.0, ordering only between two numbers or two
 * strings, nothing equals only nothing). A rule all of whose conjuncts are atoms is
 * "simple": it never needs a DOM. A rule with an equality atom (== or in) is indexed under
 * its constants: it can only hold when the event's value at that path equals one of them.
 * A rule without one but with a numeric range atom (path > c, >=, <, <=) is kept in a
 * per-path array sorted by c: for an event value v, the rules with c <= v (for > and >=)
 * are a prefix and those with c >= v (for < and <=) a suffix, found by binary search on
 * doubles (a superset even for integers, since rounding to double is monotonic).
 * Index keys are (path id, canonical value): a string's bytes, or a number's double (so 1
 * and 1.0 meet); a hash hit is only a candidate, the whole predicate is always evaluated.
 *
 * Per-customer rules are kept in one small index per (key path, scope key), found by the
 * event's key text; global rules are in one global index.
 *
 * Invariants: rs->rules[0..n) are in rule order with increasing seq; the derived structures
 * refer to rules and to names owned by the rules' compiled trees; a change sets rs->dirty and
 * they are rebuilt (rebuild()) before the next event is evaluated, never used while dirty.
 */
#include "rules.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "expr_int.h"
#include "jscan.h"
#include "jwrite.h"
#include "reader.h"

/* ---- a small open-addressing map from byte strings to pointers ----------------------- */

struct ment {
    uint64_t h;
    char *k; /* owned copy; NULL = empty slot */
    size_t kn;
    void *v;
};

struct rmap {
    struct ment *e;
    size_t cap, n; /* cap is 0 or a power of two; n <= cap / 2 */
};

static uint64_t hbytes(const void *p, size_t n)
{
    /* FNV-1a over 8-byte words, then a final mix: the keys here are short. */
    const unsigned char *s = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325) ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * UINT64_C(0x100000001b3);
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    while (n--)
        h = (h ^ *s++) * UINT64_C(0x100000001b3);
    h ^= h >> 32;
    h *= UINT64_C(0xd6e8feb86659fd93);
    h ^= h >> 32;
    return h;
}

static struct ment *rmap_slot(const struct rmap *m, const char *k, size_t kn, uint64_t h)
{
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    for (;;) {
        struct ment *e = &m->e[i];
        if (!e->k || (e->h == h && e->kn == kn && memcmp(e->k, k, kn) == 0))
            return e;
        i = (i + 1) & mask;
    }
}

static void *rmap_get(const struct rmap *m, const char *k, size_t kn, uint64_t h)
{
    if (!m->n)
        return NULL;
    struct ment *e = rmap_slot(m, k, kn, h);
    return e->k ? e->v : NULL;
}

static int rmap_grow(struct rmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    struct ment *e = calloc(cap, sizeof *e);
    if (!e)
        return TLM_ENOMEM;
    struct rmap nm = { e, cap, 0 };
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].k) {
            *rmap_slot(&nm, m->e[i].k, m->e[i].kn, m->e[i].h) = m->e[i];
            nm.n++;
        }
    free(m->e);
    *m = nm;
    return 0;
}

/* Inserts k (absent) -> v; copies the key. Returns 0 or TLM_ENOMEM. */
static int rmap_put(struct rmap *m, const char *k, size_t kn, uint64_t h, void *v)
{
    if ((m->n + 1) * 2 > m->cap && rmap_grow(m))
        return TLM_ENOMEM;
    struct ment *e = rmap_slot(m, k, kn, h);
    char *c = malloc(kn + 1);
    if (!c)
        return TLM_ENOMEM;
    memcpy(c, k, kn);
    c[kn] = 0;
    e->h = h;
    e->k = c;
    e->kn = kn;
    e->v = v;
    m->n++;
    return 0;
}

static void rmap_free(struct rmap *m, void (*fv)(void *))
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].k) {
            free(m->e[i].k);
            if (fv)
                fv(m->e[i].v);
        }
    free(m->e);
    m->e = NULL;
    m->cap = m->n = 0;
}

/* ---- values: a scanned field or a literal, compared as expr_eval.c compares ------------ */

enum vt { V_NONE, V_STR, V_INT, V_REAL, V_TRUE, V_FALSE, V_NULL, V_OTHER };

struct sval {
    int t;          /* enum vt */
    const char *s;  /* V_STR: bytes (borrowed), n of them */
    size_t n;
    long long i;    /* V_INT */
    double d;       /* V_INT: (double)i; V_REAL: the value */
};

static int sv_num(const struct sval *v)
{
    return v->t == V_INT || v->t == V_REAL;
}

static int sv_numcmp(const struct sval *a, const struct sval *b)
{
    if (a->t == V_INT && b->t == V_INT)
        return a->i < b->i ? -1 : a->i > b->i;
    return a->d < b->d ? -1 : a->d > b->d;
}

static int sv_strcmp(const struct sval *a, const struct sval *b)
{
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    if (c)
        return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

static int sv_eq(const struct sval *a, const struct sval *b)
{
    if (a->t == V_NONE || b->t == V_NONE)
        return a->t == b->t;
    if (sv_num(a) && sv_num(b))
        return sv_numcmp(a, b) == 0;
    if (a->t != b->t)
        return 0;
    if (a->t == V_STR)
        return sv_strcmp(a, b) == 0;
    return a->t != V_OTHER; /* true, false, null; constants are never V_OTHER */
}

static int sv_lt(const struct sval *a, const struct sval *b)
{
    if (sv_num(a) && sv_num(b))
        return sv_numcmp(a, b) < 0;
    if (a->t == V_STR && b->t == V_STR)
        return sv_strcmp(a, b) < 0;
    return 0;
}

static int sv_cmp_op(int op, const struct sval *a, const struct sval *b)
{
    switch (op) {
    case T_EQ: return sv_eq(a, b);
    case T_NE: return !sv_eq(a, b);
    case T_LT: return sv_lt(a, b);
    case T_LE: return sv_lt(a, b) || sv_eq(a, b);
    case T_GT: return sv_lt(b, a);
    default: return sv_lt(b, a) || sv_eq(a, b);
    }
}

/* The canonical index key of a value: a tag byte and its bytes. Returns 0 when the value
 * cannot equal any literal (nothing, arrays, objects). */
static int sv_canon(const struct sval *v, uint32_t pid, struct tlm_buf *b)
{
    tlm_buf_reset(b);
    if (tlm_buf_append(b, &pid, sizeof pid))
        return 0;
    switch (v->t) {
    case V_STR:
        return tlm_buf_putc(b, 's') == 0 && tlm_buf_append(b, v->s, v->n) == 0;
    case V_INT:
    case V_REAL: {
        double d = v->d == 0 ? 0.0 : v->d;
        return tlm_buf_putc(b, 'n') == 0 && tlm_buf_append(b, &d, sizeof d) == 0;
    }
    case V_TRUE: return tlm_buf_putc(b, 't') == 0;
    case V_FALSE: return tlm_buf_putc(b, 'f') == 0;
    case V_NULL: return tlm_buf_putc(b, 'z') == 0;
    default: return 0;
    }
}

static int sv_from_json(const json_t *j, struct sval *v)
{
    memset(v, 0, sizeof *v);
    switch (json_typeof(j)) {
    case JSON_STRING:
        v->t = V_STR;
        v->s = json_string_value(j);
        v->n = json_string_length(j);
        return 1;
    case JSON_INTEGER:
        v->t = V_INT;
        v->i = json_integer_value(j);
        v->d = (double)v->i;
        return 1;
    case JSON_REAL:
        v->t = V_REAL;
        v->d = json_real_value(j);
        return 1;
    case JSON_TRUE: v->t = V_TRUE; return 1;
    case JSON_FALSE: v->t = V_FALSE; return 1;
    case JSON_NULL: v->t = V_NULL; return 1;
    default: return 0;
    }
}

/* ---- rules ---------------------------------------------------------------------------- */

enum atom_kind { A_CMP, A_IN, A_TRUTHY };

struct atom {
    int kind;                /* enum atom_kind */
    int op;                  /* A_CMP: T_EQ .. T_GE, path on the left */
    struct tlm_path path;    /* seg array owned, names borrowed from the compiled tree */
    uint32_t pid;            /* path id in the engine (rebuild) */
    struct sval *c;          /* constants (owned array; strings borrowed from the tree) */
    size_t nc;
};

/* The state of one (rule, key), with its key inline: one block, one cache miss. */
struct kstate {
    long long count;
    tlm_time_t wstart;       /* window start, TLM_TIME_MIN without a window */
    int fired;
    uint32_t kn;             /* map key length: the key text, then (windowed) 8 bytes of wstart */
    uint32_t tn;             /* key text length */
    char k[];                /* map key, NUL-terminated */
};

struct sslot {
    uint64_t h;
    struct kstate *s;        /* NULL = empty */
};

/* key text -> struct kstate (owned), open addressing, load <= 1/2 */
struct smap {
    struct sslot *e;
    size_t cap, n;
};

static struct sslot *smap_slot(const struct smap *m, const char *k, size_t kn, uint64_t h)
{
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    for (;;) {
        struct sslot *e = &m->e[i];
        if (!e->s || (e->h == h && e->s->kn == kn && memcmp(e->s->k, k, kn) == 0))
            return e;
        i = (i + 1) & mask;
    }
}

/* Returns the state of key k, creating it (count 0) if new; NULL on ENOMEM. */
static struct kstate *smap_get(struct smap *m, const char *k, size_t kn, uint64_t h, int *isnew)
{
    *isnew = 0;
    if (m->cap) {
        struct sslot *e = smap_slot(m, k, kn, h);
        if (e->s)
            return e->s;
    }
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct sslot *ne = calloc(cap, sizeof *ne);
        if (!ne)
            return NULL;
        struct smap nm = { ne, cap, 0 };
        for (size_t i = 0; i < m->cap; i++)
            if (m->e[i].s)
                *smap_slot(&nm, m->e[i].s->k, m->e[i].s->kn, m->e[i].h) = m->e[i];
        nm.n = m->n;
        free(m->e);
        *m = nm;
    }
    struct kstate *s = malloc(sizeof *s + kn + 1);
    if (!s)
        return NULL;
    s->count = 0;
    s->wstart = TLM_TIME_MIN;
    s->fired = 0;
    s->kn = (uint32_t)kn;
    s->tn = (uint32_t)kn;
    memcpy(s->k, k, kn);
    s->k[kn] = 0;
    struct sslot *e = smap_slot(m, k, kn, h);
    e->h = h;
    e->s = s;
    m->n++;
    *isnew = 1;
    return s;
}

static void smap_free(struct smap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->e[i].s);
    free(m->e);
    m->e = NULL;
    m->cap = m->n = 0;
}

struct rule {
    char *id;
    json_t *doc;             /* owned deep copy of the document */
    int pattern;             /* a pattern rule (stored only) */
    const char *pattern_src; /* borrowed from doc */
    const char *name, *desc; /* borrowed from doc, or NULL */
    int global;
    char *scope;             /* per-customer: the key text (owned) */
    size_t scope_n;
    struct tlm_path keypath; /* owned (segs and names) */
    uint32_t kpid;           /* path id of keypath (rebuild); NOKEY for "key": null */
    int nokey;               /* "key": null: one count over all events */
    struct tlm_expr *when;   /* owned */
    int64_t window;          /* ns, 0 = none */
    long long threshold;
    unsigned long long seq;  /* rule order */
    struct atom *atoms;      /* owned */
    size_t natoms;
    int simple;              /* every conjunct is an atom */
    int anchor;              /* index of the equality atom indexed, or -1 */
    struct smap state;       /* key text [+ window start] -> struct kstate */
    tlm_time_t min_open;     /* windowed: smallest window start held, TLM_TIME_MAX if none */
};

struct rvec {
    struct rule **v;
    size_t n, cap;
};

static int rvec_push(struct rvec *r, struct rule *x)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct rule **v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return TLM_ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = x;
    return 0;
}

/* An index over some rules: equality buckets and the rules without an equality atom. */
/* Rules anchored on a numeric range atom of one path, sorted by their constant. */
struct rent {
    double c;                /* the constant as a double */
    struct rule *r;
};

struct rix {
    uint32_t pid;
    struct rent *lo;         /* path > c, path >= c: can hold only when c <= value */
    size_t nlo, caplo;
    struct rent *hi;         /* path < c, path <= c: can hold only when c >= value */
    size_t nhi, caphi;
};

struct ix {
    struct rmap eq;          /* (pid, canon) -> struct rvec * */
    uint32_t *probe;         /* distinct path ids with buckets */
    size_t nprobe;
    struct rix *rx;          /* range index, one per path */
    size_t nrx;
    struct rvec always;
};

struct match {
    struct rule *r;
    uint32_t kp;             /* which key text */
    uint64_t h;              /* hash of the state key (set before counting) */
};

/* A control message waiting for its event time ("at"). */
struct pend {
    tlm_time_t at;
    json_t *msg;             /* owned, "at" removed */
};

struct tlm_rules {
    char *key_field;
    char *time_field;
    struct tlm_path key_default; /* parsed key_field (owned) */
    struct tlm_path time_path;   /* parsed time_field (owned) */
    enum tlm_time_unit time_unit, out_unit;
    int naive;
    struct tlm_rules_opts o;

    struct rule **rules;     /* rule order */
    size_t n, cap;
    struct rmap byid;        /* id -> rule */
    struct pend *pend;       /* queued control messages, by (at, arrival) */
    size_t npend, pcap;
    unsigned long long next_seq;

    /* derived, rebuilt after every change */
    struct tlm_path *paths;  /* distinct paths (borrowed segs) */
    size_t npaths;
    struct rmap pathmap;     /* joined path -> pid + 1 */
    uint32_t *kps;           /* distinct key path ids */
    size_t nkps;
    struct tlm_jscan *scan;
    struct tlm_jval *vals;
    struct sval *sv;
    uint32_t *dompids;       /* paths the non-simple rules read (none a prefix of another) */
    size_t ndom;
    int full_dom;            /* some non-simple rule reads the whole document */
    struct ix global;
    struct rmap sub;         /* (kpid, scope text) -> struct ix * */
    size_t nthreshold;

    /* per-event scratch */
    struct tlm_buf strs;     /* unescaped strings of this event */
    size_t *stroff;          /* per path: offset in strs, or SIZE_MAX */
    struct tlm_buf kb;       /* index key being built */
    const char **ktext;      /* per key path: key text or NULL */
    size_t *klen;
    struct rvec cand;
    struct match *m;
    size_t mcap;
    json_t *dom;

    int dirty;               /* rules changed since the last rebuild() */
    int loading;             /* tlm_rules_load has been called */
    tlm_time_t wm;           /* watermark (tlm_rules_watermark), TLM_TIME_MIN before any */
    tlm_time_t next_expiry;  /* lowest cleanup time (window end - 1) of any held window */
    struct tlm_buf ck;       /* composite state key being built */

    struct tlm_rules_stats st;
    int (*replay_keep)(void *arg, const char *key, size_t n);
    void *replay_arg;
};

#define NOKEY UINT32_MAX

/* ---- paths ----------------------------------------------------------------------------- */

static void path_free(struct tlm_path *p, int names)
{
    if (names)
        for (size_t i = 0; i < p->nseg; i++)
            free(p->seg[i]);
    free(p->seg);
    p->seg = NULL;
    p->nseg = 0;
}

/* Is n a plain member path from the root ($.a.b, a.b, $['a']) with no NUL in names? */
static int simple_path(const struct node *n)
{
    if (n->kind != N_PATH || n->base != B_ROOT || n->nsegs == 0)
        return 0;
    for (size_t i = 0; i < n->nsegs; i++) {
        const struct seg *s = &n->segs[i];
        if (s->desc || s->nsel != 1 || s->sel[0].kind != S_NAME ||
            strlen(s->sel[0].name) != s->sel[0].namelen)
            return 0;
    }
    return 1;
}

/* Fills p with the names of a simple path: copies them when own, else borrows. */
static int path_of(const struct node *n, struct tlm_path *p, int own)
{
    p->nseg = n->nsegs;
    p->seg = calloc(n->nsegs, sizeof *p->seg);
    if (!p->seg)
        return TLM_ENOMEM;
    for (size_t i = 0; i < n->nsegs; i++) {
        p->seg[i] = own ? strdup(n->segs[i].sel[0].name) : n->segs[i].sel[0].name;
        if (!p->seg[i]) {
            path_free(p, own);
            return TLM_ENOMEM;
        }
    }
    return 0;
}

/* Parses a field ("customerId", "tenant.id", "$['a b']") into p (owned). */
static int parse_field(const char *src, struct tlm_path *p, struct tlm_error *err)
{
    struct tlm_error e;
    tlm_error_clear(&e);
    struct tlm_expr *x = tlm_expr_compile(src, &e);
    if (!x)
        return tlm_error_set(err, e.code, "field '%s': %ld: %s", src, e.column, e.text);
    int rc = 0;
    if (!simple_path(x->root))
        rc = tlm_error_set(err, TLM_EINVAL, "'%s' is not a plain field path", src);
    else if (path_of(x->root, p, 1))
        rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
    tlm_expr_destroy(x);
    return rc;
}

/* ---- predicate analysis ---------------------------------------------------------------- */

static int lit_scalar(const struct node *n, struct sval *v)
{
    return n->kind == N_LIT && sv_from_json(n->lit, v);
}

static int flip(int op)
{
    switch (op) {
    case T_LT: return T_GT;
    case T_LE: return T_GE;
    case T_GT: return T_LT;
    case T_GE: return T_LE;
    default: return op;
    }
}

/* Tries to make an atom of conjunct n. Returns 1 (atom filled), 0 (not an atom), or
 * TLM_ENOMEM. */
static int make_atom(const struct node *n, struct atom *a)
{
    memset(a, 0, sizeof *a);
    const struct node *p = NULL;
    struct sval c;
    if (n->kind == N_CMP) {
        if (simple_path(n->kids[0]) && lit_scalar(n->kids[1], &c)) {
            p = n->kids[0];
            a->op = n->op;
        } else if (simple_path(n->kids[1]) && lit_scalar(n->kids[0], &c)) {
            p = n->kids[1];
            a->op = flip(n->op);
        } else {
            return 0;
        }
        a->kind = A_CMP;
        a->c = malloc(sizeof *a->c);
        if (!a->c)
            return TLM_ENOMEM;
        a->c[0] = c;
        a->nc = 1;
    } else if (n->kind == N_IN && simple_path(n->kids[0])) {
        const struct node *l = n->kids[1];
        size_t cnt;
        if (l->kind == N_ARR)
            cnt = l->nkids;
        else if (l->kind == N_LIT && json_is_array(l->lit))
            cnt = json_array_size(l->lit);
        else
            return 0;
        a->c = calloc(cnt ? cnt : 1, sizeof *a->c);
        if (!a->c)
            return TLM_ENOMEM;
        for (size_t i = 0; i < cnt; i++) {
            int ok = l->kind == N_ARR ? lit_scalar(l->kids[i], &a->c[i])
                                      : sv_from_json(json_array_get(l->lit, i), &a->c[i]);
            if (!ok) {
                free(a->c);
                a->c = NULL;
                return 0;
            }
        }
        a->nc = cnt;
        a->kind = A_IN;
        p = n->kids[0];
    } else if (simple_path(n)) {
        a->kind = A_TRUTHY;
        p = n;
    } else {
        return 0;
    }
    if (path_of(p, &a->path, 0)) {
        free(a->c);
        a->c = NULL;
        return TLM_ENOMEM;
    }
    return 1;
}

static void atoms_free(struct rule *r)
{
    for (size_t i = 0; i < r->natoms; i++) {
        free(r->atoms[i].c);
        path_free(&r->atoms[i].path, 0);
    }
    free(r->atoms);
    r->atoms = NULL;
    r->natoms = 0;
}

static int analyse_node(struct rule *r, const struct node *n, size_t *cap)
{
    if (n->kind == N_AND) {
        int rc = analyse_node(r, n->kids[0], cap);
        return rc ? rc : analyse_node(r, n->kids[1], cap);
    }
    if (r->natoms == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        struct atom *a = realloc(r->atoms, c * sizeof *a);
        if (!a)
            return TLM_ENOMEM;
        r->atoms = a;
        *cap = c;
    }
    int rc = make_atom(n, &r->atoms[r->natoms]);
    if (rc < 0)
        return rc;
    if (rc == 0)
        r->simple = 0;
    else
        r->natoms++;
    return 0;
}

static int analyse(struct rule *r)
{
    size_t cap = 0;
    r->simple = 1;
    r->anchor = -1;
    int rc = analyse_node(r, r->when->root, &cap);
    if (rc)
        return rc;
    for (size_t i = 0; i < r->natoms && r->anchor < 0; i++)
        if (r->atoms[i].kind == A_CMP && r->atoms[i].op == T_EQ)
            r->anchor = (int)i;
    for (size_t i = 0; i < r->natoms && r->anchor < 0; i++)
        if (r->atoms[i].kind == A_IN)
            r->anchor = (int)i;
    /* no equality: a numeric range atom (path > 100) goes to the range index */
    for (size_t i = 0; i < r->natoms && r->anchor < 0; i++) {
        const struct atom *a = &r->atoms[i];
        if (a->kind == A_CMP && a->op != T_EQ && a->op != T_NE && sv_num(&a->c[0]))
            r->anchor = (int)i;
    }
    return 0;
}

/* ---- rule documents -------------------------------------------------------------------- */

static void rule_free(struct rule *r)
{
    if (!r)
        return;
    free(r->id);
    json_decref(r->doc);
    free(r->scope);
    path_free(&r->keypath, 1);
    atoms_free(r);
    tlm_expr_destroy(r->when);
    smap_free(&r->state);
    free(r);
}

static const char *const threshold_members[] = { "id", "type", "scope", "key", "when",
                                                 "threshold", "window", "name",
                                                 "description", NULL };
static const char *const pattern_members[] = { "id", "type", "scope", "key", "pattern",
                                               "emit", "name", "description", NULL };

static int member_known(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (!strcmp(*list, k))
            return 1;
    return 0;
}

static const char *opt_string(const json_t *doc, const char *k, int *bad)
{
    json_t *v = json_object_get(doc, k);
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

/* Validates doc and builds an unattached rule. Returns it or NULL with err filled. */
static struct rule *rule_parse(struct tlm_rules *rs, const json_t *doc, struct tlm_error *err)
{
    if (!json_is_object(doc)) {
        tlm_error_set(err, TLM_EINVAL, "a rule must be a JSON object");
        return NULL;
    }
    json_t *idv = json_object_get(doc, "id");
    if (!json_is_string(idv) || json_string_length(idv) == 0) {
        tlm_error_set(err, TLM_EINVAL, "rule without an id: \"id\" must be a non-empty string");
        return NULL;
    }
    const char *id = json_string_value(idv);
    struct rule *r = calloc(1, sizeof *r);
    if (!r || !(r->id = strdup(id)) || !(r->doc = json_deep_copy(doc))) {
        rule_free(r);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    r->anchor = -1;
    r->min_open = TLM_TIME_MAX;
    int bad = 0;
    const char *type = opt_string(doc, "type", &bad);
    if (bad || (type && strcmp(type, "threshold") && strcmp(type, "pattern"))) {
        tlm_error_set(err, TLM_EINVAL, "rule %s: \"type\" must be \"threshold\" or \"pattern\"",
                      id);
        goto fail;
    }
    r->pattern = type && !strcmp(type, "pattern");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)doc, k, v) {
        if (!member_known(r->pattern ? pattern_members : threshold_members, k)) {
            tlm_error_set(err, TLM_EINVAL, "rule %s: unknown member \"%s\" for a %s rule", id,
                          k, r->pattern ? "pattern" : "threshold");
            goto fail;
        }
    }
    r->name = opt_string(r->doc, "name", &bad);
    if (bad) {
        tlm_error_set(err, TLM_EINVAL, "rule %s: \"name\" must be a string", id);
        goto fail;
    }
    r->desc = opt_string(r->doc, "description", &bad);
    if (bad) {
        tlm_error_set(err, TLM_EINVAL, "rule %s: \"description\" must be a string", id);
        goto fail;
    }
    /* scope */
    json_t *sc = json_object_get(doc, "scope");
    if (!sc || (json_is_string(sc) && !strcmp(json_string_value(sc), "global"))) {
        r->global = 1;
    } else if (json_is_object(sc) && json_object_size(sc) == 1 &&
               json_is_string(json_object_get(sc, "key"))) {
        json_t *kv = json_object_get(sc, "key");
        r->scope_n = json_string_length(kv);
        r->scope = malloc(r->scope_n + 1);
        if (!r->scope) {
            tlm_error_set(err, TLM_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(r->scope, json_string_value(kv), r->scope_n + 1);
    } else {
        tlm_error_set(err, TLM_EINVAL,
                      "rule %s: \"scope\" must be \"global\" or {\"key\": \"<customer key>\"}",
                      id);
        goto fail;
    }
    /* key field */
    const char *kf = NULL;
    if (json_is_null(json_object_get(doc, "key"))) {
        r->nokey = 1;
        if (!r->global) {
            tlm_error_set(err, TLM_EINVAL, "rule %s: \"key\": null needs the global scope", id);
            goto fail;
        }
    } else {
        kf = opt_string(doc, "key", &bad);
    }
    if (bad) {
        tlm_error_set(err, TLM_EINVAL, "rule %s: \"key\" must be a field path string", id);
        goto fail;
    }
    {
        struct tlm_error e;
        tlm_error_clear(&e);
        if (!r->nokey && parse_field(kf ? kf : rs->key_field, &r->keypath, &e)) {
            tlm_error_set(err, e.code, "rule %s: \"key\": %s", id, e.text);
            goto fail;
        }
    }
    if (r->pattern) {
        if (!json_is_string(json_object_get(doc, "pattern"))) {
            tlm_error_set(err, TLM_EINVAL, "rule %s: a pattern rule needs \"pattern\" (a string)",
                          id);
            goto fail;
        }
        r->pattern_src = json_string_value(json_object_get(r->doc, "pattern"));
        if (json_object_get(doc, "emit") && !json_is_string(json_object_get(doc, "emit"))) {
            tlm_error_set(err, TLM_EINVAL, "rule %s: \"emit\" must be a string", id);
            goto fail;
        }
        if (rs->o.pattern_check) {
            struct tlm_error e;
            tlm_error_clear(&e);
            int rc = rs->o.pattern_check(rs->o.arg, id, r->pattern_src, &e);
            if (rc < 0) {
                tlm_error_set(err, rc, "rule %s: \"pattern\": %s", id, e.text);
                goto fail;
            }
        }
        return r;
    }
    /* threshold */
    json_t *w = json_object_get(doc, "when");
    if (!json_is_string(w)) {
        tlm_error_set(err, TLM_EINVAL,
                      "rule %s: a threshold rule needs \"when\" (a predicate string)", id);
        goto fail;
    }
    {
        struct tlm_error e;
        tlm_error_clear(&e);
        r->when = tlm_expr_compile(json_string_value(w), &e);
        if (!r->when) {
            tlm_error_set(err, e.code, "rule %s: \"when\": %ld: %s", id, e.column, e.text);
            goto fail;
        }
    }
    json_t *t = json_object_get(doc, "threshold");
    if (!json_is_integer(t) || json_integer_value(t) < 1) {
        tlm_error_set(err, TLM_EINVAL, "rule %s: \"threshold\" must be an integer >= 1", id);
        goto fail;
    }
    r->threshold = json_integer_value(t);
    const char *win = opt_string(doc, "window", &bad);
    if (bad) {
        tlm_error_set(err, TLM_EINVAL, "rule %s: \"window\" must be a duration string", id);
        goto fail;
    }
    if (win) {
        struct tlm_error e;
        tlm_error_clear(&e);
        if (tlm_duration_parse(win, &r->window, &e) || r->window <= 0) {
            if (e.text[0])
                tlm_error_set(err, TLM_EINVAL, "rule %s: \"window\": %s", id, e.text);
            else
                tlm_error_set(err, TLM_EINVAL, "rule %s: \"window\" must be longer than 0",
                              id);
            goto fail;
        }
    }
    if (analyse(r)) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        goto fail;
    }
    return r;
fail:
    rule_free(r);
    return NULL;
}

static int jval_time(const struct tlm_jval *v, enum tlm_time_unit unit, tlm_time_t *ts);

/* ---- derived structures ---------------------------------------------------------------- */

static void rvec_free_ptr(void *p)
{
    struct rvec *v = p;
    free(v->v);
    free(v);
}

static void ix_clear(struct ix *x)
{
    rmap_free(&x->eq, rvec_free_ptr);
    for (size_t i = 0; i < x->nrx; i++) {
        free(x->rx[i].lo);
        free(x->rx[i].hi);
    }
    free(x->rx);
    free(x->probe);
    free(x->always.v);
    memset(x, 0, sizeof *x);
}

static void ix_free_ptr(void *p)
{
    ix_clear(p);
    free(p);
}

static void derived_free(struct tlm_rules *rs)
{
    ix_clear(&rs->global);
    rmap_free(&rs->sub, ix_free_ptr);
    rmap_free(&rs->pathmap, NULL);
    tlm_jscan_destroy(rs->scan);
    rs->scan = NULL;
    free(rs->paths);
    free(rs->vals);
    free(rs->sv);
    free(rs->stroff);
    free(rs->kps);
    free(rs->dompids);
    rs->dompids = NULL;
    rs->ndom = 0;
    rs->full_dom = 0;
    free(rs->ktext);
    free(rs->klen);
    rs->paths = NULL;
    rs->vals = NULL;
    rs->sv = NULL;
    rs->stroff = NULL;
    rs->kps = NULL;
    rs->ktext = NULL;
    rs->klen = NULL;
    rs->npaths = rs->nkps = rs->nthreshold = 0;
}

/* Returns the id of path p, adding it (borrowed) if new; UINT32_MAX on ENOMEM. */
static uint32_t path_id(struct tlm_rules *rs, const struct tlm_path *p, size_t *cap)
{
    struct tlm_buf *b = &rs->kb;
    tlm_buf_reset(b);
    for (size_t i = 0; i < p->nseg; i++)
        if (tlm_buf_append(b, p->seg[i], strlen(p->seg[i]) + 1))
            return UINT32_MAX;
    uint64_t h = hbytes(b->data, b->len);
    void *v = rmap_get(&rs->pathmap, b->data, b->len, h);
    if (v)
        return (uint32_t)((uintptr_t)v - 1);
    if (rs->npaths == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        struct tlm_path *np = realloc(rs->paths, c * sizeof *np);
        if (!np)
            return UINT32_MAX;
        rs->paths = np;
        *cap = c;
    }
    uint32_t id = (uint32_t)rs->npaths;
    rs->paths[rs->npaths++] = *p;
    if (rmap_put(&rs->pathmap, b->data, b->len, h, (void *)(uintptr_t)(id + 1)))
        return UINT32_MAX;
    return id;
}

static int rent_push(struct rent **v, size_t *n, size_t *cap, double c, struct rule *r)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct rent *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return TLM_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[*n].c = c;
    (*v)[*n].r = r;
    (*n)++;
    return 0;
}

static int rent_cmp(const void *a, const void *b)
{
    const struct rent *x = a, *y = b;
    if (x->c != y->c)
        return x->c < y->c ? -1 : 1;
    return x->r->seq < y->r->seq ? -1 : x->r->seq > y->r->seq;
}

static int range_add(struct ix *x, const struct atom *a, struct rule *r)
{
    size_t i;
    for (i = 0; i < x->nrx && x->rx[i].pid != a->pid; i++)
        ;
    if (i == x->nrx) {
        struct rix *n = realloc(x->rx, (x->nrx + 1) * sizeof *n);
        if (!n)
            return TLM_ENOMEM;
        x->rx = n;
        memset(&x->rx[x->nrx], 0, sizeof *x->rx);
        x->rx[x->nrx++].pid = a->pid;
    }
    struct rix *q = &x->rx[i];
    if (a->op == T_GT || a->op == T_GE)
        return rent_push(&q->lo, &q->nlo, &q->caplo, a->c[0].d, r);
    return rent_push(&q->hi, &q->nhi, &q->caphi, a->c[0].d, r);
}

static void range_sort(struct ix *x)
{
    for (size_t i = 0; i < x->nrx; i++) {
        if (x->rx[i].nlo > 1)
            qsort(x->rx[i].lo, x->rx[i].nlo, sizeof *x->rx[i].lo, rent_cmp);
        if (x->rx[i].nhi > 1)
            qsort(x->rx[i].hi, x->rx[i].nhi, sizeof *x->rx[i].hi, rent_cmp);
    }
}

static int ix_add(struct tlm_rules *rs, struct ix *x, struct rule *r)
{
    if (r->anchor < 0)
        return rvec_push(&x->always, r);
    struct atom *a = &r->atoms[r->anchor];
    if (a->kind == A_CMP && a->op != T_EQ)
        return range_add(x, a, r);
    for (size_t i = 0; i < a->nc; i++) {
        if (!sv_canon(&a->c[i], a->pid, &rs->kb))
            return TLM_ENOMEM;
        uint64_t h = hbytes(rs->kb.data, rs->kb.len);
        struct rvec *v = rmap_get(&x->eq, rs->kb.data, rs->kb.len, h);
        if (!v) {
            v = calloc(1, sizeof *v);
            if (!v || rmap_put(&x->eq, rs->kb.data, rs->kb.len, h, v)) {
                free(v);
                return TLM_ENOMEM;
            }
            size_t j;
            for (j = 0; j < x->nprobe && x->probe[j] != a->pid; j++)
                ;
            if (j == x->nprobe) {
                uint32_t *p = realloc(x->probe, (x->nprobe + 1) * sizeof *p);
                if (!p)
                    return TLM_ENOMEM;
                x->probe = p;
                x->probe[x->nprobe++] = a->pid;
            }
        }
        if (v->n && v->v[v->n - 1] == r)
            continue; /* two literals with one canonical key (1 and 1.0) */
        if (rvec_push(v, r))
            return TLM_ENOMEM;
    }
    return 0;
}

static int rebuild(struct tlm_rules *rs)
{
    derived_free(rs);
    size_t cap = 0;
    for (size_t i = 0; i < rs->n; i++) {
        struct rule *r = rs->rules[i];
        if (r->pattern)
            continue;
        rs->nthreshold++;
        r->kpid = NOKEY;
        if (!r->nokey && (r->kpid = path_id(rs, &r->keypath, &cap)) == UINT32_MAX)
            return TLM_ENOMEM;
        size_t j;
        for (j = 0; j < rs->nkps && rs->kps[j] != r->kpid; j++)
            ;
        if (j == rs->nkps && !r->nokey) {
            uint32_t *k = realloc(rs->kps, (rs->nkps + 1) * sizeof *k);
            if (!k)
                return TLM_ENOMEM;
            rs->kps = k;
            rs->kps[rs->nkps++] = r->kpid;
        }
        for (size_t a = 0; a < r->natoms; a++)
            if ((r->atoms[a].pid = path_id(rs, &r->atoms[a].path, &cap)) == UINT32_MAX)
                return TLM_ENOMEM;
        if (r->simple)
            continue;
        /* a non-simple rule is evaluated on a DOM holding only the fields it reads */
        const struct tlm_path *rp;
        long nrp = tlm_expr_root_paths(r->when, &rp);
        if (nrp < 0) {
            rs->full_dom = 1;
            continue;
        }
        for (long k = 0; k < nrp; k++) {
            uint32_t pid = path_id(rs, &rp[k], &cap);
            if (pid == UINT32_MAX)
                return TLM_ENOMEM;
            size_t di;
            for (di = 0; di < rs->ndom && rs->dompids[di] != pid; di++)
                ;
            if (di < rs->ndom)
                continue;
            uint32_t *d = realloc(rs->dompids, (rs->ndom + 1) * sizeof *d);
            if (!d)
                return TLM_ENOMEM;
            rs->dompids = d;
            rs->dompids[rs->ndom++] = pid;
        }
    }
    /* drop DOM paths that have another DOM path as a prefix (its value holds them) */
    size_t nd = 0;
    for (size_t i = 0; i < rs->ndom; i++) {
        const struct tlm_path *p = &rs->paths[rs->dompids[i]];
        int covered = 0;
        for (size_t j = 0; j < rs->ndom && !covered; j++) {
            const struct tlm_path *q = &rs->paths[rs->dompids[j]];
            if (j == i || q->nseg >= p->nseg)
                continue;
            covered = 1;
            for (size_t k = 0; k < q->nseg && covered; k++)
                covered = !strcmp(p->seg[k], q->seg[k]);
        }
        if (!covered)
            rs->dompids[nd++] = rs->dompids[i];
    }
    rs->ndom = nd;
    if (rs->nthreshold == 0)
        return 0;
    rs->scan = tlm_jscan_create(rs->paths, rs->npaths);
    rs->vals = calloc(rs->npaths, sizeof *rs->vals);
    rs->sv = calloc(rs->npaths, sizeof *rs->sv);
    rs->stroff = calloc(rs->npaths, sizeof *rs->stroff);
    rs->ktext = calloc(rs->npaths, sizeof *rs->ktext);
    rs->klen = calloc(rs->npaths, sizeof *rs->klen);
    if (!rs->scan || !rs->vals || !rs->sv || !rs->stroff || !rs->ktext || !rs->klen)
        return TLM_ENOMEM;
    for (size_t i = 0; i < rs->n; i++) {
        struct rule *r = rs->rules[i];
        if (r->pattern)
            continue;
        struct ix *x = &rs->global;
        if (!r->global) {
            tlm_buf_reset(&rs->kb);
            if (tlm_buf_append(&rs->kb, &r->kpid, sizeof r->kpid) ||
                tlm_buf_append(&rs->kb, r->scope, r->scope_n))
                return TLM_ENOMEM;
            uint64_t h = hbytes(rs->kb.data, rs->kb.len);
            x = rmap_get(&rs->sub, rs->kb.data, rs->kb.len, h);
            if (!x) {
                x = calloc(1, sizeof *x);
                if (!x || rmap_put(&rs->sub, rs->kb.data, rs->kb.len, h, x)) {
                    free(x);
                    return TLM_ENOMEM;
                }
            }
        }
        if (ix_add(rs, x, r))
            return TLM_ENOMEM;
    }
    range_sort(&rs->global);
    for (size_t i = 0; i < rs->sub.cap; i++)
        if (rs->sub.e[i].k)
            range_sort(rs->sub.e[i].v);
    return 0;
}

/* ---- engine ---------------------------------------------------------------------------- */

struct tlm_rules *tlm_rules_create(const struct tlm_rules_opts *o, struct tlm_error *err)
{
    struct tlm_rules *rs = calloc(1, sizeof *rs);
    if (!rs) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    if (o)
        rs->o = *o;
    rs->key_field = strdup(o && o->key_field ? o->key_field : "customerId");
    rs->time_field = strdup(o && o->time_field ? o->time_field : "timestamp");
    rs->time_unit = o ? o->time_unit : TLM_UNIT_AUTO;
    rs->out_unit = o && o->out_unit != TLM_UNIT_AUTO ? o->out_unit : TLM_UNIT_MS;
    rs->naive = o ? o->naive : 0;
    rs->wm = TLM_TIME_MIN;
    rs->next_expiry = TLM_TIME_MAX;
    rs->o.key_field = rs->o.time_field = NULL;
    if (!rs->key_field || !rs->time_field) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        tlm_rules_destroy(rs);
        return NULL;
    }
    if (parse_field(rs->key_field, &rs->key_default, err) ||
        parse_field(rs->time_field, &rs->time_path, err)) {
        tlm_rules_destroy(rs);
        return NULL;
    }
    return rs;
}

void tlm_rules_destroy(struct tlm_rules *rs)
{
    if (!rs)
        return;
    derived_free(rs);
    for (size_t i = 0; i < rs->n; i++)
        rule_free(rs->rules[i]);
    free(rs->rules);
    for (size_t i = 0; i < rs->npend; i++)
        json_decref(rs->pend[i].msg);
    free(rs->pend);
    rmap_free(&rs->byid, NULL);
    path_free(&rs->key_default, 1);
    path_free(&rs->time_path, 1);
    free(rs->key_field);
    free(rs->time_field);
    tlm_buf_free(&rs->strs);
    tlm_buf_free(&rs->kb);
    tlm_buf_free(&rs->ck);
    free(rs->cand.v);
    free(rs->m);
    json_decref(rs->dom);
    free(rs);
}

static struct rule *find(const struct tlm_rules *rs, const char *id)
{
    size_t n = strlen(id);
    return rmap_get(&rs->byid, id, n, hbytes(id, n));
}

/* Rebuilds the id map (after a delete; rmap has no removal). */
static int reindex_ids(struct tlm_rules *rs)
{
    rmap_free(&rs->byid, NULL);
    for (size_t i = 0; i < rs->n; i++) {
        const char *id = rs->rules[i]->id;
        size_t n = strlen(id);
        if (rmap_put(&rs->byid, id, n, hbytes(id, n), rs->rules[i]))
            return TLM_ENOMEM;
    }
    return 0;
}

static void notify(struct tlm_rules *rs, enum tlm_rules_change what, const struct rule *r,
                   const char *id)
{
    if (rs->o.on_change)
        rs->o.on_change(rs->o.arg, what, id, r ? r->doc : NULL);
}

/* Attaches new rule r (id absent) at the end of rule order. */
static int attach(struct tlm_rules *rs, struct rule *r)
{
    if (rs->n == rs->cap) {
        size_t c = rs->cap ? rs->cap * 2 : 16;
        struct rule **v = realloc(rs->rules, c * sizeof *v);
        if (!v)
            return TLM_ENOMEM;
        rs->rules = v;
        rs->cap = c;
    }
    size_t n = strlen(r->id);
    if (rmap_put(&rs->byid, r->id, n, hbytes(r->id, n), r))
        return TLM_ENOMEM;
    r->seq = rs->next_seq++;
    rs->rules[rs->n++] = r;
    return 0;
}

/* Puts r in place of old (same id): keeps the slot and seq, drops old and its state. */
static int swap_in(struct tlm_rules *rs, struct rule *old, struct rule *r)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->rules[i] == old) {
            rs->rules[i] = r;
            r->seq = old->seq;
            size_t n = strlen(r->id);
            struct ment *e = rmap_slot(&rs->byid, r->id, n, hbytes(r->id, n));
            e->v = r; /* the id is the same: its entry exists */
            rule_free(old);
            return 0;
        }
    return TLM_ENOTFOUND;
}

static void detach(struct tlm_rules *rs, struct rule *old)
{
    size_t j = 0;
    for (size_t i = 0; i < rs->n; i++)
        if (rs->rules[i] != old)
            rs->rules[j++] = rs->rules[i];
    rs->n = j;
    rule_free(old);
}

static void recompute_expiry(struct tlm_rules *rs);

/* After a change: the derived structures are rebuilt before the next event (lazily, so
 * that loading a snapshot of many rules rebuilds once). */
static int finish(struct tlm_rules *rs, int rc, struct tlm_error *err)
{
    (void)err;
    recompute_expiry(rs);
    rs->dirty = 1;
    return rc;
}

int tlm_rules_validate(struct tlm_rules *rs, const json_t *doc, struct tlm_error *err)
{
    struct rule *r = rule_parse(rs, doc, err);
    if (!r)
        return err ? err->code : TLM_EINVAL;
    rule_free(r);
    return 0;
}

static int do_change(struct tlm_rules *rs, const json_t *doc, int mode, struct tlm_error *err)
{
    /* mode: 0 add, 1 replace, 2 upsert */
    struct rule *r = rule_parse(rs, doc, err);
    if (!r)
        return err && err->code ? err->code : TLM_EINVAL;
    struct rule *old = find(rs, r->id);
    if (old && mode == 0) {
        tlm_error_set(err, TLM_EINVAL, "rule %s: add of an id that exists (use replace)",
                      r->id);
        rule_free(r);
        return TLM_EINVAL;
    }
    if (!old && mode == 1) {
        tlm_error_set(err, TLM_ENOTFOUND, "rule %s: replace of an unknown id", r->id);
        rule_free(r);
        return TLM_ENOTFOUND;
    }
    int rc;
    enum tlm_rules_change what;
    if (old) {
        rc = swap_in(rs, old, r);
        what = TLM_RULES_REPLACED;
        if (rc == 0)
            notify(rs, TLM_RULES_REPLACED, r, r->id);
    } else {
        rc = attach(rs, r);
        what = TLM_RULES_ADDED;
        if (rc)
            rule_free(r);
        else
            notify(rs, TLM_RULES_ADDED, r, r->id);
    }
    if (rc)
        return finish(rs, tlm_error_set(err, TLM_ENOMEM, "out of memory"), err);
    return finish(rs, (int)what, err);
}

int tlm_rules_add(struct tlm_rules *rs, const json_t *doc, struct tlm_error *err)
{
    return do_change(rs, doc, 0, err);
}

int tlm_rules_replace(struct tlm_rules *rs, const json_t *doc, struct tlm_error *err)
{
    return do_change(rs, doc, 1, err);
}

int tlm_rules_delete(struct tlm_rules *rs, const char *id, struct tlm_error *err)
{
    struct rule *old = find(rs, id);
    if (!old)
        return tlm_error_set(err, TLM_ENOTFOUND, "rule %s: delete of an unknown id", id);
    char *keep = strdup(id);
    detach(rs, old);
    int rc = reindex_ids(rs);
    if (keep)
        notify(rs, TLM_RULES_DELETED, NULL, keep);
    free(keep);
    if (rc)
        return finish(rs, tlm_error_set(err, TLM_ENOMEM, "out of memory"), err);
    return finish(rs, TLM_RULES_DELETED, err);
}

/* Checks control message m (an object without "at") and, when apply, applies it. Returns
 * the change (> 0; 0 when only checked) or a negative code with err filled. */
static int control_msg(struct tlm_rules *rs, json_t *m, int apply, struct tlm_error *err)
{
    const char *k;
    json_t *v;
    const char *op = json_is_object(m) ? json_string_value(json_object_get(m, "op")) : NULL;
    if (!op)
        return tlm_error_set(err, TLM_EINVAL, "control message: \"op\" must be one of add, "
                                              "replace, upsert, delete");
    int del = !strcmp(op, "delete");
    json_object_foreach(m, k, v) {
        if (strcmp(k, "op") && strcmp(k, del ? "id" : "rule"))
            return tlm_error_set(err, TLM_EINVAL,
                                 "control message: unknown member \"%s\" for op %s", k, op);
    }
    if (del) {
        json_t *id = json_object_get(m, "id");
        if (!json_is_string(id))
            return tlm_error_set(err, TLM_EINVAL,
                                 "control message: delete needs \"id\" (a string)");
        return apply ? tlm_rules_delete(rs, json_string_value(id), err) : 0;
    }
    int mode = !strcmp(op, "add")       ? 0
               : !strcmp(op, "replace") ? 1
               : !strcmp(op, "upsert")  ? 2
                                        : -1;
    if (mode < 0)
        return tlm_error_set(err, TLM_EINVAL, "control message: unknown op \"%s\"", op);
    json_t *doc = json_object_get(m, "rule");
    if (!json_is_object(doc))
        return tlm_error_set(err, TLM_EINVAL, "control message: %s needs \"rule\" (an object)",
                             op);
    if (!apply) {
        int rc = tlm_rules_validate(rs, doc, err);
        return rc < 0 ? rc : 0;
    }
    return do_change(rs, doc, mode, err);
}

static int pend_push(struct tlm_rules *rs, tlm_time_t at, json_t *m)
{
    if (rs->npend == rs->pcap) {
        size_t c = rs->pcap ? rs->pcap * 2 : 8;
        struct pend *p = realloc(rs->pend, c * sizeof *p);
        if (!p)
            return TLM_ENOMEM;
        rs->pend = p;
        rs->pcap = c;
    }
    /* keep (at, arrival) order: insert after every entry with at <= this one */
    size_t i = rs->npend;
    while (i > 0 && rs->pend[i - 1].at > at)
        i--;
    memmove(rs->pend + i + 1, rs->pend + i, (rs->npend - i) * sizeof *rs->pend);
    rs->pend[i].at = at;
    rs->pend[i].msg = m;
    rs->npend++;
    return 0;
}

int tlm_rules_control(struct tlm_rules *rs, const char *msg, size_t n, struct tlm_error *err)
{
    json_error_t je;
    json_t *m = json_loadb(msg, n, 0, &je);
    if (!m) {
        tlm_error_set(err, TLM_EPARSE, "control message: %s", je.text);
        if (err)
            err->column = je.column;
        return TLM_EPARSE;
    }
    json_t *at = json_is_object(m) ? json_object_get(m, "at") : NULL;
    if (!at) {
        int rc = control_msg(rs, m, 1, err);
        json_decref(m);
        return rc;
    }
    tlm_time_t t;
    struct tlm_jval tv = { TLM_JNONE, NULL, 0, 0 };
    char *txt = json_dumps(at, JSON_ENCODE_ANY | JSON_COMPACT);
    if (txt) {
        tv.p = txt;
        tv.n = strlen(txt);
        tv.type = json_is_integer(at) ? TLM_JINT : json_is_real(at) ? TLM_JREAL
                  : json_is_string(at) ? TLM_JSTRING : TLM_JNONE;
        tv.escaped = json_is_string(at) && strchr(txt, '\\') != NULL;
    }
    int bad = !txt || jval_time(&tv, rs->time_unit, &t);
    free(txt);
    if (bad) {
        json_decref(m);
        return tlm_error_set(err, TLM_EINVAL,
                             "control message: \"at\" must be an event time (a number in the "
                             "time unit or an RFC 3339 string)");
    }
    json_object_del(m, "at");
    int rc = control_msg(rs, m, 0, err);
    if (rc == 0 && pend_push(rs, t, m))
        rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (rc < 0) {
        json_decref(m);
        return rc;
    }
    return TLM_RULES_QUEUED;
}

int tlm_rules_due(struct tlm_rules *rs, tlm_time_t ts, struct tlm_error *err)
{
    int applied = 0;
    while (rs->npend && rs->pend[0].at <= ts) {
        json_t *m = rs->pend[0].msg;
        rs->npend--;
        memmove(rs->pend, rs->pend + 1, rs->npend * sizeof *rs->pend);
        int rc = control_msg(rs, m, 1, err);
        json_decref(m);
        if (rc < 0)
            return rc;
        applied++;
    }
    return applied;
}

size_t tlm_rules_pending(const struct tlm_rules *rs)
{
    return rs->npend;
}

/* ---- reload --------------------------------------------------------------------------- */

static int set_line_err(struct tlm_error *err, const char *source, long long line)
{
    if (err) {
        tlm_error_at(err, source, line, err->column, -1);
        return err->code ? err->code : TLM_EINVAL;
    }
    return TLM_EINVAL;
}

int tlm_rules_reload(struct tlm_rules *rs, const char *text, size_t n, const char *source,
                     struct tlm_error *err)
{
    struct rule **nr = NULL;
    struct rmap ids = { NULL, 0, 0 }; /* id -> 1-based index in nr */
    long long *lines = NULL;
    size_t nn = 0, cap = 0;
    int rc = 0;
    json_t *arr = NULL;
    size_t i = 0;
    while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (i < n && text[i] == '[') {
        json_error_t je;
        arr = json_loadb(text, n, 0, &je);
        if (!arr) {
            tlm_error_set(err, TLM_EPARSE, "invalid JSON: %s", je.text);
            if (err)
                tlm_error_at(err, source, je.line, je.column, -1);
            return TLM_EPARSE;
        }
    }
    size_t total = arr ? json_array_size(arr) : 0;
    const char *p = text, *end = text + n;
    long long lineno = 0;
    for (size_t ai = 0;; ai++) {
        json_t *doc = NULL;
        long long at;
        if (arr) {
            if (ai >= total)
                break;
            doc = json_incref(json_array_get(arr, ai));
            at = 0;
        } else {
            if (p >= end)
                break;
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            lineno++;
            at = lineno;
            const char *q = p;
            p = nl ? nl + 1 : end;
            while (q < le && (*q == ' ' || *q == '\t' || *q == '\r'))
                q++;
            if (q == le || *q == '#')
                continue;
            json_error_t je;
            doc = json_loadb(q, (size_t)(le - q), 0, &je);
            if (!doc) {
                rc = tlm_error_set(err, TLM_EPARSE, "invalid JSON: %s", je.text);
                if (err)
                    tlm_error_at(err, source, at, je.column, -1);
                goto fail;
            }
        }
        struct rule *r = rule_parse(rs, doc, err);
        json_decref(doc);
        if (!r) {
            rc = set_line_err(err, source, at);
            goto fail;
        }
        size_t idn = strlen(r->id);
        uint64_t idh = hbytes(r->id, idn);
        void *prev = rmap_get(&ids, r->id, idn, idh);
        if (prev) {
            rc = tlm_error_set(err, TLM_EINVAL, "rule %s: duplicate id (also at rule %zu)",
                               r->id, (size_t)((uintptr_t)prev));
            rule_free(r);
            set_line_err(err, source, at);
            goto fail;
        }
        if (rmap_put(&ids, r->id, idn, idh, (void *)(uintptr_t)(nn + 1))) {
            rule_free(r);
            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
            goto fail;
        }
        if (nn == cap) {
            cap = cap ? cap * 2 : 16;
            struct rule **v = realloc(nr, cap * sizeof *v);
            long long *l = realloc(lines, cap * sizeof *l);
            if (v)
                nr = v;
            if (l)
                lines = l;
            if (!v || !l) {
                rule_free(r);
                rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
                goto fail;
            }
        }
        lines[nn] = at;
        nr[nn++] = r;
    }
    json_decref(arr);
    arr = NULL;
    /* apply: deletions, then replacements and additions in file order */
    int changed = 0;
    for (size_t k = 0; k < rs->n;) {
        struct rule *old = rs->rules[k];
        size_t idn = strlen(old->id);
        if (!rmap_get(&ids, old->id, idn, hbytes(old->id, idn))) {
            char *id = strdup(old->id);
            detach(rs, old);
            if (id)
                notify(rs, TLM_RULES_DELETED, NULL, id);
            free(id);
            changed++;
        } else {
            k++;
        }
    }
    if (reindex_ids(rs))
        goto nomem;
    for (size_t j = 0; j < nn; j++) {
        struct rule *old = find(rs, nr[j]->id);
        struct rule *r = nr[j];
        nr[j] = NULL;
        if (old && json_equal(old->doc, r->doc)) {
            rule_free(r);
            continue;
        }
        changed++;
        if (old) {
            if (swap_in(rs, old, r))
                goto nomem;
            notify(rs, TLM_RULES_REPLACED, r, r->id);
        } else {
            if (attach(rs, r)) {
                rule_free(r);
                goto nomem;
            }
            notify(rs, TLM_RULES_ADDED, r, r->id);
        }
    }
    free(nr);
    free(lines);
    rmap_free(&ids, NULL);
    return finish(rs, changed, err);
nomem:
    rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
fail:
    for (size_t j = 0; j < nn; j++)
        rule_free(nr[j]);
    free(nr);
    free(lines);
    rmap_free(&ids, NULL);
    json_decref(arr);
    if (rc == TLM_ENOMEM)
        return finish(rs, rc, err);
    return rc;
}

/* ---- per-event evaluation -------------------------------------------------------------- */

/* Decodes the scanned values into rs->sv. Returns 0 or TLM_ENOMEM. */
static int decode(struct tlm_rules *rs)
{
    tlm_buf_reset(&rs->strs);
    for (size_t i = 0; i < rs->npaths; i++) {
        const struct tlm_jval *v = &rs->vals[i];
        struct sval *s = &rs->sv[i];
        rs->stroff[i] = SIZE_MAX;
        switch (v->type) {
        case TLM_JSTRING:
            s->t = V_STR;
            if (!v->escaped) {
                s->s = v->p + 1;
                s->n = v->n - 2;
            } else {
                size_t off = rs->strs.len;
                if (tlm_jval_string(v, &rs->strs))
                    return TLM_ENOMEM;
                rs->stroff[i] = off;
                s->n = rs->strs.len - off;
            }
            break;
        case TLM_JINT:
            s->t = V_INT;
            if (tlm_jval_int64(v, &s->i))
                s->i = 0;
            s->d = (double)s->i;
            break;
        case TLM_JREAL:
            s->t = V_REAL;
            if (tlm_jval_double(v, &s->d))
                s->d = 0;
            break;
        case TLM_JTRUE: s->t = V_TRUE; break;
        case TLM_JFALSE: s->t = V_FALSE; break;
        case TLM_JNULL: s->t = V_NULL; break;
        case TLM_JNONE: s->t = V_NONE; break;
        default: s->t = V_OTHER; break;
        }
    }
    for (size_t i = 0; i < rs->npaths; i++)
        if (rs->stroff[i] != SIZE_MAX)
            rs->sv[i].s = rs->strs.data + rs->stroff[i];
    /* key texts */
    for (size_t k = 0; k < rs->nkps; k++) {
        uint32_t pid = rs->kps[k];
        const struct sval *s = &rs->sv[pid];
        if (s->t == V_NONE) {
            rs->ktext[pid] = NULL;
        } else if (s->t == V_STR) {
            rs->ktext[pid] = s->s;
            rs->klen[pid] = s->n;
        } else {
            rs->ktext[pid] = rs->vals[pid].p;
            rs->klen[pid] = rs->vals[pid].n;
        }
    }
    return 0;
}

static int atom_eval(const struct atom *a, const struct sval *sv)
{
    const struct sval *v = &sv[a->pid];
    switch (a->kind) {
    case A_CMP:
        return sv_cmp_op(a->op, v, &a->c[0]);
    case A_IN:
        for (size_t i = 0; i < a->nc; i++)
            if (sv_eq(v, &a->c[i]))
                return 1;
        return 0;
    default:
        return v->t != V_NONE && v->t != V_FALSE && v->t != V_NULL;
    }
}

/* Builds an object holding only the DOM paths' values of the current event: what the
 * non-simple rules read (tlm_expr_root_paths), so they evaluate exactly as on the whole
 * document. Returns a new object or NULL on ENOMEM. */
static json_t *sparse_dom(struct tlm_rules *rs)
{
    json_t *root = json_object();
    for (size_t i = 0; root && i < rs->ndom; i++) {
        uint32_t pid = rs->dompids[i];
        if (rs->vals[pid].type == TLM_JNONE)
            continue;
        const struct tlm_path *p = &rs->paths[pid];
        json_t *o = root;
        for (size_t k = 0; o && k + 1 < p->nseg; k++) {
            json_t *c = json_object_get(o, p->seg[k]);
            if (!c) {
                c = json_object();
                if (json_object_set_new(o, p->seg[k], c))
                    c = NULL;
            }
            o = c;
        }
        json_t *v = tlm_jval_to_json(&rs->vals[pid]);
        if (!o || !v || json_object_set_new(o, p->seg[p->nseg - 1], v)) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

/* Evaluates r's predicate on the current event. Returns 1 or 0. */
static int rule_test(struct tlm_rules *rs, struct rule *r, const char *line, size_t len,
                     int naive)
{
    rs->st.candidates++;
    if (r->simple && !naive) {
        for (size_t i = 0; i < r->natoms; i++)
            if (!atom_eval(&r->atoms[i], rs->sv))
                return 0;
        return 1;
    }
    if (!rs->dom) {
        rs->dom = naive || rs->full_dom ? json_loadb(line, len, 0, NULL) : sparse_dom(rs);
        rs->st.dom_parses++;
        if (!rs->dom)
            return 0;
    }
    int t = tlm_expr_test(r->when, rs->dom, NULL, NULL);
    if (t < 0) {
        rs->st.eval_errors++;
        return 0;
    }
    return t;
}

static int put_time(struct tlm_rules *rs, struct tlm_buf *b, const char *name, tlm_time_t t)
{
    return tlm_buf_printf(b, ",\"%s\":", name) ||
           tlm_json_put_int(b, tlm_time_to_unit(t, rs->out_unit));
}

static int alert(struct tlm_rules *rs, const struct rule *r, const char *key, size_t kn,
                 const struct kstate *s, tlm_time_t ts, int replay, struct tlm_buf *out)
{
    int rc = tlm_buf_puts(out, "{\"rule\":");
    rc = rc || tlm_json_put_string(out, r->id, strlen(r->id));
    if (r->name)
        rc = rc || tlm_buf_puts(out, ",\"name\":") ||
             tlm_json_put_string(out, r->name, strlen(r->name));
    if (r->desc)
        rc = rc || tlm_buf_puts(out, ",\"description\":") ||
             tlm_json_put_string(out, r->desc, strlen(r->desc));
    rc = rc || tlm_buf_puts(out, ",\"key\":") ||
         (r->nokey ? tlm_buf_puts(out, "null") : tlm_json_put_string(out, key, kn));
    rc = rc || tlm_buf_puts(out, ",\"count\":") || tlm_json_put_int(out, s->count);
    rc = rc || tlm_buf_puts(out, ",\"threshold\":") || tlm_json_put_int(out, r->threshold);
    if (r->window) {
        rc = rc || put_time(rs, out, "window_start", s->wstart);
        rc = rc || put_time(rs, out, "window_end", s->wstart + r->window);
    }
    rc = rc || put_time(rs, out, "time", ts);
    if (replay)
        rc = rc || tlm_buf_puts(out, ",\"replay\":true");
    rc = rc || tlm_buf_puts(out, "}\n");
    if (rc)
        return TLM_ENOMEM;
    rs->st.alerts++;
    return 1;
}

/* Has the window [ws, ws + w) been closed by watermark wm (Flink: its last timestamp
 * ws + w - 1 is at or below the watermark)? */
static int window_closed(tlm_time_t wm, tlm_time_t ws, int64_t w)
{
    return wm != TLM_TIME_MIN && wm >= TLM_TIME_MIN + w && ws <= wm - (w - 1);
}

/* A state of window ws of r now exists: lower r's and the engine's next cleanup time. */
static void note_open(struct tlm_rules *rs, struct rule *r, tlm_time_t ws)
{
    if (ws < r->min_open) {
        r->min_open = ws;
        tlm_time_t end = ws > TLM_TIME_MAX - r->window ? TLM_TIME_MAX : ws + r->window - 1;
        if (end < rs->next_expiry)
            rs->next_expiry = end;
    }
}

static tlm_time_t window_of(tlm_time_t ts, int64_t w)
{
    tlm_time_t q = ts / w;
    if (ts % w < 0)
        q--;
    return q * w;
}

/* Builds the state key of (r, key) for an event at ts in rs->ck (the key text, then for a
 * windowed rule the window start) and returns its hash. Returns 0 and leaves *ck NULL on
 * ENOMEM. */
static uint64_t state_key(struct tlm_rules *rs, const struct rule *r, const char *key,
                          size_t kn, tlm_time_t ts, const char **ck, size_t *ckn)
{
    if (!r->window) {
        *ck = key;
        *ckn = kn;
        return hbytes(key, kn);
    }
    tlm_time_t ws = window_of(ts, r->window);
    tlm_buf_reset(&rs->ck);
    if (tlm_buf_append(&rs->ck, key, kn) || tlm_buf_append(&rs->ck, &ws, sizeof ws)) {
        *ck = NULL;
        return 0;
    }
    *ck = rs->ck.data;
    *ckn = rs->ck.len;
    return hbytes(*ck, *ckn);
}

/* Counts the event for (r, key); h is the hash of its state key (state_key). Returns 1 if
 * an alert was written, 0, or TLM_ENOMEM. */
static int count(struct tlm_rules *rs, struct rule *r, const char *key, size_t kn,
                 tlm_time_t ts, uint64_t h, int replay, struct tlm_buf *out)
{
    int isnew;
    const char *ck = key;
    size_t ckn = kn;
    tlm_time_t ws = TLM_TIME_MIN;
    if (r->window) {
        ws = window_of(ts, r->window);
        if (!replay && window_closed(rs->wm, ws, r->window)) {
            rs->st.late++;
            return 0;
        }
        state_key(rs, r, key, kn, ts, &ck, &ckn);
        if (!ck)
            return TLM_ENOMEM;
    }
    struct kstate *s = smap_get(&r->state, ck, ckn, h, &isnew);
    if (!s)
        return TLM_ENOMEM;
    if (isnew) {
        s->tn = (uint32_t)kn;
        s->wstart = ws;
        if (r->window)
            note_open(rs, r, ws);
    }
    rs->st.matched++;
    if (s->count < LLONG_MAX)
        s->count++;
    if (!s->fired && s->count >= r->threshold) {
        s->fired = 1;
        return alert(rs, r, key, kn, s, ts, replay, out);
    }
    return 0;
}

static int cand_push(struct tlm_rules *rs, struct rule *r, uint32_t kp)
{
    if (rs->cand.n == rs->mcap) {
        size_t c = rs->mcap ? rs->mcap * 2 : 64;
        struct match *m = realloc(rs->m, c * sizeof *m);
        if (!m)
            return TLM_ENOMEM;
        rs->m = m;
        rs->mcap = c;
    }
    rs->m[rs->cand.n].r = r;
    rs->m[rs->cand.n].kp = kp;
    rs->cand.n++;
    return 0;
}

static int probe(struct tlm_rules *rs, const struct ix *x)
{
    for (size_t i = 0; i < x->nprobe; i++) {
        uint32_t pid = x->probe[i];
        if (!sv_canon(&rs->sv[pid], pid, &rs->kb))
            continue;
        const struct rvec *v = rmap_get(&x->eq, rs->kb.data, rs->kb.len,
                                        hbytes(rs->kb.data, rs->kb.len));
        if (v)
            for (size_t j = 0; j < v->n; j++)
                if (cand_push(rs, v->v[j], v->v[j]->kpid))
                    return TLM_ENOMEM;
    }
    for (size_t i = 0; i < x->nrx; i++) {
        const struct rix *q = &x->rx[i];
        const struct sval *v = &rs->sv[q->pid];
        if (!sv_num(v))
            continue; /* a number constant is ordered only against a number */
        double d = v->d;
        /* lo: the prefix with c <= d (a superset of c < d or c <= d, also for integers
         * compared exactly, as rounding to double is monotonic) */
        size_t lo = 0, hi = q->nlo;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (q->lo[mid].c <= d)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t j = 0; j < lo; j++)
            if (cand_push(rs, q->lo[j].r, q->lo[j].r->kpid))
                return TLM_ENOMEM;
        /* hi: the suffix with c >= d */
        lo = 0;
        hi = q->nhi;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (q->hi[mid].c < d)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t j = lo; j < q->nhi; j++)
            if (cand_push(rs, q->hi[j].r, q->hi[j].r->kpid))
                return TLM_ENOMEM;
    }
    for (size_t j = 0; j < x->always.n; j++)
        if (cand_push(rs, x->always.v[j], x->always.v[j]->kpid))
            return TLM_ENOMEM;
    return 0;
}

static int by_seq(const void *a, const void *b)
{
    const struct match *x = a, *y = b;
    return x->r->seq < y->r->seq ? -1 : x->r->seq > y->r->seq;
}

/* The key text of the current event for r: 1 with *k, *kn set, or 0 when absent. */
static int rule_key(const struct tlm_rules *rs, const struct rule *r, const char **k,
                    size_t *kn)
{
    if (r->nokey) {
        *k = "";
        *kn = 0;
        return 1;
    }
    *k = rs->ktext[r->kpid];
    *kn = rs->klen[r->kpid];
    return *k != NULL;
}

static int in_scope(const struct tlm_rules *rs, const struct rule *r)
{
    if (r->nokey)
        return 1;
    const char *k = rs->ktext[r->kpid];
    if (!k)
        return 0;
    return r->global || (rs->klen[r->kpid] == r->scope_n && !memcmp(k, r->scope, r->scope_n));
}

/* Processes one event for all rules, or for rule only. */
static int process(struct tlm_rules *rs, const char *line, size_t len, tlm_time_t ts,
                   struct rule *only, int replay, struct tlm_buf *out, struct tlm_error *err)
{
    if (rs->dirty) {
        if (rebuild(rs))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        rs->dirty = 0;
    }
    if (rs->nthreshold == 0)
        return 0;
    int rc = tlm_jscan_run(rs->scan, line, len, rs->vals, err);
    if (rc)
        return rc;
    if (decode(rs))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    rs->cand.n = 0;
    if (only) {
        if (in_scope(rs, only) && cand_push(rs, only, only->kpid))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    } else if (rs->naive) {
        for (size_t i = 0; i < rs->n; i++) {
            struct rule *r = rs->rules[i];
            if (!r->pattern && in_scope(rs, r) && cand_push(rs, r, r->kpid))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
    } else {
        if (probe(rs, &rs->global))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        for (size_t k = 0; k < rs->nkps && rs->sub.n; k++) {
            uint32_t pid = rs->kps[k];
            if (!rs->ktext[pid])
                continue;
            tlm_buf_reset(&rs->kb);
            if (tlm_buf_append(&rs->kb, &pid, sizeof pid) ||
                tlm_buf_append(&rs->kb, rs->ktext[pid], rs->klen[pid]))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            const struct ix *x = rmap_get(&rs->sub, rs->kb.data, rs->kb.len,
                                          hbytes(rs->kb.data, rs->kb.len));
            if (x && probe(rs, x))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
    }
    /* evaluate; keep the matches in place */
    size_t nm = 0;
    for (size_t i = 0; i < rs->cand.n; i++) {
        struct rule *r = rs->m[i].r;
        const char *k;
        size_t kn;
        if (!rule_key(rs, r, &k, &kn))
            continue; /* global rule, event without its key */
        if (replay && rs->replay_keep && !rs->replay_keep(rs->replay_arg, k, kn))
            continue; /* a key another engine counts */
        if (rule_test(rs, r, line, len, rs->naive && !only))
            rs->m[nm++] = rs->m[i];
    }
    if (nm > 1 && !rs->naive && !only)
        qsort(rs->m, nm, sizeof *rs->m, by_seq);
    /* the state look-ups are cache misses: hash all, prefetch the slots, then the states */
    for (size_t i = 0; i < nm; i++) {
        struct rule *r = rs->m[i].r;
        const char *k, *ck;
        size_t kn, ckn;
        rule_key(rs, r, &k, &kn);
        rs->m[i].h = state_key(rs, r, k, kn, ts, &ck, &ckn);
        if (!ck)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (nm > 1 && r->state.cap)
            __builtin_prefetch(&r->state.e[rs->m[i].h & (r->state.cap - 1)]);
    }
    for (size_t i = 0; nm > 1 && i < nm; i++) {
        const struct rule *r = rs->m[i].r;
        if (r->state.cap)
            __builtin_prefetch(r->state.e[rs->m[i].h & (r->state.cap - 1)].s);
    }
    int alerts = 0;
    for (size_t i = 0; i < nm; i++) {
        struct rule *r = rs->m[i].r;
        const char *k;
        size_t kn;
        rule_key(rs, r, &k, &kn);
        rc = count(rs, r, k, kn, ts, rs->m[i].h, replay, out);
        if (rc < 0) {
            alerts = tlm_error_set(err, TLM_ENOMEM, "out of memory");
            break;
        }
        alerts += rc;
    }
    json_decref(rs->dom);
    rs->dom = NULL;
    return alerts;
}

int tlm_rules_event(struct tlm_rules *rs, const char *line, size_t len, tlm_time_t ts,
                    struct tlm_buf *out, struct tlm_error *err)
{
    rs->st.events++;
    return process(rs, line, len, ts, NULL, 0, out, err);
}

/* ---- replay ---------------------------------------------------------------------------- */

static int jval_time(const struct tlm_jval *v, enum tlm_time_unit unit, tlm_time_t *ts)
{
    long long i;
    double d;
    switch (v->type) {
    case TLM_JINT:
        return tlm_jval_int64(v, &i) || tlm_time_from_int(i, unit, ts, NULL) ? -1 : 0;
    case TLM_JREAL:
        return tlm_jval_double(v, &d) || tlm_time_from_double(d, unit, ts, NULL) ? -1 : 0;
    case TLM_JSTRING: {
        struct tlm_buf s = TLM_BUF_INIT;
        int rc = tlm_jval_string(v, &s);
        if (rc == 0)
            rc = tlm_time_parse_rfc3339(s.data ? s.data : "", s.len, ts, NULL);
        tlm_buf_free(&s);
        return rc ? -1 : 0;
    }
    default:
        return -1;
    }
}

void tlm_rules_set_replay_filter(struct tlm_rules *rs,
                                 int (*keep)(void *arg, const char *key, size_t n), void *arg)
{
    rs->replay_keep = keep;
    rs->replay_arg = arg;
}

int tlm_rules_replay(struct tlm_rules *rs, const char *id, const char *const *paths, size_t n,
                     tlm_time_t until, struct tlm_buf *out, struct tlm_rules_replay_info *info,
                     struct tlm_error *err)
{
    struct tlm_rules_replay_info dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof *info);
    struct rule *r = find(rs, id);
    if (!r)
        return tlm_error_set(err, TLM_ENOTFOUND, "rule %s: replay of an unknown id", id);
    if (r->pattern)
        return tlm_error_set(err, TLM_EINVAL, "rule %s: replay of a pattern rule", id);
    struct tlm_jscan *ts_scan = tlm_jscan_create(&rs->time_path, 1);
    struct tlm_reader *rd = tlm_reader_create(paths, n);
    if (!ts_scan || !rd) {
        tlm_jscan_destroy(ts_scan);
        tlm_reader_destroy(rd);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    long long matched0 = rs->st.matched, late0 = rs->st.late;
    int alerts = 0, rc = 0;
    for (;;) {
        const char *line;
        size_t len;
        rc = tlm_reader_next(rd, &line, &len, -1, err);
        if (rc <= 0)
            break;
        rc = 0;
        struct tlm_jval tv;
        tlm_time_t ts;
        if (len == 0 || tlm_json_is_watermark(line, len, NULL))
            continue;
        if (tlm_jscan_run(ts_scan, line, len, &tv, NULL) ||
            jval_time(&tv, rs->time_unit, &ts)) {
            info->skipped++;
            continue;
        }
        if (ts > until) {
            info->after++;
            continue;
        }
        info->read++;
        rc = process(rs, line, len, ts, r, 1, out, err);
        if (rc < 0)
            break;
        alerts += rc;
        rc = 0;
    }
    info->counted = rs->st.matched - matched0 + (rs->st.late - late0);
    info->alerts = alerts;
    tlm_reader_destroy(rd);
    tlm_jscan_destroy(ts_scan);
    return rc < 0 ? rc : alerts;
}

/* ---- snapshots ------------------------------------------------------------------------- */

int tlm_rules_save(struct tlm_rules *rs, struct tlm_snap_writer *w, struct tlm_error *err)
{
    for (size_t i = 0; i < rs->n; i++) {
        json_t *rec = json_pack("{sO}", "rule", rs->rules[i]->doc);
        if (!rec)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        int rc = tlm_snap_put(w, rec, err);
        json_decref(rec);
        if (rc)
            return rc;
    }
    if (rs->wm != TLM_TIME_MIN) {
        json_t *rec = json_pack("{sI}", "watermark", (json_int_t)rs->wm);
        int rc = rec ? tlm_snap_put(w, rec, err) : tlm_error_set(err, TLM_ENOMEM, "out of memory");
        json_decref(rec);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < rs->npend; i++) {
        json_t *rec = json_pack("{s{sIsO}}", "pending", "at", (json_int_t)rs->pend[i].at, "msg",
                                rs->pend[i].msg);
        if (!rec)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        int rc = tlm_snap_put(w, rec, err);
        json_decref(rec);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < rs->n; i++) {
        struct rule *r = rs->rules[i];
        for (size_t j = 0; j < r->state.cap; j++) {
            const struct kstate *s = r->state.e[j].s;
            if (!s)
                continue;
            json_t *rec = json_pack("{s{ss,ss%,sI,so,sb}}", "state", "id", r->id, "key", s->k,
                                    (size_t)s->tn, "count", (json_int_t)s->count, "window",
                                    s->wstart == TLM_TIME_MIN ? json_null()
                                                              : json_integer(s->wstart),
                                    "fired", s->fired);
            if (!rec)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            int rc = tlm_snap_put(w, rec, err);
            json_decref(rec);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Forgets every rule, state and queued message (a snapshot replaces them). */
static void clear_all(struct tlm_rules *rs)
{
    size_t n = rs->n;
    rs->n = 0;
    for (size_t i = 0; i < n; i++) {
        notify(rs, TLM_RULES_DELETED, NULL, rs->rules[i]->id);
        rule_free(rs->rules[i]);
    }
    for (size_t i = 0; i < rs->npend; i++)
        json_decref(rs->pend[i].msg);
    rs->npend = 0;
    rmap_free(&rs->byid, NULL);
    rs->wm = TLM_TIME_MIN;
    finish(rs, 0, NULL);
}

static int is_ours(const json_t *rec)
{
    return json_object_size(rec) == 1 &&
           (json_object_get(rec, "rule") || json_object_get(rec, "state") ||
            json_object_get(rec, "pending") || json_object_get(rec, "watermark"));
}

int tlm_rules_load(struct tlm_rules *rs, const json_t *rec, struct tlm_error *err)
{
    if (!is_ours(rec))
        return 0;
    if (!rs->loading) {
        clear_all(rs);
        rs->loading = 1;
    }
    json_t *doc = json_object_get(rec, "rule");
    if (doc && json_object_size(rec) == 1) {
        struct tlm_error e;
        tlm_error_clear(&e);
        if (tlm_rules_add(rs, doc, &e) < 0)
            return tlm_error_set(err, TLM_ESTATE, "snapshot: %s", e.text);
        return 1;
    }
    json_t *wmv = json_object_get(rec, "watermark");
    if (wmv && json_object_size(rec) == 1) {
        if (!json_is_integer(wmv))
            return tlm_error_set(err, TLM_ESTATE, "snapshot: malformed rules watermark record");
        rs->wm = json_integer_value(wmv);
        return 1;
    }
    json_t *pd = json_object_get(rec, "pending");
    if (pd && json_object_size(rec) == 1) {
        json_t *at = json_object_get(pd, "at"), *m = json_object_get(pd, "msg");
        if (!json_is_integer(at) || !json_is_object(m))
            return tlm_error_set(err, TLM_ESTATE, "snapshot: malformed pending control record");
        if (pend_push(rs, json_integer_value(at), json_incref(m))) {
            json_decref(m);
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        return 1;
    }
    json_t *st = json_object_get(rec, "state");
    if (!st || json_object_size(rec) != 1)
        return 0;
    json_t *id = json_object_get(st, "id"), *key = json_object_get(st, "key");
    json_t *cnt = json_object_get(st, "count"), *win = json_object_get(st, "window");
    json_t *fired = json_object_get(st, "fired");
    if (!json_is_string(id) || !json_is_string(key) || !json_is_integer(cnt) ||
        !(json_is_null(win) || json_is_integer(win)) || !json_is_boolean(fired))
        return tlm_error_set(err, TLM_ESTATE, "snapshot: malformed rules state record");
    struct rule *r = find(rs, json_string_value(id));
    if (!r || r->pattern)
        return tlm_error_set(err, TLM_ESTATE, "snapshot: state of unknown rule %s",
                             json_string_value(id));
    const char *k = json_string_value(key);
    size_t kn = json_string_length(key);
    if (!r->window != json_is_null(win))
        return tlm_error_set(err, TLM_ESTATE, "snapshot: rule %s: window state mismatch", r->id);
    tlm_time_t ws = json_is_null(win) ? TLM_TIME_MIN : json_integer_value(win);
    tlm_buf_reset(&rs->ck);
    if (tlm_buf_append(&rs->ck, k, kn) ||
        (r->window && tlm_buf_append(&rs->ck, &ws, sizeof ws)))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    int isnew;
    struct kstate *s = smap_get(&r->state, rs->ck.data, rs->ck.len,
                                hbytes(rs->ck.data, rs->ck.len), &isnew);
    if (!s)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (!isnew)
        return tlm_error_set(err, TLM_ESTATE, "snapshot: rule %s: key %s twice", r->id, k);
    s->tn = (uint32_t)kn;
    s->count = json_integer_value(cnt);
    s->wstart = ws;
    s->fired = json_is_true(fired);
    if (r->window)
        note_open(rs, r, ws);
    return 1;
}

/* ---- accessors ------------------------------------------------------------------------- */

/* Keeps the states of r whose window is still open at rs->wm; returns how many were dropped. */
static long long compact(struct tlm_rules *rs, struct rule *r)
{
    struct smap nm = { NULL, 0, 0 };
    long long dropped = 0;
    r->min_open = TLM_TIME_MAX;
    size_t keep = 0;
    for (size_t i = 0; i < r->state.cap; i++)
        if (r->state.e[i].s && !window_closed(rs->wm, r->state.e[i].s->wstart, r->window))
            keep++;
    size_t cap = 8;
    while (cap < keep * 2 + 2)
        cap *= 2;
    nm.e = calloc(cap, sizeof *nm.e);
    if (!nm.e)
        return 0; /* keep everything; try again at the next watermark */
    nm.cap = cap;
    for (size_t i = 0; i < r->state.cap; i++) {
        struct kstate *s = r->state.e[i].s;
        if (!s)
            continue;
        if (window_closed(rs->wm, s->wstart, r->window)) {
            free(s);
            dropped++;
            continue;
        }
        *smap_slot(&nm, s->k, s->kn, r->state.e[i].h) = r->state.e[i];
        nm.n++;
        if (s->wstart < r->min_open)
            r->min_open = s->wstart;
    }
    free(r->state.e);
    r->state = nm;
    return dropped;
}

static void recompute_expiry(struct tlm_rules *rs)
{
    rs->next_expiry = TLM_TIME_MAX;
    for (size_t i = 0; i < rs->n; i++) {
        const struct rule *r = rs->rules[i];
        if (r->pattern || !r->window || r->min_open == TLM_TIME_MAX)
            continue;
        tlm_time_t end = r->min_open > TLM_TIME_MAX - r->window ? TLM_TIME_MAX
                                                                : r->min_open + r->window - 1;
        if (end < rs->next_expiry)
            rs->next_expiry = end;
    }
}

long long tlm_rules_watermark(struct tlm_rules *rs, tlm_time_t wm)
{
    if (wm <= rs->wm)
        return 0;
    rs->wm = wm;
    if (wm < rs->next_expiry)
        return 0;
    long long dropped = 0;
    for (size_t i = 0; i < rs->n; i++) {
        struct rule *r = rs->rules[i];
        if (!r->pattern && r->window && r->min_open != TLM_TIME_MAX &&
            window_closed(wm, r->min_open, r->window))
            dropped += compact(rs, r);
    }
    recompute_expiry(rs);
    rs->st.expired += dropped;
    return dropped;
}

void tlm_rules_set_out_unit(struct tlm_rules *rs, enum tlm_time_unit unit)
{
    rs->out_unit = unit == TLM_UNIT_AUTO ? TLM_UNIT_MS : unit;
}

size_t tlm_rules_count(const struct tlm_rules *rs)
{
    return rs->n;
}

const char *tlm_rules_id(const struct tlm_rules *rs, size_t i)
{
    return i < rs->n ? rs->rules[i]->id : NULL;
}

const json_t *tlm_rules_doc(const struct tlm_rules *rs, size_t i)
{
    return i < rs->n ? rs->rules[i]->doc : NULL;
}

int tlm_rules_is_pattern(const struct tlm_rules *rs, size_t i)
{
    return i < rs->n && rs->rules[i]->pattern;
}

void tlm_rules_get_stats(const struct tlm_rules *rs, struct tlm_rules_stats *s)
{
    *s = rs->st;
    s->indexed = s->unindexed = s->keys = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const struct rule *r = rs->rules[i];
        if (r->pattern)
            continue;
        if (r->anchor >= 0)
            s->indexed++;
        else
            s->unindexed++;
        s->keys += (long long)r->state.n;
    }
}
