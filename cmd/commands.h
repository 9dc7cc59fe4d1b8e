/*
 * commands.h: the subcommands of the simtune binary. Each lives in cmd/<name>.c, the layer on top
 * of kernels <- data <- infer <- train (tools/check-deps.sh keeps it so), is listed in the table of
 * cmd/main.c and is called with argv[0] = the command name.
 *
 * Conventions for every command: getopt_long options; `--help` prints the usage (every option,
 * its default) to stdout and returns 0; a bad option or argument prints a one-line error and
 * "try 'simtune CMD --help'" to stderr and returns 2; a failure while working (bad file, bad
 * data) prints "simtune CMD: <file>: <what>: <problem>" and returns 1.
 */
#ifndef ST_COMMANDS_H
#define ST_COMMANDS_H

int cmd_inspect(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_topk(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_doctor(int argc, char **argv);

#endif
