/*
 * cli.h - the command layer's shared helpers: option tables, usage, errors, exit codes.
 *
 * Each command describes its options once, as tables of struct cli_opt; from them come
 * the getopt_long array, the -h text and `--list-options` (read by the completions).
 * Options every stage shares (input, output, time, state, errors, reporting) are
 * tables here, parsed into struct cli_common. This is the only place that exits.
 *
 * Exit status: 0 success, 1 runtime or data error, 2 usage error (telem(1)).
 */
#ifndef TELEM_CLI_H
#define TELEM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "time.h"

#define EXIT_DATA 1
#define EXIT_USAGE 2

struct cli_opt {
    const char *name;   /* long name without dashes; NULL ends a table */
    int key;            /* short letter, or a value >= 256 for long-only options */
    const char *arg;    /* placeholder such as "<file>", or NULL for a flag */
    const char *help;   /* one line */
};

/* A titled group of options for -h. */
struct cli_group {
    const char *title;
    const struct cli_opt *opts;
};

struct cli_cmd {
    const char *name;             /* "ingest" */
    const char *summary;          /* one line, shown by `telem --help` */
    const char *const *usage;     /* NULL-terminated synopsis lines, as in the man page */
    const struct cli_group *groups; /* ends with a group whose opts is NULL */
};

/* Options shared by the stages. */
struct cli_common {
    const char **inputs;          /* -i, in order; NULL-terminated; may be empty */
    size_t ninputs;
    const char *output;           /* -o, NULL = stdout */
    const char *time_field;       /* --time-field, default "timestamp" */
    int time_field_set;           /* --time-field was given */
    enum tlm_time_unit time_unit; /* --time-unit, default auto */
    int64_t max_out_of_order;     /* --max-out-of-order, ns */
    int64_t idle_timeout;         /* --idle-timeout, ns, 0 = never */
    int64_t watermark_interval;   /* --watermark-interval, ns */
    int no_watermarks;            /* --no-watermarks */
    const char *state;            /* --state */
    int64_t checkpoint_interval;  /* --checkpoint-interval, ns, 0 = on exit only */
    int drain;                    /* --drain: end time at the end of input, then snapshot */
    const char *reject;           /* --reject */
    int strict;                   /* --strict */
    int stats;                    /* --stats */
    int progress;                 /* --progress */
};

/* Keys of the common options (>= 256, below CLI_KEY_CMD). */
enum {
    CLI_KEY_TIME_FIELD = 256, CLI_KEY_TIME_UNIT, CLI_KEY_MAX_OOO, CLI_KEY_IDLE,
    CLI_KEY_WM_INTERVAL, CLI_KEY_NO_WM, CLI_KEY_STATE, CLI_KEY_CHECKPOINT, CLI_KEY_REJECT,
    CLI_KEY_STRICT, CLI_KEY_DRAIN, CLI_KEY_STATS, CLI_KEY_PROGRESS, CLI_KEY_VERSION, CLI_KEY_LIST_OPTIONS,
    CLI_KEY_CMD = 512 /* commands number their own long-only options from here */
};

extern const struct cli_opt cli_opts_io[];     /* -i -o */
extern const struct cli_opt cli_opts_time[];   /* --time-field --time-unit ... */
extern const struct cli_opt cli_opts_state[];  /* --state --checkpoint-interval */
extern const struct cli_opt cli_opts_errors[]; /* --reject --strict */
extern const struct cli_opt cli_opts_report[]; /* --stats --progress */
extern const struct cli_opt cli_opts_help[];   /* -h --version */

/* The groups every stage ends its --help with, after its own:
 * static const struct cli_group groups[] = { { "Windows", window_opts }, CLI_STAGE_GROUPS }; */
#define CLI_STAGE_GROUPS                                                                   \
    { "Input and output", cli_opts_io }, { "Event time", cli_opts_time },                \
        { "State", cli_opts_state }, { "Bad input", cli_opts_errors },                    \
        { "Reporting", cli_opts_report }, { "Help", cli_opts_help }, { NULL, NULL }

/* Called for each option that is not a common one. Return 0, or print with
 * cli_usage_error and never return. */
typedef void (*cli_handler)(int key, const char *arg, void *ctx);

/* Parses argv for cmd: common options go into *common (defaults filled first), the others
 * to handle(). -h prints the help and exits 0; --version and --list-options likewise; an
 * unknown option prints a suggestion and exits 2. Returns the index of the first operand. */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_common *common,
              cli_handler handle, void *ctx);

/* Appends operands (file names after the options) to common->inputs, after any -i. */
void cli_add_inputs(struct cli_common *common, int n, char **names);

/* Prints cmd's help (usage and options) to stdout. */
void cli_print_help(const struct cli_cmd *cmd);

/* The name messages start with: "telem ingest". */
const char *cli_progname(void);
void cli_set_progname(const char *cmd);

/* "telem ingest: <message>" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the message, "Try 'telem <cmd> --help'." and exits 2. */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Prints "telem ingest: source:line:col: text" and exits 1 (quietly 0 for TLM_EPIPE). */
void cli_die(const struct tlm_error *err) __attribute__((noreturn));
/* Prints an error without exiting. */
void cli_report(const struct tlm_error *err);
/* Exits with status after the stdio streams are checked. */
void cli_exit(int status) __attribute__((noreturn));

/* Option value helpers: on a bad value they print a usage error naming the option. */
int64_t cli_duration(const char *opt, const char *arg);
long long cli_count(const char *opt, const char *arg, long long min, long long max);
double cli_number(const char *opt, const char *arg);

/* Of the n names, the one closest to word (edit distance <= 2 or a prefix), or NULL. */
const char *cli_suggest(const char *word, const char *const *names, size_t n);

#endif
