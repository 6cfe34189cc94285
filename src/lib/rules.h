/*
 * rules.h - dynamically configured rules (seed 002): threshold rules with JSONPath/expression
 * predicates, per-customer and global scopes, a control stream that adds, replaces and deletes
 * rules while events flow, replay of archived history into a new rule, and snapshots.
 *
 * A rule document is a JSON object (one per line, or a JSON array of them):
 *
 *   {"id": "r1",                         required, non-empty string, unique
 *    "type": "threshold" | "pattern",    default "threshold"
 *    "scope": "global" | {"key": "cust-42"},   default "global"
 *    "key": "customerId",                field path holding the customer key (default: the
 *                                        engine's key_field); counts are per (rule, key);
 *                                        null (global scope only): one count over all events
 *    "when": "type == \"login\" && amount > 100",   threshold: the predicate (telem-expr(7))
 *    "threshold": 5,                     threshold: integer >= 1
 *    "window": "10m",                    threshold, optional: tumbling event-time window
 *    "pattern": "a: x == 1 -> b: x == 2",   pattern: the DSL text, stored opaque
 *    "emit": "...",                      pattern, optional: stored opaque
 *    "name": "...", "description": "..."}   optional strings, copied into alerts
 *
 * Any other member, a wrong type, a predicate that does not compile, a threshold rule with
 * "pattern" or a pattern rule with "when" is refused with an error naming the rule id.
 *
 * Threshold semantics (event time, deterministic):
 *  - An event counts for rule R when R's key field is present in the event (its text: the
 *    string's characters, or the JSON text of any other value), R's scope is global or its
 *    scope key equals that text, and R's predicate is true (jq truth; a predicate that fails
 *    at run time, e.g. a type error, counts as false and is counted in stats "eval_errors").
 *  - Without "window" the count per (rule, key) grows forever; when it reaches the threshold
 *    one alert is written, and no other for that (rule, key) until the rule is replaced
 *    (never re-armed). Such states live as long as the rule (memory grows with the keys).
 *  - With "window": W, windows are tumbling and aligned to the epoch as Flink's
 *    TumblingEventTimeWindows (offset 0): [floor(ts/W)*W, +W). Each (rule, key, window) has
 *    its own count; the first event that makes it reach the threshold writes one alert at
 *    once (an early-firing trigger, not at window end); every window re-arms. Out-of-order
 *    events count in their own window. Lateness is Flink's with allowed lateness 0: once
 *    tlm_rules_watermark() has raised the watermark to or past a window's last instant
 *    (start + W - 1), that window's states are dropped and its events are late: ignored
 *    and counted in stats "late". Without watermarks nothing is late and windows are kept.
 *  - Alerts are one JSON line each, fields in this order:
 *      {"rule":"r1","name":..,"description":..,"key":"cust-42","count":5,"threshold":5,
 *       "window_start":T,"window_end":T,"time":T[,"replay":true]}
 *    "key" is null for a rule with "key": null; name/description only when the rule has
 *    them, window_* only for windowed rules; times are integers in opts.out_unit (floor),
 *    "time" is the event time that crossed; "replay" marks alerts of tlm_rules_replay.
 *    When one event fires several rules, alerts come in rule order (order of first addition).
 *
 * Rule set changes: every change (control message, reload) is validated completely before
 * anything is applied, so a bad message changes nothing. Add of an existing id and replace
 * or delete of an unknown id are errors. Replace keeps the rule's position in rule order
 * and resets only that rule's counts (even if the new document is identical); other rules
 * keep theirs. Reload (SIGHUP) takes a whole rules file: ids not in it are deleted, new ids
 * added, ids whose document differs (json_equal) replaced, identical ones keep their state.
 *
 * Speed: each predicate is analysed into a conjunction of atoms (path OP constant, path in
 * [constants], bare path); a rule with an equality atom is indexed under its constant(s),
 * else a rule with a numeric range atom (amount > 100) in a per-path array sorted by its
 * constant (a binary search finds the rules the value can satisfy).
 * Per event, the line is scanned once (jscan) for the distinct paths of all atoms and keys;
 * each distinct path costs one hash look-up (or binary search) in the global index and one
 * in the index of the event's customer (per-customer rules); only those candidates and the
 * rules with neither kind of atom are evaluated, directly on the scanned values when all
 * their conjuncts are atoms, else through tlm_expr_test on a DOM built once for the event
 * from only the fields those rules read (the whole line when one reads `$` or `..`).
 * Results (alerts, counts, late) are identical to evaluating every rule on a full DOM
 * (opts.naive = 1), which a randomized test checks; only stats "eval_errors" may differ
 * (the naive way evaluates conjuncts the index proves false, and those may fail).
 *
 * Integration in a stage (telem cep): on_event calls tlm_rules_due(ts), then
 * tlm_rules_event(line, ts) appending alerts to the stage's output; on_watermark calls
 * tlm_rules_watermark; save/load call tlm_rules_save/tlm_rules_load; control messages are
 * fed to tlm_rules_control as they arrive; after an ADDED change, tlm_rules_replay feeds
 * history synchronously (so live events wait and per-key order is kept).
 *
 * Threading: one engine is used by one thread. No globals; nothing printed.
 */
#ifndef TLM_RULES_H
#define TLM_RULES_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"
#include "snapshot.h"
#include "time.h"

struct tlm_rules;

enum tlm_rules_change {
    TLM_RULES_ADDED = 1,
    TLM_RULES_REPLACED,
    TLM_RULES_DELETED,
    TLM_RULES_QUEUED         /* tlm_rules_control: checked and queued until its "at" time */
};

struct tlm_rules_opts {
    const char *key_field;     /* default key path for rules without "key" (dotted field,
                                  e.g. "customerId" or "tenant.id"); NULL = "customerId".
                                  Copied. */
    const char *time_field;    /* time field read by tlm_rules_replay; NULL = "timestamp" */
    enum tlm_time_unit time_unit; /* unit of that field's numbers; AUTO = by magnitude */
    enum tlm_time_unit out_unit;  /* unit of the times in alerts; AUTO = ms */
    int naive;                 /* 1: evaluate every rule on every event (reference, bench) */
    /* Pattern rules: called to validate a pattern before a change is accepted (return 0,
     * or a negative code with err filled: the change is refused). May be NULL (accepted). */
    int (*pattern_check)(void *arg, const char *id, const char *pattern, struct tlm_error *err);
    /* Called after each change of any rule is applied: what, the id, and the new document
     * (borrowed for the call; NULL for DELETED; "type" says pattern or threshold, and a
     * replace may change it). It must not call into the engine: collect ids and act after
     * the call that changed the rules returns (e.g. tlm_rules_replay of ADDED rules, the
     * pattern engine's add/remove). May be NULL. */
    void (*on_change)(void *arg, enum tlm_rules_change what, const char *id, const json_t *doc);
    void *arg;                 /* handed to the two callbacks */
};

/* Creates an empty engine. o may be NULL (defaults). Returns the engine (caller owns;
 * release with tlm_rules_destroy) or NULL with err filled (bad key_field, ENOMEM). */
struct tlm_rules *tlm_rules_create(const struct tlm_rules_opts *o, struct tlm_error *err);

/* Releases rs and all rules and state. NULL is accepted. */
void tlm_rules_destroy(struct tlm_rules *rs);

/* Parses rules text (NDJSON documents, or one JSON array; blank lines and lines starting
 * with '#' are skipped) and makes it the whole rule set, as a reload: see above. source
 * names the text in errors (err->source, err->line). Returns the number of rules changed
 * (added + replaced + deleted), or a negative code with err filled (nothing changed). */
int tlm_rules_reload(struct tlm_rules *rs, const char *text, size_t n, const char *source,
                     struct tlm_error *err);

/* Applies one control message (one JSON text, borrowed):
 *   {"op":"add","rule":{...}}   {"op":"replace","rule":{...}}
 *   {"op":"delete","id":"r1"}   ("upsert" adds or replaces)
 * Returns the enum tlm_rules_change applied (> 0), or a negative code with err filled
 * (nothing changed).
 *
 * With "at": T (an event time: a number in opts.time_unit or an RFC 3339 string) the
 * message is checked now (syntax and rule document; not whether the id exists) and queued:
 * it returns TLM_RULES_QUEUED and the change is applied by tlm_rules_due() before the first
 * event whose time is >= T. This makes a control file deterministic against an event file
 * (tests, replays); without "at" a change applies between the events where it arrives. */
int tlm_rules_control(struct tlm_rules *rs, const char *msg, size_t n, struct tlm_error *err);

/* Applies the queued control messages whose "at" is <= ts, in (at, arrival) order. Call it
 * before tlm_rules_event(ts). Returns how many were applied, or a negative code with err
 * filled for one that failed at apply time (replace of an unknown id...): that message is
 * dropped, the ones before it are applied, call again to go on. */
int tlm_rules_due(struct tlm_rules *rs, tlm_time_t ts, struct tlm_error *err);

/* Number of queued control messages. */
size_t tlm_rules_pending(const struct tlm_rules *rs);

/* The same on a parsed document (borrowed for the call; copied when kept). */
int tlm_rules_add(struct tlm_rules *rs, const json_t *doc, struct tlm_error *err);
int tlm_rules_replace(struct tlm_rules *rs, const json_t *doc, struct tlm_error *err);
int tlm_rules_delete(struct tlm_rules *rs, const char *id, struct tlm_error *err);

/* Sets the unit of the times written in alerts (a stage calls it with stage_time_unit(st)
 * before each event, as window.c does; AUTO = ms). */
void tlm_rules_set_out_unit(struct tlm_rules *rs, enum tlm_time_unit unit);

/* Checks one rule document without changing anything. Returns 0 or TLM_EINVAL with err
 * filled ("rule r1: unknown member 'tresh'"). */
int tlm_rules_validate(struct tlm_rules *rs, const json_t *doc, struct tlm_error *err);

/* One event: the raw line (borrowed; a JSON object, normally already validated by the stage)
 * and its event time ts. Appends one line per alert to out (each ending in "\n"). Returns
 * the number of alerts, or TLM_EPARSE (line is not a JSON object; err filled) / TLM_ENOMEM. */
int tlm_rules_event(struct tlm_rules *rs, const char *line, size_t len, tlm_time_t ts,
                    struct tlm_buf *out, struct tlm_error *err);

/* What a replay did. */
struct tlm_rules_replay_info {
    long long read;     /* archived events with a time <= until */
    long long counted;  /* of those, events in the rule's scope whose predicate held */
    long long after;    /* events with a time > until (left to the live stream) */
    long long skipped;  /* lines that are not JSON objects or lack a usable time */
    long long alerts;   /* alerts written */
};

/* History bootstrap, synchronous: reads paths[0..n) (archive segments of `telem ingest
 * --archive`, zstd or plain NDJSON, in the given order, which should be arrival order) and
 * feeds the events in rule id's scope whose time (opts.time_field, opts.time_unit) is <=
 * until into that rule alone, as tlm_rules_event would (closed windows are not late here:
 * history may fill and alert for old windows); alerts are appended to out with
 * "replay":true. Call it right after the change that added the rule and before the next
 * live event, with until = the highest event time processed live so far: because the call
 * returns only when the replay is done, live events (of every key) wait for it and per-key
 * order is kept; events archived after `until` are left for the live stream. info (may be
 * NULL) is filled. Returns the number of alerts appended (for stage_rows), or a negative
 * code with err filled (unknown id, a pattern rule, an unreadable file; the rule keeps the
 * counts fed so far). */
int tlm_rules_replay(struct tlm_rules *rs, const char *id, const char *const *paths, size_t n,
                     tlm_time_t until, struct tlm_buf *out, struct tlm_rules_replay_info *info,
                     struct tlm_error *err);

/* Restricts what tlm_rules_replay counts to the events whose rule key (its text, as the
 * states are keyed) keep(arg, key, n) accepts, e.g. the keys of one Kafka partition when
 * each partition has an engine of its own. keep NULL: every key (the default). */
void tlm_rules_set_replay_filter(struct tlm_rules *rs,
                                 int (*keep)(void *arg, const char *key, size_t n), void *arg);

/* Snapshot: writes one record per rule ({"rule":{doc}}, in rule order), the watermark
 * ({"watermark":ns}, when set), one per queued
 * control message ({"pending":{"at":ns,"msg":{..}}}) and one per (rule, key) state
 * ({"state":{"id":..,"key":..,"count":..,"window":ns|null,"fired":b}}).
 * Returns 0 or an error. */
int tlm_rules_save(struct tlm_rules *rs, struct tlm_snap_writer *w, struct tlm_error *err);

/* Restores one record written by tlm_rules_save (records in the order saved). The first
 * rules record loaded clears the engine (rules, states, queue, watermark): the snapshot's
 * rule set replaces whatever was there, so a command may load its --rules file before the
 * stage restores, then, once restored (stage_restored), call tlm_rules_reload with the file
 * again to apply edits made while it was stopped (unchanged rules keep their restored
 * state). on_change reports the rules cleared (DELETED) and restored (ADDED): a command
 * updates its pattern engine from them but must not replay history for restored rules.
 * Returns 1 when the record was ours, 0 when it is not a rules record (the caller's own),
 * or TLM_ESTATE with err filled. */
int tlm_rules_load(struct tlm_rules *rs, const json_t *rec, struct tlm_error *err);

/* Rules in rule order: number, and the i-th one's id and document (borrowed until the next
 * change), type ("threshold" or "pattern"). */
size_t tlm_rules_count(const struct tlm_rules *rs);
const char *tlm_rules_id(const struct tlm_rules *rs, size_t i);
const json_t *tlm_rules_doc(const struct tlm_rules *rs, size_t i);
int tlm_rules_is_pattern(const struct tlm_rules *rs, size_t i);

/* Raises the watermark (never lowers it): a stage calls it from on_watermark. Windows whose
 * last instant is <= wm are closed: their (rule, key, window) states are freed (memory is
 * bounded by the open windows) and later events for them are late. Cheap when nothing
 * closes (one compare). Returns the number of states freed. */
long long tlm_rules_watermark(struct tlm_rules *rs, tlm_time_t wm);

/* Counters since creation. */
struct tlm_rules_stats {
    long long events;       /* events seen by tlm_rules_event */
    long long candidates;   /* rules evaluated (after scope and index) */
    long long matched;      /* (event, rule) pairs that counted */
    long long alerts;       /* alerts written (replay included) */
    long long late;         /* matches dropped: their window was closed by the watermark */
    long long expired;      /* (rule, key, window) states freed by the watermark */
    long long eval_errors;  /* predicate evaluations that failed (counted false) */
    long long dom_parses;   /* events that needed a DOM for a non-simple predicate */
    long long indexed;      /* threshold rules reached through the equality index */
    long long unindexed;    /* threshold rules evaluated on every event in their scope */
    long long keys;         /* (rule, key[, window]) states held */
};
void tlm_rules_get_stats(const struct tlm_rules *rs, struct tlm_rules_stats *s);

#endif
