/*
 * ingest.c - `telem ingest`: the first stage of a pipeline. Reads records in the
 * formats telemetry already comes in (NDJSON, CSV, seed 000's tokens, Influx line
 * protocol, Graphite plaintext, Prometheus text) from files, stdin or its own socket,
 * and writes one clean NDJSON event per record.
 *
 * Drives: the stage loop (stage.c) for reading, validation, time and snapshots;
 * lib/fmt for the formats; lib/net for --listen; lib/archive for the raw archive;
 * lib/dedup for --dedup. A valid NDJSON event passes through as its original bytes;
 * it is rewritten (spliced, never re-serialised) only to add --set / --received-at
 * fields or to normalise the time field into --time-unit-out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "archive.h"
#include "cli.h"
#include "cmd.h"
#include "dedup.h"
#include "fmt.h"
#include "jwrite.h"
#include "net.h"
#include "stage.h"

static const char *const usage[] = {
    "telem ingest [-f <format>] [<options>] [-i <file>]... [<file>...]",
    "telem ingest [-f <format>] [<options>] --listen <url>",
    NULL,
};

enum { K_DELIM = CLI_KEY_CMD, K_FIELDS, K_UNIT_OUT, K_SET, K_RECEIVED, K_LISTEN, K_PUBLIC,
       K_MAX_LINE, K_MAX_CONN, K_ARCHIVE, K_ARCHIVE_SIZE, K_DEDUP, K_DEDUP_WINDOW, K_DEDUP_MAX };

static const struct cli_opt format_opts[] = {
    { "format", 'f', "<format>", "ndjson (default), csv, tokens, influx, graphite or prom" },
    { "delimiter", K_DELIM, "<char>", "csv: field delimiter (default ,)" },
    { "fields", K_FIELDS, "<a,b,...>", "csv: field names for input without a header row" },
    { "time-unit-out", K_UNIT_OUT, "<unit>", "unit of written event times: s, ms, us, ns (default ms)" },
    { "set", K_SET, "<key=value>", "add a constant field to every event (repeatable)" },
    { "received-at", K_RECEIVED, "<field>", "add the arrival wall time to every event" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt listen_opts[] = {
    { "listen", K_LISTEN, "<url>", "read from clients of tcp://HOST:PORT, udp://HOST:PORT or unix:PATH" },
    { "listen-public", K_PUBLIC, NULL, "allow --listen on an address that is not loopback" },
    { "max-line", K_MAX_LINE, "<bytes>", "longest accepted line from a client (default 1048576)" },
    { "max-connections", K_MAX_CONN, "<n>", "most concurrent clients (default 1024)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt keep_opts[] = {
    { "archive", K_ARCHIVE, "<dir>", "also write every accepted raw record to zstd segments in <dir>" },
    { "archive-segment-size", K_ARCHIVE_SIZE, "<bytes>", "rotate archive segments at this size (default 67108864)" },
    { "dedup", K_DEDUP, "<field>", "drop an event whose <field> was already seen within --dedup-window" },
    { "dedup-window", K_DEDUP_WINDOW, "<dur>", "how long an id is remembered (default 10m)" },
    { "dedup-max", K_DEDUP_MAX, "<n>", "most ids remembered at once (default 10M)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Format", format_opts },
    { "Input and output", cli_opts_io },
    { "Sockets", listen_opts },
    { "Archive and deduplication", keep_opts },
    { "Event time (used when --time-field is given)", cli_opts_time },
    { "State", cli_opts_state },
    { "Bad input", cli_opts_errors },
    { "Reporting", cli_opts_report },
    { "Help", cli_opts_help },
    { NULL, NULL },
};

static const struct cli_cmd ingest_cmd = {
    "ingest", "Read telemetry records and write them as clean NDJSON events", usage, groups,
};

struct ingest {
    const char *format;
    struct tlm_fmt_opts fo;
    struct tlm_fmt *fmt;             /* NULL for ndjson */
    const char **fields;             /* --fields, split */
    char *fields_copy;
    enum tlm_time_unit unit_out;
    struct tlm_buf extra;            /* --set fields, as ',"k":v' text */
    const char *received_at;
    struct tlm_listen_opts lo;
    struct tlm_listener *listener;
    struct tlm_archive_opts ao;
    struct tlm_archive *archive;
    const char *dedup_field;
    int dedup_set;                   /* --dedup-window or --dedup-max given */
    struct tlm_dedup_opts dopts;
    struct tlm_dedup *dedup;
    struct tlm_path paths[1];        /* the dedup field */
    char *dedup_copy;
    long long deduplicated;
    const struct cli_common *common;
    struct stage *st;                /* the running stage, for on_bad */
    int bad_rc;                      /* a fatal error from reporting a bad record */
    int bad_in_line;                 /* bad records reported for the current line */
    struct tlm_error bad_err;
    int needs_rewrite;               /* --set or --received-at */
};

static void handle(int key, const char *arg, void *p)
{
    struct ingest *g = p;
    struct tlm_error err;
    tlm_error_clear(&err);
    switch (key) {
    case 'f':
        if (strcmp(arg, "ndjson") != 0 && tlm_fmt_parse_kind(arg, &g->fo.kind) != 0)
            cli_usage_error("-f: unknown format '%s' (expected ndjson, csv, tokens, influx, "
                            "graphite or prom)", arg);
        g->format = arg;
        break;
    case K_DELIM:
        if (strlen(arg) != 1 && strcmp(arg, "\\t") != 0)
            cli_usage_error("--delimiter: expected one character, got '%s'", arg);
        g->fo.delimiter = strcmp(arg, "\\t") == 0 ? '\t' : arg[0];
        break;
    case K_FIELDS: {
        size_t n = 1;
        char *save = NULL;
        for (const char *c = arg; *c; c++)
            n += *c == ',';
        free(g->fields);
        free(g->fields_copy);
        g->fields = calloc(n + 1, sizeof(*g->fields));
        g->fields_copy = strdup(arg);
        if (!g->fields || !g->fields_copy)
            cli_usage_error("out of memory");
        g->fo.nfields = 0;
        for (char *t = strtok_r(g->fields_copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            g->fields[g->fo.nfields++] = t;
        if (g->fo.nfields == 0)
            cli_usage_error("--fields: no field names in '%s'", arg);
        g->fo.fields = g->fields;
        break;
    }
    case K_UNIT_OUT:
        if (tlm_time_unit_parse(arg, &g->unit_out, &err) || g->unit_out == TLM_UNIT_AUTO)
            cli_usage_error("--time-unit-out: expected s, ms, us or ns");
        break;
    case K_SET: {
        const char *eq = strchr(arg, '=');
        json_error_t je;
        json_t *v;
        if (!eq || eq == arg)
            cli_usage_error("--set: expected key=value, got '%s'", arg);
        tlm_buf_putc(&g->extra, ',');
        if (tlm_json_put_string(&g->extra, arg, (size_t)(eq - arg)))
            cli_usage_error("--set: key is not valid UTF-8");
        tlm_buf_putc(&g->extra, ':');
        /* a value that reads as JSON is JSON (5, true, {"a":1}); anything else a string */
        v = json_loads(eq + 1, JSON_DECODE_ANY, &je);
        if (v) {
            tlm_json_write(&g->extra, v);
            json_decref(v);
        } else if (tlm_json_put_string(&g->extra, eq + 1, strlen(eq + 1))) {
            cli_usage_error("--set: value is not valid UTF-8");
        }
        break;
    }
    case K_RECEIVED: g->received_at = arg; break;
    case K_LISTEN: g->lo.url = arg; break;
    case K_PUBLIC: g->lo.allow_public = 1; break;
    case K_MAX_LINE: g->lo.max_line = (size_t)cli_count("max-line", arg, 16, 1LL << 31); break;
    case K_MAX_CONN: g->lo.max_conns = (int)cli_count("max-connections", arg, 1, 1000000); break;
    case K_ARCHIVE: g->ao.dir = arg; break;
    case K_ARCHIVE_SIZE:
        g->ao.max_segment_bytes = (size_t)cli_count("archive-segment-size", arg, 4096, 1LL << 40);
        break;
    case K_DEDUP: g->dedup_field = arg; break;
    case K_DEDUP_WINDOW:
        g->dopts.window = cli_duration("dedup-window", arg);
        g->dedup_set = 1;
        if (g->dopts.window <= 0)
            cli_usage_error("--dedup-window: must be longer than 0");
        break;
    case K_DEDUP_MAX:
        g->dedup_set = 1;
        g->dopts.max_ids = (size_t)cli_count("dedup-max", arg, 1, (1LL << 32) - 2);
        break;
    }
}

/* ---- the event path ------------------------------------------------------------- */

static long long wall_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * TLM_NS_PER_S + ts.tv_nsec;
}

/* Appends --set and --received-at fields to an event object given as text: everything
 * before its final '}' is copied, then the fields, then '}'. */
static int add_fields(struct ingest *g, const char *line, size_t len, struct tlm_buf *out)
{
    size_t end = len;
    int empty;
    while (end > 0 && line[end - 1] != '}')
        end--;
    if (end == 0)
        return TLM_EPARSE;
    end--; /* at the '}' */
    empty = 1;
    for (size_t i = 1; i < end; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n') {
            empty = 0;
            break;
        }
    if (tlm_buf_append(out, line, end))
        return TLM_ENOMEM;
    if (g->extra.len && tlm_buf_append(out, g->extra.data + empty, g->extra.len - (size_t)empty))
        return TLM_ENOMEM;
    if (g->received_at) {
        if ((!empty || g->extra.len) && tlm_buf_putc(out, ','))
            return TLM_ENOMEM;
        if (tlm_json_put_string(out, g->received_at, strlen(g->received_at)) ||
            tlm_buf_putc(out, ':') ||
            tlm_json_put_int(out, tlm_time_to_unit(wall_now_ns(), g->unit_out)))
            return TLM_ENOMEM;
    }
    return tlm_buf_puts(out, "}\n") ? TLM_ENOMEM : 0;
}

/* A bad record among good ones on a line (a bad token): report it, keep the rest. */
static void on_bad(void *arg, long column, const char *reason)
{
    struct ingest *g = arg;
    g->bad_in_line++;
    if (g->bad_rc == 0)
        g->bad_rc = stage_report(g->st, tlm_fmt_record_lines(g->fmt), column, reason,
                                 &g->bad_err);
}

static int convert(void *ctx, struct stage *st, const char *line, size_t len,
                   struct tlm_buf *out, struct tlm_error *err)
{
    struct ingest *g = ctx;
    int n, count = 1;
    g->st = st;
    if (!g->fmt) {
        /* NDJSON with fields to add: check it, then splice */
        if ((n = tlm_json_validate(line, len, err)))
            return n;
        n = add_fields(g, line, len, out);
        if (n)
            return tlm_error_set(err, n, "cannot add fields");
    } else {
        size_t start = out->len;
        g->bad_in_line = 0;
        n = tlm_fmt_line(g->fmt, line, len, out, err);
        if (g->bad_rc) {
            /* --strict: the first bad record ends the run */
            *err = g->bad_err;
            return g->bad_rc == TLM_EPARSE ? TLM_EIO : g->bad_rc;
        }
        if (n < 0)
            return n;
        count = n;
        if (g->needs_rewrite && n > 0) {
            /* add the fields to each event the record became */
            struct tlm_buf tmp = TLM_BUF_INIT;
            size_t off = start;
            int rc = 0;
            while (off < out->len && rc == 0) {
                char *nl = memchr(out->data + off, '\n', out->len - off);
                size_t l = nl ? (size_t)(nl - (out->data + off)) : out->len - off;
                rc = add_fields(g, out->data + off, l, &tmp);
                off += l + 1;
            }
            out->len = start;
            if (rc == 0)
                rc = tlm_buf_append(out, tmp.data, tmp.len);
            tlm_buf_free(&tmp);
            if (rc)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
    }
    /* archive the raw line unless nothing of it was accepted (a header, a comment or a
     * TYPE line is kept: a replay needs it) */
    if (g->archive && (count > 0 || g->bad_in_line == 0) &&
        (n = tlm_archive_put(g->archive, line, len, wall_now_ns(), err)))
        return n < 0 && n != TLM_EPARSE ? n : TLM_EIO;
    return count;
}

static int convert_end(void *ctx, struct stage *st, struct tlm_buf *out, struct tlm_error *err)
{
    struct ingest *g = ctx;
    g->st = st;
    return g->fmt ? tlm_fmt_end(g->fmt, out, err) : 0;
}

/* Writes the time field normalised into --time-unit-out when its text differs. */
static int write_event(struct ingest *g, struct stage *st, const struct stage_event *ev,
                       struct tlm_error *err)
{
    struct tlm_writer *w = stage_out(st);
    const struct tlm_jval *tv = ev->time_val;
    if (tv) {
        char num[32];
        int n = snprintf(num, sizeof(num), "%lld", tlm_time_to_unit(ev->ts, g->unit_out));
        if ((size_t)n != tv->n || memcmp(num, tv->p, tv->n) != 0) {
            size_t before = (size_t)(tv->p - ev->line);
            if (tlm_buf_append(&w->buf, ev->line, before) ||
                tlm_buf_append(&w->buf, num, (size_t)n) ||
                tlm_buf_append(&w->buf, tv->p + tv->n, ev->len - before - tv->n) ||
                tlm_buf_putc(&w->buf, '\n'))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            return stage_end_row(st, err);
        }
    }
    return stage_pass(st, ev, err);
}

static int on_event(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err)
{
    struct ingest *g = ctx;
    int rc;
    if (g->archive && !g->needs_rewrite && !g->fmt &&
        (rc = tlm_archive_put(g->archive, ev->line, ev->len, wall_now_ns(), err)))
        return rc;
    if (g->dedup) {
        const struct tlm_jval *id = &ev->vals[0];
        tlm_time_t t = ev->time_val ? ev->ts : wall_now_ns();
        if (id->type != TLM_JNONE && tlm_dedup_check(g->dedup, id->p, id->n, t)) {
            g->deduplicated++;
            return 0;
        }
    }
    return write_event(g, st, ev, err);
}

static int on_flush(void *ctx)
{
    struct ingest *g = ctx;
    return g->archive ? tlm_archive_flush(g->archive, NULL) : 0;
}

static json_t *shape(void *ctx)
{
    struct ingest *g = ctx;
    json_t *o = json_pack("{ss}", "format", g->format);
    if (o && g->dedup_field) {
        char d[48];
        json_object_set_new(o, "dedup", json_string(g->dedup_field));
        json_object_set_new(o, "dedup_window",
                            json_string(tlm_duration_format(g->dopts.window, d, sizeof(d))));
    }
    return o;
}

static int save_entry(void *arg, uint64_t h1, uint64_t h2, tlm_time_t t)
{
    struct tlm_snap_writer *w = arg;
    char line[96];
    /* the hashes are stored as signed 64-bit integers, which JSON readers hold exactly */
    int n = snprintf(line, sizeof(line), "{\"kind\":\"dedup\",\"h\":[%lld,%lld],\"t\":%lld}",
                     (long long)h1, (long long)h2, (long long)t);
    return tlm_snap_put_raw(w, line, (size_t)n, NULL);
}

static int save(void *ctx, struct tlm_snap_writer *w, struct tlm_error *err)
{
    struct ingest *g = ctx;
    if (g->fmt) {
        /* the CSV header of the file being read, so a restart in its middle goes on */
        struct tlm_buf b = TLM_BUF_INIT;
        int rc = tlm_buf_puts(&b, "{\"kind\":\"format\",\"header\":");
        size_t at = b.len;
        rc |= tlm_fmt_save(g->fmt, &b);
        if (rc == 0 && b.len > at) {
            rc = tlm_buf_putc(&b, '}') || tlm_snap_put_raw(w, b.data, b.len, err);
        }
        tlm_buf_free(&b);
        if (rc)
            return tlm_error_set(err, TLM_EIO, "cannot write the format state");
    }
    if (g->dedup && tlm_dedup_foreach(g->dedup, save_entry, w))
        return tlm_error_set(err, TLM_EIO, "cannot write the dedup state");
    return 0;
}

static int load(void *ctx, json_t *rec, struct tlm_error *err)
{
    struct ingest *g = ctx;
    json_int_t t;
    json_t *h, *hdr = json_object_get(rec, "header");
    if (g->fmt && json_is_array(hdr)) {
        size_t n = json_array_size(hdr);
        const char **names = calloc(n + 1, sizeof(*names));
        int rc;
        if (!names)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            if (!(names[i] = json_string_value(json_array_get(hdr, i)))) {
                free(names);
                return tlm_error_set(err, TLM_ESTATE, "bad format state record");
            }
        rc = tlm_fmt_restore(g->fmt, names, n, err);
        free(names);
        return rc;
    }
    if (!g->dedup || json_unpack(rec, "{s:o,s:I}", "h", &h, "t", &t) || json_array_size(h) != 2)
        return tlm_error_set(err, TLM_ESTATE, "unexpected state record");
    /* written as signed integers by save_entry */
    uint64_t h1 = (uint64_t)json_integer_value(json_array_get(h, 0));
    uint64_t h2 = (uint64_t)json_integer_value(json_array_get(h, 1));
    return tlm_dedup_restore(g->dedup, h1, h2, (tlm_time_t)t) ? TLM_ENOMEM : 0;
}

static void stats(void *ctx, json_t *o)
{
    struct ingest *g = ctx;
    if (g->dedup)
        json_object_set_new(o, "deduplicated", json_integer(g->deduplicated));
    if (g->archive)
        json_object_set_new(o, "archived", json_integer(tlm_archive_records(g->archive)));
    if (g->listener)
        json_object_set_new(o, "clients", json_integer(tlm_listen_clients(g->listener)));
}

/* ---- --listen as a stage source --------------------------------------------------- */

static int src_next(void *ctx, const char **line, size_t *len, int timeout_ms,
                    struct tlm_error *err)
{
    return tlm_listen_next(ctx, line, len, timeout_ms, err);
}

static const char *src_name(void *ctx)
{
    return tlm_listen_source(ctx);
}

static long long src_line(void *ctx)
{
    return tlm_listen_line(ctx);
}

static void src_on_block(void *ctx, int (*fn)(void *), void *arg)
{
    tlm_listen_on_block(ctx, fn, arg);
    tlm_listen_wake_fd(ctx, stage_wake_fd()); /* SIGTERM just before poll() */
}

int cmd_ingest(int argc, char **argv)
{
    struct ingest g;
    struct cli_common common;
    struct stage_ops ops;
    struct stage_source source;
    struct tlm_error err;
    int status, argi;

    memset(&g, 0, sizeof(g));
    g.format = "ndjson";
    g.unit_out = TLM_UNIT_MS;
    g.dopts.window = 600 * TLM_NS_PER_S;
    tlm_error_clear(&err);
    argi = cli_parse(&ingest_cmd, argc, argv, &common, handle, &g);
    cli_add_inputs(&common, argc - argi, argv + argi);
    g.common = &common;
    g.needs_rewrite = g.extra.len > 0 || g.received_at;

    memset(&ops, 0, sizeof(ops));
    ops.name = "ingest";
    ops.ctx = &g;
    ops.on_event = on_event;
    ops.shape = shape;
    ops.save = save;
    ops.load = load;
    ops.stats = stats;
    ops.on_flush = on_flush;
    /* with --time-field, events must carry a usable time, which is written in
     * --time-unit-out, and ingest emits watermarks for the stages after it */
    ops.needs_time = common.time_field_set;

    if (strcmp(g.format, "ndjson") != 0) {
        g.fo.time_field = common.time_field;
        g.fo.time_unit_in = common.time_unit;
        g.fo.time_unit_out = g.unit_out;
        /* bad records among good ones on a line are reported one by one (--strict
         * stops at the first, through stage_report) */
        g.fo.on_bad = on_bad;
        g.fo.on_bad_arg = &g;
        if (!(g.fmt = tlm_fmt_create(&g.fo, &err)))
            cli_usage_error("-f %s: %s", g.format, err.text);
        ops.convert = convert;
        ops.convert_end = convert_end;
        ops.convert_foreign = 1;
    } else if (g.needs_rewrite) {
        ops.convert = convert;
    }
    /* options that would be silently ignored are mistakes */
    if ((g.fo.delimiter || g.fo.fields) && g.fo.kind != TLM_FMT_CSV)
        cli_usage_error("--delimiter and --fields apply to -f csv");
    if (!g.lo.url && (g.lo.max_line || g.lo.max_conns || g.lo.allow_public))
        cli_usage_error("--max-line, --max-connections and --listen-public apply to --listen");
    if (!g.ao.dir && g.ao.max_segment_bytes)
        cli_usage_error("--archive-segment-size applies to --archive");
    if (!g.dedup_field && g.dedup_set)
        cli_usage_error("--dedup-window and --dedup-max apply to --dedup");
    if (g.dedup_field) {
        char *save = NULL;
        g.dedup_copy = strdup(g.dedup_field[0] == '$' && g.dedup_field[1] == '.'
                                  ? g.dedup_field + 2 : g.dedup_field);
        g.paths[0].seg = calloc(strlen(g.dedup_field) + 1, sizeof(char *));
        if (!g.dedup_copy || !g.paths[0].seg)
            cli_usage_error("out of memory");
        for (char *t = strtok_r(g.dedup_copy, ".", &save); t; t = strtok_r(NULL, ".", &save))
            g.paths[0].seg[g.paths[0].nseg++] = t;
        if (g.paths[0].nseg == 0)
            cli_usage_error("--dedup: empty field name");
        ops.paths = g.paths;
        ops.npaths = 1;
        if (!(g.dedup = tlm_dedup_create(&g.dopts)))
            cli_usage_error("out of memory");
    }
    if (g.lo.url) {
        if (common.ninputs)
            cli_usage_error("--listen reads from clients; it cannot be combined with input files");
        if (!(g.listener = tlm_listen_create(&g.lo, &err))) {
            if (!g.lo.allow_public && strstr(err.text, "not a loopback address"))
                snprintf(err.text + strlen(err.text), sizeof(err.text) - strlen(err.text),
                         "; use --listen-public to allow it");
            cli_report(&err);
            cli_exit(EXIT_DATA);
        }
        /* say where, so that a client (or a test) can find an automatic port */
        if (tlm_listen_port(g.listener) > 0) {
            const char *colon = strrchr(g.lo.url, ':');
            cli_warn("listening on %.*s:%d", (int)(colon - g.lo.url), g.lo.url,
                     tlm_listen_port(g.listener));
        } else {
            cli_warn("listening on %s", g.lo.url);
        }
        source.ctx = g.listener;
        source.next = src_next;
        source.name = src_name;
        source.line = src_line;
        source.on_block = src_on_block;
        ops.source = &source;
    }
    if (g.ao.dir && !(g.archive = tlm_archive_open(&g.ao, &err))) {
        cli_report(&err);
        cli_exit(EXIT_DATA);
    }

    status = stage_run(&common, &ops);

    if (g.archive && tlm_archive_close(g.archive, &err) && status == 0) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    tlm_listen_destroy(g.listener);
    tlm_dedup_destroy(g.dedup);
    tlm_fmt_destroy(g.fmt);
    free(g.paths[0].seg);
    free(g.dedup_copy);
    free(g.fields);
    free(g.fields_copy);
    tlm_buf_free(&g.extra);
    free(common.inputs);
    cli_exit(status);
}
