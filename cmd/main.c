/*
 * main.c: the simtune binary, git-style: `simtune <command> [options]`.
 * The table below is the whole list of commands; each one documents itself with --help.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

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
    {"inspect", cmd_inspect, "describe an HDF5 weight file or checkpoint"},
    {"bench", cmd_bench, "throughput and memory of training and inference on random data"},
    {"doctor", cmd_doctor, "devices and library versions found"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

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
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "simtune: '%s' is not a command; try 'simtune help'\n", name);
    return 2;
}
