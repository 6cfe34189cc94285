/*
 * fmt.c - the input-format parsers of `telem ingest`: creation, dispatch, shared helpers.
 *
 * A struct tlm_fmt holds what every format needs (time field and units, the bad-record
 * callback, scratch buffers, a duplicate-name set) and points to one struct fmt_ops from a
 * fmt_<format>.c file, which keeps its own state in f->state. tlm_fmt_line remembers where
 * the caller's buffer ended and rolls it back when a format fails, so a bad record never
 * leaves half an event behind (the formats only have to stop writing).
 *
 * The helpers decide the typing rules that fmt.h documents: fmt_json_number accepts exactly
 * the JSON numbers that tlm_json_validate (jansson) accepts back, so an event we write is
 * always one the next stage reads: integers must fit long long, reals must not overflow.
 *
 * Invariants: no allocation per record once the buffers are warm; no globals.
 */
#include "fmt.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_int.h"
#include "jwrite.h"

/* ---- kinds ------------------------------------------------------------------------ */

static const struct { const char *name; enum tlm_fmt_kind kind; } kinds[] = {
    { "csv", TLM_FMT_CSV },           { "tokens", TLM_FMT_TOKENS }, { "influx", TLM_FMT_INFLUX },
    { "graphite", TLM_FMT_GRAPHITE }, { "prom", TLM_FMT_PROM },
};

int tlm_fmt_parse_kind(const char *name, enum tlm_fmt_kind *kind)
{
    for (size_t i = 0; name && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(name, kinds[i].name) == 0) {
            *kind = kinds[i].kind;
            return 0;
        }
    }
    return TLM_EINVAL;
}

const char *tlm_fmt_kind_name(enum tlm_fmt_kind kind)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i].kind == kind)
            return kinds[i].name;
    return "?";
}

/* ---- lifecycle and dispatch ------------------------------------------------------- */

struct tlm_fmt *tlm_fmt_create(const struct tlm_fmt_opts *o, struct tlm_error *err)
{
    struct tlm_fmt *f;
    const char *tf;
    if (!o)
        return tlm_error_set(err, TLM_EINVAL, "no format options"), NULL;
    f = calloc(1, sizeof(*f));
    if (!f)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory"), NULL;
    f->kind = o->kind;
    switch (o->kind) {
    case TLM_FMT_CSV: f->ops = &fmt_csv_ops; break;
    case TLM_FMT_TOKENS: f->ops = &fmt_tokens_ops; break;
    case TLM_FMT_INFLUX: f->ops = &fmt_influx_ops; break;
    case TLM_FMT_GRAPHITE: f->ops = &fmt_graphite_ops; break;
    case TLM_FMT_PROM: f->ops = &fmt_prom_ops; break;
    default:
        free(f);
        tlm_error_set(err, TLM_EINVAL, "unknown input format %d", (int)o->kind);
        return NULL;
    }
    tf = o->time_field ? o->time_field : "timestamp";
    if (!*tf) {
        free(f);
        tlm_error_set(err, TLM_EINVAL, "empty time field name");
        return NULL;
    }
    f->time_field_len = strlen(tf);
    f->time_field = malloc(f->time_field_len + 1);
    if (!f->time_field)
        goto nomem;
    memcpy(f->time_field, tf, f->time_field_len + 1);
    if (tlm_buf_putc(&f->time_key, ',')) /* also makes time_key.data non-NULL */
        goto nomem;
    switch (tlm_json_put_string(&f->time_key, tf, f->time_field_len)) {
    case 0: break;
    case TLM_EINVAL:
        tlm_fmt_destroy(f);
        tlm_error_set(err, TLM_EINVAL, "time field name is not valid UTF-8");
        return NULL;
    default: goto nomem;
    }
    if (tlm_buf_putc(&f->time_key, ':'))
        goto nomem;
    f->unit_in = o->time_unit_in;
    f->unit_out = o->time_unit_out == TLM_UNIT_AUTO ? TLM_UNIT_MS : o->time_unit_out;
    f->on_bad = o->on_bad;
    f->on_bad_arg = o->on_bad_arg;
    if (f->ops->init && f->ops->init(f, o, err)) {
        tlm_fmt_destroy(f);
        return NULL;
    }
    return f;
nomem:
    tlm_fmt_destroy(f);
    tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return NULL;
}

void tlm_fmt_destroy(struct tlm_fmt *f)
{
    if (!f)
        return;
    if (f->ops && f->ops->destroy)
        f->ops->destroy(f);
    free(f->time_field);
    tlm_buf_free(&f->time_key);
    tlm_buf_free(&f->tmp);
    fmt_names_free(&f->names);
    free(f);
}

int tlm_fmt_line(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                 struct tlm_error *err)
{
    size_t mark = out->len;
    int n;
    f->record_lines = 0;
    n = f->ops->line(f, line, len, out, err);
    if (n < 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        if (n == TLM_ENOMEM)
            tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    return n;
}

int tlm_fmt_end(struct tlm_fmt *f, struct tlm_buf *out, struct tlm_error *err)
{
    size_t mark = out->len;
    int n = 0;
    f->record_lines = 0;
    if (f->ops->end)
        n = f->ops->end(f, out, err);
    if (n < 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        if (n == TLM_ENOMEM)
            tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    return n;
}

long tlm_fmt_record_lines(const struct tlm_fmt *f)
{
    return f->record_lines;
}

/* ---- errors ----------------------------------------------------------------------- */

int fmt_bad(struct tlm_fmt *f, struct tlm_error *err, long column, const char *fmt, ...)
{
    char reason[TLM_ERROR_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (f->on_bad) {
        f->on_bad(f->on_bad_arg, column, reason);
        return 0;
    }
    tlm_error_set(err, TLM_EPARSE, "%s", reason);
    if (err)
        err->column = column;
    return TLM_EPARSE;
}

const char *fmt_show(char *buf, size_t size, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0, limit = 40;
    if (size < 8) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    if (limit > size - 4)
        limit = size - 4;
    while (i < n) {
        size_t k = 1;
        if (p[i] >= 0x80)
            k = tlm_utf8_seq(p + i, n - i);
        if (o + (k ? k : 1) > limit) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (k == 0 || p[i] < 0x20 || p[i] == 0x7f) {
            buf[o++] = '?';
            i++;
        } else {
            memcpy(buf + o, p + i, k);
            o += k;
            i += k;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ---- numbers ---------------------------------------------------------------------- */

/* strtod on a counted string; sets *overflow when the result is infinite. */
static double counted_strtod(const char *s, size_t n, int *overflow)
{
    char small[128];
    char *copy = small, *end;
    double d;
    if (n >= sizeof(small)) {
        copy = malloc(n + 1);
        if (!copy) { /* cannot check: call it an overflow, so it stays text */
            *overflow = 1;
            return 0;
        }
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    errno = 0;
    d = strtod(copy, &end);
    *overflow = isinf(d) != 0;
    if (copy != small)
        free(copy);
    return d;
}

int fmt_json_number(const char *s, size_t n)
{
    const char *p = s, *e = s + n, *digits;
    int real = 0, expo = 0;
    size_t nd;
    if (p < e && *p == '-')
        p++;
    digits = p;
    if (p == e)
        return 0;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < e && fmt_is_digit((unsigned char)*p))
            p++;
    else
        return 0;
    nd = (size_t)(p - digits);
    if (p < e && *p == '.') {
        p++;
        if (p == e || !fmt_is_digit((unsigned char)*p))
            return 0;
        while (p < e && fmt_is_digit((unsigned char)*p))
            p++;
        real = 1;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p == e || !fmt_is_digit((unsigned char)*p))
            return 0;
        while (p < e && fmt_is_digit((unsigned char)*p))
            p++;
        real = expo = 1;
    }
    if (p != e)
        return 0;
    if (!real) {
        if (nd < 19)
            return 1;
        if (nd > 19)
            return 0;
        return memcmp(digits, s[0] == '-' ? "9223372036854775808" : "9223372036854775807",
                      19) <= 0 ? 1 : 0;
    }
    if (expo || nd > 300) {
        int overflow;
        counted_strtod(s, n, &overflow);
        if (overflow)
            return 0;
    }
    return 2;
}

int fmt_put_value(struct tlm_buf *b, const char *s, size_t n)
{
    if (fmt_json_number(s, n))
        return tlm_buf_append(b, s, n) ? TLM_ENOMEM : 0;
    return tlm_json_put_string(b, s, n);
}

int fmt_parse_float(const char *s, size_t n, double *d)
{
    const char *p = s, *e = s + n;
    int mant = 0, overflow;
    if (p < e && (*p == '+' || *p == '-'))
        p++;
    while (p < e && fmt_is_digit((unsigned char)*p))
        p++, mant = 1;
    if (p < e && *p == '.') {
        p++;
        while (p < e && fmt_is_digit((unsigned char)*p))
            p++, mant = 1;
    }
    if (!mant)
        return -1;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p == e || !fmt_is_digit((unsigned char)*p))
            return -1;
        while (p < e && fmt_is_digit((unsigned char)*p))
            p++;
    }
    if (p != e)
        return -1;
    *d = counted_strtod(s, n, &overflow);
    return overflow ? -2 : 0;
}

int fmt_put_float(struct tlm_buf *b, const char *s, size_t n)
{
    double d;
    if (fmt_json_number(s, n))
        return tlm_buf_append(b, s, n) ? TLM_ENOMEM : 0;
    if (fmt_parse_float(s, n, &d))
        return TLM_EPARSE;
    return tlm_json_put_double(b, d);
}

int fmt_parse_int(const char *s, size_t n, int allow_plus, long long *v)
{
    const char *p = s, *e = s + n;
    int neg = 0;
    unsigned long long u = 0, lim;
    if (p < e && (*p == '-' || (allow_plus && *p == '+')))
        neg = *p++ == '-';
    if (p == e)
        return -1;
    lim = neg ? (unsigned long long)INT64_MAX + 1 : (unsigned long long)INT64_MAX;
    for (; p < e; p++) {
        unsigned d;
        if (!fmt_is_digit((unsigned char)*p))
            return -1;
        d = (unsigned)(*p - '0');
        if (u > (lim - d) / 10)
            goto range;
        u = u * 10 + d;
    }
    *v = neg ? (long long)(0 - u) : (long long)u;
    return 0;
range:
    while (p < e && fmt_is_digit((unsigned char)*p))
        p++;
    return p == e ? -2 : -1;
}

/* ---- time ------------------------------------------------------------------------- */

/* Nanoseconds per unit (AUTO resolved by the caller). */
static int64_t ns_per(enum tlm_time_unit u)
{
    switch (u) {
    case TLM_UNIT_S: return TLM_NS_PER_S;
    case TLM_UNIT_MS: return TLM_NS_PER_MS;
    case TLM_UNIT_US: return 1000;
    default: return 1;
    }
}

/* A plain decimal [-]digits.digits read exactly (a double cannot hold 1700000000.25 s to the
 * nanosecond). Returns 0, 1 if the text is not of that form, or TLM_ERANGE. */
static int exact_decimal(const char *s, size_t n, enum tlm_time_unit unit, tlm_time_t *t,
                         struct tlm_error *terr)
{
    const char *dot = memchr(s, '.', n), *fr;
    long long ip, f = 0, scale = 1, m;
    size_t fn;
    int neg = n > 0 && s[0] == '-', rc;
    if (!dot || dot == s + neg || dot + 1 == s + n)
        return 1;
    if (fmt_parse_int(s, (size_t)(dot - s), 0, &ip) != 0)
        return 1;
    fr = dot + 1;
    fn = (size_t)(s + n - fr);
    for (size_t i = 0; i < fn; i++)
        if (!fmt_is_digit((unsigned char)fr[i]))
            return 1;
    if (unit == TLM_UNIT_AUTO)
        unit = tlm_time_unit_guess((double)ip);
    m = ns_per(unit);
    for (size_t i = 0; i < fn && i < 9; i++) {
        f = f * 10 + (fr[i] - '0');
        scale *= 10;
    }
    if ((rc = tlm_time_from_int(ip, unit, t, terr)) != 0)
        return rc;
    f = f * m / scale; /* < 1e9 * 1e9 / 10: fits */
    if (neg ? *t < INT64_MIN + f : *t > INT64_MAX - f)
        return tlm_error_set(terr, TLM_ERANGE, "timestamp is out of range (years 1677..2262)");
    *t = neg ? *t - f : *t + f;
    return 0;
}

int fmt_read_time(const char *s, size_t n, enum tlm_time_unit unit, int rfc3339,
                  tlm_time_t *t, struct tlm_error *terr)
{
    long long i;
    double d;
    int rc;
    if (fmt_parse_int(s, n, 0, &i) == 0)
        return tlm_time_from_int(i, unit, t, terr);
    if ((rc = exact_decimal(s, n, unit, t, terr)) != 1)
        return rc;
    if (fmt_parse_float(s, n, &d) == 0) /* exponents, integers beyond 64 bits */
        return tlm_time_from_double(d, unit, t, terr);
    if (rfc3339 && n > 0 && fmt_is_digit((unsigned char)s[0])) {
        rc = tlm_time_parse_rfc3339(s, n, t, terr);
        if (rc == 0 || rc == TLM_ERANGE)
            return rc;
    }
    return -1;
}

int fmt_int_time(const struct tlm_fmt *f, const char *s, size_t n, enum tlm_time_unit dflt,
                 tlm_time_t *t, char *why, size_t wn)
{
    char show[FMT_SHOW_SIZE];
    struct tlm_error terr;
    long long v;
    int rc = fmt_parse_int(s, n, 0, &v);
    fmt_show(show, sizeof(show), s, n);
    if (rc == -2) {
        snprintf(why, wn, "timestamp %s is out of range", show);
        return -1;
    }
    if (rc) {
        snprintf(why, wn, "timestamp '%s' is not an integer", show);
        return -1;
    }
    tlm_error_clear(&terr);
    if (tlm_time_from_int(v, f->unit_in == TLM_UNIT_AUTO ? dflt : f->unit_in, t, &terr)) {
        snprintf(why, wn, "%s", terr.text);
        return -1;
    }
    return 0;
}

int fmt_put_time(struct tlm_fmt *f, struct tlm_buf *b, tlm_time_t t)
{
    if (tlm_buf_append(b, f->time_key.data, f->time_key.len))
        return TLM_ENOMEM;
    return tlm_json_put_int(b, tlm_time_to_unit(t, f->unit_out));
}

int fmt_put_key(struct tlm_buf *b, int comma, const char *key, size_t n)
{
    if (tlm_buf_reserve(b, n + 4))
        return TLM_ENOMEM;
    if (comma)
        b->data[b->len++] = ',';
    b->data[b->len++] = '"';
    memcpy(b->data + b->len, key, n);
    b->len += n;
    b->data[b->len++] = '"';
    b->data[b->len++] = ':';
    b->data[b->len] = '\0';
    return 0;
}

/* ---- duplicate names -------------------------------------------------------------- */

void fmt_names_clear(struct fmt_names *s)
{
    s->n = 0;
    tlm_buf_reset(&s->bytes);
}

int fmt_names_add(struct fmt_names *s, const char *name, size_t n)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->len[i] == n && memcmp(s->bytes.data + s->off[i], name, n) == 0)
            return 1;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        size_t *off = realloc(s->off, cap * sizeof(*off));
        if (!off)
            return TLM_ENOMEM;
        s->off = off;
        size_t *len = realloc(s->len, cap * sizeof(*len));
        if (!len)
            return TLM_ENOMEM;
        s->len = len;
        s->cap = cap;
    }
    s->off[s->n] = s->bytes.len;
    s->len[s->n] = n;
    if (tlm_buf_append(&s->bytes, name, n))
        return TLM_ENOMEM;
    s->n++;
    return 0;
}

void fmt_names_free(struct fmt_names *s)
{
    tlm_buf_free(&s->bytes);
    free(s->off);
    free(s->len);
    s->off = s->len = NULL;
    s->n = s->cap = 0;
}

int tlm_fmt_save(struct tlm_fmt *f, struct tlm_buf *out)
{
    return f->ops->save ? f->ops->save(f, out) : 0;
}

int tlm_fmt_restore(struct tlm_fmt *f, const char *const *names, size_t n,
                    struct tlm_error *err)
{
    return f->ops->restore ? f->ops->restore(f, names, n, err) : 0;
}
