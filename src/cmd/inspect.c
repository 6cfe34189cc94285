/*
 * inspect.c - `telem inspect`: show a state snapshot's header and a summary of its
 * records (how many, of which kind), or every record with --records. Drives
 * lib/snapshot.c; the output is JSON so that it composes with jq.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "snapshot.h"

static const char *const usage[] = {
    "telem inspect [--records] <file>...",
    NULL,
};

enum { K_RECORDS = CLI_KEY_CMD };

static const struct cli_opt inspect_opts[] = {
    { "records", K_RECORDS, NULL, "print every record as NDJSON after the summary" },
    { NULL, 0, NULL, NULL },
};

static const struct cli_group groups[] = {
    { "Options", inspect_opts },
    { "Help", cli_opts_help },
    { NULL, NULL },
};

static const struct cli_cmd inspect_cmd = {
    "inspect", "Show a state snapshot's header and a summary of its contents", usage, groups,
};

static void handle(int key, const char *arg, void *p)
{
    (void)arg;
    if (key == K_RECORDS)
        *(int *)p = 1;
}

/* The kind of a record: its "kind" or "type" member, else its first key. */
static const char *kind_of(json_t *rec)
{
    const char *k;
    json_t *v;
    if (!json_is_object(rec))
        return json_is_array(rec) ? "(array)" : "(scalar)";
    if ((k = json_string_value(json_object_get(rec, "kind"))) ||
        (k = json_string_value(json_object_get(rec, "type"))))
        return k;
    json_object_foreach(rec, k, v) {
        (void)v;
        return k;
    }
    return "(empty)";
}

static int inspect(const char *path, int records)
{
    struct tlm_error err;
    json_t *h = NULL, *rec, *kinds = json_object(), *out;
    json_t *all = records ? json_array() : NULL;
    long long n = 0;
    int rc;
    struct tlm_snap_reader *r;

    tlm_error_clear(&err);
    r = tlm_snap_open(path, &h, &err);
    if (!r) {
        cli_report(&err);
        json_decref(kinds);
        json_decref(all);
        return EXIT_DATA;
    }
    while ((rc = tlm_snap_next(r, &rec, &err)) == 1) {
        const char *k = kind_of(rec);
        json_t *c = json_object_get(kinds, k);
        json_object_set_new(kinds, k, json_integer(c ? json_integer_value(c) + 1 : 1));
        n++;
        if (all)
            json_array_append_new(all, rec);
        else
            json_decref(rec);
    }
    tlm_snap_close(r);
    if (rc < 0) {
        cli_report(&err);
        json_decref(h);
        json_decref(kinds);
        json_decref(all);
        return EXIT_DATA;
    }
    out = json_pack("{sssosIso}", "file", path, "header", h, "records", (json_int_t)n, "kinds",
                    kinds);
    json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    putchar('\n');
    json_decref(out);
    if (all) {
        size_t i;
        json_array_foreach(all, i, rec) {
            json_dumpf(rec, stdout, JSON_COMPACT | JSON_REAL_PRECISION(17));
            putchar('\n');
        }
        json_decref(all);
    }
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    struct cli_common common;
    int records = 0, status = 0;
    int argi = cli_parse(&inspect_cmd, argc, argv, &common, handle, &records);
    if (argi >= argc)
        cli_usage_error("which snapshot? (telem inspect <file>)");
    for (; argi < argc; argi++) {
        int s = inspect(argv[argi], records);
        if (s)
            status = s;
    }
    cli_exit(status);
}
