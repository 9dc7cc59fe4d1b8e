/* TEMPORARY during parallel development: weak fallbacks so the binary links while commands are
 * being written. Removed before commit by the lead. */
#include <stdio.h>
#include "commands.h"
#define PLACEHOLDER(fn) __attribute__((weak)) int fn(int argc, char **argv) { (void)argc; fprintf(stderr, "%s: not built yet\n", argv[0]); return 3; }
PLACEHOLDER(cmd_inspect) PLACEHOLDER(cmd_embed) PLACEHOLDER(cmd_topk) PLACEHOLDER(cmd_eval)
PLACEHOLDER(cmd_search) PLACEHOLDER(cmd_train) PLACEHOLDER(cmd_sweep) PLACEHOLDER(cmd_bench)
PLACEHOLDER(cmd_demo) PLACEHOLDER(cmd_doctor)
