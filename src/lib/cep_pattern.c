/*
 * cep_pattern.c - CEP patterns: the one-line language, JSON documents, and the compiler to
 * Flink's NFA.
 *
 * The language (telem-cep(1)):
 *   pattern  := stage { op stage } [ "within" DURATION ] [ skip ]
 *   op       := "=>" (next, strict) | "->" (followedBy, relaxed) | "->>" (followedByAny)
 *   stage    := [ "!" ] NAME ":" CONDITION [ quant ] { "greedy" | "consecutive" | "combinations" }
 *               [ "until" CONDITION ]
 *   quant    := ( "+" | "*" | "?" | "{" N "}" | "{" N "," "}" | "{" N "," M "}" ) [ "?" ]
 *   skip     := "skip to next" | "skip past last event" | "skip to first" NAME
 *             | "skip to last" NAME | "no skip"
 * Operators are found at the top level of the text only (outside strings and brackets), so
 * conditions are any expressions of telem-expr(7). A "!" stage is notNext after "=>" and
 * notFollowedBy after "->".
 *
 * The compiler is a port of Flink's NFACompiler (flink-cep, org.apache.flink.cep.nfa.
 * compiler): states are built from the last stage to the first; a singleton stage is one
 * state with TAKE (and IGNORE unless strict, PROCEED when optional); times(n,m) is a chain
 * of such states; a looping stage ends in a looping state with a self TAKE; negated stages
 * become PROCEED edges into Stop states; a trailing notFollowedBy becomes a Pending state
 * whose partial matches are emitted as matches when `within` expires. Greedy adds "and not
 * the loop's condition" to the edges that leave the loop.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cep_int.h"
#include "expr.h"
#include "jscan.h"

/* ---- small helpers ------------------------------------------------------------------ */

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static int perr(struct tlm_error *err, long col, const char *fmt, const char *a)
{
    tlm_error_set(err, TLM_EPARSE, fmt, a ? a : "");
    if (err)
        err->column = col;
    return TLM_EPARSE;
}

static int is_id0(int c) { return isalpha(c) || c == '_'; }
static int is_id(int c) { return isalnum(c) || c == '_'; }

void tlm_cep_pattern_destroy(struct tlm_cep_pattern *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->st[i].name);
        free(p->st[i].src);
        tlm_expr_destroy(p->st[i].expr);
        free(p->st[i].until_src);
        tlm_expr_destroy(p->st[i].until);
        free(p->st[i].fast.str);
        if (p->st[i].fast.p.seg) {
            for (size_t k = 0; k < p->st[i].fast.p.nseg; k++)
                free(p->st[i].fast.p.seg[k]);
            free(p->st[i].fast.p.seg);
        }
    }
    for (int i = 0; i < p->ns; i++)
        free(p->s[i].e);
    free(p->s);
    free(p->c);
    free(p->st);
    free(p->id);
    free(p);
}

const char *tlm_cep_pattern_id(const struct tlm_cep_pattern *p) { return p->id; }
int64_t tlm_cep_pattern_within(const struct tlm_cep_pattern *p) { return p->within; }
size_t tlm_cep_pattern_nstages(const struct tlm_cep_pattern *p) { return p->n; }
const char *tlm_cep_pattern_stage(const struct tlm_cep_pattern *p, size_t i) { return p->st[i].name; }
int tlm_cep_pattern_stage_loops(const struct tlm_cep_pattern *p, size_t i) { return p->loops[i]; }

int tlm_cep_pattern_set_id(struct tlm_cep_pattern *p, const char *id)
{
    char *d = strdup(id);
    if (!d)
        return TLM_ENOMEM;
    free(p->id);
    p->id = d;
    return 0;
}

/* ---- rewriting looping stage names ------------------------------------------------ */

/* Copies src, appending "[*]" to every binding of a looping stage that is not indexed
 * already, so that node-list functions see its events. ins[] records the source offsets
 * of the insertions (up to nins), for mapping error columns back. *iter is set when src
 * reads any binding (a stage or prev). */
static char *rewrite(const struct tlm_cep_pattern *p, size_t nnames, const char *src,
                     size_t *ins, size_t *nins, size_t maxins, int *iter)
{
    size_t n = strlen(src), k = 0;
    char *out = malloc(n * 4 + 1), *o = out;
    if (!out)
        return NULL;
    if (iter)
        *iter = 0;
    for (size_t i = 0; i < n;) {
        char c = src[i];
        if (c == '"' || c == '\'') {
            size_t j = i + 1;
            while (j < n && src[j] != c)
                j += (src[j] == '\\' && j + 1 < n) ? 2 : 1;
            j = j < n ? j + 1 : n;
            memcpy(o, src + i, j - i);
            o += j - i;
            i = j;
            continue;
        }
        if (is_id0((unsigned char)c) &&
            (i == 0 || !(is_id((unsigned char)src[i - 1]) || src[i - 1] == '.' ||
                         src[i - 1] == '$' || src[i - 1] == '@'))) {
            size_t j = i;
            while (j < n && is_id((unsigned char)src[j]))
                j++;
            size_t m = j;
            while (m < n && src[m] == ' ')
                m++;
            int call = m < n && src[m] == '(';
            memcpy(o, src + i, j - i);
            o += j - i;
            if (!call) {
                for (size_t s = 0; s < nnames; s++) {
                    if (strlen(p->st[s].name) != j - i || memcmp(p->st[s].name, src + i, j - i))
                        continue;
                    if (iter)
                        *iter = 1;
                    if (p->loops[s] && (j >= n || src[j] != '[')) {
                        memcpy(o, "[*]", 3);
                        o += 3;
                        if (ins && k < maxins)
                            ins[k++] = j;
                    }
                }
                if (iter && j - i == 4 && memcmp(src + i, "prev", 4) == 0)
                    *iter = 1;
            }
            i = j;
            continue;
        }
        *o++ = c;
        i++;
    }
    *o = 0;
    if (nins)
        *nins = k;
    return out;
}

char *tlm_cep_rewrite(const struct tlm_cep_pattern *p, const char *src)
{
    return rewrite(p, p->n, src, NULL, NULL, 0, NULL);
}

/* Column in the original text of a column in the rewritten one. */
static long unshift(long col, const size_t *ins, size_t nins)
{
    long c = col;
    for (size_t i = 0; i < nins; i++)
        if ((long)ins[i] + 1 + 3 * (long)i < col)
            c -= 3;
    return c < 1 ? 1 : c;
}

static struct tlm_expr *compile_over(const struct tlm_cep_pattern *p, const char *src,
                                     int with_prev, int with_key, int *iter,
                                     struct tlm_error *err)
{
    const char *names[CEP_MAX_STAGES + 2];
    size_t nn = 0, ins[64], nins = 0;
    for (size_t i = 0; i < p->n; i++)
        names[nn++] = p->st[i].name;
    if (with_prev)
        names[nn++] = "prev";
    if (with_key)
        names[nn++] = "key";
    char *rw = rewrite(p, p->n, src, ins, &nins, 64, iter);
    if (!rw) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    struct tlm_expr *e = tlm_expr_compile_with(rw, names, nn, err);
    free(rw);
    if (!e && err)
        err->column = unshift(err->column, ins, nins);
    return e;
}

struct tlm_expr *tlm_cep_compile_template(const struct tlm_cep_pattern *p, const char *src,
                                          struct tlm_error *err)
{
    return compile_over(p, src, 0, 1, NULL, err);
}

/* ---- emit templates ------------------------------------------------------------------ */

struct tlm_cep_template {
    const struct tlm_cep_pattern *p;
    struct tlm_expr *expr;
    struct tlm_path *paths;      /* fields the template reads from the stages' events */
    size_t npaths;
    int partial;                 /* 1: events are built from paths only */
    struct tlm_jscan *scan;
    struct tlm_jval *vals;
    const char **names;          /* stage names, then "key" */
};

/* Adds the dotted path at t[*i..] (identifiers joined by '.') to the template's list;
 * advances *i past it. Returns 0, or -1 if no identifier starts there. */
static int tpl_path(struct tlm_cep_template *tp, const char *t, size_t n, size_t *i)
{
    struct tlm_path q = { 0, NULL };
    char *segs[16];
    size_t k = *i;
    for (;;) {
        size_t b = k;
        if (k >= n || !is_id0((unsigned char)t[k]) || q.nseg == 16)
            break;
        while (k < n && is_id((unsigned char)t[k]))
            k++;
        segs[q.nseg++] = dupn(t + b, k - b);
        if (k + 1 < n && t[k] == '.' && is_id0((unsigned char)t[k + 1])) {
            k++;
            continue;
        }
        break;
    }
    if (q.nseg == 0)
        return -1;
    for (size_t j = 0; j < tp->npaths; j++) {
        int same = tp->paths[j].nseg == q.nseg;
        for (size_t m = 0; same && m < q.nseg; m++)
            same = strcmp(tp->paths[j].seg[m], segs[m]) == 0;
        if (same) {
            for (size_t m = 0; m < q.nseg; m++)
                free(segs[m]);
            *i = k;
            return 0;
        }
    }
    struct tlm_path *np = realloc(tp->paths, (tp->npaths + 1) * sizeof(*np));
    q.seg = malloc(q.nseg * sizeof(char *));
    if (!np || !q.seg) {
        if (np)
            tp->paths = np;
        free(q.seg);
        for (size_t m = 0; m < q.nseg; m++)
            free(segs[m]);
        return -1;
    }
    memcpy(q.seg, segs, q.nseg * sizeof(char *));
    tp->paths = np;
    tp->paths[tp->npaths++] = q;
    *i = k;
    return 0;
}

/* Finds the member paths src reads from the stages; clears tp->partial when a stage is
 * used in any other way (whole, indexed without a path, passed to a function other than
 * count, first or last). */
static void tpl_analyse(struct tlm_cep_template *tp, const char *t)
{
    size_t n = strlen(t);
    tp->partial = 1;
    for (size_t i = 0; i < n && tp->partial;) {
        char c = t[i];
        if (c == '"' || c == '\'') {
            size_t j = i + 1;
            while (j < n && t[j] != c)
                j += (t[j] == '\\' && j + 1 < n) ? 2 : 1;
            i = j < n ? j + 1 : n;
            continue;
        }
        if (!is_id0((unsigned char)c) ||
            (i > 0 && (is_id((unsigned char)t[i - 1]) || t[i - 1] == '.' || t[i - 1] == '$' ||
                       t[i - 1] == '@'))) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && is_id((unsigned char)t[j]))
            j++;
        int stage = 0;
        for (size_t s = 0; s < tp->p->n; s++)
            if (strlen(tp->p->st[s].name) == j - i && !memcmp(tp->p->st[s].name, t + i, j - i))
                stage = 1;
        if (!stage) {
            i = j;
            continue;
        }
        /* what precedes: "count(", "first(" or "last(" */
        size_t b = i;
        while (b > 0 && t[b - 1] == ' ')
            b--;
        int fn = 0;
        if (b > 0 && t[b - 1] == '(') {
            size_t e = b - 1, f = e;
            while (f > 0 && is_id((unsigned char)t[f - 1]))
                f--;
            if (e - f == 5 && !memcmp(t + f, "count", 5))
                fn = 1;
            else if ((e - f == 5 && !memcmp(t + f, "first", 5)) || (e - f == 4 && !memcmp(t + f, "last", 4)))
                fn = 2;
        }
        size_t k = j;
        if (k < n && t[k] == '[') { /* items[0].x, items[*].x */
            while (k < n && t[k] != ']')
                k++;
            k++;
        }
        if (k < n && t[k] == '.') {
            k++;
            if (tpl_path(tp, t, n, &k))
                tp->partial = 0;
            i = k;
            continue;
        }
        while (k < n && t[k] == ' ')
            k++;
        if (fn == 1 && k < n && t[k] == ')') {
            i = k + 1;
            continue;
        }
        if (fn == 2 && k < n && t[k] == ')' && k + 1 < n && t[k + 1] == '.') {
            k += 2;
            if (tpl_path(tp, t, n, &k))
                tp->partial = 0;
            i = k;
            continue;
        }
        tp->partial = 0;
    }
}

struct tlm_cep_template *tlm_cep_template_create(const struct tlm_cep_pattern *p,
                                                 const char *src, struct tlm_error *err)
{
    struct tlm_cep_template *t = calloc(1, sizeof(*t));
    if (!t || !(t->names = calloc(p->n + 1, sizeof(char *)))) {
        free(t);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    t->p = p;
    for (size_t i = 0; i < p->n; i++)
        t->names[i] = p->st[i].name;
    t->names[p->n] = "key";
    if (!(t->expr = tlm_cep_compile_template(p, src, err))) {
        tlm_cep_template_destroy(t);
        return NULL;
    }
    tpl_analyse(t, src);
    if (t->partial && !(t->scan = tlm_jscan_create(t->paths, t->npaths)))
        t->partial = 0;
    if (t->partial && t->npaths && !(t->vals = calloc(t->npaths, sizeof(*t->vals))))
        t->partial = 0;
    return t;
}

int tlm_cep_template_partial(const struct tlm_cep_template *t) { return t->partial; }

void tlm_cep_template_destroy(struct tlm_cep_template *t)
{
    if (!t)
        return;
    tlm_expr_destroy(t->expr);
    for (size_t i = 0; i < t->npaths; i++) {
        for (size_t k = 0; k < t->paths[i].nseg; k++)
            free(t->paths[i].seg[k]);
        free(t->paths[i].seg);
    }
    free(t->paths);
    tlm_jscan_destroy(t->scan);
    free(t->vals);
    free(t->names);
    free(t);
}

/* Sets path q to v inside object root, creating the objects on the way. */
static int tpl_put(json_t *root, const struct tlm_path *q, const struct tlm_jval *v)
{
    json_t *o = root;
    for (size_t i = 0; i + 1 < q->nseg; i++) {
        json_t *n = json_object_get(o, q->seg[i]);
        if (!json_is_object(n)) {
            n = json_object();
            if (!n || json_object_set_new(o, q->seg[i], n))
                return -1;
        }
        o = n;
    }
    json_t *val = tlm_jval_to_json(v);
    return val ? json_object_set_new(o, q->seg[q->nseg - 1], val) : -1;
}

/* The event as the template sees it: only its paths, or the whole event. New reference. */
static json_t *tpl_event(struct tlm_cep_template *t, struct tlm_cep_event *e)
{
    if (!t->partial)
        return json_incref(tlm_cep_event_json(e));
    size_t len;
    const char *line = tlm_cep_event_line(e, &len);
    json_t *o = json_object();
    if (!o || tlm_jscan_run(t->scan, line, len, t->vals, NULL)) {
        json_decref(o);
        return json_incref(tlm_cep_event_json(e));
    }
    for (size_t i = 0; i < t->npaths; i++)
        if (t->vals[i].type != TLM_JNONE && tpl_put(o, &t->paths[i], &t->vals[i])) {
            json_decref(o);
            return NULL;
        }
    return o;
}

int tlm_cep_template_eval(struct tlm_cep_template *t, const struct tlm_cep_match *m,
                          json_t **out, struct tlm_error *err)
{
    json_t *vals[CEP_MAX_STAGES + 1];
    size_t n = m->nstages;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        vals[i] = NULL;
        if (t->p->loops[i]) {
            vals[i] = json_array();
            for (size_t k = 0; vals[i] && k < m->count[i]; k++)
                if (json_array_append_new(vals[i], tpl_event(t, m->events[i][k])))
                    rc = TLM_ENOMEM;
        } else if (m->count[i]) {
            vals[i] = tpl_event(t, m->events[i][m->count[i] - 1]);
        }
        if ((t->p->loops[i] || m->count[i]) && !vals[i])
            rc = TLM_ENOMEM;
    }
    vals[n] = json_loadb(m->key, m->keylen, JSON_DECODE_ANY, NULL);
    if (rc == 0) {
        struct tlm_expr_env env = { n + 1, t->names, vals };
        rc = tlm_expr_eval(t->expr, NULL, &env, out, err);
    } else {
        tlm_error_set(err, rc, "out of memory");
    }
    for (size_t i = 0; i <= n; i++)
        json_decref(vals[i]);
    return rc;
}

/* ---- the fast form of a condition: field OP literal -------------------------------- */

static void fast_form(struct cep_stage *s)
{
    const char *t = s->src;
    const char *ops[] = { "==", "!=", "<=", ">=", "<", ">" };
    const int codes[] = { 0, 1, 3, 5, 2, 4 };
    size_t i = 0, n = strlen(t);
    struct tlm_path p = { 0, NULL };
    char *segs[8];
    while (i < n && t[i] == ' ')
        i++;
    if (i + 1 < n && t[i] == '$' && t[i + 1] == '.')
        i += 2;
    for (;;) {
        size_t j = i;
        if (j >= n || !is_id0((unsigned char)t[j]) || p.nseg == 8)
            goto fail;
        while (j < n && is_id((unsigned char)t[j]))
            j++;
        segs[p.nseg++] = dupn(t + i, j - i);
        i = j;
        if (i < n && t[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    while (i < n && t[i] == ' ')
        i++;
    int op = -1;
    for (int k = 0; k < 6; k++)
        if (strncmp(t + i, ops[k], strlen(ops[k])) == 0) {
            op = codes[k];
            i += strlen(ops[k]);
            break;
        }
    if (op < 0)
        goto fail;
    while (i < n && t[i] == ' ')
        i++;
    if (t[i] == '"') {
        size_t j = i + 1;
        while (j < n && t[j] != '"' && t[j] != '\\' && (unsigned char)t[j] >= 0x20)
            j++;
        if (j >= n || t[j] != '"')
            goto fail;
        s->fast.is_str = 1;
        s->fast.str = dupn(t + i + 1, j - i - 1);
        s->fast.slen = j - i - 1;
        i = j + 1;
    } else {
        char *end;
        if (!(t[i] == '-' || isdigit((unsigned char)t[i])))
            goto fail;
        s->fast.num = strtod(t + i, &end);
        i = (size_t)(end - t);
    }
    while (i < n && t[i] == ' ')
        i++;
    if (i != n)
        goto fail;
    p.seg = malloc(p.nseg * sizeof(char *));
    if (!p.seg)
        goto fail;
    memcpy(p.seg, segs, p.nseg * sizeof(char *));
    s->fast.p = p;
    s->fast.op = op;
    s->fast.ok = 1;
    return;
fail:
    for (size_t k = 0; k < p.nseg; k++)
        free(segs[k]);
    free(s->fast.str);
    s->fast.str = NULL;
    s->fast.is_str = 0;
}

/* ---- the NFA compiler (Flink's NFACompiler) ------------------------------------------ */

struct comp {
    struct tlm_cep_pattern *p;
    int cur, following;
    int stop_of[CEP_MAX_STAGES];
    int ftc;                 /* followingTakeCondition: take of what may follow, -1 none */
    int last_stage;          /* the stage whose sink is the final state, or -1 */
    int fail;
};

/* Whether the stage being compiled is greedy in effect. Flink makes a stage greedy by
 * adding "and not the loop's take" to the transitions of the state after it; the final
 * state has none, so a greedy last stage matches as a plain one (GreedyITCase's
 * testEndWith* cases: c a* greedy gives [c], [c a1], [c a1 a2], ...). */
static int is_greedy(const struct comp *k)
{
    return k->p->st[k->cur].greedy && k->cur != k->last_stage;
}

static int cnew(struct comp *k, int kind, int a, int b)
{
    struct tlm_cep_pattern *p = k->p;
    if (p->nc == p->ccap) {
        int nc = p->ccap ? p->ccap * 2 : 16;
        struct cep_cond *c = realloc(p->c, (size_t)nc * sizeof(*c));
        if (!c) {
            k->fail = 1;
            return 0;
        }
        p->c = c;
        p->ccap = nc;
    }
    p->c[p->nc] = (struct cep_cond){ kind, a, b };
    return p->nc++;
}

static int c_true(struct comp *k) { return cnew(k, CC_TRUE, 0, 0); }
static int c_take(struct comp *k, int stage) { return cnew(k, CC_STAGE, stage, 0); }
static int c_not(struct comp *k, int c) { return cnew(k, CC_NOT, c, 0); }
static int c_and(struct comp *k, int a, int b) { return cnew(k, CC_AND, a, b); }
static int c_or(struct comp *k, int a, int b) { return cnew(k, CC_OR, a, b); }

/* Flink's getGreedyCondition: leave a greedy stage only when the event cannot stay in it
 * and the stage after it takes the event, or when the event can neither be taken nor
 * ignored here. */
static int greedy_cond(struct comp *k, int cond, int take, int ignore)
{
    int g = c_and(k, cond, c_not(k, take));
    if (k->ftc >= 0)
        g = c_and(k, g, k->ftc);
    if (ignore >= 0)
        return c_or(k, g, c_not(k, c_or(k, take, ignore)));
    return c_or(k, g, c_not(k, take));
}

/* Flink's getFollowingTakeCondition. */
static void follow_take(struct comp *k, int take, int optional)
{
    k->ftc = optional && k->ftc >= 0 ? c_or(k, take, k->ftc) : take;
}

static int snew(struct comp *k, int stage, int type)
{
    struct tlm_cep_pattern *p = k->p;
    if (p->ns == p->scap) {
        int nc = p->scap ? p->scap * 2 : 16;
        struct cep_state *s = realloc(p->s, (size_t)nc * sizeof(*s));
        if (!s) {
            k->fail = 1;
            return 0;
        }
        p->s = s;
        p->scap = nc;
    }
    p->s[p->ns] = (struct cep_state){ stage, type, NULL, 0, 0 };
    return p->ns++;
}

static void edge(struct comp *k, int from, int action, int to, int cond)
{
    struct cep_state *s = &k->p->s[from];
    if (s->ne == s->cap) {
        int nc = s->cap ? s->cap * 2 : 4;
        struct cep_edge *e = realloc(s->e, (size_t)nc * sizeof(*e));
        if (!e) {
            k->fail = 1;
            return;
        }
        s->e = e;
        s->cap = nc;
    }
    s->e[s->ne++] = (struct cep_edge){ action, cond, to };
}

static int ignore_cond(struct comp *k, int i, int strategy)
{
    switch (strategy) {
    case CEP_RELAXED: return c_not(k, c_take(k, i));
    case CEP_ANY: return c_true(k);
    default: return -1;
    }
}

/* The negated stages whose Stop edges apply at the current stage (getCurrentNotCondition). */
static int not_conditions(struct comp *k, int *out)
{
    int n = 0;
    for (int j = k->cur - 1; j >= 0; j--) {
        const struct cep_stage *s = &k->p->st[j];
        if (s->contig == CEP_NOT_FOLLOW)
            out[n++] = j;
        else if (!s->optional)
            break;
    }
    return n;
}

static int stop_state(struct comp *k, int j)
{
    if (k->stop_of[j] < 0) {
        int s = snew(k, j, CEP_STOP);
        edge(k, s, CEP_TAKE, s, c_take(k, j));
        k->stop_of[j] = s;
    }
    return k->stop_of[j];
}

static void add_stop_states(struct comp *k, int s)
{
    int nots[CEP_MAX_STAGES], n = not_conditions(k, nots);
    for (int i = 0; i < n; i++)
        edge(k, s, CEP_PROCEED, stop_state(k, nots[i]), c_take(k, nots[i]));
}

static void add_stop_to_looping(struct comp *k, int s)
{
    if (k->following >= 0 && k->p->st[k->following].contig == CEP_NOT_FOLLOW)
        edge(k, s, CEP_PROCEED, stop_state(k, k->following), c_take(k, k->following));
}

static int copy_without_nots(struct comp *k, int sink)
{
    int nots[CEP_MAX_STAGES], n = not_conditions(k, nots);
    if (n == 0 || !k->p->st[k->cur].optional)
        return sink;
    int copy = snew(k, k->p->s[sink].stage, k->p->s[sink].type);
    for (int i = 0; i < k->p->s[sink].ne && !k->fail; i++) {
        struct cep_edge e = k->p->s[sink].e[i];
        if (e.action == CEP_PROCEED) {
            int t = e.target, remove = 0;
            if (k->p->s[t].type == CEP_STOP) {
                for (int j = 0; j < n; j++)
                    if (k->p->s[t].stage == nots[j])
                        remove = 1;
            } else {
                t = copy_without_nots(k, t);
            }
            if (!remove)
                edge(k, copy, e.action, t, e.cond);
        } else {
            edge(k, copy, e.action, e.target == sink ? copy : e.target, e.cond);
        }
    }
    return copy;
}

static int singleton(struct comp *k, int sink, int proceed, int take, int ignore, int optional)
{
    int s = snew(k, k->cur, CEP_NORMAL);
    int sinkc = copy_without_nots(k, sink);
    int pc = c_true(k);
    edge(k, s, CEP_TAKE, sinkc, take);
    if (optional) {
        if (is_greedy(k))
            pc = greedy_cond(k, pc, take, ignore);
        edge(k, s, CEP_PROCEED, proceed, pc);
    }
    if (ignore >= 0) {
        int is = s;
        if (optional) {
            is = snew(k, k->cur, CEP_NORMAL);
            edge(k, is, CEP_TAKE, sinkc, take);
            edge(k, is, CEP_IGNORE, is, ignore);
            add_stop_states(k, is);
            if (is_greedy(k))
                edge(k, is, CEP_PROCEED, proceed, pc);
        }
        edge(k, s, CEP_IGNORE, is, ignore);
    }
    follow_take(k, take, optional);
    return s;
}

/* Flink's extendWithUntilCondition: the loop neither takes nor skips an event that meets
 * its until condition. */
static int until_ext(struct comp *k, int cond, int is_take)
{
    const struct cep_stage *st = &k->p->st[k->cur];
    if (!st->until)
        return cond;
    int nu = c_not(k, cnew(k, CC_UNTIL, k->cur, 0));
    if (cond >= 0)
        return c_and(k, nu, cond);
    return is_take ? nu : cond;
}

static int looping(struct comp *k, int sink)
{
    const struct cep_stage *st = &k->p->st[k->cur];
    int take = until_ext(k, c_take(k, k->cur), 1);
    int ign = until_ext(k, ignore_cond(k, k->cur, st->inner), 0);
    int pc = c_true(k);
    if (is_greedy(k))
        pc = greedy_cond(k, pc, take, ign);
    int l = snew(k, k->cur, CEP_NORMAL);
    edge(k, l, CEP_PROCEED, sink, pc);
    edge(k, l, CEP_TAKE, l, take);
    add_stop_to_looping(k, l);
    if (ign >= 0) {
        int is = snew(k, k->cur, CEP_NORMAL);
        edge(k, is, CEP_TAKE, l, take);
        edge(k, is, CEP_IGNORE, is, ign);
        edge(k, l, CEP_IGNORE, is, ign);
        if (is_greedy(k))
            edge(k, is, CEP_PROCEED, sink, pc);
        add_stop_to_looping(k, is);
    }
    follow_take(k, take, 1);
    return l;
}

static int times_state(struct comp *k, int sink, int proceed, int from, int to)
{
    const struct cep_stage *st = &k->p->st[k->cur];
    int last = sink;
    int take = until_ext(k, c_take(k, k->cur), 1);
    int ign = until_ext(k, ignore_cond(k, k->cur, st->inner), 0);
    for (int i = from; i < to; i++) {
        last = singleton(k, last, proceed, take, ign, 1);
        add_stop_to_looping(k, last);
    }
    for (int i = 0; i < from - 1; i++) {
        last = singleton(k, last, -1, take, ign, 0);
        add_stop_to_looping(k, last);
    }
    return singleton(k, last, proceed, take, ignore_cond(k, k->cur, st->contig), st->optional);
}

static int convert(struct comp *k, int sink)
{
    const struct cep_stage *st = &k->p->st[k->cur];
    int last;
    if (st->max < 0) {
        int sinkc = copy_without_nots(k, sink);
        int l = looping(k, sinkc);
        last = times_state(k, l, sink, st->min, st->min);
    } else if (st->max > 1) {
        last = times_state(k, sink, sink, st->min, st->max);
    } else {
        last = singleton(k, sink, sink, c_take(k, k->cur), ignore_cond(k, k->cur, st->contig),
                         st->optional);
    }
    add_stop_states(k, last);
    return last;
}

static int compile_nfa(struct tlm_cep_pattern *p, struct tlm_error *err)
{
    struct comp k;
    memset(&k, 0, sizeof(k));
    k.p = p;
    k.ftc = -1;
    for (int i = 0; i < CEP_MAX_STAGES; i++)
        k.stop_of[i] = -1;
    int last = snew(&k, -1, CEP_FINAL);
    int i = (int)p->n - 1;
    k.following = -1;
    k.last_stage = p->st[i].contig == CEP_NOT_FOLLOW ? -1 : i;
    if (p->st[i].contig == CEP_NOT_FOLLOW) {
        k.cur = i;
        int pend = snew(&k, i, CEP_PENDING);
        int take = c_take(&k, i);
        edge(&k, pend, CEP_PROCEED, stop_state(&k, i), take);
        edge(&k, pend, CEP_IGNORE, pend, c_not(&k, take));
        last = pend;
        k.following = i;
        i--;
    }
    for (; i >= 1; i--) {
        k.cur = i;
        const struct cep_stage *st = &p->st[i];
        if (st->contig == CEP_NOT_NEXT) {
            int nn = snew(&k, i, CEP_NORMAL);
            int nc = c_take(&k, i);
            int stop = stop_state(&k, i);
            if (p->s[last].type == CEP_FINAL)
                edge(&k, nn, CEP_IGNORE, last, c_not(&k, nc));
            else
                edge(&k, nn, CEP_PROCEED, last, c_not(&k, nc));
            edge(&k, nn, CEP_PROCEED, stop, nc);
            last = nn;
        } else if (st->contig != CEP_NOT_FOLLOW) {
            last = convert(&k, last);
        }
        k.following = i;
    }
    k.cur = 0;
    p->start = convert(&k, last);
    if (k.fail)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return 0;
}

/* ---- checking and finishing a pattern ----------------------------------------------- */

static int finish(struct tlm_cep_pattern *p, struct tlm_error *err)
{
    static const char *const reserved[] = { "pattern", "key", "prev", "timeout", NULL };
    if (p->n == 0)
        return perr(err, 1, "a pattern needs at least one stage%s", NULL);
    if (p->n > CEP_MAX_STAGES)
        return perr(err, 1, "too many stages (at most 64)%s", NULL);
    for (size_t i = 0; i < p->n; i++) {
        struct cep_stage *s = &p->st[i];
        int neg = s->contig == CEP_NOT_NEXT || s->contig == CEP_NOT_FOLLOW;
        for (int r = 0; reserved[r]; r++)
            if (strcmp(s->name, reserved[r]) == 0)
                return perr(err, s->col, "'%s' is reserved and cannot name a stage", s->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->st[j].name, s->name) == 0)
                return perr(err, s->col, "two stages are named '%s'", s->name);
        if (i == 0 && neg)
            return perr(err, s->col, "a pattern cannot start with a negated stage ('%s')", s->name);
        if (neg && (s->min != 1 || s->max != 1 || s->optional || s->greedy))
            return perr(err, s->col, "a negated stage ('%s') cannot have a quantifier", s->name);
        if (neg && i > 0 && p->st[i - 1].optional)
            return perr(err, s->col, "a negated stage ('%s') cannot follow an optional stage", s->name);
        if (s->contig == CEP_NOT_FOLLOW && i + 1 == p->n && !p->within)
            return perr(err, s->col, "a pattern can end with a '->' negated stage ('%s') only with within",
                        s->name);
        if (s->greedy && s->max == 1)
            return perr(err, s->col, "greedy applies to a quantified stage ('%s')", s->name);
        if (s->until_src && s->max >= 0)
            return perr(err, s->col, "until applies to a stage that loops (+, * or {n,}): '%s'",
                        s->name);
        if (s->inner != CEP_RELAXED && s->max == 1)
            return perr(err, s->col, "consecutive and combinations apply to a quantified stage ('%s')",
                        s->name);
        if (s->min == 0) { /* Flink: times(0, m) is times(1, m).optional() */
            s->min = 1;
            s->optional = 1;
        }
        if (s->max >= 0 && s->max < s->min)
            return perr(err, s->col, "stage '%s': at most is less than at least", s->name);
        p->loops[i] = s->max != 1;
        if (i == 0)
            s->contig = CEP_STRICT;
    }
    if (p->skip == CEP_SKIP_FIRST || p->skip == CEP_SKIP_LAST) {
        if (p->skip_stage < 0)
            return perr(err, 1, "skip: no such stage%s", NULL);
        /* skip to first <first stage>: the match's own first event, so nothing is pruned
         * (Flink CEP without throwExceptionOnMiss: no skip in effect) */
    }
    for (size_t i = 0; i < p->n; i++) {
        struct cep_stage *s = &p->st[i];
        int iter = 0;
        if (!(s->expr = compile_over(p, s->src, 1, 0, &iter, err))) {
            if (err) {
                char buf[TLM_ERROR_TEXT];
                snprintf(buf, sizeof(buf), "%.400s", err->text);
                snprintf(err->text, sizeof(err->text), "stage '%.60s': %.400s", s->name, buf);
                if (s->srccol && err->column)
                    err->column += s->srccol - 1;
            }
            return TLM_EPARSE;
        }
        s->iterative = iter;
        s->npaths = tlm_expr_root_paths(s->expr, &s->paths);
        if (s->until_src && !(s->until = compile_over(p, s->until_src, 1, 0, NULL, err))) {
            if (err) {
                char buf[TLM_ERROR_TEXT];
                snprintf(buf, sizeof(buf), "%.400s", err->text);
                snprintf(err->text, sizeof(err->text), "stage '%.60s': until: %.400s", s->name, buf);
                err->column = s->col;
            }
            return TLM_EPARSE;
        }
        if (!iter)
            fast_form(s);
    }
    return compile_nfa(p, err);
}

static struct tlm_cep_pattern *pattern_new(void)
{
    struct tlm_cep_pattern *p = calloc(1, sizeof(*p));
    if (p && !(p->id = strdup("p1"))) {
        free(p);
        p = NULL;
    }
    if (p)
        p->skip_stage = -1;
    return p;
}

static int add_stage(struct tlm_cep_pattern *p, struct cep_stage *s)
{
    struct cep_stage *n = realloc(p->st, (p->n + 1) * sizeof(*n));
    if (!n)
        return TLM_ENOMEM;
    p->st = n;
    p->st[p->n++] = *s;
    return 0;
}

/* ---- the one-line language ---------------------------------------------------------- */

/* Skip clause words: "skip to next", "skip past last event", "skip to first NAME",
 * "skip to last NAME", "no skip". */
static int parse_skip(struct tlm_cep_pattern *p, const char *t, char **name)
{
    char w[5][64];
    int n = sscanf(t, " %63s %63s %63s %63s %63s", w[0], w[1], w[2], w[3], w[4]);
    *name = NULL;
    if (n == 2 && !strcmp(w[0], "no") && !strcmp(w[1], "skip"))
        p->skip = CEP_NO_SKIP;
    else if (n == 3 && !strcmp(w[0], "skip") && !strcmp(w[1], "to") && !strcmp(w[2], "next"))
        p->skip = CEP_SKIP_NEXT;
    else if ((n == 3 || (n == 4 && !strcmp(w[3], "event"))) && !strcmp(w[0], "skip") &&
             !strcmp(w[1], "past") && !strcmp(w[2], "last"))
        p->skip = CEP_SKIP_PAST_LAST;
    else if (n == 4 && !strcmp(w[0], "skip") && !strcmp(w[1], "to") &&
             (!strcmp(w[2], "first") || !strcmp(w[2], "last"))) {
        p->skip = !strcmp(w[2], "first") ? CEP_SKIP_FIRST : CEP_SKIP_LAST;
        *name = strdup(w[3]);
    } else
        return -1;
    return 0;
}

static int resolve_skip(struct tlm_cep_pattern *p, char *name, long col, struct tlm_error *err)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->st[i].name, name))
            p->skip_stage = (int)i;
    if (p->skip_stage < 0) {
        perr(err, col, "skip: no stage named '%s'", name);
        free(name);
        return TLM_EPARSE;
    }
    free(name);
    return 0;
}

/* Strips trailing blanks of t[0..*n). */
static void rtrim(const char *t, size_t *n)
{
    while (*n && isspace((unsigned char)t[*n - 1]))
        (*n)--;
}

static int ends_word(const char *t, size_t n, const char *w)
{
    size_t l = strlen(w);
    return n > l && !memcmp(t + n - l, w, l) && !is_id((unsigned char)t[n - l - 1]) &&
           isspace((unsigned char)t[n - l - 1]);
}

/* Where the "{" of a trailing "{...}" in t[i..end) is (t[end - 1] is '}'), or -1. */
static size_t brace_at(const char *t, size_t i, size_t end)
{
    size_t b = end - 1;
    while (b > i && t[b] != '{')
        b--;
    return t[b] == '{' && b + 1 < end ? b : (size_t)-1;
}

/* One step of a scan of t[0..n) for what stands at its top level: a quoted string is
 * skipped whole (*i left on its closing quote), a bracket moves *depth. 1 when t[*i] is
 * outside quotes at depth 0 (a closing bracket back to 0 included), else 0. */
static int top_level(const char *t, size_t n, size_t *i, int *depth)
{
    char c = t[*i];
    if (c == '"' || c == '\'') {
        (*i)++;
        while (*i < n && t[*i] != c)
            *i += t[*i] == '\\' ? 2 : 1;
        return 0;
    }
    if (c == '(' || c == '[' || c == '{')
        (*depth)++;
    else if (c == ')' || c == ']' || c == '}')
        (*depth)--;
    return *depth == 0;
}

/* One stage: "[!]name: condition [quant] [modifiers]" at src[off..off+n). */
static int parse_stage(struct tlm_cep_pattern *p, const char *src, size_t off, size_t n,
                       int contig, struct tlm_error *err)
{
    const char *t = src + off;
    struct cep_stage s;
    size_t i = 0;
    memset(&s, 0, sizeof(s));
    s.contig = contig;
    s.min = s.max = 1;
    s.inner = CEP_RELAXED;
    while (i < n && isspace((unsigned char)t[i]))
        i++;
    if (i < n && t[i] == '!') {
        s.contig = contig == CEP_STRICT ? CEP_NOT_NEXT : contig == CEP_RELAXED ? CEP_NOT_FOLLOW : -1;
        if (s.contig < 0)
            return perr(err, (long)(off + i + 1), "a negated stage follows '=>' or '->', not '->>'%s", NULL);
        i++;
        while (i < n && isspace((unsigned char)t[i]))
            i++;
    }
    size_t ns = i;
    while (i < n && is_id((unsigned char)t[i]))
        i++;
    if (i == ns || !is_id0((unsigned char)t[ns]))
        return perr(err, (long)(off + ns + 1), "expected a stage name (name: condition)%s", NULL);
    size_t ne = i;
    while (i < n && isspace((unsigned char)t[i]))
        i++;
    if (i >= n || t[i] != ':')
        return perr(err, (long)(off + i + 1), "expected ':' after the stage name%s", NULL);
    i++;
    size_t end = n;
    /* "... until <condition>": the loop's stop condition, at the top level of the text */
    {
        int depth = 0;
        for (size_t j = i; j + 7 <= n; j++) {
            if (!top_level(t, n, &j, &depth))
                continue;
            if (isspace((unsigned char)t[j]) && !strncmp(t + j + 1, "until", 5) &&
                isspace((unsigned char)t[j + 6])) {
                size_t us = j + 6, ue = n;
                while (us < n && isspace((unsigned char)t[us]))
                    us++;
                rtrim(t, &ue);
                if (us >= ue)
                    return perr(err, (long)(off + j + 2), "expected a condition after until%s", NULL);
                if (!(s.until_src = dupn(t + us, ue - us)))
                    return tlm_error_set(err, TLM_ENOMEM, "out of memory");
                end = j;
                break;
            }
        }
    }
    rtrim(t, &end);
    if (ends_word(t + i, end - i, "until"))
        return perr(err, (long)(off + end - 5 + 1), "expected a condition after until%s", NULL);
    /* the modifiers, read from the end: each once, consecutive or combinations (not both),
     * greedy not with combinations (Flink's Quantifier checks) */
    for (int inner_set = 0;;) {
        const char *why = NULL;
        size_t w;
        if (ends_word(t + i, end - i, "greedy")) {
            why = s.greedy ? "greedy is given twice" : NULL;
            s.greedy = 1;
            w = 6;
        } else if (ends_word(t + i, end - i, "consecutive") ||
                   ends_word(t + i, end - i, "combinations")) {
            int any = ends_word(t + i, end - i, "combinations");
            why = inner_set ? "either consecutive or combinations, once" : NULL;
            inner_set = 1;
            s.inner = any ? CEP_ANY : CEP_STRICT;
            w = any ? 12 : 11;
        } else
            break;
        if (!why && s.greedy && s.inner == CEP_ANY)
            why = "greedy does not apply with combinations";
        if (why) {
            free(s.until_src);
            return perr(err, (long)(off + end - w + 1), "%s", why);
        }
        end -= w;
        rtrim(t, &end);
    }
    if (end > i && t[end - 1] == '?') {
        s.optional = 1;
        end--;
        rtrim(t, &end);
    }
    if (end > i && t[end - 1] == '+') {
        s.max = -1;
        end--;
    } else if (end > i && t[end - 1] == '*') {
        s.max = -1;
        s.optional = 1;
        end--;
    } else if (end > i && t[end - 1] == '}' && brace_at(t, i, end) != (size_t)-1) {
        size_t b = brace_at(t, i, end);
        char *q = dupn(t + b + 1, end - b - 2);
        int a = -1, c = -1, len = 0;
        if (!q)
            return TLM_ENOMEM;
        if (sscanf(q, " %d , %d %n", &a, &c, &len) == 2 && q[len] == 0) {
            s.min = a;
            s.max = c;
        } else if (sscanf(q, " %d , %n", &a, &len) == 1 && len && q[len] == 0) {
            s.min = a;
            s.max = -1;
        } else if (sscanf(q, " %d %n", &a, &len) == 1 && q[len] == 0) {
            s.min = s.max = a;
        } else {
            free(q);
            free(s.until_src);
            return perr(err, (long)(off + b + 1), "expected {n}, {n,} or {n,m}%s", NULL);
        }
        for (const char *d = q; *d; d++) /* each count at most 100000 (as in documents) */
            if (isdigit((unsigned char)*d) && (d == q || !isdigit((unsigned char)d[-1])) &&
                (strspn(d, "0123456789") > 6 || atol(d) > 100000)) {
                free(q);
                free(s.until_src);
                return perr(err, (long)(off + b + 1), "a count is at most 100000%s", NULL);
            }
        free(q);
        if (s.min < 0 || s.max == 0) {
            free(s.until_src);
            return perr(err, (long)(off + b + 1), "counts must be positive%s", NULL);
        }
        if (s.max < 0 && s.min == 0) {
            s.min = 1;
            s.optional = 1;
        }
        end = b;
    }
    rtrim(t, &end);
    size_t cs = i;
    while (cs < end && isspace((unsigned char)t[cs]))
        cs++;
    if (cs >= end) {
        free(s.until_src);
        return perr(err, (long)(off + cs + 1), "expected a condition after ':'%s", NULL);
    }
    s.name = dupn(t + ns, ne - ns);
    s.col = (long)(off + ns + 1);
    s.srccol = (long)(off + cs + 1);
    s.src = dupn(t + cs, end - cs);
    if (!s.name || !s.src || add_stage(p, &s)) {
        free(s.name);
        free(s.src);
        free(s.until_src);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    return 0;
}

struct tlm_cep_pattern *tlm_cep_pattern_parse(const char *src, struct tlm_error *err)
{
    struct tlm_cep_pattern *p = pattern_new();
    size_t n = strlen(src), seg = 0, clauses = n;
    int depth = 0, contig = CEP_STRICT, rc;
    char *skipname = NULL;
    long skipcol = 0;
    if (!p) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    /* find the trailing clauses: the first top-level word "within", "skip" or "no skip" */
    for (size_t i = 0; i < n; i++) {
        size_t at = i;
        if (!top_level(src, n, &i, &depth)) {
            if ((src[at] == '"' || src[at] == '\'') && i >= n) {
                perr(err, (long)at + 1, "a string that is never closed (no %s after it)",
                     src[at] == '"' ? "\"" : "'");
                goto fail;
            }
            continue;
        }
        if ((i == 0 || isspace((unsigned char)src[i - 1])) &&
                 ((!strncmp(src + i, "within", 6) && isspace((unsigned char)src[i + 6])) ||
                  (!strncmp(src + i, "skip", 4) && isspace((unsigned char)src[i + 4])) ||
                  (!strncmp(src + i, "no skip", 7) && (i + 7 == n || isspace((unsigned char)src[i + 7]))))) {
            clauses = i;
            break;
        }
    }
    /* the clauses, each at most once */
    int seen_within = 0, seen_skip = 0;
    for (size_t i = clauses; i < n;) {
        while (i < n && isspace((unsigned char)src[i]))
            i++;
        if (i >= n)
            break;
        if (!strncmp(src + i, "within", 6)) {
            size_t j = i + 6, k;
            if (seen_within++) {
                perr(err, (long)i + 1, "within is given twice%s", NULL);
                goto fail;
            }
            while (j < n && isspace((unsigned char)src[j]))
                j++;
            k = j;
            while (k < n && !isspace((unsigned char)src[k]))
                k++;
            char *d = dupn(src + j, k - j);
            struct tlm_error e2;
            if (!d || tlm_duration_parse(d, &p->within, &e2) || p->within <= 0) {
                free(d);
                perr(err, (long)j + 1, "within: expected a duration such as 30s or 24h%s", NULL);
                goto fail;
            }
            free(d);
            i = k;
        } else if (!strncmp(src + i, "skip", 4) || !strncmp(src + i, "no skip", 7)) {
            size_t j = i;
            if (seen_skip++) {
                perr(err, (long)i + 1, "a skip strategy is given twice%s", NULL);
                goto fail;
            }
            while (j < n && strncmp(src + j, " within", 7))
                j++;
            char *t = dupn(src + i, j - i);
            if (!t || parse_skip(p, t, &skipname)) {
                free(t);
                perr(err, (long)i + 1, "expected skip to next, skip past last event, skip to "
                     "first NAME, skip to last NAME or no skip%s", NULL);
                goto fail;
            }
            free(t);
            skipcol = (long)i + 1;
            i = j;
        } else {
            perr(err, (long)i + 1, "expected within or skip%s", NULL);
            goto fail;
        }
    }
    /* the stages, split at top-level operators */
    depth = 0;
    for (size_t i = 0; i <= clauses; i++) {
        int op = -1;
        size_t oplen = 0;
        if (i < clauses) {
            if (!top_level(src, clauses, &i, &depth))
                continue;
            if (!strncmp(src + i, "->>", 3))
                op = CEP_ANY, oplen = 3;
            else if (!strncmp(src + i, "->", 2))
                op = CEP_RELAXED, oplen = 2;
            else if (!strncmp(src + i, "=>", 2))
                op = CEP_STRICT, oplen = 2;
            else
                continue;
        }
        if ((rc = parse_stage(p, src, seg, i - seg, contig, err)) != 0)
            goto fail;
        if (op < 0)
            break;
        contig = op;
        i += oplen - 1;
        seg = i + 1;
    }
    if (resolve_skip(p, skipname, skipcol, err)) {
        skipname = NULL;
        goto fail;
    }
    skipname = NULL;
    if (finish(p, err))
        goto fail;
    return p;
fail:
    free(skipname);
    tlm_cep_pattern_destroy(p);
    return NULL;
}

/* ---- JSON documents ---------------------------------------------------------------- */

static const char *const contig_names[] = { "next", "followedBy", "followedByAny", "notNext",
                                            "notFollowedBy" };
static const char *const inner_names[] = { "consecutive", "relaxed", "combinations" };

static int jerr(struct tlm_error *err, const char *what)
{
    tlm_error_set(err, TLM_EPARSE, "pattern document: %s", what);
    if (err)
        err->column = 0;
    return TLM_EPARSE;
}

/* The first member of obj not in names (NULL-terminated), or NULL. */
static const char *unknown_member(const json_t *obj, const char *const *names)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        size_t i;
        for (i = 0; names[i] && strcmp(names[i], k) != 0; i++)
            ;
        if (!names[i])
            return k;
    }
    return NULL;
}

struct tlm_cep_pattern *tlm_cep_pattern_from_json(const json_t *doc, struct tlm_error *err)
{
    static const char *const doc_members[] = { "id", "pattern", "stages", "within", "skip", NULL };
    static const char *const stage_members[] = { "name",  "where",    "contiguity", "inner", "min",
                                                 "max",   "optional", "greedy",     "until", NULL };
    struct tlm_cep_pattern *p = NULL;
    const char *id = NULL, *unknown;
    json_t *v;
    char what[256];
    if (!json_is_object(doc)) {
        jerr(err, "expected an object");
        return NULL;
    }
    if ((unknown = unknown_member(doc, doc_members))) {
        snprintf(what, sizeof(what), "unknown member \"%.100s\" (members: id, pattern or stages, within, skip)",
                 unknown);
        jerr(err, what);
        return NULL;
    }
    v = json_object_get(doc, "id");
    if (v && !json_is_string(v) && !json_is_integer(v)) {
        jerr(err, "\"id\" must be a string");
        return NULL;
    }
    id = json_is_string(v) ? json_string_value(v) : NULL;
    if ((v = json_object_get(doc, "pattern"))) {
        if (!json_is_string(v)) {
            jerr(err, "\"pattern\" must be a string in the pattern language");
            return NULL;
        }
        json_t *w = json_object_get(doc, "within"), *sk = json_object_get(doc, "skip");
        const char *text = json_string_value(v);
        if ((w && !json_is_string(w)) || (sk && !json_is_string(sk))) {
            jerr(err, "\"within\" and \"skip\" must be strings (a duration, a skip strategy)");
            return NULL;
        }
        if (!w && !sk && !(p = tlm_cep_pattern_parse(text, err)))
            return NULL;
        if (w || sk) {
            /* the members are the text's trailing clauses (a clause given twice, in the
             * text and as a member, is an error of the parser) */
            struct tlm_buf b = TLM_BUF_INIT;
            if (tlm_buf_puts(&b, text) ||
                (w && tlm_buf_printf(&b, " within %s", json_string_value(w))) ||
                (sk && tlm_buf_printf(&b, " %s", json_string_value(sk))) || tlm_buf_putc(&b, 0)) {
                tlm_buf_free(&b);
                tlm_error_set(err, TLM_ENOMEM, "out of memory");
                return NULL;
            }
            p = tlm_cep_pattern_parse(b.data, err);
            tlm_buf_free(&b);
            if (!p) {
                if (err && err->column > (long)strlen(text)) {
                    char why[TLM_ERROR_TEXT];
                    snprintf(why, sizeof(why), "%s", err->text);
                    tlm_error_set(err, TLM_EPARSE, "pattern document: \"%s\": %s",
                                  sk && (!w || strncmp(why, "within", 6) != 0) ? "skip" : "within",
                                  why);
                    err->column = 0;
                }
                return NULL;
            }
        }
    } else {
        json_t *stages = json_object_get(doc, "stages"), *s;
        size_t i;
        char *skipname = NULL;
        if (!json_is_array(stages) || json_array_size(stages) == 0) {
            jerr(err, "expected \"pattern\" (a string) or \"stages\" (an array)");
            return NULL;
        }
        if (!(p = pattern_new())) {
            tlm_error_set(err, TLM_ENOMEM, "out of memory");
            return NULL;
        }
        json_array_foreach(stages, i, s) {
            struct cep_stage st;
            memset(&st, 0, sizeof(st));
            st.contig = CEP_RELAXED;
            st.inner = CEP_RELAXED;
            st.min = st.max = 1;
            json_t *name = json_object_get(s, "name"), *where = json_object_get(s, "where");
            if (json_is_object(s) && (unknown = unknown_member(s, stage_members))) {
                snprintf(what, sizeof(what), "stage %zu: unknown member \"%.100s\"", i + 1, unknown);
                jerr(err, what);
                goto fail;
            }
            if (!json_is_string(name) || !json_is_string(where)) {
                jerr(err, "each stage needs \"name\" and \"where\" (strings)");
                goto fail;
            }
            if ((v = json_object_get(s, "contiguity"))) {
                int k;
                for (k = 0; k < 5 && !(json_is_string(v) && !strcmp(json_string_value(v), contig_names[k])); k++)
                    ;
                if (k == 5) {
                    jerr(err, "\"contiguity\": expected next, followedBy, followedByAny, notNext or notFollowedBy");
                    goto fail;
                }
                st.contig = k;
            }
            if ((v = json_object_get(s, "inner"))) {
                int k;
                for (k = 0; k < 3 && !(json_is_string(v) && !strcmp(json_string_value(v), inner_names[k])); k++)
                    ;
                if (k == 3) {
                    jerr(err, "\"inner\": expected consecutive, relaxed or combinations");
                    goto fail;
                }
                st.inner = k;
            }
            if ((v = json_object_get(s, "min"))) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000) {
                    jerr(err, "\"min\" must be a count");
                    goto fail;
                }
                st.min = (int)json_integer_value(v);
                if (!json_object_get(s, "max"))
                    st.max = st.min ? st.min : 1;
            }
            if ((v = json_object_get(s, "max"))) {
                if (json_is_null(v))
                    st.max = -1;
                else if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100000) {
                    jerr(err, "\"max\" must be a count >= 1 or null (no limit)");
                    goto fail;
                } else
                    st.max = (int)json_integer_value(v);
            }
            if (st.max < 0 && st.min == 0) {
                st.min = 1;
                st.optional = 1;
            }
            if ((v = json_object_get(s, "until")) && !json_is_string(v)) {
                jerr(err, "\"until\" must be a condition (a string)");
                goto fail;
            }
            st.optional |= json_is_true(json_object_get(s, "optional"));
            st.greedy = json_is_true(json_object_get(s, "greedy"));
            st.name = strdup(json_string_value(name));
            st.src = strdup(json_string_value(where));
            if (json_is_string(v = json_object_get(s, "until")))
                st.until_src = strdup(json_string_value(v));
            if (!st.name || !st.src || add_stage(p, &st)) {
                free(st.name);
                free(st.src);
                free(st.until_src);
                tlm_error_set(err, TLM_ENOMEM, "out of memory");
                goto fail;
            }
        }
        if ((v = json_object_get(doc, "within"))) {
            struct tlm_error e2;
            if (!json_is_string(v) || tlm_duration_parse(json_string_value(v), &p->within, &e2) ||
                p->within <= 0) {
                jerr(err, "\"within\" must be a duration such as \"24h\"");
                goto fail;
            }
        }
        if ((v = json_object_get(doc, "skip"))) {
            if (!json_is_string(v) || parse_skip(p, json_string_value(v), &skipname)) {
                jerr(err, "\"skip\": expected \"skip to next\", \"skip past last event\", "
                          "\"skip to first NAME\", \"skip to last NAME\" or \"no skip\"");
                goto fail;
            }
            if (resolve_skip(p, skipname, 0, err))
                goto fail;
        }
        if (finish(p, err))
            goto fail;
    }
    if (id && tlm_cep_pattern_set_id(p, id)) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        goto fail;
    }
    return p;
fail:
    tlm_cep_pattern_destroy(p);
    return NULL;
}

json_t *tlm_cep_pattern_to_json(const struct tlm_cep_pattern *p)
{
    json_t *doc = json_object(), *stages = json_array();
    char buf[64];
    if (!doc || !stages) {
        json_decref(doc);
        json_decref(stages);
        return NULL;
    }
    json_object_set_new(doc, "id", json_string(p->id));
    for (size_t i = 0; i < p->n; i++) {
        const struct cep_stage *s = &p->st[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(s->name));
        json_object_set_new(o, "where", json_string(s->src));
        if (i > 0)
            json_object_set_new(o, "contiguity", json_string(contig_names[s->contig]));
        json_object_set_new(o, "min", json_integer(s->min));
        json_object_set_new(o, "max", s->max < 0 ? json_null() : json_integer(s->max));
        if (s->optional)
            json_object_set_new(o, "optional", json_true());
        if (s->greedy)
            json_object_set_new(o, "greedy", json_true());
        if (s->max != 1)
            json_object_set_new(o, "inner", json_string(inner_names[s->inner]));
        if (s->until_src)
            json_object_set_new(o, "until", json_string(s->until_src));
        json_array_append_new(stages, o);
    }
    json_object_set_new(doc, "stages", stages);
    if (p->within)
        json_object_set_new(doc, "within", json_string(tlm_duration_format(p->within, buf, sizeof(buf))));
    switch (p->skip) {
    case CEP_NO_SKIP: snprintf(buf, sizeof(buf), "no skip"); break;
    case CEP_SKIP_NEXT: snprintf(buf, sizeof(buf), "skip to next"); break;
    case CEP_SKIP_PAST_LAST: snprintf(buf, sizeof(buf), "skip past last event"); break;
    default:
        snprintf(buf, sizeof(buf), "skip to %s %s", p->skip == CEP_SKIP_FIRST ? "first" : "last",
                 p->st[p->skip_stage].name);
    }
    json_object_set_new(doc, "skip", json_string(buf));
    return doc;
}
