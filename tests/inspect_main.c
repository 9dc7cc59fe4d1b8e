/*
 * inspect_main.c: `simtune inspect` as a standalone program for tests/test_weights_cli.py. It
 * dispatches exactly like train/main.c (argv[1] is the command name, cmd_inspect gets argv + 1),
 * so the script tests the same cmd_inspect() the simtune binary runs, without needing every
 * other command to link.
 */
#include <stdio.h>
#include <string.h>

#include "train/commands.h"

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "inspect") != 0) {
        fprintf(stderr, "usage: %s inspect [options] FILE.h5\n", argv[0]);
        return 2;
    }
    return cmd_inspect(argc - 1, argv + 1);
}
