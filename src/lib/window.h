/*
 * window.h - keyed event-time windows: the engine behind `telem window`.
 *
 * Events are assigned to windows per key, Apache Flink style (see telem(7)):
 *   tumbling  [start, start+size), start = floor((ts - offset) / size) * size + offset
 *   sliding   every window [s, s+size) with s aligned to `every` and s <= ts < s+size
 *   session   per key, [first, last + gap); sessions that come within `gap` merge
 * A window fires when the watermark reaches its end - 1 ms and emits one row
 *   {<key fields>,"window_start":S,"window_end":E,<aggregates>,"revision":R}
 * with times in the output unit. Until the watermark passes end - 1 ms + lateness the
 * window is kept: an event for it updates it and the row is emitted again with
 * revision + 1. An event whose windows are all past that point is late: the caller
 * writes it to its side output. Aggregates are computed by lib/agg.
 *
 * Aligned windows (tumbling, sliding) are grouped in ranges, one per [start, end) across
 * keys; ranges fire in time order and, inside a range, keys in the order their first
 * event for it arrived, so the same input always gives the same output. Sessions fire
 * from a timer heap ordered by (end, creation order).
 *
 * Top-N (--top N --by NAME) ranks the rows of one range by an aggregate, ties broken by
 * the key text, and emits the first N with a "rank"; a late update re-emits the range's
 * top N with the next revision. Fill (--fill last|zero) emits a row for every key seen
 * before that has no window in a range as it fires (aligned windows only).
 *
 * The engine does no I/O: rows are appended to a caller's buffer.
 */
#ifndef TLM_WINDOW_H
#define TLM_WINDOW_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "buf.h"
#include "error.h"
#include "jscan.h"
#include "time.h"

enum tlm_window_kind { TLM_WIN_TUMBLE = 1, TLM_WIN_SLIDE, TLM_WIN_SESSION };
enum tlm_window_fill { TLM_FILL_NONE = 0, TLM_FILL_LAST, TLM_FILL_ZERO };

struct tlm_window_opts {
    enum tlm_window_kind kind;
    int64_t size;          /* tumble/slide: window length, ns */
    int64_t every;         /* slide: step, ns (tumble: = size) */
    int64_t gap;           /* session: inactivity gap, ns */
    int64_t offset;        /* alignment offset, ns */
    int64_t lateness;      /* allowed lateness, ns */
    int64_t emit_every;    /* early results every this much event time, 0 = none */
    long top_n;            /* 0 = all rows */
    long top_by;           /* index of the ranking aggregate (with top_n) */
    int top_asc;           /* rank ascending */
    enum tlm_window_fill fill;
    const char *const *key_names; /* output names of the key fields */
    size_t nkeys;
};

struct tlm_window;

/* Creates an engine. aggs is borrowed and must outlive it. Returns NULL with err on bad
 * options (e.g. a slide whose size is not a multiple of every). */
struct tlm_window *tlm_window_create(const struct tlm_window_opts *o, const struct tlm_aggs *aggs,
                                     struct tlm_error *err);
void tlm_window_destroy(struct tlm_window *w);

/* Rows go to the out buffer of the call that makes them. With a drain, each time that
 * buffer holds TLM_WINDOW_DRAIN_BYTES or more after a row, drain(arg) is called to write
 * it out (and empty it), so that firing many windows at once does not hold all their
 * rows in memory. drain returns 0 or a negative code, which the engine call returns
 * (with err saying "out of memory": the caller keeps the real reason). */
#define TLM_WINDOW_DRAIN_BYTES (1u << 20)
void tlm_window_set_drain(struct tlm_window *w, int (*drain)(void *arg), void *arg);

/* The unit window_start and window_end are written in (default ms). */
void tlm_window_set_unit(struct tlm_window *w, enum tlm_time_unit unit);

/* Adds an event at ts, the watermark being wm (before this event). keys[i] is the raw
 * value of key field i (TLM_JNONE = absent, written null); vals/partial are handed to
 * tlm_aggs_add. Rows due at once (a revision of a fired window) are appended to out and
 * counted in *rows. Returns 0 when added, 1 when the event is late (in no window that is
 * still kept), or a negative code with err filled. */
struct tlm_window_hint;
int tlm_window_add(struct tlm_window *w, const struct tlm_jval *keys,
                   const struct tlm_jval *vals, json_t *partial, tlm_time_t ts,
                   tlm_time_t wm, struct tlm_buf *out, long *rows, struct tlm_error *err);
/* The same, for an event whose read-ahead passes (below) were made with hint: the key
 * text and hash rendered in pass 0 are used instead of rendering and hashing again. */
int tlm_window_add_hinted(struct tlm_window *w, const struct tlm_window_hint *hint,
                          const struct tlm_jval *keys, const struct tlm_jval *vals,
                          json_t *partial, tlm_time_t ts, tlm_time_t wm, struct tlm_buf *out,
                          long *rows, struct tlm_error *err);

/* Read-ahead hint for an event that tlm_window_add will get soon (keys as for
 * tlm_window_add): call with pass 0 to TLM_WINDOW_PREFETCH_PASSES - 1 in turn, other
 * events' calls in between, with no change to w between the passes of one event. It
 * only reads the engine and prefetches what the add will touch: the key's table slot
 * (0), the key (1), its newest windows, as many as cover one event (size / every), and
 * their state blocks (2), the sketches those states point to (3), the buffer slots
 * those sketches write next (4). hint carries state between the passes. */
struct tlm_window_hint {
    uint64_t hash;
    const void *p;
    uint32_t len;  /* length of the key text in text, 0 when pass 0 did not keep it */
    char text[52]; /* the rendered key (a longer one is not kept) */
};
#define TLM_WINDOW_PREFETCH_PASSES 5
void tlm_window_prefetch(struct tlm_window *w, const struct tlm_jval *keys, int pass,
                         struct tlm_window_hint *hint);

/* The watermark moved to wm: fires what it closes, emits early results, frees windows
 * past their lateness. Rows go to out, counted in *rows. */
int tlm_window_advance(struct tlm_window *w, tlm_time_t wm, struct tlm_buf *out, long *rows,
                       struct tlm_error *err);

/* Time has ended: fires every open window. */
int tlm_window_finish(struct tlm_window *w, struct tlm_buf *out, long *rows,
                      struct tlm_error *err);

/* Snapshots: each call to put(arg, line, n) is one record (a JSON object text). */
int tlm_window_save(struct tlm_window *w, int (*put)(void *arg, const char *line, size_t n),
                    void *arg, struct tlm_error *err);
/* Restores one record written by tlm_window_save. */
int tlm_window_load(struct tlm_window *w, const json_t *rec, struct tlm_error *err);

/* Counters for --stats. */
struct tlm_window_stats {
    long long keys;          /* keys known */
    long long open;          /* windows kept */
    long long fired;         /* rows emitted */
    long long revisions;     /* rows that revised an earlier one */
    long long bytes;         /* memory held by keys and windows, sketches included */
};
void tlm_window_stats(const struct tlm_window *w, struct tlm_window_stats *s);

#endif
