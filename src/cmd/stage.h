/*
 * stage.h - the loop every NDJSON stage runs: read, validate, time, watermarks,
 * reject, checkpoint, signals, stats. A subcommand supplies callbacks (struct
 * stage_ops) and gets one call per event with the fields it asked for already
 * extracted from the raw line, and the line itself to pass through unchanged.
 *
 * What the loop does, in order, for each input line:
 *   - a blank line is skipped (counted);
 *   - a watermark record {"__watermark": ms} raises the stage's watermark, is passed to
 *     on_watermark and forwarded downstream (not handed to on_event);
 *   - any other line is validated and scanned in one pass; the time field is converted;
 *     a line that is not a JSON object, or lacks a usable time when the stage needs one,
 *     is rejected (--reject file or stderr; --strict makes it fatal);
 *   - on_event gets the event, then the watermark advances (late = at or below the
 *     watermark before this event) and on_watermark is called when it moved.
 * Between lines it snapshots on --checkpoint-interval, reloads on SIGHUP, and on a
 * live input idle for --idle-timeout advances time by the wall clock. At the end of
 * input it calls on_end (time has ended) or, with --state, writes a snapshot instead;
 * SIGINT and SIGTERM snapshot (with --state) and stop.
 *
 * Kafka (configure --with-kafka): `-i kafka://...` makes the loop a consumer-group member
 * (one state, watermark and snapshot file per partition, offsets in the snapshots, see
 * stage.c), and `-o kafka://...` produces the output lines to a topic.
 */
#ifndef TELEM_STAGE_H
#define TELEM_STAGE_H

#include <jansson.h>
#include <stdint.h>

#include "cli.h"
#include "jscan.h"
#include "path.h"
#include "snapshot.h"
#include "time.h"
#include "writer.h"

struct stage;

/* The read end of the self-pipe the stage's signal handlers write to (created on the
 * first call): a command that waits on a descriptor of its own (a listener, a second
 * input) polls it too, so that SIGTERM or SIGHUP arriving just before the wait is seen.
 * Never read it: the stage empties it. -1 if no pipe could be made. */
int stage_wake_fd(void);

/* Most lines read ahead and scanned before they are processed (see stage_ops.prefetch
 * and stage_ops.batch); the default batch is 16. */
#define STAGE_BATCH 64

/* A line source other than files and stdin (ingest --listen). Its lines are live: the
 * input position is not recorded in snapshots and nothing is resumed. */
struct stage_source {
    void *ctx;
    /* As tlm_reader_next, except that it never ends (0 is never returned), and that
     * TLM_EPARSE / TLM_ERANGE report a bad record of the source (a client that closed
     * inside a line) which the stage rejects like a bad line. */
    int (*next)(void *ctx, const char **line, size_t *len, int timeout_ms,
                struct tlm_error *err);
    const char *(*name)(void *ctx);     /* source of the last line, borrowed */
    long long (*line)(void *ctx);       /* its line number */
    void (*on_block)(void *ctx, int (*fn)(void *), void *arg);
};

struct stage_event {
    const char *line;              /* the raw line, borrowed for the call */
    size_t len;
    const struct tlm_jval *vals;   /* vals[i] for ops->paths[i] */
    tlm_time_t ts;                 /* event time (when the stage needs time) */
    const struct tlm_jval *time_val; /* the time field's value span, or NULL */
    int late;                      /* at or below the watermark before this event */
};

struct stage_ops {
    const char *name;              /* command name, recorded in snapshots */
    const struct tlm_path *paths;  /* fields on_event reads, besides the time field */
    size_t npaths;
    int needs_time;                /* extract and require --time-field */
    void *ctx;                     /* handed back to every callback */

    const struct stage_source *source; /* NULL: read -i files / operands / stdin */

    /* For input that is not NDJSON: turns one raw line into zero or more NDJSON event
     * lines appended to out (each ending in "\n"), which then go through the event path
     * (validation, time, on_event) one by one. Returns the number appended, or a
     * negative code with err filled (column and reason) to reject the raw line.
     * NULL: lines are NDJSON events. */
    int (*convert)(void *ctx, struct stage *st, const char *line, size_t len,
                   struct tlm_buf *out, struct tlm_error *err);
    /* The raw lines are a format of their own (CSV, tokens...), not NDJSON: they hold
     * no watermark records, convert writes valid JSON objects only (our own writer), so
     * when the stage reads no field of them (no time, no paths) they skip the
     * validating scan, and convert_end is also called between input files. */
    int convert_foreign;
    /* End of input for convert (a record still open). May be NULL. */
    int (*convert_end)(void *ctx, struct stage *st, struct tlm_buf *out, struct tlm_error *err);

    /* Optional read-ahead hint (a speed-up only; it must not change any result). When
     * set, the loop reads up to batch lines that are already buffered (never
     * waiting for more input), scans them, calls prefetch for each event line of the
     * batch in prefetch_passes rounds (pass 0, 1, ...; slot is the line's index in the
     * batch, < STAGE_BATCH), and only then hands the lines to on_event one by one, in
     * order. ev->ts and ev->late are not set yet; ev->vals are. The hook may only read
     * the stage's state and issue prefetches. May be NULL. */
    void (*prefetch)(void *ctx, const struct stage_event *ev, size_t slot, int pass);
    int prefetch_passes;
    /* Lines per read-ahead batch, 1 .. STAGE_BATCH (0: 16). Longer batches give the
     * prefetches more time to land, and cost cache room for the batch's own lines. */
    int batch;
    /* One event. Return 0; or 1 after stage_reject() to count it as rejected; or a
     * negative code with err filled to stop with an error. */
    int (*on_event)(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err);
    /* The watermark moved to wm (fire what it closes). May be NULL. */
    int (*on_watermark)(void *ctx, struct stage *st, tlm_time_t wm, struct tlm_error *err);
    /* End of input without --state: time has ended. May be NULL. */
    int (*on_end)(void *ctx, struct stage *st, struct tlm_error *err);
    /* Output is being flushed because input is idle (and at exit): flush side files.
     * May be NULL. */
    int (*on_flush)(void *ctx);
    /* SIGHUP. May be NULL. */
    int (*on_reload)(void *ctx, struct stage *st, struct tlm_error *err);
    /* The options that shape the state (new reference, caller owns); NULL = none. */
    json_t *(*shape)(void *ctx);
    /* Write state records / read one back. May be NULL for stateless stages. */
    int (*save)(void *ctx, struct tlm_snap_writer *w, struct tlm_error *err);
    int (*load)(void *ctx, json_t *rec, struct tlm_error *err);
    /* The watermark written downstream when the stage's own is wm: a stage that holds
     * events back and writes them later (a join) returns a lower time, so that what it
     * writes is never late downstream. May be NULL (wm itself). */
    tlm_time_t (*hold)(void *ctx, tlm_time_t wm);
    /* Extra counters for --stats and `telem inspect`: add fields to obj. May be NULL. */
    void (*stats)(void *ctx, json_t *obj);

    /* State per Kafka partition (-i kafka://...; see telem(1), KAFKA). part_new returns
     * a new empty state with the stage's options (NULL on OOM), part_swap installs part
     * as the state the other callbacks work on and returns the one it replaces,
     * part_free frees a state part_new made. The loop installs the state of each
     * message's partition before on_event, and saves, loads and ends each partition's
     * state apart. All NULL: one state for all partitions (a stage without keyed state). */
    void *(*part_new)(void *ctx);
    void *(*part_swap)(void *ctx, void *part);
    void (*part_free)(void *ctx, void *part);
};

/* Runs the stage over common's inputs to common's output. Returns the exit status. */
int stage_run(const struct cli_common *common, const struct stage_ops *ops);

/* The output writer (append rows to st's writer, then stage_end_row). */
struct tlm_writer *stage_out(struct stage *st);
int stage_end_row(struct stage *st, struct tlm_error *err);
/* After appending n complete rows to stage_out(st)->buf directly: counts them and
 * flushes past the high mark. */
int stage_rows(struct stage *st, long n, struct tlm_error *err);
/* Was the state restored from a snapshot? */
int stage_restored(const struct stage *st);
/* Writes the current line unchanged to the output. */
int stage_pass(struct stage *st, const struct stage_event *ev, struct tlm_error *err);
/* Rejects the current line with a reason (printf-style). Returns 1 (on_event's "rejected"). */
int stage_reject(struct stage *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports one bad record inside the current raw line (a bad token among good ones) at
 * a column of the line lines_back lines before the current one (a CSV record spanning
 * lines), without rejecting the rest of the line. Returns 0, or a negative code when
 * that is fatal (--strict) with err filled. */
int stage_report(struct stage *st, long lines_back, long column, const char *reason,
                 struct tlm_error *err);
/* Rejects a bad line of another input of the stage (the second stream of a join) as
 * bad lines of the main input are: to --reject (without an offset) or stderr, counted,
 * fatal with --strict (then returns a negative code with err filled; else 0). */
int stage_reject_other(struct stage *st, const char *source, long long line, long column,
                       const char *reason, const char *raw, size_t len, struct tlm_error *err);
/* With a kafka:// input and per-partition state: the partition whose state is installed
 * and the topic's partition count; returns 1. Otherwise returns 0. */
int stage_kafka_partition(const struct stage *st, int32_t *partition, int32_t *count);
/* The current watermark (TLM_TIME_MIN before any). */
tlm_time_t stage_watermark(const struct stage *st);
/* Where the current line came from: input name and line number. */
const char *stage_source_name(const struct stage *st);
long long stage_source_line(const struct stage *st);
/* The slot (0 .. STAGE_BATCH - 1) the event being handled had in the read-ahead passes
 * of ops->prefetch, or -1 when no pass was made for it: what the passes left for that
 * slot may then be used. */
int stage_prefetched_slot(const struct stage *st);
/* The time unit the input used for the time field (for printing times back in it). */
enum tlm_time_unit stage_time_unit(const struct stage *st);

#endif
