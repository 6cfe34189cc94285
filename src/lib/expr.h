/*
 * expr.h - the one expression language of telem: RFC 9535 JSONPath plus operators.
 *
 * An expression is compiled once (tlm_expr_compile) into an immutable tree that can be
 * evaluated any number of times, from any number of threads, against events (jansson
 * objects). Field names read from the event root (`cpuUsage`, `mem.used`, `$.a['x y']`),
 * binding names read from caller-supplied values (`start.timestamp`, `items[*].price`).
 * The language is described in man/telem-expr.7; the JSONPath part follows RFC 9535 and
 * is also available on its own (tlm_jsonpath_*) for node selection and the compliance
 * suite.
 */
#ifndef TLM_EXPR_H
#define TLM_EXPR_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"
#include "path.h"

/* A compiled expression: immutable after compile, reusable, safe to share. */
struct tlm_expr;

/* A compiled RFC 9535 JSONPath query. */
struct tlm_jsonpath;

/* Named bindings visible to an expression besides the event. */
struct tlm_expr_env {
    size_t n;                 /* number of bindings */
    const char *const *names; /* n names, e.g. "start", "end", "prev", "items"; borrowed */
    json_t *const *values;    /* n values, borrowed for the call: an object (one event), an
                               * array (a looping stage's events), or NULL = unbound
                               * (evaluates to nothing) */
};

/* Compiles src (NUL-terminated UTF-8). Returns the expression (caller owns; release with
 * tlm_expr_destroy) or NULL with err filled: err->code TLM_EPARSE (TLM_ENOMEM on
 * allocation failure), err->column the 1-based byte column of the problem and err->text
 * a short reason such as "expected ')' after arguments". src is not referenced after the
 * call. Every identifier that is not a function name or keyword reads an event field. */
struct tlm_expr *tlm_expr_compile(const char *src, struct tlm_error *err);

/* As tlm_expr_compile, but a leading identifier equal to one of the n binding_names
 * (borrowed for the call; copied) reads from the binding of that name at evaluation
 * time instead of from the event. */
struct tlm_expr *tlm_expr_compile_with(const char *src, const char *const *binding_names,
                                       size_t n, struct tlm_error *err);

/* Releases e and everything it owns. NULL is accepted. */
void tlm_expr_destroy(struct tlm_expr *e);

/* Evaluates e against the event root (borrowed for the call; may be NULL, which behaves
 * like an empty event) and env (may be NULL: no bindings). Returns 1 and stores a new
 * reference in *out (caller owns; release with json_decref), 0 when the result is nothing
 * (missing field, empty node list; *out is set to NULL), or a negative TLM_E* code
 * (TLM_ETYPE for operand types, TLM_ERANGE for division by zero or overflow, TLM_ENOMEM)
 * with err filled (err->column = column of the failing operator). A query selecting two
 * or more nodes evaluates to the array of their values. */
int tlm_expr_eval(const struct tlm_expr *e, json_t *root, const struct tlm_expr_env *env,
                  json_t **out, struct tlm_error *err);

/* Evaluates e and reduces the result to truth (jq's rule): nothing, false and null are
 * false; true, every number (0 included), string ("" included), array and object are
 * true. Returns 1 (true), 0 (false) or a negative TLM_E* code with err filled. */
int tlm_expr_test(const struct tlm_expr *e, json_t *root, const struct tlm_expr_env *env,
                  struct tlm_error *err);

/* The member paths from the event root that e reads, so a caller can extract only those
 * fields: `mem.used > 3 && $.host['name'] == "a"` gives [mem, used] and [host, name].
 * Returns the count (0 for an expression that reads no field) and sets *paths to an
 * array of that many paths, borrowed until tlm_expr_destroy(e). Returns -1 (and sets
 * *paths to NULL) when e needs the whole document: `$` or `@` alone, a wildcard,
 * descendant, index, slice or filter applied to the root itself. A path reached through
 * an index, wildcard or filter reports its member-name prefix (`items[*].price` reads
 * [items]). A path that has another reported path as prefix is left out. */
long tlm_expr_root_paths(const struct tlm_expr *e, const struct tlm_path **paths);

/* Compiles an RFC 9535 JSONPath query (strict grammar: no leading or trailing blanks, the
 * standard function extensions only, well-typed filters). Returns the query (caller owns;
 * release with tlm_jsonpath_destroy) or NULL with err filled as by tlm_expr_compile. */
struct tlm_jsonpath *tlm_jsonpath_compile(const char *src, struct tlm_error *err);

/* Releases p. NULL is accepted. */
void tlm_jsonpath_destroy(struct tlm_jsonpath *p);

/* Applies p to root (borrowed for the call). Returns a new JSON array of the selected
 * values in document order (caller owns). When paths_out is non-NULL, also stores there a
 * new array (caller owns) of the normalized paths of those nodes (RFC 9535 section 2.7,
 * e.g. "$['a'][0]"), same order. Returns NULL (and *paths_out = NULL) on allocation
 * failure. */
json_t *tlm_jsonpath_query(const struct tlm_jsonpath *p, json_t *root, json_t **paths_out);

#endif
