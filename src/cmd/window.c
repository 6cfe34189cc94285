/*
 * window.c - `telem window`: keyed event-time windows with exact and sketched
 * aggregates, allowed lateness with revisions, a side output for late events, top-N,
 * fill, early results and snapshots.
 *
 * Drives: the stage loop (stage.c: reading, time, watermarks, snapshots), lib/window
 * (assignment, firing, lateness), lib/agg (the --agg list) and lib/expr (--where). The
 * fields the keys, aggregates and filter read are extracted from each raw line in one
 * scan; a jansson object is built only when a filter or an aggregate argument is a
 * computed expression.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg.h"
#include "cli.h"
#include "cmd.h"
#include "expr.h"
#include "stage.h"
#include "window.h"

static const char *const usage[] = {
    "telem window (--tumble <dur> | --slide <dur> --every <dur> | --session <gap>)",
    "             [--key <field>[,<field>...]] [--agg <list>] [--where <expr>] [<options>]",
    "             [<file>...]",
    NULL,
};

enum { K_KEY = CLI_KEY_CMD, K_TUMBLE, K_SLIDE, K_EVERY, K_SESSION, K_OFFSET, K_AGG, K_WHERE,
       K_LATENESS, K_LATE, K_EMIT_EVERY, K_TOP, K_BY, K_ASC, K_FILL, K_SKETCH, K_COMPRESSION };

static const struct cli_opt window_opts[] = {
    { "key", K_KEY, "<fields>", "group by these fields (comma-separated; default: one global group)" },
    { "tumble", K_TUMBLE, "<dur>", "tumbling windows of this length" },
    { "slide", K_SLIDE, "<dur>", "sliding (hopping) windows of this length, with --every" },
    { "every", K_EVERY, "<dur>", "step of sliding windows" },
    { "session", K_SESSION, "<gap>", "session windows closed by this much inactivity per key" },
    { "offset", K_OFFSET, "<dur>", "shift window boundaries from the epoch by <dur>" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt agg_opts[] = {
    { "agg", K_AGG, "<list>", "aggregates, e.g. 'count, avg(cpu), p99(cpu) as cpu_p99' (default count)" },
    { "where", K_WHERE, "<expr>", "only events for which <expr> is true (see telem-expr(7))" },
    { "sketch", K_SKETCH, "<name>", "quantile sketch: tdigest (default) or ddsketch" },
    { "compression", K_COMPRESSION, "<n>", "t-digest compression (default 100)" },
    { "top", K_TOP, "<n>", "per window, only the <n> keys ranked highest by --by" },
    { "by", K_BY, "<name>", "the aggregate (output name) --top ranks by" },
    { "asc", K_ASC, NULL, "rank --top ascending (lowest first)" },
    { "fill", K_FILL, "<how>", "rows for keys without events in a window: last or zero" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt late_opts[] = {
    { "allowed-lateness", K_LATENESS, "<dur>", "keep fired windows this long; late events revise them" },
    { "late", K_LATE, "<file>", "write events too late for any window to <file>, unchanged" },
    { "emit-every", K_EMIT_EVERY, "<dur>", "also emit open windows each <dur> of event time (\"final\":false)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Windows", window_opts },
    { "Aggregates", agg_opts },
    { "Lateness", late_opts },
    { "Input and output", cli_opts_io },
    { "Event time", cli_opts_time },
    { "State", cli_opts_state },
    { "Bad input", cli_opts_errors },
    { "Reporting", cli_opts_report },
    { "Help", cli_opts_help },
    { NULL, NULL },
};

static const struct cli_cmd window_cmd = {
    "window", "Aggregate events over keyed event-time windows", usage, groups,
};

struct wctx {
    struct tlm_window_opts wo;
    struct tlm_aggs_opts ao;
    const char *key_spec;
    const char *agg_spec;
    const char *where_src;
    const char *top_by;
    const char *late_path;
    const char *sketch_name;
    char *key_copy;
    const char **key_names;
    struct tlm_aggs *aggs;
    struct tlm_expr *where;
    struct tlm_window *win;
    struct tlm_writer *late;
    /* fields read from each event: keys, then aggregate paths, then filter paths */
    struct tlm_path *paths;
    size_t npaths, nagg_paths, nwhere_paths;
    const struct tlm_path *agg_paths;
    const struct tlm_path *where_paths;
    int agg_partial;                 /* some aggregate argument is a computed expression */
    int whole;                       /* the filter or an argument needs the whole event */
    long long filtered, late_events;
    const struct cli_common *common;
};

static void handle(int key, const char *arg, void *p)
{
    struct wctx *c = p;
    switch (key) {
    case K_KEY: c->key_spec = arg; break;
    case K_TUMBLE:
        c->wo.kind = c->wo.kind ? (cli_usage_error("choose one of --tumble, --slide, --session"), 0)
                                : TLM_WIN_TUMBLE;
        c->wo.size = cli_duration("tumble", arg);
        break;
    case K_SLIDE:
        c->wo.kind = c->wo.kind ? (cli_usage_error("choose one of --tumble, --slide, --session"), 0)
                                : TLM_WIN_SLIDE;
        c->wo.size = cli_duration("slide", arg);
        break;
    case K_EVERY: c->wo.every = cli_duration("every", arg); break;
    case K_SESSION:
        c->wo.kind = c->wo.kind ? (cli_usage_error("choose one of --tumble, --slide, --session"), 0)
                                : TLM_WIN_SESSION;
        c->wo.gap = cli_duration("session", arg);
        break;
    case K_OFFSET: c->wo.offset = cli_duration("offset", arg); break;
    case K_AGG: c->agg_spec = arg; break;
    case K_WHERE: c->where_src = arg; break;
    case K_SKETCH:
        if (strcmp(arg, "tdigest") == 0)
            c->ao.sketch = 0;
        else if (strcmp(arg, "ddsketch") == 0)
            c->ao.sketch = 1;
        else
            cli_usage_error("--sketch: expected tdigest or ddsketch, got '%s'", arg);
        c->sketch_name = arg;
        break;
    case K_COMPRESSION:
        c->ao.compression = cli_number("compression", arg);
        if (c->ao.compression < 10 || c->ao.compression > 10000)
            cli_usage_error("--compression: must be between 10 and 10000");
        break;
    case K_TOP: c->wo.top_n = (long)cli_count("top", arg, 1, 1000000000); break;
    case K_BY: c->top_by = arg; break;
    case K_ASC: c->wo.top_asc = 1; break;
    case K_FILL:
        if (strcmp(arg, "last") == 0)
            c->wo.fill = TLM_FILL_LAST;
        else if (strcmp(arg, "zero") == 0)
            c->wo.fill = TLM_FILL_ZERO;
        else
            cli_usage_error("--fill: expected last or zero, got '%s'", arg);
        break;
    case K_LATENESS: c->wo.lateness = cli_duration("allowed-lateness", arg); break;
    case K_LATE: c->late_path = arg; break;
    case K_EMIT_EVERY:
        c->wo.emit_every = cli_duration("emit-every", arg);
        if (c->wo.emit_every <= 0)
            cli_usage_error("--emit-every: must be longer than 0");
        break;
    }
}

/* ---- fields ---------------------------------------------------------------------- */

/* Splits "a,b.c" into paths (and output names "a", "b.c"). */
static void parse_keys(struct wctx *c)
{
    size_t n = 1;
    char *save = NULL;
    if (!c->key_spec)
        return;
    for (const char *p = c->key_spec; *p; p++)
        n += *p == ',';
    c->key_copy = strdup(c->key_spec);
    c->key_names = calloc(n + 1, sizeof(char *));
    if (!c->key_copy || !c->key_names)
        cli_usage_error("out of memory");
    n = 0;
    if (c->key_spec[0] == ',' || strstr(c->key_spec, ",,") ||
        c->key_spec[strlen(c->key_spec) - 1] == ',')
        cli_usage_error("--key: empty field name in '%s'", c->key_spec);
    for (char *t = strtok_r(c->key_copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = '\0';
        if (!*t)
            cli_usage_error("--key: empty field name in '%s'", c->key_spec);
        if (strncmp(t, "$.", 2) == 0)
            t += 2;
        c->key_names[n++] = t;
    }
    c->wo.key_names = c->key_names;
    c->wo.nkeys = n;
}

static int add_path(struct wctx *c, const struct tlm_path *src, char *const *segs, size_t nseg)
{
    struct tlm_path *p = &c->paths[c->npaths++];
    p->nseg = src ? src->nseg : nseg;
    p->seg = src ? src->seg : (char **)segs;
    return 0;
}

/* Builds the scan list: keys, then the aggregates' paths, then the filter's. */
static void build_paths(struct wctx *c)
{
    long na = tlm_aggs_paths(c->aggs, &c->agg_paths);
    long nw = c->where ? tlm_expr_root_paths(c->where, &c->where_paths) : 0;
    size_t total;
    c->whole = na < 0 || nw < 0;
    c->nagg_paths = na < 0 ? 0 : (size_t)na;
    c->nwhere_paths = nw < 0 ? 0 : (size_t)nw;
    total = c->wo.nkeys + c->nagg_paths + c->nwhere_paths;
    c->paths = calloc(total ? total : 1, sizeof(*c->paths));
    if (!c->paths)
        cli_usage_error("out of memory");
    for (size_t i = 0; i < c->wo.nkeys; i++) {
        /* a key "a.b" reads the member b of a */
        size_t nseg = 1;
        for (const char *q = c->key_names[i]; *q; q++)
            nseg += *q == '.';
        char **segs = calloc(nseg, sizeof(char *));
        char *copy = strdup(c->key_names[i]), *save = NULL;
        size_t k = 0;
        if (!segs || !copy)
            cli_usage_error("out of memory");
        for (char *t = strtok_r(copy, ".", &save); t; t = strtok_r(NULL, ".", &save))
            segs[k++] = t;
        add_path(c, NULL, segs, k);
    }
    for (size_t i = 0; i < c->nagg_paths; i++)
        add_path(c, &c->agg_paths[i], NULL, 0);
    for (size_t i = 0; i < c->nwhere_paths; i++)
        add_path(c, &c->where_paths[i], NULL, 0);
    for (size_t i = 0; i < tlm_aggs_count(c->aggs); i++)
        if (tlm_aggs_arg_path(c->aggs, i) < 0 && tlm_aggs_has_arg(c->aggs, i))
            c->agg_partial = 1;
}

/* Sets path p to value v inside object root, creating the objects on the way. */
static int put_path(json_t *root, const struct tlm_path *p, const struct tlm_jval *v)
{
    json_t *o = root;
    for (size_t i = 0; i + 1 < p->nseg; i++) {
        json_t *n = json_object_get(o, p->seg[i]);
        if (!json_is_object(n)) {
            n = json_object();
            if (!n || json_object_set_new(o, p->seg[i], n))
                return -1;
        }
        o = n;
    }
    json_t *val = tlm_jval_to_json(v);
    return val ? json_object_set_new(o, p->seg[p->nseg - 1], val) : -1;
}

/* The event as jansson values: only the extracted fields, or the whole line. */
static json_t *partial_event(struct wctx *c, const struct stage_event *ev, size_t from, size_t n,
                             struct tlm_error *err)
{
    json_t *o;
    if (c->whole) {
        json_error_t je;
        o = json_loadb(ev->line, ev->len, 0, &je);
        if (!o)
            tlm_error_set(err, TLM_EPARSE, "%s", je.text);
        return o;
    }
    o = json_object();
    for (size_t i = 0; o && i < n; i++)
        if (ev->vals[from + i].type != TLM_JNONE && put_path(o, &c->paths[from + i], &ev->vals[from + i])) {
            json_decref(o);
            o = NULL;
        }
    if (!o)
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return o;
}

/* ---- the stage -------------------------------------------------------------------- */

static int write_late(struct wctx *c, struct stage *st, const struct stage_event *ev,
                      struct tlm_error *err)
{
    c->late_events++;
    if (!c->late_path)
        return 0;
    if (!c->late) {
        int append = stage_restored(st);
        int rc = tlm_writer_open(c->late_path, append, &c->late, err);
        if (rc)
            return rc;
    }
    return tlm_writer_line(c->late, ev->line, ev->len, err);
}

static int on_event(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err)
{
    struct wctx *c = ctx;
    json_t *partial = NULL;
    struct tlm_writer *w = stage_out(st);
    long rows = 0;
    int rc;

    if (c->where) {
        json_t *e = partial_event(c, ev, c->wo.nkeys + c->nagg_paths, c->nwhere_paths, err);
        if (!e)
            return err->code;
        rc = tlm_expr_test(c->where, e, NULL, err);
        json_decref(e);
        if (rc < 0)
            return stage_reject(st, "--where: %s", err->text);
        if (rc == 0) {
            c->filtered++;
            return 0;
        }
    }
    if (c->agg_partial || c->whole) {
        partial = partial_event(c, ev, c->wo.nkeys, c->nagg_paths, err);
        if (!partial)
            return err->code;
    }
    tlm_window_set_unit(c->win, stage_time_unit(st));
    rc = tlm_window_add(c->win, ev->vals, ev->vals + c->wo.nkeys, partial, ev->ts,
                        stage_watermark(st), &w->buf, &rows, err);
    json_decref(partial);
    if (rc == 1)
        return write_late(c, st, ev, err);
    if (rc == TLM_ETYPE || rc == TLM_EPARSE || rc == TLM_ERANGE)
        return stage_reject(st, "--agg: %s", err->text);
    if (rc < 0)
        return rc;
    return rows ? stage_rows(st, rows, err) : 0;
}

static int on_watermark(void *ctx, struct stage *st, tlm_time_t wm, struct tlm_error *err)
{
    struct wctx *c = ctx;
    long rows = 0;
    int rc;
    tlm_window_set_unit(c->win, stage_time_unit(st));
    rc = tlm_window_advance(c->win, wm, &stage_out(st)->buf, &rows, err);
    if (rc)
        return rc;
    return rows ? stage_rows(st, rows, err) : 0;
}

static int on_end(void *ctx, struct stage *st, struct tlm_error *err)
{
    struct wctx *c = ctx;
    long rows = 0;
    int rc;
    tlm_window_set_unit(c->win, stage_time_unit(st));
    rc = tlm_window_finish(c->win, &stage_out(st)->buf, &rows, err);
    if (rc)
        return rc;
    return rows ? stage_rows(st, rows, err) : 0;
}

static int on_flush(void *ctx)
{
    struct wctx *c = ctx;
    return c->late ? tlm_writer_flush(c->late, NULL) : 0;
}

static json_t *shape(void *ctx)
{
    struct wctx *c = ctx;
    static const char *const kinds[] = { "", "tumble", "slide", "session" };
    char a[48], b[48], g[48], o[48], l[48], e[48];
    return json_pack("{sssssssssssssssssssssisssisssfss}", "kind", kinds[c->wo.kind],
                     "size", tlm_duration_format(c->wo.size, a, sizeof(a)),
                     "every", tlm_duration_format(c->wo.every, b, sizeof(b)),
                     "gap", tlm_duration_format(c->wo.gap, g, sizeof(g)),
                     "offset", tlm_duration_format(c->wo.offset, o, sizeof(o)),
                     "lateness", tlm_duration_format(c->wo.lateness, l, sizeof(l)),
                     "emit_every", tlm_duration_format(c->wo.emit_every, e, sizeof(e)),
                     "key", c->key_spec ? c->key_spec : "",
                     "agg", c->agg_spec,
                     "where", c->where_src ? c->where_src : "",
                     "top", (int)c->wo.top_n,
                     "by", c->top_by ? c->top_by : "",
                     "fill", (int)c->wo.fill,
                     "sketch", c->ao.sketch ? "ddsketch" : "tdigest",
                     "compression", c->ao.compression,
                     "asc", c->wo.top_asc ? "yes" : "no");
}

static int put_rec(void *arg, const char *line, size_t n)
{
    return tlm_snap_put_raw(arg, line, n, NULL);
}

static int save(void *ctx, struct tlm_snap_writer *w, struct tlm_error *err)
{
    struct wctx *c = ctx;
    if (c->late && tlm_writer_sync(c->late, err))
        return err->code;
    return tlm_window_save(c->win, put_rec, w, err);
}

static int load(void *ctx, json_t *rec, struct tlm_error *err)
{
    struct wctx *c = ctx;
    return tlm_window_load(c->win, rec, err);
}

static void stats(void *ctx, json_t *o)
{
    struct wctx *c = ctx;
    struct tlm_window_stats s;
    tlm_window_stats(c->win, &s);
    json_object_set_new(o, "filtered", json_integer(c->filtered));
    json_object_set_new(o, "late_events", json_integer(c->late_events));
    json_object_set_new(o, "keys", json_integer(s.keys));
    json_object_set_new(o, "open_windows", json_integer(s.open));
    json_object_set_new(o, "rows", json_integer(s.fired));
    json_object_set_new(o, "revisions", json_integer(s.revisions));
    json_object_set_new(o, "state_bytes", json_integer(s.bytes));
    if (s.keys)
        json_object_set_new(o, "bytes_per_key", json_integer(s.bytes / s.keys));
}

int cmd_window(int argc, char **argv)
{
    struct wctx c;
    struct cli_common common;
    struct stage_ops ops;
    struct tlm_error err;
    int argi, status;

    memset(&c, 0, sizeof(c));
    c.agg_spec = "count";
    c.ao.compression = 100;
    c.ao.alpha = 0.01;
    c.ao.hll_precision = 16; /* within 1 % at 1 M distinct values (p=14 is 0.81 % rms) */
    tlm_error_clear(&err);
    argi = cli_parse(&window_cmd, argc, argv, &common, handle, &c);
    cli_add_inputs(&common, argc - argi, argv + argi);
    c.common = &common;

    if (!c.wo.kind)
        cli_usage_error("which windows? give --tumble, --slide with --every, or --session");
    if (c.wo.kind == TLM_WIN_SLIDE && !c.wo.every)
        cli_usage_error("--slide needs --every");
    if (c.wo.kind != TLM_WIN_SLIDE && c.wo.every)
        cli_usage_error("--every applies to --slide");
    if (c.wo.top_n && !c.top_by)
        cli_usage_error("--top needs --by <aggregate name>");
    if (!c.wo.top_n && (c.top_by || c.wo.top_asc))
        cli_usage_error("--by and --asc apply to --top");
    if (c.wo.kind == TLM_WIN_SESSION && (c.wo.top_n || c.wo.offset || c.wo.fill))
        cli_usage_error("--top, --offset and --fill apply to --tumble and --slide windows");
    if (c.wo.top_n && c.wo.fill)
        cli_usage_error("--top and --fill cannot be combined");
    parse_keys(&c);
    if (!(c.aggs = tlm_aggs_create(c.agg_spec, &c.ao, &err)))
        cli_usage_error("--agg: column %ld: %s", err.column, err.text);
    if (c.top_by) {
        size_t i, n = tlm_aggs_count(c.aggs);
        for (i = 0; i < n && strcmp(tlm_aggs_name(c.aggs, i), c.top_by) != 0; i++)
            ;
        if (i == n)
            cli_usage_error("--by: no aggregate named '%s' in --agg", c.top_by);
        c.wo.top_by = (long)i;
    }
    if (c.where_src && !(c.where = tlm_expr_compile(c.where_src, &err)))
        cli_usage_error("--where: column %ld: %s", err.column, err.text);
    if (!(c.win = tlm_window_create(&c.wo, c.aggs, &err)))
        cli_usage_error("%s", err.text);
    build_paths(&c);

    memset(&ops, 0, sizeof(ops));
    ops.name = "window";
    ops.ctx = &c;
    ops.needs_time = 1;
    ops.paths = c.paths;
    ops.npaths = c.npaths;
    ops.on_event = on_event;
    ops.on_watermark = on_watermark;
    ops.on_end = on_end;
    ops.on_flush = on_flush;
    ops.shape = shape;
    ops.save = save;
    ops.load = load;
    ops.stats = stats;

    status = stage_run(&common, &ops);

    /* the side output exists even when nothing was late */
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
    if (status == 0 && c.late_events && !c.late_path)
        cli_warn("%lld late event%s dropped (use --late <file> to keep them)", c.late_events,
                 c.late_events == 1 ? "" : "s");
    tlm_window_destroy(c.win);
    tlm_expr_destroy(c.where);
    tlm_aggs_destroy(c.aggs);
    for (size_t i = 0; i < c.wo.nkeys; i++) {
        free(c.paths[i].seg ? c.paths[i].seg[0] : NULL);
        free(c.paths[i].seg);
    }
    free(c.paths);
    free(c.key_names);
    free(c.key_copy);
    free(common.inputs);
    cli_exit(status);
}
