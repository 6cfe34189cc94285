/*
 * enrich_join.h - the event-time interval join of `telem enrich --join` (enrich_join.c).
 *
 * The stage loop reads the left stream (the main input); the join reads the right one
 * (a file or FIFO) with its own reader, pulled by event time: before a left event at
 * time L is handled, right events are read until one is later than L. Both sides are
 * buffered per key, sorted by time, until the watermark (the lower of both sides')
 * passes their bound; see man/telem-enrich.1, STREAM JOIN.
 */
#ifndef TELEM_ENRICH_JOIN_H
#define TELEM_ENRICH_JOIN_H

#include <jansson.h>

#include "cli.h"
#include "error.h"
#include "path.h"
#include "snapshot.h"
#include "stage.h"

struct join_opts {
    const char *path;                /* --join */
    int64_t lower, upper;            /* right.ts - left.ts in [lower, upper] (ns) */
    int bounds_set;                  /* which of --within (1), --lower (2), --upper (4) */
    const char *unjoined_path;       /* --unjoined, or NULL */
    long max_per_key;                /* --join-max */
    const struct tlm_path *key_path; /* the --on field of the left side (borrowed) */
    const struct tlm_path *right_key_path; /* of the right side (--on left=right) */
    const char *into, *prefix;       /* how the right event is added */
    const struct cli_common *common; /* time field, unit, max out of order */
};

struct join;

/* A side output file (--unmatched, --unjoined) as a snapshot saw it: a restart cuts it
 * back to that size, so that what a killed run wrote after the snapshot (and the restart
 * writes again) is not there twice, as the stage does for -o and --reject. */
struct side_mark {
    int have;
    long long size, dev, ino;
};
/* The record of w's size and identity (new reference, caller owns), or NULL. */
json_t *side_mark_json(struct tlm_writer *w);
/* Reads a record of side_mark_json into *m. */
void side_mark_read(json_t *rec, struct side_mark *m);
/* Opens path (appending when append) and cuts it back to *m when it is the same file. */
int side_open(const char *path, int append, const struct side_mark *m, struct tlm_writer **w,
              struct tlm_error *err);

/* Returns the join (caller owns; join_destroy) or NULL with err filled. */
struct join *join_create(const struct join_opts *o, struct tlm_error *err);
/* The watermark to write downstream when the left side's is wm: the lower of both
 * sides', less max(upper, 0), so that no pair written later is late (stage_ops.hold). */
tlm_time_t join_hold(const struct join *j, tlm_time_t wm);
int join_event(struct join *j, struct stage *st, const struct stage_event *ev,
               struct tlm_error *err);
int join_watermark(struct join *j, struct stage *st, tlm_time_t wm, struct tlm_error *err);
int join_end(struct join *j, struct stage *st, struct tlm_error *err);
int join_flush(struct join *j);
int join_save(struct join *j, struct tlm_snap_writer *w, struct tlm_error *err);
int join_load(struct join *j, json_t *rec, struct tlm_error *err);
void join_stats(struct join *j, json_t *o);
/* Closes the side output and frees j (NULL is fine). Returns 0 or the close's error. */
int join_destroy(struct join *j, struct tlm_error *err);

#endif
