/*
 * retrieval_cli.c: a test driver that runs `topk`, `eval`, `embed` and `search` exactly as the
 * simtune binary does (same cmd_* functions, argv[0] = the command name), linked against
 * st_infer only, so the retrieval script tests do not depend on the training layer.
 *
 *   retrieval_cli eval --embeddings E.h5 --out DIR ...
 *   retrieval_cli topk --gallery G.h5 --queries Q.h5 --out R.h5 ...
 *   retrieval_cli embed ... | search ...
 */
#include <stdio.h>
#include <string.h>

#include "train/commands.h"

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "eval")) return cmd_eval(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "topk")) return cmd_topk(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "embed")) return cmd_embed(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "search")) return cmd_search(argc - 1, argv + 1);
    fprintf(stderr, "usage: retrieval_cli eval|topk|embed|search [options]\n");
    return 2;
}
