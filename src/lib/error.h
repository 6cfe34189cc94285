/*
 * error.h - error codes and the caller-owned error record of libtelem.
 *
 * Every library call that can fail on data returns 0 (or a count) on success and a
 * negative TLM_E* code on failure, and fills an optional caller-owned struct tlm_error
 * with where and why (jansson's json_error_t, in our words). The command layer turns
 * it into one line on stderr: "telem window: events.ndjson:12:5: expected a number".
 */
#ifndef TLM_ERROR_H
#define TLM_ERROR_H

#include <stdarg.h>

enum tlm_code {
    TLM_OK = 0,
    TLM_ENOMEM = -1,   /* allocation failed */
    TLM_EINVAL = -2,   /* invalid argument or option value */
    TLM_EPARSE = -3,   /* malformed input data */
    TLM_EIO = -4,      /* read or write failed (errno in the message) */
    TLM_ERANGE = -5,   /* a value out of its allowed range */
    TLM_ESTATE = -6,   /* snapshot corrupt, truncated or incompatible */
    TLM_EPIPE = -7,    /* the reader of our output went away */
    TLM_EAGAIN = -8,   /* nothing ready within the timeout (not an error for callers) */
    TLM_ETYPE = -9,    /* a value of the wrong type */
    TLM_ENOTFOUND = -10 /* a looked-up thing does not exist */
};

#define TLM_ERROR_TEXT 512
#define TLM_ERROR_SOURCE 256

/* Where and why a call failed. Fields that do not apply are 0 / empty. */
struct tlm_error {
    int code;                       /* the TLM_E* code that was returned */
    char source[TLM_ERROR_SOURCE];  /* input name ("-" for stdin), or empty */
    long long line;                 /* 1-based line number, 0 if none */
    long column;                    /* 1-based column (byte), 0 if none */
    long long offset;               /* byte offset of the line in its input, -1 if none */
    char text[TLM_ERROR_TEXT];      /* human-readable reason, no trailing newline */
};

/* Resets err (may be NULL) to "no error". */
void tlm_error_clear(struct tlm_error *err);

/* Fills err->code and err->text (printf-style) and returns code, so that a caller can
 * write `return tlm_error_set(err, TLM_EPARSE, "bad %s", x);`. err may be NULL.
 * Location fields are left as they are. */
int tlm_error_set(struct tlm_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the location fields of err (may be NULL); source may be NULL. */
void tlm_error_at(struct tlm_error *err, const char *source, long long line, long column,
                  long long offset);

/* Formats err as "source:line:column: text" (parts that are unset are left out) into
 * buf of size n. Returns buf. */
char *tlm_error_format(const struct tlm_error *err, char *buf, unsigned long n);

/* A short static name for a code ("parse error"); never NULL. */
const char *tlm_code_name(int code);

#endif
