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
 *
 * Rules (seed 002, lib/rules): --rules FILE and --control FILE|FIFO keep a rule set that
 * changes while events flow. Threshold rules are counted by lib/rules on each event; pattern
 * rules are compiled into the same pattern engine as --pattern (added, replaced and removed
 * by id through the rules engine's on_change callback). --history replays archived events
 * into a threshold rule when it is added.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cep.h"
#include "cli.h"
#include "cmd.h"
#include "config.h"
#include "expr.h"
#include "jwrite.h"
#ifdef HAVE_KAFKA
#include "kafka.h"
#endif
#include "rules.h"
#include "stage.h"

static const char *const usage[] = {
    "telem cep [--pattern <pattern> | --pattern-file <file>]... [--key <field>]",
    "          [--rules <file>] [--control <file>] [--history <file>]...",
    "          [--emit <template>] [--timeouts <file> [--timeout-emit <template>]]",
    "          [--late <file>] [<options>] [<file>...]",
    NULL,
};

enum {
    K_PATTERN = CLI_KEY_CMD,
    K_PATTERN_FILE,
    K_KEY,
    K_EMIT,
    K_TIMEOUTS,
    K_TIMEOUT_EMIT,
    K_LATE,
    K_RULES,
    K_CONTROL,
    K_HISTORY
};

static const struct cli_opt pattern_opts[] = {
    { "pattern", K_PATTERN, "<pattern>", "a pattern in the pattern language (repeatable; ids p1, p2...)" },
    { "pattern-file", K_PATTERN_FILE, "<file>", "pattern documents: a JSON object or an array of them" },
    { "key", K_KEY, "<field>", "match per value of this field (default: one stream; with rules customerId)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt rule_opts[] = {
    { "rules", K_RULES, "<file>", "rule documents (threshold and pattern rules); SIGHUP re-reads it" },
    { "control", K_CONTROL, "<file>", "control messages (add, replace, delete rules) from a file or FIFO" },
    { "history", K_HISTORY, "<file>", "archive (file or directory) replayed into each threshold rule added" },
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
    { "Rules", rule_opts },
    { "Output", out_opts },
    CLI_STAGE_GROUPS,
};

static const struct cli_cmd cep_cmd = {
    "cep", "Detect event patterns (Flink CEP) per key in event time", usage, groups,
};

/* The engines: the patterns and rules with their per-key state (partial matches, counts,
 * queued control messages). One, or with a kafka:// input one per partition (stage.h,
 * part_new): every engine has the same patterns and follows the same --rules file and
 * --control stream (each at its own pace: a partition applies the control lines it has
 * not seen yet before its next event), so the rule set is the same everywhere and only
 * the per-key state is the partition's own. */
struct ceng {
    struct tlm_cep *cep;
    struct tlm_cep_template **emit;  /* per pattern */
    struct tlm_cep_template **temit; /* per pattern, for timeouts */
    struct tlm_rules *rs;            /* NULL without --rules / --control */
    struct slot {                    /* per pattern engine slot */
        char *scope;                 /* scope key of a per-customer pattern rule */
        char *extra;                 /* ,"name":...,"description":... of a pattern rule */
        int from_rule;
    } *slots;
    size_t nslots;
    size_t active;                   /* patterns in the engine */
    tlm_time_t max_ts;               /* highest event time processed (TLM_TIME_MIN: none) */
    size_t ctl_pos;                  /* control lines of cctx.ctl_off handed to this engine */
    long long ctl_lines;             /* control lines consumed (skipped after a restore) */
    long long ctl_skip;
    int reload_pending;              /* reload --rules after a restore */
    unsigned long long rules_hash;   /* of the --rules text in force */
    struct qline {                   /* control lines queued in lib/rules until their "at" */
        tlm_time_t at;
        long long line;
    } *q;                            /* in lib/rules' order: (at, arrival) */
    size_t nq, capq;
    struct ceng *next;               /* list of all engines (cctx.engines) */
};

struct cctx {
    const char **pattern_src;
    size_t npattern_src;
    const char **pattern_files;
    size_t npattern_files;
    const char *key_field;
    const char *emit_src;
    const char *timeouts_path;
    int end_unobserved;              /* nothing observes the end of input (tlm_cep_sink) */
    const char *timeout_emit_src;
    const char *late_path;
    struct ceng *e;                  /* the engine installed (e0 or a partition's) */
    struct ceng e0;
    struct ceng *engines;            /* all of them, e0 first */
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
    /* rules */
    const char *rules_path;
    const char *control_path;
    const char **history;            /* --history arguments (files or directories) */
    size_t nhistory;
    struct tlm_rules_opts ro;        /* of every engine's rules */
    struct change {
        enum tlm_rules_change what;
        char *id;
        json_t *doc;                 /* copy, NULL for DELETED */
    } *changes;                      /* recorded by on_change, applied after the call */
    size_t nchanges, capchanges;
    size_t nstatic;                  /* slots of --pattern / --pattern-file */
    int ctl_fd;                      /* -1: not open (yet) */
    int ctl_done;                    /* regular file read */
    int ctl_fifo;                    /* a FIFO: what it delivered before a restart is gone */
    struct tlm_buf ctl_buf;          /* a FIFO's incomplete last line */
    struct tlm_buf ctl_all;          /* every control line read (engines catch up from it) */
    size_t *ctl_off;                 /* start of line i in ctl_all (ctl_off[nctl]: the end) */
    size_t nctl, capctl;
    enum tlm_time_unit time_unit;    /* --time-unit (of "at" numbers) */
    long long ctl_errors, replays, replay_errors, replay_events, reloads;
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
    case K_RULES: c->rules_path = arg; return;
    case K_CONTROL: c->control_path = arg; return;
    case K_HISTORY: list = &c->history; n = &c->nhistory; break;
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
    if (tlm_cep_add(c->e->cep, p, &err))
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
    if (np == 0 && !c->rules_path && !c->control_path)
        cli_usage_error("which pattern? give --pattern, --pattern-file, --rules or --control");
}

static void build_paths(struct cctx *c)
{
    const struct tlm_path *ep;
    size_t n = tlm_cep_paths(c->e->cep, &ep), k = 0;
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

static int write_default(struct cctx *c, struct tlm_buf *b, const struct tlm_cep_match *m,
                         size_t pi)
{
    const char *id = tlm_cep_pattern_id(m->pattern);
    int rc = tlm_buf_puts(b, "{\"pattern\":");
    rc |= tlm_json_put_string(b, id, strlen(id));
    if (pi < c->e->nslots && c->e->slots[pi].extra)
        rc |= tlm_buf_puts(b, c->e->slots[pi].extra);
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
    for (i = 0; i < tlm_cep_count(c->e->cep) && tlm_cep_get(c->e->cep, i) != p; i++)
        ;
    return i;
}

static int write_emit(struct cctx *c, struct tlm_buf *b, const struct tlm_cep_match *m,
                      size_t pi)
{
    json_t *out = NULL;
    struct tlm_error err;
    int rc = tlm_cep_template_eval(m->timeout ? c->e->temit[pi] : c->e->emit[pi], m, &out, &err);
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

/* Is the match's key the scope key of a per-customer pattern rule? The key is JSON text
 * (a string as our writer spells it); the scope is a key's text: a string's characters,
 * or the JSON text of another value, as lib/rules compares. */
static int in_scope(struct cctx *c, const char *scope, const char *key, size_t keylen)
{
    size_t n = strlen(scope);
    if (keylen && key[0] != '"')
        return keylen == n && memcmp(key, scope, n) == 0;
    tlm_buf_reset(&c->tmp);
    if (tlm_json_put_string(&c->tmp, scope, n))
        return 0;
    return keylen == c->tmp.len && memcmp(key, c->tmp.data, keylen) == 0;
}

static int emit(void *arg, const struct tlm_cep_match *m, struct tlm_error *err)
{
    struct cctx *c = arg;
    int rc;
    size_t pi = pattern_index(c, m->pattern);
    if (pi < c->e->nslots && c->e->slots[pi].scope && !in_scope(c, c->e->slots[pi].scope, m->key, m->keylen))
        return 0;
    if (m->timeout) {
        if (!c->timeouts_path)
            return 0;
        if (!c->timeouts &&
            (rc = tlm_writer_open(c->timeouts_path, stage_restored(c->st), &c->timeouts, err)))
            return rc;
        if (c->e->temit && pi < c->e->nslots && c->e->temit[pi]) {
            rc = write_emit(c, &c->timeouts->buf, m, pi);
            if (rc < 0)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            return rc ? tlm_writer_end_line(c->timeouts, err) : 0;
        }
        if (write_default(c, &c->timeouts->buf, m, pi))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return tlm_writer_end_line(c->timeouts, err);
    }
    struct tlm_buf *b = &stage_out(c->st)->buf;
    if (c->e->emit && pi < c->e->nslots && c->e->emit[pi]) {
        rc = write_emit(c, b, m, pi);
        if (rc < 0)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return rc ? stage_rows(c->st, 1, err) : 0;
    }
    if (write_default(c, b, m, pi))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return stage_rows(c->st, 1, err);
}


/* ---- rules (--rules, --control, --history) ---------------------------------------- */

static int grow_slots(struct cctx *c)
{
    size_t n = tlm_cep_count(c->e->cep);
    if (n <= c->e->nslots)
        return 0;
    struct slot *s = realloc(c->e->slots, n * sizeof(*s));
    struct tlm_cep_template **e = s ? realloc(c->e->emit, n * sizeof(*e)) : NULL;
    if (s)
        c->e->slots = s;
    if (e)
        c->e->emit = e;
    struct tlm_cep_template **t = e ? realloc(c->e->temit, n * sizeof(*t)) : NULL;
    if (!t)
        return TLM_ENOMEM;
    c->e->temit = t;
    for (size_t i = c->e->nslots; i < n; i++) {
        c->e->slots[i] = (struct slot){ .scope = NULL, .extra = NULL, .from_rule = 0 };
        c->e->emit[i] = c->e->temit[i] = NULL;
    }
    c->e->nslots = n;
    return 0;
}

/* Validates a pattern rule's pattern (lib/rules calls it before accepting a change). */
static int rule_pattern_check(void *arg, const char *id, const char *pattern,
                              struct tlm_error *err)
{
    struct cctx *c = arg;
    struct tlm_error e;
    tlm_error_clear(&e);
    for (size_t i = 0; i < c->nstatic; i++) {
        const struct tlm_cep_pattern *p = tlm_cep_get(c->e->cep, i);
        if (p && !strcmp(tlm_cep_pattern_id(p), id))
            return tlm_error_set(err, TLM_EINVAL, "id taken by a --pattern");
    }
    struct tlm_cep_pattern *p = tlm_cep_pattern_parse(pattern, &e);
    if (!p)
        return tlm_error_set(err, e.code, "column %ld: %s", e.column, e.text);
    tlm_cep_pattern_destroy(p);
    return 0;
}

static void rule_changed(void *arg, enum tlm_rules_change what, const char *id, const json_t *doc)
{
    struct cctx *c = arg;
    if (c->nchanges == c->capchanges) {
        size_t n = c->capchanges ? 2 * c->capchanges : 16;
        struct change *v = realloc(c->changes, n * sizeof(*v));
        if (!v)
            return; /* lost: reported as out of memory by apply_changes */
        c->changes = v;
        c->capchanges = n;
    }
    c->changes[c->nchanges++] = (struct change){
        .what = what, .id = strdup(id), .doc = doc ? json_deep_copy(doc) : NULL
    };
}

static long find_slot(struct cctx *c, const char *id)
{
    for (size_t i = c->nstatic; i < tlm_cep_count(c->e->cep); i++) {
        const struct tlm_cep_pattern *p = tlm_cep_get(c->e->cep, i);
        if (p && !strcmp(tlm_cep_pattern_id(p), id))
            return (long)i;
    }
    return -1;
}

static void remove_pattern(struct cctx *c, const char *id)
{
    long i = find_slot(c, id);
    if (i < 0)
        return;
    tlm_cep_remove(c->e->cep, id, NULL);
    tlm_cep_template_destroy(c->e->emit[i]);
    tlm_cep_template_destroy(c->e->temit[i]);
    c->e->emit[i] = c->e->temit[i] = NULL;
    free(c->e->slots[i].scope);
    free(c->e->slots[i].extra);
    c->e->slots[i].scope = c->e->slots[i].extra = NULL;
    c->e->active--;
}

/* Compiles a pattern rule into the engine (checked by rule_pattern_check already). */
static int add_pattern_rule(struct cctx *c, const char *id, const json_t *doc,
                            struct tlm_error *err)
{
    struct tlm_error e;
    tlm_error_clear(&e);
    const char *src = json_string_value(json_object_get(doc, "pattern"));
    const char *esrc = json_string_value(json_object_get(doc, "emit"));
    const json_t *scope = json_object_get(json_object_get(doc, "scope"), "key");
    struct tlm_cep_pattern *p = src ? tlm_cep_pattern_parse(src, &e) : NULL;
    if (!p || tlm_cep_pattern_set_id(p, id)) {
        tlm_cep_pattern_destroy(p);
        return tlm_error_set(err, TLM_EINVAL, "rule %s: \"pattern\": %s", id, e.text);
    }
    if (tlm_cep_add(c->e->cep, p, err))
        return err->code;
    if (grow_slots(c))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    size_t i = tlm_cep_count(c->e->cep) - 1;
    c->e->active++;
    c->e->slots[i].from_rule = 1;
    if (scope) {
        char *t = json_is_string(scope) ? strdup(json_string_value(scope))
                                        : json_dumps(scope, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!t)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        c->e->slots[i].scope = t;
    }
    {
        /* the rule's name and description, copied into its matches as into alerts */
        const char *nm = json_string_value(json_object_get(doc, "name"));
        const char *ds = json_string_value(json_object_get(doc, "description"));
        struct tlm_buf x = TLM_BUF_INIT;
        int bad = 0;
        if (nm)
            bad |= tlm_buf_puts(&x, ",\"name\":") || tlm_json_put_string(&x, nm, strlen(nm));
        if (ds)
            bad |= tlm_buf_puts(&x, ",\"description\":") || tlm_json_put_string(&x, ds, strlen(ds));
        if (bad || ((nm || ds) && tlm_buf_putc(&x, 0))) {
            tlm_buf_free(&x);
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        c->e->slots[i].extra = x.data; /* NULL without either */
    }
    if (esrc || c->emit_src) {
        c->e->emit[i] = tlm_cep_template_create(tlm_cep_get(c->e->cep, i), esrc ? esrc : c->emit_src, &e);
        if (!c->e->emit[i])
            cli_warn("rule %s: \"emit\": column %ld: %s (matches are written whole)", id,
                     e.column, e.text);
    }
    if (c->timeout_emit_src) {
        c->e->temit[i] = tlm_cep_template_create(tlm_cep_get(c->e->cep, i), c->timeout_emit_src, &e);
        if (!c->e->temit[i])
            cli_warn("rule %s: --timeout-emit: column %ld: %s", id, e.column, e.text);
    }
    return 0;
}

/* --history arguments as files: a directory stands for its files in name order (the
 * archive's segment names sort in arrival order). Read when a replay starts, so that
 * segments written since the start are included. */
static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **history_files(struct cctx *c, size_t *n)
{
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    for (size_t i = 0; i < c->nhistory; i++) {
        struct stat sb;
        DIR *d = stat(c->history[i], &sb) == 0 && S_ISDIR(sb.st_mode) ? opendir(c->history[i]) : NULL;
        size_t first = cnt;
        struct dirent *de;
        for (;;) {
            char *path = NULL;
            if (d) {
                if (!(de = readdir(d)))
                    break;
                if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
                    continue;
                size_t len = strlen(c->history[i]) + strlen(de->d_name) + 2;
                if ((path = malloc(len)))
                    snprintf(path, len, "%s/%s", c->history[i], de->d_name);
            } else {
                path = strdup(c->history[i]);
            }
            if (cnt == cap) {
                cap = cap ? 2 * cap : 16;
                char **nv = realloc(v, cap * sizeof(*v));
                if (!nv)
                    cli_usage_error("out of memory");
                v = nv;
            }
            if (!path)
                cli_usage_error("out of memory");
            v[cnt++] = path;
            if (!d)
                break;
        }
        if (d) {
            closedir(d);
            qsort(v + first, cnt - first, sizeof(*v), name_cmp);
        }
    }
    *n = cnt;
    return v;
}

#ifdef HAVE_KAFKA
/* A replay into a Kafka partition's engine counts the keys of that partition only. */
struct keyfilter {
    int32_t partition, count;
};

static int keep_key(void *arg, const char *key, size_t n)
{
    const struct keyfilter *f = arg;
    return tlm_kafka_key_partition(key, n, f->count) == f->partition;
}
#endif

/* Replays --history into threshold rule id: archived events with a time <= until. */
static int replay(struct cctx *c, struct stage *st, const char *id, tlm_time_t until,
                  struct tlm_error *err)
{
#ifdef HAVE_KAFKA
    struct keyfilter kf;
    if (stage_kafka_partition(st, &kf.partition, &kf.count))
        tlm_rules_set_replay_filter(c->e->rs, keep_key, &kf);
#endif
    size_t n;
    char **files = history_files(c, &n);
    struct tlm_rules_replay_info info;
    struct tlm_error e;
    tlm_error_clear(&e);
    memset(&info, 0, sizeof(info));
    int rc = tlm_rules_replay(c->e->rs, id, (const char *const *)files, n, until,
                              &stage_out(st)->buf, &info, &e);
    tlm_rules_set_replay_filter(c->e->rs, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    c->replays++;
    c->replay_events += info.counted;
    if (rc == TLM_ENOMEM)
        return tlm_error_set(err, rc, "out of memory");
    if (rc < 0) {
        c->replay_errors++;
        cli_warn("rule %s: --history: %s (the rule counts live events only)", id, e.text);
        return 0;
    }
    return rc ? stage_rows(st, rc, err) : 0;
}

/* Applies the changes recorded by rule_changed: the pattern engine follows the rule set,
 * and threshold rules added (or replaced) are bootstrapped from --history with archived
 * events up to until (st NULL: no replay, as for rules restored from a snapshot). */
static int apply_changes(struct cctx *c, struct stage *st, tlm_time_t until,
                         struct tlm_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < c->nchanges; i++) {
        struct change *ch = &c->changes[i];
        if (rc == 0 && !ch->id)
            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
        if (rc == 0)
            remove_pattern(c, ch->id);
        int pattern = ch->doc && !strcmp(json_string_value(json_object_get(ch->doc, "type")) ?
                                         json_string_value(json_object_get(ch->doc, "type")) : "",
                                         "pattern");
        if (rc == 0 && ch->doc && pattern)
            rc = add_pattern_rule(c, ch->id, ch->doc, err);
        else if (rc == 0 && ch->doc && st && c->nhistory && until != TLM_TIME_MIN &&
                 (ch->what == TLM_RULES_ADDED || ch->what == TLM_RULES_REPLACED))
            rc = replay(c, st, ch->id, until, err);
        free(ch->id);
        json_decref(ch->doc);
    }
    c->nchanges = 0;
    return rc;
}

static int read_all(const char *opt, const char *path, struct tlm_buf *b, struct tlm_error *err)
{
    FILE *f = fopen(path, "rb");
    char tmp[65536];
    size_t n;
    if (!f)
        return tlm_error_set(err, TLM_EIO, "%s: %s: %s", opt, path, strerror(errno));
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        if (tlm_buf_append(b, tmp, n)) {
            fclose(f);
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
    int bad = ferror(f);
    fclose(f);
    return bad ? tlm_error_set(err, TLM_EIO, "%s: %s: read error", opt, path) : 0;
}

/* (Re)reads --rules as the whole rule set. Returns 0, or a negative code with err filled
 * (the rule set unchanged). */
static unsigned long long fnv(const char *p, size_t n)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static int load_rules(struct cctx *c, int if_changed, struct tlm_error *err)
{
    int changed = 0;
    struct tlm_buf b = TLM_BUF_INIT;
    int rc = read_all("--rules", c->rules_path, &b, err);
    unsigned long long h = rc == 0 ? fnv(b.data ? b.data : "", b.len) : 0;
    if (rc == 0 && if_changed && h == c->e->rules_hash) {
        tlm_buf_free(&b);
        return 0;
    }
    if (rc == 0)
        c->e->rules_hash = h;
    if (rc == 0 &&
        (changed = tlm_rules_reload(c->e->rs, b.data ? b.data : "", b.len, c->rules_path, err)) < 0)
        rc = err->code ? err->code : TLM_EINVAL;
    tlm_buf_free(&b);
    return rc ? rc : changed;
}

static void warn_error(const struct tlm_error *e)
{
    char msg[1200];
    cli_warn("%s", tlm_error_format(e, msg, sizeof(msg)));
}

/* Remembers the line of a message queued by lib/rules (which keeps no line numbers), in
 * the engine's order, so that one failing when due is reported with its line. */
static int queue_line(struct cctx *c, const char *line, size_t n)
{
    json_t *m = json_loadb(line, n, 0, NULL), *at = json_object_get(m, "at");
    tlm_time_t t = TLM_TIME_MIN;
    enum tlm_time_unit u = c->time_unit;
    if (json_is_integer(at))
        tlm_time_from_int(json_integer_value(at), u, &t, NULL);
    else if (json_is_real(at))
        tlm_time_from_double(json_real_value(at), u, &t, NULL);
    else if (json_is_string(at))
        tlm_time_parse_rfc3339(json_string_value(at), json_string_length(at), &t, NULL);
    json_decref(m);
    if (c->e->nq == c->e->capq) {
        size_t cap = c->e->capq ? 2 * c->e->capq : 16;
        struct qline *v = realloc(c->e->q, cap * sizeof(*v));
        if (!v)
            return TLM_ENOMEM;
        c->e->q = v;
        c->e->capq = cap;
    }
    size_t i = c->e->nq;
    while (i > 0 && c->e->q[i - 1].at > t)
        i--;
    memmove(c->e->q + i + 1, c->e->q + i, (c->e->nq - i) * sizeof(*c->e->q));
    c->e->q[i] = (struct qline){ .at = t, .line = c->e->ctl_lines };
    c->e->nq++;
    return 0;
}

/* One control message (a complete line without its newline). */
static int control_line(struct cctx *c, struct stage *st, const char *line, size_t n,
                        struct tlm_error *err)
{
    struct tlm_error e;
    tlm_error_clear(&e);
    c->e->ctl_lines++;
    if (!c->ctl_fifo && c->e->ctl_lines <= c->e->ctl_skip)
        return 0; /* applied before the snapshot was taken */
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    size_t k = 0;
    while (k < n && (line[k] == ' ' || line[k] == '\t'))
        k++;
    if (k == n || line[k] == '#')
        return 0;
    int rc = tlm_rules_control(c->e->rs, line, n, &e);
    if (rc < 0) {
        c->ctl_errors++;
        cli_warn("%s:%lld: %s (rules unchanged)", c->control_path, c->e->ctl_lines, e.text);
    } else if (rc == TLM_RULES_QUEUED && queue_line(c, line, n)) {
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    return apply_changes(c, st, c->e->max_ts, err);
}

/* Keeps one control line (without its newline) in the list every engine reads. */
static int keep_line(struct cctx *c, const char *line, size_t n)
{
    if (c->nctl + 2 > c->capctl) {
        size_t cap = c->capctl ? 2 * c->capctl : 64;
        size_t *v = realloc(c->ctl_off, cap * sizeof(*v));
        if (!v)
            return TLM_ENOMEM;
        c->ctl_off = v;
        c->capctl = cap;
    }
    if (tlm_buf_append(&c->ctl_all, line, n) || tlm_buf_putc(&c->ctl_all, '\n'))
        return TLM_ENOMEM;
    c->ctl_off[0] = 0;
    c->ctl_off[++c->nctl] = c->ctl_all.len;
    return 0;
}

/* Reads what the control source has: a regular file once, to its end (its messages with
 * "at" wait in the rules engine's queue); a FIFO (opened read-write, so that writers may
 * come and go) whatever its writers sent, without waiting. Then hands the installed
 * engine the lines it has not seen yet (the other engines get them before their next
 * event). */
static int drain_control(struct cctx *c, struct stage *st, struct tlm_error *err)
{
    if (!c->ctl_done && c->ctl_fd < 0) {
        struct stat sb;
        if (stat(c->control_path, &sb))
            return tlm_error_set(err, TLM_EIO, "--control: %s: %s", c->control_path,
                                 strerror(errno));
        if (S_ISREG(sb.st_mode)) {
            struct tlm_buf b = TLM_BUF_INIT;
            int rc = read_all("--control", c->control_path, &b, err);
            for (size_t i = 0; rc == 0 && i < b.len;) {
                const char *nl = memchr(b.data + i, '\n', b.len - i);
                size_t e = nl ? (size_t)(nl - b.data) : b.len;
                if (keep_line(c, b.data + i, e - i))
                    rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
                i = e + 1;
            }
            tlm_buf_free(&b);
            c->ctl_done = 1;
            if (rc)
                return rc;
        } else {
            c->ctl_fifo = 1; /* what a FIFO delivered before a restart is gone */
            c->ctl_fd = open(c->control_path,
                             (S_ISFIFO(sb.st_mode) ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_CLOEXEC);
            if (c->ctl_fd < 0)
                return tlm_error_set(err, TLM_EIO, "--control: %s: %s", c->control_path,
                                     strerror(errno));
        }
    }
    if (!c->ctl_done) {
        for (;;) {
            char tmp[65536];
            ssize_t r = read(c->ctl_fd, tmp, sizeof(tmp));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            if (tlm_buf_append(&c->ctl_buf, tmp, (size_t)r))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        size_t i = 0;
        while (i < c->ctl_buf.len) {
            const char *nl = memchr(c->ctl_buf.data + i, '\n', c->ctl_buf.len - i);
            if (!nl)
                break;
            size_t e = (size_t)(nl - c->ctl_buf.data);
            if (keep_line(c, c->ctl_buf.data + i, e - i))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            i = e + 1;
        }
        if (i) {
            memmove(c->ctl_buf.data, c->ctl_buf.data + i, c->ctl_buf.len - i);
            c->ctl_buf.len -= i;
        }
    }
    int rc = 0;
    while (rc == 0 && c->e->ctl_pos < c->nctl) {
        size_t i = c->e->ctl_pos++;
        rc = control_line(c, st, c->ctl_all.data + c->ctl_off[i],
                          c->ctl_off[i + 1] - c->ctl_off[i] - 1, err);
    }
    return rc;
}

/* Before each event: a reload due after a restore, control messages, queued changes due. */
static int rules_before(struct cctx *c, struct stage *st, tlm_time_t ts, struct tlm_error *err)
{
    struct tlm_error e;
    int rc;
    tlm_error_clear(&e);
    tlm_rules_set_out_unit(c->e->rs, stage_time_unit(st));
    if (c->e->reload_pending) {
        c->e->reload_pending = 0;
        if (stage_restored(st) && c->rules_path) {
            /* the file as saved keeps the rule set restored (control changes included) */
            if (load_rules(c, 1, &e) < 0) {
                warn_error(&e);
                c->nchanges = 0;
            }
            if ((rc = apply_changes(c, st, c->e->max_ts, err)))
                return rc;
        }
    }
    if (c->control_path && (rc = drain_control(c, st, err)))
        return rc;
    for (;;) {
        size_t before = tlm_rules_pending(c->e->rs);
        rc = tlm_rules_due(c->e->rs, ts, &e);
        size_t done = before - tlm_rules_pending(c->e->rs);
        long long line = 0;
        if (done && c->e->nq == before && done <= c->e->nq) {
            line = done ? c->e->q[done - 1].line : 0;
            memmove(c->e->q, c->e->q + done, (c->e->nq - done) * sizeof(*c->e->q));
            c->e->nq -= done;
        }
        if (rc < 0) {
            c->ctl_errors++;
            if (line)
                cli_warn("%s:%lld: %s (rules unchanged)", c->control_path, line, e.text);
            else
                cli_warn("%s: %s (rules unchanged)", c->control_path ? c->control_path : "--control",
                         e.text);
        }
        /* a rule that takes effect at this event counts the archive before it */
        int arc = apply_changes(c, st, ts == TLM_TIME_MIN ? ts : ts - 1, err);
        if (arc)
            return arc;
        if (rc >= 0)
            return 0;
    }
}

/* SIGHUP: every engine re-reads --rules (the warnings are the first one's). */
static int on_reload(void *ctx, struct stage *st, struct tlm_error *err)
{
    struct cctx *c = ctx;
    struct ceng *was = c->e;
    int rc = 0;
    if (!c->rules_path)
        return 0;
    c->reloads++;
    for (struct ceng *e = c->engines; e && rc == 0; e = e->next) {
        struct tlm_error le;
        tlm_error_clear(&le);
        c->e = e;
        int n = load_rules(c, 0, &le);
        if (n >= 0 && e == c->engines)
            cli_warn("%s: reloaded, %zu rule%s, %d changed", c->rules_path,
                     tlm_rules_count(c->e->rs), tlm_rules_count(c->e->rs) == 1 ? "" : "s", n);
        if (n < 0) {
            if (e == c->engines) {
                warn_error(&le);
                cli_warn("--rules: keeping the rules in force");
            }
            for (size_t i = 0; i < c->nchanges; i++) {
                free(c->changes[i].id);
                json_decref(c->changes[i].doc);
            }
            c->nchanges = 0;
            continue;
        }
        rc = apply_changes(c, st, c->e->max_ts, err);
    }
    c->e = was;
    return rc;
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
    if (c->e->rs && (rc = rules_before(c, st, ev->ts, err)))
        return rc;
    if (ev->late)
        return write_late(c, st, ev, err);
    if (c->e->rs) {
        int n = tlm_rules_event(c->e->rs, ev->line, ev->len, ev->ts, &stage_out(st)->buf, err);
        if (n == TLM_EPARSE)
            return stage_reject(st, "%s", err->text);
        if (n < 0)
            return n;
        if (n && (rc = stage_rows(st, n, err)))
            return rc;
        if (c->e->max_ts == TLM_TIME_MIN || ev->ts > c->e->max_ts)
            c->e->max_ts = ev->ts;
        if (!c->e->active || ev->vals[0].type == TLM_JNONE)
            return 0; /* no pattern, or an event without a key: for threshold rules only */
    }
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
    rc = tlm_cep_push(c->e->cep, key, klen, ev->ts, ev->line, ev->len,
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
    tlm_cep_prefetch(c->e->cep, k->p, k->n, pass, &c->hints[slot]);
}

static int on_watermark(void *ctx, struct stage *st, tlm_time_t wm, struct tlm_error *err)
{
    struct cctx *c = ctx;
    /* at the end of input (TLM_TIME_MAX), whether anything observes it */
    struct tlm_cep_sink sink = { c, emit, wm == TLM_TIME_MAX && c->end_unobserved && !c->e->rs };
    c->st = st;
    if (c->e->rs && wm != TLM_TIME_MAX)
        tlm_rules_watermark(c->e->rs, wm);
    return tlm_cep_advance(c->e->cep, wm, &sink, err);
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
    return json_pack("{sOsssssssb}", "patterns", c->docs, "key", c->key_field ? c->key_field : "",
                     "emit", c->emit_src ? c->emit_src : "", "timeout_emit",
                     c->timeout_emit_src ? c->timeout_emit_src : "", "rules", c->e->rs != NULL);
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
    if (c->e->rs) {
        /* ours first, then the rules (and so the pattern rules) before the pattern state */
        char h[24];
        snprintf(h, sizeof(h), "%016llx", c->e->rules_hash);
        json_t *lines = json_array();
        for (size_t i = 0; lines && i < c->e->nq; i++)
            json_array_append_new(lines, json_pack("[II]", (json_int_t)c->e->q[i].at,
                                                   (json_int_t)c->e->q[i].line));
        json_t *r = json_pack("{sssIsIsssO}", "t", "cep_rules", "control_lines",
                              (json_int_t)c->e->ctl_lines, "max_ts", (json_int_t)c->e->max_ts,
                              "rules_hash", h, "queued_lines", lines ? lines : json_null());
        json_decref(lines);
        int rc = r ? tlm_snap_put(w, r, err) : tlm_error_set(err, TLM_ENOMEM, "out of memory");
        json_decref(r);
        if (rc || (rc = tlm_rules_save(c->e->rs, w, err)))
            return rc;
    }
    return tlm_cep_save(c->e->cep, put_rec, w, err);
}

static int load(void *ctx, json_t *rec, struct tlm_error *err)
{
    struct cctx *c = ctx;
    if (c->e->rs) {
        const char *t = json_string_value(json_object_get(rec, "t"));
        if (t && !strcmp(t, "cep_rules")) {
            c->e->ctl_skip = json_integer_value(json_object_get(rec, "control_lines"));
            c->e->max_ts = json_integer_value(json_object_get(rec, "max_ts"));
            const char *h = json_string_value(json_object_get(rec, "rules_hash"));
            c->e->rules_hash = h ? strtoull(h, NULL, 16) : 0;
            json_t *ql = json_object_get(rec, "queued_lines"), *it;
            size_t i;
            c->e->nq = 0;
            json_array_foreach(ql, i, it) {
                if (c->e->nq == c->e->capq) {
                    size_t cap = c->e->capq ? 2 * c->e->capq : 16;
                    struct qline *v = realloc(c->e->q, cap * sizeof(*v));
                    if (!v)
                        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
                    c->e->q = v;
                    c->e->capq = cap;
                }
                c->e->q[c->e->nq++] = (struct qline){ .at = json_integer_value(json_array_get(it, 0)),
                                                .line = json_integer_value(json_array_get(it, 1)) };
            }
            c->e->reload_pending = 1;
            return 0;
        }
        int rc = tlm_rules_load(c->e->rs, rec, err);
        if (rc < 0)
            return rc;
        if (rc == 1)
            return apply_changes(c, NULL, TLM_TIME_MIN, err); /* restored: no replay */
    }
    return tlm_cep_load(c->e->cep, rec, err);
}

static void stats(void *ctx, json_t *o)
{
    struct cctx *c = ctx;
    struct tlm_cep_stats s;
    tlm_cep_stats(c->e->cep, &s);
    json_object_set_new(o, "keys", json_integer(s.keys));
    json_object_set_new(o, "buffered_events", json_integer(s.buffered));
    json_object_set_new(o, "partial_matches", json_integer(s.partial));
    json_object_set_new(o, "events_held", json_integer(s.events_held));
    json_object_set_new(o, "state_bytes", json_integer(s.bytes));
    json_object_set_new(o, "matches", json_integer(s.matches));
    json_object_set_new(o, "timeouts", json_integer(s.timeouts));
    json_object_set_new(o, "late_events", json_integer(c->late_events));
    json_object_set_new(o, "condition_errors", json_integer(s.cond_errors));
    if (c->emit_src)
        json_object_set_new(o, "emit_empty", json_integer(c->emit_empty + c->emit_errors));
    if (c->e->rs) {
        struct tlm_rules_stats r;
        tlm_rules_get_stats(c->e->rs, &r);
        json_object_set_new(o, "rules", json_integer((json_int_t)tlm_rules_count(c->e->rs)));
        json_object_set_new(o, "rules_pending", json_integer((json_int_t)tlm_rules_pending(c->e->rs)));
        json_object_set_new(o, "rules_events", json_integer(r.events));
        json_object_set_new(o, "rules_candidates", json_integer(r.candidates));
        json_object_set_new(o, "rules_matched", json_integer(r.matched));
        json_object_set_new(o, "rules_alerts", json_integer(r.alerts));
        json_object_set_new(o, "rules_late", json_integer(r.late));
        json_object_set_new(o, "rules_expired", json_integer(r.expired));
        json_object_set_new(o, "rules_eval_errors", json_integer(r.eval_errors));
        json_object_set_new(o, "rules_dom_parses", json_integer(r.dom_parses));
        json_object_set_new(o, "rules_indexed", json_integer(r.indexed));
        json_object_set_new(o, "rules_unindexed", json_integer(r.unindexed));
        json_object_set_new(o, "rules_keys", json_integer(r.keys));
        json_object_set_new(o, "control_errors", json_integer(c->ctl_errors));
        json_object_set_new(o, "replays", json_integer(c->replays));
        json_object_set_new(o, "replay_errors", json_integer(c->replay_errors));
        json_object_set_new(o, "replay_counted", json_integer(c->replay_events));
        json_object_set_new(o, "reloads", json_integer(c->reloads));
    }
}

/* ---- engines per Kafka partition (see struct ceng) ---------------------------------- */

/* Frees what an engine holds (not the struct itself). */
static void engine_free(struct ceng *e)
{
    for (size_t i = 0; i < e->nslots; i++) {
        tlm_cep_template_destroy(e->emit[i]);
        tlm_cep_template_destroy(e->temit[i]);
        free(e->slots[i].scope);
        free(e->slots[i].extra);
    }
    free(e->emit);
    free(e->temit);
    free(e->slots);
    free(e->q);
    tlm_rules_destroy(e->rs);
    tlm_cep_destroy(e->cep);
}

/* Fills the installed engine, empty, as the command line made the first one: the same
 * patterns (from their canonical documents, so in the same order with the same paths)
 * and templates, the --rules file as it is now; the --control lines it gets from the
 * start of the list (a snapshot loaded into it says how many to skip). */
static int engine_init(struct cctx *c, struct tlm_error *err)
{
    struct ceng *e = c->e;
    size_t i;
    json_t *d;
    e->max_ts = TLM_TIME_MIN;
    if (!(e->cep = tlm_cep_create()))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    json_array_foreach(c->docs, i, d) {
        struct tlm_cep_pattern *p = tlm_cep_pattern_from_json(d, err);
        if (!p || tlm_cep_add(e->cep, p, err))
            return err->code ? err->code : TLM_ENOMEM;
    }
    e->active = tlm_cep_count(e->cep);
    if (c->rules_path || c->control_path) {
        if (!(e->rs = tlm_rules_create(&c->ro, err)))
            return err->code;
        if (c->rules_path && load_rules(c, 0, err) < 0) {
            /* edited since the start and broken: the snapshot's rules, or none */
            warn_error(err);
            tlm_error_clear(err);
            for (size_t k = 0; k < c->nchanges; k++) {
                free(c->changes[k].id);
                json_decref(c->changes[k].doc);
            }
            c->nchanges = 0;
        }
        int rc = apply_changes(c, NULL, TLM_TIME_MIN, err);
        if (rc)
            return rc;
        e->reload_pending = 1;
    }
    if (grow_slots(c))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    for (i = 0; i < c->nstatic; i++) {
        if (c->emit_src &&
            !(e->emit[i] = tlm_cep_template_create(tlm_cep_get(e->cep, i), c->emit_src, err)))
            return err->code;
        if (c->timeout_emit_src &&
            !(e->temit[i] = tlm_cep_template_create(tlm_cep_get(e->cep, i), c->timeout_emit_src,
                                                    err)))
            return err->code;
    }
    return 0;
}

static void *part_new(void *ctx)
{
    struct cctx *c = ctx;
    struct ceng *e = calloc(1, sizeof(*e)), *was = c->e;
    struct tlm_error err;
    tlm_error_clear(&err);
    if (!e)
        return NULL;
    c->e = e;
    int rc = engine_init(c, &err);
    c->e = was;
    if (rc) {
        if (rc != TLM_ENOMEM)
            cli_warn("%s", err.text);
        engine_free(e);
        free(e);
        return NULL;
    }
    e->next = c->engines->next; /* after e0 */
    c->engines->next = e;
    return e;
}

static void *part_swap(void *ctx, void *part)
{
    struct cctx *c = ctx;
    void *prev = c->e;
    c->e = part;
    return prev;
}

static void part_free(void *ctx, void *part)
{
    struct cctx *c = ctx;
    for (struct ceng **pp = &c->engines; *pp; pp = &(*pp)->next)
        if (*pp == part) {
            *pp = ((struct ceng *)part)->next;
            break;
        }
    engine_free(part);
    free(part);
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

    c.e = c.engines = &c.e0;
    if (!(c.e->cep = tlm_cep_create()) || !(c.docs = json_array()))
        cli_usage_error("out of memory");
    c.ctl_fd = -1;
    c.e->max_ts = TLM_TIME_MIN;
    c.time_unit = common.time_unit;
    if (c.nhistory && !c.rules_path && !c.control_path)
        cli_usage_error("--history needs --rules or --control");
    struct stat csb;
    if (c.control_path && stat(c.control_path, &csb))
        cli_usage_error("--control: %s: %s", c.control_path, strerror(errno));
    if ((c.rules_path || c.control_path) && !c.key_field)
        c.key_field = "customerId";
    load_patterns(&c);
    c.nstatic = c.e->active = tlm_cep_count(c.e->cep);
    if (c.rules_path || c.control_path) {
        c.ro = (struct tlm_rules_opts){
            .key_field = c.key_field,
            .time_field = common.time_field,
            .time_unit = common.time_unit,
            .out_unit = TLM_UNIT_AUTO,
            .pattern_check = rule_pattern_check,
            .on_change = rule_changed,
            .arg = &c,
        };
        if (!(c.e->rs = tlm_rules_create(&c.ro, &err)))
            cli_usage_error("--key: %s", err.text);
        if (c.rules_path && load_rules(&c, 0, &err) < 0) {
            char msg[1200];
            cli_usage_error("%s", tlm_error_format(&err, msg, sizeof(msg)));
        }
        if (apply_changes(&c, NULL, TLM_TIME_MIN, &err))
            cli_usage_error("%s", err.text);
        c.e->reload_pending = 1;
    }
    if (grow_slots(&c))
        cli_usage_error("out of memory");
    if (c.emit_src) {
        for (size_t i = 0; i < c.nstatic; i++)
            if (!(c.e->emit[i] = tlm_cep_template_create(tlm_cep_get(c.e->cep, i), c.emit_src, &err)))
                cli_usage_error("--emit: column %ld: %s", err.column, err.text);
    }
    if (c.timeout_emit_src) {
        if (!c.timeouts_path)
            cli_usage_error("--timeout-emit needs --timeouts <file>");
        for (size_t i = 0; i < c.nstatic; i++)
            if (!(c.e->temit[i] = tlm_cep_template_create(tlm_cep_get(c.e->cep, i), c.timeout_emit_src,
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
    if (c.key_field && (!c.e->rs || c.e->active)) {
        ops.prefetch = prefetch;
        ops.prefetch_passes = TLM_CEP_PREFETCH_PASSES;
        ops.batch = 32; /* 3-5 % less CPU than 16 with 100 k keys */
    }
    ops.on_watermark = on_watermark;
    ops.on_end = on_end;
    ops.on_flush = on_flush;
    if (c.e->rs)
        ops.on_reload = on_reload;
    ops.shape = shape;
    ops.save = save;
    ops.load = load;
    ops.stats = stats;
    ops.part_new = part_new;
    ops.part_swap = part_swap;
    ops.part_free = part_free;

    /* nothing looks at the partial matches left at the end of input: no timeouts file,
     * no snapshot after it, no statistics */
    c.end_unobserved = !c.timeouts_path && !common.state && !common.stats;
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
    engine_free(&c.e0);
    for (size_t i = 0; i < c.nchanges; i++) {
        free(c.changes[i].id);
        json_decref(c.changes[i].doc);
    }
    free(c.changes);
    if (c.ctl_fd >= 0)
        close(c.ctl_fd);
    tlm_buf_free(&c.ctl_buf);
    tlm_buf_free(&c.ctl_all);
    free(c.ctl_off);
    free(c.history);
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
