/*
 * test_fmt.c - the input formats of `telem ingest` (lib/fmt*.c), driven by tables.
 *
 * Runs every case of $top_srcdir/tests/fmt/NAME.test and a few checks written in C, and prints
 * TAP ("ok N - file:line", "not ok N - ..." with the difference as '#' comments, and the
 * plan "1..N" last).
 *
 * A case (jq's and curl's table ideas):
 *
 *     # comment
 *     format: csv                 option lines: format, fields, delimiter, time-field,
 *     fields: a,b                 time-unit-in, time-unit-out, escapes (yes: input lines are
 *     input:                      C-escaped: \t \r \f \v \\ \xHH), name (a label)
 *     a,1                         raw input lines, blank ones included, up to "output:"
 *     output:
 *     {"a":"a","b":1}             expected events and "error: LINE:COLUMN: reason" lines in
 *     error: 2:3: ...             the order they occur; "create-error: text" when
 *                                 tlm_fmt_create must fail; the case ends at a blank line
 *
 * Every case runs twice. With an on_bad callback, the events and the errors (LINE is the
 * input line minus tlm_fmt_record_lines) must equal the expected lines exactly, and each
 * event must be valid JSON as tlm_json_validate (jansson's rules) reads it. Without a
 * callback, each line must give what the first run gave for it, except that a line with a
 * bad record gives only its first error and no event at all (fmt.h's all-or-nothing rule).
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "fmt.h"
#include "jscan.h"
#include "time.h"

/* ---- small utilities -------------------------------------------------------------- */

struct strv {
    char **v;
    size_t n, cap;
};

static void strv_push(struct strv *s, const char *p, size_t n)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (!s->v)
            abort();
    }
    s->v[s->n] = malloc(n + 1);
    if (!s->v[s->n])
        abort();
    memcpy(s->v[s->n], p, n);
    s->v[s->n][n] = '\0';
    s->n++;
}

static void strv_pushf(struct strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void strv_pushf(struct strv *s, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    strv_push(s, buf, strlen(buf));
}

static void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static char *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, len = 0, r;
    if (!fp)
        return NULL;
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap + 1);
            if (!buf)
                abort();
        }
        r = fread(buf + len, 1, cap - len, fp);
        len += r;
    } while (r > 0);
    fclose(fp);
    buf[len] = '\0';
    *n = len;
    return buf;
}

/* Decodes \t \r \n \f \v \\ \xHH in s (in place); returns the new length. */
static size_t unescape(char *s, size_t n)
{
    size_t i = 0, o = 0;
    while (i < n) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[i + 1];
            i += 2;
            switch (c) {
            case 't': s[o++] = '\t'; break;
            case 'r': s[o++] = '\r'; break;
            case 'n': s[o++] = '\n'; break;
            case 'f': s[o++] = '\f'; break;
            case 'v': s[o++] = '\v'; break;
            case '\\': s[o++] = '\\'; break;
            case 'x':
                if (i + 2 <= n) {
                    char hex[3] = { s[i], s[i + 1], 0 };
                    s[o++] = (char)strtol(hex, NULL, 16);
                    i += 2;
                }
                break;
            default:
                s[o++] = '\\';
                s[o++] = c;
            }
        } else {
            s[o++] = s[i++];
        }
    }
    return o;
}

/* ---- cases ------------------------------------------------------------------------ */

struct tcase {
    const char *file; /* base name */
    int line;         /* where the case starts */
    struct strv opt_k, opt_v;
    struct strv input, expect;
};

struct tcases {
    struct tcase *v;
    size_t n, cap;
};

static const char *opt(const struct tcase *c, const char *key)
{
    for (size_t i = 0; i < c->opt_k.n; i++)
        if (strcmp(c->opt_k.v[i], key) == 0)
            return c->opt_v.v[i];
    return NULL;
}

static void load_cases(const char *path, const char *base, struct tcases *out)
{
    size_t n, i = 0;
    char *text = read_file(path, &n);
    int lineno = 0;
    enum { IDLE, HEAD, INPUT, OUTPUT } st = IDLE;
    struct tcase *c = NULL;
    if (!text) {
        printf("Bail out! cannot read %s\n", path);
        exit(1);
    }
    while (i <= n) {
        char *l = text + i, *nl = memchr(l, '\n', n - i);
        size_t len = nl ? (size_t)(nl - l) : n - i;
        i += len + 1;
        lineno++;
        if (!nl && len == 0)
            break;
        switch (st) {
        case IDLE:
            if (len == 0 || l[0] == '#')
                break;
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 64;
                out->v = realloc(out->v, out->cap * sizeof(*out->v));
                if (!out->v)
                    abort();
            }
            c = &out->v[out->n++];
            memset(c, 0, sizeof(*c));
            c->file = base;
            c->line = lineno;
            st = HEAD;
            /* fall through */
        case HEAD:
            if (len == 6 && memcmp(l, "input:", 6) == 0) {
                st = INPUT;
            } else if (len && l[0] != '#') {
                char *colon = memchr(l, ':', len);
                if (!colon) {
                    printf("Bail out! %s:%d: expected 'key: value' or 'input:'\n", base, lineno);
                    exit(1);
                }
                strv_push(&c->opt_k, l, (size_t)(colon - l));
                colon++;
                while (colon < l + len && *colon == ' ')
                    colon++;
                strv_push(&c->opt_v, colon, (size_t)(l + len - colon));
            }
            break;
        case INPUT:
            if (len == 7 && memcmp(l, "output:", 7) == 0)
                st = OUTPUT;
            else
                strv_push(&c->input, l, len);
            break;
        case OUTPUT:
            if (len == 0)
                st = IDLE;
            else
                strv_push(&c->expect, l, len);
            break;
        }
    }
    if (st == HEAD || st == INPUT) {
        printf("Bail out! %s: case at line %d has no output: section\n", base, c->line);
        exit(1);
    }
    free(text);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- running a case --------------------------------------------------------------- */

struct run {
    struct tlm_fmt *f;
    struct tlm_buf *out;
    size_t flushed;       /* bytes of out already turned into results */
    long lineno;          /* the line being fed (1-based) */
    struct strv res;      /* results: events and "error: ..." lines */
    struct strv res_line; /* per result, the input line that produced it, as text */
    struct strv notes;    /* problems found by the checks */
};

static void flush_events(struct run *r)
{
    while (r->flushed < r->out->len) {
        char *s = r->out->data + r->flushed;
        char *nl = memchr(s, '\n', r->out->len - r->flushed);
        size_t len;
        struct tlm_error e;
        if (!nl) {
            strv_pushf(&r->notes, "line %ld: output does not end in a newline", r->lineno);
            len = r->out->len - r->flushed;
        } else {
            len = (size_t)(nl - s);
        }
        tlm_error_clear(&e);
        if (tlm_json_validate(s, len, &e) != 0)
            strv_pushf(&r->notes, "line %ld: event is not valid JSON (%s): %.*s", r->lineno,
                       e.text, (int)len, s);
        strv_push(&r->res, s, len);
        strv_pushf(&r->res_line, "%ld", r->lineno);
        r->flushed += len + 1;
    }
}

static void on_bad(void *arg, long column, const char *reason)
{
    struct run *r = arg;
    flush_events(r);
    strv_pushf(&r->res, "error: %ld:%ld: %s", r->lineno - tlm_fmt_record_lines(r->f), column,
               reason);
    strv_pushf(&r->res_line, "%ld", r->lineno);
}

static int build_opts(const struct tcase *c, struct tlm_fmt_opts *o, struct strv *fields,
                      char **why)
{
    const char *v;
    memset(o, 0, sizeof(*o));
    if (!(v = opt(c, "format")) || tlm_fmt_parse_kind(v, &o->kind) != 0) {
        *why = "missing or unknown format:";
        return -1;
    }
    if ((v = opt(c, "delimiter")))
        o->delimiter = strcmp(v, "\\t") == 0 ? '\t' : v[0];
    if ((v = opt(c, "fields"))) {
        const char *p = v;
        for (;;) {
            const char *q = strchr(p, ',');
            size_t n = q ? (size_t)(q - p) : strlen(p);
            strv_push(fields, p, n);
            if (!q)
                break;
            p = q + 1;
        }
        o->fields = (const char *const *)fields->v;
        o->nfields = fields->n;
    }
    o->time_field = opt(c, "time-field");
    if ((v = opt(c, "time-unit-in")) && tlm_time_unit_parse(v, &o->time_unit_in, NULL)) {
        *why = "bad time-unit-in:";
        return -1;
    }
    if ((v = opt(c, "time-unit-out")) && tlm_time_unit_parse(v, &o->time_unit_out, NULL)) {
        *why = "bad time-unit-out:";
        return -1;
    }
    return 0;
}

/* Feeds the case through one parser; callback mode when cb is set. */
static void feed(const struct tcase *c, const struct tlm_fmt_opts *o0, int cb, struct run *r)
{
    struct tlm_fmt_opts o = *o0;
    struct tlm_buf out = TLM_BUF_INIT, line = TLM_BUF_INIT;
    struct tlm_error err;
    const char *esc = opt(c, "escapes");
    int escapes = esc && strcmp(esc, "yes") == 0;
    memset(r, 0, sizeof(*r));
    r->out = &out;
    if (cb) {
        o.on_bad = on_bad;
        o.on_bad_arg = r;
    }
    tlm_error_clear(&err);
    r->f = tlm_fmt_create(&o, &err);
    if (!r->f) {
        strv_pushf(&r->res, "create-error: %s", err.text);
        strv_push(&r->res_line, "0", 1);
        return;
    }
    for (size_t i = 0; i <= c->input.n; i++) {
        size_t before = out.len, len;
        int n, events = 0;
        r->lineno = (long)i + 1;
        tlm_error_clear(&err);
        if (i < c->input.n) {
            tlm_buf_reset(&line);
            tlm_buf_append(&line, c->input.v[i], strlen(c->input.v[i]));
            len = escapes ? unescape(line.data, line.len) : line.len;
            if (len && line.data[len - 1] == '\r') /* as the caller does */
                len--;
            /* feed a private copy, so that reading past len is caught by ASan */
            char *copy = malloc(len ? len : 1);
            if (!copy)
                abort();
            memcpy(copy, line.data, len);
            n = tlm_fmt_line(r->f, copy, len, &out, &err);
            free(copy);
        } else {
            r->lineno = (long)c->input.n;
            n = tlm_fmt_end(r->f, &out, &err);
        }
        for (size_t k = before; k < out.len; k++)
            events += out.data[k] == '\n';
        if (n == TLM_EPARSE && !cb) {
            if (out.len != before)
                strv_pushf(&r->notes, "line %ld: TLM_EPARSE but output was appended",
                           r->lineno);
            strv_pushf(&r->res, "error: %ld:%ld: %s", r->lineno - tlm_fmt_record_lines(r->f),
                       err.column, err.text);
            strv_pushf(&r->res_line, "%ld", r->lineno);
            continue;
        }
        if (n < 0) {
            strv_pushf(&r->notes, "line %ld: returned %d (%s)", r->lineno, n, err.text);
            continue;
        }
        if (n != events)
            strv_pushf(&r->notes, "line %ld: returned %d but appended %d events", r->lineno, n,
                       events);
        flush_events(r);
    }
    tlm_fmt_destroy(r->f);
    tlm_buf_free(&out);
    tlm_buf_free(&line);
}

static void run_free(struct run *r)
{
    strv_free(&r->res);
    strv_free(&r->res_line);
    strv_free(&r->notes);
}

static int testno;

static void diff_lines(const char *title, const struct strv *want, const struct strv *got)
{
    printf("# %s\n", title);
    for (size_t i = 0; i < want->n || i < got->n; i++) {
        const char *w = i < want->n ? want->v[i] : NULL, *g = i < got->n ? got->v[i] : NULL;
        if (w && g && strcmp(w, g) == 0) {
            printf("#   %s\n", w);
        } else {
            if (w)
                printf("# - %s\n", w);
            if (g)
                printf("# + %s\n", g);
        }
    }
}

static int same(const struct strv *a, const struct strv *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return 0;
    return 1;
}

static int run_case(const struct tcase *c)
{
    struct tlm_fmt_opts o;
    struct strv fields = { 0 }, derived = { 0 };
    struct run a, b;
    char *why = NULL;
    int ok = 1;
    const char *name = opt(c, "name");
    testno++;
    if (build_opts(c, &o, &fields, &why)) {
        printf("not ok %d - %s:%d\n# %s\n", testno, c->file, c->line, why);
        strv_free(&fields);
        return 0;
    }
    feed(c, &o, 1, &a);
    feed(c, &o, 0, &b);
    /* what the plain run must give: per line, the first error alone, or the events */
    for (size_t i = 0; i < a.res.n;) {
        size_t j = i, err = (size_t)-1;
        while (j < a.res.n && strcmp(a.res_line.v[j], a.res_line.v[i]) == 0) {
            if (err == (size_t)-1 && (strncmp(a.res.v[j], "error: ", 7) == 0 ||
                                      strncmp(a.res.v[j], "create-error: ", 14) == 0))
                err = j;
            j++;
        }
        if (err != (size_t)-1)
            strv_push(&derived, a.res.v[err], strlen(a.res.v[err]));
        else
            for (size_t k = i; k < j; k++)
                strv_push(&derived, a.res.v[k], strlen(a.res.v[k]));
        i = j;
    }
    if (!same(&c->expect, &a.res) || a.notes.n)
        ok = 0;
    if (!same(&derived, &b.res) || b.notes.n)
        ok = 0;
    printf("%s %d - %s:%d%s%s\n", ok ? "ok" : "not ok", testno, c->file, c->line,
           name ? " " : "", name ? name : "");
    if (!same(&c->expect, &a.res))
        diff_lines("with on_bad: - expected, + got", &c->expect, &a.res);
    for (size_t i = 0; i < a.notes.n; i++)
        printf("# with on_bad: %s\n", a.notes.v[i]);
    if (!same(&derived, &b.res))
        diff_lines("without on_bad: - expected, + got", &derived, &b.res);
    for (size_t i = 0; i < b.notes.n; i++)
        printf("# without on_bad: %s\n", b.notes.v[i]);
    run_free(&a);
    run_free(&b);
    strv_free(&derived);
    strv_free(&fields);
    return ok;
}

/* ---- checks written in C ---------------------------------------------------------- */

static int check(int cond, const char *what)
{
    testno++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", testno, what);
    return cond;
}

/* Returns the number of failed checks. */
static int c_checks(void)
{
    int fails = 0;
#define CHECK(cond, what) (fails += !check((cond), (what)))
    struct tlm_fmt_opts o;
    struct tlm_error err;
    enum tlm_fmt_kind k = 0;
    struct tlm_fmt *f;
    struct tlm_buf out = TLM_BUF_INIT;
    int n;

    CHECK(tlm_fmt_parse_kind("influx", &k) == 0 && k == TLM_FMT_INFLUX, "parse_kind influx");
    CHECK(tlm_fmt_parse_kind("ndjson", &k) == TLM_EINVAL && k == TLM_FMT_INFLUX,
          "parse_kind rejects ndjson, kind untouched");
    CHECK(strcmp(tlm_fmt_kind_name(TLM_FMT_PROM), "prom") == 0, "kind_name prom");
    memset(&o, 0, sizeof(o));
    o.kind = (enum tlm_fmt_kind)42;
    tlm_error_clear(&err);
    f = tlm_fmt_create(&o, &err);
    CHECK(!f && err.code == TLM_EINVAL, "create rejects an unknown kind");

    /* a record spanning lines: record_lines while pending, then the event */
    memset(&o, 0, sizeof(o));
    o.kind = TLM_FMT_CSV;
    f = tlm_fmt_create(&o, &err);
    n = tlm_fmt_line(f, "a,b", 3, &out, &err);
    CHECK(n == 0 && out.len == 0, "csv header gives no event");
    n = tlm_fmt_line(f, "1,\"x", 4, &out, &err);
    CHECK(n == 0 && tlm_fmt_record_lines(f) == 0, "csv open quote: pending, started here");
    n = tlm_fmt_line(f, "", 0, &out, &err);
    CHECK(n == 0 && tlm_fmt_record_lines(f) == 1, "csv blank line inside quotes: 1 line back");
    n = tlm_fmt_line(f, "y\"", 2, &out, &err);
    CHECK(n == 1 && out.len && strcmp(out.data, "{\"a\":1,\"b\":\"x\\n\\ny\"}\n") == 0,
          "csv record over three lines");
    tlm_buf_reset(&out);
    /* end resets: a new header is expected */
    n = tlm_fmt_end(f, &out, &err);
    CHECK(n == 0, "csv end with nothing pending");
    tlm_fmt_line(f, "c", 1, &out, &err);
    n = tlm_fmt_line(f, "5", 1, &out, &err);
    CHECK(n == 1 && strcmp(out.data, "{\"c\":5}\n") == 0, "csv after end reads a new header");
    tlm_fmt_destroy(f);
    tlm_buf_reset(&out);

    /* the error does not disturb what was already in out */
    memset(&o, 0, sizeof(o));
    o.kind = TLM_FMT_TOKENS;
    f = tlm_fmt_create(&o, &err);
    tlm_buf_puts(&out, "keep\n");
    n = tlm_fmt_line(f, "a-b-1 bad c-d-2", 15, &out, &err);
    CHECK(n == TLM_EPARSE && strcmp(out.data, "keep\n") == 0 && err.column == 7,
          "tokens without on_bad: line dropped, earlier output kept, column of the bad token");
    tlm_fmt_destroy(f);
    tlm_buf_free(&out);
    tlm_fmt_destroy(NULL);
    CHECK(1, "destroy(NULL)");
    return fails;
#undef CHECK
}

/* ---- main ------------------------------------------------------------------------- */

int main(void)
{
    const char *top = getenv("top_srcdir");
    char dir[4096];
    DIR *d;
    struct dirent *de;
    struct strv names = { 0 };
    struct tcases cases = { 0 };
    int fails = 0;
    snprintf(dir, sizeof(dir), "%s/tests/fmt", top && *top ? top : ".");
    d = opendir(dir);
    if (!d) {
        printf("Bail out! cannot open %s (set top_srcdir)\n", dir);
        return 1;
    }
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 5 && strcmp(de->d_name + n - 5, ".test") == 0)
            strv_push(&names, de->d_name, n);
    }
    closedir(d);
    if (names.n)
        qsort(names.v, names.n, sizeof(*names.v), cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, names.v[i]);
        load_cases(path, names.v[i], &cases);
    }
    for (size_t i = 0; i < cases.n; i++)
        fails += !run_case(&cases.v[i]);
    fails += c_checks();
    printf("1..%d\n", testno); /* a trailing plan, as TAP allows */
    for (size_t i = 0; i < cases.n; i++) {
        strv_free(&cases.v[i].opt_k);
        strv_free(&cases.v[i].opt_v);
        strv_free(&cases.v[i].input);
        strv_free(&cases.v[i].expect);
    }
    free(cases.v);
    strv_free(&names);
    return fails > 0;
}
