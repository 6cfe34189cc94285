/*
 * expr_parse.c - parser, checker and compile-time API of the expression language.
 *
 * A recursive-descent parser over the tokens of expr_lex.c builds a tree of struct node.
 * Precedence, loosest first: `||`/or, `&&`/and, comparisons and `in` (non-associative),
 * `+ -`, `* / %`, unary `! not -`, postfix JSONPath segments (`.name`, `..name`, `[..]`),
 * primaries. JSONPath is not a separate sub-language: `$`, `@`, a bare identifier, a
 * binding name, a call or a parenthesized expression may all be followed by segments.
 *
 * Two modes. The expression mode (tlm_expr_compile) accepts the whole language. The strict
 * mode (tlm_jsonpath_compile) accepts exactly RFC 9535: a query from `$` with no blanks
 * around it, filters made of comparisons of literals, singular queries and value-typed
 * function results, existence tests, `! && ||`, and only the five standard functions,
 * well-typed (section 2.4.3). In both modes, a query used directly as an operand of
 * `! && ||` or as a whole filter inside `[?...]` is an existence test (RFC 9535
 * section 2.3.5.1); elsewhere values are tested by truthiness.
 *
 * Invariants: every node returned is fully owned by its parent; on error the partial tree
 * is freed and err carries the 1-based byte column of the offending token.
 *
 * References: RFC 9535 (JSONPath), RFC 9485 (I-Regexp).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_int.h"

#define MAX_DEPTH 200
#define MAX_EXACT 9007199254740991LL /* 2^53 - 1, the I-JSON integer range */

struct parser {
    struct lexer lx;
    struct token tok;     /* current token */
    int strict;           /* RFC 9535 grammar only */
    int in_filter;        /* nesting of [?...] */
    int depth;            /* recursion guard */
    char **bindings;      /* borrowed binding names */
    size_t nb;
    struct tlm_error *err;
    int failed;
};

/* ---- helpers ----------------------------------------------------------------------- */

static void *fail(struct parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void *fail(struct parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return NULL;
    p->failed = 1;
    if (p->err) {
        va_list ap;
        char text[TLM_ERROR_TEXT];
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        tlm_error_set(p->err, TLM_EPARSE, "%s", text);
        p->err->column = (long)pos + 1;
    }
    return NULL;
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

static void *oom(struct parser *p)
{
    if (!p->failed) {
        p->failed = 1;
        tlm_error_set(p->err, TLM_ENOMEM, "out of memory");
    }
    return NULL;
}

static int next(struct parser *p)
{
    tlm_expr_tok_clear(&p->tok);
    tlm_expr_lex_next(&p->lx, &p->tok);
    if (p->tok.kind == T_ERROR) {
        fail(p, p->tok.pos, "%s", p->tok.msg);
        return -1;
    }
    return 0;
}

static int is_ident(const struct parser *p, const char *kw)
{
    size_t n = strlen(kw);
    return p->tok.kind == T_IDENT && p->tok.len == n && !memcmp(p->lx.src + p->tok.pos, kw, n);
}

static int is_kw(const struct parser *p, const char *kw)
{
    return !p->strict && is_ident(p, kw);
}

static const char *tok_desc(const struct token *t)
{
    switch (t->kind) {
    case T_EOF: return "end of expression";
    case T_NUM: return "a number";
    case T_STR: return "a string";
    case T_IDENT: return "a name";
    default: return NULL;
    }
}

static void *unexpected(struct parser *p, const char *what)
{
    const char *d = tok_desc(&p->tok);
    if (d)
        return fail(p, p->tok.pos, "expected %s, found %s", what, d);
    return fail(p, p->tok.pos, "expected %s, found '%.*s'", what, (int)p->tok.len,
                p->lx.src + p->tok.pos);
}

static struct node *node_new(struct parser *p, int kind, size_t pos)
{
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        return oom(p);
    n->kind = kind;
    n->col = (long)pos + 1;
    return n;
}

void tlm_expr_node_free(struct node *n)
{
    if (!n)
        return;
    if (n->lit)
        json_decref(n->lit);
    for (size_t i = 0; i < n->nkids; i++) {
        tlm_expr_node_free(n->kids[i]);
        if (n->keys)
            free(n->keys[i]);
    }
    free(n->kids);
    free(n->keys);
    for (size_t i = 0; i < n->nsegs; i++) {
        for (size_t j = 0; j < n->segs[i].nsel; j++) {
            free(n->segs[i].sel[j].name);
            tlm_expr_node_free(n->segs[i].sel[j].filter);
        }
        free(n->segs[i].sel);
    }
    free(n->segs);
    tlm_regex_free(n->re);
    free(n);
}

static int add_kid(struct parser *p, struct node *n, struct node *k)
{
    struct node **nk = realloc(n->kids, (n->nkids + 1) * sizeof *nk);
    if (!nk) {
        tlm_expr_node_free(k);
        oom(p);
        return -1;
    }
    n->kids = nk;
    n->kids[n->nkids++] = k;
    return 0;
}

static struct node *binary(struct parser *p, int kind, int op, size_t pos, struct node *a,
                           struct node *b)
{
    struct node *n = node_new(p, kind, pos);
    struct node **k = n ? malloc(2 * sizeof *k) : NULL;
    if (!k) {
        free(n);
        tlm_expr_node_free(a);
        tlm_expr_node_free(b);
        return n ? oom(p) : NULL;
    }
    k[0] = a;
    k[1] = b;
    n->kids = k;
    n->nkids = 2;
    n->op = op;
    return n;
}

/* In a filter, a query operand of ! && || is an existence test. */
static struct node *as_test(struct parser *p, struct node *k)
{
    if (!k || !p->in_filter || k->kind != N_PATH)
        return k;
    struct node *n = node_new(p, N_EXISTS, (size_t)(k->col - 1));
    if (!n || add_kid(p, n, k)) {
        if (!n)
            tlm_expr_node_free(k);
        tlm_expr_node_free(n);
        return NULL;
    }
    n->paren = k->paren;
    return n;
}

/* ---- JSONPath segments ------------------------------------------------------------- */

static struct node *parse_or(struct parser *p);

static int starts_int(const struct parser *p)
{
    return p->tok.kind == T_NUM || p->tok.kind == T_MINUS;
}

/* An index or slice bound: -?(0|[1-9][0-9]*) within +-(2^53-1), no "-0". */
static int parse_int(struct parser *p, json_int_t *out)
{
    size_t pos = p->tok.pos;
    int neg = 0;
    if (p->tok.kind == T_MINUS) {
        neg = 1;
        if (next(p))
            return -1;
        if (p->tok.kind != T_NUM || p->tok.ws_before) {
            unexpected(p, "a digit after '-'");
            return -1;
        }
    }
    if (p->tok.kind != T_NUM) {
        unexpected(p, "an integer");
        return -1;
    }
    if (!json_is_integer(p->tok.num)) {
        fail(p, pos, "an index is an integer within +-(2^53-1)");
        return -1;
    }
    json_int_t v = json_integer_value(p->tok.num);
    if (v > MAX_EXACT) {
        fail(p, pos, "index out of range");
        return -1;
    }
    if (neg && v == 0) {
        fail(p, pos, "-0 is not an index");
        return -1;
    }
    *out = neg ? -v : v;
    return next(p);
}

static int push_sel(struct parser *p, struct seg *s, struct sel *x)
{
    struct sel *ns = realloc(s->sel, (s->nsel + 1) * sizeof *ns);
    if (!ns) {
        free(x->name);
        tlm_expr_node_free(x->filter);
        oom(p);
        return -1;
    }
    s->sel = ns;
    s->sel[s->nsel++] = *x;
    return 0;
}

static int parse_filter(struct parser *p, struct sel *x);

/* Parses the selectors after '[' (the current token is the first one) up to ']'. */
static int parse_brackets(struct parser *p, struct seg *s)
{
    for (;;) {
        struct sel x;
        memset(&x, 0, sizeof x);
        if (p->tok.kind == T_STR) {
            x.kind = S_NAME;
            x.name = p->tok.str;
            x.namelen = p->tok.slen;
            p->tok.str = NULL;
            if (next(p)) {
                free(x.name);
                return -1;
            }
        } else if (p->tok.kind == T_STAR) {
            x.kind = S_WILD;
            if (next(p))
                return -1;
        } else if (p->tok.kind == T_QUESTION) {
            x.kind = S_FILTER;
            if (parse_filter(p, &x))
                return -1;
        } else if (starts_int(p) || p->tok.kind == T_COLON) {
            json_int_t a = 0;
            int has_a = 0;
            if (starts_int(p)) {
                if (parse_int(p, &a))
                    return -1;
                has_a = 1;
            }
            if (p->tok.kind != T_COLON) {
                x.kind = S_INDEX;
                x.idx = a;
            } else {
                x.kind = S_SLICE;
                x.start = a;
                x.has_start = has_a;
                x.step = 1;
                if (next(p))
                    return -1;
                if (starts_int(p)) {
                    if (parse_int(p, &x.end))
                        return -1;
                    x.has_end = 1;
                }
                if (p->tok.kind == T_COLON) {
                    if (next(p))
                        return -1;
                    if (starts_int(p) && parse_int(p, &x.step))
                        return -1;
                }
            }
        } else {
            unexpected(p, "a selector");
            return -1;
        }
        if (push_sel(p, s, &x))
            return -1;
        if (p->tok.kind == T_RBRACK)
            return next(p);
        if (p->tok.kind != T_COMMA) {
            unexpected(p, "',' or ']' after a selector");
            return -1;
        }
        if (next(p))
            return -1;
    }
}

/* Reads a member name or '*' right after '.' or '..' (no blanks). */
static int parse_dot_name(struct parser *p, struct seg *s, size_t dotpos)
{
    struct lexer *lx = &p->lx;
    struct sel x;
    memset(&x, 0, sizeof x);
    if (lx->pos < lx->len && lx->src[lx->pos] == '*') {
        x.kind = S_WILD;
        lx->pos++;
    } else {
        size_t n = tlm_expr_lex_name(lx, lx->pos);
        if (!n) {
            fail(p, lx->pos < lx->len ? lx->pos : dotpos, "expected a member name after '.'");
            return -1;
        }
        x.kind = S_NAME;
        x.name = malloc(n + 1);
        if (!x.name) {
            oom(p);
            return -1;
        }
        memcpy(x.name, lx->src + lx->pos, n);
        x.name[n] = '\0';
        x.namelen = n;
        lx->pos += n;
    }
    if (push_sel(p, s, &x))
        return -1;
    return next(p);
}

static int push_seg(struct parser *p, struct node *n, struct seg *s)
{
    struct seg *ns = realloc(n->segs, (n->nsegs + 1) * sizeof *ns);
    if (!ns) {
        for (size_t j = 0; j < s->nsel; j++) {
            free(s->sel[j].name);
            tlm_expr_node_free(s->sel[j].filter);
        }
        free(s->sel);
        oom(p);
        return -1;
    }
    n->segs = ns;
    n->segs[n->nsegs++] = *s;
    return 0;
}

static int is_seg_start(const struct parser *p)
{
    return p->tok.kind == T_DOT || p->tok.kind == T_DOTDOT || p->tok.kind == T_LBRACK;
}

/* Parses segments while the current token starts one; appends to the N_PATH n. */
static int parse_segments(struct parser *p, struct node *n)
{
    while (is_seg_start(p)) {
        struct seg s;
        memset(&s, 0, sizeof s);
        int k = p->tok.kind;
        size_t pos = p->tok.pos;
        int r;
        if (k == T_DOT) {
            r = parse_dot_name(p, &s, pos);
        } else if (k == T_DOTDOT) {
            s.desc = 1;
            if (p->lx.pos < p->lx.len && p->lx.src[p->lx.pos] == '[') {
                p->lx.pos++;
                r = next(p) ? -1 : parse_brackets(p, &s);
            } else {
                r = parse_dot_name(p, &s, pos);
            }
        } else {
            r = next(p) ? -1 : parse_brackets(p, &s);
        }
        if (r) {
            for (size_t j = 0; j < s.nsel; j++) {
                free(s.sel[j].name);
                tlm_expr_node_free(s.sel[j].filter);
            }
            free(s.sel);
            return -1;
        }
        if (push_seg(p, n, &s))
            return -1;
    }
    n->singular = 1;
    for (size_t i = 0; i < n->nsegs; i++) {
        const struct seg *s = &n->segs[i];
        if (s->desc || s->nsel != 1 || (s->sel[0].kind != S_NAME && s->sel[0].kind != S_INDEX))
            n->singular = 0;
    }
    return 0;
}

/* ---- strict typing (RFC 9535 section 2.4.3) ----------------------------------------- */

static int check_logical(struct parser *p, const struct node *n);

static int check_value_arg(struct parser *p, const struct node *n);

static int check_call(struct parser *p, const struct node *n)
{
    for (size_t i = 0; i < n->nkids; i++) {
        const struct node *a = n->kids[i];
        int t = n->fn->ptype[i < 2 ? i : 1];
        if (t == RT_NODES) {
            if (a->kind != N_PATH || a->paren) {
                fail(p, (size_t)(a->col - 1), "%s() expects a query argument", n->fn->name);
                return -1;
            }
        } else if (t == RT_VALUE) {
            if (check_value_arg(p, a))
                return -1;
        } else if (check_logical(p, a)) {
            return -1;
        }
    }
    return 0;
}

static int check_value_arg(struct parser *p, const struct node *n)
{
    if (n->kind == N_LIT && !n->paren)
        return 0;
    if (n->kind == N_PATH && !n->paren) {
        if (!n->singular) {
            fail(p, (size_t)(n->col - 1), "a non-singular query cannot be used as a value");
            return -1;
        }
        return 0;
    }
    if (n->kind == N_CALL && !n->paren) {
        if (n->fn->rtype != RT_VALUE) {
            fail(p, (size_t)(n->col - 1), "the result of %s() cannot be compared",
                 n->fn->name);
            return -1;
        }
        return check_call(p, n);
    }
    fail(p, (size_t)(n->col - 1), "expected a literal, a singular query or a function");
    return -1;
}

static int check_logical(struct parser *p, const struct node *n)
{
    switch (n->kind) {
    case N_AND:
    case N_OR:
        return check_logical(p, n->kids[0]) || check_logical(p, n->kids[1]) ? -1 : 0;
    case N_NOT:
        return check_logical(p, n->kids[0]);
    case N_EXISTS:
        return 0;
    case N_CMP:
        if (n->kids[0]->kind == N_CMP || n->kids[1]->kind == N_CMP) {
            fail(p, (size_t)(n->col - 1), "comparisons cannot be chained");
            return -1;
        }
        return check_value_arg(p, n->kids[0]) || check_value_arg(p, n->kids[1]) ? -1 : 0;
    case N_CALL:
        if (n->fn->rtype == RT_VALUE) {
            fail(p, (size_t)(n->col - 1), "the result of %s() must be compared", n->fn->name);
            return -1;
        }
        return check_call(p, n);
    case N_LIT:
        fail(p, (size_t)(n->col - 1), "a literal must be compared");
        return -1;
    default:
        fail(p, (size_t)(n->col - 1), "expected a test or a comparison");
        return -1;
    }
}

static int parse_filter(struct parser *p, struct sel *x)
{
    if (next(p))
        return -1;
    p->in_filter++;
    struct node *f = as_test(p, parse_or(p));
    p->in_filter--;
    if (!f)
        return -1;
    if (p->strict && check_logical(p, f)) {
        tlm_expr_node_free(f);
        return -1;
    }
    x->filter = f;
    return 0;
}

/* ---- expressions -------------------------------------------------------------------- */

static struct node *parse_unary(struct parser *p);

static int enter(struct parser *p)
{
    if (++p->depth > MAX_DEPTH) {
        fail(p, p->tok.pos, "expression nested too deeply");
        return -1;
    }
    return 0;
}

static struct node *parse_call(struct parser *p, size_t pos, size_t len)
{
    const char *name = p->lx.src + pos;
    const struct func *fn = tlm_expr_func_find(name, len);
    if (!fn || (p->strict && !fn->rfc))
        return fail(p, pos, "unknown function '%.*s'", (int)len, name);
    struct node *n = node_new(p, N_CALL, pos);
    if (!n)
        return NULL;
    n->fn = fn;
    if (next(p)) /* past '(' */
        goto err;
    if (p->tok.kind != T_RPAREN) {
        for (;;) {
            struct node *a = parse_or(p);
            if (!a || add_kid(p, n, a))
                goto err;
            if (p->tok.kind == T_RPAREN)
                break;
            if (p->tok.kind != T_COMMA) {
                unexpected(p, "')' after arguments");
                goto err;
            }
            if (next(p))
                goto err;
        }
    }
    if ((int)n->nkids < fn->min) {
        fail(p, p->tok.pos, "too few arguments to %s()", fn->name);
        goto err;
    }
    if (fn->max >= 0 && (int)n->nkids > fn->max) {
        fail(p, (size_t)(n->kids[fn->max]->col - 1), "too many arguments to %s()", fn->name);
        goto err;
    }
    if ((!strcmp(fn->name, "match") || !strcmp(fn->name, "search")) &&
        n->kids[1]->kind == N_LIT && json_is_string(n->kids[1]->lit)) {
        const char *why = NULL;
        n->re = tlm_regex_compile(json_string_value(n->kids[1]->lit),
                                  json_string_length(n->kids[1]->lit), &why);
        if (!n->re) {
            if (!p->strict) {
                fail(p, (size_t)(n->kids[1]->col - 1), "invalid regular expression: %s", why);
                goto err;
            }
            n->op = 1; /* known bad pattern: never matches (RFC 9535 section 2.4.6) */
        }
    }
    if (next(p)) /* past ')' */
        goto err;
    return n;
err:
    tlm_expr_node_free(n);
    return NULL;
}

static struct node *lit_node(struct parser *p, size_t pos, json_t *v)
{
    if (!v)
        return oom(p);
    struct node *n = node_new(p, N_LIT, pos);
    if (!n) {
        json_decref(v);
        return NULL;
    }
    n->lit = v;
    return n;
}

static struct node *path_node(struct parser *p, size_t pos, int base)
{
    struct node *n = node_new(p, N_PATH, pos);
    if (n)
        n->base = base;
    return n;
}

static struct node *parse_array(struct parser *p, size_t pos)
{
    struct node *n = node_new(p, N_ARR, pos);
    if (!n || next(p))
        goto err;
    if (p->tok.kind != T_RBRACK) {
        for (;;) {
            struct node *a = parse_or(p);
            if (!a || add_kid(p, n, a))
                goto err;
            if (p->tok.kind == T_RBRACK)
                break;
            if (p->tok.kind != T_COMMA) {
                unexpected(p, "',' or ']' in an array");
                goto err;
            }
            if (next(p))
                goto err;
        }
    }
    if (next(p))
        goto err;
    return n;
err:
    tlm_expr_node_free(n);
    return NULL;
}

static struct node *parse_object(struct parser *p, size_t pos)
{
    struct node *n = node_new(p, N_OBJ, pos);
    if (!n || next(p))
        goto err;
    if (p->tok.kind != T_RBRACE) {
        for (;;) {
            char *key;
            if (p->tok.kind == T_STR) {
                if (memchr(p->tok.str, '\0', p->tok.slen)) {
                    fail(p, p->tok.pos, "object key holds a NUL character");
                    goto err;
                }
                key = p->tok.str;
                p->tok.str = NULL;
            } else if (p->tok.kind == T_IDENT) {
                key = dupn(p->lx.src + p->tok.pos, p->tok.len);
                if (!key) {
                    oom(p);
                    goto err;
                }
            } else {
                unexpected(p, "an object key");
                goto err;
            }
            char **nk = realloc(n->keys, (n->nkids + 1) * sizeof *nk);
            if (!nk) {
                free(key);
                oom(p);
                goto err;
            }
            n->keys = nk;
            n->keys[n->nkids] = key;
            if (next(p))
                goto errkey;
            if (p->tok.kind != T_COLON) {
                unexpected(p, "':' after an object key");
                goto errkey;
            }
            if (next(p))
                goto errkey;
            struct node *v = parse_or(p);
            if (!v)
                goto errkey;
            if (add_kid(p, n, v))
                goto errkey;
            if (p->tok.kind == T_RBRACE)
                break;
            if (p->tok.kind != T_COMMA) {
                unexpected(p, "',' or '}' in an object");
                goto err;
            }
            if (next(p))
                goto err;
        }
    }
    if (next(p))
        goto err;
    return n;
errkey:
    free(n->keys[n->nkids]);
err:
    tlm_expr_node_free(n);
    return NULL;
}

static struct node *parse_primary(struct parser *p)
{
    size_t pos = p->tok.pos;
    struct node *n = NULL;

    switch (p->tok.kind) {
    case T_NUM:
        n = lit_node(p, pos, json_incref(p->tok.num));
        if (n && next(p))
            goto err;
        return n;
    case T_STR: {
        json_t *s = json_stringn(p->tok.str, p->tok.slen);
        if (!s)
            return fail(p, pos, "invalid UTF-8 in string");
        n = lit_node(p, pos, s);
        if (n && next(p))
            goto err;
        return n;
    }
    case T_DOLLAR:
    case T_AT:
        if (p->tok.kind == T_AT && p->strict && !p->in_filter)
            return fail(p, pos, "'@' is only valid inside a filter");
        n = path_node(p, pos, p->tok.kind == T_DOLLAR || !p->in_filter ? B_ROOT : B_CURRENT);
        if (!n || next(p) || parse_segments(p, n))
            goto err;
        return n;
    case T_IDENT: {
        size_t len = p->tok.len;
        const char *name = p->lx.src + pos;
        if (is_ident(p, "true") || is_ident(p, "false") || is_ident(p, "null")) {
            json_t *v = name[0] == 't' ? json_true() : name[0] == 'f' ? json_false() : json_null();
            n = lit_node(p, pos, v);
            if (n && next(p))
                goto err;
            return n;
        }
        if (next(p))
            return NULL;
        if (p->tok.kind == T_LPAREN && (!p->tok.ws_before || !p->strict)) {
            n = parse_call(p, pos, len);
            if (!n)
                return NULL;
            if (!p->strict && is_seg_start(p))
                goto wrap;
            return n;
        }
        if (p->strict)
            return fail(p, pos, "unexpected name '%.*s' (queries start with '$' or '@')",
                        (int)len, name);
        for (size_t i = 0; i < p->nb; i++) {
            if (strlen(p->bindings[i]) == len && !memcmp(p->bindings[i], name, len)) {
                n = path_node(p, pos, B_BINDING);
                if (!n)
                    return NULL;
                n->binding = i;
                if (parse_segments(p, n))
                    goto err;
                return n;
            }
        }
        n = path_node(p, pos, B_ROOT);
        if (!n)
            return NULL;
        struct seg s;
        struct sel x;
        memset(&s, 0, sizeof s);
        memset(&x, 0, sizeof x);
        x.kind = S_NAME;
        x.name = dupn(name, len);
        x.namelen = len;
        if (!x.name) {
            oom(p);
            goto err;
        }
        if (push_sel(p, &s, &x) || push_seg(p, n, &s) || parse_segments(p, n))
            goto err;
        return n;
    }
    case T_LPAREN:
        if (next(p))
            return NULL;
        n = parse_or(p);
        if (!n)
            return NULL;
        if (p->tok.kind != T_RPAREN) {
            unexpected(p, "')'");
            goto err;
        }
        n->paren = 1;
        if (next(p))
            goto err;
        if (!p->strict && is_seg_start(p))
            goto wrap;
        return n;
    case T_LBRACK:
        if (p->strict)
            break;
        n = parse_array(p, pos);
        if (n && is_seg_start(p))
            goto wrap;
        return n;
    case T_LBRACE:
        if (p->strict)
            break;
        n = parse_object(p, pos);
        if (n && is_seg_start(p))
            goto wrap;
        return n;
    default:
        break;
    }
    return unexpected(p, "a value");
wrap: {
    struct node *w = path_node(p, pos, B_EXPR);
    if (!w || add_kid(p, w, n)) {
        if (!w)
            tlm_expr_node_free(n);
        tlm_expr_node_free(w);
        return NULL;
    }
    if (parse_segments(p, w)) {
        tlm_expr_node_free(w);
        return NULL;
    }
    return w;
}
err:
    tlm_expr_node_free(n);
    return NULL;
}

static struct node *parse_unary(struct parser *p)
{
    size_t pos = p->tok.pos;
    struct node *n;
    if (enter(p))
        return NULL;
    if (p->tok.kind == T_NOT || is_kw(p, "not")) {
        if (next(p))
            return NULL;
        struct node *k = as_test(p, parse_unary(p));
        if (!k)
            return NULL;
        n = node_new(p, N_NOT, pos);
        if (!n || add_kid(p, n, k)) {
            if (!n)
                tlm_expr_node_free(k);
            tlm_expr_node_free(n);
            return NULL;
        }
    } else if (p->tok.kind == T_MINUS) {
        if (next(p))
            return NULL;
        if (p->tok.kind == T_NUM && !p->tok.ws_before) {
            /* a negative literal */
            json_t *v = p->tok.num;
            json_t *neg = json_is_integer(v) ? json_integer(-json_integer_value(v))
                                             : json_real(-json_real_value(v));
            if (json_is_integer(v) && json_integer_value(v) < 0) /* never: lexer */
                neg = NULL;
            n = lit_node(p, pos, neg);
            if (!n || next(p)) {
                tlm_expr_node_free(n);
                return NULL;
            }
        } else {
            if (p->strict)
                return fail(p, p->tok.pos, "expected a digit after '-'");
            struct node *k = parse_unary(p);
            if (!k)
                return NULL;
            n = node_new(p, N_NEG, pos);
            if (!n || add_kid(p, n, k)) {
                if (!n)
                    tlm_expr_node_free(k);
                tlm_expr_node_free(n);
                return NULL;
            }
        }
    } else {
        n = parse_primary(p);
    }
    p->depth--;
    return n;
}

static struct node *parse_mul(struct parser *p)
{
    struct node *a = parse_unary(p);
    while (a && !p->strict &&
           (p->tok.kind == T_STAR || p->tok.kind == T_SLASH || p->tok.kind == T_PERCENT)) {
        int op = p->tok.kind;
        size_t pos = p->tok.pos;
        struct node *b = next(p) ? NULL : parse_unary(p);
        if (!b) {
            tlm_expr_node_free(a);
            return NULL;
        }
        a = binary(p, N_ARITH, op, pos, a, b);
    }
    return a;
}

static struct node *parse_add(struct parser *p)
{
    struct node *a = parse_mul(p);
    while (a && !p->strict && (p->tok.kind == T_PLUS || p->tok.kind == T_MINUS)) {
        int op = p->tok.kind;
        size_t pos = p->tok.pos;
        struct node *b = next(p) ? NULL : parse_mul(p);
        if (!b) {
            tlm_expr_node_free(a);
            return NULL;
        }
        a = binary(p, N_ARITH, op, pos, a, b);
    }
    return a;
}

static int is_cmp(int k)
{
    return k == T_EQ || k == T_NE || k == T_LT || k == T_LE || k == T_GT || k == T_GE;
}

static struct node *parse_cmp(struct parser *p)
{
    struct node *a = parse_add(p);
    if (!a)
        return NULL;
    if (is_cmp(p->tok.kind) || is_kw(p, "in")) {
        int op = p->tok.kind;
        int kind = is_cmp(op) ? N_CMP : N_IN;
        size_t pos = p->tok.pos;
        struct node *b = next(p) ? NULL : parse_add(p);
        if (!b) {
            tlm_expr_node_free(a);
            return NULL;
        }
        a = binary(p, kind, op, pos, a, b);
        if (a && (is_cmp(p->tok.kind) || is_kw(p, "in"))) {
            tlm_expr_node_free(a);
            return fail(p, p->tok.pos, "comparisons cannot be chained; use '&&'");
        }
    }
    return a;
}

static struct node *parse_and(struct parser *p)
{
    struct node *a = parse_cmp(p);
    while (a && (p->tok.kind == T_AND || is_kw(p, "and"))) {
        size_t pos = p->tok.pos;
        a = as_test(p, a);
        struct node *b = !a || next(p) ? NULL : as_test(p, parse_cmp(p));
        if (!b) {
            tlm_expr_node_free(a);
            return NULL;
        }
        a = binary(p, N_AND, T_AND, pos, a, b);
    }
    return a;
}

static struct node *parse_or(struct parser *p)
{
    if (enter(p))
        return NULL;
    struct node *a = parse_and(p);
    while (a && (p->tok.kind == T_OR || is_kw(p, "or"))) {
        size_t pos = p->tok.pos;
        a = as_test(p, a);
        struct node *b = !a || next(p) ? NULL : as_test(p, parse_and(p));
        if (!b) {
            tlm_expr_node_free(a);
            return NULL;
        }
        a = binary(p, N_OR, T_OR, pos, a, b);
    }
    p->depth--;
    return a;
}

struct node *tlm_expr_parse(const char *src, int strict, char **bindings, size_t nb,
                            struct tlm_error *err)
{
    struct parser p;
    memset(&p, 0, sizeof p);
    p.lx.src = src;
    p.lx.len = strlen(src);
    p.strict = strict;
    p.bindings = bindings;
    p.nb = nb;
    p.err = err;
    tlm_error_clear(err);

    struct node *n = NULL;
    if (strict) {
        if (p.lx.len == 0 || src[0] != '$') {
            fail(&p, 0, "a JSONPath query starts with '$'");
            return NULL;
        }
        p.lx.pos = 1;
        n = path_node(&p, 0, B_ROOT);
        if (!n || next(&p) || parse_segments(&p, n))
            goto err;
        if (p.tok.kind != T_EOF || p.tok.ws_before) {
            if (p.tok.kind == T_EOF)
                fail(&p, p.tok.pos - 1, "blanks after the query");
            else
                unexpected(&p, "a segment");
            goto err;
        }
    } else {
        if (next(&p))
            goto err;
        n = parse_or(&p);
        if (!n)
            goto err;
        if (p.tok.kind != T_EOF) {
            unexpected(&p, "an operator or end of expression");
            goto err;
        }
    }
    tlm_expr_tok_clear(&p.tok);
    return n;
err:
    tlm_expr_tok_clear(&p.tok);
    tlm_expr_node_free(n);
    if (!p.failed)
        fail(&p, p.lx.pos, "syntax error");
    return NULL;
}

/* ---- root paths ---------------------------------------------------------------------- */

struct pathvec {
    struct tlm_path *v;
    long n, cap;
    int whole;   /* the whole document is needed */
    int nomem;
};

static void pv_add(struct pathvec *pv, const struct node *n, size_t k)
{
    if (pv->n == pv->cap) {
        long nc = pv->cap ? pv->cap * 2 : 4;
        struct tlm_path *nv = realloc(pv->v, (size_t)nc * sizeof *nv);
        if (!nv) {
            pv->nomem = 1;
            return;
        }
        pv->v = nv;
        pv->cap = nc;
    }
    struct tlm_path *t = &pv->v[pv->n];
    t->nseg = k;
    t->seg = calloc(k, sizeof *t->seg);
    if (!t->seg) {
        pv->nomem = 1;
        return;
    }
    pv->n++;
    for (size_t i = 0; i < k; i++) {
        const struct sel *x = &n->segs[i].sel[0];
        t->seg[i] = dupn(x->name, x->namelen);
        if (!t->seg[i])
            pv->nomem = 1;
    }
}

static void collect(struct pathvec *pv, const struct node *n)
{
    if (!n)
        return;
    if (n->kind == N_PATH && n->base == B_ROOT) {
        size_t k = 0;
        while (k < n->nsegs && !n->segs[k].desc && n->segs[k].nsel == 1 &&
               n->segs[k].sel[0].kind == S_NAME &&
               !memchr(n->segs[k].sel[0].name, '\0', n->segs[k].sel[0].namelen))
            k++;
        if (k == 0)
            pv->whole = 1;
        else
            pv_add(pv, n, k);
    }
    for (size_t i = 0; i < n->nkids; i++)
        collect(pv, n->kids[i]);
    for (size_t i = 0; i < n->nsegs; i++)
        for (size_t j = 0; j < n->segs[i].nsel; j++)
            collect(pv, n->segs[i].sel[j].filter);
}

static void path_free(struct tlm_path *t)
{
    for (size_t i = 0; i < t->nseg; i++)
        free(t->seg[i]);
    free(t->seg);
}

/* a is a prefix of (or equal to) b */
static int is_prefix(const struct tlm_path *a, const struct tlm_path *b)
{
    if (a->nseg > b->nseg)
        return 0;
    for (size_t i = 0; i < a->nseg; i++)
        if (!a->seg[i] || !b->seg[i] || strcmp(a->seg[i], b->seg[i]))
            return 0;
    return 1;
}

static int compute_paths(struct tlm_expr *e)
{
    struct pathvec pv;
    memset(&pv, 0, sizeof pv);
    collect(&pv, e->root);
    if (pv.nomem || pv.whole) {
        for (long i = 0; i < pv.n; i++)
            path_free(&pv.v[i]);
        free(pv.v);
        e->paths = NULL;
        e->npaths = -1;
        return pv.nomem ? -1 : 0;
    }
    /* drop duplicates and paths that extend another one (keep the first, shortest) */
    char *drop = calloc((size_t)pv.n + 1, 1);
    if (!drop) {
        for (long i = 0; i < pv.n; i++)
            path_free(&pv.v[i]);
        free(pv.v);
        return -1;
    }
    for (long i = 0; i < pv.n; i++)
        for (long j = 0; j < pv.n && !drop[i]; j++)
            if (i != j && is_prefix(&pv.v[j], &pv.v[i]) &&
                (pv.v[j].nseg < pv.v[i].nseg || j < i))
                drop[i] = 1;
    long out = 0;
    for (long i = 0; i < pv.n; i++) {
        if (drop[i])
            path_free(&pv.v[i]);
        else
            pv.v[out++] = pv.v[i];
    }
    free(drop);
    e->paths = pv.v;
    e->npaths = out;
    return 0;
}

/* ---- public compile API ------------------------------------------------------------- */

struct tlm_expr *tlm_expr_compile_with(const char *src, const char *const *binding_names,
                                       size_t n, struct tlm_error *err)
{
    if (!src) {
        tlm_error_set(err, TLM_EINVAL, "no expression");
        return NULL;
    }
    struct tlm_expr *e = calloc(1, sizeof *e);
    if (!e)
        goto nomem;
    if (n) {
        e->bindings = calloc(n, sizeof *e->bindings);
        if (!e->bindings)
            goto nomem;
        e->nbindings = n;
        for (size_t i = 0; i < n; i++) {
            const char *b = binding_names[i] ? binding_names[i] : "";
            e->bindings[i] = dupn(b, strlen(b));
            if (!e->bindings[i])
                goto nomem;
        }
    }
    e->root = tlm_expr_parse(src, 0, e->bindings, e->nbindings, err);
    if (!e->root) {
        tlm_expr_destroy(e);
        return NULL;
    }
    if (compute_paths(e))
        goto nomem;
    return e;
nomem:
    tlm_expr_destroy(e);
    tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return NULL;
}

struct tlm_expr *tlm_expr_compile(const char *src, struct tlm_error *err)
{
    return tlm_expr_compile_with(src, NULL, 0, err);
}

void tlm_expr_destroy(struct tlm_expr *e)
{
    if (!e)
        return;
    tlm_expr_node_free(e->root);
    for (size_t i = 0; i < e->nbindings; i++)
        free(e->bindings[i]);
    free(e->bindings);
    for (long i = 0; i < e->npaths; i++)
        path_free(&e->paths[i]);
    free(e->paths);
    free(e);
}

long tlm_expr_root_paths(const struct tlm_expr *e, const struct tlm_path **paths)
{
    *paths = e->npaths < 0 ? NULL : e->paths;
    return e->npaths;
}

struct tlm_jsonpath *tlm_jsonpath_compile(const char *src, struct tlm_error *err)
{
    if (!src) {
        tlm_error_set(err, TLM_EINVAL, "no query");
        return NULL;
    }
    struct tlm_jsonpath *q = calloc(1, sizeof *q);
    if (!q) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    q->root = tlm_expr_parse(src, 1, NULL, 0, err);
    if (!q->root) {
        free(q);
        return NULL;
    }
    return q;
}

void tlm_jsonpath_destroy(struct tlm_jsonpath *q)
{
    if (!q)
        return;
    tlm_expr_node_free(q->root);
    free(q);
}

json_t *tlm_jsonpath_query(const struct tlm_jsonpath *q, json_t *root, json_t **paths_out)
{
    return tlm_expr_query(q->root, root, paths_out);
}
