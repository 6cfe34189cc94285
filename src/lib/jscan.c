/*
 * jscan.c - a validating JSON object scanner that extracts a few member paths (see jscan.h).
 *
 * Design. A recursive-descent pass over the raw bytes, one function per JSON production,
 * each taking and returning a byte pointer (NULL after an error, with err filled). Nothing is
 * allocated while scanning: values are reported as spans of the line and decoded only on
 * request. Plain string bytes (0x20..0x7f except '"' and '\\') are skipped eight at a time
 * with a word test, then one at a time through a table; escapes and non-ASCII bytes take
 * the slow branch, where they are checked exactly as jansson 2.14's lexer checks them.
 *
 * The paths to extract are compiled into a trie of member names (struct jnode). While the
 * scan is inside an object reached through the trie, each key is compared with the children
 * of the current node (lengths first, then bytes; an escaped key is decoded on the fly); a
 * value under an unmatched key is only validated. When a key matches, the outputs of every
 * path below that node are reset to NONE before its value is scanned: this is what makes the
 * last duplicate key win, also for nested paths ({"a":{"b":1},"a":2} has no a.b), exactly as
 * jansson's json_object_set replaces the whole earlier value.
 *
 * Numbers: an integer is checked against long long by its digit count (and a compare of 19
 * digits); a real can only overflow strtod when its decimal magnitude reaches 10^308, so
 * strtod runs during validation only for such rare numbers. tlm_jval_double uses the exact
 * fast path of Clinger (mantissa < 2^53, |power of ten| <= 22, one correctly rounded IEEE
 * operation) and strtod otherwise, so it returns what jansson's strtod returns.
 *
 * Invariants: every pointer handed between the parse functions satisfies base <= p <= end;
 * depth counts values as jansson's parse_value does (the top object is 1); a jnode's kids
 * are a contiguous slice of the scanner's node array, in the order names first appear.
 *
 * References: RFC 8259; jansson 2.14 src/load.c and src/utf.c (behaviour verified against the
 * installed library by tests/unit/test_jscan.c and tests/fuzz/fuzz_jscan.c).
 */
#include "jscan.h"
#include "jwrite.h"

#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiled paths ------------------------------------------------------------------- */

struct jnode {
    char *name;          /* member name (owned), NUL-terminated */
    size_t len;          /* strlen(name) */
    size_t *outs;        /* output indices whose path ends at this node (owned) */
    size_t nouts;
    size_t *sub;         /* output indices of every path through this node (owned) */
    size_t nsub;
    struct jnode *kids;  /* children: a slice of tlm_jscan.nodes (borrowed) */
    size_t nkids;
};

struct tlm_jscan {
    size_t npaths;
    struct jnode *nodes; /* nodes[0] is the root (no name); owned */
    size_t nnodes;       /* nodes in use */
};

/* ---- scanning context ------------------------------------------------------------------ */

struct ctx {
    const unsigned char *base; /* first byte of the line (for columns) */
    const unsigned char *end;  /* one past the last byte */
    struct tlm_jval *out;      /* outputs, or NULL when only validating */
    struct tlm_error *err;     /* may be NULL */
};


#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Nonzero iff one of the 8 bytes of w is not plain (see the table above). */
static inline uint64_t word_special(uint64_t w)
{
    uint64_t q = w ^ (ONES * '"');
    uint64_t b = w ^ (ONES * '\\');
    uint64_t t = ((q - ONES) & ~q) | ((b - ONES) & ~b) | (w - ONES * 0x20) | w;
    return t & HIGHS;
}

static inline int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

static inline int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Value of the 4 hex digits at p (p + 4 <= end is the caller's job), or -1. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static const unsigned char *fail(struct ctx *c, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const unsigned char *fail(struct ctx *c, const unsigned char *at, const char *fmt, ...)
{
    if (c->err) {
        va_list ap;
        c->err->code = TLM_EPARSE;
        c->err->column = (long)(at - c->base) + 1;
        va_start(ap, fmt);
        vsnprintf(c->err->text, sizeof(c->err->text), fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static const unsigned char *fail_end(struct ctx *c)
{
    return fail(c, c->end, "unexpected end of line");
}

/* Length of the valid UTF-8 sequence starting at p (first byte >= 0x80), or 0 if it is not
 * one (jansson's utf8_check_first/utf8_check_full: no overlongs, surrogates, > U+10FFFF). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xc2 && c <= 0xdf) {
        return (avail >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
    } else if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* surrogate */
        return 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

/* Checks the escape at p (p[0] == '\\'). Returns the byte after it, or NULL. */
static const unsigned char *scan_escape(struct ctx *c, const unsigned char *p, int key)
{
    const unsigned char *end = c->end;
    if (p + 1 >= end)
        return fail_end(c);
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        break;
    default:
        if (p[1] >= 0x21 && p[1] < 0x7f)
            return fail(c, p, "invalid escape '\\%c' in string", p[1]);
        return fail(c, p, "invalid escape (backslash before byte 0x%02x) in string", p[1]);
    }
    if (end - p < 6) {
        for (const unsigned char *q = p + 2; q < end; q++)
            if (hexval(*q) < 0)
                return fail(c, p, "invalid \\u escape in string (4 hex digits expected)");
        return fail_end(c);
    }
    long v = hex4(p + 2);
    if (v < 0)
        return fail(c, p, "invalid \\u escape in string (4 hex digits expected)");
    if (v == 0)
        return fail(c, p, key ? "\\u0000 is not allowed in a member name"
                              : "\\u0000 is not allowed in a string");
    if (v >= 0xdc00 && v <= 0xdfff)
        return fail(c, p, "invalid Unicode '\\u%04lX' (lone low surrogate) in string", v);
    if (v >= 0xd800 && v <= 0xdbff) {
        if (end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
            long v2 = hex4(p + 8);
            if (v2 < 0)
                return fail(c, p + 6, "invalid \\u escape in string (4 hex digits expected)");
            if (v2 >= 0xdc00 && v2 <= 0xdfff)
                return p + 12;
            return fail(c, p, "invalid Unicode '\\u%04lX\\u%04lX' (bad surrogate pair) in string",
                        v, v2);
        }
        if (end - p < 12 && (p + 6 == end || (p[6] == '\\' && (p + 7 == end || p[7] == 'u'))))
            return fail_end(c);
        return fail(c, p, "invalid Unicode '\\u%04lX' (lone high surrogate) in string", v);
    }
    return p + 6;
}

/* Scans a string whose opening quote is at p[-1]. Returns the byte after the closing quote
 * and sets *escaped if it holds a backslash; NULL on error. */
static inline const unsigned char *scan_string(struct ctx *c, const unsigned char *p,
                                               int *escaped, int key)
{
    const unsigned char *end = c->end;
    for (;;) {
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (word_special(w))
                break;
            p += 8;
        }
        while (p < end && tlm_json_plain[*p])
            p++;
        if (p == end)
            return fail_end(c);
        unsigned char ch = *p;
        if (ch == '"')
            return p + 1;
        if (ch == '\\') {
            *escaped = 1;
            p = scan_escape(c, p, key);
            if (!p)
                return NULL;
        } else if (ch < 0x20) {
            return fail(c, p, "control character 0x%02x in string", ch);
        } else {
            size_t k = utf8_len(p, end);
            if (!k)
                return fail(c, p, "invalid UTF-8 byte 0x%02x in string", ch);
            p += k;
        }
    }
}

/* Saturating decimal exponent of digits [p, q). */
static long exp_value(const unsigned char *p, const unsigned char *q)
{
    long e = 0;
    for (; p < q; p++) {
        if (e < 100000)
            e = e * 10 + (*p - '0');
    }
    return e;
}

/* strtod over the span [p, p + n) (a validated JSON number), through a NUL-terminated copy
 * with the locale's decimal point, as jansson's jsonp_strtod. Sets *overflow if strtod
 * reported overflow. Returns 0 or TLM_ENOMEM. */
static int span_strtod(const char *p, size_t n, double *d, int *overflow)
{
    char small[128];
    char *s = n < sizeof(small) ? small : malloc(n + 1);
    if (!s)
        return TLM_ENOMEM;
    memcpy(s, p, n);
    s[n] = '\0';
    const char *point = localeconv()->decimal_point;
    if (point && point[0] != '.' && point[0] != '\0') {
        char *dot = memchr(s, '.', n);
        if (dot)
            *dot = point[0];
    }
    errno = 0;
    *d = strtod(s, NULL);
    *overflow = (*d == HUGE_VAL || *d == -HUGE_VAL) && errno == ERANGE;
    if (s != small)
        free(s);
    return 0;
}

/* Scans a number starting at p. Returns the byte after it and sets *type; NULL on error. */
static const unsigned char *scan_number(struct ctx *c, const unsigned char *p,
                                        enum tlm_jtype *type)
{
    const unsigned char *end = c->end, *start = p;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
        if (p == end)
            return fail_end(c);
    }
    const unsigned char *digits = p;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return fail(c, p - 1, "invalid number (leading zero)");
    } else if (*p >= '1' && *p <= '9') {
        p++;
        while (p < end && is_digit(*p))
            p++;
    } else {
        return fail(c, start, "invalid number");
    }
    size_t nint = (size_t)(p - digits);
    if (p == end || (*p != '.' && *p != 'e' && *p != 'E')) {
        *type = TLM_JINT;
        if (nint > 19 ||
            (nint == 19 && memcmp(digits, neg ? "9223372036854775808" : "9223372036854775807",
                                  19) > 0))
            return fail(c, start, neg ? "too big negative integer" : "too big integer");
        return p;
    }
    *type = TLM_JREAL;
    if (*p == '.') {
        p++;
        if (p == end)
            return fail_end(c);
        if (!is_digit(*p))
            return fail(c, p - 1, "invalid number (digit expected after '.')");
        while (p < end && is_digit(*p))
            p++;
    }
    long e = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p == end)
            return fail_end(c);
        if (!is_digit(*p))
            return fail(c, p, "invalid number (digit expected in exponent)");
        const unsigned char *ed = p;
        while (p < end && is_digit(*p))
            p++;
        e = exp_value(ed, p);
        if (eneg)
            e = -e;
    }
    /* |value| < 10^(integer digits + exponent) (10^exponent when the integer part is 0) */
    long mag = (digits[0] == '0' ? 0 : (long)(nint < 100000 ? nint : 100000)) + e;
    if (mag > 308) {
        double d;
        int over;
        if (span_strtod((const char *)start, (size_t)(p - start), &d, &over))
            return fail(c, start, "out of memory reading a number");
        if (over)
            return fail(c, start, "real number overflow");
    }
    return p;
}

static const unsigned char *scan_value(struct ctx *c, const unsigned char *p, int depth,
                                       const struct jnode *node);

/* Does the escaped key raw[0..n) decode to name[0..len)? (raw was validated) */
static int escaped_key_equals(const unsigned char *raw, size_t n, const char *name, size_t len)
{
    const unsigned char *end = raw + n;
    size_t k = 0;
    while (raw < end) {
        unsigned char tmp[4];
        size_t m;
        if (*raw != '\\') {
            tmp[0] = *raw++;
            m = 1;
        } else {
            unsigned char e = raw[1];
            raw += 2;
            m = 1;
            switch (e) {
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                unsigned long v = (unsigned long)hex4(raw);
                raw += 4;
                if (v >= 0xd800 && v <= 0xdbff) {
                    unsigned long lo = (unsigned long)hex4(raw + 2);
                    raw += 6;
                    v = ((v - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
                }
                if (v < 0x80) {
                    tmp[0] = (unsigned char)v;
                } else if (v < 0x800) {
                    tmp[0] = (unsigned char)(0xc0 | (v >> 6));
                    tmp[1] = (unsigned char)(0x80 | (v & 0x3f));
                    m = 2;
                } else if (v < 0x10000) {
                    tmp[0] = (unsigned char)(0xe0 | (v >> 12));
                    tmp[1] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
                    tmp[2] = (unsigned char)(0x80 | (v & 0x3f));
                    m = 3;
                } else {
                    tmp[0] = (unsigned char)(0xf0 | (v >> 18));
                    tmp[1] = (unsigned char)(0x80 | ((v >> 12) & 0x3f));
                    tmp[2] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
                    tmp[3] = (unsigned char)(0x80 | (v & 0x3f));
                    m = 4;
                }
                break;
            }
            default: tmp[0] = e; break; /* '"', '\\', '/' */
            }
        }
        if (k + m > len || memcmp(name + k, tmp, m) != 0)
            return 0;
        k += m;
    }
    return k == len;
}

static inline const struct jnode *match_key(const struct jnode *node, const unsigned char *k,
                                            size_t n, int escaped)
{
    for (size_t i = 0; i < node->nkids; i++) {
        const struct jnode *kid = &node->kids[i];
        if (!escaped) {
            if (kid->len == n && memcmp(kid->name, k, n) == 0)
                return kid;
        } else if (escaped_key_equals(k, n, kid->name, kid->len)) {
            return kid;
        }
    }
    return NULL;
}

/* Scans an object whose '{' is at p[-1]; node is the trie node of this object or NULL. */
static const unsigned char *scan_object(struct ctx *c, const unsigned char *p, int depth,
                                        const struct jnode *node)
{
    const unsigned char *end = c->end;
    p = skip_ws(p, end);
    if (p == end)
        return fail_end(c);
    if (*p == '}')
        return p + 1;
    for (;;) {
        if (*p != '"')
            return fail(c, p, "expected a member name (a string)");
        const unsigned char *k = p + 1;
        int esc = 0;
        p = scan_string(c, k, &esc, 1);
        if (!p)
            return NULL;
        const struct jnode *kid = NULL;
        if (node)
            kid = match_key(node, k, (size_t)(p - 1 - k), esc);
        p = skip_ws(p, end);
        if (p == end)
            return fail_end(c);
        if (*p != ':')
            return fail(c, p, "expected ':' after a member name");
        p = skip_ws(p + 1, end);
        if (p == end)
            return fail_end(c);
        if (kid) {
            for (size_t i = 0; i < kid->nsub; i++) {
                c->out[kid->sub[i]].type = TLM_JNONE;
                c->out[kid->sub[i]].p = NULL;
                c->out[kid->sub[i]].n = 0;
                c->out[kid->sub[i]].escaped = 0;
            }
        }
        p = scan_value(c, p, depth + 1, kid);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p == end)
            return fail_end(c);
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p == end)
                return fail_end(c);
            continue;
        }
        if (*p == '}')
            return p + 1;
        return fail(c, p, "expected ',' or '}' after a member value");
    }
}

static const unsigned char *scan_array(struct ctx *c, const unsigned char *p, int depth)
{
    const unsigned char *end = c->end;
    p = skip_ws(p, end);
    if (p == end)
        return fail_end(c);
    if (*p == ']')
        return p + 1;
    for (;;) {
        p = scan_value(c, p, depth + 1, NULL);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p == end)
            return fail_end(c);
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p == end)
                return fail_end(c);
            continue;
        }
        if (*p == ']')
            return p + 1;
        return fail(c, p, "expected ',' or ']' after an array element");
    }
}

static const unsigned char *scan_literal(struct ctx *c, const unsigned char *p, const char *word,
                                         size_t n)
{
    if ((size_t)(c->end - p) >= n && memcmp(p, word, n) == 0)
        return p + n;
    for (size_t i = 0; p + i < c->end && i < n; i++)
        if (p[i] != (unsigned char)word[i])
            return fail(c, p, "invalid literal (expected %s)", word);
    return fail_end(c);
}

/* Scans the value at p (p < end, not whitespace) at nesting level depth. If node is not
 * NULL, the value is the one of the paths ending at node (recorded in their outputs) and,
 * when it is an object, its members are matched against node's children. */
static const unsigned char *scan_value(struct ctx *c, const unsigned char *p, int depth,
                                       const struct jnode *node)
{
    const unsigned char *start = p, *q;
    enum tlm_jtype type = TLM_JNONE;
    int esc = 0;
    if (depth > TLM_JSCAN_MAX_DEPTH)
        return fail(c, p, "nesting deeper than %d levels", TLM_JSCAN_MAX_DEPTH);
    switch (*p) {
    case '"':
        type = TLM_JSTRING;
        q = scan_string(c, p + 1, &esc, 0);
        break;
    case '{':
        type = TLM_JOBJECT;
        q = scan_object(c, p + 1, depth, (node && node->nkids) ? node : NULL);
        break;
    case '[':
        type = TLM_JARRAY;
        q = scan_array(c, p + 1, depth);
        break;
    case 't':
        type = TLM_JTRUE;
        q = scan_literal(c, p, "true", 4);
        break;
    case 'f':
        type = TLM_JFALSE;
        q = scan_literal(c, p, "false", 5);
        break;
    case 'n':
        type = TLM_JNULL;
        q = scan_literal(c, p, "null", 4);
        break;
    default:
        if (*p == '-' || is_digit(*p)) {
            q = scan_number(c, p, &type);
            break;
        }
        if (*p >= 0x80 && !utf8_len(p, c->end))
            return fail(c, p, "invalid UTF-8 byte 0x%02x", *p);
        if (*p >= 0x21 && *p < 0x7f)
            return fail(c, p, "unexpected character '%c' (expected a value)", *p);
        return fail(c, p, "unexpected byte 0x%02x (expected a value)", *p);
    }
    if (!q)
        return NULL;
    if (node) {
        for (size_t i = 0; i < node->nouts; i++) {
            struct tlm_jval *v = &c->out[node->outs[i]];
            v->type = type;
            v->p = (const char *)start;
            v->n = (size_t)(q - start);
            v->escaped = esc;
        }
    }
    /* jansson quirk: its lexer "ungets" the byte after a number or a literal, and an ungot
     * NUL byte is dropped (stream_get takes a NUL in its buffer for "read the next byte").
     * So exactly one NUL right after a number, true, false or null vanishes. */
    if (type != TLM_JSTRING && type != TLM_JOBJECT && type != TLM_JARRAY && q < c->end &&
        *q == 0)
        q++;
    return q;
}

static int scan_line(struct ctx *c, const struct jnode *root)
{
    const unsigned char *p = skip_ws(c->base, c->end);
    if (p == c->end) {
        fail(c, p, "empty line (expected a JSON object)");
        return TLM_EPARSE;
    }
    if (*p != '{') {
        if (*p >= 0x80 && !utf8_len(p, c->end))
            fail(c, p, "invalid UTF-8 byte 0x%02x", *p);
        else
            fail(c, p, "not a JSON object");
        return TLM_EPARSE;
    }
    p = scan_object(c, p + 1, 1, root);
    if (!p)
        return TLM_EPARSE;
    p = skip_ws(p, c->end);
    if (p != c->end) {
        fail(c, p, "unexpected data after the object");
        return TLM_EPARSE;
    }
    return 0;
}

int tlm_json_validate(const char *p, size_t n, struct tlm_error *err)
{
    struct ctx c = { (const unsigned char *)p, (const unsigned char *)p + n, NULL, err };
    return scan_line(&c, NULL);
}

int tlm_jscan_run(const struct tlm_jscan *s, const char *p, size_t n, struct tlm_jval *out,
                  struct tlm_error *err)
{
    struct ctx c = { (const unsigned char *)p, (const unsigned char *)p + n, out, err };
    for (size_t i = 0; i < s->npaths; i++) {
        out[i].type = TLM_JNONE;
        out[i].p = NULL;
        out[i].n = 0;
        out[i].escaped = 0;
    }
    return scan_line(&c, s->npaths ? &s->nodes[0] : NULL);
}

/* ---- building the trie ------------------------------------------------------------------ */

static size_t *copy_indices(const size_t *idx, size_t n)
{
    size_t *r = malloc((n ? n : 1) * sizeof(*r));
    if (r && n)
        memcpy(r, idx, n * sizeof(*r));
    return r;
}

/* Fills node (at depth segments below the root) from the paths idx[0..nidx) that all pass
 * through it, then its children, recursively. */
static int build(struct tlm_jscan *s, struct jnode *node, size_t depth,
                 const struct tlm_path *paths, const size_t *idx, size_t nidx)
{
    size_t *tmp = malloc((nidx ? nidx : 1) * sizeof(*tmp));
    int rc = -1;
    if (!tmp)
        return -1;
    node->sub = copy_indices(idx, nidx);
    node->nsub = nidx;
    size_t nouts = 0;
    for (size_t i = 0; i < nidx; i++)
        if (paths[idx[i]].nseg == depth)
            tmp[nouts++] = idx[i];
    node->outs = copy_indices(tmp, nouts);
    node->nouts = nouts;
    if (!node->sub || !node->outs)
        goto out;
    /* distinct names at this depth, in order of first appearance */
    size_t first = s->nnodes;
    for (size_t i = 0; i < nidx; i++) {
        const struct tlm_path *pa = &paths[idx[i]];
        if (pa->nseg <= depth)
            continue;
        const char *name = pa->seg[depth];
        size_t j;
        for (j = first; j < s->nnodes; j++)
            if (strcmp(s->nodes[j].name, name) == 0)
                break;
        if (j == s->nnodes) {
            struct jnode *k = &s->nodes[s->nnodes++];
            k->len = strlen(name);
            k->name = malloc(k->len + 1);
            if (!k->name)
                goto out;
            memcpy(k->name, name, k->len + 1);
        }
    }
    node->kids = &s->nodes[first];
    node->nkids = s->nnodes - first;
    for (size_t j = 0; j < node->nkids; j++) {
        struct jnode *kid = &node->kids[j];
        size_t m = 0;
        for (size_t i = 0; i < nidx; i++) {
            const struct tlm_path *pa = &paths[idx[i]];
            if (pa->nseg > depth && strcmp(pa->seg[depth], kid->name) == 0)
                tmp[m++] = idx[i];
        }
        if (build(s, kid, depth + 1, paths, tmp, m))
            goto out;
    }
    rc = 0;
out:
    free(tmp);
    return rc;
}

struct tlm_jscan *tlm_jscan_create(const struct tlm_path *paths, size_t npaths)
{
    struct tlm_jscan *s = calloc(1, sizeof(*s));
    size_t total = 1, *idx = NULL;
    if (!s)
        return NULL;
    for (size_t i = 0; i < npaths; i++) {
        if (paths[i].nseg == 0)
            goto fail;
        total += paths[i].nseg;
    }
    s->npaths = npaths;
    s->nodes = calloc(total, sizeof(*s->nodes));
    idx = malloc((npaths ? npaths : 1) * sizeof(*idx));
    if (!s->nodes || !idx)
        goto fail;
    s->nnodes = 1;
    for (size_t i = 0; i < npaths; i++)
        idx[i] = i;
    if (build(s, &s->nodes[0], 0, paths, idx, npaths))
        goto fail;
    free(idx);
    return s;
fail:
    free(idx);
    tlm_jscan_destroy(s);
    return NULL;
}

void tlm_jscan_destroy(struct tlm_jscan *s)
{
    if (!s)
        return;
    if (s->nodes) {
        /* nodes that were never reached by build() are still zeroed by calloc */
        size_t n = s->nnodes ? s->nnodes : 1;
        for (size_t i = 0; i < n; i++) {
            free(s->nodes[i].name);
            free(s->nodes[i].outs);
            free(s->nodes[i].sub);
        }
        free(s->nodes);
    }
    free(s);
}

size_t tlm_jscan_npaths(const struct tlm_jscan *s)
{
    return s->npaths;
}

/* ---- value helpers ---------------------------------------------------------------------- */

static const double pow10_exact[23] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                        1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

/* The double of a validated JSON real p[0..n), correctly rounded like strtod. */
static int real_value(const char *p, size_t n, double *d)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    const char *end = p + n, *q = p;
    int neg = 0;
    uint64_t m = 0;
    int ndig = 0;  /* significant digits accumulated in m */
    long e10 = 0;  /* value = m * 10^e10 */
    if (*q == '-') {
        neg = 1;
        q++;
    }
    for (; q < end && is_digit((unsigned char)*q); q++) {
        if (ndig || *q != '0') {
            if (ndig >= 19)
                goto slow;
            m = m * 10 + (uint64_t)(*q - '0');
            ndig++;
        }
    }
    if (q < end && *q == '.') {
        for (q++; q < end && is_digit((unsigned char)*q); q++) {
            if (ndig || *q != '0') {
                if (ndig >= 19)
                    goto slow;
                m = m * 10 + (uint64_t)(*q - '0');
                ndig++;
            }
            e10--;
        }
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        int eneg = 0;
        q++;
        if (*q == '+' || *q == '-')
            eneg = *q++ == '-';
        const char *ed = q;
        while (q < end && is_digit((unsigned char)*q))
            q++;
        long e = exp_value((const unsigned char *)ed, (const unsigned char *)q);
        e10 += eneg ? -e : e;
    }
    if (m <= (1ULL << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)m;
        v = e10 < 0 ? v / pow10_exact[-e10] : v * pow10_exact[e10];
        *d = neg ? -v : v;
        return 0;
    }
    if (m == 0) {
        *d = neg ? -0.0 : 0.0;
        return 0;
    }
slow:
#endif
    {
        int over;
        return span_strtod(p, n, d, &over);
    }
}

/* The long long of a validated JSON integer p[0..n). */
static int int_value(const char *p, size_t n, long long *i)
{
    const char *end = p + n;
    int neg = 0;
    unsigned long long u = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p == end)
        return TLM_EINVAL;
    for (; p < end; p++) {
        if (!is_digit((unsigned char)*p))
            return TLM_EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (u > (9223372036854775808ULL - d) / 10)
            return TLM_ERANGE;
        u = u * 10 + d;
    }
    if (!neg && u > 9223372036854775807ULL)
        return TLM_ERANGE;
    *i = neg ? (long long)(0 - u) : (long long)u;
    return 0;
}

int tlm_jval_double(const struct tlm_jval *v, double *d)
{
    if (v->type == TLM_JINT) {
        long long i;
        int rc = int_value(v->p, v->n, &i);
        if (rc)
            return rc;
        *d = (double)i;
        return 0;
    }
    if (v->type == TLM_JREAL)
        return real_value(v->p, v->n, d);
    return TLM_ETYPE;
}

int tlm_jval_int64(const struct tlm_jval *v, long long *i)
{
    if (v->type != TLM_JINT)
        return TLM_ETYPE;
    return int_value(v->p, v->n, i);
}

/* Decodes the validated string body s[0..n) (no quotes) into dst (room for n bytes: decoding
 * never grows). Returns the decoded length. */
static size_t unescape(const char *s, size_t n, char *dst)
{
    const char *end = s + n;
    char *o = dst;
    while (s < end) {
        const char *bs = memchr(s, '\\', (size_t)(end - s));
        if (!bs) {
            memcpy(o, s, (size_t)(end - s));
            o += end - s;
            break;
        }
        memcpy(o, s, (size_t)(bs - s));
        o += bs - s;
        s = bs + 2;
        switch (bs[1]) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned long v = (unsigned long)hex4((const unsigned char *)s);
            s += 4;
            if (v >= 0xd800 && v <= 0xdbff) {
                unsigned long lo = (unsigned long)hex4((const unsigned char *)s + 2);
                s += 6;
                v = ((v - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
            }
            if (v < 0x80) {
                *o++ = (char)v;
            } else if (v < 0x800) {
                *o++ = (char)(0xc0 | (v >> 6));
                *o++ = (char)(0x80 | (v & 0x3f));
            } else if (v < 0x10000) {
                *o++ = (char)(0xe0 | (v >> 12));
                *o++ = (char)(0x80 | ((v >> 6) & 0x3f));
                *o++ = (char)(0x80 | (v & 0x3f));
            } else {
                *o++ = (char)(0xf0 | (v >> 18));
                *o++ = (char)(0x80 | ((v >> 12) & 0x3f));
                *o++ = (char)(0x80 | ((v >> 6) & 0x3f));
                *o++ = (char)(0x80 | (v & 0x3f));
            }
            break;
        }
        default: *o++ = bs[1]; break; /* '"', '\\', '/' */
        }
    }
    return (size_t)(o - dst);
}

int tlm_jval_string(const struct tlm_jval *v, struct tlm_buf *out)
{
    if (v->type != TLM_JSTRING || v->n < 2)
        return TLM_ETYPE;
    size_t n = v->n - 2;
    if (!v->escaped)
        return tlm_buf_append(out, v->p + 1, n) ? TLM_ENOMEM : 0;
    if (tlm_buf_reserve(out, n))
        return TLM_ENOMEM;
    out->len += unescape(v->p + 1, n, out->data + out->len);
    out->data[out->len] = '\0';
    return 0;
}

int tlm_jval_key_text(const struct tlm_jval *v, struct tlm_buf *out)
{
    switch (v->type) {
    case TLM_JSTRING:
        return tlm_jval_string(v, out) ? TLM_ENOMEM : 0;
    case TLM_JINT:
    case TLM_JREAL:
    case TLM_JTRUE:
    case TLM_JFALSE:
        return tlm_buf_append(out, v->p, v->n) ? TLM_ENOMEM : 0;
    default:
        return TLM_ETYPE;
    }
}

int tlm_jval_put_path(json_t *root, const struct tlm_path *p, const struct tlm_jval *v)
{
    json_t *o = root;
    for (size_t i = 0; i + 1 < p->nseg; i++) {
        json_t *n = json_object_get(o, p->seg[i]);
        if (!json_is_object(n)) {
            n = json_object();
            if (!n || json_object_set_new(o, p->seg[i], n))
                return -1;
        }
        o = n;
    }
    json_t *val = tlm_jval_to_json(v);
    return val ? json_object_set_new(o, p->seg[p->nseg - 1], val) : -1;
}

json_t *tlm_jval_to_json(const struct tlm_jval *v)
{
    switch (v->type) {
    case TLM_JOBJECT:
    case TLM_JARRAY:
        return json_loadb(v->p, v->n, JSON_DECODE_ANY, NULL);
    case TLM_JSTRING: {
        if (v->n < 2)
            return NULL;
        if (!v->escaped)
            return json_stringn_nocheck(v->p + 1, v->n - 2);
        char *tmp = malloc(v->n);
        if (!tmp)
            return NULL;
        size_t len = unescape(v->p + 1, v->n - 2, tmp);
        json_t *j = json_stringn_nocheck(tmp, len);
        free(tmp);
        return j;
    }
    case TLM_JINT: {
        long long i;
        return int_value(v->p, v->n, &i) ? NULL : json_integer(i);
    }
    case TLM_JREAL: {
        double d;
        return real_value(v->p, v->n, &d) ? NULL : json_real(d);
    }
    case TLM_JTRUE:
        return json_true();
    case TLM_JFALSE:
        return json_false();
    case TLM_JNULL:
        return json_null();
    case TLM_JNONE:
        break;
    }
    return NULL;
}

/* ---- control records -------------------------------------------------------------------- */

int tlm_json_is_watermark(const char *line, size_t n, long long *ms)
{
    const unsigned char *p = (const unsigned char *)line, *end = p + n;
    p = skip_ws(p, end);
    if (p == end || *p != '{')
        return 0;
    p = skip_ws(p + 1, end);
    if (end - p < 13 || p[1] != '_' || p[2] != '_' || p[3] != 'w' ||
        memcmp(p, "\"__watermark\"", 13) != 0)
        return 0;
    p = skip_ws(p + 13, end);
    if (p == end || *p != ':')
        return 0;
    p = skip_ws(p + 1, end);
    const unsigned char *num = p;
    if (p < end && *p == '-')
        p++;
    if (p == end || !is_digit(*p) || (*p == '0' && p + 1 < end && is_digit(p[1])))
        return 0;
    while (p < end && is_digit(*p))
        p++;
    long long v;
    if (int_value((const char *)num, (size_t)(p - num), &v))
        return 0;
    if (p < end && *p == 0)
        p++; /* the NUL jansson drops after a number (see scan_value) */
    p = skip_ws(p, end);
    if (p == end || *p != '}')
        return 0;
    if (skip_ws(p + 1, end) != end)
        return 0;
    if (ms)
        *ms = v;
    return 1;
}
