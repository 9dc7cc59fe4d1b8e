/*
 * main.c: the simtune binary, git-style: `simtune <command> [options]`.
 * The table below is the whole list of commands; each one documents itself with --help.
 * Launched by mpirun or srun as several processes, the ranks join before the command runs
 * (kernels/comm.h); only the commands that share work across ranks accept that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "kernels/check.h"
#include "kernels/comm.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"demo", cmd_demo, "the whole pipeline on generated images, from nothing to a report"},
    {"train", cmd_train, "fine-tune a ResNet from a YAML config (cross-entropy or triplet loss)"},
    {"sweep", cmd_sweep, "Hyperband search over train-config keys"},
    {"embed", cmd_embed, "export embeddings of a folder or TSV of images to HDF5"},
    {"topk", cmd_topk, "exact top-k search of queries against a gallery"},
    {"eval", cmd_eval, "retrieval metrics (hit@k, mAP@k, MAP@R ...) under a protocol"},
    {"search", cmd_search, "rank an index for one query image"},
    {"serve", cmd_serve, "HTTP search service: upload page, JSON API, batching, metrics"},
    {"inspect", cmd_inspect, "describe an HDF5 weight file or checkpoint"},
    {"bench", cmd_bench, "throughput and memory of training and inference on random data"},
    {"doctor", cmd_doctor, "devices and library versions found"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

/* The commands that split their work across the ranks of `mpirun -np N` (docs/scaling.md). */
static int runs_on_ranks(const char *name) {
    static const char *const names[] = {"train", "sweep", "embed", "topk"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    return 0;
}

/* Join the ranks when launched as several processes: 0, or the exit code after the message.
 * One GPU per rank: unless CUDA_VISIBLE_DEVICES says otherwise, a rank sees only the GPU of
 * its index on the node (the CUDA backend opens device 0). */
static int join_ranks(const char *name, int *argc, char ***argv) {
    if (st_comm_init(argc, argv)) {
        fprintf(stderr, "simtune %s: %s\n", name, st_error_get());
        return 1;
    }
    if (st_comm_size() == 1) return 0;
    if (!runs_on_ranks(name)) {
        if (st_comm_rank() == 0)
            fprintf(stderr, "simtune %s: runs as one process, but was launched as %d (HINT: train, sweep, embed and "
                            "topk share work across mpirun/srun ranks; run %s without mpirun)\n",
                    name, st_comm_size(), name);
        return 2;
    }
    char device[16];
    snprintf(device, sizeof device, "%d", st_comm_local_rank());
    setenv("CUDA_VISIBLE_DEVICES", device, 0);
    return 0;
}

static void print_help(FILE *out) {
    fprintf(out,
            "simtune %s: fine-tune ImageNet ResNets for content-based image retrieval\n\n"
            "usage: simtune <command> [options]\n"
            "       simtune <command> --help     every option of a command\n\n"
            "commands:\n",
            SIMTUNE_VERSION);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nStart with `simtune demo`; docs/ explains the files it writes.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        if (argc > 2) {
            char help_flag[] = "--help";
            char *sub_argv[] = {argv[2], help_flag, NULL};
            for (int i = 0; i < N_COMMANDS; i++)
                if (!strcmp(argv[2], commands[i].name)) return commands[i].run(2, sub_argv);
            fprintf(stderr, "simtune: no command '%s'\n", argv[2]);
            return 2;
        }
        print_help(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("simtune %s\n", SIMTUNE_VERSION);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(name, commands[i].name) != 0) continue;
        int rc = join_ranks(name, &argc, &argv);
        if (rc == 0) rc = commands[i].run(argc - 1, argv + 1);
        /* MPI_Finalize waits for every rank: after success or an interrupt the ranks agreed on
         * (130), no rank exits (which makes the launcher kill the others) while rank 0 still
         * writes. After an error, none: a rank that failed alone would wait in it forever;
         * exiting non-zero makes the launcher end the job. */
        if (rc == 0 || rc == 130) st_comm_finalize();
        return rc;
    }
    fprintf(stderr, "simtune: '%s' is not a command; try 'simtune help'\n", name);
    return 2;
}
