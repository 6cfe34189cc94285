/*
 * fmt_prom.c - Prometheus text exposition format 0.0.4, one event per sample line.
 *
 *     # HELP http_requests_total The total number of HTTP requests.
 *     # TYPE http_requests_total counter
 *     http_requests_total{method="post",code="200"} 1027 1395066363000
 *
 * TYPE lines fill a small open-addressing hash table (metric family name -> type) that
 * lives until tlm_fmt_end; it is only written on TYPE lines, so samples cost one lookup and
 * no allocation. HELP lines are checked (name) and otherwise ignored. A sample is parsed in
 * one pass and written straight into the caller's buffer, rolled back on error: "__name__",
 * the labels in input order, "value", the time (if any) and "type" (if the family's type is
 * known; _bucket, _sum and _count samples take their histogram/summary family's type).
 *
 * Reference: prometheus.io/docs/instrumenting/exposition_formats/ (text format 0.0.4).
 * Values are Go ParseFloat floats: NaN and +/-Inf, which JSON lacks, become the strings
 * "NaN", "+Inf", "-Inf"; other spellings JSON lacks (".5", "1.", "+1") are normalised.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fmt_int.h"
#include "jwrite.h"

enum ptype { PT_NONE = 0, PT_COUNTER, PT_GAUGE, PT_HISTOGRAM, PT_SUMMARY, PT_UNTYPED };

static const char *const type_names[] = { NULL, "counter", "gauge", "histogram", "summary",
                                          "untyped" };

struct slot {
    char *name;       /* owned; NULL = empty slot */
    size_t n;
    enum ptype type;
};

struct prom_state {
    struct slot *tab; /* cap slots, cap a power of two */
    size_t cap, used;
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static struct slot *find(struct prom_state *st, const char *s, size_t n)
{
    size_t i;
    if (!st->cap)
        return NULL;
    i = (size_t)hash(s, n) & (st->cap - 1);
    while (st->tab[i].name) {
        if (st->tab[i].n == n && memcmp(st->tab[i].name, s, n) == 0)
            return &st->tab[i];
        i = (i + 1) & (st->cap - 1);
    }
    return &st->tab[i]; /* empty slot where it would go */
}

static enum ptype lookup(struct prom_state *st, const char *s, size_t n)
{
    struct slot *sl = find(st, s, n);
    return sl && sl->name ? sl->type : PT_NONE;
}

static int set_type(struct prom_state *st, const char *s, size_t n, enum ptype t)
{
    struct slot *sl;
    if (2 * (st->used + 1) > st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        struct slot *old = st->tab, *tab = calloc(cap, sizeof(*tab));
        size_t oldcap = st->cap;
        if (!tab)
            return TLM_ENOMEM;
        st->tab = tab;
        st->cap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].name)
                *find(st, old[i].name, old[i].n) = old[i];
        free(old);
    }
    sl = find(st, s, n);
    if (!sl->name) {
        if (!(sl->name = malloc(n + 1)))
            return TLM_ENOMEM;
        memcpy(sl->name, s, n);
        sl->name[n] = '\0';
        sl->n = n;
        st->used++;
    }
    sl->type = t;
    return 0;
}

static void clear_types(struct prom_state *st)
{
    for (size_t i = 0; i < st->cap; i++)
        free(st->tab[i].name);
    free(st->tab);
    st->tab = NULL;
    st->cap = st->used = 0;
}

/* The type to write for a sample named s[0..n). */
static enum ptype sample_type(struct prom_state *st, const char *s, size_t n)
{
    static const struct { const char *suffix; size_t n; int hist_only; } sfx[] = {
        { "_bucket", 7, 1 }, { "_sum", 4, 0 }, { "_count", 6, 0 },
    };
    enum ptype t = lookup(st, s, n);
    if (t)
        return t;
    for (size_t i = 0; i < 3; i++) {
        if (n > sfx[i].n && memcmp(s + n - sfx[i].n, sfx[i].suffix, sfx[i].n) == 0) {
            t = lookup(st, s, n - sfx[i].n);
            if (t == PT_HISTOGRAM || (t == PT_SUMMARY && !sfx[i].hist_only))
                return t;
        }
    }
    return PT_NONE;
}

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

static int name_start(char c, int metric)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
}

static int name_char(char c, int metric)
{
    return name_start(c, metric) || fmt_is_digit((unsigned char)c);
}

/* End of a metric (metric = 1) or label name starting at p, or p itself if none starts. */
static const char *scan_name(const char *p, const char *e, int metric)
{
    if (p == e || !name_start(*p, metric))
        return p;
    while (p < e && name_char(*p, metric))
        p++;
    return p;
}

static const char *skip_blanks(const char *p, const char *e)
{
    while (p < e && blank(*p))
        p++;
    return p;
}

/* Appends a sample value: NaN/Inf words as strings, other floats as numbers. Returns 0,
 * TLM_EPARSE or TLM_ENOMEM. */
static int put_value(struct tlm_buf *b, const char *s, size_t n)
{
    const char *w = s;
    size_t wn = n;
    int sign = 0;
    if (wn && (*w == '+' || *w == '-')) {
        sign = *w == '-' ? -1 : 1;
        w++, wn--;
    }
    if (wn == 3 && strncasecmp(w, "nan", 3) == 0)
        return tlm_buf_append(b, "\"NaN\"", 5) ? TLM_ENOMEM : 0;
    if ((wn == 3 && strncasecmp(w, "inf", 3) == 0) ||
        (wn == 8 && strncasecmp(w, "infinity", 8) == 0))
        return tlm_buf_puts(b, sign < 0 ? "\"-Inf\"" : "\"+Inf\"") ? TLM_ENOMEM : 0;
    return fmt_put_float(b, s, n);
}

static int prom_comment(struct tlm_fmt *f, struct prom_state *st, const char *line,
                        const char *p, const char *e, struct tlm_error *err)
{
    const char *w, *we, *name, *ne;
    int is_type;
    char show[FMT_SHOW_SIZE];
    p = skip_blanks(p + 1, e);
    w = p;
    while (p < e && !blank(*p))
        p++;
    we = p;
    if (we - w != 4 || (memcmp(w, "HELP", 4) != 0 && memcmp(w, "TYPE", 4) != 0) ||
        (p < e && !blank(*p)))
        return 0; /* a plain comment */
    is_type = w[0] == 'T';
    p = skip_blanks(p, e);
    name = p;
    while (p < e && !blank(*p))
        p++;
    ne = p;
    if (name == ne)
        return fmt_bad(f, err, (long)(name - line) + 1, "missing metric name in %s line",
                       is_type ? "TYPE" : "HELP");
    if (scan_name(name, ne, 1) != ne)
        return fmt_bad(f, err, (long)(name - line) + 1, "invalid metric name '%s'",
                       fmt_show(show, sizeof(show), name, (size_t)(ne - name)));
    if (is_type) {
        const char *t;
        enum ptype type = PT_NONE;
        p = skip_blanks(p, e);
        t = p;
        while (p < e && !blank(*p))
            p++;
        if (t == p)
            return fmt_bad(f, err, (long)(t - line) + 1, "missing metric type in TYPE line");
        for (int i = PT_COUNTER; i <= PT_UNTYPED; i++)
            if ((size_t)(p - t) == strlen(type_names[i]) &&
                memcmp(t, type_names[i], (size_t)(p - t)) == 0)
                type = (enum ptype)i;
        if (!type)
            return fmt_bad(f, err, (long)(t - line) + 1,
                           "unknown metric type '%s' (expected counter, gauge, histogram, "
                           "summary or untyped)",
                           fmt_show(show, sizeof(show), t, (size_t)(p - t)));
        p = skip_blanks(p, e);
        if (p < e)
            return fmt_bad(f, err, (long)(p - line) + 1, "unexpected '%s' after metric type",
                           fmt_show(show, sizeof(show), p, (size_t)(e - p)));
        if (set_type(st, name, (size_t)(ne - name), type))
            return TLM_ENOMEM;
    }
    return 0;
}

static int prom_line(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                     struct tlm_error *err)
{
    struct prom_state *st = f->state;
    const char *p = line, *e = line + len, *name, *ne, *v;
    size_t mark = out->len;
    char show[FMT_SHOW_SIZE], label[FMT_SHOW_SIZE];
    enum ptype type;
    int rc, have_time = 0;
    tlm_time_t t = 0;
    struct tlm_buf *tmp = &f->tmp;


    p = skip_blanks(p, e);
    if (p == e)
        return 0;
    if (*p == '#')
        return prom_comment(f, st, line, p, e, err);

    name = p;
    ne = scan_name(p, e, 1);
    if (ne == name || (ne < e && *ne != '{' && !blank(*ne))) {
        const char *te = name;
        while (te < e && !blank(*te) && *te != '{')
            te++;
        FMT_BAD(name, "invalid metric name '%s'", fmt_show(show, sizeof(show), name,
                                                       (size_t)(te - name)));
    }
    p = ne;
    type = sample_type(st, name, (size_t)(ne - name));
    FMT_TRY(tlm_buf_append(out, "{\"__name__\":", 12));
    FMT_TRY(tlm_json_put_string(out, name, (size_t)(ne - name))); /* ASCII: cannot be invalid */
    fmt_names_clear(&f->names);
    FMT_TRY(fmt_names_add(&f->names, "__name__", 8) < 0);
    FMT_TRY(fmt_names_add(&f->names, "value", 5) < 0);
    FMT_TRY(fmt_names_add(&f->names, f->time_field, f->time_field_len) < 0);
    if (type)
        FMT_TRY(fmt_names_add(&f->names, "type", 4) < 0);

    p = skip_blanks(p, e); /* "name {...}" is accepted as Prometheus does */
    if (p < e && *p == '{') {
        p++;
        for (;;) {
            const char *ln, *lne, *q, *run;
            p = skip_blanks(p, e);
            if (p < e && *p == '}') {
                p++;
                break;
            }
            if (p == e)
                FMT_BAD(p, "unterminated label set (expected '}')");
            ln = p;
            lne = scan_name(p, e, 0);
            if (lne == ln || (lne < e && !blank(*lne) && *lne != '=')) {
                const char *te = ln;
                while (te < e && !blank(*te) && *te != '=' && *te != ',' && *te != '}')
                    te++;
                FMT_BAD(ln, "invalid label name '%s'", fmt_show(show, sizeof(show), ln,
                                                            (size_t)(te - ln)));
            }
            fmt_show(label, sizeof(label), ln, (size_t)(lne - ln));
            p = skip_blanks(lne, e);
            if (p == e || *p != '=')
                FMT_BAD(p, "expected '=' after label name '%s'", label);
            p = skip_blanks(p + 1, e);
            if (p == e || *p != '"')
                FMT_BAD(p, "expected '\"' to start the value of label '%s'", label);
            q = p;
            run = ++p;
            tlm_buf_reset(tmp);
            for (;;) {
                if (p == e)
                    FMT_BAD(q, "unterminated value of label '%s'", label);
                if (*p == '\\') {
                    char c;
                    if (p + 1 == e)
                        FMT_BAD(q, "unterminated value of label '%s'", label);
                    switch (p[1]) {
                    case '\\': c = '\\'; break;
                    case '"': c = '"'; break;
                    case 'n': c = '\n'; break;
                    default:
                        FMT_BAD(p, "bad escape '\\%s' in value of label '%s'",
                            fmt_show(show, sizeof(show), p + 1, 1), label);
                    }
                    FMT_TRY(tlm_buf_append(tmp, run, (size_t)(p - run)) || tlm_buf_putc(tmp, c));
                    p += 2;
                    run = p;
                    continue;
                }
                if (*p == '"')
                    break;
                p++;
            }
            FMT_TRY(tlm_buf_append(tmp, run, (size_t)(p - run)));
            p++;
            rc = fmt_names_add(&f->names, ln, (size_t)(lne - ln));
            FMT_TRY(rc < 0);
            if (rc)
                FMT_BAD(ln, "duplicate label '%s'", label);
            FMT_TRY(fmt_put_key(out, 1, ln, (size_t)(lne - ln)));
            rc = tlm_json_put_string(out, tmp->data, tmp->len);
            if (rc == TLM_EINVAL)
                FMT_BAD(q, "invalid UTF-8 in value of label '%s'", label);
            FMT_TRY(rc);
            p = skip_blanks(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            if (p < e && *p == '}') {
                p++;
                break;
            }
            if (p == e)
                FMT_BAD(p, "unterminated label set (expected '}')");
            FMT_BAD(p, "expected ',' or '}' after label '%s'", label);
        }
    }

    /* value */
    p = skip_blanks(p, e);
    v = p;
    while (p < e && !blank(*p))
        p++;
    if (v == p)
        FMT_BAD(v, "missing value");
    FMT_TRY(tlm_buf_append(out, ",\"value\":", 9));
    rc = put_value(out, v, (size_t)(p - v));
    if (rc == TLM_EPARSE)
        FMT_BAD(v, "value '%s' is not a number", fmt_show(show, sizeof(show), v, (size_t)(p - v)));
    FMT_TRY(rc);

    /* timestamp */
    p = skip_blanks(p, e);
    if (p < e) {
        const char *ts = p;
        char why[TLM_ERROR_TEXT / 2];
        while (p < e && !blank(*p))
            p++;
        if (fmt_int_time(f, ts, (size_t)(p - ts), TLM_UNIT_MS, &t, why, sizeof(why)))
            FMT_BAD(ts, "%s", why);
        have_time = 1;
        p = skip_blanks(p, e);
        if (p < e)
            FMT_BAD(p, "unexpected '%s' after timestamp", fmt_show(show, sizeof(show), p,
                                                                (size_t)(e - p)));
    }
    if (have_time)
        FMT_TRY(fmt_put_time(f, out, t));
    if (type) {
        FMT_TRY(tlm_buf_append(out, ",\"type\":\"", 9));
        FMT_TRY(tlm_buf_puts(out, type_names[type]) || tlm_buf_putc(out, '"'));
    }
    FMT_TRY(tlm_buf_append(out, "}\n", 2));
    return 1;
}

static int prom_init(struct tlm_fmt *f, const struct tlm_fmt_opts *o, struct tlm_error *err)
{
    (void)o;
    f->state = calloc(1, sizeof(struct prom_state));
    if (!f->state)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return 0;
}

static int prom_end(struct tlm_fmt *f, struct tlm_buf *out, struct tlm_error *err)
{
    (void)out;
    (void)err;
    clear_types(f->state);
    return 0;
}

static void prom_destroy(struct tlm_fmt *f)
{
    if (f->state)
        clear_types(f->state);
    free(f->state);
    f->state = NULL;
}

const struct fmt_ops fmt_prom_ops = { prom_init, prom_line, prom_end, prom_destroy, NULL, NULL };
