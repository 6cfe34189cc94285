/*
 * cmd.h - the subcommands of telem: one entry point each, in src/cmd/<name>.c.
 * Each takes argc/argv with argv[0] the command name and returns the exit status.
 */
#ifndef TELEM_CMD_H
#define TELEM_CMD_H

struct telem_cmd {
    const char *name;                  /* as typed: "remote-write" */
    int (*fn)(int argc, char **argv);  /* cmd_<name with _ for -> */
    const char *summary;               /* one line for `telem --help` */
};

int cmd_cep(int argc, char **argv);
int cmd_enrich(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_ingest(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_remote_write(int argc, char **argv);
int cmd_window(int argc, char **argv);

#endif
