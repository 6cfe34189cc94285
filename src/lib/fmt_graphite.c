/*
 * fmt_graphite.c - Graphite plaintext protocol, one event per line.
 *
 *     path value [timestamp]           servers.a.cpu 1.5 1700000000
 *     path;tag=value;tag2=value2 value [timestamp]
 *
 * Tokens are separated by blanks (space, tab), as carbon's line.split() does. The value is a
 * finite decimal number; the timestamp is in seconds (unless time_unit_in says otherwise),
 * may be fractional, and -1 (carbon's "now") or no timestamp at all means the event has no
 * time field. Tag rules follow graphite's "Graphite Tag Support" page: names non-empty
 * without ; ! ^ =, values non-empty without ; and not starting with ~.
 *
 * The event {"path":P,<tags>,"value":V,"timestamp":T} is written straight into the caller's
 * buffer and rolled back on error.
 */
#include <string.h>

#include "fmt_int.h"
#include "jwrite.h"

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

static int graphite_line(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                         struct tlm_error *err)
{
    const char *p = line, *e = line + len, *path, *pe, *q, *val, *ve;
    size_t mark = out->len;
    char show[FMT_SHOW_SIZE];
    int rc, have_time = 0;
    tlm_time_t t = 0;


    while (p < e && blank(*p))
        p++;
    if (p == e)
        return 0;
    path = p;
    while (p < e && !blank(*p))
        p++;
    pe = p;
    while (p < e && blank(*p))
        p++;
    val = p;
    while (p < e && !blank(*p))
        p++;
    ve = p;
    if (val == ve)
        FMT_BAD(val, "missing value after path '%s'", fmt_show(show, sizeof(show), path,
                                                            (size_t)(pe - path)));

    /* path and tags */
    q = memchr(path, ';', (size_t)(pe - path));
    if (!q)
        q = pe;
    if (q == path)
        FMT_BAD(path, "empty metric path");
    FMT_TRY(tlm_buf_append(out, "{\"path\":", 8));
    rc = tlm_json_put_string(out, path, (size_t)(q - path));
    if (rc == TLM_EINVAL)
        FMT_BAD(path, "invalid UTF-8 in metric path");
    FMT_TRY(rc);
    fmt_names_clear(&f->names);
    FMT_TRY(fmt_names_add(&f->names, "path", 4) < 0);
    FMT_TRY(fmt_names_add(&f->names, "value", 5) < 0);
    FMT_TRY(fmt_names_add(&f->names, f->time_field, f->time_field_len) < 0);
    while (q < pe) {
        const char *tag = q + 1, *te, *eq;
        te = memchr(tag, ';', (size_t)(pe - tag));
        if (!te)
            te = pe;
        eq = memchr(tag, '=', (size_t)(te - tag));
        fmt_show(show, sizeof(show), tag, (size_t)(te - tag));
        if (!eq || eq == tag || eq + 1 == te)
            FMT_BAD(tag, "invalid tag '%s' (expected name=value)", show);
        for (const char *c = tag; c < eq; c++)
            if (*c == '!' || *c == '^')
                FMT_BAD(c, "invalid character '%c' in tag name", *c);
        if (eq[1] == '~')
            FMT_BAD(eq + 1, "tag value cannot start with '~'");
        rc = fmt_names_add(&f->names, tag, (size_t)(eq - tag));
        FMT_TRY(rc < 0);
        if (rc)
            FMT_BAD(tag, "duplicate field '%s'", fmt_show(show, sizeof(show), tag, (size_t)(eq - tag)));
        FMT_TRY(tlm_buf_putc(out, ','));
        rc = tlm_json_put_string(out, tag, (size_t)(eq - tag));
        FMT_TRY(rc == TLM_ENOMEM || tlm_buf_putc(out, ':'));
        if (rc == 0)
            rc = tlm_json_put_string(out, eq + 1, (size_t)(te - eq - 1));
        if (rc == TLM_EINVAL)
            FMT_BAD(tag, "invalid UTF-8 in tag");
        FMT_TRY(rc);
        q = te;
    }

    /* value */
    FMT_TRY(tlm_buf_append(out, ",\"value\":", 9));
    rc = fmt_put_float(out, val, (size_t)(ve - val));
    if (rc == TLM_EPARSE)
        FMT_BAD(val, "value '%s' is not a number", fmt_show(show, sizeof(show), val,
                                                         (size_t)(ve - val)));
    FMT_TRY(rc);

    /* timestamp */
    while (p < e && blank(*p))
        p++;
    if (p < e) {
        const char *ts = p;
        size_t n;
        struct tlm_error terr;
        while (p < e && !blank(*p))
            p++;
        n = (size_t)(p - ts);
        fmt_show(show, sizeof(show), ts, n);
        if (!(n == 2 && memcmp(ts, "-1", 2) == 0)) {
            tlm_error_clear(&terr);
            rc = fmt_read_time(ts, n, f->unit_in == TLM_UNIT_AUTO ? TLM_UNIT_S : f->unit_in, 0,
                               &t, &terr);
            if (rc == -1)
                FMT_BAD(ts, "timestamp '%s' is not a number", show);
            if (rc)
                FMT_BAD(ts, "%s", terr.text);
            have_time = 1;
        }
        while (p < e && blank(*p))
            p++;
        if (p < e)
            FMT_BAD(p, "unexpected '%s' after timestamp",
                fmt_show(show, sizeof(show), p, (size_t)(e - p)));
    }
    if (have_time)
        FMT_TRY(fmt_put_time(f, out, t));
    FMT_TRY(tlm_buf_append(out, "}\n", 2));
    return 1;
}

const struct fmt_ops fmt_graphite_ops = { NULL, graphite_line, NULL, NULL, NULL, NULL };
