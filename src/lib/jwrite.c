/*
 * jwrite.c - JSON text into a struct tlm_buf without a DOM (see jwrite.h).
 *
 * Design. Strings: runs of bytes that need no escape are found through a table and copied
 * with one append; non-ASCII sequences are checked as UTF-8 (as jansson's utf8_iterate does
 * in dump_string) and copied as is. Integers: digits are produced backwards into a small
 * array. Reals: a fast path finds the smallest k with round(|d| * 10^k) / 10^k == |d| (exact
 * when the integer is below 2^53 and k <= 22: one correctly rounded division is what strtod
 * computes for that decimal); it is used when the result has at most 15 significant digits and
 * |d| lies in [1e-4, 1e15), where "%.15g" prints the same digits in fixed notation. In that
 * range a middle path finds the "%.16g" or "%.17g" text from |d| * 10^k in long double,
 * unless the rounding is too close to call (about 2 % of values). Other values take the
 * slow path: "%.15g", "%.16g", "%.17g" until strtod reads the text back to d
 * (17 digits always do); subnormals, which hold fewer digits, start the search at "%.1g". Both then get jansson's touches (".0" on integral values, exponent
 * without '+' or leading zeros), so the text is what jansson prints at that precision.
 *
 * Invariant: on any error the functions leave b->len where it was.
 */
#include "jwrite.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* 1 for bytes copied without escape or check: 0x20..0x7f but '"' and '\\'. */
const unsigned char tlm_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Length of the valid UTF-8 sequence at p (p[0] >= 0x80, p < end), or 0. */
size_t tlm_utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    if (c >= 0xc2 && c <= 0xdf)
        return (avail >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

int tlm_json_put_string(struct tlm_buf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)str, *end = s + n, *run = s;
    size_t old = b->len;
    if (tlm_buf_putc(b, '"'))
        return TLM_ENOMEM;
    while (s < end) {
        while (s < end && tlm_json_plain[*s])
            s++;
        if (s == end)
            break;
        unsigned char c = *s;
        if (c >= 0x80) {
            size_t k = tlm_utf8_seq(s, (size_t)(end - (s)));
            if (!k)
                goto invalid;
            s += k;
            continue;
        }
        if (tlm_buf_append(b, run, (size_t)(s - run)))
            goto nomem;
        char esc[6] = { '\\', 0, 0, 0, 0, 0 };
        size_t m = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            m = 6;
        }
        if (tlm_buf_append(b, esc, m))
            goto nomem;
        run = ++s;
    }
    if (tlm_buf_append(b, run, (size_t)(end - run)) || tlm_buf_putc(b, '"'))
        goto nomem;
    return 0;
invalid:
    b->len = old;
    if (b->data)
        b->data[old] = '\0';
    return TLM_EINVAL;
nomem:
    b->len = old;
    if (b->data)
        b->data[old] = '\0';
    return TLM_ENOMEM;
}

/* Writes the decimal digits of u backwards ending at e; returns the first digit. */
static char *utoa_rev(uint64_t u, char *e)
{
    do {
        *--e = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return e;
}

int tlm_json_put_int(struct tlm_buf *b, long long v)
{
    char tmp[24];
    char *e = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *s = utoa_rev(u, e);
    if (v < 0)
        *--s = '-';
    return tlm_buf_append(b, s, (size_t)(e - s)) ? TLM_ENOMEM : 0;
}

static const double pow10_exact[23] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                        1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

/* Fast path: fills out (>= 40 bytes) with the "%.15g"-equal text of a (1e-4 <= a < 1e15,
 * positive) when it has at most 15 significant digits. Returns the length or 0. */
static size_t fast_real(double a, char *out)
{
    for (int k = 0; k <= 19; k++) {
        double t = a * pow10_exact[k];
        if (t >= 1e15)
            return 0;
        double r = nearbyint(t);
        if (r / pow10_exact[k] != a)
            continue;
        char digits[24];
        char *e = digits + sizeof(digits);
        char *s = utoa_rev((uint64_t)r, e);
        size_t nd = (size_t)(e - s), o = 0;
        if (k == 0) {
            memcpy(out, s, nd);
            memcpy(out + nd, ".0", 2);
            return nd + 2;
        }
        if (nd > (size_t)k) {
            memcpy(out, s, nd - (size_t)k);
            o = nd - (size_t)k;
            out[o++] = '.';
            memcpy(out + o, s + nd - (size_t)k, (size_t)k);
            return o + (size_t)k;
        }
        out[o++] = '0';
        out[o++] = '.';
        for (size_t z = nd; z < (size_t)k; z++)
            out[o++] = '0';
        memcpy(out + o, s, nd);
        return o + nd;
    }
    return 0;
}

/* Middle path, for what the fast path leaves in the same range (16 or 17 significant
 * digits): the "%.Pg" text of the first P in 15..17 that reads back, as slow_real gives,
 * without printf or strtod. a * 10^k is taken in long double (64-bit mantissa; 10^k is exact
 * there for k <= 27), so its error is below 2^-64 relative, at most 0.006 at 17 digits:
 * when the fraction is that close to a half, the rounding could go either way and the
 * slow path decides. A P < 17 candidate below 2^53 is checked exactly (one correctly
 * rounded division, as in the fast path); one above by its distance to t against half
 * a unit in the last place of a. Returns the length or 0. */
static size_t mid_real(double a, char *out)
{
#if LDBL_MANT_DIG >= 64
    static const long double p10l[28] = {
        1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
        1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
        1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L
    };
    int e10 = (int)floor(log10(a));
    if (e10 < -4 || e10 > 14)
        return 0;
    /* log10 may be one off next to a power of ten: the 17-digit scaling tells */
    long double t17 = (long double)a * p10l[16 - e10];
    if (t17 < 1e16L)
        e10--;
    else if (t17 >= 1e17L)
        e10++;
    if (e10 < -4 || e10 > 14)
        return 0;
    for (int prec = 15; prec <= 17; prec++) {
        int k = prec - 1 - e10; /* digits after the point: 0 <= k <= 20 */
        long double t = (long double)a * p10l[k];
        long double fl = floorl(t), frac = t - fl;
        /* t's error is below 10^prec * 2^-64: 2^-14, 2^-11 and 2^-7 for 15, 16, 17 */
        long double margin = prec == 15 ? 1.0L / 4096 : prec == 16 ? 1.0L / 512 : 1.0L / 64;
        if (fabsl(frac - 0.5L) < margin)
            return 0;
        uint64_t c = (uint64_t)fl + (frac > 0.5L);
        if ((long double)c >= p10l[prec])
            return 0; /* rounded up to the next power of ten */
        if (prec < 17) {
            if (c <= (UINT64_C(1) << 53)) {
                if ((double)c / (double)p10l[k] != a)
                    continue;
            } else {
                /* c reads back to a when it lies within half a unit in the last place
                 * of a (scaled by 10^k) of t; a power of two has a closer neighbour
                 * below, and a distance next to the half is left to the slow path */
                int ex;
                if (frexp(a, &ex) == 0.5)
                    return 0;
                long double half = ldexpl(p10l[k], ex - 54);
                long double dist = fabsl((long double)c - t);
                if (fabsl(dist - half) < margin)
                    return 0;
                if (dist > half)
                    continue;
            }
        }
        char digits[24];
        char *e = digits + sizeof(digits);
        char *s = utoa_rev(c, e);
        size_t nd = (size_t)(e - s), o = 0;
        /* "%g" drops trailing zeros of the fraction */
        size_t kk = (size_t)k;
        while (kk > 0 && e[-1] == '0') {
            e--;
            nd--;
            kk--;
        }
        if (e10 >= 0) {
            size_t ni = nd - kk; /* e10 + 1 integer digits */
            memcpy(out, s, ni);
            o = ni;
            out[o++] = '.';
            if (kk == 0) {
                out[o++] = '0';
                return o;
            }
            memcpy(out + o, s + ni, kk);
            return o + kk;
        }
        out[o++] = '0';
        out[o++] = '.';
        for (int z = -1; z > e10; z--)
            out[o++] = '0';
        memcpy(out + o, s, nd);
        return o + nd;
    }
#else
    (void)a;
    (void)out;
#endif
    return 0;
}

/* Slow path: "%.Pg" for the first P in 15..17 that reads back, with jansson's touches.
 * Returns the length written to out (>= 40 bytes). */
static size_t slow_real(double d, char *out)
{
    const char *point = localeconv()->decimal_point;
    char pc = (point && point[0]) ? point[0] : '.';
    int len = 0;
    /* subnormals have fewer digits of precision: there the shortest may be below 15 */
    for (int prec = fabs(d) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        len = snprintf(out, 40, "%.*g", prec, d);
        if (prec == 17 || strtod(out, NULL) == d)
            break;
    }
    if (len < 0 || len >= 40)
        return 0;
    size_t n = (size_t)len;
    if (pc != '.') {
        char *dot = memchr(out, pc, n);
        if (dot)
            *dot = '.';
    }
    char *e = memchr(out, 'e', n);
    if (!e) {
        if (!memchr(out, '.', n)) {
            memcpy(out + n, ".0", 3);
            n += 2;
        }
        return n;
    }
    /* drop '+' and leading zeros of the exponent (jansson's jsonp_dtostr) */
    char *start = e + 1, *from = e + 2;
    if (*start == '-')
        start++;
    while (*from == '0')
        from++;
    if (from != start) {
        memmove(start, from, (size_t)(out + n - from) + 1);
        n -= (size_t)(from - start);
    }
    return n;
}

int tlm_json_put_double(struct tlm_buf *b, double d)
{
    char out[48];
    size_t n = 0;
    if (!isfinite(d))
        return tlm_buf_append(b, "null", 4) ? TLM_ENOMEM : 0;
    if (d == 0)
        return tlm_buf_append(b, signbit(d) ? "-0.0" : "0.0", signbit(d) ? 4 : 3) ? TLM_ENOMEM
                                                                                    : 0;
    double a = fabs(d);
    if (a >= 1e-4 && a < 1e15) {
        out[0] = '-';
        n = fast_real(a, out + (d < 0));
        if (!n)
            n = mid_real(a, out + (d < 0));
        if (n)
            n += d < 0;
    }
    if (!n)
        n = slow_real(d, out);
    if (!n)
        return TLM_EINVAL; /* not reached: %.17g of a finite double fits */
    return tlm_buf_append(b, out, n) ? TLM_ENOMEM : 0;
}

int tlm_json_write_number(struct tlm_buf *b, double d)
{
    if (d == trunc(d) && fabs(d) <= 9007199254740992.0)
        return tlm_json_put_int(b, (long long)d);
    return tlm_json_put_double(b, d);
}

static int write_value(struct tlm_buf *b, const json_t *v)
{
    int rc;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *val;
        int first = 1;
        if (tlm_buf_putc(b, '{'))
            return TLM_ENOMEM;
        /* json_object_keylen_foreach wants a non-const object; it only reads it */
        json_t *o = (json_t *)(uintptr_t)v;
        json_object_keylen_foreach(o, key, klen, val)
        {
            if (!first && tlm_buf_putc(b, ','))
                return TLM_ENOMEM;
            first = 0;
            if ((rc = tlm_json_put_string(b, key, klen)) != 0)
                return rc;
            if (tlm_buf_putc(b, ':'))
                return TLM_ENOMEM;
            if ((rc = write_value(b, val)) != 0)
                return rc;
        }
        return tlm_buf_putc(b, '}') ? TLM_ENOMEM : 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (tlm_buf_putc(b, '['))
            return TLM_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            if (i && tlm_buf_putc(b, ','))
                return TLM_ENOMEM;
            if ((rc = write_value(b, json_array_get(v, i))) != 0)
                return rc;
        }
        return tlm_buf_putc(b, ']') ? TLM_ENOMEM : 0;
    }
    case JSON_STRING:
        return tlm_json_put_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return tlm_json_put_int(b, (long long)json_integer_value(v));
    case JSON_REAL:
        return tlm_json_put_double(b, json_real_value(v));
    case JSON_TRUE:
        return tlm_buf_append(b, "true", 4) ? TLM_ENOMEM : 0;
    case JSON_FALSE:
        return tlm_buf_append(b, "false", 5) ? TLM_ENOMEM : 0;
    case JSON_NULL:
        return tlm_buf_append(b, "null", 4) ? TLM_ENOMEM : 0;
    }
    return TLM_EINVAL;
}

int tlm_json_write(struct tlm_buf *b, const json_t *v)
{
    size_t old = b->len;
    if (!v)
        return TLM_EINVAL;
    int rc = write_value(b, v);
    if (rc) {
        b->len = old;
        if (b->data)
            b->data[old] = '\0';
    }
    return rc;
}
