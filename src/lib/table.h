/*
 * table.h - reference tables for `telem enrich`: a CSV, JSON-array or NDJSON file loaded
 * into a hash index from key to a pre-serialized JSON fragment.
 *
 * A table is read whole at load time (zstd-compressed files too, by their magic bytes;
 * "x.csv.zst" is named by its ".csv"). Each row gives a key (the text of one or more key
 * columns) and a fragment: the members that enrich splices into a matching event before
 * its closing brace, already written as JSON text ("make":"Acme","model":"X1"), named
 * with the prefix and nested under the --into name when asked. Looking a row up costs a
 * hash of the key bytes and one probe sequence; nothing is built per event.
 *
 * Keys compare as text: a string by its (unescaped) contents, a number by its JSON text
 * as written, true/false by their names. So the event value 17 and the string "17" find
 * the CSV row whose key field reads 17; 17.0 does not. A key of several columns joins
 * the parts with a NUL byte (which neither a JSON string nor a key may hold).
 *
 * CSV values are typed (see tlm_table_csv_value): unquoted integers, numbers and
 * true/false become JSON numbers and booleans with their original text, an empty
 * unquoted field is null (or left out, or "", by option), everything else, and every
 * quoted field, is a string. Duplicate keys: the last row wins (counted).
 */
#ifndef TLM_TABLE_H
#define TLM_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "error.h"

enum tlm_table_format {
    TLM_TABLE_AUTO = 0, /* by the file name's extension */
    TLM_TABLE_CSV,
    TLM_TABLE_TSV,
    TLM_TABLE_JSON,   /* one JSON array of objects */
    TLM_TABLE_NDJSON  /* one object per line */
};

enum tlm_table_empty {
    TLM_EMPTY_NULL = 0, /* an empty unquoted CSV field is null */
    TLM_EMPTY_SKIP,     /* ... is left out of the fragment */
    TLM_EMPTY_STRING    /* ... is "" */
};

/* How a fragment is named. Borrowed strings must live as long as the table. */
struct tlm_frag_opts {
    const char *prefix; /* prepended to every added member name, or NULL */
    const char *into;   /* nest the members under this name, or NULL */
};

struct tlm_table_opts {
    enum tlm_table_format format;
    const char *const *key_cols;  /* the key columns, in the order of the event keys */
    size_t nkeys;                 /* >= 1 */
    const char *const *add_cols;  /* columns to add, or NULL: all but the key columns */
    size_t nadd;
    struct tlm_frag_opts frag;
    enum tlm_table_empty empty;
    int strings;                  /* CSV: every value is a string */
};

struct tlm_table;

/* Parses "csv", "tsv", "json", "ndjson" (also "jsonl"). Returns 0 or TLM_EINVAL. */
int tlm_table_format_parse(const char *s, enum tlm_table_format *f);

/* Reads the table at path (borrowed for the call) with o (borrowed until
 * tlm_table_destroy). Returns the table (caller owns; release with tlm_table_destroy) or
 * NULL with err filled: err->source is the path, err->line the line (CSV, NDJSON) or
 * element (JSON) of the problem, err->text the reason ("no column 'id' (columns: ...)",
 * "line has 5 fields, the header 4"). */
struct tlm_table *tlm_table_load(const char *path, const struct tlm_table_opts *o,
                                 struct tlm_error *err);

/* Releases t; NULL is fine. */
void tlm_table_destroy(struct tlm_table *t);

/* The hash of a key's bytes (as tlm_table_find and tlm_table_prefetch take it). */
uint64_t tlm_table_hash(const void *key, size_t n);

/* The row of key[0..n) with hash h: returns its fragment (borrowed until
 * tlm_table_destroy; *len bytes, not NUL-terminated, may be empty) or NULL if no row
 * has that key. */
const char *tlm_table_find(const struct tlm_table *t, const void *key, size_t n, uint64_t h,
                           size_t *len);

/* Read-ahead in TLM_TABLE_PREFETCH_PASSES rounds over a batch of keys: pass 0 prefetches
 * the index slot of hash h, pass 1 the row it points to, pass 2 the row's key and
 * fragment (each pass reads what the one before brought in). Only a speed-up. */
#define TLM_TABLE_PREFETCH_PASSES 3
void tlm_table_prefetch(const struct tlm_table *t, uint64_t h, int pass);

/* The columns the fragments may hold (as named in the file, without the prefix): the
 * --add list, or all columns but the keys (for JSON, every member name met, in order of
 * first appearance). *n of them, borrowed until tlm_table_destroy. */
const char *const *tlm_table_columns(const struct tlm_table *t, size_t *n);

struct tlm_table_stats {
    long long rows;        /* rows indexed (distinct keys) */
    long long duplicates;  /* rows whose key an earlier row had (the later row won) */
    size_t bytes;          /* memory held by the table */
    uint64_t content_hash; /* hash of the file's bytes (its identity) */
};
void tlm_table_stats(const struct tlm_table *t, struct tlm_table_stats *s);

/* ---- fragments (shared with the SQLite lookup) ------------------------------------ */

/* Appends the start of a fragment to b ("\"into\":{" or nothing) and sets *first. */
int tlm_frag_begin(struct tlm_buf *b, const struct tlm_frag_opts *o, int *first);
/* Appends the name part of one member ([,]"prefixname":). Returns 0, TLM_EINVAL (name
 * not UTF-8) or TLM_ENOMEM. */
int tlm_frag_name(struct tlm_buf *b, const struct tlm_frag_opts *o, int *first,
                  const char *name, size_t n);
/* Appends the end of a fragment ("}" with --into). */
int tlm_frag_end(struct tlm_buf *b, const struct tlm_frag_opts *o);
/* A fragment of all members of obj (borrowed), as tlm_json_write writes values. */
int tlm_frag_from_json(struct tlm_buf *b, const struct tlm_frag_opts *o, const json_t *obj);

/* Appends the CSV field s[0..n) typed as a JSON value: s == NULL is an empty unquoted
 * field (null, or "" with TLM_EMPTY_STRING; with TLM_EMPTY_SKIP nothing is appended and 1
 * is returned); quoted or strings: a JSON string; else "true"/"false" as booleans, the
 * JSON number grammar (an integer within 64 bits, or with a fraction or exponent that
 * strtod reads as finite) as that number with its text, anything else as a string
 * ("007", "+5", "1e999", "NaN", "null" stay strings). Returns 0, 1 (skipped), TLM_EINVAL
 * (not UTF-8) or TLM_ENOMEM. */
int tlm_table_csv_value(struct tlm_buf *b, const char *s, size_t n, int quoted, int strings,
                        enum tlm_table_empty empty);

#endif
