/*
 * fmt_influx.c - InfluxDB line protocol (2.x), one event per line.
 *
 *     measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *
 * A single left-to-right pass: each element (measurement, tag key, tag value, field key) is
 * scanned up to its first unescaped stop byte and unescaped into f->tmp on the way, then
 * written with jwrite; names go into the duplicate set first, so a repeated name stops the
 * record before anything of it is written twice. The event is written straight into the
 * caller's buffer; a bad record rolls it back to where the record began.
 *
 * Escapes (docs.influxdata.com, "Line protocol" reference): measurement "\," "\ "; tag keys,
 * tag values, field keys "\," "\=" "\ "; string field values "\"" "\\". Any other backslash
 * is a literal backslash. Field value types: float, integer (12i), unsigned (12u), string
 * ("..."), boolean (t T true True TRUE f F false False FALSE). The timestamp is an integer in
 * the configured precision (AUTO = ns).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fmt_int.h"
#include "jwrite.h"

enum elem { E_MEASUREMENT, E_TAG_KEY, E_TAG_VALUE, E_FIELD_KEY };

/* Scans an element from p up to its first unescaped stop byte (or e); its unescaped bytes
 * replace the contents of tmp. Returns where it stopped. */
static const char *scan_elem(const char *p, const char *e, enum elem kind, struct tlm_buf *tmp,
                             int *nomem)
{
    const char *run;
    tlm_buf_reset(tmp);
    run = p;
    while (p < e) {
        char c = *p;
        if (c == ',' || c == ' ' || (c == '=' && kind != E_MEASUREMENT))
            break;
        if (c == '\\' && p + 1 < e &&
            (p[1] == ',' || p[1] == ' ' || (p[1] == '=' && kind != E_MEASUREMENT))) {
            if (tlm_buf_append(tmp, run, (size_t)(p - run)))
                *nomem = 1;
            run = p + 1; /* keep the escaped byte, drop the backslash */
            p += 2;
            continue;
        }
        p++;
    }
    if (tlm_buf_append(tmp, run, (size_t)(p - run)))
        *nomem = 1;
    return p;
}

static int is_word(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(s, w, n) == 0;
}

static int influx_line(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                       struct tlm_error *err)
{
    const char *p = line, *e = line + len, *at;
    size_t mark = out->len;
    char show[FMT_SHOW_SIZE], show2[FMT_SHOW_SIZE];
    char key[TLM_ERROR_TEXT / 4];
    int nomem = 0, rc;
    struct tlm_buf *tmp = &f->tmp;

#define SHOWTMP() fmt_show(show, sizeof(show), tmp->data, tmp->len)

    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    if (p == e || *p == '#')
        return 0;

    /* measurement */
    at = p;
    p = scan_elem(p, e, E_MEASUREMENT, tmp, &nomem);
    FMT_TRY(nomem);
    if (tmp->len == 0)
        FMT_BAD(at, "missing measurement");
    FMT_TRY(tlm_buf_append(out, "{\"measurement\":", 15));
    rc = tlm_json_put_string(out, tmp->data, tmp->len);
    if (rc == TLM_EINVAL)
        FMT_BAD(at, "invalid UTF-8 in measurement");
    FMT_TRY(rc);
    fmt_names_clear(&f->names);
    FMT_TRY(fmt_names_add(&f->names, "measurement", 11) < 0);
    FMT_TRY(fmt_names_add(&f->names, f->time_field, f->time_field_len) < 0);

    /* tags */
    while (p < e && *p == ',') {
        at = ++p;
        p = scan_elem(p, e, E_TAG_KEY, tmp, &nomem);
        FMT_TRY(nomem);
        if (tmp->len == 0)
            FMT_BAD(at, "empty tag key");
        fmt_show(key, sizeof(key), tmp->data, tmp->len);
        if (p == e || *p != '=')
            FMT_BAD(p, "expected '=' after tag key '%s'", key);
        rc = fmt_names_add(&f->names, tmp->data, tmp->len);
        FMT_TRY(rc < 0);
        if (rc)
            FMT_BAD(at, "duplicate field '%s'", key);
        FMT_TRY(tlm_buf_putc(out, ','));
        rc = tlm_json_put_string(out, tmp->data, tmp->len);
        if (rc == TLM_EINVAL)
            FMT_BAD(at, "invalid UTF-8 in tag key");
        FMT_TRY(rc || tlm_buf_putc(out, ':'));
        at = ++p;
        p = scan_elem(p, e, E_TAG_VALUE, tmp, &nomem);
        FMT_TRY(nomem);
        if (p < e && *p == '=')
            FMT_BAD(p, "unescaped '=' in value of tag '%s' (write \\=)", key);
        if (tmp->len == 0)
            FMT_BAD(at, "empty value for tag '%s'", key);
        rc = tlm_json_put_string(out, tmp->data, tmp->len);
        if (rc == TLM_EINVAL)
            FMT_BAD(at, "invalid UTF-8 in value of tag '%s'", key);
        FMT_TRY(rc);
    }
    if (p == e)
        FMT_BAD(p, "missing field set");
    while (p < e && *p == ' ')
        p++;
    if (p == e)
        FMT_BAD(p, "missing field set");

    /* fields */
    for (;;) {
        const char *v;
        at = p;
        p = scan_elem(p, e, E_FIELD_KEY, tmp, &nomem);
        FMT_TRY(nomem);
        if (tmp->len == 0)
            FMT_BAD(at, "empty field key");
        fmt_show(key, sizeof(key), tmp->data, tmp->len);
        if (p == e || *p != '=')
            FMT_BAD(p, "expected '=' after field key '%s'", key);
        rc = fmt_names_add(&f->names, tmp->data, tmp->len);
        FMT_TRY(rc < 0);
        if (rc)
            FMT_BAD(at, "duplicate field '%s'", key);
        FMT_TRY(tlm_buf_putc(out, ','));
        rc = tlm_json_put_string(out, tmp->data, tmp->len);
        if (rc == TLM_EINVAL)
            FMT_BAD(at, "invalid UTF-8 in field key");
        FMT_TRY(rc || tlm_buf_putc(out, ':'));
        v = ++p;
        if (p < e && *p == '"') {
            const char *run = ++p;
            tlm_buf_reset(tmp);
            for (;;) {
                if (p == e)
                    FMT_BAD(v, "unterminated string value of field '%s'", key);
                if (*p == '\\' && p + 1 < e && (p[1] == '"' || p[1] == '\\')) {
                    FMT_TRY(tlm_buf_append(tmp, run, (size_t)(p - run)));
                    run = p + 1;
                    p += 2;
                    continue;
                }
                if (*p == '"')
                    break;
                p++;
            }
            FMT_TRY(tlm_buf_append(tmp, run, (size_t)(p - run)));
            p++;
            if (p < e && *p != ',' && *p != ' ')
                FMT_BAD(p, "unexpected '%s' after string value of field '%s'",
                    fmt_show(show2, sizeof(show2), p, 1), key);
            rc = tlm_json_put_string(out, tmp->data, tmp->len);
            if (rc == TLM_EINVAL)
                FMT_BAD(v, "invalid UTF-8 in string value of field '%s'", key);
            FMT_TRY(rc);
        } else {
            size_t n;
            while (p < e && *p != ',' && *p != ' ')
                p++;
            n = (size_t)(p - v);
            if (n == 0)
                FMT_BAD(v, "missing value for field '%s'", key);
            fmt_show(show, sizeof(show), v, n);
            if (v[n - 1] == 'i' && n > 1) {
                long long iv;
                rc = fmt_parse_int(v, n - 1, 0, &iv);
                if (rc == -2)
                    FMT_BAD(v, "integer %s of field '%s' is out of range", show, key);
                if (rc)
                    FMT_BAD(v, "value '%s' of field '%s' is not an integer", show, key);
                FMT_TRY(tlm_json_put_int(out, iv));
            } else if (v[n - 1] == 'u' && n > 1) {
                unsigned long long u = 0;
                size_t i;
                for (i = 0; i < n - 1 && fmt_is_digit((unsigned char)v[i]); i++) {
                    unsigned d = (unsigned)(v[i] - '0');
                    if (u > (UINT64_MAX - d) / 10)
                        FMT_BAD(v, "unsigned integer %s of field '%s' is out of range", show, key);
                    u = u * 10 + d;
                }
                if (i != n - 1)
                    FMT_BAD(v, "value '%s' of field '%s' is not an unsigned integer", show, key);
                if (u <= INT64_MAX) {
                    FMT_TRY(tlm_json_put_int(out, (long long)u));
                } else {
                    char digits[24];
                    int dn = snprintf(digits, sizeof(digits), "%llu", u);
                    FMT_TRY(tlm_json_put_string(out, digits, (size_t)dn));
                }
            } else if (is_word(v, n, "t") || is_word(v, n, "T") || is_word(v, n, "true") ||
                       is_word(v, n, "True") || is_word(v, n, "TRUE")) {
                FMT_TRY(tlm_buf_append(out, "true", 4));
            } else if (is_word(v, n, "f") || is_word(v, n, "F") || is_word(v, n, "false") ||
                       is_word(v, n, "False") || is_word(v, n, "FALSE")) {
                FMT_TRY(tlm_buf_append(out, "false", 5));
            } else {
                rc = fmt_put_float(out, v, n);
                if (rc == TLM_EPARSE)
                    FMT_BAD(v, "value '%s' of field '%s' is not a number, boolean or quoted string",
                        show, key);
                FMT_TRY(rc);
            }
        }
        if (p < e && *p == ',') {
            p++;
            continue;
        }
        break;
    }

    /* timestamp */
    while (p < e && *p == ' ')
        p++;
    if (p < e) {
        const char *ts = p;
        tlm_time_t t;
        char why[TLM_ERROR_TEXT / 2];
        while (p < e && *p != ' ')
            p++;
        if (fmt_int_time(f, ts, (size_t)(p - ts), TLM_UNIT_NS, &t, why, sizeof(why)))
            FMT_BAD(ts, "%s", why);
        while (p < e && *p == ' ')
            p++;
        if (p < e)
            FMT_BAD(p, "unexpected '%s' after timestamp",
                fmt_show(show, sizeof(show), p, (size_t)(e - p)));
        FMT_TRY(fmt_put_time(f, out, t));
    }
    FMT_TRY(tlm_buf_append(out, "}\n", 2));
    return 1;
#undef SHOWTMP
}

const struct fmt_ops fmt_influx_ops = { NULL, influx_line, NULL, NULL, NULL, NULL };
