/*
 * fmt_int.h - private to src/lib/fmt*.c: the parser object and the helpers the formats share.
 *
 * fmt.c owns creation, dispatch and the helpers (number typing, time, error reporting, the
 * duplicate-name set); each fmt_<format>.c provides one struct fmt_ops. Nothing here is part
 * of libtelem's interface: callers use fmt.h only.
 */
#ifndef TLM_FMT_INT_H
#define TLM_FMT_INT_H

#include <stdarg.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"
#include "fmt.h"
#include "time.h"

struct tlm_fmt;

/* What a format provides. line/end return events appended (>= 0), TLM_EPARSE (a bad record,
 * already reported through fmt_bad) or TLM_ENOMEM; fmt.c rolls out back on failure. */
struct fmt_ops {
    int (*init)(struct tlm_fmt *f, const struct tlm_fmt_opts *o, struct tlm_error *err);
    int (*line)(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                struct tlm_error *err);
    int (*end)(struct tlm_fmt *f, struct tlm_buf *out, struct tlm_error *err); /* may be NULL */
    void (*destroy)(struct tlm_fmt *f);                                        /* may be NULL */
    int (*save)(struct tlm_fmt *f, struct tlm_buf *out);                       /* may be NULL */
    int (*restore)(struct tlm_fmt *f, const char *const *names, size_t n,
                   struct tlm_error *err);                                     /* may be NULL */
};

/* Shared by the line parsers (influx, graphite, prom), inside a function that has the
 * locals line, mark (out->len on entry), out, f and err:
 * FMT_COL(ptr): 1-based column of ptr in line; FMT_BAD(ptr, fmt, ...): roll out back to
 * mark and report a bad record at ptr; FMT_TRY(x): return TLM_ENOMEM when x fails. */
#define FMT_COL(ptr) ((long)((ptr) - line) + 1)
#define FMT_BAD(ptr, ...)                                  \
    do {                                                   \
        out->len = mark;                                   \
        if (out->data)                                     \
            out->data[mark] = '\0';                        \
        return fmt_bad(f, err, FMT_COL(ptr), __VA_ARGS__); \
    } while (0)
#define FMT_TRY(x)                                         \
    do {                                                   \
        if (x)                                             \
            return TLM_ENOMEM;                             \
    } while (0)

/* A set of names seen in one record, for "duplicate field" checks. Names are copied; the
 * memory is kept between records (no allocation once warm). */
struct fmt_names {
    struct tlm_buf bytes;  /* the names, back to back */
    size_t *off;           /* start of name i in bytes */
    size_t *len;           /* length of name i */
    size_t n, cap;         /* names held, slots allocated */
};

struct tlm_fmt {
    enum tlm_fmt_kind kind;
    const struct fmt_ops *ops;
    char *time_field;                /* owned copy; never NULL */
    size_t time_field_len;
    struct tlm_buf time_key;         /* ,"<time_field>": as JSON (with the leading comma) */
    enum tlm_time_unit unit_in;      /* as given (AUTO kept: each format decides) */
    enum tlm_time_unit unit_out;     /* never AUTO */
    void (*on_bad)(void *arg, long column, const char *reason);
    void *on_bad_arg;
    long record_lines;               /* see tlm_fmt_record_lines */
    struct tlm_buf tmp;              /* scratch for unescaped text */
    struct fmt_names names;          /* names of the record being written */
    void *state;                     /* the format's own state (owned, freed by destroy) */
};

extern const struct fmt_ops fmt_csv_ops;
extern const struct fmt_ops fmt_tokens_ops;
extern const struct fmt_ops fmt_influx_ops;
extern const struct fmt_ops fmt_graphite_ops;
extern const struct fmt_ops fmt_prom_ops;

/* Reports a bad record at the 1-based column of the current line with a printf-style
 * reason: through f->on_bad if set (then returns 0: skip the record and go on), else into
 * err (code, column, text; returns TLM_EPARSE: stop). */
int fmt_bad(struct tlm_fmt *f, struct tlm_error *err, long column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes s[0..n) for an error message into buf (size >= 64): at most 40 bytes (then
 * "..."), control bytes and invalid UTF-8 shown as '?'. Returns buf. */
const char *fmt_show(char *buf, size_t size, const char *s, size_t n);

#define FMT_SHOW_SIZE 64

/* Is s[0..n) a JSON number that telem's JSON reader accepts? Returns 1 for an integer (no
 * '.', 'e', 'E'; fits 64-bit signed), 2 for a real (finite as a double), 0 otherwise. */
int fmt_json_number(const char *s, size_t n);

/* Appends s[0..n) typed: as a number with its original text if fmt_json_number says so,
 * else as a JSON string. Returns 0, TLM_EINVAL (invalid UTF-8; b unchanged), TLM_ENOMEM. */
int fmt_put_value(struct tlm_buf *b, const char *s, size_t n);

/* Reads a float as Go's ParseFloat would for decimal text: [+-] digits [. digits] [e[+-]
 * digits] (".5" and "1." allowed). Stores it in *d. Returns 0, -1 if not a number, or
 * -2 if it overflows a double. Non-finite words (NaN, Inf) are not accepted here. */
int fmt_parse_float(const char *s, size_t n, double *d);

/* Appends a float value: the original text if it is a JSON number, else the shortest form
 * of fmt_parse_float's double. Returns 0, TLM_EPARSE (not a finite number), TLM_ENOMEM. */
int fmt_put_float(struct tlm_buf *b, const char *s, size_t n);

/* Reads a decimal integer [-]digits (allow_plus: a leading '+' too) into *v. Returns 0,
 * -1 if not an integer, -2 if out of range for long long. */
int fmt_parse_int(const char *s, size_t n, int allow_plus, long long *v);

/* Reads a time from text: a JSON-style number in unit (AUTO: by magnitude) or an RFC 3339
 * string (if rfc3339 is set). Returns 0 and sets *t, -1 if the text is neither, or
 * TLM_ERANGE with terr filled. */
int fmt_read_time(const char *s, size_t n, enum tlm_time_unit unit, int rfc3339,
                  tlm_time_t *t, struct tlm_error *terr);

/* Reads an integer timestamp (influx, prom) in f's input unit, or in dflt when that is
 * AUTO. Returns 0 and sets *t, or -1 with the reason in why (quoting the text). */
int fmt_int_time(const struct tlm_fmt *f, const char *s, size_t n, enum tlm_time_unit dflt,
                 tlm_time_t *t, char *why, size_t wn);

/* Appends ,"<time_field>":<t in unit_out>. Returns 0 or TLM_ENOMEM. */
int fmt_put_time(struct tlm_fmt *f, struct tlm_buf *b, tlm_time_t t);

/* Appends ,"<key>": for a key given as C text already known to be valid UTF-8 (comma only if
 * comma is set). Returns 0 or TLM_ENOMEM. */
int fmt_put_key(struct tlm_buf *b, int comma, const char *key, size_t n);

/* Duplicate-name set. */
void fmt_names_clear(struct fmt_names *s);
/* Adds a name. Returns 0, 1 if it was already there (not added again), or TLM_ENOMEM. */
int fmt_names_add(struct fmt_names *s, const char *name, size_t n);
void fmt_names_free(struct fmt_names *s);

static inline int fmt_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

#endif
