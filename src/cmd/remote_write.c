/*
 * remote_write.c - `telem remote-write`: push events as samples to a Prometheus remote
 * write receiver (1.0, or 2.0 with --protocol v2), batched, sharded, retried, spooled.
 *
 * Drives: the stage loop (reading, event time, rejects, stats), lib/rw (encoding, name
 * rules), and remote_write_send.c (libcurl shard workers, retries, splitting, spool).
 *
 * Per event: the metric name (a constant or a field), one sample per --value field (the
 * field name as a suffix when there are several), the labels from --label fields and
 * --const-label, sorted by name. Names are checked against the 1.0 rules once (options) or
 * per event (a name read from a field): --sanitize rewrites, otherwise the event is
 * rejected with the reason. Each label set is encoded once (protobuf label fields) and is
 * the key of a series table; a series belongs to one shard (hash of its labels). A sample
 * at or before the last timestamp already flushed for its series is rejected (a receiver
 * would refuse the whole batch for it); within a batch, samples of a series are sorted by
 * time and, for equal times, the last one wins. A shard's batch is flushed when it holds
 * --batch samples or --batch-bytes, when its oldest sample waited --flush-interval, and at
 * the end of input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli.h"
#include "cmd.h"
#include "jwrite.h"
#include "remote_write.h"
#include "rw.h"
#include "stage.h"

static const char *const usage[] = {
    "telem remote-write (--url <url> | --dry-run) --name <name> --value <field>[,<field>...]",
    "                   [--label <field>[,<field>...]] [--const-label <k>=<v>] [<options>]",
    "                   [<file>...]",
    NULL,
};

enum { K_URL = CLI_KEY_CMD, K_NAME, K_VALUE, K_LABEL, K_CONST, K_SANITIZE, K_MAX_FUTURE,
       K_BATCH, K_BATCH_BYTES, K_FLUSH, K_SHARDS, K_QUEUE, K_PROTOCOL, K_TIMEOUT, K_RETRIES,
       K_MIN_BACKOFF, K_MAX_BACKOFF, K_HEADER, K_CACERT, K_CERT, K_KEY, K_BEARER, K_BASIC,
       K_SPOOL, K_SPOOL_SIZE, K_DRY_RUN, K_FORMAT, K_ALLOW_OOO };

static const struct cli_opt map_opts[] = {
    { "name", K_NAME, "<name>", "metric name: a constant, or $.<field> to read it from each event" },
    { "value", K_VALUE, "<fields>", "sample values (several: one series each, named <name>_<field>)" },
    { "label", K_LABEL, "<fields>", "labels from these fields ([<label>=]<field>, comma-separated)" },
    { "const-label", K_CONST, "<k>=<v>", "a label with a constant value (repeatable)" },
    { "sanitize", K_SANITIZE, NULL, "rewrite invalid metric and label names instead of rejecting" },
    { "max-future", K_MAX_FUTURE, "<dur>", "reject samples further ahead of the clock (default 10m; 0: no limit)" },
    { "allow-out-of-order", K_ALLOW_OOO, NULL, "send samples older than their series' last sent one (receivers that take them)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt send_opts[] = {
    { "url", K_URL, "<url>", "the receiver's remote write endpoint" },
    { "protocol", K_PROTOCOL, "<v>", "v1 (default) or v2 (falls back to v1 if the receiver ignores it)" },
    { "batch", K_BATCH, "<n>", "samples per request (default 2000)" },
    { "batch-bytes", K_BATCH_BYTES, "<n>", "uncompressed bytes per request (default 1048576)" },
    { "flush-interval", K_FLUSH, "<dur>", "send a batch when its oldest sample waited this long (default 1s)" },
    { "shards", K_SHARDS, "<n>", "parallel requests; each series stays on one (default 2)" },
    { "queue", K_QUEUE, "<n>", "batches waiting in memory per shard (default 4)" },
    { "timeout", K_TIMEOUT, "<dur>", "timeout of one request (default 30s)" },
    { "max-retries", K_RETRIES, "<n>", "retries of a request, -1: no limit (default 10; with --spool -1)" },
    { "min-backoff", K_MIN_BACKOFF, "<dur>", "first retry delay (default 30ms)" },
    { "max-backoff", K_MAX_BACKOFF, "<dur>", "longest retry delay (default 5s)" },
    { "spool", K_SPOOL, "<dir>", "write each batch to <dir> before sending; resend it after a crash" },
    { "spool-size", K_SPOOL_SIZE, "<n>", "bytes the spool may hold before input waits (default 1073741824)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt http_opts[] = {
    { "header", K_HEADER, "<h>", "an extra request header \"Name: value\" (repeatable)" },
    { "bearer-token-file", K_BEARER, "<file>", "send the token in <file> as a bearer token" },
    { "basic-auth-file", K_BASIC, "<file>", "basic authentication with user:password read from <file>" },
    { "cacert", K_CACERT, "<file>", "CA certificates to verify the receiver with" },
    { "cert", K_CERT, "<file>", "client certificate (TLS)" },
    { "key", K_KEY, "<file>", "client certificate's private key" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt debug_opts[] = {
    { "dry-run", K_DRY_RUN, NULL, "send nothing: write the samples that would be sent" },
    { "format", K_FORMAT, "<fmt>", "of --dry-run: prom (default), json, or pb (raw 1.0 protobuf)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Mapping", map_opts },
    { "Sending", send_opts },
    { "HTTP", http_opts },
    { "Debugging", debug_opts },
    { "Input and output", cli_opts_io },
    { "Event time", cli_opts_time },
    { "Bad input", cli_opts_errors },
    { "Reporting", cli_opts_report },
    { "Help", cli_opts_help },
    { NULL, NULL },
};

static const struct cli_cmd rw_cmd = {
    "remote-write", "Push events as samples to a Prometheus remote write receiver", usage, groups,
};

/* ---- state ------------------------------------------------------------------------- */

enum { F_PROM, F_JSON, F_PB };

struct lspec {              /* one label, in name order */
    char *name;
    size_t nlen;
    long path;              /* index into paths, or -1 for a constant / the metric name */
    int is_name;            /* __name__ */
    char *value;            /* constant value */
    size_t vlen;
};

struct vspec {
    long path;
    char *suffix;           /* "_<field>" when there are several values, else "" */
    const char *field;
};

struct series {
    uint64_t hash;
    size_t off, len;        /* encoded label fields in the arena */
    int64_t last;           /* last timestamp flushed, INT64_MIN if none */
    uint32_t gen;           /* batch generation it was last added in */
    int32_t head, tail;     /* its samples in the current batch */
};

struct entry {
    int64_t ts;
    double v;
    long long line;         /* input line, for --reject */
    int32_t next;
};

struct shard {
    struct entry *e;
    size_t n, cap;
    uint32_t *order;        /* series in the batch, by first sample */
    size_t norder, cap_order;
    size_t bytes;
    double t_first;
    uint32_t gen;
};

struct rctx {
    const struct cli_common *common;
    struct rw_send_opts so;
    const char *name_spec;
    int name_field;         /* the metric name is read from a field */
    char **value_specs, **label_specs, **const_specs, **hdrs;
    size_t nvalue_specs, nlabel_specs, nconst_specs, nhdrs;
    int sanitize, dry_run, format;
    int allow_ooo;          /* --allow-out-of-order */
    int64_t max_future_ms;
    long batch;
    long batch_bytes;
    double flush_ms;
    const char *bearer_file, *basic_file;

    struct tlm_path *paths;
    size_t npaths;
    struct lspec *ls;
    size_t nls;
    struct vspec *vs;
    size_t nvs;
    long name_path;
    size_t name_idx;        /* the __name__ entry of ls */

    struct series *ser;
    size_t nser, cap_ser;
    int32_t *tab;           /* open addressing: series index + 1, 0 = empty */
    size_t tab_cap;
    struct tlm_buf arena;
    struct shard *sh;
    int nshards;

    struct tlm_buf vals, key, pb, name; /* label values; label fields; batch; scratch */
    struct tlm_rw_label *lab;
    struct tlm_rw_sample *tmp;
    long long *tlines;      /* input line of each tmp sample */
    size_t cap_tmp;
    struct tlm_rw_series *views;
    size_t cap_views;
    struct rw_sender *sender;
    struct stage *st;
    long long samples, replaced, events_seen;
    char err_text[512];
    int failed;
    int ended;              /* on_end ran */
    int started;            /* the sender sent the old spool and runs */
};

/* Starts the sender at the first callback of the stage loop, not before: the loop opens
 * (and truncates) --reject first, and refusals of the old spool go there too. */
static int start(struct rctx *c, struct tlm_error *err)
{
    if (c->started || !c->sender)
        return 0;
    c->started = 1;
    if (rw_sender_start(c->sender, err) == 0)
        return 0;
    c->failed = 1; /* no shard runs: nothing more may be queued */
    return err->code ? err->code : TLM_EIO;
}

static void add_list(char ***arr, size_t *n, const char *arg, int split)
{
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        cli_usage_error("out of memory");
    for (char *t = split ? strtok_r(copy, ",", &save) : copy; t;
         t = split ? strtok_r(NULL, ",", &save) : NULL) {
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = '\0';
        if (!*t)
            cli_usage_error("empty element in '%s'", arg);
        char **a = realloc(*arr, (*n + 2) * sizeof(char *));
        if (!a)
            cli_usage_error("out of memory");
        *arr = a;
        a[(*n)++] = strdup(t);
        a[*n] = NULL;
    }
    free(copy);
}

static void handle(int key, const char *arg, void *p)
{
    struct rctx *c = p;
    switch (key) {
    case K_URL: c->so.url = arg; break;
    case K_NAME: c->name_spec = arg; break;
    case K_PROTOCOL:
        if (strcmp(arg, "v1") == 0)
            c->so.v2 = 0;
        else if (strcmp(arg, "v2") == 0)
            c->so.v2 = 1;
        else
            cli_usage_error("--protocol: expected v1 or v2, got '%s'", arg);
        break;
    case K_VALUE: add_list(&c->value_specs, &c->nvalue_specs, arg, 1); break;
    case K_LABEL: add_list(&c->label_specs, &c->nlabel_specs, arg, 1); break;
    case K_CONST: add_list(&c->const_specs, &c->nconst_specs, arg, 0); break;
    case K_SANITIZE: c->sanitize = 1; break;
    case K_ALLOW_OOO: c->allow_ooo = 1; break;
    case K_MAX_FUTURE: c->max_future_ms = cli_duration("max-future", arg) / 1000000; break;
    case K_BATCH: c->batch = (long)cli_count("batch", arg, 1, 10000000); break;
    case K_BATCH_BYTES: c->batch_bytes = (long)cli_count("batch-bytes", arg, 64, 1L << 30); break;
    case K_FLUSH: c->flush_ms = (double)cli_duration("flush-interval", arg) / 1e6; break;
    case K_SHARDS: c->so.shards = (int)cli_count("shards", arg, 1, 256); break;
    case K_QUEUE: c->so.queue = (int)cli_count("queue", arg, 1, 1000000); break;
    case K_TIMEOUT: c->so.timeout_ms = (long)(cli_duration("timeout", arg) / 1000000); break;
    case K_RETRIES: c->so.max_retries = (long)cli_count("max-retries", arg, -1, 1000000000); break;
    case K_MIN_BACKOFF: c->so.min_backoff_ms = (double)cli_duration("min-backoff", arg) / 1e6; break;
    case K_MAX_BACKOFF: c->so.max_backoff_ms = (double)cli_duration("max-backoff", arg) / 1e6; break;
    case K_HEADER: add_list(&c->hdrs, &c->nhdrs, arg, 0); break;
    case K_CACERT: c->so.cacert = arg; break;
    case K_CERT: c->so.cert = arg; break;
    case K_KEY: c->so.key = arg; break;
    case K_BEARER: c->bearer_file = arg; break;
    case K_BASIC: c->basic_file = arg; break;
    case K_SPOOL: c->so.spool = arg; break;
    case K_SPOOL_SIZE: c->so.spool_max = (int64_t)cli_count("spool-size", arg, 4096, INT64_MAX); break;
    case K_DRY_RUN: c->dry_run = 1; break;
    case K_FORMAT:
        if (strcmp(arg, "prom") == 0)
            c->format = F_PROM;
        else if (strcmp(arg, "json") == 0)
            c->format = F_JSON;
        else if (strcmp(arg, "pb") == 0)
            c->format = F_PB;
        else
            cli_usage_error("--format: expected prom, json or pb, got '%s'", arg);
        break;
    }
}

/* ---- setup ------------------------------------------------------------------------- */

static long add_path(struct rctx *c, const char *field)
{
    const char *f = strncmp(field, "$.", 2) == 0 ? field + 2 : field;
    size_t nseg = 1;
    char *copy, *save = NULL;
    for (const char *q = f; *q; q++)
        nseg += *q == '.';
    struct tlm_path *p = realloc(c->paths, (c->npaths + 1) * sizeof(*p));
    if (!p || !(copy = strdup(f)))
        cli_usage_error("out of memory");
    c->paths = p;
    p = &c->paths[c->npaths];
    p->seg = calloc(nseg, sizeof(char *));
    p->nseg = 0;
    if (!p->seg)
        cli_usage_error("out of memory");
    for (char *t = strtok_r(copy, ".", &save); t; t = strtok_r(NULL, ".", &save))
        p->seg[p->nseg++] = t;
    if (p->nseg == 0 || p->nseg != nseg)
        cli_usage_error("'%s' is not a field name", field);
    return (long)c->npaths++;
}

/* A name given in an option: valid, or rewritten with --sanitize, or a usage error. */
static char *option_name(struct rctx *c, const char *what, const char *s, size_t n, int metric)
{
    struct tlm_buf b = TLM_BUF_INIT;
    if (metric ? tlm_rw_valid_metric(s, n) : tlm_rw_valid_label(s, n)) {
        tlm_buf_append(&b, s, n);
        return b.data;
    }
    if (!c->sanitize)
        cli_usage_error("%s: '%.*s' is not a valid %s name (use --sanitize to rewrite it)", what,
                        (int)n, s, metric ? "metric" : "label");
    tlm_rw_sanitize(s, n, metric, &b);
    return b.data;
}

static int cmp_ls(const void *a, const void *b)
{
    const struct lspec *x = a, *y = b;
    size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
    int r = memcmp(x->name, y->name, n);
    return r ? r : (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

static void setup_mapping(struct rctx *c)
{
    size_t n = 1 + c->nlabel_specs + c->nconst_specs;
    if (!c->name_spec)
        cli_usage_error("which metric? give --name");
    if (!c->nvalue_specs)
        cli_usage_error("which values? give --value <field>");
    c->ls = calloc(n, sizeof(*c->ls));
    c->vs = calloc(c->nvalue_specs, sizeof(*c->vs));
    if (!c->ls || !c->vs)
        cli_usage_error("out of memory");
    /* the metric name */
    c->ls[0].name = strdup("__name__");
    c->ls[0].nlen = 8;
    c->ls[0].is_name = 1;
    c->ls[0].path = -1;
    c->name_path = -1;
    if (strncmp(c->name_spec, "$.", 2) == 0) {
        c->name_field = 1;
        c->name_path = add_path(c, c->name_spec);
    } else {
        c->ls[0].value = option_name(c, "--name", c->name_spec, strlen(c->name_spec), 1);
        c->ls[0].vlen = strlen(c->ls[0].value);
    }
    c->nls = 1;
    /* values */
    c->nvs = c->nvalue_specs;
    for (size_t i = 0; i < c->nvs; i++) {
        const char *f = c->value_specs[i];
        const char *last = strrchr(f, '.');
        last = last ? last + 1 : f;
        c->vs[i].field = f;
        c->vs[i].path = add_path(c, f);
        if (c->nvs > 1) {
            char *nm = option_name(c, "--value", last, strlen(last), 1);
            size_t l = strlen(nm);
            c->vs[i].suffix = malloc(l + 2);
            c->vs[i].suffix[0] = '_';
            memcpy(c->vs[i].suffix + 1, nm, l + 1);
            free(nm);
        } else {
            c->vs[i].suffix = strdup("");
        }
    }
    /* labels from fields: [label=]field */
    for (size_t i = 0; i < c->nlabel_specs; i++) {
        const char *spec = c->label_specs[i], *eq = strchr(spec, '=');
        const char *field = eq ? eq + 1 : spec, *nm = spec;
        size_t nl = eq ? (size_t)(eq - spec) : strlen(spec);
        if (!eq) {
            const char *last = strrchr(field, '.');
            nm = last ? last + 1 : field;
            if (strncmp(field, "$.", 2) == 0 && !last)
                nm = field + 2;
            nl = strlen(nm);
        }
        struct lspec *l = &c->ls[c->nls++];
        l->name = option_name(c, "--label", nm, nl, 0);
        l->nlen = strlen(l->name);
        l->path = add_path(c, field);
    }
    for (size_t i = 0; i < c->nconst_specs; i++) {
        const char *spec = c->const_specs[i], *eq = strchr(spec, '=');
        if (!eq)
            cli_usage_error("--const-label: expected <k>=<v>, got '%s'", spec);
        struct lspec *l = &c->ls[c->nls++];
        l->name = option_name(c, "--const-label", spec, (size_t)(eq - spec), 0);
        l->nlen = strlen(l->name);
        l->path = -1;
        l->value = strdup(eq + 1);
        l->vlen = strlen(eq + 1);
        if (l->vlen == 0)
            cli_usage_error("--const-label: '%s' has an empty value", spec);
    }
    for (size_t i = 1; i < c->nls; i++)
        if (c->ls[i].nlen >= 2 && memcmp(c->ls[i].name, "__", 2) == 0)
            cli_usage_error("label '%s': names starting with __ are reserved", c->ls[i].name);
    qsort(c->ls, c->nls, sizeof(*c->ls), cmp_ls);
    for (size_t i = 1; i < c->nls; i++)
        if (cmp_ls(&c->ls[i - 1], &c->ls[i]) == 0)
            cli_usage_error("label '%s' is given twice", c->ls[i].name);
    for (size_t i = 0; i < c->nls; i++)
        if (c->ls[i].is_name)
            c->name_idx = i;
    if (c->nls > 64 || c->nvs > 64)
        cli_usage_error("at most 63 labels and 64 values");
    c->lab = calloc(c->nls, sizeof(*c->lab));
    if (!c->lab)
        cli_usage_error("out of memory");
}

/* Reads a credential file (first line, without the newline). */
static char *read_secret(const char *opt, const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    if (!f)
        cli_usage_error("--%s: cannot open '%s'", opt, path);
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0])
        cli_usage_error("--%s: '%s' is empty", opt, path);
    return strdup(buf);
}

/* ---- series table ------------------------------------------------------------------- */

static uint64_t hash_key(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h;
}

static int tab_grow(struct rctx *c)
{
    size_t ncap = c->tab_cap ? c->tab_cap * 2 : 1024;
    int32_t *t = calloc(ncap, sizeof(*t));
    if (!t)
        return -1;
    for (size_t i = 0; i < c->nser; i++) {
        size_t j = c->ser[i].hash & (ncap - 1);
        while (t[j])
            j = (j + 1) & (ncap - 1);
        t[j] = (int32_t)i + 1;
    }
    free(c->tab);
    c->tab = t;
    c->tab_cap = ncap;
    return 0;
}

/* The series of the label fields key[0..n): found or added. Returns its index or -1. */
static long series_of(struct rctx *c, const char *key, size_t n, uint64_t h)
{
    size_t j;
    if ((c->nser + 1) * 2 > c->tab_cap && tab_grow(c))
        return -1;
    for (j = h & (c->tab_cap - 1); c->tab[j]; j = (j + 1) & (c->tab_cap - 1)) {
        struct series *s = &c->ser[c->tab[j] - 1];
        if (s->hash == h && s->len == n && memcmp(c->arena.data + s->off, key, n) == 0)
            return c->tab[j] - 1;
    }
    if (c->nser == c->cap_ser) {
        size_t nc = c->cap_ser ? c->cap_ser * 2 : 1024;
        struct series *ns = realloc(c->ser, nc * sizeof(*ns));
        if (!ns)
            return -1;
        c->ser = ns;
        c->cap_ser = nc;
    }
    struct series *s = &c->ser[c->nser];
    s->hash = h;
    s->off = c->arena.len;
    s->len = n;
    s->last = INT64_MIN;
    s->gen = 0;
    s->head = s->tail = -1;
    if (tlm_buf_append(&c->arena, key, n))
        return -1;
    c->tab[j] = (int32_t)c->nser + 1;
    return (long)c->nser++;
}

/* ---- batches ------------------------------------------------------------------------ */

static int cmp_sample(const void *a, const void *b)
{
    const struct tlm_rw_sample *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static int write_dry(struct rctx *c, const struct tlm_buf *pb, struct tlm_error *err)
{
    struct tlm_writer *w = stage_out(c->st);
    struct tlm_rw_req r = TLM_RW_REQ_INIT;
    long rows = 0;
    int rc = 0;
    if (c->format == F_PB) {
        rc = tlm_buf_append(&w->buf, pb->data, pb->len);
    } else if ((rc = tlm_rw_decode_v1(pb->data, pb->len, &r, err)) == 0) {
        for (size_t i = 0; i < r.nseries && !rc; i++) {
            const struct tlm_rw_series *s = &r.series[i];
            for (size_t k = 0; k < s->nsamples && !rc; k++) {
                double v = s->samples[k].value;
                if (c->format == F_PROM) {
                    rc |= rw_series_text(s, &w->buf);
                    rc |= tlm_buf_putc(&w->buf, ' ');
                    rc |= tlm_rw_is_stale(v) ? tlm_buf_puts(&w->buf, "stale")
                                             : tlm_rw_format_value(v, &w->buf);
                    rc |= tlm_buf_printf(&w->buf, " %lld\n", (long long)s->samples[k].ts);
                } else {
                    rc |= tlm_buf_puts(&w->buf, "{\"labels\":{");
                    for (size_t j = 0; j < s->nlabels; j++) {
                        if (j)
                            rc |= tlm_buf_putc(&w->buf, ',');
                        rc |= tlm_json_put_string(&w->buf, s->labels[j].name, s->labels[j].nlen);
                        rc |= tlm_buf_putc(&w->buf, ':');
                        rc |= tlm_json_put_string(&w->buf, s->labels[j].value, s->labels[j].vlen);
                    }
                    rc |= tlm_buf_printf(&w->buf, "},\"timestamp\":%lld,\"value\":",
                                         (long long)s->samples[k].ts);
                    if (isfinite(v)) {
                        rc |= tlm_json_write_number(&w->buf, v);
                    } else {
                        rc |= tlm_buf_putc(&w->buf, '"');
                        rc |= tlm_rw_is_stale(v) ? tlm_buf_puts(&w->buf, "stale")
                                                 : tlm_rw_format_value(v, &w->buf);
                        rc |= tlm_buf_putc(&w->buf, '"');
                    }
                    rc |= tlm_buf_puts(&w->buf, "}\n");
                }
                rows++;
            }
        }
        if (rc > 0)
            rc = TLM_ENOMEM;
    }
    tlm_rw_req_free(&r);
    if (rc)
        return err->code ? rc : tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return w->buf.len >= TLM_WRITER_HIGH ? tlm_writer_flush(w, err) : 0;
}

/* Encodes shard b's batch and sends it (or prints it with --dry-run). */
static int flush_shard(struct rctx *c, int bi, struct tlm_error *err)
{
    struct shard *b = &c->sh[bi];
    size_t ns = 0;
    int rc;
    if (b->n == 0)
        return 0;
    if (b->n > c->cap_tmp) {
        struct tlm_rw_sample *t = realloc(c->tmp, b->n * sizeof(*t));
        if (t)
            c->tmp = t;
        long long *tl = t ? realloc(c->tlines, b->n * sizeof(*tl)) : NULL;
        if (!t || !tl)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        c->tlines = tl;
        c->cap_tmp = b->n;
    }
    if (b->norder > c->cap_views) {
        struct tlm_rw_series *v = realloc(c->views, b->norder * sizeof(*v));
        if (!v)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        c->views = v;
        c->cap_views = b->norder;
    }
    for (size_t i = 0; i < b->norder; i++) {
        struct series *s = &c->ser[b->order[i]];
        size_t start = ns, k, m;
        int sorted = 1;
        for (int32_t e = s->head; e >= 0; e = b->e[e].next) {
            c->tmp[ns].ts = b->e[e].ts;
            c->tmp[ns].value = b->e[e].v;
            c->tlines[ns] = b->e[e].line;
            if (ns > start && c->tmp[ns].ts < c->tmp[ns - 1].ts)
                sorted = 0;
            ns++;
        }
        m = ns - start;
        if (!sorted) {
            /* stable: equal times keep their arrival order, so the last one wins */
            for (k = 1; k < m; k++) {
                struct tlm_rw_sample x = c->tmp[start + k];
                long long xl = c->tlines[start + k];
                size_t j = k;
                while (j > 0 && cmp_sample(&c->tmp[start + j - 1], &x) > 0) {
                    c->tmp[start + j] = c->tmp[start + j - 1];
                    c->tlines[start + j] = c->tlines[start + j - 1];
                    j--;
                }
                c->tmp[start + j] = x;
                c->tlines[start + j] = xl;
            }
        }
        /* equal times: keep the last */
        size_t w = start;
        for (k = start; k < ns; k++) {
            if (k + 1 < ns && c->tmp[k + 1].ts == c->tmp[k].ts) {
                c->replaced++;
                continue;
            }
            c->tlines[w] = c->tlines[k];
            c->tmp[w++] = c->tmp[k];
        }
        ns = w;
        s->last = c->tmp[ns - 1].ts;
        s->head = s->tail = -1;
        c->views[i].labels = NULL;
        c->views[i].nlabels = 0;
        c->views[i].lpb = NULL;
        c->views[i].lpb_len = s->len;
        c->views[i].samples = (void *)(uintptr_t)start;
        c->views[i].nsamples = ns - start;
    }
    for (size_t i = 0; i < b->norder; i++) {
        c->views[i].lpb = c->arena.data + c->ser[b->order[i]].off;
        c->views[i].samples = c->tmp + (uintptr_t)c->views[i].samples;
    }
    tlm_buf_reset(&c->pb);
    if (tlm_rw_encode_v1(c->views, b->norder, &c->pb))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    b->n = 0;
    b->norder = 0;
    b->bytes = 0;
    b->gen++;
    if (c->dry_run)
        return write_dry(c, &c->pb, err);
    long long *lines = malloc((ns ? ns : 1) * sizeof(*lines));
    if (!lines)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    memcpy(lines, c->tlines, ns * sizeof(*lines));
    rc = rw_sender_submit(c->sender, bi, &c->pb, (long)ns, lines, err);
    return rc;
}

static double mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int flush_aged(struct rctx *c, int all, struct tlm_error *err)
{
    double now = all ? 0 : mono_ms();
    for (int i = 0; i < c->nshards; i++)
        if (c->sh[i].n && (all || now - c->sh[i].t_first >= c->flush_ms)) {
            int rc = flush_shard(c, i, err);
            if (rc)
                return rc;
        }
    return 0;
}

static int add_sample(struct rctx *c, long si, int64_t ts, double v, long long line,
                      struct tlm_error *err)
{
    struct series *s = &c->ser[si];
    int bi = (int)((s->hash >> 32) % (uint64_t)c->nshards);
    struct shard *b = &c->sh[bi];
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        struct entry *e = realloc(b->e, nc * sizeof(*e));
        if (!e)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        b->e = e;
        b->cap = nc;
    }
    if (b->n == 0)
        b->t_first = mono_ms();
    int32_t idx = (int32_t)b->n++;
    b->e[idx].ts = ts;
    b->e[idx].v = v;
    b->e[idx].line = line;
    b->e[idx].next = -1;
    b->bytes += 24;
    if (s->gen != b->gen || s->head < 0) {
        if (b->norder == b->cap_order) {
            size_t nc = b->cap_order ? b->cap_order * 2 : 256;
            uint32_t *o = realloc(b->order, nc * sizeof(*o));
            if (!o)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            b->order = o;
            b->cap_order = nc;
        }
        b->order[b->norder++] = (uint32_t)si;
        s->gen = b->gen;
        s->head = idx;
        b->bytes += s->len + 6;
    } else {
        b->e[s->tail].next = idx;
    }
    s->tail = idx;
    c->samples++;
    if ((long)b->n >= c->batch || (long)b->bytes >= c->batch_bytes)
        return flush_shard(c, bi, err);
    return 0;
}

/* ---- events ------------------------------------------------------------------------- */

/* The text of a label value: appended to c->vals. Returns 1 if present, 0 if absent (null,
 * missing, empty), -1 if not a scalar. */
static int label_text(struct rctx *c, const struct tlm_jval *v)
{
    switch (v->type) {
    case TLM_JSTRING: {
        size_t before = c->vals.len;
        if (tlm_jval_string(v, &c->vals))
            return -1;
        return c->vals.len > before;
    }
    case TLM_JINT:
    case TLM_JREAL: return tlm_buf_append(&c->vals, v->p, v->n) ? -1 : 1;
    case TLM_JTRUE: return tlm_buf_puts(&c->vals, "true") ? -1 : 1;
    case TLM_JFALSE: return tlm_buf_puts(&c->vals, "false") ? -1 : 1;
    case TLM_JNONE:
    case TLM_JNULL: return 0;
    default: return -1;
    }
}

/* A sample value: number, or the strings "NaN", "+Inf"/"Inf", "-Inf", "stale". Returns 1,
 * 0 for absent (missing or null), -1 for anything else. */
static int sample_value(struct rctx *c, const struct tlm_jval *v, double *d)
{
    if (v->type == TLM_JNONE || v->type == TLM_JNULL)
        return 0;
    if (v->type == TLM_JINT || v->type == TLM_JREAL)
        return tlm_jval_double(v, d) == 0 ? 1 : -1;
    if (v->type != TLM_JSTRING)
        return -1;
    tlm_buf_reset(&c->name);
    if (tlm_jval_string(v, &c->name))
        return -1;
    const char *s = c->name.data ? c->name.data : "";
    if (strcmp(s, "NaN") == 0)
        *d = NAN;
    else if (strcmp(s, "+Inf") == 0 || strcmp(s, "Inf") == 0)
        *d = INFINITY;
    else if (strcmp(s, "-Inf") == 0)
        *d = -INFINITY;
    else if (strcmp(s, "stale") == 0)
        *d = tlm_rw_stale();
    else
        return -1;
    return 1;
}

static const char *jtype_name(enum tlm_jtype t)
{
    static const char *const n[] = { "missing", "an object", "an array", "a string", "a number",
                                     "a number", "true", "false", "null" };
    return n[t];
}

static int on_event(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err)
{
    struct rctx *c = ctx;
    size_t at[64], len[64];
    size_t name_at = 0, name_len = 0;
    long sid[64];
    double val[64];
    int present[64];
    int64_t ts = ev->ts >= 0 ? ev->ts / 1000000 : -((-ev->ts + 999999) / 1000000);
    int rc, any = 0;

    c->st = st;
    if (!c->started && (rc = start(c, err)))
        return rc;
    tlm_buf_reset(&c->vals);
    if (c->max_future_ms > 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (ts > (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + c->max_future_ms)
            return stage_reject(st, "timestamp %lld ms is more than --max-future ahead of the clock",
                                (long long)ts);
    }
    /* the metric name from a field */
    if (c->name_field) {
        const struct tlm_jval *v = &ev->vals[c->name_path];
        if (v->type != TLM_JSTRING)
            return stage_reject(st, "name field '%s' is %s, not a string", c->name_spec + 2,
                                jtype_name(v->type));
        tlm_buf_reset(&c->key);
        if (tlm_jval_string(v, &c->key))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        name_at = c->vals.len;
        if (!c->key.len || !tlm_rw_valid_metric(c->key.data, c->key.len)) {
            if (!c->sanitize)
                return stage_reject(st, "'%s' is not a valid metric name", c->key.data ? c->key.data : "");
            if (tlm_rw_sanitize(c->key.data, c->key.len, 1, &c->vals))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        } else if (tlm_buf_append(&c->vals, c->key.data, c->key.len)) {
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        name_len = c->vals.len - name_at;
    }
    /* label values */
    for (size_t i = 0; i < c->nls; i++) {
        const struct lspec *l = &c->ls[i];
        if (l->path < 0) {
            len[i] = 1;
            continue;
        }
        at[i] = c->vals.len;
        rc = label_text(c, &ev->vals[l->path]);
        if (rc < 0)
            return stage_reject(st, "label field for '%s' is %s, not a scalar", l->name,
                                jtype_name(ev->vals[l->path].type));
        len[i] = rc ? c->vals.len - at[i] : 0;
    }
    /* one series per value field */
    for (size_t k = 0; k < c->nvs; k++) {
        const struct vspec *vs = &c->vs[k];
        present[k] = sample_value(c, &ev->vals[vs->path], &val[k]);
        if (present[k] < 0)
            return stage_reject(st, "value field '%s' is not a number", vs->field);
        if (!present[k])
            continue;
        any = 1;
        size_t nl = 0, name_start = c->vals.len;
        const char *base = c->name_field ? c->vals.data + name_at : c->ls[c->name_idx].value;
        size_t base_len = c->name_field ? name_len : c->ls[c->name_idx].vlen;
        int isoff[64];
        /* __name__ = base + suffix, appended to vals (base may live in vals: copy first) */
        if (tlm_buf_reserve(&c->vals, base_len + strlen(vs->suffix) + 1))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (c->name_field)
            base = c->vals.data + name_at;
        if (tlm_buf_append(&c->vals, base, base_len) || tlm_buf_puts(&c->vals, vs->suffix))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        for (size_t i = 0; i < c->nls; i++) {
            const struct lspec *l = &c->ls[i];
            struct tlm_rw_label *o = &c->lab[nl];
            isoff[nl] = 1;
            if (l->is_name) {
                o->value = (const char *)(uintptr_t)name_start;
                o->vlen = c->vals.len - name_start;
            } else if (l->path < 0) {
                o->value = l->value;
                o->vlen = l->vlen;
                isoff[nl] = 0;
            } else if (len[i]) {
                o->value = (const char *)(uintptr_t)at[i];
                o->vlen = len[i];
            } else {
                continue;
            }
            o->name = l->name;
            o->nlen = l->nlen;
            nl++;
        }
        /* offsets into vals become pointers now that vals stopped growing for this series */
        for (size_t j = 0; j < nl; j++)
            if (isoff[j])
                c->lab[j].value = c->vals.data + (uintptr_t)c->lab[j].value;
        tlm_buf_reset(&c->key);
        if (tlm_rw_labels_pb(c->lab, nl, &c->key))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        sid[k] = series_of(c, c->key.data, c->key.len, hash_key(c->key.data, c->key.len));
        if (sid[k] < 0)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (!c->allow_ooo && ts <= c->ser[sid[k]].last) {
            struct tlm_rw_series v = { c->lab, nl, NULL, 0, NULL, 0 };
            struct tlm_buf t = TLM_BUF_INIT;
            rw_series_text(&v, &t);
            snprintf(c->err_text, sizeof(c->err_text), "%s timestamp %lld for %s: already sent up to %lld",
                     ts == c->ser[sid[k]].last ? "duplicate" : "out-of-order", (long long)ts,
                     t.data ? t.data : "", (long long)c->ser[sid[k]].last);
            tlm_buf_free(&t);
            return stage_reject(st, "%s", c->err_text);
        }
    }
    if (!any)
        return stage_reject(st, "no value in %s%s", c->vs[0].field, c->nvs > 1 ? " or the other --value fields" : "");
    for (size_t k = 0; k < c->nvs; k++)
        if (present[k] && (rc = add_sample(c, sid[k], ts, val[k], stage_source_line(st), err)))
            return rc;
    if ((++c->events_seen & 255) == 0)
        return flush_aged(c, 0, err);
    return 0;
}

static int on_flush(void *ctx)
{
    struct rctx *c = ctx;
    struct tlm_error err;
    tlm_error_clear(&err);
    if (c->failed)
        return 0;
    int rc = start(c, &err);
    if (!rc)
        rc = flush_aged(c, 0, &err);
    if (rc) {
        cli_report(&err);
        c->failed = 1;
    }
    return rc;
}

static int on_end(void *ctx, struct stage *st, struct tlm_error *err)
{
    struct rctx *c = ctx;
    int rc;
    c->st = st;
    c->ended = 1;
    if ((rc = start(c, err)))
        return rc;
    if ((rc = flush_aged(c, 1, err)))
        return rc;
    if (c->sender && (rc = rw_sender_finish(c->sender, err)))
        return rc;
    return 0;
}

static void stats(void *ctx, json_t *o)
{
    struct rctx *c = ctx;
    json_object_set_new(o, "samples", json_integer(c->samples));
    json_object_set_new(o, "series", json_integer((json_int_t)c->nser));
    json_object_set_new(o, "replaced", json_integer(c->replaced));
    if (c->sender)
        rw_sender_stats(c->sender, o);
}

int cmd_remote_write(int argc, char **argv)
{
    struct rctx c;
    struct cli_common common;
    struct stage_ops ops;
    struct tlm_error err;
    char *bearer = NULL, *basic = NULL;
    int argi, status;

    memset(&c, 0, sizeof(c));
    c.batch = 2000;
    c.batch_bytes = 1 << 20;
    c.flush_ms = 1000;
    c.max_future_ms = 10 * 60 * 1000;
    c.so.shards = 2;
    c.so.queue = 4;
    c.so.timeout_ms = 30000;
    c.so.max_retries = -2; /* unset */
    c.so.min_backoff_ms = 30;
    c.so.max_backoff_ms = 5000;
    c.so.spool_max = (int64_t)1 << 30;
    tlm_error_clear(&err);
    argi = cli_parse(&rw_cmd, argc, argv, &common, handle, &c);
    cli_add_inputs(&common, argc - argi, argv + argi);
    c.common = &common;

    if (!c.so.url && !c.dry_run)
        cli_usage_error("where to? give --url <url> (or --dry-run)");
    if (c.format && !c.dry_run)
        cli_usage_error("--format applies to --dry-run");
    if (c.dry_run && c.so.spool)
        cli_usage_error("--spool applies when sending, not to --dry-run");
    if (c.so.max_retries == -2)
        c.so.max_retries = c.so.spool ? -1 : 10;
    if (c.so.min_backoff_ms <= 0 || c.so.max_backoff_ms < c.so.min_backoff_ms)
        cli_usage_error("--min-backoff must be > 0 and at most --max-backoff");
    if (c.flush_ms <= 0)
        cli_usage_error("--flush-interval must be longer than 0");
    for (size_t i = 0; i < c.nhdrs; i++) {
        static const char *const reserved[] = { "content-encoding", "content-type",
                                                "x-prometheus-remote-write-version", "user-agent" };
        const char *colon = strchr(c.hdrs[i], ':');
        if (!colon || colon == c.hdrs[i])
            cli_usage_error("--header: expected \"Name: value\", got '%s'", c.hdrs[i]);
        for (size_t k = 0; k < 4; k++)
            if ((size_t)(colon - c.hdrs[i]) == strlen(reserved[k]) &&
                strncasecmp(c.hdrs[i], reserved[k], strlen(reserved[k])) == 0)
                cli_usage_error("--header: %.*s is set by telem and cannot be changed",
                                (int)(colon - c.hdrs[i]), c.hdrs[i]);
    }
    c.so.headers = (const char *const *)c.hdrs;
    /* credentials: files or the environment, never the command line */
    if (c.bearer_file)
        bearer = read_secret("bearer-token-file", c.bearer_file);
    else if (getenv("TELEM_RW_BEARER_TOKEN") && *getenv("TELEM_RW_BEARER_TOKEN"))
        bearer = strdup(getenv("TELEM_RW_BEARER_TOKEN"));
    if (c.basic_file)
        basic = read_secret("basic-auth-file", c.basic_file);
    else if (getenv("TELEM_RW_BASIC_AUTH") && *getenv("TELEM_RW_BASIC_AUTH"))
        basic = strdup(getenv("TELEM_RW_BASIC_AUTH"));
    if (basic && !strchr(basic, ':'))
        cli_usage_error("basic authentication: expected user:password");
    c.so.bearer = bearer;
    c.so.basic = basic;
    c.so.reject = common.reject;
    setup_mapping(&c);
    c.nshards = c.so.shards;
    c.sh = calloc((size_t)c.nshards, sizeof(*c.sh));
    if (!c.sh)
        cli_usage_error("out of memory");
    for (int i = 0; i < c.nshards; i++)
        c.sh[i].gen = 1;

    /* a sink: no watermark records in the output; a quiet live input still flushes */
    common.no_watermarks = 1;
    if (!common.idle_timeout)
        common.idle_timeout = (int64_t)(c.flush_ms * 1e6);

    if (!c.dry_run) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (!(c.sender = rw_sender_create(&c.so, &err))) {
            cli_report(&err);
            rw_sender_destroy(c.sender);
            curl_global_cleanup();
            cli_exit(EXIT_DATA);
        }
    }

    memset(&ops, 0, sizeof(ops));
    ops.name = "remote-write";
    ops.ctx = &c;
    ops.needs_time = 1;
    ops.paths = c.paths;
    ops.npaths = c.npaths;
    ops.on_event = on_event;
    ops.on_end = on_end;
    ops.on_flush = on_flush;
    ops.stats = stats;

    status = stage_run(&common, &ops);

    if (c.sender) {
        /* a failed run still lets the queued batches go (or stay in the spool) */
        struct tlm_error e2;
        tlm_error_clear(&e2);
        /* stopped by a signal (no end of input): the batches read so far still go */
        if (!c.ended && !c.failed && (start(&c, &e2) || flush_aged(&c, 1, &e2)))
            cli_report(&e2);
        if (rw_sender_finish(c.sender, &e2) && !c.ended) {
            cli_report(&e2);
            status = status ? status : EXIT_DATA;
        }
        rw_sender_destroy(c.sender);
        curl_global_cleanup();
    }
    for (size_t i = 0; i < c.npaths; i++) {
        free(c.paths[i].seg ? c.paths[i].seg[0] : NULL);
        free(c.paths[i].seg);
    }
    free(c.paths);
    for (size_t i = 0; i < c.nls; i++) {
        free(c.ls[i].name);
        free(c.ls[i].value);
    }
    free(c.ls);
    for (size_t i = 0; i < c.nvs; i++)
        free(c.vs[i].suffix);
    free(c.vs);
    for (char **l = c.value_specs; l && *l; l++)
        free(*l);
    for (char **l = c.label_specs; l && *l; l++)
        free(*l);
    for (char **l = c.const_specs; l && *l; l++)
        free(*l);
    for (char **l = c.hdrs; l && *l; l++)
        free(*l);
    free(c.value_specs);
    free(c.label_specs);
    free(c.const_specs);
    free(c.hdrs);
    for (int i = 0; i < c.nshards; i++) {
        free(c.sh[i].e);
        free(c.sh[i].order);
    }
    free(c.sh);
    free(c.ser);
    free(c.tab);
    free(c.lab);
    free(c.tmp);
    free(c.tlines);
    free(c.views);
    tlm_buf_free(&c.arena);
    tlm_buf_free(&c.vals);
    tlm_buf_free(&c.key);
    tlm_buf_free(&c.pb);
    tlm_buf_free(&c.name);
    free(bearer);
    free(basic);
    free(common.inputs);
    cli_exit(status);
}
