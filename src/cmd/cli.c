/*
 * cli.c - option tables, help, errors and exit for the command layer (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static char progname[64] = "telem";

const struct cli_opt cli_opts_io[] = {
#ifdef HAVE_KAFKA
    { "input", 'i', "<file>", "read <file> (repeatable; \"-\" stdin, the default), or kafka://H:P/T?group=G" },
    { "output", 'o', "<file>", "write to <file> (or kafka://H:P/T?key=FIELD) instead of stdout" },
#else
    { "input", 'i', "<file>", "read <file> (repeatable, in order; \"-\" is stdin; default stdin)" },
    { "output", 'o', "<file>", "write to <file> instead of stdout" },
#endif
    { NULL, 0, NULL, NULL },
};

const struct cli_opt cli_opts_time[] = {
    { "time-field", CLI_KEY_TIME_FIELD, "<field>", "event time field (default timestamp)" },
    { "time-unit", CLI_KEY_TIME_UNIT, "<unit>", "unit of numeric times: auto, s, ms, us, ns (default auto)" },
    { "max-out-of-order", CLI_KEY_MAX_OOO, "<dur>", "bounded disorder of event time (default 0)" },
    { "idle-timeout", CLI_KEY_IDLE, "<dur>", "on live input, advance time by the wall clock after <dur> idle" },
    { "watermark-interval", CLI_KEY_WM_INTERVAL, "<dur>", "emit a watermark record when time advances by <dur> (default 1s)" },
    { "no-watermarks", CLI_KEY_NO_WM, NULL, "do not write watermark records (for consumers other than telem)" },
    { NULL, 0, NULL, NULL },
};

const struct cli_opt cli_opts_state[] = {
    { "state", CLI_KEY_STATE, "<file>", "restore from and snapshot to <file> (zstd)" },
    { "checkpoint-interval", CLI_KEY_CHECKPOINT, "<dur>", "also snapshot every <dur> of wall time" },
    { "drain", CLI_KEY_DRAIN, NULL, "with --state: at the end of input, end time (fire all) before the snapshot" },
    { NULL, 0, NULL, NULL },
};

const struct cli_opt cli_opts_errors[] = {
    { "reject", CLI_KEY_REJECT, "<file>", "write bad lines, with line number and reason, to <file>" },
    { "strict", CLI_KEY_STRICT, NULL, "stop at the first bad line (exit 1)" },
    { NULL, 0, NULL, NULL },
};

const struct cli_opt cli_opts_report[] = {
    { "stats", CLI_KEY_STATS, NULL, "print counts on stderr at exit" },
    { "progress", CLI_KEY_PROGRESS, NULL, "show rate, watermark and share read on a terminal" },
    { NULL, 0, NULL, NULL },
};

const struct cli_opt cli_opts_help[] = {
    { "help", 'h', NULL, "show this help and exit" },
    { "version", CLI_KEY_VERSION, NULL, "show the version and exit" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_opt hidden_opts[] = {
    { "list-options", CLI_KEY_LIST_OPTIONS, NULL, NULL },
    { NULL, 0, NULL, NULL },
};

const char *cli_progname(void)
{
    return progname;
}

void cli_set_progname(const char *cmd)
{
    snprintf(progname, sizeof(progname), "telem%s%s", cmd ? " " : "", cmd ? cmd : "");
}

/* ---- messages and exit ------------------------------------------------------------ */

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_exit(int status)
{
    if (fflush(stdout) != 0 && errno != EPIPE && status == 0) {
        fprintf(stderr, "%s: write error: %s\n", progname, strerror(errno));
        status = EXIT_DATA;
    }
    exit(status);
}

void cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", progname);
    exit(EXIT_USAGE);
}

void cli_report(const struct tlm_error *err)
{
    char msg[TLM_ERROR_TEXT + TLM_ERROR_SOURCE + 64];
    fprintf(stderr, "%s: %s\n", progname, tlm_error_format(err, msg, sizeof(msg)));
}

void cli_die(const struct tlm_error *err)
{
    if (err->code == TLM_EPIPE)
        exit(0);
    cli_report(err);
    exit(EXIT_DATA);
}

/* ---- values ----------------------------------------------------------------------- */

int64_t cli_duration(const char *opt, const char *arg)
{
    struct tlm_error err;
    int64_t ns;
    tlm_error_clear(&err);
    if (tlm_duration_parse(arg, &ns, &err))
        cli_usage_error("--%s: %s", opt, err.text);
    return ns;
}

long long cli_count(const char *opt, const char *arg, long long min, long long max)
{
    char *end;
    double mult = 1;
    errno = 0;
    double v = strtod(arg, &end);
    if (end != arg && (*end == 'k' || *end == 'K'))
        mult = 1e3, end++;
    else if (end != arg && (*end == 'M'))
        mult = 1e6, end++;
    else if (end != arg && (*end == 'G'))
        mult = 1e9, end++;
    v *= mult;
    if (end == arg || *end || errno || v != (double)(long long)v)
        cli_usage_error("--%s: '%s' is not a whole number", opt, arg);
    if (v < (double)min || v > (double)max)
        cli_usage_error("--%s: %s is out of range (%lld..%lld)", opt, arg, min, max);
    return (long long)v;
}

double cli_number(const char *opt, const char *arg)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (end == arg || *end || errno)
        cli_usage_error("--%s: '%s' is not a number", opt, arg);
    return v;
}

/* ---- suggestions ------------------------------------------------------------------ */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];
    if (la > 62 || lb > 62)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c)
                c = prev[j] + 1;
            if (cur[j - 1] + 1 < c)
                c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

const char *cli_suggest(const char *word, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3, wl = strlen(word);
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, names[i]);
        if (wl >= 2 && strncmp(names[i], word, wl) == 0 && d > 1)
            d = 1; /* a prefix is a good guess */
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    return best;
}

/* ---- help ------------------------------------------------------------------------- */

static void print_opt(const struct cli_opt *o)
{
    char left[80];
    int n;
    if (o->key < 256)
        n = snprintf(left, sizeof(left), "  -%c, --%s%s%s", o->key, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
    else
        n = snprintf(left, sizeof(left), "      --%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
    if (n < 32)
        printf("%-32s%s\n", left, o->help);
    else
        printf("%s\n%32s%s\n", left, "", o->help);
}

void cli_print_help(const struct cli_cmd *cmd)
{
    /* a line starting with a blank continues the one before; others are alternatives */
    for (size_t i = 0; cmd->usage[i]; i++)
        printf("%s %s\n", i == 0 ? "usage:" : cmd->usage[i][0] == ' ' ? "      " : "   or:",
               cmd->usage[i]);
    printf("\n%s.\n", cmd->summary);
    for (const struct cli_group *g = cmd->groups; g->opts; g++) {
        printf("\n%s:\n", g->title);
        for (const struct cli_opt *o = g->opts; o->name; o++)
            print_opt(o);
    }
    printf("\nSee telem-%s(1) for details.\n", cmd->name);
}

/* ---- parsing ---------------------------------------------------------------------- */

static void set_defaults(struct cli_common *c)
{
    memset(c, 0, sizeof(*c));
    c->time_field = "timestamp";
    c->time_unit = TLM_UNIT_AUTO;
    c->watermark_interval = TLM_NS_PER_S;
}

static void add_input(struct cli_common *c, const char *name)
{
    const char **n = realloc(c->inputs, (c->ninputs + 2) * sizeof(*n));
    if (!n)
        cli_usage_error("out of memory");
    c->inputs = n;
    c->inputs[c->ninputs++] = name;
    c->inputs[c->ninputs] = NULL;
}

void cli_add_inputs(struct cli_common *c, int n, char **names)
{
    for (int i = 0; i < n; i++)
        add_input(c, names[i]);
}

static int common_option(struct cli_common *c, const struct cli_opt *o, const char *arg)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    switch (o->key) {
    case 'i': add_input(c, arg); return 1;
    case 'o': c->output = arg; return 1;
    case CLI_KEY_TIME_FIELD:
        c->time_field = arg;
        c->time_field_set = 1;
        return 1;
    case CLI_KEY_TIME_UNIT:
        if (tlm_time_unit_parse(arg, &c->time_unit, &err))
            cli_usage_error("--time-unit: %s", err.text);
        return 1;
    case CLI_KEY_MAX_OOO: c->max_out_of_order = cli_duration(o->name, arg); return 1;
    case CLI_KEY_IDLE: c->idle_timeout = cli_duration(o->name, arg); return 1;
    case CLI_KEY_WM_INTERVAL: c->watermark_interval = cli_duration(o->name, arg); return 1;
    case CLI_KEY_NO_WM: c->no_watermarks = 1; return 1;
    case CLI_KEY_STATE: c->state = arg; return 1;
    case CLI_KEY_CHECKPOINT: c->checkpoint_interval = cli_duration(o->name, arg); return 1;
    case CLI_KEY_DRAIN: c->drain = 1; return 1;
    case CLI_KEY_REJECT: c->reject = arg; return 1;
    case CLI_KEY_STRICT: c->strict = 1; return 1;
    case CLI_KEY_STATS: c->stats = 1; return 1;
    case CLI_KEY_PROGRESS: c->progress = 1; return 1;
    default: return 0;
    }
}

static int is_common_table(const struct cli_opt *t)
{
    return t == cli_opts_io || t == cli_opts_time || t == cli_opts_state ||
           t == cli_opts_errors || t == cli_opts_report;
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_common *common,
              cli_handler handle, void *ctx)
{
    const struct cli_opt *all[128];
    int from_common[128];
    struct option longopts[129];
    char shortopts[160] = ":";
    size_t n = 0, sl = 1;
    const struct cli_group *g;

    set_defaults(common);
    cli_set_progname(cmd->name);
    for (g = cmd->groups;; g++) {
        const struct cli_opt *t = g->opts ? g->opts : hidden_opts;
        for (const struct cli_opt *o = t; o->name && n < 127; o++) {
            all[n] = o;
            from_common[n] = is_common_table(t);
            longopts[n].name = o->name;
            longopts[n].has_arg = o->arg ? required_argument : no_argument;
            longopts[n].flag = NULL;
            longopts[n].val = o->key;
            n++;
            if (o->key < 256 && sl < sizeof(shortopts) - 3) {
                shortopts[sl++] = (char)o->key;
                if (o->arg)
                    shortopts[sl++] = ':';
            }
        }
        if (!g->opts)
            break;
    }
    memset(&longopts[n], 0, sizeof(longopts[n]));
    shortopts[sl] = '\0';

    opterr = 0;
    optind = 1;
    for (;;) {
        int c = getopt_long(argc, argv, shortopts, longopts, NULL);
        if (c == -1)
            break;
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            if (c == ':')
                cli_usage_error("option '%s' needs a value", bad);
            if (strncmp(bad, "--", 2) == 0 && optopt != 0 && strchr(bad, '=')) {
                char word[64];
                snprintf(word, sizeof(word), "%s", bad);
                word[strcspn(word, "=")] = '\0';
                cli_usage_error("option '%s' takes no value", word);
            }
            if (strncmp(bad, "--", 2) == 0) {
                const char *names[128];
                char word[64];
                const char *s;
                size_t k = 0;
                snprintf(word, sizeof(word), "%s", bad + 2);
                word[strcspn(word, "=")] = '\0';
                for (size_t i = 0; i < n; i++)
                    if (all[i]->help)
                        names[k++] = all[i]->name;
                s = cli_suggest(word, names, k);
                if (s)
                    cli_usage_error("unknown option '--%s'; did you mean '--%s'?", word, s);
                cli_usage_error("unknown option '--%s'", word);
            }
            cli_usage_error("unknown option '-%c'", optopt);
        }
        if (c == 'h') {
            cli_print_help(cmd);
            cli_exit(0);
        }
        if (c == CLI_KEY_VERSION) {
            printf("telem %s\n", PACKAGE_VERSION);
            cli_exit(0);
        }
        if (c == CLI_KEY_LIST_OPTIONS) {
            for (size_t i = 0; i < n; i++) {
                if (!all[i]->help)
                    continue;
                printf("--%s\n", all[i]->name);
                if (all[i]->key < 256)
                    printf("-%c\n", all[i]->key);
            }
            cli_exit(0);
        }
        for (size_t i = 0; i < n; i++) {
            if (all[i]->key != c)
                continue;
            if (from_common[i] && common_option(common, all[i], optarg))
                break;
            handle(c, optarg, ctx);
            break;
        }
    }
    return optind;
}
