/*
 * ingest.c - `telem ingest`: the first stage of a pipeline. Reads records and writes
 * one validated NDJSON event per line. Drives the stage loop (stage.c) with the JSON
 * scanner: a valid event passes through as its original bytes; a line that is not a
 * JSON object is rejected with its line number and reason. With --time-field, every
 * event must carry a usable time, and ingest writes watermark records for the stages
 * after it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "stage.h"

static const char *const usage[] = {
    "telem ingest [-f ndjson] [<options>] [-i <file>]... [<file>...]",
    NULL,
};

static const struct cli_opt ingest_opts[] = {
    { "format", 'f', "<format>", "input format: ndjson (default ndjson)" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Format", ingest_opts },
    { "Input and output", cli_opts_io },
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
};

static void handle(int key, const char *arg, void *p)
{
    struct ingest *g = p;
    if (key == 'f') {
        if (strcmp(arg, "ndjson") != 0)
            cli_usage_error("-f: unknown format '%s' (this version reads: ndjson)", arg);
        g->format = arg;
    }
}

static int on_event(void *ctx, struct stage *st, const struct stage_event *ev,
                    struct tlm_error *err)
{
    (void)ctx;
    return stage_pass(st, ev, err);
}

int cmd_ingest(int argc, char **argv)
{
    struct ingest g = { "ndjson" };
    struct cli_common common;
    struct stage_ops ops;
    int argi = cli_parse(&ingest_cmd, argc, argv, &common, handle, &g);
    cli_add_inputs(&common, argc - argi, argv + argi);
    memset(&ops, 0, sizeof(ops));
    ops.name = "ingest";
    ops.ctx = &g;
    ops.on_event = on_event;
    /* with --time-field, events must carry a usable time and ingest emits watermarks */
    ops.needs_time = common.time_field_set;
    int status = stage_run(&common, &ops);
    free(common.inputs);
    cli_exit(status);
}
