/*
 * agg.c - the aggregate functions of `telem window --agg` (see agg.h for the semantics).
 *
 * Design. tlm_aggs_create parses the spec by hand (items, parenthesised argument lists split
 * at top-level commas outside brackets and string literals, `as` aliases) and compiles each
 * distinct argument text once with tlm_expr_compile. Aggregates do not own state directly:
 * they point at "slots", and a slot is keyed by (kind, argument), so aggregates over one
 * argument share it: sum/avg/min/max/stddev(x) one numeric slot, p50/p99/quantile(x, q) one
 * sketch. Slots are laid out back to back (8-byte aligned) in the caller's state block; an
 * all-zero block is the empty state, so init is a memset.
 *
 * Per event, tlm_aggs_add first resolves every argument into a struct aval (present?
 * number? raw text? hash?) - from the raw jscan span for plain field references (no
 * jansson, no allocation) or by tlm_expr_eval on the partial object for computed ones - and
 * only then updates the slots, so that an evaluation error leaves the state untouched.
 *
 * Numeric slot: count, an exact int64 sum while every value is a JSON integer and the sum
 * does not overflow, a Neumaier-compensated double sum, min/max, and Welford's mean/M2
 * (Chan et al.'s pairwise formula for merges). Rate slot: first sample, a committed summary
 * (last committed sample, sum of increases) and a short ordered tail of the latest samples
 * that absorbs bounded disorder. Distinct slot: a sorted array of 64-bit hashes (exact) that
 * becomes a HyperLogLog past TLM_AGG_DISTINCT_EXACT values. first/last: event time plus a
 * heap copy of the value's JSON text, reused (grown only) as the value changes.
 *
 * Invariants: a slot's bytes are only touched through its kind's struct; an exact distinct
 * set is sorted ascending without duplicates and holds <= TLM_AGG_DISTINCT_EXACT hashes; a
 * rate tail is sorted by time (ties in arrival order) and, when has != 0, every tail time is
 * > tc; a text slot with n == 0 holds no value (valid JSON is never empty).
 *
 * References: Welford 1962 and Chan, Golub, LeVeque 1979 (variance updates); Neumaier 1974
 * (compensated summation); Prometheus rate()/increase() (counter resets); Flajolet et al.
 * 2007 (HyperLogLog); Dunning and Ertl, "Computing extremely accurate quantiles using
 * t-digests" (tdigest.h); Masson, Rim, Lee, "DDSketch" (ddsketch.h).
 */
#include "agg.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsketch.h"
#include "expr.h"
#include "hll.h"
#include "jwrite.h"
#include "tdigest.h"

/* ---- compiled list -------------------------------------------------------------------- */

enum fn { F_COUNT, F_SUM, F_MIN, F_MAX, F_AVG, F_STDDEV, F_FIRST, F_LAST, F_RATE,
          F_DISTINCT, F_QUANTILE };

enum slot_kind { K_COUNT, K_COUNTX, K_NUM, K_QUANT, K_FIRST, K_LAST, K_RATE, K_DISTINCT };

/* what a slot needs from its argument per event */
#define NEED_NUM 1u   /* the numeric value */
#define NEED_RAW 2u   /* the JSON text */
#define NEED_HASH 4u  /* the distinct hash */

/* numeric slot flags */
#define NUM_MINMAX 1u
#define NUM_M2 2u

static const struct fninfo {
    const char *name;
    int fn;
    int minargs, maxargs;
} fntab[] = {
    { "count", F_COUNT, 0, 1 },   { "sum", F_SUM, 1, 1 },           { "min", F_MIN, 1, 1 },
    { "max", F_MAX, 1, 1 },       { "avg", F_AVG, 1, 1 },           { "stddev", F_STDDEV, 1, 1 },
    { "first", F_FIRST, 1, 1 },   { "last", F_LAST, 1, 1 },         { "rate", F_RATE, 1, 1 },
    { "distinct", F_DISTINCT, 1, 1 }, { "quantile", F_QUANTILE, 2, 2 },
};

struct arg {
    char *text;          /* trimmed argument text (owned) */
    struct tlm_expr *e;  /* compiled (owned) */
    long path;           /* index into paths when a plain field reference, else -1 */
    unsigned need;       /* NEED_* of the slots using it */
};

struct slot {
    int kind;            /* enum slot_kind */
    int arg;             /* index into args, -1 for K_COUNT */
    unsigned flags;      /* K_NUM: NUM_* */
    size_t off;          /* byte offset in the state block */
};

struct agg {
    int fn;              /* enum fn */
    int slot;            /* index into slots */
    double q;            /* F_QUANTILE: level */
    char *name;          /* output name (owned) */
    char *prefix;        /* `,"name":` already escaped (owned) */
    size_t prefixlen;
};

struct tlm_aggs {
    struct agg aggs[TLM_AGG_MAX];
    size_t naggs;
    struct arg args[TLM_AGG_MAX_ARGS];
    size_t nargs;
    struct slot slots[TLM_AGG_MAX];
    size_t nslots;
    struct tlm_path *paths;  /* union of root paths; seg arrays borrowed from the exprs */
    long npaths;             /* -1: some argument needs the whole event */
    int needs_json;          /* some argument is computed */
    size_t size;             /* state block bytes */
    struct tlm_aggs_opts o;  /* with defaults filled in */
    char sig[4 * TLM_AGG_MAX + 8]; /* slot layout signature, checked by load */
};

/* ---- state structs (one per slot kind) -------------------------------------------------- */

struct num_st {
    int64_t n;        /* numeric values seen */
    int64_t isum;     /* exact sum while !inexact */
    double sum, comp; /* Neumaier: the sum is sum + comp */
    double min, max;  /* valid when n > 0 and NUM_MINMAX */
    double mean, m2;  /* Welford, when NUM_M2 */
    uint32_t inexact; /* a non-integer came, or isum overflowed */
    uint32_t pad;
};

struct text_st {
    int64_t ts;       /* event time of the value */
    char *p;          /* JSON text, cap bytes (owned) */
    uint32_t n, cap;  /* n == 0: no value */
};

struct rate_pt {
    int64_t t;
    double v;
};

struct rate_st {
    int64_t t0, tc;    /* first and last committed sample times (when has) */
    double v0, vc;     /* their values */
    double inc;        /* sum of increases over the committed samples */
    uint32_t has;      /* committed summary present */
    uint32_t ntail;
    struct rate_pt tail[TLM_AGG_RATE_TAIL]; /* latest samples, ordered by time */
};

#define DIST_HLL UINT32_MAX
struct dist_st {
    void *p;          /* uint64_t[cap] sorted hashes, or struct tlm_hll * when cap == DIST_HLL */
    uint32_t n, cap;
};

static size_t kind_size(int kind)
{
    switch (kind) {
    case K_COUNT:
    case K_COUNTX: return sizeof(uint64_t);
    case K_NUM: return sizeof(struct num_st);
    case K_QUANT: return sizeof(void *);
    case K_FIRST:
    case K_LAST: return sizeof(struct text_st);
    case K_RATE: return sizeof(struct rate_st);
    default: return sizeof(struct dist_st);
    }
}

/* ---- small helpers ---------------------------------------------------------------------- */

static int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_id0(int c)
{
    return isalpha(c) || c == '_';
}

static int is_id(int c)
{
    return isalnum(c) || c == '_';
}

static int parse_error(struct tlm_error *err, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int parse_error(struct tlm_error *err, size_t pos, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = TLM_EPARSE;
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
        err->column = (long)pos + 1;
    }
    return TLM_EPARSE;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The digits of a level in p-names: the shortest decimal that reads back to q, without the
 * "0." and trailing zeros, at least two digits (0.5 -> "50", 0.999 -> "999", 0.05 -> "05"). */
static void level_digits(double q, char *out, size_t outn)
{
    char b[400];
    for (int prec = 1; prec < 350; prec++) {
        snprintf(b, sizeof b, "%.*f", prec, q);
        if (strtod(b, NULL) == q)
            break;
    }
    size_t len = strlen(b);
    while (len > 2 && b[len - 1] == '0')
        len--;
    const char *d = b + 2; /* after "0." */
    size_t dn = len > 2 ? len - 2 : 0;
    snprintf(out, outn, "%.*s%s", (int)dn, d, dn < 2 ? "0" : "");
}

/* Appends to name the argument text made name-safe (see agg.h). */
static void append_safe(char *name, size_t cap, const char *arg)
{
    size_t n = strlen(name);
    int gen = 1; /* the '_' at the end of name was generated (the separator) */
    for (const char *s = arg; *s && n + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '_') {
            name[n++] = (char)c;
            gen = 0;
        } else if (n == 0 || name[n - 1] != '_') {
            name[n++] = '_';
            gen = 1;
        }
    }
    if (gen && n > 0 && name[n - 1] == '_')
        n--;
    name[n] = '\0';
}

/* Is text a plain member reference ("a.b", "$.a.b") equal to path p? */
static int plain_ref(const char *text, const struct tlm_path *p)
{
    const char *s = text;
    if (s[0] == '$' && s[1] == '.')
        s += 2;
    for (size_t i = 0; i < p->nseg; i++) {
        if (i) {
            if (*s != '.')
                return 0;
            s++;
        }
        if (!is_id0((unsigned char)*s))
            return 0;
        size_t n = 1;
        while (is_id((unsigned char)s[n]))
            n++;
        if (strlen(p->seg[i]) != n || memcmp(p->seg[i], s, n) != 0)
            return 0;
        s += n;
    }
    return *s == '\0';
}

static int path_eq(const struct tlm_path *a, const struct tlm_path *b)
{
    if (a->nseg != b->nseg)
        return 0;
    for (size_t i = 0; i < a->nseg; i++)
        if (strcmp(a->seg[i], b->seg[i]) != 0)
            return 0;
    return 1;
}

/* is a a proper prefix of b? */
static int path_prefix(const struct tlm_path *a, const struct tlm_path *b)
{
    if (a->nseg >= b->nseg)
        return 0;
    for (size_t i = 0; i < a->nseg; i++)
        if (strcmp(a->seg[i], b->seg[i]) != 0)
            return 0;
    return 1;
}

/* ---- sketches (t-digest or DDSketch behind one face) ------------------------------------ */

static void *sk_create(const struct tlm_aggs *a)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        return tlm_ddsketch_create(a->o.alpha);
    return tlm_tdigest_create(a->o.compression);
}

static void sk_destroy(const struct tlm_aggs *a, void *s)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        tlm_ddsketch_destroy(s);
    else
        tlm_tdigest_destroy(s);
}

static int sk_add(const struct tlm_aggs *a, void *s, double x)
{
    int rc = a->o.sketch == TLM_AGGS_DDSKETCH ? tlm_ddsketch_add(s, x) : tlm_tdigest_add(s, x);
    return rc == TLM_ENOMEM ? rc : 0; /* non-finite values are not ours to report */
}

static int sk_merge(const struct tlm_aggs *a, void *d, const void *s)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        return tlm_ddsketch_merge(d, s);
    return tlm_tdigest_merge(d, s);
}

static double sk_quantile(const struct tlm_aggs *a, void *s, double q)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        return tlm_ddsketch_quantile(s, q);
    return tlm_tdigest_quantile(s, q);
}

static size_t sk_bytes(const struct tlm_aggs *a, const void *s)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        return tlm_ddsketch_bytes(s);
    return tlm_tdigest_bytes(s);
}

static int sk_write(const struct tlm_aggs *a, const void *s, struct tlm_buf *out)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        return tlm_ddsketch_write(s, out);
    return tlm_tdigest_write(s, out);
}

static void *sk_read(const struct tlm_aggs *a, const char *p, size_t n, struct tlm_error *err)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        return tlm_ddsketch_read(p, n, err);
    return tlm_tdigest_read(p, n, err);
}

/* ---- parsing ---------------------------------------------------------------------------- */

struct span {
    size_t pos, len; /* trimmed text in spec */
};

static int find_slot(struct tlm_aggs *a, int kind, int arg)
{
    for (size_t i = 0; i < a->nslots; i++)
        if (a->slots[i].kind == kind && a->slots[i].arg == arg)
            return (int)i;
    a->slots[a->nslots].kind = kind;
    a->slots[a->nslots].arg = arg;
    a->slots[a->nslots].flags = 0;
    return (int)a->nslots++;
}

/* Finds or compiles the argument spec[s.pos .. +s.len). Returns its index or a negative code. */
static int add_arg(struct tlm_aggs *a, const char *spec, struct span s, struct tlm_error *err)
{
    for (size_t i = 0; i < a->nargs; i++)
        if (strlen(a->args[i].text) == s.len && memcmp(a->args[i].text, spec + s.pos, s.len) == 0)
            return (int)i;
    if (a->nargs == TLM_AGG_MAX_ARGS)
        return parse_error(err, s.pos, "too many distinct arguments (at most %d)",
                           TLM_AGG_MAX_ARGS);
    char *text = dupn(spec + s.pos, s.len);
    if (!text)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    struct tlm_error e;
    tlm_error_clear(&e);
    struct tlm_expr *x = tlm_expr_compile(text, &e);
    if (!x) {
        free(text);
        if (e.code == TLM_ENOMEM)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return parse_error(err, s.pos + (e.column > 0 ? (size_t)e.column - 1 : 0), "%s", e.text);
    }
    a->args[a->nargs].text = text;
    a->args[a->nargs].e = x;
    a->args[a->nargs].path = -1;
    a->args[a->nargs].need = 0;
    return (int)a->nargs++;
}

/* Splits the argument list after '(' at *pos. Stores up to 4 trimmed spans; returns their
 * count (an empty list "()" gives 0) and leaves *pos after ')', or a negative code. */
static int split_args(const char *spec, size_t *pos, size_t open, struct span *out, int maxn,
                      struct tlm_error *err)
{
    size_t p = *pos, start = p;
    int n = 0, depth = 0;
    for (;;) {
        char c = spec[p];
        if (c == '\0')
            return parse_error(err, open, "expected ')' to close this '('");
        if (c == '\'' || c == '"') {
            p++;
            while (spec[p] && spec[p] != c) {
                if (spec[p] == '\\' && spec[p + 1])
                    p++;
                p++;
            }
            if (!spec[p])
                return parse_error(err, open, "expected ')' to close this '('");
            p++;
            continue;
        }
        if (c == '(' || c == '[' || c == '{')
            depth++;
        else if ((c == ')' || c == ']' || c == '}') && depth > 0)
            depth--;
        else if ((c == ',' || c == ')') && depth == 0) {
            size_t b = start, e = p;
            while (b < e && is_blank((unsigned char)spec[b]))
                b++;
            while (e > b && is_blank((unsigned char)spec[e - 1]))
                e--;
            if (b == e && !(c == ')' && n == 0))
                return parse_error(err, b, "empty argument");
            if (b < e) {
                if (n == maxn)
                    return parse_error(err, b, "too many arguments");
                out[n].pos = b;
                out[n].len = e - b;
                n++;
            }
            p++;
            start = p;
            if (c == ')')
                break;
            continue;
        }
        p++;
    }
    *pos = p;
    return n;
}

static const char expected_list[] =
    "expected count, sum, min, max, avg, stddev, first, last, rate, distinct, quantile or "
    "p<digits> (p50, p90, p99, p999)";

static int parse_item(struct tlm_aggs *a, const char *spec, size_t *ppos, struct tlm_error *err)
{
    size_t pos = *ppos, item = pos;
    if (!is_id0((unsigned char)spec[pos]))
        return parse_error(err, pos, "expected an aggregate name; %s", expected_list);
    size_t nlen = 1;
    while (is_id((unsigned char)spec[pos + nlen]))
        nlen++;
    char fname[64];
    snprintf(fname, sizeof fname, "%.*s", (int)(nlen < 63 ? nlen : 63), spec + pos);
    for (char *c = fname; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    const struct fninfo *fi = NULL;
    struct fninfo pinfo = { NULL, F_QUANTILE, 1, 1 };
    double q = 0;
    for (size_t i = 0; i < sizeof fntab / sizeof fntab[0]; i++)
        if (nlen < 63 && strcmp(fname, fntab[i].name) == 0)
            fi = &fntab[i];
    if (!fi && fname[0] == 'p' && nlen >= 2 && nlen < 40 &&
        strspn(fname + 1, "0123456789") == nlen - 1) {
        char lv[72];
        snprintf(lv, sizeof lv, "0.%s", fname + 1);
        q = strtod(lv, NULL);
        if (!(q > 0 && q < 1))
            return parse_error(err, item, "quantile level must be in (0,1): '%s' is 0", fname);
        if (nlen > 3 && fname[nlen - 1] == '0')
            return parse_error(err, item,
                               "ambiguous quantile name '%s': p<digits> means 0.<digits>, so "
                               "write it without the trailing zero (use max for the maximum)",
                               fname);
        pinfo.name = fname;
        fi = &pinfo;
    }
    if (!fi)
        return parse_error(err, item, "unknown aggregate '%.*s'; %s", (int)nlen, spec + pos,
                           expected_list);
    pos += nlen;
    while (is_blank((unsigned char)spec[pos]))
        pos++;

    struct span av[4];
    int na = 0;
    size_t open = pos;
    if (spec[pos] == '(') {
        pos++;
        na = split_args(spec, &pos, open, av, 4, err);
        if (na < 0)
            return na;
    }
    if (na < fi->minargs || na > fi->maxargs) {
        const char *what = fi->maxargs == 2 ? "two arguments: quantile(expr, level)"
                           : fi->minargs == 0 ? "at most one argument"
                                              : "one argument";
        return parse_error(err, spec[open] == '(' ? open : item, "%s %s %s", fname,
                           fi->minargs == 0 ? "takes" : "needs", what);
    }
    if (fi->fn == F_QUANTILE && fi->maxargs == 2) {
        char lv[64];
        char *end;
        if (av[1].len >= sizeof lv)
            return parse_error(err, av[1].pos, "quantile level must be a number in (0,1)");
        memcpy(lv, spec + av[1].pos, av[1].len);
        lv[av[1].len] = '\0';
        q = strtod(lv, &end);
        if (*end || end == lv || !isdigit((unsigned char)lv[0]))
            return parse_error(err, av[1].pos, "quantile level must be a number in (0,1)");
        if (!(q > 0 && q < 1))
            return parse_error(err, av[1].pos, "quantile level must be in (0,1)");
    }

    /* alias */
    while (is_blank((unsigned char)spec[pos]))
        pos++;
    char *alias = NULL;
    if (tolower((unsigned char)spec[pos]) == 'a' && tolower((unsigned char)spec[pos + 1]) == 's' &&
        !is_id((unsigned char)spec[pos + 2])) {
        size_t as = pos;
        pos += 2;
        while (is_blank((unsigned char)spec[pos]))
            pos++;
        size_t b = pos, len = 0;
        if (spec[pos] == '"') {
            b = ++pos;
            while (spec[pos] && spec[pos] != '"' && spec[pos] != '\\')
                pos++;
            if (spec[pos] != '"' || pos == b)
                return parse_error(err, b - 1, "expected a name in double quotes after 'as'");
            len = pos - b;
            pos++;
        } else if (is_id0((unsigned char)spec[pos])) {
            while (is_id((unsigned char)spec[pos]))
                pos++;
            len = pos - b;
        } else {
            return parse_error(err, as, "expected a name after 'as'");
        }
        alias = dupn(spec + b, len);
        if (!alias)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    while (is_blank((unsigned char)spec[pos]))
        pos++;
    if (spec[pos] != '\0' && spec[pos] != ',') {
        free(alias);
        return parse_error(err, pos, "expected ',' or 'as' after %s%s", fname,
                           na ? "(...)" : "");
    }
    if (a->naggs == TLM_AGG_MAX) {
        free(alias);
        return parse_error(err, item, "too many aggregates (at most %d)", TLM_AGG_MAX);
    }

    /* argument, slot and name */
    int argi = -1;
    if (na >= 1) {
        argi = add_arg(a, spec, av[0], err);
        if (argi < 0) {
            free(alias);
            return argi;
        }
    }
    struct agg *g = &a->aggs[a->naggs];
    memset(g, 0, sizeof *g);
    g->fn = fi->fn;
    g->q = q;
    int kind;
    unsigned need = 0, flags = 0;
    switch (fi->fn) {
    case F_COUNT: kind = argi < 0 ? K_COUNT : K_COUNTX; break;
    case F_SUM: case F_AVG: kind = K_NUM; need = NEED_NUM; break;
    case F_MIN: case F_MAX: kind = K_NUM; need = NEED_NUM; flags = NUM_MINMAX; break;
    case F_STDDEV: kind = K_NUM; need = NEED_NUM; flags = NUM_M2; break;
    case F_FIRST: kind = K_FIRST; need = NEED_RAW; break;
    case F_LAST: kind = K_LAST; need = NEED_RAW; break;
    case F_RATE: kind = K_RATE; need = NEED_NUM; break;
    case F_DISTINCT: kind = K_DISTINCT; need = NEED_HASH; break;
    default: kind = K_QUANT; need = NEED_NUM; break;
    }
    g->slot = find_slot(a, kind, argi);
    a->slots[g->slot].flags |= flags;
    if (argi >= 0)
        a->args[argi].need |= need;

    char name[512];
    if (alias) {
        snprintf(name, sizeof name, "%s", alias);
        free(alias);
    } else if (argi < 0) {
        snprintf(name, sizeof name, "%s", fname);
    } else {
        if (fi->fn == F_QUANTILE && fi->maxargs == 2) {
            char d[400];
            level_digits(q, d, sizeof d);
            snprintf(name, sizeof name, "p%s_", d);
        } else {
            snprintf(name, sizeof name, "%s_", fname);
        }
        append_safe(name, sizeof name, a->args[argi].text);
    }
    for (size_t i = 0; i < a->naggs; i++)
        if (strcmp(a->aggs[i].name, name) == 0)
            return parse_error(err, item, "duplicate output name '%s'", name);
    g->name = strdup(name);
    struct tlm_buf pb = TLM_BUF_INIT;
    if (!g->name || tlm_buf_putc(&pb, ',') || tlm_json_put_string(&pb, name, strlen(name)) ||
        tlm_buf_putc(&pb, ':')) {
        free(g->name);
        g->name = NULL;
        tlm_buf_free(&pb);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    g->prefix = pb.data;
    g->prefixlen = pb.len;
    a->naggs++;
    *ppos = pos;
    return 0;
}

/* Builds the union of root paths and finds the fast-path arguments. */
static int resolve_paths(struct tlm_aggs *a)
{
    size_t cap = 0, n = 0;
    struct tlm_path *u = NULL;
    int whole = 0;
    for (size_t i = 0; i < a->nargs && !whole; i++) {
        const struct tlm_path *p;
        long k = tlm_expr_root_paths(a->args[i].e, &p);
        if (k < 0) {
            whole = 1;
            break;
        }
        for (long j = 0; j < k; j++) {
            size_t m;
            for (m = 0; m < n; m++)
                if (path_eq(&u[m], &p[j]))
                    break;
            if (m < n)
                continue;
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 8;
                struct tlm_path *nu = realloc(u, nc * sizeof *nu);
                if (!nu) {
                    free(u);
                    return TLM_ENOMEM;
                }
                u = nu;
                cap = nc;
            }
            u[n++] = p[j];
        }
    }
    if (whole) {
        free(u);
        a->paths = NULL;
        a->npaths = -1;
        a->needs_json = a->nargs > 0;
        return 0;
    }
    /* drop a path that has another as prefix (its value is inside the other's) */
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int sub = 0;
        for (size_t j = 0; j < n && !sub; j++)
            sub = j != i && path_prefix(&u[j], &u[i]);
        if (!sub)
            u[w++] = u[i];
    }
    a->paths = u;
    a->npaths = (long)w;
    for (size_t i = 0; i < a->nargs; i++) {
        const struct tlm_path *p;
        long k = tlm_expr_root_paths(a->args[i].e, &p);
        a->args[i].path = -1;
        if (k == 1 && plain_ref(a->args[i].text, &p[0]))
            for (size_t m = 0; m < w; m++)
                if (path_eq(&u[m], &p[0]))
                    a->args[i].path = (long)m;
        if (a->args[i].path < 0)
            a->needs_json = 1;
    }
    return 0;
}

struct tlm_aggs *tlm_aggs_create(const char *spec, const struct tlm_aggs_opts *o,
                                 struct tlm_error *err)
{
    struct tlm_aggs *a = calloc(1, sizeof *a);
    if (!a) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    if (o)
        a->o = *o;
    if (a->o.compression == 0)
        a->o.compression = TLM_AGGS_DEFAULT_COMPRESSION;
    if (a->o.alpha == 0)
        a->o.alpha = TLM_AGGS_DEFAULT_ALPHA;
    if (a->o.hll_precision == 0)
        a->o.hll_precision = TLM_AGGS_DEFAULT_HLL_PRECISION;
    if (a->o.sketch != TLM_AGGS_TDIGEST && a->o.sketch != TLM_AGGS_DDSKETCH) {
        tlm_error_set(err, TLM_EINVAL, "unknown sketch %d", a->o.sketch);
        goto fail;
    }

    size_t pos = 0;
    for (;;) {
        while (is_blank((unsigned char)spec[pos]))
            pos++;
        if (spec[pos] == '\0' || spec[pos] == ',') {
            parse_error(err, pos,
                        a->naggs ? "expected an aggregate after ','" : "empty aggregate list");
            goto fail;
        }
        if (parse_item(a, spec, &pos, err) < 0)
            goto fail;
        if (spec[pos] == '\0')
            break;
        pos++; /* ',' */
    }

    /* options only matter (and are checked) when something uses them */
    for (size_t i = 0; i < a->nslots; i++) {
        if (a->slots[i].kind == K_QUANT) {
            void *s = sk_create(a);
            if (!s) {
                if (a->o.sketch == TLM_AGGS_DDSKETCH)
                    tlm_error_set(err, TLM_EINVAL, "invalid DDSketch accuracy %g", a->o.alpha);
                else
                    tlm_error_set(err, TLM_EINVAL, "invalid t-digest compression %g (%g to %g)",
                                  a->o.compression, TLM_TDIGEST_MIN_COMPRESSION,
                                  TLM_TDIGEST_MAX_COMPRESSION);
                goto fail;
            }
            sk_destroy(a, s);
            break;
        }
    }
    for (size_t i = 0; i < a->nslots; i++) {
        if (a->slots[i].kind == K_DISTINCT) {
            struct tlm_hll *h = tlm_hll_create(a->o.hll_precision);
            if (!h) {
                tlm_error_set(err, TLM_EINVAL, "invalid HyperLogLog precision %d",
                              a->o.hll_precision);
                goto fail;
            }
            tlm_hll_destroy(h);
            break;
        }
    }

    size_t off = 0, sl = 0;
    for (size_t i = 0; i < a->nslots; i++) {
        static const char kc[] = "cxnqflrd";
        a->slots[i].off = off;
        off += (kind_size(a->slots[i].kind) + 7) & ~(size_t)7;
        const struct slot *s = &a->slots[i];
        sl += (size_t)snprintf(a->sig + sl, sizeof a->sig - sl, "%c%d%s", kc[s->kind], s->arg,
                               s->kind == K_QUANT ? (a->o.sketch ? "d" : "t")
                               : s->kind != K_NUM ? ""
                               : s->flags == (NUM_MINMAX | NUM_M2) ? "mv"
                               : s->flags == NUM_MINMAX ? "m"
                               : s->flags == NUM_M2 ? "v" : "");
    }
    a->size = off;
    if (resolve_paths(a) < 0) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        goto fail;
    }
    return a;
fail:
    tlm_aggs_destroy(a);
    return NULL;
}

void tlm_aggs_destroy(struct tlm_aggs *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->naggs; i++) {
        free(a->aggs[i].name);
        free(a->aggs[i].prefix);
    }
    for (size_t i = 0; i < a->nargs; i++) {
        free(a->args[i].text);
        tlm_expr_destroy(a->args[i].e);
    }
    free(a->paths);
    free(a);
}

size_t tlm_aggs_count(const struct tlm_aggs *a)
{
    return a->naggs;
}

const char *tlm_aggs_name(const struct tlm_aggs *a, size_t i)
{
    return a->aggs[i].name;
}

long tlm_aggs_find(const struct tlm_aggs *a, const char *name)
{
    for (size_t i = 0; i < a->naggs; i++)
        if (strcmp(a->aggs[i].name, name) == 0)
            return (long)i;
    return -1;
}

long tlm_aggs_paths(const struct tlm_aggs *a, const struct tlm_path **paths)
{
    *paths = a->paths;
    return a->npaths;
}

long tlm_aggs_arg_path(const struct tlm_aggs *a, size_t i)
{
    int arg = a->slots[a->aggs[i].slot].arg;
    return arg < 0 ? -2 : a->args[arg].path;
}

int tlm_aggs_has_arg(const struct tlm_aggs *a, size_t i)
{
    return a->slots[a->aggs[i].slot].arg >= 0;
}

int tlm_aggs_needs_json(const struct tlm_aggs *a)
{
    return a->needs_json;
}

json_t *tlm_aggs_partial(const struct tlm_aggs *a, const struct tlm_jval *vals)
{
    if (a->npaths < 0)
        return NULL;
    json_t *root = json_object();
    if (!root)
        return NULL;
    for (long k = 0; k < a->npaths; k++) {
        if (vals[k].type == TLM_JNONE)
            continue;
        const struct tlm_path *p = &a->paths[k];
        json_t *o = root;
        for (size_t s = 0; s + 1 < p->nseg; s++) {
            json_t *c = json_object_get(o, p->seg[s]);
            if (!json_is_object(c)) {
                c = json_object();
                if (!c || json_object_set_new(o, p->seg[s], c))
                    goto fail;
            }
            o = c;
        }
        json_t *v = tlm_jval_to_json(&vals[k]);
        if (!v || json_object_set_new(o, p->seg[p->nseg - 1], v))
            goto fail;
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

size_t tlm_aggs_state_size(const struct tlm_aggs *a)
{
    return a->size;
}

void tlm_aggs_init(const struct tlm_aggs *a, void *state)
{
    memset(state, 0, a->size);
}

/* ---- per-slot operations ---------------------------------------------------------------- */

#define AT(state, sl, type) ((type *)((char *)(state) + (sl)->off))
#define CAT(state, sl, type) ((const type *)((const char *)(state) + (sl)->off))

static void dist_clear(struct dist_st *d)
{
    if (d->cap == DIST_HLL)
        tlm_hll_destroy(d->p);
    else
        free(d->p);
    memset(d, 0, sizeof *d);
}

void tlm_aggs_free(const struct tlm_aggs *a, void *state)
{
    for (size_t i = 0; i < a->nslots; i++) {
        const struct slot *sl = &a->slots[i];
        switch (sl->kind) {
        case K_QUANT: {
            void **p = AT(state, sl, void *);
            if (*p)
                sk_destroy(a, *p);
            break;
        }
        case K_FIRST:
        case K_LAST: free(AT(state, sl, struct text_st)->p); break;
        case K_DISTINCT: dist_clear(AT(state, sl, struct dist_st)); break;
        default: break;
        }
    }
    memset(state, 0, a->size);
}

/* Neumaier: adds x to the compensated sum (sum, comp). */
static inline void ksum_add(double *sum, double *comp, double x)
{
    double t = *sum + x;
    if (fabs(*sum) >= fabs(x))
        *comp += (*sum - t) + x;
    else
        *comp += (x - t) + *sum;
    *sum = t;
}

static inline void num_add(struct num_st *s, unsigned flags, int isint, long long i, double d)
{
    s->n++;
    if (!isint || __builtin_add_overflow(s->isum, (int64_t)i, &s->isum))
        s->inexact = 1;
    ksum_add(&s->sum, &s->comp, d);
    if (flags & NUM_MINMAX) {
        if (s->n == 1) {
            s->min = s->max = d;
        } else {
            if (d < s->min)
                s->min = d;
            if (d > s->max)
                s->max = d;
        }
    }
    if (flags & NUM_M2) {
        double delta = d - s->mean;
        s->mean += delta / (double)s->n;
        s->m2 += delta * (d - s->mean);
    }
}

static void num_merge(struct num_st *d, const struct num_st *s)
{
    if (s->n == 0)
        return;
    if (d->n == 0) {
        *d = *s;
        return;
    }
    int64_t n = d->n + s->n;
    if (s->inexact || __builtin_add_overflow(d->isum, s->isum, &d->isum))
        d->inexact = 1;
    ksum_add(&d->sum, &d->comp, s->sum);
    ksum_add(&d->sum, &d->comp, s->comp);
    if (s->min < d->min)
        d->min = s->min;
    if (s->max > d->max)
        d->max = s->max;
    double delta = s->mean - d->mean;
    d->m2 += s->m2 + delta * delta * ((double)d->n * (double)s->n / (double)n);
    d->mean += delta * ((double)s->n / (double)n);
    d->n = n;
}

static double num_sum(const struct num_st *s)
{
    return s->inexact ? s->sum + s->comp : (double)s->isum;
}

static int text_set(struct text_st *t, int64_t ts, const char *p, size_t n)
{
    if (n > UINT32_MAX - 1)
        return TLM_ENOMEM;
    if (n > t->cap) {
        size_t c = t->cap ? 2 * (size_t)t->cap : 16;
        while (c < n)
            c *= 2;
        if (c > UINT32_MAX)
            c = n;
        char *q = realloc(t->p, c);
        if (!q)
            return TLM_ENOMEM;
        t->p = q;
        t->cap = (uint32_t)c;
    }
    memcpy(t->p, p, n);
    t->n = (uint32_t)n;
    t->ts = ts;
    return 0;
}

/* Prometheus' increase between two consecutive counter samples */
static inline double incr(double prev, double v)
{
    return v >= prev ? v - prev : v;
}

static void rate_commit(struct rate_st *r, int64_t t, double v)
{
    if (!r->has) {
        r->has = 1;
        r->t0 = r->tc = t;
        r->v0 = r->vc = v;
        r->inc = 0;
    } else {
        r->inc += incr(r->vc, v);
        r->tc = t;
        r->vc = v;
    }
}

static void rate_add(struct rate_st *r, int64_t t, double v)
{
    if (r->has && t <= r->tc) {
        if (t < r->t0) { /* before everything: prepend exactly */
            r->inc += incr(v, r->v0);
            r->t0 = t;
            r->v0 = v;
        }
        return; /* inside the committed range: ignored (see agg.h) */
    }
    if (r->ntail == TLM_AGG_RATE_TAIL) {
        if (t < r->tail[0].t) {
            rate_commit(r, t, v);
            return;
        }
        rate_commit(r, r->tail[0].t, r->tail[0].v);
        memmove(&r->tail[0], &r->tail[1], (TLM_AGG_RATE_TAIL - 1) * sizeof r->tail[0]);
        r->ntail--;
    }
    uint32_t j = r->ntail;
    while (j > 0 && r->tail[j - 1].t > t) {
        r->tail[j] = r->tail[j - 1];
        j--;
    }
    r->tail[j].t = t;
    r->tail[j].v = v;
    r->ntail++;
}

/* Flattens r into first/last sample and total increase. Returns 0 when r is empty. */
static int rate_summary(const struct rate_st *r, struct rate_pt *first, struct rate_pt *last,
                        double *inc)
{
    uint32_t i = 0;
    if (r->has) {
        first->t = r->t0;
        first->v = r->v0;
        last->t = r->tc;
        last->v = r->vc;
        *inc = r->inc;
    } else if (r->ntail) {
        *first = *last = r->tail[0];
        *inc = 0;
        i = 1;
    } else {
        return 0;
    }
    for (; i < r->ntail; i++) {
        *inc += incr(last->v, r->tail[i].v);
        *last = r->tail[i];
    }
    return 1;
}

static double rate_value(const struct rate_st *r)
{
    struct rate_pt f, l;
    double inc;
    if (!rate_summary(r, &f, &l, &inc) || l.t <= f.t)
        return NAN;
    return inc / ((double)(l.t - f.t) / 1e9);
}

/* out = a followed by b, where every sample of b is later than every sample of a */
static void rate_concat(struct rate_st *out, const struct rate_st *a, const struct rate_st *b)
{
    struct rate_pt f, l;
    double inc;
    struct rate_st r;
    memset(&r, 0, sizeof r);
    rate_summary(a, &f, &l, &inc);
    r.has = 1;
    r.t0 = f.t;
    r.v0 = f.v;
    r.tc = l.t;
    r.vc = l.v;
    r.inc = inc;
    if (b->has) {
        r.inc += incr(r.vc, b->v0) + b->inc;
        r.tc = b->tc;
        r.vc = b->vc;
    }
    r.ntail = b->ntail;
    memcpy(r.tail, b->tail, sizeof r.tail);
    *out = r;
}

static void rate_merge(struct rate_st *d, const struct rate_st *s)
{
    struct rate_pt df, dl, sf, sl;
    double di, si;
    if (!rate_summary(s, &sf, &sl, &si))
        return;
    if (!rate_summary(d, &df, &dl, &di)) {
        *d = *s;
        return;
    }
    if (sf.t > dl.t) {
        rate_concat(d, d, s);
    } else if (sl.t < df.t) {
        rate_concat(d, s, d);
    } else { /* overlapping ranges: feed the samples we still have (approximate) */
        if (s->has) {
            rate_add(d, s->t0, s->v0);
            if (s->tc != s->t0)
                rate_add(d, s->tc, s->vc);
        }
        for (uint32_t i = 0; i < s->ntail; i++)
            rate_add(d, s->tail[i].t, s->tail[i].v);
    }
}

static int dist_promote(const struct tlm_aggs *a, struct dist_st *d)
{
    struct tlm_hll *h = tlm_hll_create(a->o.hll_precision);
    if (!h)
        return TLM_ENOMEM;
    const uint64_t *set = d->p;
    for (uint32_t i = 0; i < d->n; i++) {
        if (tlm_hll_add_hash(h, set[i])) {
            tlm_hll_destroy(h);
            return TLM_ENOMEM;
        }
    }
    free(d->p);
    d->p = h;
    d->n = 0;
    d->cap = DIST_HLL;
    return 0;
}

static int dist_add(const struct tlm_aggs *a, struct dist_st *d, uint64_t h)
{
    if (d->cap == DIST_HLL)
        return tlm_hll_add_hash(d->p, h);
    uint64_t *set = d->p;
    uint32_t lo = 0, hi = d->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (set[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < d->n && set[lo] == h)
        return 0;
    if (d->n == TLM_AGG_DISTINCT_EXACT) {
        int rc = dist_promote(a, d);
        return rc ? rc : tlm_hll_add_hash(d->p, h);
    }
    if (d->n == d->cap) {
        uint32_t c = d->cap ? 2 * d->cap : 4;
        if (c > TLM_AGG_DISTINCT_EXACT)
            c = TLM_AGG_DISTINCT_EXACT;
        uint64_t *ns = realloc(set, c * sizeof *ns);
        if (!ns)
            return TLM_ENOMEM;
        d->p = set = ns;
        d->cap = c;
    }
    memmove(&set[lo + 1], &set[lo], (d->n - lo) * sizeof *set);
    set[lo] = h;
    d->n++;
    return 0;
}

static int dist_merge(const struct tlm_aggs *a, struct dist_st *d, const struct dist_st *s)
{
    if (s->cap == DIST_HLL) {
        if (d->cap != DIST_HLL) {
            int rc = dist_promote(a, d);
            if (rc)
                return rc;
        }
        return tlm_hll_merge(d->p, s->p);
    }
    const uint64_t *set = s->p;
    for (uint32_t i = 0; i < s->n; i++) {
        int rc = dist_add(a, d, set[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static double dist_value(const struct dist_st *d)
{
    return d->cap == DIST_HLL ? round(tlm_hll_estimate(d->p)) : (double)d->n;
}

/* ---- adding events ---------------------------------------------------------------------- */

/* An argument's value for one event. */
struct aval {
    int present;         /* not absent, not null */
    int isnum, isint;
    long long i;
    double d;
    const char *raw;     /* JSON text (NEED_RAW) */
    size_t rawn;
    size_t scr;          /* raw lives in the scratch buffer at this offset (computed values) */
    int in_scr;
    uint64_t hash;       /* NEED_HASH */
    json_t *j;           /* computed value (owned) */
};

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* type tags of the distinct hash */
enum { H_INT = 1, H_REAL, H_STR, H_TRUE, H_FALSE, H_JSON };

static uint64_t hash_tagged(int tag, const void *p, size_t n)
{
    return mix64(tlm_hll_hash(p, n) ^ ((uint64_t)tag * 0x9e3779b97f4a7c15ULL));
}

static uint64_t hash_num(int isint, long long i, double d)
{
    if (isint)
        return hash_tagged(H_INT, &i, sizeof i);
    if (d == 0)
        d = 0; /* -0.0 == 0.0 */
    return hash_tagged(H_REAL, &d, sizeof d);
}

/* Resolves a plain-field argument from its raw span. */
static int aval_raw(struct aval *v, const struct tlm_jval *jv, unsigned need,
                    struct tlm_buf *scr)
{
    if (jv->type == TLM_JNONE || jv->type == TLM_JNULL)
        return 0;
    v->present = 1;
    if (jv->type == TLM_JINT) {
        if (tlm_jval_int64(jv, &v->i) == 0) {
            v->isnum = v->isint = 1;
            v->d = (double)v->i;
        }
    } else if (jv->type == TLM_JREAL) {
        v->isnum = tlm_jval_double(jv, &v->d) == 0;
    }
    if (need & NEED_RAW) {
        v->raw = jv->p;
        v->rawn = jv->n;
    }
    if (need & NEED_HASH) {
        switch (jv->type) {
        case TLM_JINT:
        case TLM_JREAL: v->hash = hash_num(v->isint, v->i, v->d); break;
        case TLM_JTRUE: v->hash = hash_tagged(H_TRUE, "", 0); break;
        case TLM_JFALSE: v->hash = hash_tagged(H_FALSE, "", 0); break;
        case TLM_JSTRING:
            if (!jv->escaped) {
                v->hash = hash_tagged(H_STR, jv->p + 1, jv->n - 2);
            } else {
                size_t at = scr->len;
                int rc = tlm_jval_string(jv, scr);
                if (rc)
                    return rc;
                v->hash = hash_tagged(H_STR, scr->data + at, scr->len - at);
                scr->len = at;
            }
            break;
        default: { /* array or object: by its compact JSON */
            json_t *j = tlm_jval_to_json(jv);
            size_t at = scr->len;
            int rc = j ? tlm_json_write(scr, j) : TLM_ENOMEM;
            json_decref(j);
            if (rc)
                return rc;
            v->hash = hash_tagged(H_JSON, scr->data + at, scr->len - at);
            scr->len = at;
            break;
        }
        }
    }
    return 0;
}

/* Resolves a computed argument from its value (j borrowed here; v->j owns it). */
static int aval_json(struct aval *v, json_t *j, unsigned need, struct tlm_buf *scr)
{
    if (!j || json_is_null(j))
        return 0;
    v->present = 1;
    if (json_is_integer(j)) {
        v->isnum = v->isint = 1;
        v->i = json_integer_value(j);
        v->d = (double)v->i;
    } else if (json_is_real(j)) {
        v->isnum = 1;
        v->d = json_real_value(j);
    }
    if (need & NEED_RAW) {
        v->scr = scr->len;
        int rc = tlm_json_write(scr, j);
        if (rc)
            return rc;
        v->rawn = scr->len - v->scr;
        v->in_scr = 1;
    }
    if (need & NEED_HASH) {
        if (v->isnum) {
            v->hash = hash_num(v->isint, v->i, v->d);
        } else if (json_is_string(j)) {
            v->hash = hash_tagged(H_STR, json_string_value(j), json_string_length(j));
        } else if (json_is_true(j)) {
            v->hash = hash_tagged(H_TRUE, "", 0);
        } else if (json_is_false(j)) {
            v->hash = hash_tagged(H_FALSE, "", 0);
        } else {
            size_t at = scr->len;
            int rc = tlm_json_write(scr, j);
            if (rc)
                return rc;
            v->hash = hash_tagged(H_JSON, scr->data + at, scr->len - at);
            scr->len = at;
        }
    }
    return 0;
}

/* An event's arguments, resolved once for all the windows it goes to. */
struct tlm_aggs_event {
    struct aval av[TLM_AGG_MAX_ARGS];
    size_t nres;          /* av[0..nres) hold references to release */
    struct tlm_buf scr;
};

struct tlm_aggs_event *tlm_aggs_event_new(void)
{
    return calloc(1, sizeof(struct tlm_aggs_event));
}

static void event_clear(struct tlm_aggs_event *ev)
{
    for (size_t i = 0; i < ev->nres; i++)
        json_decref(ev->av[i].j);
    ev->nres = 0;
    tlm_buf_reset(&ev->scr);
}

void tlm_aggs_event_free(struct tlm_aggs_event *ev)
{
    if (!ev)
        return;
    event_clear(ev);
    tlm_buf_free(&ev->scr);
    free(ev);
}

int tlm_aggs_resolve(const struct tlm_aggs *a, struct tlm_aggs_event *ev,
                     const struct tlm_jval *vals, json_t *partial, struct tlm_error *err)
{
    struct aval *av = ev->av;
    struct tlm_buf *scr = &ev->scr;
    int rc = 0;

    event_clear(ev);

    for (size_t i = 0; i < a->nargs; i++) {
        const struct arg *g = &a->args[i];
        struct aval *v = &av[i];
        memset(v, 0, sizeof *v);
        ev->nres = i + 1; /* av[0..nres) are initialised */
        if (g->path >= 0) {
            rc = aval_raw(v, &vals[g->path], g->need, scr);
        } else {
            struct tlm_error e;
            tlm_error_clear(&e);
            rc = tlm_expr_eval(g->e, partial, NULL, &v->j, &e);
            if (rc < 0) {
                v->j = NULL;
                if (err) {
                    tlm_error_set(err, rc, "%s: %s", g->text, e.text);
                    err->column = 0;
                }
                goto fail;
            }
            rc = aval_json(v, rc ? v->j : NULL, g->need, scr);
        }
        if (rc) {
            tlm_error_set(err, rc, "%s: %s", g->text,
                          rc == TLM_ENOMEM ? "out of memory" : "value cannot be written as JSON");
            goto fail;
        }
    }
    for (size_t i = 0; i < a->nargs; i++)
        if (av[i].in_scr)
            av[i].raw = scr->data + av[i].scr;

    return 0;
fail:
    event_clear(ev);
    return rc;
}

int tlm_aggs_apply(const struct tlm_aggs *a, void *state, const struct tlm_aggs_event *ev,
                   int64_t ts, struct tlm_error *err)
{
    const struct aval *av = ev->av;
    int rc = 0;
    for (size_t i = 0; i < a->nslots; i++) {
        const struct slot *sl = &a->slots[i];
        const struct aval *v = sl->arg >= 0 ? &av[sl->arg] : NULL;
        switch (sl->kind) {
        case K_COUNT: (*AT(state, sl, uint64_t))++; break;
        case K_COUNTX: *AT(state, sl, uint64_t) += (uint64_t)v->present; break;
        case K_NUM:
            if (v->isnum)
                num_add(AT(state, sl, struct num_st), sl->flags, v->isint, v->i, v->d);
            break;
        case K_QUANT:
            if (v->isnum) {
                void **p = AT(state, sl, void *);
                if (!*p && !(*p = sk_create(a)))
                    rc = TLM_ENOMEM;
                else
                    rc = sk_add(a, *p, v->d);
            }
            break;
        case K_FIRST:
        case K_LAST:
            if (v->present) {
                struct text_st *t = AT(state, sl, struct text_st);
                if (t->n == 0 || (sl->kind == K_FIRST ? ts < t->ts : ts >= t->ts))
                    rc = text_set(t, ts, v->raw, v->rawn);
            }
            break;
        case K_RATE:
            if (v->isnum)
                rate_add(AT(state, sl, struct rate_st), ts, v->d);
            break;
        default:
            if (v->present)
                rc = dist_add(a, AT(state, sl, struct dist_st), v->hash);
            break;
        }
        if (rc) {
            tlm_error_set(err, rc, "out of memory");
            break;
        }
    }
    return rc;
}

int tlm_aggs_add(const struct tlm_aggs *a, void *state, const struct tlm_jval *vals,
                 json_t *partial, int64_t ts, struct tlm_error *err)
{
    struct tlm_aggs_event *ev = tlm_aggs_event_new();
    int rc;
    if (!ev)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    rc = tlm_aggs_resolve(a, ev, vals, partial, err);
    if (rc == 0)
        rc = tlm_aggs_apply(a, state, ev, ts, err);
    tlm_aggs_event_free(ev);
    return rc;
}

/* ---- merge -------------------------------------------------------------------------------- */

int tlm_aggs_merge(const struct tlm_aggs *a, void *dst, const void *src)
{
    for (size_t i = 0; i < a->nslots; i++) {
        const struct slot *sl = &a->slots[i];
        int rc = 0;
        switch (sl->kind) {
        case K_COUNT:
        case K_COUNTX: *AT(dst, sl, uint64_t) += *CAT(src, sl, uint64_t); break;
        case K_NUM: num_merge(AT(dst, sl, struct num_st), CAT(src, sl, struct num_st)); break;
        case K_QUANT: {
            void **d = AT(dst, sl, void *);
            const void *s = *CAT(src, sl, void *const);
            if (!s)
                break;
            if (!*d && !(*d = sk_create(a)))
                return TLM_ENOMEM;
            rc = sk_merge(a, *d, s);
            break;
        }
        case K_FIRST:
        case K_LAST: {
            struct text_st *d = AT(dst, sl, struct text_st);
            const struct text_st *s = CAT(src, sl, struct text_st);
            if (s->n && (d->n == 0 || (sl->kind == K_FIRST ? s->ts < d->ts : s->ts >= d->ts)))
                rc = text_set(d, s->ts, s->p, s->n);
            break;
        }
        case K_RATE: rate_merge(AT(dst, sl, struct rate_st), CAT(src, sl, struct rate_st)); break;
        default:
            rc = dist_merge(a, AT(dst, sl, struct dist_st), CAT(src, sl, struct dist_st));
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- results ------------------------------------------------------------------------------ */

double tlm_aggs_value(const struct tlm_aggs *a, void *state, size_t i)
{
    const struct agg *g = &a->aggs[i];
    const struct slot *sl = &a->slots[g->slot];
    switch (g->fn) {
    case F_COUNT: return (double)*AT(state, sl, uint64_t);
    case F_SUM:
    case F_AVG:
    case F_MIN:
    case F_MAX:
    case F_STDDEV: {
        const struct num_st *s = AT(state, sl, struct num_st);
        if (s->n == 0)
            return NAN;
        switch (g->fn) {
        case F_SUM: return num_sum(s);
        case F_AVG: return num_sum(s) / (double)s->n;
        case F_MIN: return s->min;
        case F_MAX: return s->max;
        default: return sqrt(s->m2 > 0 ? s->m2 / (double)s->n : 0.0);
        }
    }
    case F_FIRST:
    case F_LAST: {
        const struct text_st *t = AT(state, sl, struct text_st);
        char b[64];
        char *end;
        if (t->n == 0 || t->n >= sizeof b || !(t->p[0] == '-' || isdigit((unsigned char)t->p[0])))
            return NAN;
        memcpy(b, t->p, t->n);
        b[t->n] = '\0';
        double d = strtod(b, &end);
        return *end ? NAN : d;
    }
    case F_RATE: return rate_value(AT(state, sl, struct rate_st));
    case F_DISTINCT: return dist_value(AT(state, sl, struct dist_st));
    default: {
        void *p = *AT(state, sl, void *);
        return p ? sk_quantile(a, p, g->q) : NAN;
    }
    }
}

int tlm_aggs_write(const struct tlm_aggs *a, void *state, struct tlm_buf *out)
{
    for (size_t i = 0; i < a->naggs; i++) {
        const struct agg *g = &a->aggs[i];
        const struct slot *sl = &a->slots[g->slot];
        int rc;
        if (tlm_buf_append(out, g->prefix, g->prefixlen))
            return TLM_ENOMEM;
        switch (g->fn) {
        case F_COUNT: rc = tlm_json_put_int(out, (long long)*AT(state, sl, uint64_t)); break;
        case F_DISTINCT: rc = tlm_json_put_int(out, (long long)tlm_aggs_value(a, state, i)); break;
        case F_SUM: {
            const struct num_st *s = AT(state, sl, struct num_st);
            if (s->n == 0)
                rc = tlm_buf_puts(out, "null");
            else if (!s->inexact)
                rc = tlm_json_put_int(out, (long long)s->isum);
            else
                rc = tlm_json_put_double(out, s->sum + s->comp);
            break;
        }
        case F_MIN:
        case F_MAX: {
            double d = tlm_aggs_value(a, state, i);
            rc = isnan(d) ? tlm_buf_puts(out, "null") : tlm_json_write_number(out, d);
            break;
        }
        case F_FIRST:
        case F_LAST: {
            const struct text_st *t = AT(state, sl, struct text_st);
            rc = t->n ? tlm_buf_append(out, t->p, t->n) : tlm_buf_puts(out, "null");
            break;
        }
        default: /* avg, stddev, rate, quantiles: non-finite (none) is written as null */
            rc = tlm_json_put_double(out, tlm_aggs_value(a, state, i));
            break;
        }
        if (rc)
            return TLM_ENOMEM;
    }
    return 0;
}

size_t tlm_aggs_heap_bytes(const struct tlm_aggs *a, const void *state)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nslots; i++) {
        const struct slot *sl = &a->slots[i];
        switch (sl->kind) {
        case K_QUANT: {
            const void *p = *CAT(state, sl, void *const);
            if (p)
                n += sk_bytes(a, p);
            break;
        }
        case K_FIRST:
        case K_LAST: n += CAT(state, sl, struct text_st)->cap; break;
        case K_DISTINCT: {
            const struct dist_st *d = CAT(state, sl, struct dist_st);
            n += d->cap == DIST_HLL ? tlm_hll_bytes(d->p) : d->cap * sizeof(uint64_t);
            break;
        }
        default: break;
        }
    }
    return n;
}

/* ---- snapshots ------------------------------------------------------------------------------
 * {"sig":"c-1n0q0t","0":3,"1":[n,isum,inexact,sum,comp,min,max,mean,m2],"2":<sketch>,...}
 * first/last: [ts,"json text"]; rate: [has,t0,v0,tc,vc,inc,[t,v,t,v...]]; distinct: "<i>"
 * holds the exact hashes as int64, or "<i>h" the HyperLogLog's own text. Empty parts: null.
 */

static int put_num(struct tlm_buf *b, double d)
{
    if (isfinite(d))
        return tlm_json_put_double(b, d);
    return tlm_buf_puts(b, isnan(d) ? "\"nan\"" : d > 0 ? "\"inf\"" : "\"-inf\"");
}

static int get_num(const json_t *j, double *d)
{
    if (json_is_number(j)) {
        *d = json_number_value(j);
        return 0;
    }
    const char *s = json_string_value(j);
    if (!s)
        return -1;
    if (strcmp(s, "nan") == 0)
        *d = NAN;
    else if (strcmp(s, "inf") == 0)
        *d = INFINITY;
    else if (strcmp(s, "-inf") == 0)
        *d = -INFINITY;
    else
        return -1;
    return 0;
}

static int get_int(const json_t *j, int64_t *i)
{
    if (!json_is_integer(j))
        return -1;
    *i = json_integer_value(j);
    return 0;
}

int tlm_aggs_save(const struct tlm_aggs *a, void *state, struct tlm_buf *out)
{
    int rc = tlm_buf_puts(out, "{\"sig\":");
    rc = rc ? rc : tlm_json_put_string(out, a->sig, strlen(a->sig));
    for (size_t i = 0; i < a->nslots && !rc; i++) {
        const struct slot *sl = &a->slots[i];
        rc = tlm_buf_printf(out, ",\"%zu%s\":", i,
                            sl->kind == K_DISTINCT &&
                                    AT(state, sl, struct dist_st)->cap == DIST_HLL
                                ? "h" : "");
        if (rc)
            break;
        switch (sl->kind) {
        case K_COUNT:
        case K_COUNTX: rc = tlm_json_put_int(out, (long long)*AT(state, sl, uint64_t)); break;
        case K_NUM: {
            const struct num_st *s = AT(state, sl, struct num_st);
            rc = tlm_buf_printf(out, "[%lld,%lld,%u", (long long)s->n, (long long)s->isum,
                                (unsigned)s->inexact);
            const double d[6] = { s->sum, s->comp, s->min, s->max, s->mean, s->m2 };
            for (int k = 0; k < 6 && !rc; k++)
                rc = tlm_buf_putc(out, ',') || put_num(out, d[k]);
            rc = rc ? rc : tlm_buf_putc(out, ']');
            break;
        }
        case K_QUANT: {
            void *p = *AT(state, sl, void *);
            rc = p ? sk_write(a, p, out) : tlm_buf_puts(out, "null");
            break;
        }
        case K_FIRST:
        case K_LAST: {
            const struct text_st *t = AT(state, sl, struct text_st);
            if (!t->n) {
                rc = tlm_buf_puts(out, "null");
                break;
            }
            rc = tlm_buf_printf(out, "[%lld,", (long long)t->ts);
            rc = rc ? rc : tlm_json_put_string(out, t->p, t->n);
            rc = rc ? rc : tlm_buf_putc(out, ']');
            break;
        }
        case K_RATE: {
            const struct rate_st *r = AT(state, sl, struct rate_st);
            rc = tlm_buf_printf(out, "[%u,%lld,", (unsigned)r->has, (long long)r->t0);
            rc = rc ? rc : put_num(out, r->v0);
            rc = rc ? rc : tlm_buf_printf(out, ",%lld,", (long long)r->tc);
            rc = rc ? rc : put_num(out, r->vc);
            rc = rc ? rc : tlm_buf_putc(out, ',');
            rc = rc ? rc : put_num(out, r->inc);
            rc = rc ? rc : tlm_buf_puts(out, ",[");
            for (uint32_t k = 0; k < r->ntail && !rc; k++) {
                rc = tlm_buf_printf(out, "%s%lld,", k ? "," : "", (long long)r->tail[k].t);
                rc = rc ? rc : put_num(out, r->tail[k].v);
            }
            rc = rc ? rc : tlm_buf_puts(out, "]]");
            break;
        }
        default: {
            const struct dist_st *d = AT(state, sl, struct dist_st);
            if (d->cap == DIST_HLL) {
                rc = tlm_hll_write(d->p, out);
                break;
            }
            rc = tlm_buf_putc(out, '[');
            const uint64_t *set = d->p;
            for (uint32_t k = 0; k < d->n && !rc; k++)
                rc = tlm_buf_printf(out, "%s%lld", k ? "," : "", (long long)(int64_t)set[k]);
            rc = rc ? rc : tlm_buf_putc(out, ']');
            break;
        }
        }
    }
    rc = rc ? rc : tlm_buf_putc(out, '}');
    return rc ? TLM_ENOMEM : 0;
}

static int u64cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Loads slot sl from its saved value j (and, for sketches, its text raw). Returns 0,
 * TLM_ENOMEM, TLM_ESTATE with err filled, or -1 when j is malformed. */
static int load_slot(const struct tlm_aggs *a, const struct slot *sl, void *state,
                     const json_t *j, const struct tlm_jval *raw, int hll,
                     struct tlm_error *err)
{
    switch (sl->kind) {
    case K_COUNT:
    case K_COUNTX: {
        int64_t v;
        if (get_int(j, &v) || v < 0)
            return -1;
        *AT(state, sl, uint64_t) = (uint64_t)v;
        return 0;
    }
    case K_NUM: {
        struct num_st *s = AT(state, sl, struct num_st);
        double d[6];
        int64_t n, isum, inexact;
        if (json_array_size(j) != 9 || get_int(json_array_get(j, 0), &n) || n < 0 ||
            get_int(json_array_get(j, 1), &isum) || get_int(json_array_get(j, 2), &inexact))
            return -1;
        for (int k = 0; k < 6; k++)
            if (get_num(json_array_get(j, (size_t)k + 3), &d[k]))
                return -1;
        s->n = n;
        s->isum = isum;
        s->inexact = inexact != 0;
        s->sum = d[0];
        s->comp = d[1];
        s->min = d[2];
        s->max = d[3];
        s->mean = d[4];
        s->m2 = d[5];
        return 0;
    }
    case K_QUANT: {
        if (json_is_null(j))
            return 0;
        struct tlm_error e;
        tlm_error_clear(&e);
        void *p = sk_read(a, raw->p, raw->n, &e);
        if (!p)
            return tlm_error_set(err, e.code == TLM_ENOMEM ? TLM_ENOMEM : TLM_ESTATE,
                                 "aggregate state: %s", e.text);
        *AT(state, sl, void *) = p;
        return 0;
    }
    case K_FIRST:
    case K_LAST: {
        if (json_is_null(j))
            return 0;
        int64_t ts;
        const json_t *s = json_array_get(j, 1);
        if (json_array_size(j) != 2 || get_int(json_array_get(j, 0), &ts) || !json_is_string(s) ||
            json_string_length(s) == 0)
            return -1;
        return text_set(AT(state, sl, struct text_st), ts, json_string_value(s),
                        json_string_length(s));
    }
    case K_RATE: {
        struct rate_st *r = AT(state, sl, struct rate_st);
        int64_t has;
        const json_t *tail = json_array_get(j, 6);
        size_t nt = json_array_size(tail);
        if (json_array_size(j) != 7 || get_int(json_array_get(j, 0), &has) ||
            get_int(json_array_get(j, 1), &r->t0) || get_num(json_array_get(j, 2), &r->v0) ||
            get_int(json_array_get(j, 3), &r->tc) || get_num(json_array_get(j, 4), &r->vc) ||
            get_num(json_array_get(j, 5), &r->inc) || !json_is_array(tail) || nt % 2 ||
            nt / 2 > TLM_AGG_RATE_TAIL)
            return -1;
        r->has = has != 0;
        r->ntail = (uint32_t)(nt / 2);
        for (uint32_t k = 0; k < r->ntail; k++)
            if (get_int(json_array_get(tail, 2 * k), &r->tail[k].t) ||
                get_num(json_array_get(tail, 2 * k + 1), &r->tail[k].v) ||
                (k && r->tail[k].t < r->tail[k - 1].t) || (r->has && r->tail[k].t <= r->tc))
                return -1;
        return 0;
    }
    default: {
        struct dist_st *d = AT(state, sl, struct dist_st);
        if (hll) {
            struct tlm_error e;
            tlm_error_clear(&e);
            struct tlm_hll *h = tlm_hll_read(raw->p, raw->n, &e);
            if (!h)
                return tlm_error_set(err, e.code == TLM_ENOMEM ? TLM_ENOMEM : TLM_ESTATE,
                                     "aggregate state: %s", e.text);
            d->p = h;
            d->cap = DIST_HLL;
            return 0;
        }
        size_t n = json_array_size(j);
        if (!json_is_array(j) || n > TLM_AGG_DISTINCT_EXACT)
            return -1;
        if (!n)
            return 0;
        uint64_t *set = malloc(n * sizeof *set);
        if (!set)
            return TLM_ENOMEM;
        for (size_t k = 0; k < n; k++) {
            int64_t v;
            if (get_int(json_array_get(j, k), &v)) {
                free(set);
                return -1;
            }
            set[k] = (uint64_t)v;
        }
        qsort(set, n, sizeof *set, u64cmp);
        size_t w = 1;
        for (size_t k = 1; k < n; k++)
            if (set[k] != set[w - 1])
                set[w++] = set[k];
        d->p = set;
        d->n = (uint32_t)w;
        d->cap = (uint32_t)n;
        return 0;
    }
    }
}

int tlm_aggs_load(const struct tlm_aggs *a, void *state, const char *json, size_t n,
                  struct tlm_error *err)
{
    /* path 0 is "sig", then two per slot: "<i>" and "<i>h" */
    size_t np = 1 + 2 * a->nslots;
    struct tlm_path *paths = calloc(np, sizeof *paths);
    char *names = calloc(np, 24);
    char **segs = calloc(np, sizeof *segs);
    struct tlm_jval *vals = calloc(np, sizeof *vals);
    struct tlm_jscan *sc = NULL;
    int rc = TLM_ENOMEM;
    tlm_aggs_free(a, state);
    if (!paths || !names || !segs || !vals)
        goto out;
    for (size_t k = 0; k < np; k++) {
        segs[k] = names + 24 * k;
        if (k == 0)
            strcpy(segs[k], "sig");
        else
            snprintf(segs[k], 24, "%zu%s", (k - 1) / 2, (k - 1) % 2 ? "h" : "");
        paths[k].nseg = 1;
        paths[k].seg = &segs[k];
    }
    sc = tlm_jscan_create(paths, np);
    if (!sc)
        goto out;
    struct tlm_error e;
    tlm_error_clear(&e);
    if (tlm_jscan_run(sc, json, n, vals, &e)) {
        rc = tlm_error_set(err, TLM_ESTATE, "aggregate state: %s", e.text);
        goto out;
    }
    {
        struct tlm_buf sig = TLM_BUF_INIT;
        int ok = tlm_jval_string(&vals[0], &sig) == 0 && sig.data && strcmp(sig.data, a->sig) == 0;
        tlm_buf_free(&sig);
        if (!ok) {
            rc = tlm_error_set(err, TLM_ESTATE,
                               "aggregate state was saved under another --agg list");
            goto out;
        }
    }
    for (size_t i = 0; i < a->nslots; i++) {
        const struct tlm_jval *plain = &vals[1 + 2 * i], *h = &vals[2 + 2 * i];
        int hll = a->slots[i].kind == K_DISTINCT && h->type != TLM_JNONE;
        const struct tlm_jval *raw = hll ? h : plain;
        if (raw->type == TLM_JNONE) {
            rc = tlm_error_set(err, TLM_ESTATE, "aggregate state: part %zu missing", i);
            goto out;
        }
        json_t *j = json_loadb(raw->p, raw->n, JSON_DECODE_ANY, NULL);
        int r = j ? load_slot(a, &a->slots[i], state, j, raw, hll, err) : -1;
        json_decref(j);
        if (r == -1)
            r = tlm_error_set(err, TLM_ESTATE, "aggregate state: part %zu is malformed", i);
        else if (r == TLM_ENOMEM)
            r = tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (r) {
            rc = r;
            goto out;
        }
    }
    rc = 0;
out:
    if (rc == TLM_ENOMEM && (!err || err->code != TLM_ENOMEM))
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (rc)
        tlm_aggs_free(a, state);
    tlm_jscan_destroy(sc);
    free(vals);
    free(segs);
    free(names);
    free(paths);
    return rc;
}

void tlm_aggs_prefetch_tails(const struct tlm_aggs *a, const void *state)
{
    if (a->o.sketch == TLM_AGGS_DDSKETCH)
        return;
    for (size_t i = 0; i < a->nslots; i++) {
        if (a->slots[i].kind != K_QUANT)
            continue;
        const struct tlm_tdigest *t;
        memcpy(&t, (const char *)state + a->slots[i].off, sizeof(t));
        if (t)
            tlm_tdigest_prefetch_tail(t);
    }
}

void tlm_aggs_prefetch(const struct tlm_aggs *a, const void *state)
{
    for (size_t i = 0; i < a->nslots; i++) {
        if (a->slots[i].kind != K_QUANT)
            continue;
        const void *sk;
        memcpy(&sk, (const char *)state + a->slots[i].off, sizeof(sk));
        if (sk) {
            __builtin_prefetch(sk);
            __builtin_prefetch((const char *)sk + 64);
        }
    }
}
