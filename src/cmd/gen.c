/*
 * gen.c - `telem gen`: deterministic synthetic IoT telemetry for samples, tests and
 * benchmarks. Drives lib/gen.c and writes through lib/writer.c.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "gen.h"
#include "writer.h"

static const char *const usage[] = {
    "telem gen [-n <count>] [--devices <n>] [--rate <per-second>] [--start <time>]",
    "          [--disorder <dur>] [--late-fraction <f> [--late-by <dur>]]",
    "          [--duplicates <f>] [--seed <n>] [--unit <unit>] [-o <file>]",
    NULL,
};

enum { K_DEVICES = CLI_KEY_CMD, K_RATE, K_START, K_DISORDER, K_LATE_FRACTION, K_LATE_BY,
       K_DUPLICATES, K_SEED, K_UNIT };

static const struct cli_opt gen_opts[] = {
    { "count", 'n', "<count>", "number of events (default 1000; 5M, 2k accepted)" },
    { "devices", K_DEVICES, "<n>", "number of distinct deviceId values (default 100)" },
    { "rate", K_RATE, "<per-second>", "events per second of event time (default 1000)" },
    { "start", K_START, "<time>", "time of the first event, RFC 3339 or epoch number (default 2024-01-01T00:00:00Z)" },
    { "disorder", K_DISORDER, "<dur>", "move each event back by up to <dur> (bounded disorder)" },
    { "late-fraction", K_LATE_FRACTION, "<f>", "share of events moved back by --late-by (0..1)" },
    { "late-by", K_LATE_BY, "<dur>", "how far late events are moved back (default 10m)" },
    { "duplicates", K_DUPLICATES, "<f>", "share of events written twice (0..1)" },
    { "seed", K_SEED, "<n>", "random seed (default 1)" },
    { "unit", K_UNIT, "<unit>", "unit of the timestamp field: s, ms, us, ns (default ms)" },
    { "output", 'o', "<file>", "write to <file> instead of stdout" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Options", gen_opts },
    { "Help", cli_opts_help },
    { NULL, NULL },
};

static const struct cli_cmd gen_cmd = {
    "gen", "Generate deterministic synthetic IoT telemetry (seed 001's device events)", usage,
    groups,
};

struct gen_ctx {
    struct tlm_gen_opts o;
    const char *output;
};

static double fraction(const char *opt, const char *arg)
{
    double f = cli_number(opt, arg);
    if (f < 0 || f > 1)
        cli_usage_error("--%s: %s is not between 0 and 1", opt, arg);
    return f;
}

static void handle(int key, const char *arg, void *p)
{
    struct gen_ctx *g = p;
    struct tlm_error err;
    tlm_error_clear(&err);
    switch (key) {
    case 'n': g->o.count = (uint64_t)cli_count("count", arg, 0, (long long)1e12); break;
    case 'o': g->output = arg; break;
    case K_DEVICES: g->o.devices = (uint64_t)cli_count("devices", arg, 1, (long long)1e9); break;
    case K_RATE:
        g->o.rate = cli_number("rate", arg);
        if (!(g->o.rate > 0))
            cli_usage_error("--rate: must be above 0");
        break;
    case K_START: {
        char *end;
        double v = strtod(arg, &end);
        int rc = (end != arg && !*end)
                     ? tlm_time_from_double(v, TLM_UNIT_AUTO, &g->o.start, &err)
                     : tlm_time_parse_rfc3339(arg, strlen(arg), &g->o.start, &err);
        if (rc)
            cli_usage_error("--start: %s", err.text);
        break;
    }
    case K_DISORDER: g->o.disorder = cli_duration("disorder", arg); break;
    case K_LATE_FRACTION: g->o.late_fraction = fraction("late-fraction", arg); break;
    case K_LATE_BY: g->o.late_by = cli_duration("late-by", arg); break;
    case K_DUPLICATES: g->o.dup_fraction = fraction("duplicates", arg); break;
    case K_SEED: g->o.seed = (uint64_t)cli_count("seed", arg, 0, (long long)9e18); break;
    case K_UNIT:
        if (tlm_time_unit_parse(arg, &g->o.unit, &err) || g->o.unit == TLM_UNIT_AUTO)
            cli_usage_error("--unit: expected s, ms, us or ns");
        break;
    }
}

int cmd_gen(int argc, char **argv)
{
    struct gen_ctx g;
    struct cli_common common;
    struct tlm_gen gen;
    struct tlm_writer *w;
    struct tlm_error err;
    int argi, rc;

    memset(&g, 0, sizeof(g));
    tlm_gen_defaults(&g.o);
    tlm_error_clear(&err);
    argi = cli_parse(&gen_cmd, argc, argv, &common, handle, &g);
    if (argi < argc)
        cli_usage_error("unexpected argument '%s'", argv[argi]);
    signal(SIGPIPE, SIG_IGN);
    if (tlm_writer_open(g.output, 0, &w, &err))
        cli_die(&err);
    tlm_gen_init(&gen, &g.o);
    while ((rc = tlm_gen_next(&gen, &w->buf)) > 0) {
        w->lines += rc;
        if (w->buf.len >= TLM_WRITER_HIGH && (rc = tlm_writer_flush(w, &err)))
            break;
    }
    if (rc < 0 && !err.text[0])
        tlm_error_set(&err, rc, "out of memory");
    if (tlm_writer_close(w, rc < 0 ? NULL : &err) < 0 || rc < 0)
        cli_die(&err); /* quietly 0 for a closed pipe */
    return 0;
}
