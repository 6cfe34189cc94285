/*
 * expr_lex.c - the tokenizer of the expression language.
 *
 * The parser pulls tokens one at a time (tlm_expr_lex_next) because JSONPath cares about
 * blanks in a few places (none between '.' and a member name, none between a function
 * name and '('); every token records whether blanks preceded it. Blanks are the four of
 * RFC 9535: space, tab, LF, CR.
 *
 * Literals follow JSON exactly, as RFC 9535 requires: numbers have no leading zeros, no
 * '+', digits on both sides of '.', and a '-' is a separate token (the parser folds
 * '-' directly followed by a number into a negative literal). Strings take double or
 * single quotes, the JSON escapes plus \' inside single quotes, no raw control bytes,
 * and surrogate escapes only in valid pairs.
 *
 * References: RFC 9535 section 2.3.1.1 (string literals), RFC 8259 section 6 (numbers).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "expr_int.h"

int tlm_expr_is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int name_first(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int name_char(unsigned char c)
{
    return name_first(c) || is_digit(c);
}

size_t tlm_expr_lex_name(const struct lexer *lx, size_t pos)
{
    size_t p = pos;
    if (p >= lx->len || !name_first((unsigned char)lx->src[p]))
        return 0;
    while (p < lx->len && name_char((unsigned char)lx->src[p]))
        p++;
    return p - pos;
}

void tlm_expr_tok_clear(struct token *t)
{
    if (t->num)
        json_decref(t->num);
    free(t->str);
    t->num = NULL;
    t->str = NULL;
}

static void tok_error(struct token *t, size_t pos, const char *msg)
{
    t->kind = T_ERROR;
    t->pos = pos;
    t->msg = msg;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(struct tlm_buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    tlm_buf_append(b, u, n);
}

static void lex_string(struct lexer *lx, struct token *t)
{
    const char *s = lx->src;
    char q = s[lx->pos];
    size_t p = lx->pos + 1;
    struct tlm_buf b = TLM_BUF_INIT;

    if (tlm_buf_reserve(&b, 16))
        goto oom;
    for (;;) {
        if (p >= lx->len) {
            tok_error(t, t->pos, "unterminated string");
            goto fail;
        }
        unsigned char c = (unsigned char)s[p];
        if (c == (unsigned char)q) {
            p++;
            break;
        }
        if (c < 0x20) {
            tok_error(t, p, "control character in string (escape it)");
            goto fail;
        }
        if (c != '\\') {
            if (tlm_buf_putc(&b, (char)c))
                goto oom;
            p++;
            continue;
        }
        if (p + 1 >= lx->len) {
            tok_error(t, p, "unterminated string");
            goto fail;
        }
        char e = s[p + 1];
        char ch = 0;
        switch (e) {
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case '/': ch = '/'; break;
        case '\\': ch = '\\'; break;
        case '"':
        case '\'':
            if (e != q) {
                tok_error(t, p, "invalid escape in string");
                goto fail;
            }
            ch = e;
            break;
        case 'u': {
            unsigned cp, lo;
            if (p + 6 > lx->len || hex4(s + p + 2, &cp)) {
                tok_error(t, p, "\\u needs four hex digits");
                goto fail;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                tok_error(t, p, "lone low surrogate escape");
                goto fail;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (p + 12 > lx->len || s[p + 6] != '\\' || s[p + 7] != 'u' ||
                    hex4(s + p + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    tok_error(t, p, "high surrogate escape without its low half");
                    goto fail;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            put_utf8(&b, cp);
            p += 6;
            continue;
        }
        default:
            tok_error(t, p, "invalid escape in string");
            goto fail;
        }
        if (tlm_buf_putc(&b, ch))
            goto oom;
        p += 2;
    }
    t->kind = T_STR;
    t->str = b.data;
    t->slen = b.len;
    t->len = p - t->pos;
    lx->pos = p;
    return;
oom:
    tok_error(t, t->pos, "out of memory");
fail:
    tlm_buf_free(&b);
}

static void lex_number(struct lexer *lx, struct token *t)
{
    const char *s = lx->src;
    size_t p = lx->pos;
    int isint = 1;

    if (s[p] == '0') {
        p++;
    } else {
        while (p < lx->len && is_digit(s[p]))
            p++;
    }
    if (p < lx->len && s[p] == '.') {
        p++;
        if (p >= lx->len || !is_digit(s[p])) {
            tok_error(t, p, "expected a digit after '.'");
            return;
        }
        while (p < lx->len && is_digit(s[p]))
            p++;
        isint = 0;
    }
    if (p < lx->len && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < lx->len && (s[p] == '+' || s[p] == '-'))
            p++;
        if (p >= lx->len || !is_digit(s[p])) {
            tok_error(t, p, "expected a digit in the exponent");
            return;
        }
        while (p < lx->len && is_digit(s[p]))
            p++;
        isint = 0;
    }
    if (p < lx->len && (name_char((unsigned char)s[p]) || s[p] == '.')) {
        tok_error(t, t->pos, "malformed number");
        return;
    }
    char tmp[64];
    size_t n = p - lx->pos;
    char *txt = n < sizeof tmp ? tmp : malloc(n + 1);
    if (!txt) {
        tok_error(t, t->pos, "out of memory");
        return;
    }
    memcpy(txt, s + lx->pos, n);
    txt[n] = '\0';
    if (isint) {
        errno = 0;
        long long v = strtoll(txt, NULL, 10);
        if (errno == ERANGE)
            t->num = json_real(strtod(txt, NULL));
        else
            t->num = json_integer((json_int_t)v);
    } else {
        double d = strtod(txt, NULL);
        t->num = json_real(d); /* NULL when out of range (inf) */
        if (!t->num) {
            if (txt != tmp)
                free(txt);
            tok_error(t, t->pos, "number out of range");
            return;
        }
    }
    if (txt != tmp)
        free(txt);
    if (!t->num) {
        tok_error(t, t->pos, "number out of range");
        return;
    }
    t->kind = T_NUM;
    t->len = n;
    lx->pos = p;
}

void tlm_expr_lex_next(struct lexer *lx, struct token *t)
{
    const char *s = lx->src;
    size_t start = lx->pos;

    memset(t, 0, sizeof *t);
    while (lx->pos < lx->len && tlm_expr_is_blank(s[lx->pos]))
        lx->pos++;
    t->ws_before = lx->pos > start;
    t->pos = lx->pos;
    t->len = 1;
    if (lx->pos >= lx->len) {
        t->kind = T_EOF;
        t->len = 0;
        return;
    }
    unsigned char c = (unsigned char)s[lx->pos];
    char c2 = lx->pos + 1 < lx->len ? s[lx->pos + 1] : '\0';
    int k;
    switch (c) {
    case '"':
    case '\'':
        lex_string(lx, t);
        return;
    case '$': k = T_DOLLAR; break;
    case '@': k = T_AT; break;
    case '[': k = T_LBRACK; break;
    case ']': k = T_RBRACK; break;
    case '(': k = T_LPAREN; break;
    case ')': k = T_RPAREN; break;
    case '{': k = T_LBRACE; break;
    case '}': k = T_RBRACE; break;
    case ',': k = T_COMMA; break;
    case ':': k = T_COLON; break;
    case '?': k = T_QUESTION; break;
    case '*': k = T_STAR; break;
    case '+': k = T_PLUS; break;
    case '-': k = T_MINUS; break;
    case '/': k = T_SLASH; break;
    case '%': k = T_PERCENT; break;
    case '.':
        if (c2 == '.') {
            k = T_DOTDOT;
            t->len = 2;
        } else {
            k = T_DOT;
        }
        break;
    case '!':
        if (c2 == '=') {
            k = T_NE;
            t->len = 2;
        } else {
            k = T_NOT;
        }
        break;
    case '<':
    case '>':
        if (c2 == '=') {
            k = c == '<' ? T_LE : T_GE;
            t->len = 2;
        } else {
            k = c == '<' ? T_LT : T_GT;
        }
        break;
    case '=':
        if (c2 != '=') {
            tok_error(t, lx->pos, "use '==' to compare");
            return;
        }
        k = T_EQ;
        t->len = 2;
        break;
    case '&':
    case '|':
        if (c2 != (char)c) {
            tok_error(t, lx->pos, c == '&' ? "use '&&' for and" : "use '||' for or");
            return;
        }
        k = c == '&' ? T_AND : T_OR;
        t->len = 2;
        break;
    default:
        if (is_digit(c)) {
            lex_number(lx, t);
            return;
        }
        if (name_first(c)) {
            t->kind = T_IDENT;
            t->len = tlm_expr_lex_name(lx, lx->pos);
            lx->pos += t->len;
            return;
        }
        tok_error(t, lx->pos, "unexpected character");
        return;
    }
    t->kind = k;
    lx->pos += t->len;
}
