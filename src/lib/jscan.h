/*
 * jscan.h - validate one NDJSON line and read a few fields from it without a DOM.
 *
 * The hot path of every stage: one pass over the raw bytes of a line checks that it is a
 * JSON object exactly as jansson's json_loadb(p, n, 0, &err) would accept it, and records
 * where the values of the member paths a stage uses start and end. Unchanged events pass
 * through as their original bytes; a value is decoded only when asked for (tlm_jval_*).
 *
 * "Exactly as jansson" (2.14, checked by tests/unit/test_jscan.c and tests/fuzz/fuzz_jscan.c):
 *  - the top level must be an object (jansson also takes arrays; we reject them);
 *  - whitespace is space, tab, LF and CR only; nothing but whitespace after the object;
 *  - the whole line must be valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF);
 *  - strings: no raw bytes < 0x20; escapes \" \\ \/ \b \f \n \r \t \uXXXX only; a \u high
 *    surrogate must be followed by a \u low surrogate; a lone low surrogate is rejected;
 *    \u0000 is rejected in keys and values (no JSON_ALLOW_NUL);
 *  - numbers: JSON grammar; an integer (no '.', 'e', 'E') outside long long is "too big
 *    integer"; a real that strtod overflows is "real number overflow" (underflow is fine);
 *  - nesting: every value counts one level, the top object is level 1, more than 2048
 *    (JSON_PARSER_MAX_DEPTH) is rejected, so "[[...[1]...]]" inside the object can hold
 *    2046 arrays around the scalar;
 *  - duplicate keys: the last one wins (for nested paths, the last object under that key);
 *  - quirk kept: one NUL byte right after a number or a literal is ignored ({"a":1<NUL>} is
 *    accepted, as jansson's lexer drops a NUL byte it pushes back); other NULs are rejected.
 * The error column is 1-based and counts bytes (jansson counts characters); our reasons are
 * worded for users and point at the offending byte, not at the end of the token.
 */
#ifndef TLM_JSCAN_H
#define TLM_JSCAN_H

#include <stddef.h>

#include <jansson.h>

#include "buf.h"
#include "error.h"
#include "path.h"

/* Deepest nesting jansson accepts (JSON_PARSER_MAX_DEPTH; every value counts one level). */
#define TLM_JSCAN_MAX_DEPTH 2048

enum tlm_jtype {
    TLM_JNONE = 0, /* absent (or the path runs through a non-object) */
    TLM_JOBJECT,
    TLM_JARRAY,
    TLM_JSTRING,
    TLM_JINT, /* a number without '.', 'e' or 'E' (jansson's integer) */
    TLM_JREAL,
    TLM_JTRUE,
    TLM_JFALSE,
    TLM_JNULL
};

/* A value found in a line: a borrowed span of the line's bytes (valid as long as the line). */
struct tlm_jval {
    enum tlm_jtype type;
    const char *p; /* first byte of the value (for strings: the opening quote); NULL if NONE */
    size_t n;      /* bytes of the value (for strings: including both quotes) */
    int escaped;   /* strings only: 1 if the string holds a backslash escape */
};

/* Validates one JSON text p[0..n) (need not be NUL-terminated; a trailing "\n" or "\r\n" is
 * whitespace) that must be an object, with jansson's rules (see above). Returns 0, or
 * TLM_EPARSE with err (may be NULL) filled: err->column is the 1-based byte column of the
 * offending byte (n + 1 at an unexpected end) and err->text a reason such as
 * "invalid escape '\q' in string", "unexpected end of line", "too big integer",
 * "not a JSON object". Other fields of err are left alone. p is only borrowed. */
int tlm_json_validate(const char *p, size_t n, struct tlm_error *err);

struct tlm_jscan; /* a compiled set of member paths to extract */

/* Compiles paths[0..npaths) (npaths may be 0: then the scan only validates). Copies the
 * names it needs: paths are borrowed for the call only. Returns a scanner the caller owns
 * (release with tlm_jscan_destroy), or NULL if memory runs out or a path has nseg == 0.
 * A scanner is read-only after creation and may be shared between threads. */
struct tlm_jscan *tlm_jscan_create(const struct tlm_path *paths, size_t npaths);

/* Releases s; NULL is accepted. */
void tlm_jscan_destroy(struct tlm_jscan *s);

/* Number of paths s was created with (the size out must have in tlm_jscan_run). */
size_t tlm_jscan_npaths(const struct tlm_jscan *s);

/* One pass over the line p[0..n): validates it exactly as tlm_json_validate and fills
 * out[i] (caller-owned array of tlm_jscan_npaths(s) entries) for paths[i]: type TLM_JNONE
 * when the member is absent or the path runs through a non-object; duplicate keys: the last
 * one wins, as in jansson. The spans in out borrow from p and live as long as the line.
 * Returns 0, or TLM_EPARSE with err filled as tlm_json_validate does (out is then
 * unspecified). */
int tlm_jscan_run(const struct tlm_jscan *s, const char *p, size_t n, struct tlm_jval *out,
                  struct tlm_error *err);

/* Value helpers over a span filled by tlm_jscan_run (they trust that it was validated). */

/* Stores the number in *d: an INT as (double) of its long long (as json_number_value does),
 * a REAL as strtod reads it (correctly rounded). Returns 0, or TLM_ETYPE if v is not a number
 * (*d untouched). */
int tlm_jval_double(const struct tlm_jval *v, double *d);

/* Stores an INT in *i. Returns 0, or TLM_ETYPE if v is not an INT (a REAL such as 3.0 is not
 * an INT, as in jansson). */
int tlm_jval_int64(const struct tlm_jval *v, long long *i);

/* Appends the unescaped UTF-8 bytes of a string (no quotes; never a NUL) to out (caller
 * owns). Returns 0, TLM_ETYPE if v is not a string, or TLM_ENOMEM. */
int tlm_jval_string(const struct tlm_jval *v, struct tlm_buf *out);

/* Returns a new reference (caller owns; release with json_decref) to the value as jansson
 * parses it (json_equal to what json_loadb holds for it), or NULL if v is NONE or memory runs
 * out. */
json_t *tlm_jval_to_json(const struct tlm_jval *v);

/* Sets path p (at least one segment) to v's value inside object root, creating the
 * objects on the way and replacing a member that is not an object. 0, or -1 when memory
 * runs out or v is NONE. */
int tlm_jval_put_path(json_t *root, const struct tlm_path *p, const struct tlm_jval *v);

/* Appends v's text as keys compare it (enrich's tables and joins): a string's contents,
 * unescaped; a number or true/false as written. TLM_ETYPE for null, an object, an array
 * or an absent value; TLM_ENOMEM. */
int tlm_jval_key_text(const struct tlm_jval *v, struct tlm_buf *out);

/* Is p[0..n) a telem control record, the watermark {"__watermark": <integer ms>}? That is an
 * object with exactly one member, whose key is written literally as "__watermark" (no escapes)
 * and whose value is a JSON integer; whitespace as JSON allows. Returns 1 and stores the
 * value in *ms (may be NULL), or 0 if the line is anything else (including invalid JSON and
 * a duplicated "__watermark"). Ordinary lines cost a few byte compares: the first key must
 * start with "__w". p is borrowed. */
int tlm_json_is_watermark(const char *p, size_t n, long long *ms);

#endif
