/*
 * expr_eval.c - evaluation of compiled expressions and JSONPath queries.
 *
 * A value during evaluation is a struct val: a json_t that is either borrowed (from the
 * event, a binding or a literal of the tree) or owned (computed), or nothing (NULL), or a
 * node list (an owned array, from a non-singular query). Field reads and comparisons with
 * constants therefore allocate nothing: a singular query walks the event with
 * json_object_getn/json_array_get and returns a borrowed pointer, and booleans are
 * jansson's static singletons.
 *
 * Semantics (see man/telem-expr.7): comparisons follow RFC 9535 section 2.3.5.2.2 (nothing
 * equals only nothing; values of different types are unequal; ordering only between two
 * numbers or two strings; 1 == 1.0). Arithmetic keeps integers integral while exact,
 * propagates nothing, and reports other types as TLM_ETYPE, division by zero and
 * overflow as TLM_ERANGE. Truth is jq's: only nothing, false and null are false; inside
 * a filter a query used as a test means "selects at least one node".
 *
 * References: RFC 9535 sections 2.3-2.7 (selectors, segments, normalized paths).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "expr_int.h"
#include "time.h"

struct evalctx {
    json_t *root;                    /* borrowed: $ */
    json_t *cur;                     /* borrowed: @ inside filters */
    const struct tlm_expr *e;        /* for binding names; NULL for bare JSONPath */
    const struct tlm_expr_env *env;  /* may be NULL */
    struct tlm_error *err;
};

static int eval(struct evalctx *cx, const struct node *n, struct val *out);

/* ---- values ------------------------------------------------------------------------- */

void tlm_expr_val_drop(struct val *v)
{
    if (v->owned && v->j)
        json_decref(v->j);
    v->j = NULL;
    v->owned = 0;
    v->nodes = 0;
}

/* Turns a node list into a value: none -> nothing, one -> it, several -> the array. */
static void norm(struct val *v)
{
    if (!v->nodes)
        return;
    size_t n = json_array_size(v->j);
    if (n >= 2) {
        v->nodes = 0;
        return;
    }
    json_t *x = n ? json_incref(json_array_get(v->j, 0)) : NULL;
    tlm_expr_val_drop(v);
    v->j = x;
    v->owned = x != NULL;
}

static int set_owned(struct evalctx *cx, struct val *out, json_t *v)
{
    out->j = v;
    out->owned = 1;
    out->nodes = 0;
    if (!v)
        return tlm_error_set(cx->err, TLM_ENOMEM, "out of memory");
    return 1;
}

static int set_bool(struct val *out, int b)
{
    out->j = b ? json_true() : json_false();
    out->owned = 0;
    out->nodes = 0;
    return 1;
}

static const char *tname(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int rt_error(struct evalctx *cx, const struct node *n, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int rt_error(struct evalctx *cx, const struct node *n, int code, const char *fmt, ...)
{
    if (cx->err) {
        char text[TLM_ERROR_TEXT];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        tlm_error_set(cx->err, code, "%s", text);
        cx->err->column = n->col;
    }
    return code;
}

int tlm_expr_truthy(const struct val *v)
{
    if (!v->j)
        return 0;
    if (v->nodes)
        return json_array_size(v->j) > 0; /* never reached after norm */
    return !json_is_false(v->j) && !json_is_null(v->j);
}

/* ---- comparison (RFC 9535 section 2.3.5.2.2) ---------------------------------------- */

static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    double x = json_number_value(a), y = json_number_value(b);
    return x < y ? -1 : x > y;
}

static int str_cmp(const json_t *a, const json_t *b)
{
    size_t la = json_string_length(a), lb = json_string_length(b);
    int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
    if (c)
        return c;
    return la < lb ? -1 : la > lb;
}

static int deep_eq(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return num_cmp(a, b) == 0;
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return str_cmp(a, b) == 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!deep_eq(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    case JSON_OBJECT: {
        const char *k;
        size_t klen;
        json_t *v;
        if (json_object_size(a) != json_object_size(b))
            return 0;
        json_object_keylen_foreach((json_t *)a, k, klen, v) {
            json_t *w = json_object_getn(b, k, klen);
            if (!w || !deep_eq(v, w))
                return 0;
        }
        return 1;
    }
    default:
        return 1; /* true, false, null */
    }
}

static int val_eq(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return !a && !b;
    return deep_eq(a, b);
}

static int val_lt(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return 0;
    if (json_is_number(a) && json_is_number(b))
        return num_cmp(a, b) < 0;
    if (json_is_string(a) && json_is_string(b))
        return str_cmp(a, b) < 0;
    return 0;
}

static int compare(int op, const json_t *a, const json_t *b)
{
    switch (op) {
    case T_EQ: return val_eq(a, b);
    case T_NE: return !val_eq(a, b);
    case T_LT: return val_lt(a, b);
    case T_LE: return val_lt(a, b) || val_eq(a, b);
    case T_GT: return val_lt(b, a);
    default: return val_lt(b, a) || val_eq(a, b);
    }
}

/* ---- arithmetic --------------------------------------------------------------------- */

static int arith_error(struct evalctx *cx, const struct node *n, const json_t *a, const json_t *b)
{
    switch (n->op) {
    case T_PLUS:
        return rt_error(cx, n, TLM_ETYPE, "cannot add %s to %s", tname(b), tname(a));
    case T_MINUS:
        return rt_error(cx, n, TLM_ETYPE, "cannot subtract %s from %s", tname(b), tname(a));
    case T_STAR:
        return rt_error(cx, n, TLM_ETYPE, "cannot multiply %s by %s", tname(a), tname(b));
    case T_SLASH:
        return rt_error(cx, n, TLM_ETYPE, "cannot divide %s by %s", tname(a), tname(b));
    default:
        return rt_error(cx, n, TLM_ETYPE, "cannot take the remainder of %s by %s", tname(a),
                        tname(b));
    }
}

static int real_result(struct evalctx *cx, const struct node *n, double d, struct val *out)
{
    if (!isfinite(d))
        return rt_error(cx, n, TLM_ERANGE, "arithmetic overflow");
    return set_owned(cx, out, json_real(d));
}

static int arith(struct evalctx *cx, const struct node *n, const json_t *a, const json_t *b,
                 struct val *out)
{
    if (n->op == T_PLUS && json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        char *s = malloc(la + lb + 1);
        if (!s)
            return set_owned(cx, out, NULL);
        memcpy(s, json_string_value(a), la);
        memcpy(s + la, json_string_value(b), lb);
        s[la + lb] = '\0';
        json_t *r = json_stringn_nocheck(s, la + lb);
        free(s);
        return set_owned(cx, out, r);
    }
    if (!json_is_number(a) || !json_is_number(b))
        return arith_error(cx, n, a, b);
    if (json_is_integer(a) && json_is_integer(b)) {
        int64_t x = json_integer_value(a), y = json_integer_value(b), r;
        switch (n->op) {
        case T_PLUS:
            if (!__builtin_add_overflow(x, y, &r))
                return set_owned(cx, out, json_integer(r));
            break;
        case T_MINUS:
            if (!__builtin_sub_overflow(x, y, &r))
                return set_owned(cx, out, json_integer(r));
            break;
        case T_STAR:
            if (!__builtin_mul_overflow(x, y, &r))
                return set_owned(cx, out, json_integer(r));
            break;
        case T_SLASH:
            if (y == 0)
                return rt_error(cx, n, TLM_ERANGE, "division by zero");
            if (!(x == INT64_MIN && y == -1) && x % y == 0)
                return set_owned(cx, out, json_integer(x / y));
            break;
        default:
            if (y == 0)
                return rt_error(cx, n, TLM_ERANGE, "division by zero");
            return set_owned(cx, out, json_integer(y == -1 ? 0 : x % y));
        }
    }
    double x = json_number_value(a), y = json_number_value(b);
    switch (n->op) {
    case T_PLUS: return real_result(cx, n, x + y, out);
    case T_MINUS: return real_result(cx, n, x - y, out);
    case T_STAR: return real_result(cx, n, x * y, out);
    case T_SLASH:
        if (y == 0)
            return rt_error(cx, n, TLM_ERANGE, "division by zero");
        return real_result(cx, n, x / y, out);
    default:
        if (y == 0)
            return rt_error(cx, n, TLM_ERANGE, "division by zero");
        return real_result(cx, n, fmod(x, y), out);
    }
}

/* ---- node lists and segments -------------------------------------------------------- */

struct nl {
    json_t **v;   /* borrowed values */
    char **p;     /* normalized paths (owned) when paths is set */
    size_t n, cap;
    int paths;
};

static void nl_free(struct nl *l)
{
    if (l->p)
        for (size_t i = 0; i < l->n; i++)
            free(l->p[i]);
    free(l->p);
    free(l->v);
    l->v = NULL;
    l->p = NULL;
    l->n = l->cap = 0;
}

static void put_name_path(struct tlm_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    tlm_buf_puts(b, "['");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\'': tlm_buf_puts(b, "\\'"); break;
        case '\\': tlm_buf_puts(b, "\\\\"); break;
        case '\b': tlm_buf_puts(b, "\\b"); break;
        case '\f': tlm_buf_puts(b, "\\f"); break;
        case '\n': tlm_buf_puts(b, "\\n"); break;
        case '\r': tlm_buf_puts(b, "\\r"); break;
        case '\t': tlm_buf_puts(b, "\\t"); break;
        default:
            if (c < 0x20) {
                char u[7] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0 };
                tlm_buf_puts(b, u);
            } else {
                tlm_buf_putc(b, (char)c);
            }
        }
    }
    tlm_buf_puts(b, "']");
}

/* Appends v; its path is parent + ['name'] (name != NULL) or + [idx]. */
static int nl_push(struct nl *l, json_t *v, const char *parent, const char *name, size_t nlen,
                   size_t idx)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        json_t **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return TLM_ENOMEM;
        l->v = nv;
        if (l->paths) {
            char **np = realloc(l->p, nc * sizeof *np);
            if (!np)
                return TLM_ENOMEM;
            l->p = np;
        }
        l->cap = nc;
    }
    if (l->paths) {
        struct tlm_buf b = TLM_BUF_INIT;
        tlm_buf_puts(&b, parent ? parent : "$");
        if (name)
            put_name_path(&b, name, nlen);
        else if (parent)
            tlm_buf_printf(&b, "[%zu]", idx);
        if (!b.data)
            return TLM_ENOMEM;
        l->p[l->n] = b.data;
    }
    l->v[l->n++] = v;
    return 0;
}

static int filter_test(struct evalctx *cx, const struct node *f, json_t *cur)
{
    json_t *save = cx->cur;
    struct val v = { NULL, 0, 0 };
    cx->cur = cur;
    int r = eval(cx, f, &v);
    cx->cur = save;
    if (r < 0)
        return r;
    norm(&v);
    r = tlm_expr_truthy(&v);
    tlm_expr_val_drop(&v);
    return r;
}

static json_int_t clampi(json_int_t x, json_int_t lo, json_int_t hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Applies one selector to node v (path pv), appending to out. */
static int apply_sel(struct evalctx *cx, const struct sel *x, json_t *v, const char *pv,
                     struct nl *out)
{
    int r = 0;
    switch (x->kind) {
    case S_NAME:
        if (json_is_object(v)) {
            json_t *c = json_object_getn(v, x->name, x->namelen);
            if (c)
                r = nl_push(out, c, pv, x->name, x->namelen, 0);
        }
        return r;
    case S_INDEX:
        if (json_is_array(v)) {
            json_int_t len = (json_int_t)json_array_size(v);
            json_int_t i = x->idx < 0 ? len + x->idx : x->idx;
            if (i >= 0 && i < len)
                r = nl_push(out, json_array_get(v, (size_t)i), pv, NULL, 0, (size_t)i);
        }
        return r;
    case S_WILD:
    case S_FILTER:
        if (json_is_array(v)) {
            size_t n = json_array_size(v);
            for (size_t i = 0; i < n && r >= 0; i++) {
                json_t *c = json_array_get(v, i);
                if (x->kind == S_FILTER) {
                    r = filter_test(cx, x->filter, c);
                    if (r <= 0)
                        continue;
                }
                r = nl_push(out, c, pv, NULL, 0, i);
            }
        } else if (json_is_object(v)) {
            const char *k;
            size_t klen;
            json_t *c;
            json_object_keylen_foreach(v, k, klen, c) {
                if (x->kind == S_FILTER) {
                    r = filter_test(cx, x->filter, c);
                    if (r < 0)
                        break;
                    if (r == 0)
                        continue;
                }
                r = nl_push(out, c, pv, k, klen, 0);
                if (r < 0)
                    break;
            }
        }
        return r < 0 ? r : 0;
    default: { /* S_SLICE, RFC 9535 section 2.3.4.2.2 */
        if (!json_is_array(v) || x->step == 0)
            return 0;
        json_int_t len = (json_int_t)json_array_size(v), step = x->step;
        json_int_t start = x->has_start ? x->start : step > 0 ? 0 : len - 1;
        json_int_t end = x->has_end ? x->end : step > 0 ? len : -len - 1;
        if (start < 0)
            start += len;
        if (end < 0)
            end += len;
        if (step > 0) {
            json_int_t lo = clampi(start, 0, len), hi = clampi(end, 0, len);
            for (json_int_t i = lo; i < hi && r >= 0; i += step)
                r = nl_push(out, json_array_get(v, (size_t)i), pv, NULL, 0, (size_t)i);
        } else {
            json_int_t hi = clampi(start, -1, len - 1), lo = clampi(end, -1, len - 1);
            for (json_int_t i = hi; lo < i && r >= 0; i += step)
                r = nl_push(out, json_array_get(v, (size_t)i), pv, NULL, 0, (size_t)i);
        }
        return r;
    }
    }
}

static int apply_seg(struct evalctx *cx, const struct seg *s, json_t *v, const char *pv,
                     struct nl *out);

/* Descendant segment: the selectors on v, then on each descendant, in document order. */
static int apply_desc(struct evalctx *cx, const struct seg *s, json_t *v, const char *pv,
                      struct nl *out)
{
    int r = 0;
    for (size_t j = 0; j < s->nsel && r >= 0; j++)
        r = apply_sel(cx, &s->sel[j], v, pv, out);
    if (r < 0 || (!json_is_array(v) && !json_is_object(v)))
        return r;
    struct nl kids = { NULL, NULL, 0, 0, out->paths };
    struct sel all;
    memset(&all, 0, sizeof all);
    all.kind = S_WILD;
    r = apply_sel(cx, &all, v, pv, &kids);
    for (size_t i = 0; i < kids.n && r >= 0; i++)
        r = apply_desc(cx, s, kids.v[i], kids.paths ? kids.p[i] : NULL, out);
    nl_free(&kids);
    return r;
}

static int apply_seg(struct evalctx *cx, const struct seg *s, json_t *v, const char *pv,
                     struct nl *out)
{
    if (s->desc)
        return apply_desc(cx, s, v, pv, out);
    int r = 0;
    for (size_t j = 0; j < s->nsel && r >= 0; j++)
        r = apply_sel(cx, &s->sel[j], v, pv, out);
    return r;
}

/* Runs segments [from, nsegs) over the list *l (replaced by the result). */
static int run_segments(struct evalctx *cx, const struct node *n, size_t from, struct nl *l)
{
    for (size_t i = from; i < n->nsegs; i++) {
        struct nl next = { NULL, NULL, 0, 0, l->paths };
        int r = 0;
        for (size_t k = 0; k < l->n && r >= 0; k++)
            r = apply_seg(cx, &n->segs[i], l->v[k], l->paths ? l->p[k] : NULL, &next);
        nl_free(l);
        *l = next;
        if (r < 0)
            return r;
    }
    return 0;
}

static json_t *binding_value(struct evalctx *cx, size_t i)
{
    if (!cx->e || !cx->env || i >= cx->e->nbindings)
        return NULL;
    const char *name = cx->e->bindings[i];
    for (size_t k = 0; k < cx->env->n; k++)
        if (cx->env->names[k] && !strcmp(cx->env->names[k], name))
            return cx->env->values[k];
    return NULL;
}

static int eval_path(struct evalctx *cx, const struct node *n, struct val *out)
{
    struct val base = { NULL, 0, 0 };
    int r;
    switch (n->base) {
    case B_ROOT: base.j = cx->root; break;
    case B_CURRENT: base.j = cx->cur; break;
    case B_BINDING: base.j = binding_value(cx, n->binding); break;
    default:
        r = eval(cx, n->kids[0], &base);
        if (r < 0)
            return r;
    }
    if (!base.j)
        return 0;
    if (n->singular && !base.nodes) {
        json_t *v = base.j;
        for (size_t i = 0; i < n->nsegs && v; i++) {
            const struct sel *x = &n->segs[i].sel[0];
            if (x->kind == S_NAME) {
                v = json_is_object(v) ? json_object_getn(v, x->name, x->namelen) : NULL;
            } else if (json_is_array(v)) {
                json_int_t len = (json_int_t)json_array_size(v);
                json_int_t k = x->idx < 0 ? len + x->idx : x->idx;
                v = k >= 0 && k < len ? json_array_get(v, (size_t)k) : NULL;
            } else {
                v = NULL;
            }
        }
        if (base.owned && v)
            json_incref(v);
        out->owned = base.owned && v;
        out->j = v;
        out->nodes = 0;
        tlm_expr_val_drop(&base);
        return v != NULL;
    }
    struct nl l = { NULL, NULL, 0, 0, 0 };
    r = 0;
    if (base.nodes) {
        size_t m = json_array_size(base.j);
        for (size_t i = 0; i < m && r >= 0; i++)
            r = nl_push(&l, json_array_get(base.j, i), NULL, NULL, 0, 0);
    } else {
        r = nl_push(&l, base.j, NULL, NULL, 0, 0);
    }
    if (r >= 0)
        r = run_segments(cx, n, 0, &l);
    json_t *arr = NULL;
    if (r >= 0) {
        arr = json_array();
        for (size_t i = 0; arr && i < l.n; i++)
            if (json_array_append(arr, l.v[i])) {
                json_decref(arr);
                arr = NULL;
            }
        if (!arr)
            r = tlm_error_set(cx->err, TLM_ENOMEM, "out of memory");
    }
    nl_free(&l);
    tlm_expr_val_drop(&base);
    if (r < 0)
        return r;
    out->j = arr;
    out->owned = 1;
    out->nodes = 1;
    return 1;
}

json_t *tlm_expr_query(const struct node *path, json_t *root, json_t **paths_out)
{
    struct evalctx cx = { root, root, NULL, NULL, NULL };
    struct nl l = { NULL, NULL, 0, 0, paths_out != NULL };
    json_t *vals = NULL, *paths = NULL;
    if (paths_out)
        *paths_out = NULL;
    if (nl_push(&l, root, NULL, NULL, 0, 0) < 0 || run_segments(&cx, path, 0, &l) < 0)
        goto out;
    vals = json_array();
    paths = paths_out ? json_array() : NULL;
    if (!vals || (paths_out && !paths))
        goto fail;
    for (size_t i = 0; i < l.n; i++) {
        if (json_array_append(vals, l.v[i]))
            goto fail;
        if (paths && json_array_append_new(paths, json_string(l.p[i])))
            goto fail;
    }
    if (paths_out)
        *paths_out = paths;
    goto out;
fail:
    json_decref(vals);
    json_decref(paths);
    vals = NULL;
out:
    nl_free(&l);
    return vals;
}

/* ---- functions ---------------------------------------------------------------------- */

static int utf8_len(const char *s, size_t n)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

static int f_length(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)n;
    norm(&a[0]);
    json_t *v = a[0].j;
    if (json_is_string(v))
        return set_owned(cx, out, json_integer(utf8_len(json_string_value(v),
                                                        json_string_length(v))));
    if (json_is_array(v))
        return set_owned(cx, out, json_integer((json_int_t)json_array_size(v)));
    if (json_is_object(v))
        return set_owned(cx, out, json_integer((json_int_t)json_object_size(v)));
    return 0;
}

static int f_count(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)n;
    json_int_t c = a[0].nodes ? (json_int_t)json_array_size(a[0].j) : a[0].j != NULL;
    return set_owned(cx, out, json_integer(c));
}

static int f_value(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)cx;
    (void)n;
    if (a[0].nodes && json_array_size(a[0].j) != 1)
        return 0;
    norm(&a[0]);
    *out = a[0];
    a[0].owned = 0;
    return out->j != NULL;
}

static int f_exists(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)cx;
    (void)n;
    return set_bool(out, a[0].nodes ? json_array_size(a[0].j) > 0 : a[0].j != NULL);
}

static int do_match(struct evalctx *cx, const struct node *n, struct val *a, struct val *out,
                    int full)
{
    norm(&a[0]);
    norm(&a[1]);
    if (!json_is_string(a[0].j) || !json_is_string(a[1].j) || n->op == 1)
        return set_bool(out, 0);
    struct tlm_regex *re = n->re;
    if (!re) {
        const char *why;
        re = tlm_regex_compile(json_string_value(a[1].j), json_string_length(a[1].j), &why);
        if (!re)
            return set_bool(out, 0);
    }
    int r = tlm_regex_exec(re, json_string_value(a[0].j), json_string_length(a[0].j), full);
    if (re != n->re)
        tlm_regex_free(re);
    if (r < 0)
        return tlm_error_set(cx->err, TLM_ENOMEM, "out of memory");
    return set_bool(out, r);
}

static int f_match(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    return do_match(cx, n, a, out, 1);
}

static int f_search(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    return do_match(cx, n, a, out, 0);
}

static int f_contains(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)cx;
    (void)n;
    norm(&a[0]);
    norm(&a[1]);
    json_t *h = a[0].j, *x = a[1].j;
    if (json_is_string(h) && json_is_string(x)) {
        size_t hl = json_string_length(h), xl = json_string_length(x);
        const char *hs = json_string_value(h), *xs = json_string_value(x);
        for (size_t i = 0; i + xl <= hl; i++)
            if (!memcmp(hs + i, xs, xl))
                return set_bool(out, 1);
        return set_bool(out, 0);
    }
    if (json_is_array(h) && x) {
        for (size_t i = 0; i < json_array_size(h); i++)
            if (deep_eq(json_array_get(h, i), x))
                return set_bool(out, 1);
    }
    return set_bool(out, 0);
}

static int f_starts(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)cx;
    norm(&a[0]);
    norm(&a[1]);
    if (!json_is_string(a[0].j) || !json_is_string(a[1].j))
        return set_bool(out, 0);
    size_t hl = json_string_length(a[0].j), xl = json_string_length(a[1].j);
    const char *h = json_string_value(a[0].j);
    if (xl > hl)
        return set_bool(out, 0);
    int ends = n->fn->name[0] == 'e';
    return set_bool(out, !memcmp(ends ? h + hl - xl : h, json_string_value(a[1].j), xl));
}

/* Iterates the items of a variadic numeric function: the elements of a single array or
 * node list argument, else the arguments themselves; nothing is skipped. */
struct items {
    struct val *a;
    size_t na, i;
    json_t *arr;
};

static void items_init(struct items *it, struct val *a, size_t na)
{
    it->a = a;
    it->na = na;
    it->i = 0;
    it->arr = NULL;
    for (size_t k = 0; k < na; k++)
        norm(&a[k]);
    if (na == 1 && json_is_array(a[0].j))
        it->arr = a[0].j;
}

static json_t *items_next(struct items *it)
{
    if (it->arr)
        return it->i < json_array_size(it->arr) ? json_array_get(it->arr, it->i++) : NULL;
    while (it->i < it->na) {
        json_t *v = it->a[it->i++].j;
        if (v)
            return v;
    }
    return NULL;
}

static int f_minmax(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    struct items it;
    int want_max = n->fn->name[1] == 'a';
    json_t *best = NULL, *v;
    items_init(&it, a, n->nkids);
    while ((v = items_next(&it))) {
        if (!json_is_number(v) && !json_is_string(v))
            return rt_error(cx, n, TLM_ETYPE, "%s() cannot order %s", n->fn->name, tname(v));
        if (best && json_is_number(v) != json_is_number(best))
            return rt_error(cx, n, TLM_ETYPE, "%s() cannot compare %s with %s", n->fn->name,
                            tname(v), tname(best));
        if (!best || (want_max ? val_lt(best, v) : val_lt(v, best)))
            best = v;
    }
    if (!best)
        return 0;
    return set_owned(cx, out, json_incref(best));
}

static int sum_items(struct evalctx *cx, const struct node *n, struct val *a, json_int_t *isum,
                     double *dsum, int *isreal, size_t *count)
{
    struct items it;
    json_t *v;
    *isum = 0;
    *dsum = 0;
    *isreal = 0;
    *count = 0;
    items_init(&it, a, n->nkids);
    while ((v = items_next(&it))) {
        if (!json_is_number(v))
            return rt_error(cx, n, TLM_ETYPE, "%s() expects numbers, got %s", n->fn->name,
                            tname(v));
        (*count)++;
        json_int_t t;
        if (!*isreal && json_is_integer(v) &&
            !__builtin_add_overflow(*isum, json_integer_value(v), &t)) {
            *isum = t;
            continue;
        }
        if (!*isreal) {
            *isreal = 1;
            *dsum = (double)*isum;
        }
        *dsum += json_number_value(v);
    }
    return 0;
}

static int f_sum(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    json_int_t is;
    double ds;
    int isreal;
    size_t cnt;
    int r = sum_items(cx, n, a, &is, &ds, &isreal, &cnt);
    if (r < 0)
        return r;
    if (n->fn->name[0] == 'a') {
        if (!cnt)
            return 0;
        return real_result(cx, n, (isreal ? ds : (double)is) / (double)cnt, out);
    }
    if (isreal)
        return real_result(cx, n, ds, out);
    return set_owned(cx, out, json_integer(is));
}

static int f_firstlast(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    json_t *v = a[0].j;
    if (json_is_array(v)) {
        size_t m = json_array_size(v);
        if (!m)
            return 0;
        v = json_array_get(v, n->fn->name[0] == 'f' ? 0 : m - 1);
    }
    if (!v)
        return 0;
    return set_owned(cx, out, json_incref(v));
}

static int need_number(struct evalctx *cx, const struct node *n, struct val *a)
{
    norm(&a[0]);
    if (!a[0].j)
        return 0;
    if (!json_is_number(a[0].j))
        return rt_error(cx, n, TLM_ETYPE, "%s() expects a number, got %s", n->fn->name,
                        tname(a[0].j));
    return 1;
}

static int int_or_real(struct evalctx *cx, const struct node *n, double d, struct val *out)
{
    if (d >= -9.2233720368547758e18 && d < 9.2233720368547758e18)
        return set_owned(cx, out, json_integer((json_int_t)d));
    return real_result(cx, n, d, out);
}

static int f_abs(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    int r = need_number(cx, n, a);
    if (r <= 0)
        return r;
    json_t *v = a[0].j;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x >= 0)
            return set_owned(cx, out, json_incref(v));
        if (x != INT64_MIN)
            return set_owned(cx, out, json_integer(-x));
    }
    return real_result(cx, n, fabs(json_number_value(v)), out);
}

static int f_round(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    int r = need_number(cx, n, a);
    if (r <= 0)
        return r;
    json_t *v = a[0].j;
    if (json_is_integer(v))
        return set_owned(cx, out, json_incref(v));
    double d = json_real_value(v);
    switch (n->fn->name[0]) {
    case 'f': d = floor(d); break;
    case 'c': d = ceil(d); break;
    default: d = round(d); break;
    }
    return int_or_real(cx, n, d, out);
}

static int f_case(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    norm(&a[0]);
    if (!a[0].j)
        return 0;
    if (!json_is_string(a[0].j))
        return rt_error(cx, n, TLM_ETYPE, "%s() expects a string, got %s", n->fn->name,
                        tname(a[0].j));
    size_t len = json_string_length(a[0].j);
    char *s = malloc(len + 1);
    if (!s)
        return set_owned(cx, out, NULL);
    memcpy(s, json_string_value(a[0].j), len + 1);
    int up = n->fn->name[0] == 'u';
    for (size_t i = 0; i < len; i++) {
        if (up && s[i] >= 'a' && s[i] <= 'z')
            s[i] = (char)(s[i] - 32);
        else if (!up && s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] + 32);
    }
    json_t *j = json_stringn_nocheck(s, len);
    free(s);
    return set_owned(cx, out, j);
}

/* Shortest text of a real that reads back as the same double. */
static void fmt_real(double d, char *buf, size_t n)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (!strpbrk(buf, ".eEni"))
        strncat(buf, ".0", n - strlen(buf) - 1);
}

/* Appends the text form of v as string() gives it. */
static int to_text(struct tlm_buf *b, const json_t *v)
{
    char tmp[40];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return tlm_buf_append(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return tlm_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL:
        fmt_real(json_real_value(v), tmp, sizeof tmp);
        return tlm_buf_puts(b, tmp);
    case JSON_TRUE: return tlm_buf_puts(b, "true");
    case JSON_FALSE: return tlm_buf_puts(b, "false");
    case JSON_NULL: return tlm_buf_puts(b, "null");
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        int r = s ? tlm_buf_puts(b, s) : -1;
        free(s);
        return r;
    }
    }
}

static int f_string(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)n;
    norm(&a[0]);
    if (!a[0].j)
        return 0;
    if (json_is_string(a[0].j))
        return set_owned(cx, out, json_incref(a[0].j));
    struct tlm_buf b = TLM_BUF_INIT;
    if (to_text(&b, a[0].j) || tlm_buf_reserve(&b, 0)) {
        tlm_buf_free(&b);
        return set_owned(cx, out, NULL);
    }
    json_t *s = json_stringn(b.data, b.len);
    tlm_buf_free(&b);
    return set_owned(cx, out, s);
}

static int f_number(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    (void)n;
    norm(&a[0]);
    json_t *v = a[0].j;
    if (json_is_number(v))
        return set_owned(cx, out, json_incref(v));
    if (!json_is_string(v))
        return 0;
    json_t *r = json_loadb(json_string_value(v), json_string_length(v),
                           JSON_DECODE_ANY, NULL);
    if (!json_is_number(r)) {
        json_decref(r);
        return 0;
    }
    return set_owned(cx, out, r);
}

/* epoch_ms(x): an RFC 3339 time as milliseconds since the epoch (a whole number when it
 * falls on a millisecond); a number is returned as it is; anything else is nothing. */
static int f_epoch_ms(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    tlm_time_t t;
    (void)n;
    norm(&a[0]);
    json_t *v = a[0].j;
    if (json_is_number(v))
        return set_owned(cx, out, json_incref(v));
    if (!json_is_string(v) ||
        tlm_time_parse_rfc3339(json_string_value(v), json_string_length(v), &t, NULL))
        return 0;
    if (t % 1000000 == 0)
        return set_owned(cx, out, json_integer((json_int_t)(t / 1000000)));
    return set_owned(cx, out, json_real((double)t / 1e6));
}

static int f_concat(struct evalctx *cx, const struct node *n, struct val *a, struct val *out)
{
    int arrays = 1, any = 0;
    for (size_t i = 0; i < n->nkids; i++) {
        norm(&a[i]);
        if (a[i].j) {
            any = 1;
            if (!json_is_array(a[i].j))
                arrays = 0;
        }
    }
    if (!any)
        return 0;
    if (arrays) {
        json_t *r = json_array();
        for (size_t i = 0; r && i < n->nkids; i++)
            if (a[i].j && json_array_extend(r, a[i].j)) {
                json_decref(r);
                r = NULL;
            }
        return set_owned(cx, out, r);
    }
    struct tlm_buf b = TLM_BUF_INIT;
    int bad = tlm_buf_reserve(&b, 0);
    for (size_t i = 0; i < n->nkids && !bad; i++)
        if (a[i].j)
            bad = to_text(&b, a[i].j);
    json_t *s = bad ? NULL : json_stringn(b.data, b.len);
    tlm_buf_free(&b);
    return set_owned(cx, out, s);
}

static const struct func funcs[] = {
    /* name, min, max, rfc, result, params, implementation (sorted by name) */
    { "abs", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_abs },
    { "avg", 1, -1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_sum },
    { "ceil", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_round },
    { "concat", 1, -1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_concat },
    { "contains", 2, 2, 0, RT_LOGICAL, { RT_VALUE, RT_VALUE }, f_contains },
    { "count", 1, 1, 1, RT_VALUE, { RT_NODES, RT_NODES }, f_count },
    { "ends_with", 2, 2, 0, RT_LOGICAL, { RT_VALUE, RT_VALUE }, f_starts },
    { "epoch_ms", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_epoch_ms },
    { "exists", 1, 1, 0, RT_LOGICAL, { RT_NODES, RT_NODES }, f_exists },
    { "first", 1, 1, 0, RT_VALUE, { RT_NODES, RT_NODES }, f_firstlast },
    { "floor", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_round },
    { "last", 1, 1, 0, RT_VALUE, { RT_NODES, RT_NODES }, f_firstlast },
    { "length", 1, 1, 1, RT_VALUE, { RT_VALUE, RT_VALUE }, f_length },
    { "lower", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_case },
    { "match", 2, 2, 1, RT_LOGICAL, { RT_VALUE, RT_VALUE }, f_match },
    { "max", 1, -1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_minmax },
    { "min", 1, -1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_minmax },
    { "number", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_number },
    { "round", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_round },
    { "search", 2, 2, 1, RT_LOGICAL, { RT_VALUE, RT_VALUE }, f_search },
    { "starts_with", 2, 2, 0, RT_LOGICAL, { RT_VALUE, RT_VALUE }, f_starts },
    { "string", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_string },
    { "sum", 1, -1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_sum },
    { "upper", 1, 1, 0, RT_VALUE, { RT_VALUE, RT_VALUE }, f_case },
    { "value", 1, 1, 1, RT_VALUE, { RT_NODES, RT_NODES }, f_value },
};

const struct func *tlm_expr_func_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
        if (strlen(funcs[i].name) == len && !memcmp(funcs[i].name, name, len))
            return &funcs[i];
    return NULL;
}

/* ---- the evaluator ------------------------------------------------------------------ */

static int eval_call(struct evalctx *cx, const struct node *n, struct val *out)
{
    struct val small[4];
    struct val *a = n->nkids <= 4 ? small : calloc(n->nkids, sizeof *a);
    if (!a)
        return tlm_error_set(cx->err, TLM_ENOMEM, "out of memory");
    int r = 0;
    size_t got = 0;
    for (; got < n->nkids; got++) {
        a[got].j = NULL;
        a[got].owned = a[got].nodes = 0;
        r = eval(cx, n->kids[got], &a[got]);
        if (r < 0) {
            got++;
            break;
        }
    }
    if (r >= 0)
        r = n->fn->fn(cx, n, a, out);
    for (size_t i = 0; i < got; i++)
        tlm_expr_val_drop(&a[i]);
    if (a != small)
        free(a);
    return r;
}

static int eval_value(struct evalctx *cx, const struct node *n, struct val *v)
{
    int r = eval(cx, n, v);
    if (r >= 0)
        norm(v);
    return r < 0 ? r : v->j != NULL;
}

static int eval(struct evalctx *cx, const struct node *n, struct val *out)
{
    struct val a = { NULL, 0, 0 }, b = { NULL, 0, 0 };
    int r;
    out->j = NULL;
    out->owned = out->nodes = 0;
    switch (n->kind) {
    case N_LIT:
        out->j = n->lit;
        return 1;
    case N_PATH:
        return eval_path(cx, n, out);
    case N_EXISTS:
        r = eval(cx, n->kids[0], &a);
        if (r < 0)
            return r;
        r = a.nodes ? json_array_size(a.j) > 0 : a.j != NULL;
        tlm_expr_val_drop(&a);
        return set_bool(out, r);
    case N_NOT:
        r = eval_value(cx, n->kids[0], &a);
        if (r < 0)
            return r;
        r = tlm_expr_truthy(&a);
        tlm_expr_val_drop(&a);
        return set_bool(out, !r);
    case N_AND:
    case N_OR:
        r = eval_value(cx, n->kids[0], &a);
        if (r < 0)
            return r;
        r = tlm_expr_truthy(&a);
        tlm_expr_val_drop(&a);
        if (r == (n->kind == N_OR))
            return set_bool(out, r);
        r = eval_value(cx, n->kids[1], &b);
        if (r < 0)
            return r;
        r = tlm_expr_truthy(&b);
        tlm_expr_val_drop(&b);
        return set_bool(out, r);
    case N_CALL:
        r = eval_call(cx, n, out);
        if (r > 0 && !out->j)
            r = 0;
        return r;
    default:
        break;
    }
    if (n->kind == N_ARR || n->kind == N_OBJ) {
        json_t *c = n->kind == N_ARR ? json_array() : json_object();
        if (!c)
            return set_owned(cx, out, NULL);
        for (size_t i = 0; i < n->nkids; i++) {
            r = eval_value(cx, n->kids[i], &a);
            if (r < 0) {
                json_decref(c);
                return r;
            }
            int bad;
            if (n->kind == N_ARR)
                bad = json_array_append(c, a.j ? a.j : json_null());
            else
                bad = a.j ? json_object_set(c, n->keys[i], a.j) : 0;
            tlm_expr_val_drop(&a);
            if (bad) {
                json_decref(c);
                return set_owned(cx, out, NULL);
            }
        }
        return set_owned(cx, out, c);
    }
    if (n->kind == N_NEG) {
        r = eval_value(cx, n->kids[0], &a);
        if (r <= 0)
            return r;
        if (!json_is_number(a.j)) {
            r = rt_error(cx, n, TLM_ETYPE, "cannot negate %s", tname(a.j));
        } else if (json_is_integer(a.j) && json_integer_value(a.j) != INT64_MIN) {
            r = set_owned(cx, out, json_integer(-json_integer_value(a.j)));
        } else {
            r = real_result(cx, n, -json_number_value(a.j), out);
        }
        tlm_expr_val_drop(&a);
        return r;
    }
    /* binary operators on values */
    r = eval_value(cx, n->kids[0], &a);
    if (r < 0)
        return r;
    r = eval_value(cx, n->kids[1], &b);
    if (r < 0) {
        tlm_expr_val_drop(&a);
        return r;
    }
    if (n->kind == N_CMP) {
        r = set_bool(out, compare(n->op, a.j, b.j));
    } else if (n->kind == N_IN) {
        if (!a.j || !b.j) {
            r = set_bool(out, 0);
        } else if (json_is_array(b.j)) {
            int found = 0;
            for (size_t i = 0; i < json_array_size(b.j) && !found; i++)
                found = deep_eq(a.j, json_array_get(b.j, i));
            r = set_bool(out, found);
        } else if (json_is_object(b.j) && json_is_string(a.j)) {
            r = set_bool(out, json_object_getn(b.j, json_string_value(a.j),
                                               json_string_length(a.j)) != NULL);
        } else {
            r = rt_error(cx, n, TLM_ETYPE, "cannot test membership of %s in %s", tname(a.j),
                         tname(b.j));
        }
    } else if (!a.j || !b.j) {
        r = 0; /* arithmetic with nothing is nothing */
    } else {
        r = arith(cx, n, a.j, b.j, out);
    }
    tlm_expr_val_drop(&a);
    tlm_expr_val_drop(&b);
    return r;
}

int tlm_expr_eval_node(const struct node *n, json_t *root, const struct tlm_expr *e,
                       const struct tlm_expr_env *env, struct val *out, struct tlm_error *err)
{
    struct evalctx cx = { root, root, e, env, err };
    return eval(&cx, n, out);
}

int tlm_expr_eval(const struct tlm_expr *e, json_t *root, const struct tlm_expr_env *env,
                  json_t **out, struct tlm_error *err)
{
    struct val v = { NULL, 0, 0 };
    *out = NULL;
    int r = tlm_expr_eval_node(e->root, root, e, env, &v, err);
    if (r < 0)
        return r;
    norm(&v);
    if (!v.j)
        return 0;
    *out = v.owned ? v.j : json_incref(v.j);
    return 1;
}

int tlm_expr_test(const struct tlm_expr *e, json_t *root, const struct tlm_expr_env *env,
                  struct tlm_error *err)
{
    struct val v = { NULL, 0, 0 };
    int r = tlm_expr_eval_node(e->root, root, e, env, &v, err);
    if (r < 0)
        return r;
    norm(&v);
    r = tlm_expr_truthy(&v);
    tlm_expr_val_drop(&v);
    return r;
}
