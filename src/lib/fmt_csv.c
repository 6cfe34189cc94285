/*
 * fmt_csv.c - CSV input through libcsv (strict mode), one event per record.
 *
 * libcsv is incremental: each line is fed as-is, then a "\n", and libcsv calls field_cb for
 * every field and row_cb at the end of every record. A quoted field holding a line break
 * keeps libcsv inside the record, so the record simply continues with the next line fed;
 * since the caller never passes a '\n' and a '\r' inside a line is made data (row ends only
 * at LF), at most one record ends per line, and it ends at the "\n" we add.
 *
 * field_cb writes each field straight into a staging object (st->rec): the column's key
 * (pre-encoded ,"name": per column), then the typed value or, for the time column, the
 * normalised time. Problems found in a field (invalid UTF-8, a bad time, one field too many)
 * mark the record bad and the rest of it is only counted; at the end of the record the
 * event is copied to the caller's buffer or the problem reported. The byte position of the
 * offending field is not known to libcsv's callbacks, so on the error path only the record's
 * text is scanned again (field_pos) to find where field k starts. To allow that, the lines
 * of a record that spans lines are kept (st->raw); single-line records cost no copy.
 *
 * libcsv options: CSV_STRICT (a stray quote is an error), CSV_EMPTY_IS_NULL (tells an empty
 * unquoted field, which we omit, from "", the empty string). Spaces and tabs around unquoted
 * fields are trimmed (libcsv's default is_space). Reference: RFC 4180; libcsv 3.0 csv.h.
 *
 * Invariants: st->rec starts with '{' and holds only complete members; st->nf counts the
 * fields of the current record (header or data); st->raw holds whole lines, each ending in
 * '\n', only while a record is pending.
 */
#include <csv.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_int.h"
#include "jwrite.h"

enum bad { BAD_NONE = 0, BAD_UTF8, BAD_TIME, BAD_EXTRA, BAD_NOMEM };

struct cols {
    struct tlm_buf keys;   /* per column ,"name": back to back */
    struct tlm_buf names;  /* per column the raw name (for messages) */
    size_t *key_off, *key_len, *name_off, *name_len;
    size_t n, cap;
};

struct csv_state {
    struct csv_parser p;
    int p_ready;           /* csv_init succeeded */
    unsigned char delim;
    int fixed;             /* names came from opts.fields: no header row */
    int have_header;       /* cols hold the names */
    struct cols cols;      /* the columns */
    struct cols hdr;       /* a header being read (names only) */
    long time_col;         /* column holding the time, or -1 */
    /* the record being read */
    struct tlm_buf rec;    /* the event so far, "{" + members */
    size_t nf;             /* fields seen */
    int any;               /* a member written into rec */
    enum bad bad;          /* first problem in the record */
    size_t bad_field;      /* index of the field with that problem */
    char bad_text[TLM_ERROR_TEXT - 64];
    int ended;             /* row_cb seen during this line */
    struct tlm_fmt *f;
    /* the lines of a record spanning lines */
    struct tlm_buf raw;
    long raw_lines;
    int started;           /* a line was seen (BOM check) */
    long col_shift;        /* 3 while reading a line that started with a BOM */
};

/* ---- columns ---------------------------------------------------------------------- */

static void cols_clear(struct cols *c)
{
    c->n = 0;
    tlm_buf_reset(&c->keys);
    tlm_buf_reset(&c->names);
}

static void cols_free(struct cols *c)
{
    tlm_buf_free(&c->keys);
    tlm_buf_free(&c->names);
    free(c->key_off);
    free(c->key_len);
    free(c->name_off);
    free(c->name_len);
    memset(c, 0, sizeof(*c));
}

/* Adds a column named s[0..n) (with_key: also its ,"name": key, which needs valid UTF-8).
 * Returns 0, TLM_EINVAL (invalid UTF-8), TLM_ENOMEM. */
static int cols_add(struct cols *c, const char *s, size_t n, int with_key)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        size_t **arrs[4] = { &c->key_off, &c->key_len, &c->name_off, &c->name_len };
        for (int i = 0; i < 4; i++) {
            size_t *a = realloc(*arrs[i], cap * sizeof(size_t));
            if (!a)
                return TLM_ENOMEM;
            *arrs[i] = a;
        }
        c->cap = cap;
    }
    c->key_off[c->n] = c->keys.len;
    c->key_len[c->n] = 0;
    if (with_key) {
        int rc;
        if (tlm_buf_putc(&c->keys, ','))
            return TLM_ENOMEM;
        rc = tlm_json_put_string(&c->keys, s, n);
        if (rc) {
            c->keys.len = c->key_off[c->n];
            return rc;
        }
        if (tlm_buf_putc(&c->keys, ':'))
            return TLM_ENOMEM;
        c->key_len[c->n] = c->keys.len - c->key_off[c->n];
    }
    c->name_off[c->n] = c->names.len;
    c->name_len[c->n] = n;
    if (tlm_buf_append(&c->names, s, n))
        return TLM_ENOMEM;
    c->n++;
    return 0;
}

static const char *col_name(const struct cols *c, size_t i, size_t *n)
{
    *n = c->name_len[i];
    return c->names.data + c->name_off[i];
}

/* ---- positions (error path only) -------------------------------------------------- */

/* Offset in t[0..n) where field k (0-based) of the record starting at t begins, after the
 * blanks libcsv skips; n if the record has fewer fields. Follows libcsv's strict grammar. */
static size_t field_pos(const char *t, size_t n, unsigned char delim, size_t k)
{
    size_t i = 0, field = 0;
    for (;;) {
        while (i < n && (t[i] == ' ' || t[i] == '\t') && (unsigned char)t[i] != delim)
            i++;
        if (field == k || i >= n)
            return i;
        if (t[i] == '"') {
            for (i++; i < n; i++) {
                if (t[i] == '"') {
                    if (i + 1 < n && t[i + 1] == '"')
                        i++;
                    else
                        break;
                }
            }
            i++;
        }
        while (i < n && (unsigned char)t[i] != delim && t[i] != '\n')
            i++;
        if (i >= n || t[i] == '\n')
            return n;
        i++;
        field++;
    }
}

/* Reports a bad record at field k: finds its line and column in the record's text (the
 * kept lines plus the current one). */
static int bad_at_field(struct tlm_fmt *f, struct csv_state *st, const char *line, size_t len,
                        size_t k, struct tlm_error *err, const char *reason)
{
    const char *t = line;
    size_t n = len, pos, ls;
    long back = 0;
    int rc;
    if (st->raw.len) {
        if (tlm_buf_append(&st->raw, line, len))
            return TLM_ENOMEM;
        t = st->raw.data;
        n = st->raw.len;
    }
    pos = field_pos(t, n, st->delim, k);
    if (pos > n)
        pos = n;
    ls = pos;
    while (ls > 0 && t[ls - 1] != '\n')
        ls--;
    for (size_t i = pos; i < n; i++)
        back += t[i] == '\n';
    f->record_lines = back;
    rc = fmt_bad(f, err, (long)(pos - ls) + 1 + (back == 0 ? st->col_shift : 0), "%s", reason);
    return rc;
}

/* ---- callbacks -------------------------------------------------------------------- */

static void set_bad(struct csv_state *st, enum bad why, size_t k)
{
    st->bad = why;
    st->bad_field = k;
}

static void field_cb(void *s, size_t n, void *data)
{
    struct csv_state *st = data;
    struct tlm_fmt *f = st->f;
    size_t k = st->nf++;
    size_t mark;
    int rc;
    if (st->bad)
        return;
    if (!st->have_header) {
        if (cols_add(&st->hdr, s ? s : "", s ? n : 0, 0))
            set_bad(st, BAD_NOMEM, k);
        return;
    }
    if (k >= st->cols.n) {
        set_bad(st, BAD_EXTRA, k);
        return;
    }
    if (!s) /* empty unquoted field: omitted */
        return;
    mark = st->rec.len;
    if (tlm_buf_append(&st->rec, st->cols.keys.data + st->cols.key_off[k] + !st->any,
                       st->cols.key_len[k] - !st->any)) {
        set_bad(st, BAD_NOMEM, k);
        return;
    }
    if ((long)k == st->time_col) {
        tlm_time_t t;
        struct tlm_error terr;
        size_t nn;
        const char *name = col_name(&st->cols, k, &nn);
        char show[FMT_SHOW_SIZE], nshow[FMT_SHOW_SIZE];
        tlm_error_clear(&terr);
        rc = fmt_read_time(s, n, f->unit_in, 1, &t, &terr);
        if (rc) {
            if (rc == -1)
                snprintf(st->bad_text, sizeof(st->bad_text),
                         "field '%s': '%s' is not a number or an RFC 3339 time",
                         fmt_show(nshow, sizeof(nshow), name, nn),
                         fmt_show(show, sizeof(show), s, n));
            else
                snprintf(st->bad_text, sizeof(st->bad_text), "field '%s': %.300s",
                         fmt_show(nshow, sizeof(nshow), name, nn), terr.text);
            set_bad(st, BAD_TIME, k);
            return;
        }
        rc = tlm_json_put_int(&st->rec, tlm_time_to_unit(t, f->unit_out));
    } else {
        rc = fmt_put_value(&st->rec, s, n);
    }
    if (rc) {
        st->rec.len = mark;
        set_bad(st, rc == TLM_EINVAL ? BAD_UTF8 : BAD_NOMEM, k);
        return;
    }
    st->any = 1;
}

static void row_cb(int c, void *data)
{
    struct csv_state *st = data;
    (void)c;
    st->ended = 1;
}

static void record_reset(struct csv_state *st)
{
    st->rec.len = 0;
    tlm_buf_putc(&st->rec, '{'); /* cannot fail: rec keeps its memory (grown at init) */
    st->nf = 0;
    st->any = 0;
    st->bad = BAD_NONE;
    st->ended = 0;
    cols_clear(&st->hdr);
}

static int lf_only(unsigned char c)
{
    return c == '\n';
}

/* ---- header and records ----------------------------------------------------------- */

/* Makes st->hdr the columns, or reports why it cannot be. Returns 0, TLM_EPARSE, ENOMEM. */
static int take_header(struct tlm_fmt *f, struct csv_state *st, const char *line, size_t len,
                       struct tlm_error *err)
{
    char show[FMT_SHOW_SIZE], reason[TLM_ERROR_TEXT];
    int rc;
    cols_clear(&st->cols);
    st->time_col = -1;
    for (size_t i = 0; i < st->hdr.n; i++) {
        size_t n;
        const char *name = col_name(&st->hdr, i, &n);
        if (n == 0) {
            snprintf(reason, sizeof(reason), "empty field name in header (column %zu)", i + 1);
            goto bad;
        }
        for (size_t j = 0; j < i; j++) {
            size_t m;
            const char *other = col_name(&st->hdr, j, &m);
            if (m == n && memcmp(other, name, n) == 0) {
                snprintf(reason, sizeof(reason), "duplicate field '%s' in header",
                         fmt_show(show, sizeof(show), name, n));
                goto bad;
            }
        }
        rc = cols_add(&st->cols, name, n, 1);
        if (rc == TLM_EINVAL) {
            snprintf(reason, sizeof(reason), "invalid UTF-8 in header field name");
            goto bad;
        }
        if (rc)
            return rc;
        if (n == f->time_field_len && memcmp(name, f->time_field, n) == 0)
            st->time_col = (long)i;
        continue;
    bad:
        cols_clear(&st->cols);
        rc = bad_at_field(f, st, line, len, i, err, reason);
        return rc ? rc : TLM_EPARSE;
    }
    st->have_header = 1;
    return 0;
}

/* The record ended with this line: header, event, or error. Returns events appended (0/1),
 * 0 after a bad record reported through on_bad, TLM_EPARSE or TLM_ENOMEM. */
static int finish(struct tlm_fmt *f, struct csv_state *st, const char *line, size_t len,
                  struct tlm_buf *out, struct tlm_error *err)
{
    int rc = 0;
    if (st->bad == BAD_NOMEM) {
        rc = TLM_ENOMEM;
    } else if (!st->have_header) {
        rc = take_header(f, st, line, len, err);
        if (rc == TLM_EPARSE && f->on_bad)
            rc = 0;
    } else if (st->bad) {
        char reason[TLM_ERROR_TEXT];
        size_t nn;
        const char *name = col_name(&st->cols, st->bad_field < st->cols.n ? st->bad_field : 0,
                                    &nn);
        char show[FMT_SHOW_SIZE];
        switch (st->bad) {
        case BAD_EXTRA:
            snprintf(reason, sizeof(reason), "record has %zu fields, header has %zu", st->nf,
                     st->cols.n);
            break;
        case BAD_UTF8:
            snprintf(reason, sizeof(reason), "invalid UTF-8 in field '%s'",
                     fmt_show(show, sizeof(show), name, nn));
            break;
        default:
            snprintf(reason, sizeof(reason), "%s", st->bad_text);
            break;
        }
        rc = bad_at_field(f, st, line, len, st->bad_field, err, reason);
    } else {
        if (tlm_buf_reserve(out, st->rec.len + 2))
            rc = TLM_ENOMEM;
        else {
            memcpy(out->data + out->len, st->rec.data, st->rec.len);
            out->len += st->rec.len;
            out->data[out->len++] = '}';
            out->data[out->len++] = '\n';
            out->data[out->len] = '\0';
            rc = 1;
        }
    }
    record_reset(st);
    tlm_buf_reset(&st->raw);
    st->raw_lines = 0;
    return rc;
}

static void parser_reset(struct csv_state *st)
{
    csv_fini(&st->p, NULL, NULL, NULL); /* no callbacks: only resets the state */
}

static int csv_line(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                    struct tlm_error *err)
{
    struct csv_state *st = f->state;
    size_t n;
    st->col_shift = 0;
    if (!st->started) {
        st->started = 1;
        if (len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
            line += 3;
            len -= 3;
            st->col_shift = 3;
        }
    }
    csv_set_term_func(&st->p, len && memchr(line, '\r', len) ? lf_only : NULL);
    n = csv_parse(&st->p, line, len, field_cb, row_cb, st);
    if (n < len) {
        int quoted = st->p.quoted, rc;
        char show[FMT_SHOW_SIZE];
        if (csv_error(&st->p) != CSV_EPARSE)
            return TLM_ENOMEM;
        parser_reset(st);
        record_reset(st);
        tlm_buf_reset(&st->raw);
        st->raw_lines = 0;
        if (quoted)
            rc = fmt_bad(f, err, (long)n + 1 + st->col_shift,
                         "unexpected '%s' after closing quote (expected '%c' or end of line)",
                         fmt_show(show, sizeof(show), line + n, 1), st->delim);
        else
            rc = fmt_bad(f, err, (long)n + 1 + st->col_shift,
                         "unexpected '\"' in unquoted field (quote the whole field)");
        return rc;
    }
    if (csv_parse(&st->p, "\n", 1, field_cb, row_cb, st) != 1)
        return TLM_ENOMEM;
    if (st->ended)
        return finish(f, st, line, len, out, err);
    if (st->p.pstate != 0) { /* inside a quoted field: the record goes on */
        if (tlm_buf_append(&st->raw, line, len) || tlm_buf_putc(&st->raw, '\n'))
            return TLM_ENOMEM;
        f->record_lines = st->raw_lines++;
    }
    return 0;
}

static int csv_end(struct tlm_fmt *f, struct tlm_buf *out, struct tlm_error *err)
{
    struct csv_state *st = f->state;
    int rc = 0;
    (void)out;
    if (st->p.pstate != 0 && st->raw.len) {
        /* the last field is a quoted one still open: point at its quote */
        size_t pos = field_pos(st->raw.data, st->raw.len, st->delim, st->nf), ls;
        long back = -1;
        if (pos > st->raw.len)
            pos = st->raw.len;
        ls = pos;
        while (ls > 0 && st->raw.data[ls - 1] != '\n')
            ls--;
        for (size_t i = pos; i < st->raw.len; i++)
            back += st->raw.data[i] == '\n';
        f->record_lines = back < 0 ? 0 : back;
        rc = fmt_bad(f, err, (long)(pos - ls) + 1, "unterminated quoted field at end of input");
    }
    parser_reset(st);
    record_reset(st);
    tlm_buf_reset(&st->raw);
    st->raw_lines = 0;
    st->started = 0;
    if (!st->fixed) {
        st->have_header = 0;
        cols_clear(&st->cols);
        st->time_col = -1;
    }
    return rc;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static int csv_init_fmt(struct tlm_fmt *f, const struct tlm_fmt_opts *o, struct tlm_error *err)
{
    struct csv_state *st = calloc(1, sizeof(*st));
    char show[FMT_SHOW_SIZE];
    if (!st)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    f->state = st;
    st->f = f;
    st->delim = (unsigned char)(o->delimiter ? o->delimiter : ',');
    st->time_col = -1;
    if (st->delim == '"' || st->delim == '\n' || st->delim == '\r')
        return tlm_error_set(err, TLM_EINVAL, "the delimiter cannot be a quote or a line break");
    if (csv_init(&st->p, CSV_STRICT | CSV_EMPTY_IS_NULL) != 0)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    st->p_ready = 1;
    csv_set_delim(&st->p, st->delim);
    if (tlm_buf_grow(&st->rec, 256))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    record_reset(st);
    if (o->fields) {
        if (o->nfields == 0)
            return tlm_error_set(err, TLM_EINVAL, "no field names");
        for (size_t i = 0; i < o->nfields; i++) {
            const char *name = o->fields[i] ? o->fields[i] : "";
            size_t n = strlen(name);
            int rc;
            if (n == 0)
                return tlm_error_set(err, TLM_EINVAL, "empty field name (field %zu)", i + 1);
            for (size_t j = 0; j < i; j++)
                if (strcmp(o->fields[j], name) == 0)
                    return tlm_error_set(err, TLM_EINVAL, "duplicate field name '%s'",
                                         fmt_show(show, sizeof(show), name, n));
            rc = cols_add(&st->cols, name, n, 1);
            if (rc == TLM_EINVAL)
                return tlm_error_set(err, TLM_EINVAL, "field name %zu is not valid UTF-8", i + 1);
            if (rc)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            if (n == f->time_field_len && memcmp(name, f->time_field, n) == 0)
                st->time_col = (long)i;
        }
        st->fixed = st->have_header = 1;
    }
    return 0;
}

static void csv_destroy(struct tlm_fmt *f)
{
    struct csv_state *st = f->state;
    if (!st)
        return;
    if (st->p_ready)
        csv_free(&st->p);
    cols_free(&st->cols);
    cols_free(&st->hdr);
    tlm_buf_free(&st->rec);
    tlm_buf_free(&st->raw);
    free(st);
    f->state = NULL;
}

/* The header of the file being read, for a snapshot: a JSON array of the names. */
static int csv_save(struct tlm_fmt *f, struct tlm_buf *out)
{
    struct csv_state *st = f->state;
    int rc = 0;
    if (st->fixed || !st->have_header)
        return 0;
    rc |= tlm_buf_putc(out, '[');
    for (size_t i = 0; i < st->cols.n; i++) {
        size_t n;
        const char *name = col_name(&st->cols, i, &n);
        if (i)
            rc |= tlm_buf_putc(out, ',');
        rc |= tlm_json_put_string(out, name, n);
    }
    rc |= tlm_buf_putc(out, ']');
    return rc ? TLM_ENOMEM : 0;
}

/* Takes a header saved by csv_save, as if its row had just been read. */
static int csv_restore(struct tlm_fmt *f, const char *const *names, size_t n,
                       struct tlm_error *err)
{
    struct csv_state *st = f->state;
    if (st->fixed)
        return 0;
    cols_clear(&st->cols);
    st->time_col = -1;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (cols_add(&st->cols, names[i], l, 1))
            return tlm_error_set(err, TLM_ESTATE, "bad CSV header in the snapshot");
        if (l == f->time_field_len && memcmp(names[i], f->time_field, l) == 0)
            st->time_col = (long)i;
    }
    st->have_header = n > 0;
    return 0;
}

const struct fmt_ops fmt_csv_ops = { csv_init_fmt, csv_line, csv_end, csv_destroy, csv_save,
                                     csv_restore };
