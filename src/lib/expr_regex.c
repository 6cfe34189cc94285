/*
 * expr_regex.c - I-Regexp (RFC 9485) for the match() and search() functions.
 *
 * A pattern is parsed into a small tree and compiled to a program for a Pike virtual
 * machine (Thompson's construction, as in RE2 and Russ Cox's articles): matching walks
 * the subject once, code point by code point, with at most one thread per instruction,
 * so time is O(pattern size x subject length) with no backtracking whatever the pattern
 * (safe for untrusted rule files and fuzzing). Counted repetition {n,m} is expanded, so
 * the program size is capped (MAX_PROG).
 *
 * Semantics: match() anchors at both ends, search() finds any substring. '.' matches any
 * code point except LF and CR. Character classes, \p{..}/\P{..} Unicode categories
 * (expr_ucd.c) and the single-character escapes of RFC 9485 are supported; '^' and '$'
 * assert the start and end of the subject (the JSONPath compliance suite expects this).
 * Subjects are valid UTF-8 (jansson strings).
 *
 * References: RFC 9485; https://swtch.com/~rsc/regexp/regexp2.html
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr_int.h"

#define MAX_PROG 20000
#define MAX_REPEAT 1000
#define CAT_CN 4 /* index of "Cn" in tlm_expr_ucd_names */

enum { R_CHAR, R_ANY, R_CLASS, R_CAT, R_ALT, R_REP, R_EMPTY, R_BOL, R_EOL };
enum { I_CHAR, I_ANY, I_CLASS, I_SPLIT, I_JMP, I_BOL, I_EOL, I_MATCH };

struct citem {
    uint32_t lo, hi;  /* code point range, or unused when cat >= 0 */
    int cat;          /* -1, or a category: 0..29 exact, 100 + letter for one-letter */
    int neg;          /* \P: complement of the category */
};

struct cls {
    int neg;              /* [^...] */
    size_t n;
    struct citem *items;  /* owned */
};

struct rnode {
    int kind;
    uint32_t c;       /* R_CHAR */
    int cls;          /* R_CLASS: index into classes */
    int min, max;     /* R_REP; max -1 = unbounded */
    int a, b;         /* children (indices), -1 if none */
};

struct inst {
    int op;
    uint32_t c;   /* I_CHAR */
    int x, y;     /* I_CLASS: class index; I_SPLIT: targets; I_JMP: x */
};

struct tlm_regex {
    struct inst *prog;   /* owned */
    int n;
    struct cls *cls;     /* owned */
    int ncls;
};

struct rparser {
    const unsigned char *s;
    size_t len, pos;
    struct rnode *nodes;
    int nn, capn;
    struct cls *cls;
    int ncls;
    const char *why;
    int depth;
};

/* ---- UTF-8 and categories ----------------------------------------------------------- */

static uint32_t dec_utf8(const unsigned char *s, size_t len, size_t *pos)
{
    size_t p = *pos;
    uint32_t c = s[p];
    int n = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (n)
        c &= 0x3F >> n;
    p++;
    for (int i = 0; i < n && p < len; i++)
        c = (c << 6) | (s[p++] & 0x3F);
    *pos = p;
    return c;
}

static int ucd_cat(uint32_t cp)
{
    size_t lo = 0, hi = tlm_expr_ucd_nruns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tlm_expr_ucd_runs[mid].lo)
            hi = mid;
        else if (cp > tlm_expr_ucd_runs[mid].hi)
            lo = mid + 1;
        else
            return (int)tlm_expr_ucd_runs[mid].cat;
    }
    return CAT_CN;
}

static int item_match(const struct citem *it, uint32_t c)
{
    if (it->cat < 0)
        return c >= it->lo && c <= it->hi;
    int k = ucd_cat(c), m;
    if (it->cat >= 100)
        m = tlm_expr_ucd_names[k][0] == (char)(it->cat - 100);
    else
        m = k == it->cat;
    return m != it->neg;
}

static int cls_match(const struct cls *cl, uint32_t c)
{
    int m = 0;
    for (size_t i = 0; i < cl->n && !m; i++)
        m = item_match(&cl->items[i], c);
    return m != cl->neg;
}

/* ---- parser ------------------------------------------------------------------------- */

static int rnew(struct rparser *p, int kind, int a, int b)
{
    if (p->nn == p->capn) {
        int nc = p->capn ? p->capn * 2 : 32;
        struct rnode *nn = realloc(p->nodes, (size_t)nc * sizeof *nn);
        if (!nn) {
            p->why = "out of memory";
            return -1;
        }
        p->nodes = nn;
        p->capn = nc;
    }
    struct rnode *r = &p->nodes[p->nn];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->a = a;
    r->b = b;
    return p->nn++;
}

static int peek(const struct rparser *p)
{
    return p->pos < p->len ? p->s[p->pos] : -1;
}

static int parse_alt(struct rparser *p);

/* \p{..} after the 'p' or 'P'; fills it. */
static int parse_cat(struct rparser *p, int neg, struct citem *it)
{
    if (peek(p) != '{') {
        p->why = "expected '{' after \\p";
        return -1;
    }
    p->pos++;
    size_t start = p->pos;
    while (p->pos < p->len && p->s[p->pos] != '}')
        p->pos++;
    size_t n = p->pos - start;
    if (p->pos >= p->len || n < 1 || n > 2) {
        p->why = "bad Unicode category";
        return -1;
    }
    p->pos++;
    it->neg = neg;
    it->lo = it->hi = 0;
    const char *name = (const char *)p->s + start;
    if (n == 1) {
        if (!strchr("LMNPSZC", name[0])) {
            p->why = "unknown Unicode category";
            return -1;
        }
        it->cat = 100 + name[0];
        return 0;
    }
    for (int k = 0; k < 30; k++)
        if (tlm_expr_ucd_names[k][0] == name[0] && tlm_expr_ucd_names[k][1] == name[1]) {
            it->cat = k;
            return 0;
        }
    p->why = "unknown Unicode category";
    return -1;
}

/* After '\': a single-character escape (returns the code point) or a category (returns
 * -2 with *it filled). -1 on error. */
static long parse_escape(struct rparser *p, struct citem *it)
{
    int c = peek(p);
    if (c < 0) {
        p->why = "pattern ends with '\\'";
        return -1;
    }
    p->pos++;
    switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'p':
    case 'P':
        return parse_cat(p, c == 'P', it) ? -1 : -2;
    default:
        if (strchr("()*+-.?[\\]^{|}", c))
            return c;
        p->why = "invalid escape";
        return -1;
    }
}

static int add_item(struct rparser *p, struct cls *cl, const struct citem *it)
{
    struct citem *ni = realloc(cl->items, (cl->n + 1) * sizeof *ni);
    if (!ni) {
        p->why = "out of memory";
        return -1;
    }
    cl->items = ni;
    cl->items[cl->n++] = *it;
    return 0;
}

static int new_class(struct rparser *p)
{
    struct cls *nc = realloc(p->cls, (size_t)(p->ncls + 1) * sizeof *nc);
    if (!nc) {
        p->why = "out of memory";
        return -1;
    }
    p->cls = nc;
    memset(&p->cls[p->ncls], 0, sizeof p->cls[0]);
    return p->ncls++;
}

/* One class character (CCchar) or escape; returns code point, -2 for category. */
static long class_char(struct rparser *p, struct citem *it)
{
    int c = peek(p);
    if (c < 0) {
        p->why = "unterminated '['";
        return -1;
    }
    if (c == '\\') {
        p->pos++;
        return parse_escape(p, it);
    }
    if (c == '[' || c == ']' || c == '-') {
        p->why = "unescaped '[', ']' or '-' in a class";
        return -1;
    }
    return dec_utf8(p->s, p->len, &p->pos);
}

static int parse_class(struct rparser *p)
{
    int k = new_class(p);
    if (k < 0)
        return -1;
    if (peek(p) == '^') {
        p->cls[k].neg = 1;
        p->pos++;
    }
    int first = 1;
    for (;;) {
        int c = peek(p);
        struct citem it = { 0, 0, -1, 0 };
        if (c < 0) {
            p->why = "unterminated '['";
            return -1;
        }
        if (c == ']' && !first) {
            p->pos++;
            break;
        }
        if (c == '-' && (first || (p->pos + 1 < p->len && p->s[p->pos + 1] == ']'))) {
            p->pos++;
            it.lo = it.hi = '-';
        } else {
            long lo = class_char(p, &it);
            if (lo == -1)
                return -1;
            if (lo >= 0) {
                it.lo = it.hi = (uint32_t)lo;
                if (peek(p) == '-' && p->pos + 1 < p->len && p->s[p->pos + 1] != ']') {
                    p->pos++;
                    struct citem it2 = { 0, 0, -1, 0 };
                    long hi = class_char(p, &it2);
                    if (hi == -1)
                        return -1;
                    if (hi == -2 || hi < lo) {
                        p->why = "bad range in a class";
                        return -1;
                    }
                    it.hi = (uint32_t)hi;
                }
            }
        }
        first = 0;
        if (add_item(p, &p->cls[k], &it))
            return -1;
    }
    int r = rnew(p, R_CLASS, -1, -1);
    if (r >= 0)
        p->nodes[r].cls = k;
    return r;
}

static int parse_atom(struct rparser *p)
{
    int c = peek(p);
    int r;
    switch (c) {
    case '(':
        p->pos++;
        if (++p->depth > 100) {
            p->why = "groups nested too deeply";
            return -1;
        }
        r = parse_alt(p);
        p->depth--;
        if (r < 0)
            return -1;
        if (peek(p) != ')') {
            p->why = "missing ')'";
            return -1;
        }
        p->pos++;
        return r;
    case '[':
        p->pos++;
        return parse_class(p);
    case '.':
        p->pos++;
        return rnew(p, R_ANY, -1, -1);
    case '^':
        p->pos++;
        return rnew(p, R_BOL, -1, -1);
    case '$':
        p->pos++;
        return rnew(p, R_EOL, -1, -1);
    case '\\': {
        struct citem it = { 0, 0, -1, 0 };
        p->pos++;
        long e = parse_escape(p, &it);
        if (e == -1)
            return -1;
        if (e == -2) {
            int k = new_class(p);
            if (k < 0 || add_item(p, &p->cls[k], &it))
                return -1;
            r = rnew(p, R_CLASS, -1, -1);
            if (r >= 0)
                p->nodes[r].cls = k;
            return r;
        }
        r = rnew(p, R_CHAR, -1, -1);
        if (r >= 0)
            p->nodes[r].c = (uint32_t)e;
        return r;
    }
    case '*':
    case '+':
    case '?':
    case '{':
        p->why = "nothing to repeat";
        return -1;
    case ']':
    case '}':
        p->why = "unescaped ']' or '}'";
        return -1;
    default:
        r = rnew(p, R_CHAR, -1, -1);
        if (r >= 0)
            p->nodes[r].c = dec_utf8(p->s, p->len, &p->pos);
        return r;
    }
}

static int read_count(struct rparser *p, int *out)
{
    int c = peek(p), n = 0;
    if (c < '0' || c > '9') {
        p->why = "expected a count in '{}'";
        return -1;
    }
    while ((c = peek(p)) >= '0' && c <= '9') {
        n = n * 10 + (c - '0');
        if (n > MAX_REPEAT) {
            p->why = "repeat count too large";
            return -1;
        }
        p->pos++;
    }
    *out = n;
    return 0;
}

static int parse_piece(struct rparser *p)
{
    int a = parse_atom(p);
    if (a < 0)
        return -1;
    int c = peek(p), min, max;
    if (c == '*' || c == '+' || c == '?') {
        p->pos++;
        min = c == '+';
        max = c == '?' ? 1 : -1;
    } else if (c == '{') {
        p->pos++;
        if (read_count(p, &min))
            return -1;
        max = min;
        if (peek(p) == ',') {
            p->pos++;
            max = -1;
            if (peek(p) != '}' && read_count(p, &max))
                return -1;
        }
        if (peek(p) != '}' || (max >= 0 && max < min)) {
            p->why = "bad repeat";
            return -1;
        }
        p->pos++;
    } else {
        return a;
    }
    int r = rnew(p, R_REP, a, -1);
    if (r >= 0) {
        p->nodes[r].min = min;
        p->nodes[r].max = max;
    }
    return r;
}

static int parse_branch(struct rparser *p)
{
    int r = rnew(p, R_EMPTY, -1, -1);
    while (r >= 0 && peek(p) >= 0 && peek(p) != '|' && peek(p) != ')') {
        int x = parse_piece(p);
        if (x < 0)
            return -1;
        r = rnew(p, R_CAT, r, x);
    }
    return r;
}

static int parse_alt(struct rparser *p)
{
    int r = parse_branch(p);
    while (r >= 0 && peek(p) == '|') {
        p->pos++;
        int b = parse_branch(p);
        if (b < 0)
            return -1;
        r = rnew(p, R_ALT, r, b);
    }
    return r;
}

/* ---- code generation ---------------------------------------------------------------- */

struct gen {
    struct inst *prog;
    int n, cap;
    const struct rnode *nodes;
    int err;
};

static int emit(struct gen *g, int op)
{
    if (g->n >= MAX_PROG) {
        g->err = 1;
        return -1;
    }
    if (g->n == g->cap) {
        int nc = g->cap ? g->cap * 2 : 64;
        struct inst *ni = realloc(g->prog, (size_t)nc * sizeof *ni);
        if (!ni) {
            g->err = 2;
            return -1;
        }
        g->prog = ni;
        g->cap = nc;
    }
    memset(&g->prog[g->n], 0, sizeof g->prog[0]);
    g->prog[g->n].op = op;
    return g->n++;
}

static void gen(struct gen *g, int k)
{
    const struct rnode *r = &g->nodes[k];
    int i, j;
    if (g->err)
        return;
    switch (r->kind) {
    case R_EMPTY:
        return;
    case R_CHAR:
        if ((i = emit(g, I_CHAR)) >= 0)
            g->prog[i].c = r->c;
        return;
    case R_ANY:
        emit(g, I_ANY);
        return;
    case R_BOL:
        emit(g, I_BOL);
        return;
    case R_EOL:
        emit(g, I_EOL);
        return;
    case R_CLASS:
        if ((i = emit(g, I_CLASS)) >= 0)
            g->prog[i].x = r->cls;
        return;
    case R_CAT:
        gen(g, r->a);
        gen(g, r->b);
        return;
    case R_ALT:
        if ((i = emit(g, I_SPLIT)) < 0)
            return;
        g->prog[i].x = i + 1;
        gen(g, r->a);
        if ((j = emit(g, I_JMP)) < 0)
            return;
        g->prog[i].y = g->n;
        gen(g, r->b);
        g->prog[j].x = g->n;
        return;
    default: /* R_REP */
        for (int t = 0; t < r->min && !g->err; t++)
            gen(g, r->a);
        if (r->max < 0) {
            if ((i = emit(g, I_SPLIT)) < 0)
                return;
            g->prog[i].x = i + 1;
            gen(g, r->a);
            if ((j = emit(g, I_JMP)) < 0)
                return;
            g->prog[j].x = i;
            g->prog[i].y = g->n;
        } else {
            int opt = r->max - r->min;
            int *fix = opt ? malloc((size_t)opt * sizeof *fix) : NULL;
            if (opt && !fix) {
                g->err = 2;
                return;
            }
            for (int t = 0; t < opt && !g->err; t++) {
                if ((i = emit(g, I_SPLIT)) < 0)
                    break;
                g->prog[i].x = i + 1;
                fix[t] = i;
                gen(g, r->a);
            }
            if (!g->err)
                for (int t = 0; t < opt; t++)
                    g->prog[fix[t]].y = g->n;
            free(fix);
        }
        return;
    }
}

void tlm_regex_free(struct tlm_regex *re)
{
    if (!re)
        return;
    for (int i = 0; i < re->ncls; i++)
        free(re->cls[i].items);
    free(re->cls);
    free(re->prog);
    free(re);
}

struct tlm_regex *tlm_regex_compile(const char *pat, size_t len, const char **why)
{
    struct rparser p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)pat;
    p.len = len;
    struct tlm_regex *re = NULL;
    int root = parse_alt(&p);
    if (root >= 0 && p.pos < p.len) {
        p.why = "unbalanced ')'";
        root = -1;
    }
    if (root >= 0) {
        struct gen g = { NULL, 0, 0, p.nodes, 0 };
        gen(&g, root);
        if (!g.err && emit(&g, I_MATCH) < 0)
            g.err = 1;
        if (g.err) {
            p.why = g.err == 1 ? "pattern too large" : "out of memory";
            free(g.prog);
        } else if (!(re = calloc(1, sizeof *re))) {
            p.why = "out of memory";
            free(g.prog);
        } else {
            re->prog = g.prog;
            re->n = g.n;
            re->cls = p.cls;
            re->ncls = p.ncls;
            p.cls = NULL;
            p.ncls = 0;
        }
    }
    for (int i = 0; i < p.ncls; i++)
        free(p.cls[i].items);
    free(p.cls);
    free(p.nodes);
    if (!re && why)
        *why = p.why ? p.why : "invalid pattern";
    return re;
}

/* ---- Pike VM ------------------------------------------------------------------------ */

struct vm {
    const struct tlm_regex *re;
    int *mark;     /* generation that last added each pc */
    int *stack;    /* work stack for addthread: 2 x program size */
    size_t len;    /* subject length */
};

static void addthread(struct vm *m, int *list, int *n, int pc0, size_t pos, int genr)
{
    int sp = 0;
    m->stack[sp++] = pc0;
    while (sp) {
        int pc = m->stack[--sp];
        if (m->mark[pc] == genr)
            continue;
        m->mark[pc] = genr;
        const struct inst *in = &m->re->prog[pc];
        switch (in->op) {
        case I_JMP:
            m->stack[sp++] = in->x;
            break;
        case I_SPLIT:
            m->stack[sp++] = in->y;
            m->stack[sp++] = in->x;
            break;
        case I_BOL:
            if (pos == 0)
                m->stack[sp++] = pc + 1;
            break;
        case I_EOL:
            if (pos == m->len)
                m->stack[sp++] = pc + 1;
            break;
        default:
            list[(*n)++] = pc;
        }
    }
}

int tlm_regex_exec(const struct tlm_regex *re, const char *s, size_t len, int full)
{
    int small[5 * 128];
    int n = re->n;
    int *mem = n <= 128 ? small : malloc(5 * (size_t)n * sizeof *mem);
    if (!mem)
        return -1;
    struct vm m = { re, mem, mem + n, len };
    int *clist = mem + 3 * n, *nlist = mem + 4 * n;
    int nc = 0, nn, genr = 1, found = 0;
    for (int i = 0; i < n; i++)
        m.mark[i] = 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t pos = 0;
    addthread(&m, clist, &nc, 0, 0, genr);
    for (;;) {
        if (!full && !found) {
            /* unanchored: a new attempt starts at every position */
            addthread(&m, clist, &nc, 0, pos, genr);
        }
        for (int i = 0; i < nc; i++)
            if (re->prog[clist[i]].op == I_MATCH && (!full || pos == len))
                found = 1;
        if (found || pos >= len || (full && nc == 0))
            break;
        size_t np = pos;
        uint32_t c = dec_utf8(u, len, &np);
        nn = 0;
        genr++;
        for (int i = 0; i < nc; i++) {
            const struct inst *in = &re->prog[clist[i]];
            int ok = 0;
            switch (in->op) {
            case I_CHAR: ok = in->c == c; break;
            case I_ANY: ok = c != '\n' && c != '\r'; break;
            case I_CLASS: ok = cls_match(&re->cls[in->x], c); break;
            default: break;
            }
            if (ok)
                addthread(&m, nlist, &nn, clist[i] + 1, np, genr);
        }
        int *t = clist;
        clist = nlist;
        nlist = t;
        nc = nn;
        pos = np;
    }
    if (mem != small)
        free(mem);
    return found;
}
