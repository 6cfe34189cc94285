/*
 * cep.c - `telem cep`: Flink CEP patterns over keyed NDJSON events in event time, with
 * timeouts (partial matches expired by `within`), emit templates and snapshots.
 *
 * Drives: the stage loop (stage.c: reading, time, watermarks, snapshots) and lib/cep (the
 * patterns and their NFA). Each event's key and the fields the conditions read are
 * extracted from the raw line in one scan; the engine buffers the event until the
 * watermark passes it. Matches are written as the matched events (their original bytes)
 * or through an --emit template (lib/expr over the matched events).
 *
 * The patterns are a set with ids (one per --pattern, or per document of --pattern-file),
 * each with its own per-key state: the unit a rule set plugs into.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cep.h"
#include "cli.h"
#include "cmd.h"
#include "expr.h"
#include "jwrite.h"
#include "stage.h"

static const char *const usage[] = {
    "telem cep (--pattern <pattern> | --pattern-file <file>)... [--key <field>]",
    "          [--emit <template>] [--timeouts <file> [--timeout-emit <template>]]",
    "          [--late <file>] [<options>] [<file>...]",
    NULL,
};

enum { K_PATTERN = CLI_KEY_CMD, K_PATTERN_FILE, K_KEY, K_EMIT, K_TIMEOUTS, K_TIMEOUT_EMIT, K_LATE };

static const struct cli_opt pattern_opts[] = {
    { "pattern", K_PATTERN, "<pattern>", "a pattern in the pattern language (repeatable; ids p1, p2...)" },
    { "pattern-file", K_PATTERN_FILE, "<file>", "pattern documents: a JSON object or an array of them" },
    { "key", K_KEY, "<field>", "match per value of this field (default: one stream)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt out_opts[] = {
    { "emit", K_EMIT, "<template>", "write each match as this expression over its stages" },
    { "timeouts", K_TIMEOUTS, "<file>", "write partial matches expired by within to <file>" },
    { "timeout-emit", K_TIMEOUT_EMIT, "<template>", "write each expired partial match as this expression" },
    { "late", K_LATE, "<file>", "write events behind the watermark to <file>, unchanged" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Patterns", pattern_opts },
    { "Output", out_opts },
    { "Input and output", cli_opts_io },
    { "Event time", cli_opts_time },
    { "State", cli_opts_state },
    { "Bad input", cli_opts_errors },
    { "Reporting", cli_opts_report },
    { "Help", cli_opts_help },
    { NULL, NULL },
};

static const struct cli_cmd cep_cmd = {
    "cep", "Detect event patterns (Flink CEP) per key in event time", usage, groups,
};

struct cctx {
    const char **pattern_src;
    size_t npattern_src;
    const char **pattern_files;
    size_t npattern_files;
    const char *key_field;
    const char *emit_src;
    const char *timeouts_path;
    const char *timeout_emit_src;
    const char *late_path;
    struct tlm_cep *cep;
    struct tlm_cep_template **emit;  /* per pattern */
    struct tlm_cep_template **temit; /* per pattern, for timeouts */
    struct tlm_path *paths;          /* key (if any), then the engine's paths */
    size_t npaths;
    struct tlm_path keypath;
    struct tlm_writer *timeouts;
    struct tlm_writer *late;
    struct stage *st;                /* during a callback */
    struct tlm_buf tmp;
    long long late_events, emit_empty, emit_errors;
    struct tlm_cep_hint hints[STAGE_BATCH];
    json_t *docs;                    /* canonical pattern documents (shape) */
};

static void handle(int key, const char *arg, void *p)
{
    struct cctx *c = p;
    const char ***list = NULL;
    size_t *n = NULL;
    switch (key) {
    case K_PATTERN: list = &c->pattern_src; n = &c->npattern_src; break;
    case K_PATTERN_FILE: list = &c->pattern_files; n = &c->npattern_files; break;
    case K_KEY: c->key_field = arg; return;
    case K_EMIT: c->emit_src = arg; return;
    case K_TIMEOUTS: c->timeouts_path = arg; return;
    case K_TIMEOUT_EMIT: c->timeout_emit_src = arg; return;
    case K_LATE: c->late_path = arg; return;
    default: return;
    }
    const char **nl = realloc(*list, (*n + 1) * sizeof(char *));
    if (!nl)
        cli_usage_error("out of memory");
    nl[(*n)++] = arg;
    *list = nl;
}

/* ---- setting up ------------------------------------------------------------------- */

static void add_pattern(struct cctx *c, struct tlm_cep_pattern *p, const char *what)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    json_array_append_new(c->docs, tlm_cep_pattern_to_json(p));
    if (tlm_cep_add(c->cep, p, &err))
        cli_usage_error("%s: %s", what, err.text);
}

static void load_patterns(struct cctx *c)
{
    struct tlm_error err;
    char id[32], what[64];
    size_t np = 0;
    tlm_error_clear(&err);
    for (size_t i = 0; i < c->npattern_src; i++) {
        struct tlm_cep_pattern *p = tlm_cep_pattern_parse(c->pattern_src[i], &err);
        if (!p)
            cli_usage_error("--pattern: column %ld: %s", err.column, err.text);
        snprintf(id, sizeof(id), "p%zu", ++np);
        if (tlm_cep_pattern_set_id(p, id))
            cli_usage_error("out of memory");
        add_pattern(c, p, "--pattern");
    }
    for (size_t i = 0; i < c->npattern_files; i++) {
        json_error_t je;
        json_t *doc = json_load_file(c->pattern_files[i], 0, &je);
        if (!doc)
            cli_usage_error("--pattern-file: %s:%d:%d: %s", c->pattern_files[i], je.line,
                            je.column, je.text);
        size_t n = json_is_array(doc) ? json_array_size(doc) : 1;
        for (size_t k = 0; k < n; k++) {
            json_t *d = json_is_array(doc) ? json_array_get(doc, k) : doc;
            struct tlm_cep_pattern *p = tlm_cep_pattern_from_json(d, &err);
            if (!p) {
                json_decref(doc); /* nothing is left to leak at the exit */
                if (err.column)
                    cli_usage_error("--pattern-file: %s: document %zu: column %ld: %s",
                                    c->pattern_files[i], k + 1, err.column, err.text);
                cli_usage_error("--pattern-file: %s: document %zu: %s", c->pattern_files[i],
                                k + 1, err.text);
            }
            np++;
            if (!json_object_get(d, "id")) {
                snprintf(id, sizeof(id), "p%zu", np);
                if (tlm_cep_pattern_set_id(p, id))
                    cli_usage_error("out of memory");
            }
            snprintf(what, sizeof(what), "--pattern-file");
            add_pattern(c, p, what);
        }
        json_decref(doc);
    }
    if (np == 0)
        cli_usage_error("which pattern? give --pattern or --pattern-file");
}

static void build_paths(struct cctx *c)
{
    const struct tlm_path *ep;
    size_t n = tlm_cep_paths(c->cep, &ep), k = 0;
    c->paths = calloc(n + 1, sizeof(*c->paths));
    if (!c->paths)
        cli_usage_error("out of memory");
    if (c->key_field) {
        /* a dotted name, or "$." and one */
        const char *f = c->key_field;
        if (!strncmp(f, "$.", 2))
            f += 2;
        size_t ns = 1;
        for (const char *q = f; *q; q++)
            ns += *q == '.';
        c->keypath.nseg = ns;
        c->keypath.seg = calloc(ns, sizeof(char *));
        char *copy = strdup(f);
        if (!c->keypath.seg || !copy || !*f)
            cli_usage_error("--key: expected a field name");
        for (char *save = NULL, *t = strtok_r(copy, ".", &save); t; t = strtok_r(NULL, ".", &save))
            c->keypath.seg[k++] = t;
        if (k != ns)
            cli_usage_error("--key: expected a field name such as session_id or device.id");
        c->paths[0] = c->keypath;
        k = 1;
    }
    if (n)
        memcpy(c->paths + k, ep, n * sizeof(*ep));
    c->npaths = k + n;
}

/* ---- output ------------------------------------------------------------------------- */

static int put_events(struct tlm_buf *b, const struct tlm_cep_match *m)
{
    int rc = 0;
    for (size_t i = 0; i < m->nstages && rc == 0; i++) {
        if (!m->count[i])
            continue;
        int loops = tlm_cep_pattern_stage_loops(m->pattern, i);
        rc |= tlm_buf_putc(b, ',');
        rc |= tlm_json_put_string(b, tlm_cep_pattern_stage(m->pattern, i),
                                  strlen(tlm_cep_pattern_stage(m->pattern, i)));
        rc |= tlm_buf_putc(b, ':');
        if (loops)
            rc |= tlm_buf_putc(b, '[');
        for (size_t k = 0; k < m->count[i]; k++) {
            size_t len;
            const char *line = tlm_cep_event_line(m->events[i][k], &len);
            if (k)
                rc |= tlm_buf_putc(b, ',');
            rc |= tlm_buf_append(b, line, len);
        }
        if (loops)
            rc |= tlm_buf_putc(b, ']');
    }
    return rc;
}

static int write_default(struct cctx *c, struct tlm_buf *b, const struct tlm_cep_match *m)
{
    const char *id = tlm_cep_pattern_id(m->pattern);
    int rc = tlm_buf_puts(b, "{\"pattern\":");
    rc |= tlm_json_put_string(b, id, strlen(id));
    if (c->key_field) {
        rc |= tlm_buf_puts(b, ",\"key\":");
        rc |= tlm_buf_append(b, m->key, m->keylen);
    }
    if (m->timeout) {
        rc |= tlm_buf_puts(b, ",\"timeout\":");
        rc |= tlm_json_put_int(b, tlm_time_to_unit(m->ts, stage_time_unit(c->st)));
    }
    rc |= put_events(b, m);
    rc |= tlm_buf_puts(b, "}\n");
    return rc ? TLM_ENOMEM : 0;
}

/* Index of the match's pattern in the engine. */
static size_t pattern_index(struct cctx *c, const struct tlm_cep_pattern *p)
{
    size_t i;
    for (i = 0; i < tlm_cep_count(c->cep) && tlm_cep_get(c->cep, i) != p; i++)
        ;
    return i;
}

static int write_emit(struct cctx *c, struct tlm_buf *b, const struct tlm_cep_match *m)
{
    size_t pi = pattern_index(c, m->pattern);
    json_t *out = NULL;
    struct tlm_error err;
    int rc = tlm_cep_template_eval(m->timeout ? c->temit[pi] : c->emit[pi], m, &out, &err);
    if (rc == TLM_ENOMEM)
        return rc;
    if (rc < 0) {
        if (c->emit_errors++ == 0)
            cli_warn("--emit: %s (first of the matches it could not be written for)", err.text);
        return 0;
    }
    if (rc == 0) {
        c->emit_empty++;
        return 0;
    }
    rc = tlm_json_write(b, out);
    json_decref(out);
    return rc || tlm_buf_putc(b, '\n') ? TLM_ENOMEM : 1;
}

static int emit(void *arg, const struct tlm_cep_match *m, struct tlm_error *err)
{
    struct cctx *c = arg;
    int rc;
    if (m->timeout) {
        if (!c->timeouts_path)
            return 0;
        if (!c->timeouts &&
            (rc = tlm_writer_open(c->timeouts_path, stage_restored(c->st), &c->timeouts, err)))
            return rc;
        if (c->temit) {
            rc = write_emit(c, &c->timeouts->buf, m);
            if (rc < 0)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            return rc ? tlm_writer_end_line(c->timeouts, err) : 0;
        }
        if (write_default(c, &c->timeouts->buf, m))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return tlm_writer_end_line(c->timeouts, err);
    }
    struct tlm_buf *b = &stage_out(c->st)->buf;
    if (c->emit) {
        rc = write_emit(c, b, m);
        if (rc < 0)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return rc ? stage_rows(c->st, 1, err) : 0;
    }
    if (write_default(c, b, m))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return stage_rows(c->st, 1, err);
}

/* ---- the stage ---------------------------------------------------------------------- */

static int write_late(struct cctx *c, struct stage *st, const struct stage_event *ev,
                      struct tlm_error *err)
{
    c->late_events++;
    if (!c->late_path)
        return stage_reject(st, "late: event time at or below the watermark");
    if (!c->late) {
        int rc = tlm_writer_open(c->late_path, stage_restored(st), &c->late, err);
        if (rc)
            return rc;
    }
    return tlm_writer_line(c->late, ev->line, ev->len, err);
}

static int on_event(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err)
{
    struct cctx *c = ctx;
    const char *key = "null";
    size_t klen = 4;
    int rc;
    c->st = st;
    if (ev->late)
        return write_late(c, st, ev, err);
    if (c->key_field) {
        const struct tlm_jval *k = &ev->vals[0];
        if (k->type == TLM_JNONE)
            return stage_reject(st, "no key field '%s'", c->key_field);
        key = k->p;
        klen = k->n;
        if (k->type == TLM_JSTRING && k->escaped) {
            /* one spelling per key: unescape, then write back as our writer does */
            struct tlm_buf s = TLM_BUF_INIT;
            tlm_buf_reset(&c->tmp);
            if (tlm_jval_string(k, &s) || tlm_json_put_string(&c->tmp, s.data, s.len)) {
                tlm_buf_free(&s);
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            }
            tlm_buf_free(&s);
            key = c->tmp.data;
            klen = c->tmp.len;
        }
    }
    rc = tlm_cep_push(c->cep, key, klen, ev->ts, ev->line, ev->len,
                      ev->vals + (c->key_field ? 1 : 0), err);
    if (rc == TLM_ETYPE || rc == TLM_ERANGE || rc == TLM_EPARSE)
        return stage_reject(st, "%s", err->text);
    return rc;
}

/* Read-ahead: the key's slot, the key, then its state. */
static void prefetch(void *ctx, const struct stage_event *ev, size_t slot, int pass)
{
    struct cctx *c = ctx;
    const struct tlm_jval *k = &ev->vals[0];
    if (pass == 0 && (k->type == TLM_JNONE || k->escaped)) {
        c->hints[slot].slot = NULL;
        return;
    }
    tlm_cep_prefetch(c->cep, k->p, k->n, pass, &c->hints[slot]);
}

static int on_watermark(void *ctx, struct stage *st, tlm_time_t wm, struct tlm_error *err)
{
    struct cctx *c = ctx;
    struct tlm_cep_sink sink = { c, emit };
    c->st = st;
    return tlm_cep_advance(c->cep, wm, &sink, err);
}

static int on_end(void *ctx, struct stage *st, struct tlm_error *err)
{
    return on_watermark(ctx, st, TLM_TIME_MAX, err);
}

static int on_flush(void *ctx)
{
    struct cctx *c = ctx;
    int rc = c->late ? tlm_writer_flush(c->late, NULL) : 0;
    if (c->timeouts && !rc)
        rc = tlm_writer_flush(c->timeouts, NULL);
    return rc;
}

static json_t *shape(void *ctx)
{
    struct cctx *c = ctx;
    return json_pack("{sOssssss}", "patterns", c->docs, "key", c->key_field ? c->key_field : "",
                     "emit", c->emit_src ? c->emit_src : "", "timeout_emit",
                     c->timeout_emit_src ? c->timeout_emit_src : "");
}

static int put_rec(void *arg, const json_t *rec)
{
    return tlm_snap_put(arg, rec, NULL);
}

static int save(void *ctx, struct tlm_snap_writer *w, struct tlm_error *err)
{
    struct cctx *c = ctx;
    if (c->late && tlm_writer_sync(c->late, err))
        return err->code;
    if (c->timeouts && tlm_writer_sync(c->timeouts, err))
        return err->code;
    return tlm_cep_save(c->cep, put_rec, w, err);
}

static int load(void *ctx, json_t *rec, struct tlm_error *err)
{
    struct cctx *c = ctx;
    return tlm_cep_load(c->cep, rec, err);
}

static void stats(void *ctx, json_t *o)
{
    struct cctx *c = ctx;
    struct tlm_cep_stats s;
    tlm_cep_stats(c->cep, &s);
    json_object_set_new(o, "keys", json_integer(s.keys));
    json_object_set_new(o, "buffered_events", json_integer(s.buffered));
    json_object_set_new(o, "partial_matches", json_integer(s.partial));
    json_object_set_new(o, "events_held", json_integer(s.events_held));
    json_object_set_new(o, "state_bytes", json_integer(s.bytes));
    json_object_set_new(o, "matches", json_integer(s.matches));
    json_object_set_new(o, "timeouts", json_integer(s.timeouts));
    json_object_set_new(o, "late_events", json_integer(c->late_events));
    json_object_set_new(o, "condition_errors", json_integer(s.cond_errors));
    if (c->emit)
        json_object_set_new(o, "emit_empty", json_integer(c->emit_empty + c->emit_errors));
}

int cmd_cep(int argc, char **argv)
{
    struct cctx c;
    struct cli_common common;
    struct stage_ops ops;
    struct tlm_error err;
    int argi, status;

    memset(&c, 0, sizeof(c));
    tlm_error_clear(&err);
    argi = cli_parse(&cep_cmd, argc, argv, &common, handle, &c);
    cli_add_inputs(&common, argc - argi, argv + argi);

    if (!(c.cep = tlm_cep_create()) || !(c.docs = json_array()))
        cli_usage_error("out of memory");
    load_patterns(&c);
    if (c.emit_src) {
        size_t n = tlm_cep_count(c.cep);
        c.emit = calloc(n, sizeof(*c.emit));
        for (size_t i = 0; c.emit && i < n; i++)
            if (!(c.emit[i] = tlm_cep_template_create(tlm_cep_get(c.cep, i), c.emit_src, &err)))
                cli_usage_error("--emit: column %ld: %s", err.column, err.text);
    }
    if (c.timeout_emit_src) {
        size_t n = tlm_cep_count(c.cep);
        if (!c.timeouts_path)
            cli_usage_error("--timeout-emit needs --timeouts <file>");
        c.temit = calloc(n, sizeof(*c.temit));
        for (size_t i = 0; c.temit && i < n; i++)
            if (!(c.temit[i] = tlm_cep_template_create(tlm_cep_get(c.cep, i), c.timeout_emit_src,
                                                       &err)))
                cli_usage_error("--timeout-emit: column %ld: %s", err.column, err.text);
    }
    build_paths(&c);

    memset(&ops, 0, sizeof(ops));
    ops.name = "cep";
    ops.ctx = &c;
    ops.needs_time = 1;
    ops.paths = c.paths;
    ops.npaths = c.npaths;
    ops.on_event = on_event;
    if (c.key_field) {
        ops.prefetch = prefetch;
        ops.prefetch_passes = TLM_CEP_PREFETCH_PASSES;
    }
    ops.on_watermark = on_watermark;
    ops.on_end = on_end;
    ops.on_flush = on_flush;
    ops.shape = shape;
    ops.save = save;
    ops.load = load;
    ops.stats = stats;

    status = stage_run(&common, &ops);

    /* the side outputs exist even when empty */
    if (status == 0 && c.timeouts_path && !c.timeouts &&
        tlm_writer_open(c.timeouts_path, access(c.timeouts_path, F_OK) == 0 && common.state,
                        &c.timeouts, &err)) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    if (status == 0 && c.late_path && !c.late &&
        tlm_writer_open(c.late_path, access(c.late_path, F_OK) == 0 && common.state, &c.late,
                        &err)) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    if (c.late && tlm_writer_close(c.late, &err) && status == 0) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    if (c.timeouts && tlm_writer_close(c.timeouts, &err) && status == 0) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    for (size_t i = 0; i < tlm_cep_count(c.cep); i++) {
        tlm_cep_template_destroy(c.emit ? c.emit[i] : NULL);
        tlm_cep_template_destroy(c.temit ? c.temit[i] : NULL);
    }
    free(c.emit);
    free(c.temit);
    tlm_cep_destroy(c.cep);
    json_decref(c.docs);
    if (c.keypath.seg) {
        free(c.keypath.seg[0]);
        free(c.keypath.seg);
    }
    free(c.paths);
    tlm_buf_free(&c.tmp);
    free(c.pattern_src);
    free(c.pattern_files);
    free(common.inputs);
    cli_exit(status);
}
