/*
 * table.c - reference tables for enrich (see table.h).
 *
 * Storage: one arena (struct tlm_buf) holds every key and every fragment back to back;
 * a row is four integers into it. The index is open addressing with linear probing over
 * a power-of-two array of 64-bit slots, each the row number + 1 in the low 32 bits and
 * the top 32 bits of the key's hash in the high ones, so that a probe compares keys only
 * when the hash tags agree. It is at most half full.
 *
 * CSV goes through libcsv (strict mode, an empty unquoted field passed as NULL), fed one
 * line at a time so that the raw text of the current record is known: libcsv does not
 * say whether a field was quoted, so when a field would be typed (a number, a boolean,
 * an empty field) the record's raw text is scanned once for the fields that start with a
 * quote. JSON and NDJSON tables are read with jansson (not a hot path).
 *
 * Reference: RFC 4180 (CSV); libcsv 3.0 csv.h.
 */
#include "table.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jwrite.h"
#include "reader.h"

struct row {
    size_t key_off;
    size_t frag_off;
    uint32_t key_len;
    uint32_t frag_len;
};

struct tlm_table {
    struct tlm_buf arena;      /* keys and fragments */
    struct row *rows;
    size_t nrows, cap_rows;
    uint64_t *slots;           /* (hash >> 32) << 32 | (row + 1); 0 = empty */
    size_t mask;               /* slots - 1 */
    long long duplicates;
    char **names;              /* the added columns (without prefix) */
    size_t nnames;
    uint64_t content_hash;
};

/* ---- hashing and the index -------------------------------------------------------- */

static inline uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

uint64_t tlm_table_hash(const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ (n * UINT64_C(0x2545f4914f6cdd1d));
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ mix(v)) * UINT64_C(0x100000001b3);
        h = (h << 29) | (h >> 35);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        memcpy(&v, p, n);
        h = (h ^ mix(v ^ n)) * UINT64_C(0x100000001b3);
    }
    return mix(h);
}

static int index_put(struct tlm_table *t, size_t row, uint64_t h)
{
    const struct row *r = &t->rows[row];
    const char *key = t->arena.data + r->key_off;
    uint64_t tag = h & UINT64_C(0xffffffff00000000);
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        uint64_t s = t->slots[i];
        if (!s) {
            t->slots[i] = tag | (uint64_t)(row + 1);
            return 0;
        }
        if ((s & UINT64_C(0xffffffff00000000)) == tag) {
            const struct row *o = &t->rows[(s & 0xffffffffu) - 1];
            if (o->key_len == r->key_len && memcmp(t->arena.data + o->key_off, key, r->key_len) == 0) {
                t->slots[i] = tag | (uint64_t)(row + 1); /* the last row wins */
                t->duplicates++;
                return 1;
            }
        }
    }
}

const char *tlm_table_find(const struct tlm_table *t, const void *key, size_t n, uint64_t h,
                           size_t *len)
{
    uint64_t tag = h & UINT64_C(0xffffffff00000000);
    if (!t->slots)
        return NULL;
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        uint64_t s = t->slots[i];
        if (!s)
            return NULL;
        if ((s & UINT64_C(0xffffffff00000000)) == tag) {
            const struct row *r = &t->rows[(s & 0xffffffffu) - 1];
            if (r->key_len == n && memcmp(t->arena.data + r->key_off, key, n) == 0) {
                *len = r->frag_len;
                return t->arena.data + r->frag_off;
            }
        }
    }
}

void tlm_table_prefetch(const struct tlm_table *t, uint64_t h, int pass)
{
    const uint64_t *slot;
    if (!t->slots)
        return;
    slot = &t->slots[(size_t)h & t->mask];
    if (pass == 0) {
        __builtin_prefetch(slot);
    } else if (*slot) {
        const struct row *r = &t->rows[(*slot & 0xffffffffu) - 1];
        if (pass == 1) {
            __builtin_prefetch(r);
        } else {
            __builtin_prefetch(t->arena.data + r->key_off);
            __builtin_prefetch(t->arena.data + r->frag_off + r->frag_len - 1);
        }
    }
}

/* Builds the index over the rows (after loading). */
static int build_index(struct tlm_table *t, struct tlm_error *err)
{
    size_t cap = 16;
    /* the load is over: give back what the doubling growth left unused */
    if (t->arena.len + 1 < t->arena.cap) {
        char *a = realloc(t->arena.data, t->arena.len + 1);
        if (a) {
            t->arena.data = a;
            t->arena.cap = t->arena.len + 1;
        }
    }
    if (t->nrows && t->nrows < t->cap_rows) {
        struct row *r = realloc(t->rows, t->nrows * sizeof(*r));
        if (r) {
            t->rows = r;
            t->cap_rows = t->nrows;
        }
    }
    while (cap < t->nrows * 2 + 2)
        cap <<= 1;
    if (t->nrows >= 0xffffffffu)
        return tlm_error_set(err, TLM_ERANGE, "too many rows");
    t->slots = calloc(cap, sizeof(uint64_t));
    if (!t->slots)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    t->mask = cap - 1;
    for (size_t i = 0; i < t->nrows; i++) {
        const struct row *r = &t->rows[i];
        index_put(t, i, tlm_table_hash(t->arena.data + r->key_off, r->key_len));
    }
    return 0;
}

/* Appends a row whose key and fragment are the arena's bytes from key_off on: the key
 * is key_len bytes, the fragment the rest. */
static int add_row(struct tlm_table *t, size_t key_off, size_t key_len)
{
    struct row *r;
    if (t->nrows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 1024;
        struct row *rows = realloc(t->rows, cap * sizeof(*rows));
        if (!rows)
            return TLM_ENOMEM;
        t->rows = rows;
        t->cap_rows = cap;
    }
    if (key_len > 0xffffffffu || t->arena.len - key_off - key_len > 0xffffffffu)
        return TLM_ERANGE;
    r = &t->rows[t->nrows++];
    r->key_off = key_off;
    r->key_len = (uint32_t)key_len;
    r->frag_off = key_off + key_len;
    r->frag_len = (uint32_t)(t->arena.len - key_off - key_len);
    return 0;
}

static int add_name(struct tlm_table *t, const char *name, size_t n)
{
    char *s, **names;
    for (size_t i = 0; i < t->nnames; i++)
        if (strlen(t->names[i]) == n && memcmp(t->names[i], name, n) == 0)
            return 0;
    if (!(names = realloc(t->names, (t->nnames + 1) * sizeof(char *))))
        return TLM_ENOMEM;
    t->names = names;
    if (!(s = malloc(n + 1)))
        return TLM_ENOMEM;
    memcpy(s, name, n);
    s[n] = '\0';
    t->names[t->nnames++] = s;
    return 0;
}

const char *const *tlm_table_columns(const struct tlm_table *t, size_t *n)
{
    *n = t->nnames;
    return (const char *const *)t->names;
}

void tlm_table_stats(const struct tlm_table *t, struct tlm_table_stats *s)
{
    s->rows = (long long)t->nrows - t->duplicates;
    s->duplicates = t->duplicates;
    s->bytes = sizeof(*t) + t->arena.cap + t->cap_rows * sizeof(struct row) +
               (t->slots ? (t->mask + 1) * sizeof(uint64_t) : 0);
    s->content_hash = t->content_hash;
}

void tlm_table_destroy(struct tlm_table *t)
{
    if (!t)
        return;
    tlm_buf_free(&t->arena);
    free(t->rows);
    free(t->slots);
    for (size_t i = 0; i < t->nnames; i++)
        free(t->names[i]);
    free(t->names);
    free(t);
}

int tlm_table_format_parse(const char *s, enum tlm_table_format *f)
{
    static const struct { const char *name; enum tlm_table_format f; } fs[] = {
        { "csv", TLM_TABLE_CSV }, { "tsv", TLM_TABLE_TSV }, { "json", TLM_TABLE_JSON },
        { "ndjson", TLM_TABLE_NDJSON }, { "jsonl", TLM_TABLE_NDJSON },
    };
    for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
        if (strcmp(s, fs[i].name) == 0) {
            *f = fs[i].f;
            return 0;
        }
    return TLM_EINVAL;
}

/* ---- fragments -------------------------------------------------------------------- */

int tlm_frag_begin(struct tlm_buf *b, const struct tlm_frag_opts *o, int *first)
{
    *first = 1;
    if (!o->into)
        return 0;
    if (tlm_json_put_string(b, o->into, strlen(o->into)) || tlm_buf_puts(b, ":{"))
        return TLM_ENOMEM;
    return 0;
}

int tlm_frag_name(struct tlm_buf *b, const struct tlm_frag_opts *o, int *first,
                  const char *name, size_t n)
{
    size_t mark = b->len;
    int rc = 0;
    if (!*first && tlm_buf_putc(b, ','))
        return TLM_ENOMEM;
    if (o->prefix && *o->prefix) {
        /* one string: prefix and name together */
        struct tlm_buf tmp = TLM_BUF_INIT;
        rc = tlm_buf_puts(&tmp, o->prefix) || tlm_buf_append(&tmp, name, n) ? TLM_ENOMEM : 0;
        if (!rc)
            rc = tlm_json_put_string(b, tmp.data, tmp.len);
        tlm_buf_free(&tmp);
    } else {
        rc = tlm_json_put_string(b, name, n);
    }
    if (!rc && tlm_buf_putc(b, ':'))
        rc = TLM_ENOMEM;
    if (rc) {
        b->len = mark;
        return rc;
    }
    *first = 0;
    return 0;
}

int tlm_frag_end(struct tlm_buf *b, const struct tlm_frag_opts *o)
{
    return o->into && tlm_buf_putc(b, '}') ? TLM_ENOMEM : 0;
}

int tlm_frag_from_json(struct tlm_buf *b, const struct tlm_frag_opts *o, const json_t *obj)
{
    const char *k;
    json_t *v;
    int first, rc = tlm_frag_begin(b, o, &first);
    json_object_foreach((json_t *)obj, k, v) {
        if (rc || (rc = tlm_frag_name(b, o, &first, k, strlen(k))) || (rc = tlm_json_write(b, v)))
            return rc;
    }
    return rc ? rc : tlm_frag_end(b, o);
}

/* ---- typing CSV values ------------------------------------------------------------ */

/* Does s[0..n) follow the JSON number grammar? Sets *real when it has a fraction or an
 * exponent. */
static int json_number(const char *s, size_t n, int *real)
{
    size_t i = 0;
    *real = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        *real = 1;
        if (++i >= n || s[i] < '0' || s[i] > '9')
            return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *real = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    return i == n;
}

int tlm_table_csv_value(struct tlm_buf *b, const char *s, size_t n, int quoted, int strings,
                        enum tlm_table_empty empty)
{
    int real;
    if (!s) {
        if (empty == TLM_EMPTY_SKIP)
            return 1;
        return tlm_buf_puts(b, empty == TLM_EMPTY_STRING ? "\"\"" : "null") ? TLM_ENOMEM : 0;
    }
    if (!quoted && !strings) {
        if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0))
            return tlm_buf_append(b, s, n) ? TLM_ENOMEM : 0;
        if (n && n < 400 && json_number(s, n, &real)) {
            char tmp[400], *end;
            int ok;
            memcpy(tmp, s, n);
            tmp[n] = '\0';
            errno = 0;
            if (real) {
                double d = strtod(tmp, &end);
                ok = errno != ERANGE || (d > -1 && d < 1); /* underflow is fine */
            } else {
                (void)strtoll(tmp, &end, 10);
                ok = errno != ERANGE;
            }
            if (ok)
                return tlm_buf_append(b, s, n) ? TLM_ENOMEM : 0;
        }
    }
    return tlm_json_put_string(b, s, n);
}

/* ---- reading a file --------------------------------------------------------------- */

/* A zstd-compressed table: its lines through the reader (which decompresses), each
 * followed by "\n" again. */
static int read_zstd(const char *path, struct tlm_buf *out, struct tlm_error *err)
{
    struct tlm_reader *r = tlm_reader_create(&path, 1);
    const char *line;
    size_t len;
    int rc;
    if (!r)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    tlm_buf_reset(out);
    while ((rc = tlm_reader_next(r, &line, &len, -1, err)) == 1)
        if (tlm_buf_append(out, line, len) || tlm_buf_putc(out, '\n')) {
            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
            break;
        }
    tlm_reader_destroy(r);
    return rc < 0 ? rc : 0;
}

static int read_file(const char *path, struct tlm_buf *out, struct tlm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        return tlm_error_set(err, errno == ENOENT ? TLM_ENOTFOUND : TLM_EIO, "%s", strerror(errno));
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && tlm_buf_reserve(out, (size_t)sb.st_size + 1)) {
        close(fd);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    for (;;) {
        ssize_t r;
        if (tlm_buf_reserve(out, 1 << 16)) {
            close(fd);
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        r = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return tlm_error_set(err, TLM_EIO, "%s", strerror(e));
        }
        if (r == 0)
            break;
        out->len += (size_t)r;
    }
    out->data[out->len] = '\0';
    close(fd);
    if (out->len >= 4 && memcmp(out->data, "\x28\xb5\x2f\xfd", 4) == 0)
        return read_zstd(path, out, err);
    return 0;
}

/* ---- CSV -------------------------------------------------------------------------- */

struct csvload {
    struct tlm_table *t;
    const struct tlm_table_opts *o;
    struct tlm_buf fields;   /* the current record's fields, back to back */
    size_t *off, *len;       /* per field: offset into fields (len SIZE_MAX: NULL field) */
    size_t nf, capf;
    int ended;
    int nomem;
    char delim;
};

static void csv_field(void *s, size_t n, void *data)
{
    struct csvload *L = data;
    if (L->nf == L->capf) {
        size_t cap = L->capf ? L->capf * 2 : 32;
        size_t *a = realloc(L->off, cap * sizeof(size_t)), *b2;
        if (!a) {
            L->nomem = 1;
            return;
        }
        L->off = a;
        if (!(b2 = realloc(L->len, cap * sizeof(size_t)))) {
            L->nomem = 1;
            return;
        }
        L->len = b2;
        L->capf = cap;
    }
    L->off[L->nf] = L->fields.len;
    L->len[L->nf] = s ? n : SIZE_MAX;
    if (s && tlm_buf_append(&L->fields, s, n))
        L->nomem = 1;
    L->nf++;
}

static void csv_row(int c, void *data)
{
    struct csvload *L = data;
    (void)c;
    L->ended = 1;
}

static int lf_only(unsigned char c)
{
    return c == '\n';
}

/* Which fields of the raw record text p[0..n) begin with a quote (after blanks). */
static void quoted_fields(const char *p, size_t n, char delim, unsigned char *q, size_t nq)
{
    size_t i = 0, k = 0;
    memset(q, 0, nq);
    while (k < nq) {
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i < n && p[i] == '"') {
            q[k] = 1;
            for (i++; i < n; i++)
                if (p[i] == '"') {
                    if (i + 1 < n && p[i + 1] == '"')
                        i++;
                    else {
                        i++;
                        break;
                    }
                }
        }
        while (i < n && p[i] != delim)
            i++;
        if (i >= n)
            break;
        i++;
        k++;
    }
}

static int find_col(const char *const *names, const size_t *lens, size_t n, const char *want)
{
    size_t wl = strlen(want);
    for (size_t i = 0; i < n; i++)
        if (lens[i] == wl && memcmp(names[i], want, wl) == 0)
            return (int)i;
    return -1;
}

static int no_column(struct tlm_error *err, const char *want, const char *const *names,
                     const size_t *lens, size_t n)
{
    char list[300];
    size_t at = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && at + 8 < sizeof(list); i++) {
        int w = snprintf(list + at, sizeof(list) - at, "%s%.*s", i ? ", " : "", (int)lens[i],
                         names[i]);
        at += w > 0 ? (size_t)w : 0;
    }
    if (at >= sizeof(list))
        strcpy(list + sizeof(list) - 5, "...");
    return tlm_error_set(err, TLM_ENOTFOUND, "no column '%s' (columns: %s)", want, list);
}

static int load_csv(struct tlm_table *t, const struct tlm_table_opts *o, const struct tlm_buf *file,
                    char delim, struct tlm_error *err)
{
    struct csv_parser p;
    struct csvload L;
    const char *data = file->data, *end = file->data + file->len, *rec = NULL;
    long long lineno = 0, rec_line = 0;
    int have_header = 0, rc = 0;
    size_t ncols = 0;
    const char **cnames = NULL;
    size_t *clens = NULL;
    int *keyidx = NULL, *addidx = NULL;
    size_t nadd = 0;
    unsigned char *q = NULL;
    struct tlm_buf hdr = TLM_BUF_INIT;

    memset(&L, 0, sizeof(L));
    L.t = t;
    L.o = o;
    L.delim = delim;
    if (csv_init(&p, CSV_STRICT | CSV_EMPTY_IS_NULL) != 0)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    csv_set_delim(&p, (unsigned char)delim);
    csv_set_term_func(&p, lf_only);
    if (file->len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        data += 3;
    while (data < end && !rc) {
        const char *nl = memchr(data, '\n', (size_t)(end - data));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - data);
        lineno++;
        if (!rec) {
            rec = data;
            rec_line = lineno;
            L.nf = 0;
            tlm_buf_reset(&L.fields);
        }
        if (n && data[n - 1] == '\r')
            n--;
        L.ended = 0;
        if (csv_parse(&p, data, n, csv_field, csv_row, &L) != n ||
            csv_parse(&p, "\n", 1, csv_field, csv_row, &L) != 1) {
            tlm_error_at(err, NULL, lineno, 0, -1);
            rc = tlm_error_set(err, TLM_EPARSE, "%s", csv_strerror(csv_error(&p)));
            break;
        }
        data = nl ? nl + 1 : end;
        if (L.nomem) {
            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
            break;
        }
        if (!L.ended) {
            if (L.nf == 0 && p.pstate == 0) /* a blank line: libcsv makes no row of it */
                rec = NULL;
            continue;
        }
        /* a whole record: [rec, le) */
        if (!have_header) {
            ncols = L.nf;
            if (tlm_buf_append(&hdr, L.fields.data ? L.fields.data : "", L.fields.len)) {
                rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
                break;
            }
            cnames = calloc(ncols + 1, sizeof(char *));
            clens = calloc(ncols + 1, sizeof(size_t));
            keyidx = calloc(o->nkeys + 1, sizeof(int));
            addidx = calloc(ncols + o->nadd + 1, sizeof(int));
            q = calloc(ncols + 1, 1);
            if (!cnames || !clens || !keyidx || !addidx || !q) {
                rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
                break;
            }
            for (size_t i = 0; i < ncols; i++) {
                cnames[i] = hdr.data + L.off[i];
                clens[i] = L.len[i] == SIZE_MAX ? 0 : L.len[i];
                for (size_t j = 0; j < i; j++)
                    if (clens[j] == clens[i] && memcmp(cnames[j], cnames[i], clens[i]) == 0) {
                        tlm_error_at(err, NULL, rec_line, 0, -1);
                        rc = tlm_error_set(err, TLM_EPARSE, "column '%.*s' appears twice",
                                           (int)clens[i], cnames[i]);
                    }
            }
            for (size_t k = 0; !rc && k < o->nkeys; k++)
                if ((keyidx[k] = find_col(cnames, clens, ncols, o->key_cols[k])) < 0) {
                    tlm_error_at(err, NULL, rec_line, 0, -1);
                    rc = no_column(err, o->key_cols[k], cnames, clens, ncols);
                }
            if (o->add_cols) {
                for (size_t k = 0; !rc && k < o->nadd; k++)
                    if ((addidx[nadd++] = find_col(cnames, clens, ncols, o->add_cols[k])) < 0) {
                        tlm_error_at(err, NULL, rec_line, 0, -1);
                        rc = no_column(err, o->add_cols[k], cnames, clens, ncols);
                    }
            } else {
                for (size_t i = 0; i < ncols; i++) {
                    int key = 0;
                    for (size_t k = 0; k < o->nkeys; k++)
                        key |= keyidx[k] == (int)i;
                    if (!key)
                        addidx[nadd++] = (int)i;
                }
            }
            for (size_t k = 0; !rc && k < nadd; k++)
                if (add_name(t, cnames[addidx[k]], clens[addidx[k]]))
                    rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
            have_header = 1;
            rec = NULL;
            continue;
        }
        if (L.nf > ncols) {
            tlm_error_at(err, NULL, rec_line, 0, -1);
            rc = tlm_error_set(err, TLM_EPARSE, "record has %zu fields, the header %zu", L.nf,
                               ncols);
            break;
        }
        while (L.nf < ncols) /* a short record: the missing fields are empty */
            csv_field(NULL, 0, &L);
        {
            size_t key_off = t->arena.len;
            int first, qdone = 0;
            for (size_t k = 0; k < o->nkeys; k++) {
                size_t f = (size_t)keyidx[k];
                if ((k && tlm_buf_putc(&t->arena, '\0')) ||
                    (L.len[f] != SIZE_MAX &&
                     tlm_buf_append(&t->arena, L.fields.data + L.off[f], L.len[f])))
                    rc = TLM_ENOMEM;
            }
            size_t key_len = t->arena.len - key_off;
            if (!rc)
                rc = tlm_frag_begin(&t->arena, &o->frag, &first);
            for (size_t k = 0; !rc && k < nadd; k++) {
                size_t f = (size_t)addidx[k], mark = t->arena.len;
                const char *s = L.len[f] == SIZE_MAX ? NULL : L.fields.data + L.off[f];
                size_t sn = s ? L.len[f] : 0;
                int quoted = 0, r2, was_first = first;
                if (!o->strings && (!s || (sn && ((s[0] >= '0' && s[0] <= '9') || s[0] == '-' ||
                                                  s[0] == 't' || s[0] == 'f')))) {
                    if (!qdone) {
                        quoted_fields(rec, (size_t)(le - rec), delim, q, ncols);
                        qdone = 1;
                    }
                    quoted = q[f];
                    if (!s && quoted) { /* "" : an empty quoted string */
                        s = "";
                        sn = 0;
                    }
                }
                if ((rc = tlm_frag_name(&t->arena, &o->frag, &first, cnames[f], clens[f])))
                    break;
                r2 = tlm_table_csv_value(&t->arena, s, sn, quoted, o->strings, o->empty);
                if (r2 == 1) { /* skipped: take the name back */
                    t->arena.len = mark;
                    t->arena.data[mark] = '\0';
                    first = was_first;
                } else if (r2 < 0) {
                    rc = r2;
                    if (rc == TLM_EINVAL) {
                        tlm_error_at(err, NULL, rec_line, 0, -1);
                        tlm_error_set(err, rc, "column '%.*s': not valid UTF-8", (int)clens[f],
                                      cnames[f]);
                    }
                }
            }
            if (!rc)
                rc = tlm_frag_end(&t->arena, &o->frag);
            if (!rc)
                rc = add_row(t, key_off, key_len);
            if (rc && rc != TLM_EINVAL) {
                tlm_error_at(err, NULL, rec_line, 0, -1);
                rc = tlm_error_set(err, rc, rc == TLM_ERANGE ? "row too long" : "out of memory");
            }
        }
        rec = NULL;
    }
    if (!rc && rec) {
        tlm_error_at(err, NULL, rec_line, 0, -1);
        rc = tlm_error_set(err, TLM_EPARSE, "unterminated quoted field at the end of the file");
    }
    if (!rc && !have_header)
        rc = tlm_error_set(err, TLM_EPARSE, "no header row (an empty file)");
    csv_free(&p);
    tlm_buf_free(&L.fields);
    tlm_buf_free(&hdr);
    free(L.off);
    free(L.len);
    free(cnames);
    free(clens);
    free(keyidx);
    free(addidx);
    free(q);
    return rc;
}

/* ---- JSON and NDJSON -------------------------------------------------------------- */

/* The key text of a JSON value (appended to b). Returns 0 or TLM_ETYPE. */
static int json_key(struct tlm_buf *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return tlm_buf_append(b, json_string_value(v), json_string_length(v)) ? TLM_ENOMEM : 0;
    case JSON_INTEGER:
    case JSON_REAL:
    case JSON_TRUE:
    case JSON_FALSE:
        return tlm_json_write(b, v) ? TLM_ENOMEM : 0;
    default:
        return TLM_ETYPE;
    }
}

static int json_row(struct tlm_table *t, const struct tlm_table_opts *o, json_t *obj,
                    long long where, struct tlm_error *err)
{
    size_t key_off = t->arena.len, key_len;
    int first, rc = 0;
    const char *k;
    json_t *v;
    if (!json_is_object(obj)) {
        tlm_error_at(err, NULL, where, 0, -1);
        return tlm_error_set(err, TLM_EPARSE, "not a JSON object");
    }
    for (size_t i = 0; i < o->nkeys; i++) {
        json_t *kv = json_object_get(obj, o->key_cols[i]);
        if (i && tlm_buf_putc(&t->arena, '\0'))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (!kv || (rc = json_key(&t->arena, kv))) {
            tlm_error_at(err, NULL, where, 0, -1);
            return tlm_error_set(err, TLM_EPARSE,
                                 kv ? "key '%s' is not a string, number or boolean"
                                    : "no key '%s'",
                                 o->key_cols[i]);
        }
    }
    key_len = t->arena.len - key_off;
    rc = tlm_frag_begin(&t->arena, &o->frag, &first);
    if (o->add_cols) {
        for (size_t i = 0; !rc && i < o->nadd; i++) {
            if (!(v = json_object_get(obj, o->add_cols[i])))
                continue;
            if (!(rc = tlm_frag_name(&t->arena, &o->frag, &first, o->add_cols[i],
                                     strlen(o->add_cols[i]))))
                rc = tlm_json_write(&t->arena, v);
        }
    } else {
        json_object_foreach(obj, k, v) {
            int key = 0;
            for (size_t i = 0; i < o->nkeys; i++)
                key |= strcmp(k, o->key_cols[i]) == 0;
            if (key || rc)
                continue;
            if ((rc = add_name(t, k, strlen(k))))
                break;
            if (!(rc = tlm_frag_name(&t->arena, &o->frag, &first, k, strlen(k))))
                rc = tlm_json_write(&t->arena, v);
        }
    }
    if (!rc)
        rc = tlm_frag_end(&t->arena, &o->frag);
    if (!rc)
        rc = add_row(t, key_off, key_len);
    if (rc)
        return tlm_error_set(err, rc, "out of memory");
    return 0;
}

static int load_json(struct tlm_table *t, const struct tlm_table_opts *o, const struct tlm_buf *file,
                     int nd, struct tlm_error *err)
{
    json_error_t je;
    int rc = 0;
    if (o->add_cols) {
        for (size_t i = 0; i < o->nadd; i++)
            if (add_name(t, o->add_cols[i], strlen(o->add_cols[i])))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    if (!nd) {
        json_t *arr = json_loadb(file->data, file->len, 0, &je), *v;
        size_t i;
        if (!arr) {
            tlm_error_at(err, NULL, je.line, je.column, -1);
            return tlm_error_set(err, TLM_EPARSE, "%s", je.text);
        }
        if (!json_is_array(arr)) {
            json_decref(arr);
            return tlm_error_set(err, TLM_EPARSE, "not a JSON array of objects");
        }
        json_array_foreach(arr, i, v) {
            if ((rc = json_row(t, o, v, (long long)i + 1, err)))
                break;
        }
        json_decref(arr);
        return rc;
    }
    const char *p = file->data, *end = file->data + file->len;
    long long lineno = 0;
    while (p < end && !rc) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        lineno++;
        if (n && strspn(p, " \t\r") < n) {
            json_t *obj = json_loadb(p, n, 0, &je);
            if (!obj) {
                tlm_error_at(err, NULL, lineno, je.column, -1);
                rc = tlm_error_set(err, TLM_EPARSE, "%s", je.text);
                break;
            }
            rc = json_row(t, o, obj, lineno, err);
            json_decref(obj);
        }
        p = nl ? nl + 1 : end;
    }
    return rc;
}

/* ---- loading ---------------------------------------------------------------------- */

static enum tlm_table_format by_name(const char *path, const struct tlm_buf *file)
{
    char name[1024];
    const char *dot;
    /* devices.csv.zst is named by its .csv */
    snprintf(name, sizeof(name), "%s", path);
    dot = strrchr(name, '.');
    if (dot && (strcmp(dot, ".zst") == 0 || strcmp(dot, ".zstd") == 0))
        name[dot - name] = '\0';
    dot = strrchr(name, '.');
    if (dot && (strcmp(dot, ".tsv") == 0 || strcmp(dot, ".tab") == 0))
        return TLM_TABLE_TSV;
    if (dot && (strcmp(dot, ".ndjson") == 0 || strcmp(dot, ".jsonl") == 0))
        return TLM_TABLE_NDJSON;
    if (dot && strcmp(dot, ".json") == 0) {
        /* a .json file of objects one a line is NDJSON */
        size_t i = 0;
        while (i < file->len && strchr(" \t\r\n", file->data[i]))
            i++;
        return i < file->len && file->data[i] == '{' ? TLM_TABLE_NDJSON : TLM_TABLE_JSON;
    }
    return TLM_TABLE_CSV;
}

struct tlm_table *tlm_table_load(const char *path, const struct tlm_table_opts *o,
                                 struct tlm_error *err)
{
    struct tlm_buf file = TLM_BUF_INIT;
    struct tlm_table *t;
    enum tlm_table_format f;
    int rc;
    if (!(t = calloc(1, sizeof(*t)))) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    rc = read_file(path, &file, err);
    if (!rc) {
        t->content_hash = tlm_table_hash(file.data ? file.data : "", file.len);
        f = o->format ? o->format : by_name(path, &file);
        if (f == TLM_TABLE_CSV || f == TLM_TABLE_TSV)
            rc = load_csv(t, o, &file, f == TLM_TABLE_TSV ? '\t' : ',', err);
        else
            rc = load_json(t, o, &file, f == TLM_TABLE_NDJSON, err);
    }
    tlm_buf_free(&file);
    if (!rc)
        rc = build_index(t, err);
    if (rc) {
        if (err) {
            snprintf(err->source, sizeof(err->source), "%s", path);
            err->code = rc;
        }
        tlm_table_destroy(t);
        return NULL;
    }
    return t;
}
