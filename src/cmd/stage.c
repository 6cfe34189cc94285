/*
 * stage.c - the shared main loop of the NDJSON stages (see stage.h).
 *
 * The hot path per line is: memchr (reader), one validating scan that also extracts
 * the requested fields (jscan), the callback, and a memcpy into the output buffer for
 * events passed through. Nothing here builds a jansson DOM per event.
 *
 * Read-ahead (stages with ops->prefetch, reading files or stdin without convert): the
 * loop copies up to ops->batch lines the reader already has (the first one may be
 * waited for as usual; the others are taken only when they need no waiting, so a live
 * pipe still sees each line handled at once), scans them all, lets the stage prefetch
 * the memory each event will touch, then handles them strictly in order exactly as
 * single lines. Each batch line keeps its own source, line number and offset for
 * rejects. Signals, checkpoints and stop requests are looked at between batches only,
 * so a snapshot's input position is always right after a fully handled batch.
 *
 * Kafka input (-i kafka://..., the section "Kafka" below) is a line source whose lines
 * each belong to a partition. Each assigned partition has its own watermark, its own
 * state (ops->part_new, installed with ops->part_swap before its messages are handled)
 * and its own snapshot file, <state>.p<N>, holding the offset of its next message: so a
 * partition's output depends only on its own messages, whichever copy of the pipeline
 * owns it and however often it moves. A partition's snapshot is written at every
 * checkpoint and when the group revokes it, always after the output that came before it
 * is written (and, for a Kafka output, acknowledged); only then is its offset committed
 * to the group. A partition gained is loaded from its snapshot and read from its offset.
 * The watermark written downstream is the minimum over the partitions that are not idle
 * (no message for --idle-timeout).
 */
#include "stage.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "jwrite.h"
#include "reader.h"
#ifdef HAVE_KAFKA
#include "kafka.h"
#endif

static volatile sig_atomic_t got_stop;   /* SIGINT or SIGTERM: number of the signal */
static volatile sig_atomic_t got_reload; /* SIGHUP */

/* A line of the read-ahead batch (its bytes are in stage.bbuf at off, NUL-terminated). */
struct bline {
    size_t off, len;
    const char *src;                 /* where it came from (borrowed from the reader) */
    long long line, offset;
    int scanned;                     /* 0: not scanned, 1: scanned (vals), 2: scan failed */
    int prefetched;                  /* ops->prefetch made its passes for this line */
};

struct stage {
    const struct cli_common *c;
    const struct stage_ops *ops;
    struct tlm_reader *in;
    struct tlm_writer *out;
    struct tlm_writer *rej;          /* --reject, or NULL for stderr */
    struct tlm_jscan *scan;
    struct tlm_path *paths;          /* time field (if needed) + ops->paths */
    size_t npaths;
    struct tlm_jval *vals;
    struct tlm_path time_path;
    struct tlm_wm wm;
    tlm_time_t wm_emitted;           /* last watermark written downstream */
    enum tlm_time_unit unit_seen;    /* unit of the first numeric time */
    struct tlm_error lerr;           /* reason of the current line's rejection */
    const struct stage_source *src;  /* ops->source, or NULL for the reader */
    struct tlm_buf conv;             /* events converted from the current raw line */
    long long bad_line;              /* line number of a bad record elsewhere, or 0 */
    const char *bad_source;          /* its source (a socket client), or NULL */
    int bad_other;                   /* the bad line is of another input: no offset */
    int cur_input;                   /* index of the input the last line came from */
    const char *prev_src;            /* input name and line of the last raw line handled */
    long long prev_line;
    const char *fin_src;             /* while finishing an input: where it ended */
    long long fin_line;
    const char *cur_line;            /* the raw line being handled */
    size_t cur_len;
    int batching;                    /* read-ahead batches (ops->prefetch) */
    struct tlm_buf bbuf;             /* the batch's lines */
    struct bline blines[STAGE_BATCH];
    size_t batch;                    /* lines per read-ahead batch (ops->batch) */
    struct tlm_jval *bvals;          /* batch * npaths scanned values */
    const struct bline *bcur;        /* the batch line being handled, or NULL */
    struct tlm_error plerr;          /* scratch for read-ahead scans */
    int restored;
    json_t *outputs;                 /* the restored snapshot's output sizes, or NULL */
#ifdef HAVE_KAFKA
    struct tlm_kafka_in *kin;        /* -i kafka://..., or NULL */
    struct tlm_kafka_out *kout;      /* -o kafka://..., or NULL */
    struct stage_source ksrc;        /* kin as the line source */
    struct kpart *kp;                /* by partition number */
    int32_t nkp;
    int32_t kcur;                    /* partition whose state and watermark are installed, or -1 */
    void *korig;                     /* the state ops->ctx had before any partition's */
    tlm_time_t kwm_fired;            /* one state for all: the watermark it was given last */
    long long koffset;               /* offset of the current message */
    double kfirst;                   /* wall clock of the first message, 0 before */
    char kname[640];                 /* source name of the current message (k_name) */
    tlm_reader_block_fn kblock;      /* flush before waiting */
    void *kblock_arg;
#endif

    /* counters of this run */
    long long lines, blank, events, rejected, late, wm_in, wm_out, checkpoints;

    /* wall clock */
    double t_start, t_last_event, t_last_checkpoint, t_last_progress;
    long long progress_events;
};

/* The self-pipe the handlers write to, so that a wait that starts just after a signal
 * (the flags checked, then poll) still ends: readers and listeners poll its read end. */
static int wake_pipe[2] = { -1, -1 };

int stage_wake_fd(void)
{
    if (wake_pipe[0] >= 0)
        return wake_pipe[0];
    if (pipe(wake_pipe) != 0) {
        wake_pipe[0] = wake_pipe[1] = -1;
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(wake_pipe[i], F_SETFL, fcntl(wake_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    return wake_pipe[0];
}

static void wake(void)
{
    int e = errno;
    if (wake_pipe[1] >= 0 && write(wake_pipe[1], "", 1) < 0) {
        /* full: a byte is already waiting, which is all a wake needs */
    }
    errno = e;
}

/* Empties the self-pipe once the flags it woke for are handled. */
static void wake_drain(void)
{
    char b[64];
    while (wake_pipe[0] >= 0 && read(wake_pipe[0], b, sizeof(b)) > 0) {
    }
}

static void on_stop(int sig)
{
    got_stop = sig;
    wake();
}

static void on_hup(int sig)
{
    (void)sig;
    got_reload = 1;
    wake();
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the input: the reader, or a custom source ------------------------------------ */

const char *stage_source_name(const struct stage *st)
{
    if (st->fin_src)
        return st->fin_src;
    if (st->bcur)
        return st->bcur->src;
    return st->src ? st->src->name(st->src->ctx) : tlm_reader_source(st->in);
}

long long stage_source_line(const struct stage *st)
{
    if (st->fin_src)
        return st->fin_line;
    if (st->bcur)
        return st->bcur->line;
    return st->src ? st->src->line(st->src->ctx) : tlm_reader_line(st->in);
}

int stage_prefetched_slot(const struct stage *st)
{
    return st->bcur && st->bcur->prefetched ? (int)(st->bcur - st->blines) : -1;
}

static long long source_offset(const struct stage *st)
{
    if (st->bcur)
        return st->bcur->offset;
    return st->src ? -1 : tlm_reader_offset(st->in);
}

/* ---- helpers for the commands ----------------------------------------------------- */

struct tlm_writer *stage_out(struct stage *st)
{
    return st->out;
}

int stage_end_row(struct stage *st, struct tlm_error *err)
{
    return tlm_writer_end_line(st->out, err);
}

int stage_rows(struct stage *st, long n, struct tlm_error *err)
{
    st->out->lines += n;
    return st->out->buf.len >= TLM_WRITER_HIGH ? tlm_writer_flush(st->out, err) : 0;
}

int stage_restored(const struct stage *st)
{
    return st->restored;
}

int stage_pass(struct stage *st, const struct stage_event *ev, struct tlm_error *err)
{
    return tlm_writer_line(st->out, ev->line, ev->len, err);
}

int stage_kafka_partition(const struct stage *st, int32_t *partition, int32_t *count)
{
#ifdef HAVE_KAFKA
    if (st->kin && st->ops->part_swap && st->kcur >= 0) {
        *partition = st->kcur;
        *count = tlm_kafka_in_partitions(st->kin);
        return 1;
    }
#endif
    (void)st;
    (void)partition;
    (void)count;
    return 0;
}

tlm_time_t stage_watermark(const struct stage *st)
{
    return st->wm.wm;
}

enum tlm_time_unit stage_time_unit(const struct stage *st)
{
    if (st->c->time_unit != TLM_UNIT_AUTO)
        return st->c->time_unit;
    return st->unit_seen != TLM_UNIT_AUTO ? st->unit_seen : TLM_UNIT_MS;
}

int stage_reject(struct stage *st, const char *fmt, ...)
{
    va_list ap;
    st->lerr.code = TLM_EPARSE;
    st->lerr.column = 0;
    va_start(ap, fmt);
    vsnprintf(st->lerr.text, sizeof(st->lerr.text), fmt, ap);
    va_end(ap);
    return 1;
}

/* Writes a rejected line to --reject (NDJSON) or stderr. Returns 0 or a fatal code. */
static int reject_line(struct stage *st, const char *line, size_t len, struct tlm_error *err)
{
    const char *src = st->bad_source ? st->bad_source : stage_source_name(st);
    long long lineno = st->bad_line ? st->bad_line : stage_source_line(st);
    st->rejected++;
    if (st->c->strict) {
        *err = st->lerr;
        tlm_error_at(err, src, lineno, st->lerr.column, source_offset(st));
        return TLM_EPARSE;
    }
    if (!st->rej) {
        char where[64];
        if (st->lerr.column > 0)
            snprintf(where, sizeof(where), "%lld:%ld", lineno, st->lerr.column);
        else
            snprintf(where, sizeof(where), "%lld", lineno);
        fflush(stdout);
        fprintf(stderr, "%s: %s:%s: %s\n", cli_progname(), src, where, st->lerr.text);
        return 0;
    }
    struct tlm_buf *b = &st->rej->buf;
    int rc = tlm_buf_puts(b, "{\"source\":");
    rc |= tlm_json_put_string(b, src, strlen(src));
    rc |= tlm_buf_printf(b, ",\"line\":%lld", lineno);
    if (!st->bad_other && source_offset(st) >= 0)
        rc |= tlm_buf_printf(b, ",\"offset\":%lld", source_offset(st));
    if (st->lerr.column > 0)
        rc |= tlm_buf_printf(b, ",\"column\":%ld", st->lerr.column);
    rc |= tlm_buf_puts(b, ",\"reason\":");
    rc |= tlm_json_put_string(b, st->lerr.text, strlen(st->lerr.text));
    rc |= tlm_buf_puts(b, ",\"raw\":");
    if (tlm_json_put_string(b, line, len) != 0) {
        /* not UTF-8: keep the bytes recoverable as latin-1 code points */
        rc |= tlm_buf_putc(b, '"');
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)line[i];
            if (ch < 0x20 || ch == '"' || ch == '\\' || ch >= 0x7f)
                rc |= tlm_buf_printf(b, "\\u%04x", ch);
            else
                rc |= tlm_buf_putc(b, (char)ch);
        }
        rc |= tlm_buf_putc(b, '"');
        rc |= tlm_buf_puts(b, ",\"raw_encoding\":\"latin1\"");
    }
    rc |= tlm_buf_puts(b, "}\n");
    if (rc)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return tlm_writer_end_line(st->rej, err);
}

int stage_report(struct stage *st, long lines_back, long column, const char *reason,
                 struct tlm_error *err)
{
    int rc;
    st->lerr.code = TLM_EPARSE;
    st->lerr.column = column;
    snprintf(st->lerr.text, sizeof(st->lerr.text), "%s", reason);
    if (lines_back > 0 && stage_source_line(st) > lines_back)
        st->bad_line = stage_source_line(st) - lines_back;
    rc = reject_line(st, st->cur_line, st->cur_len, err);
    st->bad_line = 0;
    return rc;
}

int stage_reject_other(struct stage *st, const char *source, long long line, long column,
                       const char *reason, const char *raw, size_t len, struct tlm_error *err)
{
    int rc;
    st->lerr.code = TLM_EPARSE;
    st->lerr.column = column;
    snprintf(st->lerr.text, sizeof(st->lerr.text), "%s", reason);
    st->bad_source = source;
    st->bad_line = line;
    st->bad_other = 1;
    rc = reject_line(st, raw, len, err);
    st->bad_source = NULL;
    st->bad_line = 0;
    st->bad_other = 0;
    return rc;
}

/* The watermark to write downstream: the stage's own, or what ops->hold makes of it. */
static tlm_time_t held(const struct stage *st)
{
    tlm_time_t wm = st->wm.wm;
    if (st->ops->hold && wm != TLM_TIME_MIN)
        wm = st->ops->hold(st->ops->ctx, wm);
    return wm;
}

static int put_watermark(struct stage *st, tlm_time_t wm, struct tlm_error *err)
{
    if (st->c->no_watermarks || wm == TLM_TIME_MIN || wm <= st->wm_emitted)
        return 0;
    struct tlm_buf *b = &st->out->buf;
    if (tlm_buf_printf(b, "{\"__watermark\":%lld}", tlm_time_to_unit(wm, TLM_UNIT_MS)))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    st->wm_emitted = wm;
    st->wm_out++;
    if (tlm_buf_putc(b, '\n'))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return tlm_writer_end_line(st->out, err);
}

#ifdef HAVE_KAFKA
static int k_advanced(struct stage *st, int force_emit, struct tlm_error *err);
#endif

/* The watermark moved: let the stage fire, then tell downstream when it moved enough. */
static int advanced(struct stage *st, int force_emit, struct tlm_error *err)
{
    int rc = 0;
#ifdef HAVE_KAFKA
    if (st->kin)
        return k_advanced(st, force_emit, err);
#endif
    if (st->ops->on_watermark && (rc = st->ops->on_watermark(st->ops->ctx, st, st->wm.wm, err)))
        return rc;
    tlm_time_t wm = held(st);
    if (force_emit || st->wm_emitted == TLM_TIME_MIN ||
        (wm != TLM_TIME_MIN && wm - st->wm_emitted >= st->c->watermark_interval))
        rc = put_watermark(st, wm, err);
    return rc;
}

/* ---- time field ------------------------------------------------------------------- */

static int event_time(struct stage *st, const struct tlm_jval *v, tlm_time_t *ts)
{
    struct tlm_error e;
    long long i;
    double d;
    tlm_error_clear(&e);
    switch (v->type) {
    case TLM_JINT:
        if (tlm_jval_int64(v, &i) == 0) {
            if (st->unit_seen == TLM_UNIT_AUTO)
                st->unit_seen = tlm_time_unit_guess((double)i);
            if (tlm_time_from_int(i, st->c->time_unit, ts, &e) == 0)
                return 0;
        }
        break;
    case TLM_JREAL:
        if (tlm_jval_double(v, &d) == 0) {
            if (st->unit_seen == TLM_UNIT_AUTO)
                st->unit_seen = tlm_time_unit_guess(d);
            if (tlm_time_from_double(d, st->c->time_unit, ts, &e) == 0)
                return 0;
        }
        break;
    case TLM_JSTRING: {
        struct tlm_buf s = TLM_BUF_INIT;
        int rc = tlm_jval_string(v, &s);
        if (rc == 0)
            rc = tlm_time_parse_rfc3339(s.data ? s.data : "", s.len, ts, &e);
        tlm_buf_free(&s);
        if (rc == 0)
            return 0;
        break;
    }
    case TLM_JNONE:
        return stage_reject(st, "no time field '%s'", st->c->time_field);
    default:
        return stage_reject(st, "time field '%s' is not a number or an RFC 3339 string",
                            st->c->time_field);
    }
    return stage_reject(st, "time field '%s': %s", st->c->time_field,
                        e.text[0] ? e.text : "unusable value");
}

/* ---- snapshots -------------------------------------------------------------------- */

static json_t *stats_json(struct stage *st)
{
    json_t *o = json_pack("{sIsIsIsIsIsIsI}", "lines", (json_int_t)st->lines, "blank",
                          (json_int_t)st->blank, "events", (json_int_t)st->events, "rejected",
                          (json_int_t)st->rejected, "late", (json_int_t)st->late,
                          "watermarks_in", (json_int_t)st->wm_in, "watermarks_out",
                          (json_int_t)st->wm_out);
    if (o)
        json_object_set_new(o, "lines_out", json_integer(st->out ? st->out->lines : 0));
    if (o && st->ops->stats)
        st->ops->stats(st->ops->ctx, o);
#ifdef HAVE_KAFKA
    /* joining the group and being assigned partitions takes seconds: say how many */
    if (o && st->kin && st->kfirst)
        json_object_set_new(o, "kafka_first_message_s",
                            json_real((double)(long long)((st->kfirst - st->t_start) * 1000) / 1000));
#endif
    return o;
}

/* The options that shape the state: the stage's own, plus event-time settings when
 * the stage reads time (a changed unit or delay would change what a snapshot means). */
static json_t *stage_shape(struct stage *st)
{
    json_t *o = st->ops->shape ? st->ops->shape(st->ops->ctx) : json_object();
    if (o && st->ops->needs_time) {
        char d[48];
        json_object_set_new(o, "time_field", json_string(st->c->time_field));
        json_object_set_new(o, "time_unit", json_string(tlm_time_unit_name(st->c->time_unit)));
        json_object_set_new(o, "max_out_of_order",
                            json_string(tlm_duration_format(st->c->max_out_of_order, d, sizeof(d))));
    }
    return o;
}

#ifdef HAVE_KAFKA
static int k_save_parts(struct stage *st, int final, struct tlm_error *err);
#endif

/* The size and identity of the file outputs (-o, --reject), for a restart to cut them back
 * to (new reference, or NULL). */
static json_t *outputs_json(struct stage *st)
{
    json_t *outs = json_object();
    struct tlm_writer *ws[2] = { st->out, st->rej };
    const char *names[2] = { "output", "reject" };
    for (int i = 0; i < 2 && outs; i++) {
        struct stat sb;
        if (ws[i] && ws[i]->is_file && fstat(ws[i]->fd, &sb) == 0)
            json_object_set_new(outs, names[i],
                                json_pack("{sIsIsI}", "size", (json_int_t)sb.st_size, "dev",
                                          (json_int_t)sb.st_dev, "ino", (json_int_t)sb.st_ino));
    }
    return outs;
}

/* final: the snapshot written as the run ends cleanly (end of input, SIGINT, SIGTERM);
 * nothing is written after it, so a restart from it has no output to take back. */
static int save_snapshot(struct stage *st, int final, struct tlm_error *err)
{
    struct tlm_reader_pos pos;
    char created[48];
    struct timespec now;
    json_t *h, *shape;
    struct tlm_snap_writer *w;
    int rc;

    /* output first: a snapshot must never cover rows that were not yet written */
    if ((rc = tlm_writer_sync(st->out, err)) || (st->rej && (rc = tlm_writer_sync(st->rej, err))))
        return rc;
#ifdef HAVE_KAFKA
    if (st->kout && (rc = tlm_kafka_out_sync(st->kout, st->out->written, err)))
        return rc;
    if (st->kin && st->ops->part_swap)
        return k_save_parts(st, final, err);
#endif
    tlm_reader_pos(st->in, &pos);
    clock_gettime(CLOCK_REALTIME, &now);
    tlm_time_format_rfc3339((tlm_time_t)now.tv_sec * TLM_NS_PER_S, created, sizeof(created));
    shape = stage_shape(st);
    h = json_pack("{sssssssos{sisssIsIsIsI}s{sIsIsI}ss}", "command", st->ops->name,
                  "telem_version", PACKAGE_VERSION, "created", created, "options", shape,
                  "input", "index", pos.input, "name", pos.name, "offset", (json_int_t)pos.offset,
                  "line", (json_int_t)pos.line, "prefix_len", (json_int_t)pos.prefix_len,
                  "prefix_hash", (json_int_t)pos.prefix_hash,
                  "time", "max_ns", (json_int_t)st->wm.max_ts, "watermark_ns",
                  (json_int_t)st->wm.wm, "emitted_ns", (json_int_t)st->wm_emitted,
                  "time_unit", tlm_time_unit_name(st->unit_seen));
    if (!h)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    /* the size of file outputs: a restart cuts them back to it, so that what was
     * written after this snapshot (and is written again) is not there twice */
    {
        json_t *outs = outputs_json(st);
        if (outs)
            json_object_set_new(h, "outputs", outs);
        json_object_set_new(h, "final", json_boolean(final));
    }
    json_t *s = stats_json(st);
    if (s)
        json_object_set_new(h, "stats", s);
    w = tlm_snap_create(st->c->state, h, err);
    json_decref(h);
    if (!w)
        return err ? err->code : TLM_EIO;
    if (st->ops->save && (rc = st->ops->save(st->ops->ctx, w, err))) {
        tlm_snap_abort(w);
        return rc;
    }
    if ((rc = tlm_snap_commit(w, err)))
        return rc;
    st->checkpoints++;
#ifdef HAVE_KAFKA
    if (st->kin)
        return k_save_parts(st, final, err);
#endif
    return 0;
}

static int restore_snapshot(struct stage *st, struct tlm_error *err)
{
    json_t *h = NULL, *rec, *shape, *in, *tm;
    struct tlm_snap_reader *r = tlm_snap_open(st->c->state, &h, err);
    struct tlm_reader_pos pos;
    int rc;
    if (!r)
        return err->code == TLM_ENOTFOUND ? 0 : err->code;
    shape = stage_shape(st);
    const char *cmd = json_string_value(json_object_get(h, "command"));
    if (!cmd || strcmp(cmd, st->ops->name) != 0) {
        rc = tlm_error_set(err, TLM_ESTATE, "snapshot was written by 'telem %s', not 'telem %s'",
                           cmd ? cmd : "?", st->ops->name);
        goto out;
    }
    if ((rc = tlm_snap_check_options(h, shape, err))) {
        tlm_error_at(err, st->c->state, 0, 0, -1);
        goto out;
    }
    in = json_object_get(h, "input");
    tm = json_object_get(h, "time");
    memset(&pos, 0, sizeof(pos));
    if (json_unpack(in, "{sisssIsIsIsI}", "index", &pos.input, "name", &cmd, "offset",
                    &pos.offset, "line", &pos.line, "prefix_len", &pos.prefix_len,
                    "prefix_hash", &pos.prefix_hash) ||
        json_unpack(tm, "{sIsIsI}", "max_ns", &st->wm.max_ts, "watermark_ns", &st->wm.wm,
                    "emitted_ns", &st->wm_emitted)) {
        rc = tlm_error_set(err, TLM_ESTATE, "snapshot header lacks its input position or time");
        tlm_error_at(err, st->c->state, 1, 0, -1);
        goto out;
    }
    snprintf(pos.name, sizeof(pos.name), "%s", cmd);
    /* only a run that did not end cleanly left output after its last snapshot; after a
     * clean end the files are left alone (whatever was appended since stays) */
    if (!json_is_true(json_object_get(h, "final")))
        st->outputs = json_incref(json_object_get(h, "outputs"));
    tlm_time_unit_parse(json_string_value(json_object_get(h, "time_unit")) ?: "auto",
                        &st->unit_seen, NULL);
    while ((rc = tlm_snap_next(r, &rec, err)) == 1) {
        rc = st->ops->load ? st->ops->load(st->ops->ctx, rec, err)
                           : tlm_error_set(err, TLM_ESTATE, "unexpected state record");
        json_decref(rec);
        if (rc) {
            tlm_error_at(err, st->c->state, 0, 0, -1);
            goto out;
        }
    }
    if (rc == 0) {
        if (!st->src)
            tlm_reader_resume(st->in, &pos);
        st->restored = 1;
    }
out:
    json_decref(shape);
    json_decref(h);
    tlm_snap_close(r);
    return rc;
}


/* ---- Kafka: partitions, their state, watermarks and snapshots --------------------- */

#ifdef HAVE_KAFKA
struct kpart {
    int live;                        /* assigned to this copy */
    void *state;                     /* ops->part_new's state, or NULL */
    struct tlm_wm wm;                /* its watermark (in st->wm while it is installed) */
    int64_t next;                    /* offset of its next message, -1 before any */
    double t_last;                   /* wall clock of its last message */
};

static struct kpart *kpart_get(struct stage *st, int32_t p)
{
    if (p >= st->nkp) {
        int32_t n = p + 16;
        struct kpart *np = realloc(st->kp, (size_t)n * sizeof(*np));
        if (!np)
            return NULL;
        memset(np + st->nkp, 0, (size_t)(n - st->nkp) * sizeof(*np));
        st->kp = np;
        st->nkp = n;
    }
    return &st->kp[p];
}

/* Installs partition p's watermark and state (-1: none, the stage's own state). */
static void k_switch(struct stage *st, int32_t p)
{
    if (st->kcur == p)
        return;
    if (st->kcur >= 0)
        st->kp[st->kcur].wm = st->wm;
    if (p >= 0)
        st->wm = st->kp[p].wm;
    if (st->ops->part_swap) {
        void *prev = st->ops->part_swap(st->ops->ctx, p >= 0 ? st->kp[p].state : st->korig);
        if (st->kcur < 0)
            st->korig = prev;
    }
    st->kcur = p;
}

static const struct tlm_wm *k_wm(const struct stage *st, int32_t p)
{
    return p == st->kcur ? &st->wm : &st->kp[p].wm;
}

static void k_path(const struct stage *st, int32_t p, char *path, size_t n)
{
    snprintf(path, n, "%s.p%d", st->c->state, (int)p);
}

/* The mark of a file output of a copy reading Kafka: <state>.out-DEV-INO, a header-only
 * snapshot holding the file's size when the copy last snapshotted its partitions. */
static void k_mark_path(const struct stage *st, const struct stat *sb, char *path, size_t n)
{
    snprintf(path, n, "%s.out-%lld-%lld", st->c->state, (long long)sb->st_dev,
             (long long)sb->st_ino);
}

/* Writes the marks of the file outputs (already synced), just before the snapshots of
 * the partitions: a restart cuts each file back to its mark. */
static int k_mark_outputs(struct stage *st, int final, struct tlm_error *err)
{
    struct tlm_writer *ws[2] = { st->out, st->rej };
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        char path[4200];
        struct tlm_snap_writer *w;
        json_t *h;
        if (!ws[i] || !ws[i]->is_file || fstat(ws[i]->fd, &sb) != 0)
            continue;
        k_mark_path(st, &sb, path, sizeof(path));
        h = json_pack("{sss{sIsIsIss}sb}", "command", st->ops->name, "output", "size",
                      (json_int_t)sb.st_size, "dev", (json_int_t)sb.st_dev, "ino",
                      (json_int_t)sb.st_ino, "name", ws[i]->name, "final", final);
        if (!h)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        w = tlm_snap_create(path, h, err);
        json_decref(h);
        if (!w)
            return err ? err->code : TLM_EIO;
        if (tlm_snap_commit(w, err))
            return err->code;
    }
    return 0;
}

/* Writes partition p's snapshot (the output before it is already synced), then
 * commits its offset to the group. */
static int k_save_part(struct stage *st, int32_t p, int final, int commit, struct tlm_error *err)
{
    struct kpart *kp = &st->kp[p];
    const struct tlm_wm *wm = k_wm(st, p);
    char path[4200], created[48];
    struct timespec now;
    struct tlm_snap_writer *w;
    json_t *h;
    int rc;
    k_path(st, p, path, sizeof(path));
    clock_gettime(CLOCK_REALTIME, &now);
    tlm_time_format_rfc3339((tlm_time_t)now.tv_sec * TLM_NS_PER_S, created, sizeof(created));
    h = json_pack("{sssssssos{sssisI}s{sIsI}sssb}", "command", st->ops->name, "telem_version",
                  PACKAGE_VERSION, "created", created, "options", stage_shape(st), "kafka",
                  "topic", tlm_kafka_in_topic(st->kin), "partition", (int)p, "offset",
                  (json_int_t)kp->next, "time", "max_ns", (json_int_t)wm->max_ts,
                  "watermark_ns", (json_int_t)wm->wm, "time_unit",
                  tlm_time_unit_name(st->unit_seen), "final", final);
    if (!h)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    {
        json_t *outs = outputs_json(st);
        if (outs)
            json_object_set_new(h, "outputs", outs);
    }
    w = tlm_snap_create(path, h, err);
    json_decref(h);
    if (!w)
        return err ? err->code : TLM_EIO;
    if (st->ops->part_swap && st->ops->save) {
        int32_t was = st->kcur;
        k_switch(st, p);
        rc = st->ops->save(st->ops->ctx, w, err);
        k_switch(st, was);
        if (rc) {
            tlm_snap_abort(w);
            return rc;
        }
    }
    if ((rc = tlm_snap_commit(w, err)))
        return rc;
    if (commit && kp->next >= 0 && (rc = tlm_kafka_in_commit(st->kin, p, kp->next, err)))
        return rc;
    return 0;
}

static int k_save_parts(struct stage *st, int final, struct tlm_error *err)
{
    int rc;
    if ((rc = k_mark_outputs(st, final, err)))
        return rc;
    for (int32_t p = 0; p < st->nkp; p++)
        if (st->kp[p].live && (rc = k_save_part(st, p, final, 1, err)))
            return rc;
    if (st->ops->part_swap)
        st->checkpoints++;
    return 0;
}

/* Loads partition p's snapshot, if there is one: its state, watermark and offset. */
static int k_load_part(struct stage *st, int32_t p, struct tlm_error *err)
{
    char path[4200];
    json_t *h = NULL, *rec, *shape = NULL;
    struct tlm_snap_reader *r;
    struct kpart *kp = &st->kp[p];
    json_int_t off = -1, maxts, wmv;
    const char *cmd, *topic = NULL;
    int part = -1, rc;
    k_path(st, p, path, sizeof(path));
    if (!(r = tlm_snap_open(path, &h, err)))
        return err->code == TLM_ENOTFOUND ? 0 : err->code;
    shape = stage_shape(st);
    cmd = json_string_value(json_object_get(h, "command"));
    if (!cmd || strcmp(cmd, st->ops->name) != 0) {
        rc = tlm_error_set(err, TLM_ESTATE, "snapshot was written by 'telem %s', not 'telem %s'",
                           cmd ? cmd : "?", st->ops->name);
        goto out;
    }
    if ((rc = tlm_snap_check_options(h, shape, err)))
        goto out;
    if (json_unpack(h, "{s{sssisI}s{sIsI}}", "kafka", "topic", &topic, "partition", &part,
                    "offset", &off, "time", "max_ns", &maxts, "watermark_ns", &wmv) ||
        part != p || strcmp(topic, tlm_kafka_in_topic(st->kin)) != 0) {
        rc = tlm_error_set(err, TLM_ESTATE, "not the snapshot of partition %d of topic '%s'",
                           (int)p, tlm_kafka_in_topic(st->kin));
        goto out;
    }
    kp->next = off;
    kp->wm.max_ts = maxts;
    kp->wm.wm = wmv;
    if (st->kcur == p)
        st->wm = kp->wm;
    tlm_time_unit_parse(json_string_value(json_object_get(h, "time_unit")) ?: "auto",
                        &st->unit_seen, NULL);
    {
        int32_t was = st->kcur;
        k_switch(st, p);
        while ((rc = tlm_snap_next(r, &rec, err)) == 1) {
            rc = st->ops->part_swap && st->ops->load
                     ? st->ops->load(st->ops->ctx, rec, err)
                     : tlm_error_set(err, TLM_ESTATE, "unexpected state record");
            json_decref(rec);
            if (rc)
                break;
        }
        k_switch(st, was);
    }
    st->restored = 1;
out:
    if (rc)
        tlm_error_at(err, path, 0, 0, -1);
    json_decref(shape);
    json_decref(h);
    tlm_snap_close(r);
    return rc;
}

static int k_assigned(void *arg, int32_t p, int64_t *offset, struct tlm_error *err)
{
    struct stage *st = arg;
    struct kpart *kp = kpart_get(st, p);
    int rc;
    if (!kp)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    memset(kp, 0, sizeof(*kp));
    kp->live = 1;
    kp->next = -1;
    kp->t_last = now_s();
    tlm_wm_init(&kp->wm, st->c->max_out_of_order);
    if (st->ops->part_new && !(kp->state = st->ops->part_new(st->ops->ctx)))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (st->c->state && (rc = k_load_part(st, p, err)))
        return rc;
    /* at once a snapshot of it that names the output files as they are (all output so far
     * is synced: it came from partitions revoked before): a copy killed before its first
     * checkpoint cuts them back to here */
    if (st->c->state && st->out &&
        ((rc = tlm_writer_sync(st->out, err)) ||
         (st->rej && (rc = tlm_writer_sync(st->rej, err))) ||
         (st->kout && (rc = tlm_kafka_out_sync(st->kout, st->out->written, err))) ||
         (rc = k_mark_outputs(st, 0, err)) || (rc = k_save_part(st, p, 0, 0, err))))
        return rc;
    *offset = kp->next;
    return 0;
}

static int k_revoked(void *arg, int32_t p, struct tlm_error *err)
{
    struct stage *st = arg;
    struct kpart *kp = &st->kp[p];
    int rc;
    if (st->c->state) {
        /* its output first, then its snapshot (and offset) */
        if ((rc = tlm_writer_sync(st->out, err)) ||
            (st->rej && (rc = tlm_writer_sync(st->rej, err))) ||
            (st->kout && (rc = tlm_kafka_out_sync(st->kout, st->out->written, err))) ||
            (rc = k_mark_outputs(st, 0, err)) || (rc = k_save_part(st, p, 0, 1, err)))
            return rc;
    }
    if (st->kcur == p)
        k_switch(st, -1);
    if (kp->state && st->ops->part_free)
        st->ops->part_free(st->ops->ctx, kp->state);
    kp->state = NULL;
    kp->live = 0;
    return 0;
}

/* The stage's watermark: the least over the partitions that are not idle. */
static tlm_time_t k_min_wm(struct stage *st)
{
    tlm_time_t m = TLM_TIME_MAX;
    double now = st->c->idle_timeout ? now_s() : 0;
    for (int32_t p = 0; p < st->nkp; p++) {
        const struct kpart *kp = &st->kp[p];
        if (!kp->live || (st->c->idle_timeout &&
                          (now - kp->t_last) * 1e9 >= (double)st->c->idle_timeout))
            continue;
        if (k_wm(st, p)->wm < m)
            m = k_wm(st, p)->wm;
    }
    return m == TLM_TIME_MAX ? TLM_TIME_MIN : m;
}

static int k_advanced(struct stage *st, int force_emit, struct tlm_error *err)
{
    const struct stage_ops *ops = st->ops;
    tlm_time_t g = k_min_wm(st);
    int rc;
    /* per-partition state fires on its own partition's watermark; one shared state on
     * the stage's */
    if (ops->part_swap && st->kcur >= 0 && ops->on_watermark &&
        (rc = ops->on_watermark(ops->ctx, st, st->wm.wm, err)))
        return rc;
    if (g == TLM_TIME_MIN || (st->wm_emitted != TLM_TIME_MIN && g <= st->wm_emitted))
        return 0;
    if (!ops->part_swap && ops->on_watermark && g > st->kwm_fired) {
        st->kwm_fired = g;
        if ((rc = ops->on_watermark(ops->ctx, st, g, err)))
            return rc;
    }
    if (ops->hold) /* what the stage still holds back (enrich --join) */
        g = ops->hold(ops->ctx, g);
    if (force_emit || st->wm_emitted == TLM_TIME_MIN ||
        g - st->wm_emitted >= st->c->watermark_interval)
        return put_watermark(st, g, err);
    return 0;
}

static const char *k_name(void *ctx);

static int k_next(void *ctx, const char **line, size_t *len, int timeout_ms, struct tlm_error *err)
{
    struct stage *st = ctx;
    int32_t p;
    int64_t off;
    int rc;
    *line = NULL;
    rc = tlm_kafka_in_next(st->kin, line, len, &p, &off, 0, err);
    if (rc == TLM_EAGAIN && timeout_ms != 0) {
        if (st->kblock && (rc = st->kblock(st->kblock_arg)))
            return rc;
        rc = tlm_kafka_in_next(st->kin, line, len, &p, &off, timeout_ms, err);
    }
    if (rc != 1 && !(rc == TLM_EPARSE && *line))
        return rc;
    struct kpart *kp = &st->kp[p];
    if (!st->kfirst)
        st->kfirst = now_s();
    k_switch(st, p);
    kp->next = off + 1;
    if (st->c->idle_timeout)
        kp->t_last = now_s();
    st->koffset = off;
    if (rc != 1) /* a message the source could not make a line of: rejected at its offset */
        tlm_error_at(err, k_name(st), off, 0, -1);
    return rc;
}

static const char *k_name(void *ctx)
{
    struct stage *st = ctx;
    if (st->kcur < 0)
        return tlm_kafka_in_name(st->kin);
    snprintf(st->kname, sizeof(st->kname), "%s#%d", tlm_kafka_in_name(st->kin), (int)st->kcur);
    return st->kname;
}

static long long k_line(void *ctx)
{
    return ((struct stage *)ctx)->koffset;
}

static void k_on_block(void *ctx, int (*fn)(void *), void *arg)
{
    struct stage *st = ctx;
    st->kblock = fn;
    st->kblock_arg = arg;
}

/* Sets up -i kafka://... and -o kafka://... */
static int k_open(struct stage *st, struct tlm_error *err)
{
    const struct cli_common *c = st->c;
    for (size_t i = 0; i < c->ninputs; i++) {
        struct tlm_kafka_in_hooks hooks = { st, k_assigned, k_revoked };
        if (!tlm_kafka_is_url(c->inputs[i]))
            continue;
        if (c->ninputs != 1 || st->ops->source)
            return tlm_error_set(err, TLM_EINVAL, "a kafka:// input must be the only input");
        if (!(st->kin = tlm_kafka_in_create(c->inputs[i], &hooks, err)))
            return err->code;
        st->ksrc.ctx = st;
        st->ksrc.next = k_next;
        st->ksrc.name = k_name;
        st->ksrc.line = k_line;
        st->ksrc.on_block = k_on_block;
        st->src = &st->ksrc;
        st->batching = 0;
    }
    return 0;
}

/* A writer over the pipe of a Kafka output. */
static int k_open_out(struct stage *st, struct tlm_error *err)
{
    int fd;
    struct tlm_writer *w;
    if (!(st->kout = tlm_kafka_out_create(st->c->output, &fd, err)))
        return err->code;
    if (!(w = calloc(1, sizeof(*w)))) {
        close(fd);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    w->fd = fd;
    w->own_fd = 1;
    snprintf(w->name, sizeof(w->name), "%s", st->c->output);
    st->out = w;
    return 0;
}

/* End of input (eof=1) without --state, or --drain: time ends in every partition. */
static int k_end(struct stage *st, struct tlm_error *err)
{
    int rc;
    if (!st->ops->part_swap)
        return st->ops->on_end ? st->ops->on_end(st->ops->ctx, st, err) : 0;
    for (int32_t p = 0; p < st->nkp; p++) {
        if (!st->kp[p].live)
            continue;
        k_switch(st, p);
        if (st->ops->on_end && (rc = st->ops->on_end(st->ops->ctx, st, err)))
            return rc;
    }
    return 0;
}

static int cut_back(struct tlm_writer *w, json_t *rec, struct tlm_error *err);

/* A copy reading Kafka with --state and file outputs: cuts each output back to its mark
 * (k_mark_outputs), the size it had when the copy last snapshotted its partitions, unless
 * that was at a clean exit. A copy snapshots all its partitions at the same points
 * (assignment, checkpoints, eager rebalances, exit), so every row after the mark was
 * written after the snapshot of its partition and is written again by whichever copy
 * resumes the partition from that snapshot (this one or another): each row is in one
 * file once. */
static int k_cut_outputs(struct stage *st, struct tlm_error *err)
{
    struct tlm_writer *ws[2] = { st->out, st->rej };
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        char path[4200];
        json_t *h = NULL;
        struct tlm_error e;
        struct tlm_snap_reader *r;
        int rc;
        if (!ws[i] || !ws[i]->is_file || fstat(ws[i]->fd, &sb) != 0)
            continue;
        tlm_error_clear(&e);
        k_mark_path(st, &sb, path, sizeof(path));
        if (!(r = tlm_snap_open(path, &h, &e))) {
            if (e.code == TLM_ENOTFOUND)
                continue;
            *err = e;
            return e.code;
        }
        tlm_snap_close(r);
        rc = json_is_true(json_object_get(h, "final"))
                 ? 0 : cut_back(ws[i], json_object_get(h, "output"), err);
        json_decref(h);
        if (rc)
            return rc;
    }
    return 0;
}

/* Leaves the group and frees the partitions' state (the stage's own back in place). */
static void k_close(struct stage *st)
{
    tlm_kafka_in_destroy(st->kin);
    st->kin = NULL;
    k_switch(st, -1);
    for (int32_t p = 0; p < st->nkp; p++)
        if (st->kp[p].state && st->ops->part_free)
            st->ops->part_free(st->ops->ctx, st->kp[p].state);
    free(st->kp);
    st->kp = NULL;
    st->nkp = 0;
}
#endif

/* ---- progress and stats ----------------------------------------------------------- */

static void show_progress(struct stage *st, double now, int final)
{
    char wm[48] = "-";
    double p = st->src ? -1 : tlm_reader_progress(st->in);
    double rate = (double)(st->events - st->progress_events) / (now - st->t_last_progress);
    if (st->wm.wm != TLM_TIME_MIN)
        tlm_time_format_rfc3339(st->wm.wm, wm, sizeof(wm));
    fprintf(stderr, "\r\033[K%s: %lld events, %.0f/s, watermark %s", cli_progname(), st->events,
            rate, wm);
    if (p >= 0)
        fprintf(stderr, ", %.1f%% read", p * 100);
    if (final)
        fputc('\n', stderr);
    st->t_last_progress = now;
    st->progress_events = st->events;
}

static void print_stats(struct stage *st)
{
    json_t *o = stats_json(st);
    char *s;
    if (!o)
        return;
    json_object_set_new(o, "checkpoints", json_integer(st->checkpoints));
    json_object_set_new(o, "seconds", json_real((double)(long long)((now_s() - st->t_start) * 1000) / 1000));
    s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (s) {
        fflush(stdout);
        fprintf(stderr, "%s: stats %s\n", cli_progname(), s);
        free(s);
    }
    json_decref(o);
}

/* ---- the loop --------------------------------------------------------------------- */

static int flush_out(void *arg)
{
    struct stage *st = arg;
    struct tlm_error e;
    int rc;
    tlm_error_clear(&e);
    if (st->rej && (rc = tlm_writer_flush(st->rej, &e)))
        return rc;
    if (st->ops->on_flush && (rc = st->ops->on_flush(st->ops->ctx)))
        return rc;
    return tlm_writer_flush(st->out, &e);
}

static int setup_paths(struct stage *st, struct tlm_error *err)
{
    size_t n = st->ops->npaths + (st->ops->needs_time ? 1 : 0), k = 0;
    st->paths = calloc(n ? n : 1, sizeof(*st->paths));
    st->vals = calloc(n ? n : 1, sizeof(*st->vals));
    if (!st->paths || !st->vals)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (st->ops->needs_time) {
        const char *f = st->c->time_field;
        char *copy, *save = NULL;
        if (strncmp(f, "$.", 2) == 0)
            f += 2;
        copy = strdup(f);
        st->time_path.seg = calloc(strlen(f) + 1, sizeof(char *));
        if (!copy || !st->time_path.seg)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        for (char *tok = strtok_r(copy, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
            st->time_path.seg[st->time_path.nseg++] = tok;
        if (st->time_path.nseg == 0)
            return tlm_error_set(err, TLM_EINVAL, "--time-field: empty field name");
        st->paths[k++] = st->time_path;
    }
    for (size_t i = 0; i < st->ops->npaths; i++)
        st->paths[k++] = st->ops->paths[i];
    st->npaths = n;
    st->scan = tlm_jscan_create(st->paths, n);
    if (!st->scan)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return 0;
}

/* One NDJSON event line: validate and scan, time, callback, watermark. vals receives
 * the scan; scanned is 1 when the read-ahead already scanned the line into vals (2 when
 * that scan failed: it is run again for the reason). */
static int one_event(struct stage *st, const char *line, size_t len, struct tlm_jval *vals,
                     int scanned, struct tlm_error *err)
{
    struct stage_event ev;
    int rc;
    tlm_error_clear(&st->lerr);
    if (scanned != 1 && tlm_jscan_run(st->scan, line, len, vals, &st->lerr) != 0)
        return reject_line(st, line, len, err);
    ev.line = line;
    ev.len = len;
    ev.vals = vals + (st->ops->needs_time ? 1 : 0);
    ev.ts = 0;
    ev.late = 0;
    ev.time_val = NULL;
    if (st->ops->needs_time) {
        if (event_time(st, &vals[0], &ev.ts))
            return reject_line(st, line, len, err);
        ev.time_val = &vals[0];
        ev.late = tlm_wm_is_late(&st->wm, ev.ts);
        st->late += ev.late;
    }
    rc = st->ops->on_event(st->ops->ctx, st, &ev, err);
    if (rc == 1)
        return reject_line(st, line, len, err);
    if (rc < 0)
        return rc;
    st->events++;
    if (st->ops->needs_time && tlm_wm_observe(&st->wm, ev.ts))
        return advanced(st, 0, err);
    return 0;
}

/* Events converted from a raw line (or from the end of input), one by one. */
static int converted(struct stage *st, struct tlm_error *err)
{
    size_t off = 0;
    while (off < st->conv.len) {
        char *s = st->conv.data + off;
        char *nl = memchr(s, '\n', st->conv.len - off);
        size_t n = nl ? (size_t)(nl - s) : st->conv.len - off;
        int rc;
        s[n] = '\0';
        if (st->ops->convert_foreign && st->npaths == 0) {
            struct stage_event ev = { s, n, st->vals, 0, NULL, 0 };
            rc = st->ops->on_event(st->ops->ctx, st, &ev, err);
            if (rc == 1)
                rc = reject_line(st, s, n, err);
            else if (rc == 0)
                st->events++;
        } else {
            rc = one_event(st, s, n, st->vals, 0, err);
        }
        if (rc)
            return rc;
        off += n + 1;
    }
    return 0;
}

/* End of an input for convert: a record still open is completed or rejected. */
static int convert_finish(struct stage *st, struct tlm_error *err)
{
    int rc;
    if (!st->ops->convert_end)
        return 0;
    st->cur_line = "";
    st->cur_len = 0;
    tlm_buf_reset(&st->conv);
    tlm_error_clear(&st->lerr);
    /* reports name the input that ended, not the one that begins */
    st->fin_src = st->prev_src;
    st->fin_line = st->prev_line;
    rc = st->ops->convert_end(st->ops->ctx, st, &st->conv, &st->lerr);
    if (rc < 0 && rc != TLM_EPARSE && rc != TLM_ERANGE) {
        *err = st->lerr;
    } else {
        if (rc < 0)
            rc = reject_line(st, "", 0, err);
        if (rc >= 0)
            rc = converted(st, err);
    }
    st->fin_src = NULL;
    return rc;
}

static int one_line(struct stage *st, const char *line, size_t len, struct tlm_jval *vals,
                    int scanned, struct tlm_error *err)
{
    long long ms;
    int rc;
    st->lines++;
    if (len == 0 || (line[0] <= ' ' && strspn(line, " \t\r") == len)) {
        st->blank++;
        return 0;
    }
    if (!st->ops->convert_foreign && tlm_json_is_watermark(line, len, &ms)) {
        tlm_time_t t;
        st->wm_in++;
        if (tlm_time_from_int(ms, TLM_UNIT_MS, &t, NULL) == 0 && tlm_wm_raise(&st->wm, t))
            return advanced(st, 0, err);
        return 0;
    }
    if (st->ops->convert) {
        if (st->ops->convert_foreign && !st->src && tlm_reader_input(st->in) != st->cur_input) {
            /* a new file: finish the last one's open record, start the format afresh */
            st->cur_input = tlm_reader_input(st->in);
            if ((rc = convert_finish(st, err)))
                return rc;
        }
        st->cur_line = line;
        st->cur_len = len;
        st->prev_src = stage_source_name(st);
        st->prev_line = stage_source_line(st);
        tlm_buf_reset(&st->conv);
        tlm_error_clear(&st->lerr);
        rc = st->ops->convert(st->ops->ctx, st, line, len, &st->conv, &st->lerr);
        if (rc < 0 && rc != TLM_EPARSE && rc != TLM_ERANGE && rc != TLM_ETYPE) {
            *err = st->lerr;
            return rc;
        }
        if (rc < 0 && (rc = reject_line(st, line, len, err)))
            return rc;
        return converted(st, err);
    }
    return one_event(st, line, len, vals, scanned, err);
}

/* A read-ahead batch starting with line (just returned by the reader): takes the lines
 * the reader has without waiting, scans them, prefetches, handles them in order. Sets
 * *eof at the end of input; a read error after the first line is handled after the
 * batch's lines (returned with *err). Returns 0 or a code. */
static int run_batch(struct stage *st, const char *line, size_t len, int *eof, long *nlines,
                     struct tlm_error *err)
{
    const struct stage_ops *ops = st->ops;
    size_t n = 0, np = st->npaths ? st->npaths : 1;
    int rc, rrc = 1;
    struct tlm_error rerr;
    tlm_error_clear(&rerr);
    tlm_buf_reset(&st->bbuf);
    for (;;) {
        struct bline *b = &st->blines[n++];
        b->off = st->bbuf.len;
        b->len = len;
        b->src = tlm_reader_source(st->in);
        b->line = tlm_reader_line(st->in);
        b->offset = tlm_reader_offset(st->in);
        b->scanned = 0;
        b->prefetched = 0;
        if (tlm_buf_append(&st->bbuf, line, len) || tlm_buf_putc(&st->bbuf, '\0'))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (n == st->batch || got_stop || got_reload)
            break;
        /* only what is there already: timeout 0 never waits for a live input */
        rrc = tlm_reader_next(st->in, &line, &len, 0, &rerr);
        if (rrc != 1)
            break;
    }
    *nlines = (long)n;
    if (n > 1 && ops->prefetch) {
        for (size_t i = 0; i < n; i++) {
            struct bline *b = &st->blines[i];
            const char *p = st->bbuf.data + b->off;
            long long ms;
            if (b->len == 0 || (p[0] <= ' ' && strspn(p, " \t\r") == b->len) ||
                tlm_json_is_watermark(p, b->len, &ms))
                continue;
            b->scanned = tlm_jscan_run(st->scan, p, b->len, st->bvals + i * np, &st->plerr) ? 2 : 1;
            b->prefetched = b->scanned == 1;
        }
        for (int pass = 0; pass < ops->prefetch_passes; pass++) {
            for (size_t i = 0; i < n; i++) {
                struct bline *b = &st->blines[i];
                struct stage_event ev;
                if (b->scanned != 1)
                    continue;
                ev.line = st->bbuf.data + b->off;
                ev.len = b->len;
                ev.vals = st->bvals + i * np + (ops->needs_time ? 1 : 0);
                ev.ts = 0;
                ev.time_val = NULL;
                ev.late = 0;
                ops->prefetch(ops->ctx, &ev, i, pass);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct bline *b = &st->blines[i];
        st->bcur = b;
        rc = one_line(st, st->bbuf.data + b->off, b->len, st->bvals + i * np, b->scanned, err);
        st->bcur = NULL;
        if (rc)
            return rc;
    }
    if (rrc == 0)
        *eof = 1;
    else if (rrc < 0 && rrc != TLM_EAGAIN) {
        *err = rerr;
        return rrc;
    }
    return 0;
}

/* The next line from the reader or the custom source. */
static int next_line(struct stage *st, const char **line, size_t *len, int timeout,
                     struct tlm_error *err)
{
    if (!st->src)
        return tlm_reader_next(st->in, line, len, timeout, err);
    for (;;) {
        int rc = st->src->next(st->src->ctx, line, len, timeout, err);
        if (rc != TLM_EPARSE && rc != TLM_ERANGE)
            return rc;
        /* a bad record of the source (a client closed inside a line): reject it with
         * the bytes that did arrive */
        st->lines++;
        st->lerr = *err;
        st->lerr.column = 0;
        st->bad_line = err->line;
        st->bad_source = st->lerr.source[0] ? st->lerr.source : NULL;
        rc = reject_line(st, *line ? *line : "", *line ? *len : 0, err);
        st->bad_line = 0;
        st->bad_source = NULL;
        if (rc)
            return rc;
        tlm_error_clear(err);
    }
}

/* Cuts an output file (the same file the snapshot saw: device and inode) back to the
 * size it had when the snapshot was taken: what the killed run wrote after it, perhaps
 * ending in a torn line, is written again by this run. */
static int cut_back(struct tlm_writer *w, json_t *rec, struct tlm_error *err)
{
    struct stat sb;
    json_int_t size, dev, ino;
    if (!w || !w->is_file || !rec ||
        json_unpack(rec, "{sIsIsI}", "size", &size, "dev", &dev, "ino", &ino))
        return 0;
    if (fstat(w->fd, &sb) != 0 || (json_int_t)sb.st_dev != dev || (json_int_t)sb.st_ino != ino ||
        sb.st_size <= size)
        return 0;
    if (ftruncate(w->fd, (off_t)size) != 0) {
        tlm_error_at(err, w->name, 0, 0, -1);
        return tlm_error_set(err, TLM_EIO, "cannot cut the output back to the snapshot: %s",
                             strerror(errno));
    }
    return 0;
}

int stage_run(const struct cli_common *c, const struct stage_ops *ops)
{
    struct stage st;
    struct tlm_error err;
    struct sigaction sa;
    int rc = 0, status = 0, live;
    const char *line;
    size_t len;
    unsigned tick = 0;
    int show = c->progress && isatty(2);

    memset(&st, 0, sizeof(st));
    tlm_error_clear(&err);
    st.c = c;
    st.ops = ops;
    st.unit_seen = TLM_UNIT_AUTO;
    st.wm_emitted = TLM_TIME_MIN;
    tlm_wm_init(&st.wm, c->max_out_of_order);
    st.t_start = st.t_last_event = st.t_last_checkpoint = st.t_last_progress = now_s();

    signal(SIGPIPE, SIG_IGN);
    stage_wake_fd();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop; /* no SA_RESTART: a blocked read returns to the loop */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);

    if ((rc = setup_paths(&st, &err)))
        goto fail;
    st.src = ops->source;
#ifdef HAVE_KAFKA
    st.kcur = -1;
    st.kwm_fired = TLM_TIME_MIN;
    if ((rc = k_open(&st, &err)))
        goto fail;
#else
    for (size_t i = 0; i < c->ninputs; i++)
        if (strncmp(c->inputs[i], "kafka://", 8) == 0) {
            rc = tlm_error_set(&err, TLM_EINVAL, "%s: telem was built without Kafka", c->inputs[i]);
            goto fail;
        }
    if (c->output && strncmp(c->output, "kafka://", 8) == 0) {
        rc = tlm_error_set(&err, TLM_EINVAL, "%s: telem was built without Kafka", c->output);
        goto fail;
    }
#endif
    st.batching = ops->prefetch && !st.src && !ops->convert;
    st.batch = ops->batch > 0 && ops->batch <= STAGE_BATCH ? (size_t)ops->batch : 16;
    if (st.batching &&
        !(st.bvals = calloc(st.batch * (st.npaths ? st.npaths : 1), sizeof(*st.bvals)))) {
        rc = tlm_error_set(&err, TLM_ENOMEM, "out of memory");
        goto fail;
    }
    st.in = tlm_reader_create(c->inputs, c->ninputs);
    if (!st.in) {
        rc = tlm_error_set(&err, TLM_ENOMEM, "out of memory");
        goto fail;
    }
    tlm_reader_wake_fd(st.in, stage_wake_fd());
    {
        int kafka_in = 0, kafka_out = 0;
#ifdef HAVE_KAFKA
        kafka_in = st.kin != NULL;
        kafka_out = tlm_kafka_is_url(c->output);
#endif
        /* per-partition state is loaded as partitions are assigned */
        if (c->state && !(kafka_in && ops->part_swap) && (rc = restore_snapshot(&st, &err)))
            goto fail;
        /* after a restore the earlier output is kept: the run continues it, from where
         * the snapshot was taken; so does a Kafka input's, whose partitions' snapshots
         * are read later */
#ifdef HAVE_KAFKA
        if (kafka_out && (rc = k_open_out(&st, &err)))
            goto fail;
#endif
        if (!kafka_out &&
            (rc = tlm_writer_open(c->output, st.restored || (kafka_in && c->state), &st.out, &err)))
            goto fail;
    }
    if (c->reject && (rc = tlm_writer_open(c->reject, st.restored, &st.rej, &err)))
        goto fail;
    if (st.restored && ((rc = cut_back(st.out, json_object_get(st.outputs, "output"), &err)) ||
                        (rc = cut_back(st.rej, json_object_get(st.outputs, "reject"), &err))))
        goto fail;
#ifdef HAVE_KAFKA
    if (st.kin && c->state && (rc = k_cut_outputs(&st, &err)))
        goto fail;
#endif
    /* a first snapshot before any output, so that even a run killed before its first
     * checkpoint restarts cleanly */
    if (c->state && !st.restored && (rc = save_snapshot(&st, 0, &err)))
        goto fail;
    if (st.src)
        st.src->on_block(st.src->ctx, flush_out, &st);
    else
        tlm_reader_on_block(st.in, flush_out, &st);

    for (;;) {
        int timeout = -1;
        live = st.src ? 1 : tlm_reader_is_live(st.in);
        if (live && (c->idle_timeout || c->checkpoint_interval || show))
            timeout = 250;
        int handled = 0, eof = 0;
        rc = next_line(&st, &line, &len, timeout, &err);
        /* a line the reader returned is consumed: handle it before looking at a stop
         * request, or the snapshot position would skip it */
        if (rc == 1) {
            long nl = 1;
            if (st.batching ? (rc = run_batch(&st, line, len, &eof, &nl, &err))
                            : (rc = one_line(&st, line, len, st.vals, 0, &err)))
                goto fail;
            handled = (int)nl;
        } else if (rc == 0) {
            eof = 1;
        } else if (rc != TLM_EAGAIN) {
            goto fail;
        }
#ifdef HAVE_KAFKA
        /* a failed delivery to a Kafka output ends the run at once (the producer drops
         * what comes after it) */
        if (tlm_kafka_out_failed(st.kout)) {
            rc = tlm_kafka_out_check(st.kout, &err);
            goto fail;
        }
#endif
        if (got_stop || eof)
            break;
        if (got_reload) {
            got_reload = 0;
            wake_drain();
            if (ops->on_reload && (rc = ops->on_reload(ops->ctx, &st, &err)))
                goto fail;
        }
        if (handled) {
            if (c->idle_timeout && live)
                st.t_last_event = now_s();
            unsigned before = tick;
            tick += (unsigned)handled;
            if ((before >> 10) == (tick >> 10))
                continue;
        } else {
            /* nothing arrived within the timeout (or a signal interrupted the wait) */
            double idle;
            if ((rc = flush_out(&st)))
                goto fail_code;
            idle = now_s() - st.t_last_event;
#ifdef HAVE_KAFKA
            if (st.kin) {
                /* partitions idle for --idle-timeout stop holding the watermark back */
                if (c->idle_timeout && (rc = k_advanced(&st, 0, &err)))
                    goto fail;
            } else
#endif
            if (c->idle_timeout && live && idle * 1e9 >= (double)c->idle_timeout &&
                tlm_wm_idle(&st.wm, (int64_t)(idle * 1e9)) && (rc = advanced(&st, 1, &err)))
                goto fail;
            if ((rc = flush_out(&st)))
                goto fail_code;
        }
        if (c->checkpoint_interval || show) {
            double now = now_s();
            if (c->state && c->checkpoint_interval &&
                (now - st.t_last_checkpoint) * 1e9 >= (double)c->checkpoint_interval) {
                if ((rc = save_snapshot(&st, 0, &err)))
                    goto fail;
                st.t_last_checkpoint = now;
            }
            if (show && now - st.t_last_progress >= 1.0)
                show_progress(&st, now, 0);
        }
    }

    /* a format's open record and header end with the input, unless the state is kept
     * for a run over the rest of it (--state without --drain) */
    if (!got_stop && (!c->state || c->drain) && (rc = convert_finish(&st, &err)))
        goto fail;
    /* the end of input ends time, unless the state is kept for a next run (--state
     * without --drain) or a signal stopped the run */
#ifdef HAVE_KAFKA
    if (st.kin) {
        if (!got_stop && (!c->state || c->drain) && (rc = k_end(&st, &err)))
            goto fail;
    } else
#endif
    if (!got_stop && (!c->state || c->drain) && ops->on_end &&
        (rc = ops->on_end(ops->ctx, &st, &err)))
        goto fail;
    if (c->state && (rc = save_snapshot(&st, 1, &err)))
        goto fail;
    if (show)
        show_progress(&st, now_s(), 1);
    if (c->stats)
        print_stats(&st);
    {
        int rc1 = tlm_writer_close(st.rej, &err);
        int rc2 = tlm_writer_close(st.out, rc1 ? NULL : &err);
        st.out = st.rej = NULL;
#ifdef HAVE_KAFKA
        /* the rest of a Kafka output is acknowledged before the run ends well */
        if (!rc1 && !rc2)
            rc2 = tlm_kafka_out_close(st.kout, &err);
        else
            tlm_kafka_out_close(st.kout, NULL);
        st.kout = NULL;
        /* without --state the output, now written, covers the offsets handled; but not
         * after a stop by a signal in a command that holds events until the end of
         * input (window, cep, enrich, remote-write): what it held was never written,
         * so the group keeps the offsets and delivers those events again */
        for (int32_t p = 0; !rc1 && !rc2 && st.kin && !c->state && !(got_stop && ops->on_end) &&
                            p < st.nkp;
             p++)
            if (st.kp[p].live && st.kp[p].next >= 0)
                rc2 = tlm_kafka_in_commit(st.kin, p, st.kp[p].next, &err);
#endif
        if (rc1 || rc2) {
            rc = rc1 ? rc1 : rc2;
            goto fail;
        }
    }
    status = got_stop && !c->state ? 128 + got_stop : 0;
    goto done;

fail_code:
    if (!err.text[0])
        tlm_error_set(&err, rc, "%s", tlm_code_name(rc));
fail:
    if (rc == TLM_EPIPE || err.code == TLM_EPIPE) {
        status = 0; /* the reader went away: a quiet end, like `yes | head` */
    } else {
        if (err.code == 0)
            err.code = rc;
        fflush(stdout);
        cli_report(&err);
        status = EXIT_DATA;
        if (st.out)
            tlm_writer_flush(st.out, NULL);
        if (c->stats)
            print_stats(&st);
    }
    tlm_writer_close(st.rej, NULL);
    tlm_writer_close(st.out, NULL);
#ifdef HAVE_KAFKA
    tlm_kafka_out_close(st.kout, NULL);
#endif
done:
#ifdef HAVE_KAFKA
    if (st.kin)
        k_close(&st);
#endif
    tlm_reader_destroy(st.in);
    json_decref(st.outputs);
    tlm_buf_free(&st.conv);
    tlm_jscan_destroy(st.scan);
    free(st.time_path.seg ? st.time_path.seg[0] : NULL);
    free(st.time_path.seg);
    free(st.paths);
    free(st.vals);
    free(st.bvals);
    tlm_buf_free(&st.bbuf);
    return status;
}
