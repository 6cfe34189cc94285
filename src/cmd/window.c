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
#include "jwrite.h"
#include "stage.h"
#include "window.h"

/* The most sliding windows one event may belong to (--slide / --every). */
#define WINDOW_MAX_PER_EVENT 10000

static const char *const usage[] = {
    "telem window (--tumble <dur> | --slide <dur> --every <dur> | --session <gap>)",
    "             [--key <field>[,<field>...]] [--agg <list>] [--where <expr>] [<options>]",
    "             [<file>...]",
    NULL,
};

enum { K_KEY = CLI_KEY_CMD, K_TUMBLE, K_SLIDE, K_EVERY, K_SESSION, K_OFFSET, K_AGG, K_WHERE,
       K_LATENESS, K_LATE, K_EMIT_EVERY, K_TOP, K_BY, K_ASC, K_FILL, K_SKETCH, K_COMPRESSION };

static const struct cli_opt window_opts[] = {
    { "key", K_KEY, "<fields>", "group by these fields or expressions (comma-separated; default: one group)" },
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
    CLI_STAGE_GROUPS,
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
    const char **key_names;          /* output names */
    const char **key_fields;         /* per key: the field read, or the expression text */
    struct tlm_expr **key_expr;      /* per key: NULL for a field, else its expression */
    long *key_val;                   /* per key field: index of its value in the scan list */
    int key_partial;                 /* some key is an expression */
    size_t nkey_fields;              /* keys that are plain fields */
    size_t nkey_expr_paths;          /* paths read by key expressions (after the filter's) */
    const struct tlm_path **key_expr_paths;
    long *key_expr_npaths;
    struct tlm_buf keybuf;           /* computed key values, as JSON text */
    struct tlm_aggs *aggs;
    struct tlm_expr *where;
    struct tlm_window *win;
    struct tlm_writer *late;
    struct tlm_window_hint hints[STAGE_BATCH]; /* read-ahead, per batch line */
    struct stage *st;                /* the stage of the callback running (for drain) */
    struct tlm_error drain_err;      /* why drain failed */
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

/* Is t a plain (dotted) field name rather than an expression? */
static int plain_field(const char *t)
{
    int start = 1;
    for (; *t; t++) {
        if (*t == '.') {
            if (start)
                return 0;
            start = 1;
        } else if ((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || *t == '_' ||
                   (!start && *t >= '0' && *t <= '9')) {
            start = 0;
        } else {
            return 0;
        }
    }
    return !start;
}

/* Splits "a, b.c, lower(site) as s" at top-level commas: each element is a field (a
 * dotted name, or "$." and one) or an expression, optionally named with "as NAME". */
static void parse_keys(struct wctx *c)
{
    size_t n = 1, k = 0;
    int depth = 0;
    char quote = 0, *t;
    if (!c->key_spec)
        return;
    for (const char *p = c->key_spec; *p; p++)
        n += *p == ',';
    c->key_copy = strdup(c->key_spec);
    c->key_names = calloc(n + 1, sizeof(char *));
    c->key_fields = calloc(n + 1, sizeof(char *));
    c->key_expr = calloc(n + 1, sizeof(*c->key_expr));
    c->key_val = calloc(n + 1, sizeof(long));
    if (!c->key_copy || !c->key_names || !c->key_fields || !c->key_expr || !c->key_val)
        cli_usage_error("out of memory");
    t = c->key_copy;
    for (char *p = c->key_copy;; p++) {
        if (quote) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == quote)
                quote = 0;
            if (*p)
                continue;
        }
        if (*p == '"' || *p == '\'') {
            quote = *p;
            continue;
        }
        if (*p == '(' || *p == '[' || *p == '{')
            depth++;
        else if (*p == ')' || *p == ']' || *p == '}')
            depth--;
        if (*p && (*p != ',' || depth > 0))
            continue;
        int end = !*p;
        *p = '\0';
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = '\0';
        if (!*t)
            cli_usage_error("--key: empty element in '%s'", c->key_spec);
        char *name = t, *as = strstr(t, " as ");
        if (as) {
            *as = '\0';
            name = as + 4;
            while (*name == ' ')
                name++;
            if (!*name)
                cli_usage_error("--key: a name is needed after 'as' in '%s'", c->key_spec);
        }
        if (strncmp(t, "$.", 2) == 0 && plain_field(t + 2)) {
            t += 2;
            if (!as)
                name = t;
        }
        if (!plain_field(t)) {
            struct tlm_error err;
            tlm_error_clear(&err);
            if (!(c->key_expr[k] = tlm_expr_compile(t, &err)))
                cli_usage_error("--key: '%s': column %ld: %s", t, err.column, err.text);
            c->key_partial = 1;
        }
        c->key_fields[k] = t;
        c->key_names[k++] = name;
        t = p + 1;
        if (end)
            break;
    }
    if (k > 64)
        cli_usage_error("--key: at most 64 keys");
    c->wo.key_names = c->key_names;
    c->wo.nkeys = k;
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
    /* expression keys read their own paths (a whole event when one needs it) */
    c->key_expr_paths = calloc(c->wo.nkeys + 1, sizeof(*c->key_expr_paths));
    c->key_expr_npaths = calloc(c->wo.nkeys + 1, sizeof(long));
    if (!c->key_expr_paths || !c->key_expr_npaths)
        cli_usage_error("out of memory");
    for (size_t i = 0; i < c->wo.nkeys; i++) {
        if (!c->key_expr[i]) {
            c->nkey_fields++;
            continue;
        }
        c->key_expr_npaths[i] = tlm_expr_root_paths(c->key_expr[i], &c->key_expr_paths[i]);
        if (c->key_expr_npaths[i] < 0)
            c->whole = 1;
        else
            c->nkey_expr_paths += (size_t)c->key_expr_npaths[i];
    }
    total = c->nkey_fields + c->nagg_paths + c->nwhere_paths + c->nkey_expr_paths;
    c->paths = calloc(total ? total : 1, sizeof(*c->paths));
    if (!c->paths)
        cli_usage_error("out of memory");
    for (size_t i = 0; i < c->wo.nkeys; i++) {
        if (c->key_expr[i]) {
            c->key_val[i] = -1;
            continue;
        }
        /* a key "a.b" reads the member b of a */
        size_t nseg = 1;
        for (const char *q = c->key_fields[i]; *q; q++)
            nseg += *q == '.';
        char **segs = calloc(nseg, sizeof(char *));
        char *copy = strdup(c->key_fields[i]), *save = NULL;
        size_t k = 0;
        if (!segs || !copy)
            cli_usage_error("out of memory");
        for (char *t = strtok_r(copy, ".", &save); t; t = strtok_r(NULL, ".", &save))
            segs[k++] = t;
        c->key_val[i] = (long)c->npaths;
        add_path(c, NULL, segs, k);
    }
    for (size_t i = 0; i < c->nagg_paths; i++)
        add_path(c, &c->agg_paths[i], NULL, 0);
    for (size_t i = 0; i < c->nwhere_paths; i++)
        add_path(c, &c->where_paths[i], NULL, 0);
    for (size_t i = 0; i < c->wo.nkeys; i++)
        for (long j = 0; c->key_expr[i] && j < c->key_expr_npaths[i]; j++)
            add_path(c, &c->key_expr_paths[i][j], NULL, 0);
    for (size_t i = 0; i < tlm_aggs_count(c->aggs); i++)
        if (tlm_aggs_arg_path(c->aggs, i) < 0 && tlm_aggs_has_arg(c->aggs, i))
            c->agg_partial = 1;
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
        if (ev->vals[from + i].type != TLM_JNONE && tlm_jval_put_path(o, &c->paths[from + i], &ev->vals[from + i])) {
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

/* The engine's drain: writes out the rows it has made so far (a watermark or the end
 * may fire a million windows at once). */
static int drain(void *arg)
{
    struct wctx *c = arg;
    return tlm_writer_flush(stage_out(c->st), &c->drain_err);
}

/* An engine call failed with rc: a failed drain's reason replaces the engine's. */
static int engine_failed(struct wctx *c, int rc, struct tlm_error *err)
{
    if (c->drain_err.code) {
        *err = c->drain_err;
        rc = c->drain_err.code;
        tlm_error_clear(&c->drain_err);
    }
    return rc;
}

static int on_event(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err)
{
    struct wctx *c = ctx;
    json_t *partial = NULL;
    struct tlm_writer *w = stage_out(st);
    long rows = 0;
    int rc;

    struct tlm_jval keys[64];
    if (c->where) {
        json_t *e = partial_event(c, ev, c->nkey_fields + c->nagg_paths, c->nwhere_paths, err);
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
    /* the key values: fields as scanned, expressions evaluated and written as JSON */
    if (c->key_partial) {
        size_t at[64];
        json_t *e = partial_event(c, ev, c->nkey_fields + c->nagg_paths + c->nwhere_paths,
                                  c->nkey_expr_paths, err);
        if (!e)
            return err->code;
        tlm_buf_reset(&c->keybuf);
        for (size_t i = 0; i < c->wo.nkeys; i++) {
            json_t *v = NULL;
            if (!c->key_expr[i])
                continue;
            rc = tlm_expr_eval(c->key_expr[i], e, NULL, &v, err);
            if (rc < 0) {
                json_decref(e);
                return stage_reject(st, "--key %s: %s", c->key_fields[i], err->text);
            }
            at[i] = c->keybuf.len;
            if (rc == 0)
                keys[i].type = TLM_JNONE;
            else if (tlm_json_write(&c->keybuf, v) != 0)
                rc = TLM_ENOMEM;
            else
                keys[i].type = json_is_string(v) ? TLM_JSTRING : TLM_JINT;
            keys[i].n = c->keybuf.len - at[i];
            keys[i].escaped = 0;
            json_decref(v);
            if (rc < 0) {
                json_decref(e);
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            }
        }
        json_decref(e);
        for (size_t i = 0; i < c->wo.nkeys; i++)
            if (c->key_expr[i])
                keys[i].p = c->keybuf.data + at[i];
    }
    for (size_t i = 0; i < c->wo.nkeys; i++)
        if (!c->key_expr[i])
            keys[i] = ev->vals[c->key_val[i]];
    if (c->agg_partial || c->whole) {
        partial = partial_event(c, ev, c->nkey_fields, c->nagg_paths, err);
        if (!partial)
            return err->code;
    }
    tlm_window_set_unit(c->win, stage_time_unit(st));
    int slot = stage_prefetched_slot(st);
    c->st = st;
    rc = tlm_window_add_hinted(c->win, slot >= 0 && !c->key_partial ? &c->hints[slot] : NULL,
                               keys, ev->vals + c->nkey_fields, partial, ev->ts,
                               stage_watermark(st), &w->buf, &rows, err);
    json_decref(partial);
    if (rc == 1)
        return write_late(c, st, ev, err);
    if (rc < 0)
        rc = engine_failed(c, rc, err);
    if (rc == TLM_ETYPE || rc == TLM_EPARSE || rc == TLM_ERANGE)
        return stage_reject(st, "--agg: %s", err->text);
    if (rc < 0)
        return rc;
    return rows ? stage_rows(st, rows, err) : 0;
}

/* Read-ahead: prefetch the key and window an event of the batch will update. Keys
 * computed by expressions (and filtered events) are not worth it: nothing is done. */
static void prefetch(void *ctx, const struct stage_event *ev, size_t slot, int pass)
{
    struct wctx *c = ctx;
    struct tlm_jval keys[64];
    if (pass > 0) {
        tlm_window_prefetch(c->win, NULL, pass, &c->hints[slot]);
        return;
    }
    for (size_t i = 0; i < c->wo.nkeys; i++)
        keys[i] = ev->vals[c->key_val[i]];
    tlm_window_prefetch(c->win, keys, 0, &c->hints[slot]);
}

static int on_watermark(void *ctx, struct stage *st, tlm_time_t wm, struct tlm_error *err)
{
    struct wctx *c = ctx;
    long rows = 0;
    int rc;
    tlm_window_set_unit(c->win, stage_time_unit(st));
    c->st = st;
    rc = tlm_window_advance(c->win, wm, &stage_out(st)->buf, &rows, err);
    if (rc)
        return engine_failed(c, rc, err);
    return rows ? stage_rows(st, rows, err) : 0;
}

static int on_end(void *ctx, struct stage *st, struct tlm_error *err)
{
    struct wctx *c = ctx;
    long rows = 0;
    int rc;
    tlm_window_set_unit(c->win, stage_time_unit(st));
    c->st = st;
    rc = tlm_window_finish(c->win, &stage_out(st)->buf, &rows, err);
    if (rc)
        return engine_failed(c, rc, err);
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

/* Kafka input: one window engine per partition (see part_new in stage.h). */
static void *part_new(void *ctx)
{
    struct wctx *c = ctx;
    struct tlm_window *w = tlm_window_create(&c->wo, c->aggs, NULL);
    if (w)
        tlm_window_set_drain(w, drain, c);
    return w;
}

static void *part_swap(void *ctx, void *part)
{
    struct wctx *c = ctx;
    void *prev = c->win;
    c->win = part;
    return prev;
}

static void part_free(void *ctx, void *part)
{
    (void)ctx;
    tlm_window_destroy(part);
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
    /* every event updates size / every windows: a huge ratio (--slide 1d --every 1ms)
     * would spend minutes on one event, deaf to signals meanwhile */
    if (c.wo.kind == TLM_WIN_SLIDE && c.wo.every > 0 && c.wo.size / c.wo.every > WINDOW_MAX_PER_EVENT)
        cli_usage_error("--slide / --every: an event would be in %lld windows, at most %d allowed",
                        (long long)(c.wo.size / c.wo.every), WINDOW_MAX_PER_EVENT);
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
    tlm_window_set_drain(c.win, drain, &c);
    build_paths(&c);

    memset(&ops, 0, sizeof(ops));
    ops.name = "window";
    ops.ctx = &c;
    ops.needs_time = 1;
    ops.paths = c.paths;
    ops.npaths = c.npaths;
    ops.on_event = on_event;
    if (!c.where && !c.key_partial) {
        ops.prefetch = prefetch;
        ops.prefetch_passes = TLM_WINDOW_PREFETCH_PASSES;
    }
    ops.on_watermark = on_watermark;
    ops.on_end = on_end;
    ops.on_flush = on_flush;
    ops.shape = shape;
    ops.save = save;
    ops.load = load;
    ops.stats = stats;
    ops.part_new = part_new;
    ops.part_swap = part_swap;
    ops.part_free = part_free;

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
        if (c.key_expr[i]) {
            tlm_expr_destroy(c.key_expr[i]);
            continue;
        }
        free(c.paths[c.key_val[i]].seg ? c.paths[c.key_val[i]].seg[0] : NULL);
        free(c.paths[c.key_val[i]].seg);
    }
    free(c.key_expr);
    free(c.key_val);
    free(c.key_fields);
    free(c.key_expr_paths);
    free(c.key_expr_npaths);
    tlm_buf_free(&c.keybuf);
    free(c.paths);
    free(c.key_names);
    free(c.key_copy);
    free(common.inputs);
    cli_exit(status);
}
