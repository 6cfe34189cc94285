/*
 * cep.h - complex event processing: Apache Flink CEP patterns over keyed event streams.
 *
 * A pattern is a sequence of stages (`start: metric == "a" -> end: metric == "b"`), each a
 * condition (an expression of expr.h) with a contiguity towards the previous stage (next,
 * followedBy, followedByAny, notNext, notFollowedBy), a quantifier (one, optional, times,
 * oneOrMore, timesOrMore; greedy; consecutive or allowCombinations inside a loop), an
 * optional `within` and an after-match skip strategy. Patterns come from the one-line
 * language (tlm_cep_pattern_parse) or from JSON documents (tlm_cep_pattern_from_json); both
 * are documented in telem-cep(1).
 *
 * The engine (struct tlm_cep) holds a set of compiled patterns, each with an id, and per key
 * the state of every pattern (Flink's NFA computation states over a shared event chain).
 * Events are pushed in any order; they are buffered per key until the watermark passes
 * them and then run through the NFA in event-time order (ties: arrival order), so results
 * do not depend on disorder within the watermark. Matches and timed-out partial matches are
 * handed to a caller's sink. The set of patterns is the unit a rule set plugs into: each
 * pattern has an id and its own per-key state.
 */
#ifndef TLM_CEP_H
#define TLM_CEP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "jscan.h"
#include "path.h"
#include "time.h"

/* ---- patterns --------------------------------------------------------------------- */

struct tlm_cep_pattern;

/* Parses the one-line pattern language. Returns a compiled pattern (caller owns; release
 * with tlm_cep_pattern_destroy) or NULL with err filled (TLM_EPARSE, err->column the 1-based
 * byte column in src). Its id is "p1" until changed with tlm_cep_pattern_set_id. */
struct tlm_cep_pattern *tlm_cep_pattern_parse(const char *src, struct tlm_error *err);

/* Reads a pattern document: {"id": ..., "pattern": "<one-line>"} or {"id": ..., "stages":
 * [...], "within": "24h", "skip": ...} (telem-cep(1)). doc is borrowed. Returns the pattern
 * (caller owns) or NULL with err filled (err->text names the member at fault). */
struct tlm_cep_pattern *tlm_cep_pattern_from_json(const json_t *doc, struct tlm_error *err);

/* The pattern as a canonical document (new reference, caller owns), the "stages" form. */
json_t *tlm_cep_pattern_to_json(const struct tlm_cep_pattern *p);

void tlm_cep_pattern_destroy(struct tlm_cep_pattern *p);
const char *tlm_cep_pattern_id(const struct tlm_cep_pattern *p);
int tlm_cep_pattern_set_id(struct tlm_cep_pattern *p, const char *id);
/* The pattern's within in ns, 0 if none. */
int64_t tlm_cep_pattern_within(const struct tlm_cep_pattern *p);
/* Number of stages (negated stages included) and the name of stage i (borrowed). */
size_t tlm_cep_pattern_nstages(const struct tlm_cep_pattern *p);
const char *tlm_cep_pattern_stage(const struct tlm_cep_pattern *p, size_t i);
/* Does stage i bind an array (a quantified stage) rather than one event? */
int tlm_cep_pattern_stage_loops(const struct tlm_cep_pattern *p, size_t i);

/* Rewrites an expression over a pattern's stages so that a looping stage name reads its
 * events as a node list: `count(items)` -> `count(items[*])`, `sum(items.price)` ->
 * `sum(items[*].price)`. Returns a malloc'd string (caller owns) or NULL on ENOMEM.
 */
char *tlm_cep_rewrite(const struct tlm_cep_pattern *p, const char *src);

/* Compiles an expression (an emit template) over the stages of p: each stage name is a
 * binding (an event, or an array for a looping stage), plus "key". Returns the expression
 * (caller owns) or NULL with err filled, the column relative to src. */
struct tlm_expr *tlm_cep_compile_template(const struct tlm_cep_pattern *p, const char *src,
                                          struct tlm_error *err);

/* ---- matches ---------------------------------------------------------------------- */

/* An event held by the engine. */
struct tlm_cep_event;
const char *tlm_cep_event_line(const struct tlm_cep_event *e, size_t *len);
tlm_time_t tlm_cep_event_time(const struct tlm_cep_event *e);
/* The event parsed (borrowed until the event is released, i.e. the sink call returns). */
json_t *tlm_cep_event_json(struct tlm_cep_event *e);

/* A match or a timed-out partial match, borrowed for the sink call. */
struct tlm_cep_match {
    const struct tlm_cep_pattern *pattern;
    const char *key;                  /* the key as JSON text */
    size_t keylen;
    int timeout;                      /* 1 for a timed-out partial match */
    tlm_time_t ts;                    /* timeout: start + within; match: time of its last event */
    size_t nstages;                   /* == tlm_cep_pattern_nstages */
    size_t *count;                    /* count[i]: events matched by stage i */
    struct tlm_cep_event ***events;   /* events[i][0..count[i]) in order */
};

/* Fills values[0..nstages] for tlm_cep_compile_template's bindings: stage objects, arrays
 * for looping stages, NULL for stages without events, and the key last. The values are
 * new references in values (caller releases each with json_decref). Returns 0 or ENOMEM. */
int tlm_cep_match_bindings(const struct tlm_cep_match *m, json_t **values);

/* An emit template over one pattern's stages (tlm_cep_compile_template) that builds, for
 * each matched event, only the fields the template reads (scanned from the event's line
 * without a DOM) when it reads the stages through plain member paths (`start.timestamp`,
 * `sum(items.price)`, `first(items).sku`, `count(items)`), and the whole event otherwise. */
struct tlm_cep_template;

/* Returns the template (caller owns) or NULL with err filled (the column in src). p is
 * borrowed until tlm_cep_template_destroy. */
struct tlm_cep_template *tlm_cep_template_create(const struct tlm_cep_pattern *p,
                                                 const char *src, struct tlm_error *err);
/* Evaluates t over m (of t's pattern). Returns 1 with a new reference in *out (caller
 * owns), 0 when the template yields nothing, or a negative code with err filled. */
int tlm_cep_template_eval(struct tlm_cep_template *t, const struct tlm_cep_match *m,
                          json_t **out, struct tlm_error *err);
/* Does t read only member paths (the fast form)? */
int tlm_cep_template_partial(const struct tlm_cep_template *t);
void tlm_cep_template_destroy(struct tlm_cep_template *t);

struct tlm_cep_sink {
    void *arg;
    /* A match (timeout = 0) or a timed-out partial match. Return 0 or a negative code. */
    int (*emit)(void *arg, const struct tlm_cep_match *m, struct tlm_error *err);
    /* Set when nothing observes what the end of time (TLM_TIME_MAX) does beyond the
     * matches it writes: emit drops timeouts, and the engine is neither saved nor asked
     * for statistics afterwards. The partial matches left are then not expired one by
     * one when that can write no match (no pattern ends with a negation waiting for its
     * within, none has a skip strategy holding matches back): a big key set ends at once. */
    int end_unobserved;
};

/* ---- the engine ------------------------------------------------------------------- */

struct tlm_cep;

struct tlm_cep *tlm_cep_create(void);
void tlm_cep_destroy(struct tlm_cep *c);

/* Adds a pattern (takes ownership, also on failure) in a new slot. Its id must not be in
 * use. May be called at any time (a rule added while events flow): every key starts it
 * from its start state with the next event that runs; events already buffered are
 * matched against it too. Patterns added after tlm_cep_paths evaluate their conditions on
 * the parsed event (slower). Returns 0 or a negative code with err filled. */
int tlm_cep_add(struct tlm_cep *c, struct tlm_cep_pattern *p, struct tlm_error *err);
/* Removes the pattern with this id and all its partial and waiting matches, in every key;
 * the other patterns' state is untouched. Its slot stays empty (slots are not reused).
 * Returns 0 or TLM_ENOTFOUND. A replacement is a remove and an add. */
int tlm_cep_remove(struct tlm_cep *c, const char *id, struct tlm_error *err);
/* Number of slots, and the pattern in slot i (borrowed; NULL for a removed one). */
size_t tlm_cep_count(const struct tlm_cep *c);
const struct tlm_cep_pattern *tlm_cep_get(const struct tlm_cep *c, size_t i);

/* The member paths a push needs in vals (borrowed until tlm_cep_destroy), 0 when every
 * condition needs the whole event (then vals may be NULL and the line is parsed). Valid
 * after the last tlm_cep_add. */
size_t tlm_cep_paths(struct tlm_cep *c, const struct tlm_path **paths);

/* Buffers one event of key (JSON text, borrowed; copied) with event time ts. line is the
 * raw event (copied). vals are the values of tlm_cep_paths (borrowed for the call).
 * Returns 0, or TLM_ETYPE / TLM_ERANGE with err filled when a condition cannot be
 * evaluated on it (the caller rejects the event), or TLM_ENOMEM. */
int tlm_cep_push(struct tlm_cep *c, const char *key, size_t keylen, tlm_time_t ts,
                 const char *line, size_t len, const struct tlm_jval *vals,
                 struct tlm_error *err);

/* Read-ahead for an event of key that tlm_cep_push will get soon (a speed-up only): call
 * with pass 0 to TLM_CEP_PREFETCH_PASSES - 1 in turn, keeping hint between the calls. */
#define TLM_CEP_PREFETCH_PASSES 4
struct tlm_cep_hint {
    uint64_t h;
    const void *slot;
};
void tlm_cep_prefetch(struct tlm_cep *c, const char *key, size_t keylen, int pass,
                      struct tlm_cep_hint *hint);

/* Time has reached wm: runs the buffered events at or before wm through the patterns in
 * event-time order and fires the timeouts due, calling sink->emit in order. Returns 0 or
 * the first negative code (from the sink or ENOMEM). TLM_TIME_MAX ends time. */
int tlm_cep_advance(struct tlm_cep *c, tlm_time_t wm, const struct tlm_cep_sink *sink,
                    struct tlm_error *err);

/* State: records (JSON lines) given to put; load takes them back one by one. */
int tlm_cep_save(struct tlm_cep *c, int (*put)(void *arg, const json_t *rec), void *arg,
                 struct tlm_error *err);
int tlm_cep_load(struct tlm_cep *c, const json_t *rec, struct tlm_error *err);

struct tlm_cep_stats {
    long long keys;           /* keys with state */
    long long buffered;       /* events waiting for the watermark */
    long long partial;        /* partial matches (start states not counted) */
    long long events_held;    /* distinct events held by partial matches or the buffer */
    long long bytes;          /* estimate of the memory they use */
    long long matches, timeouts;
    long long cond_errors;    /* iterative conditions that failed to evaluate (false) */
};
void tlm_cep_stats(const struct tlm_cep *c, struct tlm_cep_stats *s);

#endif
