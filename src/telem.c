/*
 * telem.c - main(): the command table and dispatch.
 *
 * `telem <cmd> ...`, a link named `telem-<cmd>` (argv[0] decides, as in git and
 * BusyBox) and `telem help <cmd>` all reach the same row of the table below. `telem
 * --help` lists the rows; `telem --list-commands` prints their names for completions.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "cli.h"
#include "cmd.h"

/* Sorted by name. */
static const struct telem_cmd cmds[] = {
    { "cep", cmd_cep, "detect event patterns (Flink CEP) per key in event time" },
    { "enrich", cmd_enrich, "join events with reference tables, SQLite queries or another stream" },
    { "gen", cmd_gen, "generate deterministic synthetic telemetry" },
    { "ingest", cmd_ingest, "read telemetry in many formats as NDJSON events" },
    { "inspect", cmd_inspect, "show a state snapshot's header and contents" },
    { "remote-write", cmd_remote_write, "push events as samples to a Prometheus remote write receiver" },
    { "window", cmd_window, "aggregate events over keyed event-time windows" },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct telem_cmd *find(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (strcmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: telem <command> [<options>] [<file>...]\n"
               "   or: telem help <command>\n"
               "   or: telem --help | --version\n\n"
               "telem processes telemetry as a Unix filter: each command reads and writes\n"
               "newline-delimited JSON, so commands chain with pipes.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(f, "  %-14s%s\n", cmds[i].name, cmds[i].summary);
    fprintf(f, "\nRun 'telem <command> --help' for its options, 'telem help <command>' for its\n"
               "manual, and see telem(1) and telem(7).\n");
}

static void unknown(const char *name)
{
    const char *names[NCMDS];
    const char *s;
    for (size_t i = 0; i < NCMDS; i++)
        names[i] = cmds[i].name;
    s = cli_suggest(name, names, NCMDS);
    fprintf(stderr, "telem: '%s' is not a telem command", name);
    if (s)
        fprintf(stderr, "; did you mean '%s'?", s);
    fprintf(stderr, "\nRun 'telem --help' for the list of commands.\n");
    exit(EXIT_USAGE);
}

/* `telem help <cmd>`: the man page through man(1), from the installed manual or the
 * source tree; if neither is there, the command's --help. */
static int help(const char *name)
{
    char page[64], path[4096];
    const char *dirs[] = { TELEM_MANDIR "/man1", TELEM_SRCDIR "/man" };
    const struct telem_cmd *c = find(name);
    if (!c && strcmp(name, "telem") != 0)
        unknown(name);
    snprintf(page, sizeof(page), c ? "telem-%s" : "telem", name);
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s.1", dirs[i], page);
        if (stat(path, &st) == 0 && isatty(1)) {
            pid_t pid = fork();
            int status;
            if (pid == 0) {
                execlp("man", "man", "-l", path, (char *)NULL);
                _exit(127);
            }
            if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                WEXITSTATUS(status) == 0)
                return 0;
            break;
        }
        if (stat(path, &st) == 0) {
            /* not a terminal: print the page as plain text if man can, else raw */
            execlp("man", "man", "-P", "cat", "-l", path, (char *)NULL);
            break;
        }
    }
    if (!c) {
        usage(stdout);
        return 0;
    }
    char *argv[] = { (char *)c->name, (char *)"--help", NULL };
    return c->fn(2, argv);
}

int main(int argc, char **argv)
{
    const char *base = strrchr(argv[0], '/');
    const struct telem_cmd *c;
    base = base ? base + 1 : argv[0];

    /* telem-<cmd> */
    if (strncmp(base, "telem-", 6) == 0) {
        c = find(base + 6);
        if (!c)
            unknown(base + 6);
        argv[0] = (char *)c->name;
        return c->fn(argc, argv);
    }
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        cli_exit(0);
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("telem %s\n", PACKAGE_VERSION);
        cli_exit(0);
    }
    if (strcmp(argv[1], "--list-commands") == 0) {
        for (size_t i = 0; i < NCMDS; i++)
            printf("%s\n", cmds[i].name);
        cli_exit(0);
    }
    if (strcmp(argv[1], "help") == 0)
        return help(argc > 2 ? argv[2] : "telem");
    if (argv[1][0] == '-') {
        fprintf(stderr, "telem: unknown option '%s'\nRun 'telem --help' for usage.\n", argv[1]);
        return EXIT_USAGE;
    }
    c = find(argv[1]);
    if (!c)
        unknown(argv[1]);
    return c->fn(argc - 1, argv + 1);
}
