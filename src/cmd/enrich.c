/*
 * enrich.c - `telem enrich`: add the fields of a reference table (CSV, JSON, NDJSON),
 * of an SQLite query, or of a second stream (an event-time interval join) to events.
 *
 * Drives: the stage loop (stage.c), lib/table (a table loaded into a hash index of
 * pre-serialized fragments), lib/dblookup (one prepared SQLite statement behind an LRU
 * cache), lib/expr (keys that are expressions), and enrich_join.c (the stream join).
 *
 * The hot path builds no DOM: the key fields come from the stage's one scan of the
 * line, the key text is looked up, and the event is written as its original bytes up
 * to its closing brace, then ",", the row's fragment and "}". The members a fragment
 * would add are scanned too; when the event already has one, --conflict says who
 * wins: the table (the event's member is cut out of the bytes) or the event (the
 * fragment is written without that member).
 *
 * A table file that changes (checked every --reload-interval between events, or at
 * once on SIGHUP) is read again and swapped in whole between two events, so every
 * event is enriched from exactly one version of the table; a new file that does not
 * load leaves the old table in place and says why on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd.h"
#include "dblookup.h"
#include "enrich_join.h"
#include "expr.h"
#include "jwrite.h"
#include "stage.h"
#include "table.h"

static const char *const usage[] = {
    "telem enrich --table <file> --on <field>[=<column>][,...] [--add <columns>] [<options>]",
    "             [<file>...]",
    "telem enrich --sqlite <db> --query <sql> --on <field>[,...] [<options>] [<file>...]",
    "telem enrich --join <file> --on <field> --within <dur> [<options>] [<file>...]",
    NULL,
};

enum { K_TABLE = CLI_KEY_CMD, K_FORMAT, K_ON, K_ADD, K_INTO, K_PREFIX, K_CONFLICT, K_EMPTY,
       K_STRINGS, K_RELOAD, K_NO_RELOAD, K_SQLITE, K_QUERY, K_CACHE, K_TTL, K_MISSING,
       K_DEFAULT, K_UNMATCHED, K_JOIN, K_WITHIN, K_LOWER, K_UPPER, K_UNJOINED, K_JOIN_MAX };

static const struct cli_opt table_opts[] = {
    { "table", K_TABLE, "<file>", "reference table: CSV, TSV, JSON array or NDJSON (by extension)" },
    { "table-format", K_FORMAT, "<fmt>", "the table's format: csv, tsv, json or ndjson" },
    { "on", K_ON, "<field>[=<column>]", "event field or expression matched with a key column (repeatable)" },
    { "add", K_ADD, "<columns>", "columns to add (comma-separated; default: all but the keys)" },
    { "into", K_INTO, "<field>", "add the columns as members of one object <field>" },
    { "prefix", K_PREFIX, "<text>", "prepend <text> to the names of the added fields" },
    { "conflict", K_CONFLICT, "<who>", "event already has an added field: table (default) or event wins" },
    { "empty", K_EMPTY, "<how>", "empty CSV fields: null (default), skip or string" },
    { "strings", K_STRINGS, NULL, "CSV values are all strings (no numbers or booleans)" },
    { "reload-interval", K_RELOAD, "<dur>", "check the table file for changes this often (default 1s)" },
    { "no-reload", K_NO_RELOAD, NULL, "never read the table again (SIGHUP still does)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt sqlite_opts[] = {
    { "sqlite", K_SQLITE, "<db>", "look rows up in this SQLite database (opened read-only)" },
    { "query", K_QUERY, "<sql>", "select whose ? parameters are bound to the --on values, in order" },
    { "cache-size", K_CACHE, "<n>", "keep the answers for this many keys (default 100000; 0: none)" },
    { "cache-ttl", K_TTL, "<dur>", "query a cached key again after <dur> (default 60s; 0: never)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt missing_opts[] = {
    { "missing", K_MISSING, "<what>", "events without a match: keep (default), drop, null or default" },
    { "default", K_DEFAULT, "<json>", "object of the fields unmatched events get (implies --missing default)" },
    { "unmatched", K_UNMATCHED, "<file>", "also write unmatched events, unchanged, to <file>" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt join_opts[] = {
    { "join", K_JOIN, "<file>", "interval join with the events of <file> (a file or FIFO)" },
    { "within", K_WITHIN, "<dur>", "join when right time - left time is in [0, <dur>]" },
    { "lower", K_LOWER, "<dur>", "lower bound of right time - left time (may be negative)" },
    { "upper", K_UPPER, "<dur>", "upper bound of right time - left time" },
    { "unjoined", K_UNJOINED, "<file>", "write events that expired without a partner to <file>" },
    { "join-max", K_JOIN_MAX, "<n>", "at most <n> buffered events per key and side (default 1000)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Reference table", table_opts },
    { "SQLite", sqlite_opts },
    { "Unmatched events", missing_opts },
    { "Stream join", join_opts },
    CLI_STAGE_GROUPS,
};

static const struct cli_cmd enrich_cmd = {
    "enrich", "Join events with reference tables, SQLite queries or another stream", usage,
    groups,
};

enum missing { M_KEEP = 0, M_DROP, M_NULL, M_DEFAULT };

#define MAX_KEYS 16

struct key {
    const char *text;          /* as given: a field or an expression */
    const char *column;        /* the table column it matches */
    struct tlm_expr *expr;     /* NULL: a plain field */
    long val;                  /* plain field: index in the scan list */
    const struct tlm_path *epaths; /* expression: the paths it reads */
    long nepaths;
    long eval;                 /* expression: index of its first path in the scan list */
};

struct ectx {
    struct join **parts;       /* --join with a kafka:// input: each partition's join */
    size_t nparts;
    /* options */
    const char *table_path, *sqlite_path, *query, *add_spec, *default_json, *unmatched_path;
    struct tlm_table_opts to;
    int conflict_event;        /* --conflict event */
    int64_t reload_ns;
    int no_reload;
    long long cache_size;
    int64_t cache_ttl;
    enum missing missing;
    char *on_copy, *add_copy;
    const char **add_list;
    struct key keys[MAX_KEYS];
    size_t nkeys;
    const char *key_cols[MAX_KEYS];
    int whole;                 /* an expression key needs the whole event */

    /* the scan list: plain keys, conflict names, expression paths */
    struct tlm_path *paths;
    size_t npaths, nconf, conf_at;
    char **conf_names;         /* the top-level names the fragments add */

    /* lookups */
    struct tlm_table *table;
    struct stat table_sb, pending_sb;
    int pending;
    struct tlm_dblookup *db;
    struct tlm_buf deffrag;    /* the fragment of unmatched events (null / default) */
    struct tlm_buf keybuf, exprbuf, tmp, frag2;
    struct tlm_jval kv[MAX_KEYS];
    struct tlm_writer *unmatched;
    struct side_mark unmatched_mark; /* its size in the restored snapshot */
    int restored;
    uint64_t *seen;            /* distinct unmatched keys: a set of hashes */
    size_t seen_n, seen_mask;
    unsigned long long tick;
    double last_check;
    uint64_t hints[STAGE_BATCH];   /* read-ahead: the key hash of each batch line */
    char hint_ok[STAGE_BATCH];

    /* the join */
    struct join_opts jo;
    struct join *join;

    /* counters */
    long long matched, unmatched_events, conflicts, reloads, reload_failures, nokey;
    double load_ms;
    const struct cli_common *common;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- options ----------------------------------------------------------------------- */

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
                   (unsigned char)*t >= 0x80 || (!start && *t >= '0' && *t <= '9')) {
            start = 0;
        } else {
            return 0;
        }
    }
    return !start;
}

static char *trim(char *s)
{
    size_t l;
    while (*s == ' ')
        s++;
    l = strlen(s);
    while (l && s[l - 1] == ' ')
        s[--l] = '\0';
    return s;
}

/* One --on element: "field", "field=column" or "expr=column". */
static void add_key(struct ectx *c, char *t)
{
    struct key *k;
    char *eq = NULL;
    if (c->nkeys == MAX_KEYS)
        cli_usage_error("--on: at most %d keys", MAX_KEYS);
    k = &c->keys[c->nkeys++];
    /* the last '=' that is not part of ==, !=, <=, >= */
    for (char *p = t; *p; p++)
        if (*p == '=' && p[1] != '=' && (p == t || !strchr("=!<>", p[-1])))
            eq = p;
    if (eq) {
        *eq = '\0';
        k->column = trim(eq + 1);
        if (!*k->column)
            cli_usage_error("--on: no column after '=' in '%s'", t);
    }
    t = trim(t);
    if (!*t)
        cli_usage_error("--on: an empty field");
    if (strncmp(t, "$.", 2) == 0 && plain_field(t + 2))
        t += 2;
    k->text = t;
    if (!k->column)
        k->column = t;
    if (!plain_field(t)) {
        struct tlm_error err;
        tlm_error_clear(&err);
        if (!(k->expr = tlm_expr_compile(t, &err)))
            cli_usage_error("--on: '%s': column %ld: %s", t, err.column, err.text);
        if (!eq && !c->sqlite_path && !c->jo.path)
            cli_usage_error("--on: name the column the expression '%s' matches: '%s=<column>'", t, t);
    }
}

/* Splits the --on list at top-level commas. */
static void parse_on(struct ectx *c)
{
    int depth = 0;
    char quote = 0, *t = c->on_copy;
    if (!t)
        return;
    for (char *p = c->on_copy;; p++) {
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
        add_key(c, t);
        t = p + 1;
        if (end)
            break;
    }
}

static void handle(int key, const char *arg, void *p)
{
    struct ectx *c = p;
    switch (key) {
    case K_TABLE: c->table_path = arg; break;
    case K_FORMAT:
        if (tlm_table_format_parse(arg, &c->to.format))
            cli_usage_error("--table-format: expected csv, tsv, json or ndjson, got '%s'", arg);
        break;
    case K_ON: {
        /* repeated --on add to the list */
        size_t n = (c->on_copy ? strlen(c->on_copy) + 1 : 0) + strlen(arg) + 1;
        char *s = malloc(n);
        if (!s)
            cli_usage_error("out of memory");
        snprintf(s, n, "%s%s%s", c->on_copy ? c->on_copy : "", c->on_copy ? "," : "", arg);
        free(c->on_copy);
        c->on_copy = s;
        break;
    }
    case K_ADD: c->add_spec = arg; break;
    case K_INTO:
        if (!*arg)
            cli_usage_error("--into: an empty name");
        c->to.frag.into = arg;
        break;
    case K_PREFIX: c->to.frag.prefix = arg; break;
    case K_CONFLICT:
        if (strcmp(arg, "table") == 0)
            c->conflict_event = 0;
        else if (strcmp(arg, "event") == 0)
            c->conflict_event = 1;
        else
            cli_usage_error("--conflict: expected table or event, got '%s'", arg);
        break;
    case K_EMPTY:
        if (strcmp(arg, "null") == 0)
            c->to.empty = TLM_EMPTY_NULL;
        else if (strcmp(arg, "skip") == 0)
            c->to.empty = TLM_EMPTY_SKIP;
        else if (strcmp(arg, "string") == 0)
            c->to.empty = TLM_EMPTY_STRING;
        else
            cli_usage_error("--empty: expected null, skip or string, got '%s'", arg);
        break;
    case K_STRINGS: c->to.strings = 1; break;
    case K_RELOAD: c->reload_ns = cli_duration("reload-interval", arg); break;
    case K_NO_RELOAD: c->no_reload = 1; break;
    case K_SQLITE: c->sqlite_path = arg; break;
    case K_QUERY: c->query = arg; break;
    case K_CACHE: c->cache_size = cli_count("cache-size", arg, 0, 100000000); break;
    case K_TTL: c->cache_ttl = cli_duration("cache-ttl", arg); break;
    case K_MISSING:
        if (strcmp(arg, "keep") == 0)
            c->missing = M_KEEP;
        else if (strcmp(arg, "drop") == 0)
            c->missing = M_DROP;
        else if (strcmp(arg, "null") == 0)
            c->missing = M_NULL;
        else if (strcmp(arg, "default") == 0)
            c->missing = M_DEFAULT;
        else
            cli_usage_error("--missing: expected keep, drop, null or default, got '%s'", arg);
        break;
    case K_DEFAULT:
        c->default_json = arg;
        c->missing = M_DEFAULT;
        break;
    case K_UNMATCHED: c->unmatched_path = arg; break;
    case K_JOIN: c->jo.path = arg; break;
    case K_WITHIN:
        c->jo.upper = cli_duration("within", arg);
        c->jo.lower = 0;
        c->jo.bounds_set |= 1;
        break;
    case K_LOWER:
        if (arg[0] == '-')
            c->jo.lower = -cli_duration("lower", arg + 1);
        else
            c->jo.lower = cli_duration("lower", arg);
        c->jo.bounds_set |= 2;
        break;
    case K_UPPER:
        if (arg[0] == '-')
            c->jo.upper = -cli_duration("upper", arg + 1);
        else
            c->jo.upper = cli_duration("upper", arg);
        c->jo.bounds_set |= 4;
        break;
    case K_UNJOINED: c->jo.unjoined_path = arg; break;
    case K_JOIN_MAX: c->jo.max_per_key = (long)cli_count("join-max", arg, 1, 100000000); break;
    }
}

/* Splits a comma list into a NULL-terminated array of trimmed names (in copy). */
static const char **split_list(char *copy, size_t *n, const char *opt)
{
    size_t cap = 1;
    const char **v;
    char *save = NULL;
    for (const char *p = copy; *p; p++)
        cap += *p == ',';
    if (!(v = calloc(cap + 1, sizeof(char *))))
        cli_usage_error("out of memory");
    *n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = trim(t);
        if (!*t)
            cli_usage_error("--%s: an empty name", opt);
        v[(*n)++] = t;
    }
    if (!*n)
        cli_usage_error("--%s: no names", opt);
    return v;
}

/* ---- the scan list ------------------------------------------------------------------- */

static void split_path(const char *name, struct tlm_path *p, int dotted)
{
    size_t nseg = 1, k = 0;
    char *copy = strdup(name), *save = NULL;
    if (!copy)
        cli_usage_error("out of memory");
    if (!dotted) {
        p->seg = calloc(1, sizeof(char *));
        if (!p->seg)
            cli_usage_error("out of memory");
        p->seg[0] = copy;
        p->nseg = 1;
        return;
    }
    for (const char *q = name; *q; q++)
        nseg += *q == '.';
    p->seg = calloc(nseg, sizeof(char *));
    if (!p->seg)
        cli_usage_error("out of memory");
    for (char *t = strtok_r(copy, ".", &save); t; t = strtok_r(NULL, ".", &save))
        p->seg[k++] = t;
    p->nseg = k;
}

/* The scan list: plain keys, then the names the fragments add (for --conflict), then
 * the paths the key expressions read. names: *nnames top-level names. */
static void build_paths(struct ectx *c, const char *const *cols, size_t ncols)
{
    size_t total = c->nkeys, nexpr = 0;
    c->nconf = c->to.frag.into ? 1 : ncols;
    for (size_t i = 0; i < c->nkeys; i++) {
        struct key *k = &c->keys[i];
        if (!k->expr)
            continue;
        k->nepaths = tlm_expr_root_paths(k->expr, &k->epaths);
        if (k->nepaths < 0)
            c->whole = 1;
        else
            nexpr += (size_t)k->nepaths;
    }
    total += c->nconf + nexpr;
    c->paths = calloc(total + 1, sizeof(*c->paths));
    c->conf_names = calloc(c->nconf + 1, sizeof(char *));
    if (!c->paths || !c->conf_names)
        cli_usage_error("out of memory");
    for (size_t i = 0; i < c->nkeys; i++) {
        struct key *k = &c->keys[i];
        k->val = -1;
        if (k->expr)
            continue;
        k->val = (long)c->npaths;
        split_path(k->text, &c->paths[c->npaths++], 1);
    }
    c->conf_at = c->npaths;
    for (size_t i = 0; i < c->nconf; i++) {
        const char *pre = c->to.frag.prefix ? c->to.frag.prefix : "";
        const char *name = c->to.frag.into ? c->to.frag.into : cols[i];
        size_t n = strlen(pre) + strlen(name) + 1;
        char *s = malloc(n);
        if (!s)
            cli_usage_error("out of memory");
        snprintf(s, n, "%s%s", c->to.frag.into ? "" : pre, name);
        c->conf_names[i] = s;
        split_path(s, &c->paths[c->npaths++], 0);
    }
    for (size_t i = 0; i < c->nkeys; i++) {
        struct key *k = &c->keys[i];
        if (!k->expr)
            continue;
        k->eval = (long)c->npaths;
        for (long j = 0; j < k->nepaths; j++)
            c->paths[c->npaths++] = k->epaths[j];
    }
}

/* ---- keys ---------------------------------------------------------------------------- */


/* The key values of an event into c->kv: fields as scanned, expressions evaluated and
 * written as JSON text. Returns 0, or 1 after stage_reject, or a negative code. */
static int key_values(struct ectx *c, struct stage *st, const struct stage_event *ev,
                      struct tlm_error *err)
{
    size_t at[MAX_KEYS];
    json_t *e = NULL;
    int any_expr = 0;
    tlm_buf_reset(&c->exprbuf);
    for (size_t i = 0; i < c->nkeys; i++) {
        struct key *k = &c->keys[i];
        json_t *v = NULL;
        int rc;
        if (!k->expr) {
            c->kv[i] = ev->vals[k->val];
            continue;
        }
        any_expr = 1;
        if (!e) {
            if (c->whole) {
                json_error_t je;
                if (!(e = json_loadb(ev->line, ev->len, 0, &je)))
                    return tlm_error_set(err, TLM_EPARSE, "%s", je.text);
            } else if (!(e = json_object())) {
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            } else {
                for (size_t j = 0; j < c->nkeys; j++)
                    for (long q = 0; c->keys[j].expr && q < c->keys[j].nepaths; q++) {
                        const struct tlm_jval *jv = &ev->vals[c->keys[j].eval + q];
                        if (jv->type != TLM_JNONE && tlm_jval_put_path(e, &c->paths[c->keys[j].eval + q], jv)) {
                            json_decref(e);
                            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
                        }
                    }
            }
        }
        rc = tlm_expr_eval(k->expr, e, NULL, &v, err);
        if (rc < 0) {
            json_decref(e);
            return stage_reject(st, "--on %s: %s", k->text, err->text);
        }
        at[i] = c->exprbuf.len;
        c->kv[i].type = TLM_JNONE;
        c->kv[i].escaped = 1;
        if (rc == 1) {
            switch (json_typeof(v)) {
            case JSON_STRING: c->kv[i].type = TLM_JSTRING; break;
            case JSON_INTEGER: c->kv[i].type = TLM_JINT; break;
            case JSON_REAL: c->kv[i].type = TLM_JREAL; break;
            case JSON_TRUE: c->kv[i].type = TLM_JTRUE; break;
            case JSON_FALSE: c->kv[i].type = TLM_JFALSE; break;
            default: c->kv[i].type = TLM_JNULL; break;
            }
            if (tlm_json_write(&c->exprbuf, v)) {
                json_decref(v);
                json_decref(e);
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            }
        }
        c->kv[i].n = c->exprbuf.len - at[i];
        json_decref(v);
    }
    json_decref(e);
    if (any_expr)
        for (size_t i = 0; i < c->nkeys; i++)
            if (c->keys[i].expr)
                c->kv[i].p = c->exprbuf.data + at[i];
    return 0;
}

/* The table key of c->kv into *key and *n (pointing into the line or c->keybuf). Returns 0,
 * or TLM_ETYPE when a value cannot be a key (absent, null, object, array). */
static int table_key(struct ectx *c, const char **key, size_t *n)
{
    if (c->nkeys == 1 && c->kv[0].type == TLM_JSTRING && !c->kv[0].escaped) {
        *key = c->kv[0].p + 1;
        *n = c->kv[0].n - 2;
        return 0;
    }
    tlm_buf_reset(&c->keybuf);
    for (size_t i = 0; i < c->nkeys; i++) {
        const struct tlm_jval *v = &c->kv[i];
        int rc;
        if (i && tlm_buf_putc(&c->keybuf, '\0'))
            return TLM_ENOMEM;
        if ((rc = tlm_jval_key_text(v, &c->keybuf)))
            return rc;
    }
    *key = c->keybuf.data ? c->keybuf.data : "";
    *n = c->keybuf.len;
    return 0;
}

/* ---- writing ------------------------------------------------------------------------- */

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* The span of the member whose value is v, with one comma next to it, in line[0..len):
 * [*from, *to). */
static void member_span(const char *line, size_t len, const struct tlm_jval *v, size_t *from,
                        size_t *to)
{
    size_t ve = (size_t)(v->p - line) + v->n, j = (size_t)(v->p - line);
    /* back over blanks, ':', blanks, the key's closing quote, to its opening quote */
    while (j && is_ws(line[j - 1]))
        j--;
    j--; /* ':' */
    while (j && is_ws(line[j - 1]))
        j--;
    j--; /* closing quote */
    for (;;) {
        j--;
        if (line[j] == '"') {
            size_t bs = 0;
            while (j > bs && line[j - 1 - bs] == '\\')
                bs++;
            if (bs % 2 == 0)
                break;
        }
    }
    size_t ks = j;
    while (j && is_ws(line[j - 1]))
        j--;
    if (line[j - 1] == ',') {
        *from = j - 1;
        while (ve < len && is_ws(line[ve]))
            ve++;
        *to = ve;
    } else { /* the first member: take the comma after it */
        size_t k = ve;
        while (k < len && is_ws(line[k]))
            k++;
        if (k < len && line[k] == ',')
            k++;
        *from = ks;
        *to = k;
    }
}

static int cmp_ptr(const void *a, const void *b)
{
    const char *x = (*(const struct tlm_jval *const *)a)->p;
    const char *y = (*(const struct tlm_jval *const *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The fragment without the members the event has (--conflict event); c->frag2. */
static int frag_without(struct ectx *c, const struct stage_event *ev, const char *frag, size_t flen,
                        const char **out, size_t *olen, struct tlm_error *err)
{
    json_t *o, *v;
    const char *k;
    json_error_t je;
    int first = 1;
    tlm_buf_reset(&c->frag2);
    if (c->to.frag.into) { /* the event has the --into member: add nothing */
        *out = "";
        *olen = 0;
        return 0;
    }
    tlm_buf_reset(&c->tmp);
    if (tlm_buf_putc(&c->tmp, '{') || tlm_buf_append(&c->tmp, frag, flen) || tlm_buf_putc(&c->tmp, '}'))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (!(o = json_loadb(c->tmp.data, c->tmp.len, 0, &je)))
        return tlm_error_set(err, TLM_EPARSE, "fragment: %s", je.text);
    for (size_t i = 0; i < c->nconf; i++)
        if (ev->vals[c->conf_at + i].type != TLM_JNONE)
            json_object_del(o, c->conf_names[i]);
    json_object_foreach(o, k, v) {
        if ((!first && tlm_buf_putc(&c->frag2, ',')) ||
            tlm_json_put_string(&c->frag2, k, strlen(k)) || tlm_buf_putc(&c->frag2, ':') ||
            tlm_json_write(&c->frag2, v)) {
            json_decref(o);
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        first = 0;
    }
    json_decref(o);
    *out = c->frag2.data ? c->frag2.data : "";
    *olen = c->frag2.len;
    return 0;
}

/* Writes the event with frag spliced in before its closing brace. */
static int write_enriched(struct ectx *c, struct stage *st, const struct stage_event *ev,
                          const char *frag, size_t flen, struct tlm_error *err)
{
    const char *line = ev->line;
    size_t len = ev->len, end, j;
    struct tlm_buf *b = &stage_out(st)->buf;
    int conflict = 0;
    for (size_t i = 0; i < c->nconf; i++)
        conflict |= ev->vals[c->conf_at + i].type != TLM_JNONE;
    if (conflict) {
        c->conflicts++;
        if (c->conflict_event) {
            int rc = frag_without(c, ev, frag, flen, &frag, &flen, err);
            if (rc)
                return rc;
        } else {
            /* cut the event's members out, last first */
            const struct tlm_jval *cut[64];
            size_t ncut = 0;
            for (size_t i = 0; i < c->nconf && ncut < 64; i++)
                if (ev->vals[c->conf_at + i].type != TLM_JNONE)
                    cut[ncut++] = &ev->vals[c->conf_at + i];
            qsort(cut, ncut, sizeof(cut[0]), cmp_ptr);
            tlm_buf_reset(&c->tmp);
            if (tlm_buf_append(&c->tmp, line, len))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            for (size_t i = 0; i < ncut; i++) {
                size_t from, to;
                struct tlm_jval v = *cut[i];
                v.p = c->tmp.data + (cut[i]->p - line);
                member_span(c->tmp.data, c->tmp.len, &v, &from, &to);
                memmove(c->tmp.data + from, c->tmp.data + to, c->tmp.len - to);
                c->tmp.len -= to - from;
            }
            line = c->tmp.data;
            len = c->tmp.len;
        }
    }
    if (!flen)
        return tlm_writer_line(stage_out(st), line, len, err);
    end = len;
    while (end && line[end - 1] != '}')
        end--;
    j = end - 1;
    while (j && is_ws(line[j - 1]))
        j--;
    if (tlm_buf_reserve(b, end + flen + 3))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    memcpy(b->data + b->len, line, end - 1);
    b->len += end - 1;
    if (line[j - 1] != '{')
        b->data[b->len++] = ',';
    memcpy(b->data + b->len, frag, flen);
    b->len += flen;
    b->data[b->len++] = '}';
    b->data[b->len++] = '\n';
    b->data[b->len] = '\0';
    return stage_rows(st, 1, err);
}

/* ---- unmatched events ---------------------------------------------------------------- */

static void seen_add(struct ectx *c, uint64_t h)
{
    if (c->seen_n * 2 >= c->seen_mask) {
        size_t cap = c->seen_mask ? (c->seen_mask + 1) * 2 : 1024;
        uint64_t *s = calloc(cap, sizeof(uint64_t));
        if (!s)
            return;
        for (size_t i = 0; c->seen && i <= c->seen_mask; i++)
            if (c->seen[i]) {
                size_t j = (size_t)c->seen[i] & (cap - 1);
                while (s[j])
                    j = (j + 1) & (cap - 1);
                s[j] = c->seen[i];
            }
        free(c->seen);
        c->seen = s;
        c->seen_mask = cap - 1;
    }
    h |= 1;
    for (size_t i = (size_t)h & c->seen_mask;; i = (i + 1) & c->seen_mask) {
        if (c->seen[i] == h)
            return;
        if (!c->seen[i]) {
            c->seen[i] = h;
            c->seen_n++;
            return;
        }
    }
}

static int on_unmatched(struct ectx *c, struct stage *st, const struct stage_event *ev,
                        uint64_t h, int have_key, struct tlm_error *err)
{
    int rc;
    c->unmatched_events++;
    if (have_key)
        seen_add(c, h);
    else
        c->nokey++;
    if (c->unmatched_path) {
        if (!c->unmatched && (rc = side_open(c->unmatched_path, stage_restored(st),
                                             &c->unmatched_mark, &c->unmatched, err)))
            return rc;
        if ((rc = tlm_writer_line(c->unmatched, ev->line, ev->len, err)))
            return rc;
    }
    switch (c->missing) {
    case M_KEEP: return stage_pass(st, ev, err);
    case M_DROP: return 0;
    default:
        return write_enriched(c, st, ev, c->deffrag.data ? c->deffrag.data : "", c->deffrag.len, err);
    }
}

/* ---- reloading ----------------------------------------------------------------------- */

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int same_columns(struct tlm_table *a, struct tlm_table *b)
{
    size_t na, nb;
    const char *const *ca = tlm_table_columns(a, &na), *const *cb = tlm_table_columns(b, &nb);
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(ca[i], cb[i]) != 0)
            return 0;
    return 1;
}

/* Reads the table again when its file changed (force: SIGHUP, at once; else only once
 * the change has held still between two checks, so that a file being written in place
 * is not read half-way). A file that fails to load keeps the old table. */
static void maybe_reload(struct ectx *c, int force)
{
    struct stat sb;
    struct tlm_error err;
    struct tlm_table *t;
    double t0;
    if (!c->table_path || stat(c->table_path, &sb) != 0)
        return; /* missing for a moment (replaced by rename): look again later */
    if (!force && same_file(&sb, &c->table_sb)) {
        c->pending = 0;
        return;
    }
    if (!force && (!c->pending || !same_file(&sb, &c->pending_sb))) {
        c->pending_sb = sb;
        c->pending = 1;
        return;
    }
    c->pending = 0;
    tlm_error_clear(&err);
    t0 = now_s();
    t = tlm_table_load(c->table_path, &c->to, &err);
    if (t && !same_columns(t, c->table)) {
        tlm_error_set(&err, TLM_EINVAL, "its columns differ from the table's (restart to change them)");
        tlm_table_destroy(t);
        t = NULL;
    }
    c->table_sb = sb;
    if (!t) {
        char msg[TLM_ERROR_TEXT + TLM_ERROR_SOURCE + 64];
        c->reload_failures++;
        cli_warn("%s changed but does not load, keeping the old table: %s", c->table_path,
                 tlm_error_format(&err, msg, sizeof(msg)));
        return;
    }
    tlm_table_destroy(c->table);
    c->table = t;
    c->reloads++;
    c->load_ms = (now_s() - t0) * 1000;
    {
        struct tlm_table_stats s;
        tlm_table_stats(t, &s);
        cli_warn("%s: reloaded, %lld row%s", c->table_path, s.rows, s.rows == 1 ? "" : "s");
    }
}

static void check_reload(struct ectx *c)
{
    double now;
    if (!c->table_path || c->no_reload)
        return;
    if (c->reload_ns > 0) {
        now = now_s();
        if ((now - c->last_check) * 1e9 < (double)c->reload_ns)
            return;
        c->last_check = now;
    }
    maybe_reload(c, 0);
}

/* ---- the stage ----------------------------------------------------------------------- */

static int on_event(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err)
{
    struct ectx *c = ctx;
    const char *key, *frag;
    size_t n, flen;
    uint64_t h = 0;
    int rc;

    if (c->join)
        return join_event(c->join, st, ev, err);
    if ((++c->tick & 1023) == 0)
        check_reload(c);
    if ((rc = key_values(c, st, ev, err)))
        return rc;
    if (c->db) {
        int64_t now = 0;
        if (c->cache_ttl) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
            now = (int64_t)ts.tv_sec * TLM_NS_PER_S + ts.tv_nsec;
        }
        rc = tlm_dblookup_find(c->db, c->kv, c->nkeys, now, &frag, &flen, err);
        if (rc == 1) {
            c->matched++;
            return write_enriched(c, st, ev, frag, flen, err);
        }
        if (rc == 0 || rc == TLM_ETYPE) {
            if (rc == 0 && table_key(c, &key, &n) == 0)
                h = tlm_table_hash(key, n);
            return on_unmatched(c, st, ev, h, rc == 0, err);
        }
        return rc;
    }
    rc = table_key(c, &key, &n);
    if (rc == TLM_ENOMEM)
        return tlm_error_set(err, rc, "out of memory");
    if (rc)
        return on_unmatched(c, st, ev, 0, 0, err);
    h = tlm_table_hash(key, n);
    frag = tlm_table_find(c->table, key, n, h, &flen);
    if (!frag)
        return on_unmatched(c, st, ev, h, 1, err);
    c->matched++;
    return write_enriched(c, st, ev, frag, flen, err);
}

/* Read-ahead: the index slot, the row and the fragment of each event's key. */
static void prefetch(void *ctx, const struct stage_event *ev, size_t slot, int pass)
{
    struct ectx *c = ctx;
    if (pass == 0) {
        const struct tlm_jval *v = &ev->vals[c->keys[0].val];
        c->hint_ok[slot] = 1;
        if (v->type == TLM_JSTRING && !v->escaped)
            c->hints[slot] = tlm_table_hash(v->p + 1, v->n - 2);
        else if (v->type == TLM_JINT)
            c->hints[slot] = tlm_table_hash(v->p, v->n);
        else
            c->hint_ok[slot] = 0;
    }
    if (c->hint_ok[slot])
        tlm_table_prefetch(c->table, c->hints[slot], pass);
}

static int on_watermark(void *ctx, struct stage *st, tlm_time_t wm, struct tlm_error *err)
{
    struct ectx *c = ctx;
    return c->join ? join_watermark(c->join, st, wm, err) : 0;
}

static tlm_time_t hold(void *ctx, tlm_time_t wm)
{
    struct ectx *c = ctx;
    if (!c->nparts)
        return join_hold(c->join, wm);
    /* Kafka: what the partitions' joins still hold back, each by its own right side */
    tlm_time_t h = TLM_TIME_MAX;
    for (size_t i = 0; i < c->nparts; i++) {
        tlm_time_t x = join_hold(c->parts[i], wm);
        if (x < h)
            h = x;
    }
    return h;
}

/* --join with a kafka:// input: one join per partition (stage.h, part_new), each reading
 * the whole --join file with its own reader and keeping its own buffers, so that a
 * partition's pairs depend on its own events only, whichever copy owns it. */
static void *part_new(void *ctx)
{
    struct ectx *c = ctx;
    struct tlm_error err;
    struct join **v = realloc(c->parts, (c->nparts + 1) * sizeof(*v));
    tlm_error_clear(&err);
    if (!v)
        return NULL;
    c->parts = v;
    struct join *j = join_create(&c->jo, &err);
    if (j)
        c->parts[c->nparts++] = j;
    return j;
}

static void *part_swap(void *ctx, void *part)
{
    struct ectx *c = ctx;
    void *prev = c->join;
    c->join = part;
    return prev;
}

static void part_free(void *ctx, void *part)
{
    struct ectx *c = ctx;
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i] == part) {
            c->parts[i] = c->parts[--c->nparts];
            break;
        }
    join_destroy(part, NULL);
}

static int on_end(void *ctx, struct stage *st, struct tlm_error *err)
{
    struct ectx *c = ctx;
    return c->join ? join_end(c->join, st, err) : 0;
}

static int on_flush(void *ctx)
{
    struct ectx *c = ctx;
    int rc = 0;
    check_reload(c);
    if (c->unmatched)
        rc = tlm_writer_flush(c->unmatched, NULL);
    if (!rc && c->join)
        rc = join_flush(c->join);
    return rc;
}

static int on_reload(void *ctx, struct stage *st, struct tlm_error *err)
{
    struct ectx *c = ctx;
    (void)st;
    (void)err;
    if (c->db) {
        tlm_dblookup_clear(c->db);
        cli_warn("%s: cache emptied (SIGHUP)", c->sqlite_path);
    } else
        maybe_reload(c, 1);
    return 0;
}

static json_t *shape(void *ctx)
{
    struct ectx *c = ctx;
    char a[48], b[48];
    json_t *o = json_object(), *on = json_array();
    for (size_t i = 0; on && i < c->nkeys; i++) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s=%s", c->keys[i].text, c->keys[i].column);
        json_array_append_new(on, json_string(buf));
    }
    json_object_set_new(o, "on", on);
    if (c->join) {
        json_object_set_new(o, "join", json_string(c->jo.path));
        json_object_set_new(o, "lower", json_string(tlm_duration_format(c->jo.lower, a, sizeof(a))));
        json_object_set_new(o, "upper", json_string(tlm_duration_format(c->jo.upper, b, sizeof(b))));
        return o;
    }
    json_object_set_new(o, "source", json_string(c->table_path ? "table" : "sqlite"));
    json_object_set_new(o, "add", json_string(c->add_spec ? c->add_spec : ""));
    json_object_set_new(o, "into", json_string(c->to.frag.into ? c->to.frag.into : ""));
    json_object_set_new(o, "prefix", json_string(c->to.frag.prefix ? c->to.frag.prefix : ""));
    return o;
}

static int save(void *ctx, struct tlm_snap_writer *w, struct tlm_error *err)
{
    struct ectx *c = ctx;
    int rc;
    if (c->join)
        return join_save(c->join, w, err);
    if (c->unmatched_path) {
        json_t *m, *rec;
        if (!c->unmatched &&
            (rc = side_open(c->unmatched_path, c->restored, &c->unmatched_mark, &c->unmatched, err)))
            return rc;
        if ((rc = tlm_writer_sync(c->unmatched, err)))
            return rc;
        if ((m = side_mark_json(c->unmatched))) {
            rec = json_pack("{so}", "unmatched", m);
            rc = rec ? tlm_snap_put(w, rec, err) : tlm_error_set(err, TLM_ENOMEM, "out of memory");
            json_decref(rec);
            if (rc)
                return rc;
        }
    }
    if (c->table) {
        struct tlm_table_stats s;
        char hash[32];
        tlm_table_stats(c->table, &s);
        snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)s.content_hash);
        json_t *rec = json_pack("{s{sssssI}}", "table", "path", c->table_path, "content_hash",
                                hash, "rows", (json_int_t)s.rows);
        if (!rec)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        rc = tlm_snap_put(w, rec, err);
        json_decref(rec);
        return rc;
    }
    return 0;
}

static int load(void *ctx, json_t *rec, struct tlm_error *err)
{
    struct ectx *c = ctx;
    json_t *t = json_object_get(rec, "table");
    if (c->join)
        return join_load(c->join, rec, err);
    c->restored = 1;
    if (json_object_get(rec, "unmatched")) {
        side_mark_read(json_object_get(rec, "unmatched"), &c->unmatched_mark);
        return 0;
    }
    if (t && c->table) {
        struct tlm_table_stats s;
        char hash[32];
        tlm_table_stats(c->table, &s);
        snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)s.content_hash);
        const char *was = json_string_value(json_object_get(t, "content_hash"));
        if (!was || strcmp(was, hash) != 0)
            cli_warn("%s differs from the table the snapshot was taken with: events from here on are "
                     "enriched from the new one",
                     c->table_path);
        return 0;
    }
    return tlm_error_set(err, TLM_ESTATE, "unexpected state record");
}

static void stats(void *ctx, json_t *o)
{
    struct ectx *c = ctx;
    if (c->join) {
        join_stats(c->join, o);
        return;
    }
    json_object_set_new(o, "matched", json_integer(c->matched));
    json_object_set_new(o, "unmatched", json_integer(c->unmatched_events));
    json_object_set_new(o, "unmatched_keys", json_integer((json_int_t)c->seen_n));
    json_object_set_new(o, "without_key", json_integer(c->nokey));
    json_object_set_new(o, "conflicts", json_integer(c->conflicts));
    if (c->table) {
        struct tlm_table_stats s;
        tlm_table_stats(c->table, &s);
        json_object_set_new(o, "table_rows", json_integer(s.rows));
        json_object_set_new(o, "table_duplicates", json_integer(s.duplicates));
        json_object_set_new(o, "table_bytes", json_integer((json_int_t)s.bytes));
        if (s.rows)
            json_object_set_new(o, "bytes_per_row", json_integer((json_int_t)(s.bytes / (size_t)s.rows)));
        json_object_set_new(o, "table_load_ms", json_real((double)(long long)(c->load_ms * 10) / 10));
        json_object_set_new(o, "reloads", json_integer(c->reloads));
        json_object_set_new(o, "reload_failures", json_integer(c->reload_failures));
    }
    if (c->db) {
        struct tlm_dblookup_stats s;
        tlm_dblookup_stats(c->db, &s);
        json_object_set_new(o, "cache_hits", json_integer(s.hits));
        json_object_set_new(o, "cache_misses", json_integer(s.misses));
        json_object_set_new(o, "cache_expired", json_integer(s.expired));
        json_object_set_new(o, "cache_evictions", json_integer(s.evictions));
        json_object_set_new(o, "cache_entries", json_integer(s.entries));
        json_object_set_new(o, "queries_without_row", json_integer(s.no_row));
    }
}

/* ---- setup --------------------------------------------------------------------------- */

/* The fragment of unmatched events (--missing null / --default). */
static void build_default(struct ectx *c, const char *const *cols, size_t ncols)
{
    json_t *o;
    if (c->missing == M_NULL) {
        o = json_object();
        for (size_t i = 0; o && i < ncols; i++)
            json_object_set_new(o, cols[i], json_null());
    } else if (c->missing == M_DEFAULT) {
        json_error_t je;
        if (!c->default_json)
            cli_usage_error("--missing default needs --default <json>");
        o = json_loads(c->default_json, 0, &je);
        if (!o || !json_is_object(o))
            cli_usage_error("--default: expected a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
    } else {
        return;
    }
    if (!o || tlm_frag_from_json(&c->deffrag, &c->to.frag, o))
        cli_usage_error("--default: not valid UTF-8 (or out of memory)");
    json_decref(o);
}

int cmd_enrich(int argc, char **argv)
{
    struct ectx c;
    struct cli_common common;
    struct stage_ops ops;
    struct tlm_error err;
    const char *const *cols = NULL;
    size_t ncols = 0;
    struct tlm_path right_key = { 0, NULL };
    int argi, status, modes;

    memset(&c, 0, sizeof(c));
    c.reload_ns = TLM_NS_PER_S;
    c.cache_size = 100000;
    c.cache_ttl = 60 * TLM_NS_PER_S;
    c.jo.max_per_key = 1000;
    tlm_error_clear(&err);
    argi = cli_parse(&enrich_cmd, argc, argv, &common, handle, &c);
    cli_add_inputs(&common, argc - argi, argv + argi);
    c.common = &common;

    modes = !!c.table_path + !!c.sqlite_path + !!c.jo.path;
    if (modes == 0)
        cli_usage_error("what to join with? give --table <file>, --sqlite <db> or --join <file>");
    if (modes > 1)
        cli_usage_error("choose one of --table, --sqlite and --join");
    if (!c.on_copy)
        cli_usage_error("--on: which event field%s?", c.sqlite_path ? "s bind the query's parameters" : " is the key");
    if (c.sqlite_path && !c.query)
        cli_usage_error("--sqlite needs --query <sql>");
    if (c.query && !c.sqlite_path)
        cli_usage_error("--query applies to --sqlite");
    if (!c.jo.path && (c.jo.bounds_set || c.jo.unjoined_path))
        cli_usage_error("--within, --lower, --upper and --unjoined apply to --join");
    if (c.default_json && c.missing != M_DEFAULT)
        cli_usage_error("--default applies to --missing default");
    if (c.to.frag.into && c.to.frag.prefix)
        cli_usage_error("--into and --prefix cannot be combined");
    parse_on(&c);
    for (size_t i = 0; i < c.nkeys; i++)
        c.key_cols[i] = c.keys[i].column;
    if (c.add_spec) {
        c.add_copy = strdup(c.add_spec);
        if (!c.add_copy)
            cli_usage_error("out of memory");
        c.add_list = split_list(c.add_copy, &c.to.nadd, "add");
        c.to.add_cols = c.add_list;
    }
    c.to.key_cols = c.key_cols;
    c.to.nkeys = c.nkeys;

    if (c.jo.path) {
        if (c.table_path || c.add_spec || c.missing != M_KEEP || c.unmatched_path)
            cli_usage_error("--add, --missing and --unmatched apply to --table and --sqlite");
        if (c.nkeys != 1 || c.keys[0].expr)
            cli_usage_error("--join: --on names one field present on both sides");
        if (!c.jo.bounds_set)
            cli_usage_error("--join needs --within <dur> (or --lower and --upper)");
        if (c.jo.lower > c.jo.upper)
            cli_usage_error("--lower must not be above --upper");
        build_paths(&c, NULL, 0);
        c.jo.key_path = &c.paths[c.keys[0].val];
        /* --on left=right: the right side's key field (a dotted name too) */
        if (strncmp(c.keys[0].column, "$.", 2) == 0 && plain_field(c.keys[0].column + 2))
            c.keys[0].column += 2;
        if (!plain_field(c.keys[0].column))
            cli_usage_error("--on: '%s' is not a field name of the --join events", c.keys[0].column);
        split_path(c.keys[0].column, &right_key, 1);
        c.jo.right_key_path = &right_key;
        c.jo.common = &common;
        c.jo.into = c.to.frag.into;
        c.jo.prefix = c.to.frag.prefix;
        if (!(c.join = join_create(&c.jo, &err))) {
            cli_report(&err);
            cli_exit(EXIT_DATA);
        }
    } else if (c.sqlite_path) {
        if (!(c.db = tlm_dblookup_open(c.sqlite_path, c.query, c.nkeys, &c.to.frag,
                                       (size_t)c.cache_size, c.cache_ttl, &err))) {
            cli_warn("%s: %s", c.sqlite_path, err.text);
            cli_exit(EXIT_DATA);
        }
        cols = tlm_dblookup_columns(c.db, &ncols);
    } else {
        double t0 = now_s();
        if (stat(c.table_path, &c.table_sb) != 0)
            tlm_error_set(&err, TLM_EIO, "%s", strerror(errno));
        if (err.code || !(c.table = tlm_table_load(c.table_path, &c.to, &err))) {
            if (!err.source[0])
                snprintf(err.source, sizeof(err.source), "%s", c.table_path);
            cli_report(&err);
            cli_exit(EXIT_DATA);
        }
        c.load_ms = (now_s() - t0) * 1000;
        c.last_check = now_s();
        cols = tlm_table_columns(c.table, &ncols);
    }
    if (!c.jo.path) {
        build_paths(&c, cols, ncols);
        build_default(&c, cols, ncols);
    }

    memset(&ops, 0, sizeof(ops));
    ops.name = "enrich";
    ops.ctx = &c;
    ops.needs_time = c.join != NULL;
    ops.paths = c.paths;
    ops.npaths = c.npaths;
    ops.on_event = on_event;
    if (c.table && c.nkeys == 1 && !c.keys[0].expr)
        ops.prefetch = prefetch;
    ops.prefetch_passes = TLM_TABLE_PREFETCH_PASSES;
    ops.on_watermark = on_watermark;
    ops.on_end = c.join ? on_end : NULL; /* only a join holds events until the end */
    ops.on_flush = on_flush;
    ops.on_reload = on_reload;
    ops.shape = shape;
    ops.save = save;
    ops.load = load;
    ops.stats = stats;
    if (c.join)
        ops.hold = hold;
    if (c.join && common.ninputs == 1 && !strncmp(common.inputs[0], "kafka://", 8)) {
        struct stat jsb;
        if (c.jo.unjoined_path)
            cli_usage_error("--unjoined: not with a kafka:// input (a partition cannot tell "
                            "whether another one joined a --join event)");
        if (stat(c.jo.path, &jsb) == 0 && !S_ISREG(jsb.st_mode))
            cli_usage_error("--join: with a kafka:// input, a regular file (each partition "
                            "reads it from its start)");
        ops.part_new = part_new;
        ops.part_swap = part_swap;
        ops.part_free = part_free;
    }

    status = stage_run(&common, &ops);

    if (status == 0 && c.unmatched_path && !c.unmatched &&
        tlm_writer_open(c.unmatched_path, access(c.unmatched_path, F_OK) == 0 && common.state,
                        &c.unmatched, &err)) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    if (c.unmatched && tlm_writer_close(c.unmatched, &err) && status == 0) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    if (c.join && join_destroy(c.join, status == 0 ? &err : NULL) && status == 0) {
        cli_report(&err);
        status = EXIT_DATA;
    }
    free(c.parts);
    tlm_table_destroy(c.table);
    tlm_dblookup_destroy(c.db);
    free(right_key.seg ? right_key.seg[0] : NULL);
    free(right_key.seg);
    for (size_t i = 0; i < c.nkeys; i++) {
        if (c.keys[i].expr) {
            tlm_expr_destroy(c.keys[i].expr);
            continue;
        }
        free(c.paths[c.keys[i].val].seg[0]);
        free(c.paths[c.keys[i].val].seg);
    }
    for (size_t i = 0; i < c.nconf; i++) {
        free(c.paths[c.conf_at + i].seg[0]);
        free(c.paths[c.conf_at + i].seg);
        free(c.conf_names[i]);
    }
    free(c.conf_names);
    free(c.paths);
    free(c.seen);
    free(c.add_list);
    free(c.add_copy);
    free(c.on_copy);
    tlm_buf_free(&c.deffrag);
    tlm_buf_free(&c.keybuf);
    tlm_buf_free(&c.exprbuf);
    tlm_buf_free(&c.tmp);
    tlm_buf_free(&c.frag2);
    free(common.inputs);
    cli_exit(status);
}
