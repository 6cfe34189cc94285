/*
 * agg.h - the aggregate functions of `telem window --agg` (compiled list, per-window state).
 *
 * A spec such as "count, avg(cpuUsage), p99(cpuUsage) as cpu_p99, distinct(userId)" is
 * compiled once into a struct tlm_aggs. The window engine keeps, per (key, window), one
 * fixed-size state block of tlm_aggs_state_size() bytes (it allocates the block; this module
 * owns the heap parts hanging off it: sketches, first/last texts, distinct sets) and calls
 * tlm_aggs_add() once per event, tlm_aggs_merge() when session windows join, and
 * tlm_aggs_write() when the window fires.
 *
 * Grammar (blanks allowed between tokens; function names and `as` are case-insensitive):
 *     list := item (',' item)*
 *     item := NAME [ '(' arg (',' arg)* ')' ] [ 'as' ALIAS ]
 *     ALIAS := [A-Za-z_][A-Za-z0-9_]*  |  '"' any characters but '"' and '\' '"'
 * An argument is an expression of the one expression language (expr.h): `cpuUsage`,
 * `mem.used / mem.total`, `$.a['x y']`. Arguments with the same text share their state
 * (avg(x) and sum(x) keep one sum; p50(x), p99(x) and quantile(x, 0.9) feed one sketch).
 *
 * Output names: count -> "count"; f(arg) -> "f_<arg>" where each character of the argument
 * text that is not [A-Za-z0-9_] becomes '_', a run of such '_' collapses into one (also with
 * an '_' written before it), and a trailing one is dropped: avg(cpuUsage) -> "avg_cpuUsage",
 * avg(mem.used / mem.total) -> "avg_mem_used_mem_total", count(x) -> "count_x";
 * quantile(x, 0.95) -> "p95_x" (the level written as in p-names: 0.5 -> p50, 0.999 -> p999,
 * 0.05 -> p05). `as ALIAS` overrides. Two aggregates with one output name are an error.
 *
 * Semantics (values are per window; "present" = the argument is not absent and not JSON null;
 * absent and null are skipped by every aggregate but count):
 *   count           number of events added.
 *   count(x)        number of events where x is present (SQL's COUNT(x)), any JSON type.
 *   sum(x)          sum of the numeric values of x (strings, booleans, arrays, objects are
 *                   skipped: no string-to-number conversion). Written as an integer when
 *                   every value was a JSON integer and the int64 sum did not overflow, else
 *                   as a double (Neumaier-compensated sum). No values: null.
 *   avg(x)          sum / count of the numeric values (compensated sum; exact integer sum
 *                   when all are integers). No values: null.
 *   stddev(x)       POPULATION standard deviation sqrt(M2 / n) (divides by n, not n - 1),
 *                   Welford's update and Chan's merge. One value: 0.0. No values: null.
 *   min(x), max(x)  smallest / largest numeric value, written as a computed number
 *                   (tlm_json_write_number: 3.0 prints as 3, 2^53 < |v| as a real).
 *   first(x)        the value of x at the smallest event time; ties: the earlier arrival.
 *   last(x)         the value of x at the largest event time; ties: the later arrival.
 *                   Both accept any JSON type and write the value's original JSON text
 *                   (plain field arguments) or its compact JSON (computed arguments).
 *                   When states merge, dst counts as the earlier arrival.
 *   rate(x)         per-second increase of a counter, Prometheus-style: samples are put in
 *                   event-time order, the increase between consecutive samples is
 *                   v[i] - v[i-1], or v[i] when v[i] < v[i-1] (a counter reset), and
 *                   rate = (sum of increases) / ((last_ts - first_ts) in seconds), without
 *                   Prometheus' extrapolation to the window edges. null unless two samples
 *                   have distinct times. Out-of-order samples: the state keeps the first
 *                   sample, a summary of the committed ones and the TLM_AGG_RATE_TAIL latest
 *                   samples in order; a sample older than that tail but newer than the first
 *                   is ignored (exact for a counter without reset around it), a sample older
 *                   than the first is prepended exactly. Merging states whose time ranges do
 *                   not overlap (session windows) is exact.
 *   distinct(x)     number of distinct present values. Values are compared by type and
 *                   content: 1 and "1" differ, 1 and 1.0 differ (integer vs real, as in
 *                   jansson), 1.0 and 1.00 are equal, "A" and "\u0041" are equal, arrays and
 *                   objects by their compact JSON. Exact (64-bit hashes in a sorted set) up
 *                   to TLM_AGG_DISTINCT_EXACT values (8 bytes each), then a HyperLogLog of
 *                   hll_precision (hll.h: sparse and all but exact up to a few thousand
 *                   values, then dense with relative error about 1.04 / sqrt(2^precision),
 *                   0.8 % at 14). Written
 *                   as an integer (the estimate rounded); 0 when no values.
 *   p<digits>(x)    the quantile at level 0.<digits>: p50, p90, p95, p99, p999, p25, p05.
 *   quantile(x, q)  the quantile at level q, a number literal in (0, 1).
 *                   Quantiles come from the sketch chosen in opts (t-digest: Hyndman-Fan
 *                   type 7, exact while the digest holds raw samples, see tdigest.h;
 *                   DDSketch: relative error alpha). No values: null.
 * avg, stddev, rate and quantiles are written as shortest round-trip doubles (3.0 -> 3.0).
 *
 * Fast path: an argument that is a plain field reference (`cpuUsage`, `mem.used`,
 * `$.mem.used`) reads the raw value span the engine extracted with jscan; jansson is never
 * touched for it. Other arguments are evaluated with tlm_expr_eval on a partial object of
 * the extracted fields (tlm_aggs_partial builds one). count, sum, min, max, avg and stddev
 * never allocate per event.
 *
 * A struct tlm_aggs is immutable after creation and may be shared between threads; a state
 * block must not be used from two threads at once.
 */
#ifndef TLM_AGG_H
#define TLM_AGG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "error.h"
#include "jscan.h"
#include "path.h"

#define TLM_AGG_MAX 256            /* aggregates in one spec */
#define TLM_AGG_MAX_ARGS 64        /* distinct argument expressions in one spec */
#define TLM_AGG_DISTINCT_EXACT 64  /* distinct(x) is exact up to this many values */
#define TLM_AGG_RATE_TAIL 4        /* rate(x): latest samples kept in order */

enum tlm_aggs_sketch {
    TLM_AGGS_TDIGEST = 0, /* merging t-digest (tdigest.h) */
    TLM_AGGS_DDSKETCH = 1 /* DDSketch (ddsketch.h) */
};

struct tlm_aggs_opts {
    int sketch;         /* enum tlm_aggs_sketch */
    double compression; /* t-digest compression; 0 means the default, 100 */
    double alpha;       /* DDSketch relative accuracy; 0 means the default, 0.01 */
    int hll_precision;  /* HyperLogLog precision (registers = 2^p); 0 means the default, 14 */
};

/* What tlm_aggs_opts fields of 0 stand for. */
#define TLM_AGGS_DEFAULT_COMPRESSION 100.0
#define TLM_AGGS_DEFAULT_ALPHA 0.01
#define TLM_AGGS_DEFAULT_HLL_PRECISION 14

struct tlm_aggs; /* a compiled --agg list */

/* Compiles spec (NUL-terminated, borrowed for the call) with options o (may be NULL: all
 * defaults; borrowed for the call). Returns the list (caller owns; release with
 * tlm_aggs_destroy), or NULL with err filled: TLM_EPARSE with err->column the 1-based byte
 * column in spec and a reason ("unknown aggregate 'med'; expected count, sum, ...",
 * "p99 needs one argument", "quantile level must be in (0,1)", "duplicate output name
 * 'count'"; an argument's expression error points into spec too), TLM_EINVAL for an option
 * out of range, TLM_ENOMEM. */
struct tlm_aggs *tlm_aggs_create(const char *spec, const struct tlm_aggs_opts *o,
                                 struct tlm_error *err);

/* Releases a and everything it owns (not the states). NULL is accepted. */
void tlm_aggs_destroy(struct tlm_aggs *a);

/* Number of aggregates (output columns), in spec order. */
size_t tlm_aggs_count(const struct tlm_aggs *a);

/* Output name of aggregate i (< count); borrowed until tlm_aggs_destroy(a). */
const char *tlm_aggs_name(const struct tlm_aggs *a, size_t i);

/* Index of the aggregate whose output name is name, or -1 (for --top N --by NAME). */
long tlm_aggs_find(const struct tlm_aggs *a, const char *name);

/* The event fields the aggregates read: the union of tlm_expr_root_paths of all arguments,
 * without duplicates and without a path that has another one as prefix. Stores in *paths an
 * array (borrowed until tlm_aggs_destroy(a)) and returns its count (0 when only plain count
 * is asked for), or returns -1 (*paths = NULL) when some argument needs the whole event:
 * then tlm_aggs_add must get the whole event as partial and vals is not read. */
long tlm_aggs_paths(const struct tlm_aggs *a, const struct tlm_path **paths);

/* For aggregate i: the index into the tlm_aggs_paths list whose raw value it reads when its
 * argument is a plain field reference (fast path), -1 when the argument is computed (it is
 * evaluated on partial), -2 when it has no argument (count). */
long tlm_aggs_arg_path(const struct tlm_aggs *a, size_t i);

/* 1 when aggregate i has an argument, 0 for plain count. */
int tlm_aggs_has_arg(const struct tlm_aggs *a, size_t i);

/* 1 when tlm_aggs_add needs a partial object (some argument is computed), else 0. */
int tlm_aggs_needs_json(const struct tlm_aggs *a);

/* Builds the partial object tlm_aggs_add expects from the extracted values vals[k] (one per
 * path of tlm_aggs_paths; TLM_JNONE entries are left out): {"mem":{"used":1,"total":4}}.
 * Returns a new object (caller owns; release with json_decref) or NULL when memory runs out
 * or the list has no path list (tlm_aggs_paths returned -1). */
json_t *tlm_aggs_partial(const struct tlm_aggs *a, const struct tlm_jval *vals);

/* Size in bytes of one state block (a multiple of 8; 8-byte alignment suffices). */
size_t tlm_aggs_state_size(const struct tlm_aggs *a);

/* Makes state (caller-allocated, tlm_aggs_state_size bytes) an empty state: all zero bytes,
 * no heap parts. A zero-filled block is thus a valid empty state too. */
void tlm_aggs_init(const struct tlm_aggs *a, void *state);

/* Releases the heap parts of state; the block itself stays the caller's and is left empty
 * (as after tlm_aggs_init), so it may be reused. */
void tlm_aggs_free(const struct tlm_aggs *a, void *state);

/* Adds one event at event time ts (ns). vals[k] is the raw value of path k of tlm_aggs_paths
 * (TLM_JNONE when absent; the spans are borrowed for the call; vals may be NULL when the
 * path list is empty or -1). partial is NULL unless tlm_aggs_needs_json: then it is the
 * object built by tlm_aggs_partial (or the whole event when tlm_aggs_paths returned -1),
 * borrowed for the call. Values that are absent, null, or (for numeric aggregates) not
 * numbers are skipped. Computed arguments are evaluated before the state changes, so an
 * evaluation error leaves state as it was. Returns 0, TLM_ENOMEM (state stays valid but may
 * hold part of the event), or the evaluation error (TLM_ETYPE, TLM_ERANGE, ...) with err
 * filled: text "avg(a / b): division by zero", column 0. */
int tlm_aggs_add(const struct tlm_aggs *a, void *state, const struct tlm_jval *vals,
                 json_t *partial, int64_t ts, struct tlm_error *err);

/* The same in two steps, for an event that goes to several states (sliding windows):
 * tlm_aggs_resolve evaluates the arguments once into ev (from tlm_aggs_event_new, reused
 * from event to event; vals and partial as for tlm_aggs_add, and vals' spans must outlive
 * the applies), with no state touched, so an evaluation error (returned with err filled)
 * changes nothing; tlm_aggs_apply then adds the resolved event to a state (0 or
 * TLM_ENOMEM). */
struct tlm_aggs_event;
struct tlm_aggs_event *tlm_aggs_event_new(void);
void tlm_aggs_event_free(struct tlm_aggs_event *ev);
int tlm_aggs_resolve(const struct tlm_aggs *a, struct tlm_aggs_event *ev,
                     const struct tlm_jval *vals, json_t *partial, struct tlm_error *err);
int tlm_aggs_apply(const struct tlm_aggs *a, void *state, const struct tlm_aggs_event *ev,
                   int64_t ts, struct tlm_error *err);

/* Merges src into dst (session windows joining): afterwards dst equals (up to sketch
 * approximation, and rate's documented limits) a state that got the events of both. src is
 * borrowed and left valid and unchanged (the caller still frees it). Returns 0 or TLM_ENOMEM
 * (dst stays valid but may be partly merged). */
int tlm_aggs_merge(const struct tlm_aggs *a, void *dst, const void *src);

/* Appends `,"name":value` for each aggregate, in spec order, to out (caller owns). Not const
 * on state: sketches compress pending samples first. Returns 0 or TLM_ENOMEM. */
int tlm_aggs_write(const struct tlm_aggs *a, void *state, struct tlm_buf *out);

/* The value of aggregate i as a double (for ranking), NaN when it would be written as null;
 * first/last: their value when it is a number, else NaN. */
double tlm_aggs_value(const struct tlm_aggs *a, void *state, size_t i);

/* Appends state as one compact JSON object to out (caller owns): exact (doubles in shortest
 * round-trip form, non-finite ones as "inf"/"-inf"/"nan"), loadable by tlm_aggs_load under a
 * list compiled from the same spec and options. Returns 0 or TLM_ENOMEM. */
int tlm_aggs_save(const struct tlm_aggs *a, void *state, struct tlm_buf *out);

/* Replaces state (which must be initialised; its old heap parts are released) with the one
 * saved in json[0..n) (borrowed for the call). Returns 0, or TLM_ESTATE (malformed, or
 * saved under another spec) / TLM_ENOMEM with err filled; state is then empty. */
int tlm_aggs_load(const struct tlm_aggs *a, void *state, const char *json, size_t n,
                  struct tlm_error *err);

/* Heap bytes owned by state (sketches, first/last texts, distinct sets), for memory
 * reports; the block itself is tlm_aggs_state_size(a) more. */
size_t tlm_aggs_heap_bytes(const struct tlm_aggs *a, const void *state);

/* Hints the CPU to fetch the sketches a state block points to (the window engine calls
 * it a few events ahead, so that their first touch is not a cache miss). No effect on
 * results. */
void tlm_aggs_prefetch(const struct tlm_aggs *a, const void *state);
/* The next step, once the sketches themselves have arrived: the place in each t-digest's
 * buffer the next sample goes to. */
void tlm_aggs_prefetch_tails(const struct tlm_aggs *a, const void *state);

#endif
