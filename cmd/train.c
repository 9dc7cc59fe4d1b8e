/*
 * train.c: `simtune train`: read a YAML config (train/config.h), apply --set overrides,
 * and run it (train/trainer.h) in a run folder under output.dir (checkpoints/ by default),
 * named --name, else output.name, else <config file stem>-<date>-<time> (never reused); or
 * only check it (--check, st_train_check), or continue a run folder (--resume [--epochs N]).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/base/fileio.h"

#include "cli.h"
#include "commands.h"
#include "kernels/check.h"
#include "kernels/comm.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/trainer.h"

enum { MAX_SETS = 256 };

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune train --config FILE.yaml [--set key=value]... [--name NAME] [--device cpu|cuda]\n"
            "                     [--threads N] [--strict] [--check]\n"
            "       simtune train --resume RUN_DIR [--epochs N]\n\n"
            "Fine-tune a ResNet as the config says (docs/config.md documents every key).\n\n"
            "  --config FILE      train config (YAML); unknown keys are errors\n"
            "  --set KEY=VALUE    override any key, e.g. --set optimizer.lr=0.01 (repeatable)\n"
            "  --name NAME        run folder name under output.dir (default: output.name, else\n"
            "                     <config file name>-<YYYYmmdd>-<HHMMSS>, -2, -3 ... added if taken)\n"
            "  --device D         cpu or cuda (overrides the config's device)\n"
            "  --threads N        CPU threads (default: the config's, 0 = all cores)\n"
            "  --precision P      fp32 or bf16 (overrides model.precision)\n"
            "  --resume RUN_DIR   continue a run from its newest checkpoint (uses RUN_DIR/config.yaml)\n"
            "  --epochs N         with --resume: train until N epochs in total; past the run's own\n"
            "                     length its last phase grows, as if N had been set from the start\n"
            "                     (refused with the reason where that cannot be exact: cosine)\n"
            "  --strict           a bad image stops the run (default: skipped with a warning)\n"
            "  --check            run every check that needs no training (config, input files,\n"
            "                     datasets scanned, the split, freeze_until layers, the pk sampler,\n"
            "                     the device, the run folder writable and unlocked), print a\n"
            "                     summary, write nothing\n"
            "  --help             this text\n\n"
            "The run folder holds config.yaml, metrics.jsonl, checkpoints (ckpt-*.h5, best.h5),\n"
            "best_weights.h5 (Keras layout) and curves.png. Ctrl-C saves a checkpoint and exits.\n"
            "Under mpirun -np N (or srun) the ranks train data-parallel on slices of each global\n"
            "batch, which N must divide; rank 0 writes the run folder (docs/scaling.md).\n");
}

/* <config file stem>-<YYYYmmdd>-<HHMMSS> (local time) */
static void default_run_name(const char *config_path, char *out, size_t size) {
    const char *base = strrchr(config_path, '/');
    base = base ? base + 1 : config_path;
    char stem[256];
    snprintf(stem, sizeof stem, "%.200s", base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = 0;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(out, size, "%.200s-%.31s", stem, stamp);
}

/* Creates output_dir/<default name> for a new run; when another run took that name (two runs
 * started in the same second), -2, -3 ... is appended. mkdir is atomic, so two processes never
 * get the same folder. 0, or -1 with st_error_set. */
static int claim_default_run_dir(const char *config_path, const char *output_dir, char *run_dir, size_t size) {
    char name[320];
    default_run_name(config_path, name, sizeof name);
    if (st_mkdirs(output_dir)) return -1;
    for (int n = 1; n < 1000; n++) {
        if (n == 1) snprintf(run_dir, size, "%s/%s", output_dir, name);
        else snprintf(run_dir, size, "%s/%s-%d", output_dir, name, n);
        if (mkdir(run_dir, 0777) == 0) return 0;
        if (errno != EEXIST) return st_error_set("%s: cannot create the run folder: %s", run_dir, strerror(errno));
    }
    return st_error_set("%s/%s: 999 run folders of that name exist", output_dir, name);
}

/* 1 when run_dir already has a metrics log or a checkpoint of an earlier run. */
static int holds_a_run(const char *run_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    if (access(path, F_OK) == 0) return 1;
    return st_checkpoint_latest(run_dir, path, sizeof path) > 0;
}

/* The command line, as parsed. */
typedef struct train_args {
    const char *config_path, *name, *resume_dir;
    const char *sets[MAX_SETS + 3];
    int n_sets, epochs, strict, check;
    char device_set[64], threads_set[64]; /* --device/--threads as sets, applied after every --set */
    char precision_set[64];               /* --precision as a set, likewise */
    char resume_config[4200];
} train_args;

/* Parse argv into a. -1 to go on, else the exit code (0 for --help, 2 for a usage error). */
static int parse_args(int argc, char **argv, train_args *a) {
    static const struct option options[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},   {"name", required_argument, 0, 'n'},
        {"device", required_argument, 0, 'd'}, {"threads", required_argument, 0, 't'}, {"resume", required_argument, 0, 'r'},
        {"epochs", required_argument, 0, 'e'}, {"strict", no_argument, 0, 'S'},       {"help", no_argument, 0, 'h'},
        {"check", no_argument, 0, 'C'},        {"precision", required_argument, 0, 'p'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'c': a->config_path = optarg; break;
        case 's':
            if (a->n_sets >= MAX_SETS) {
                fprintf(stderr, "simtune train: more than %d --set options\n", MAX_SETS);
                return 2;
            }
            a->sets[a->n_sets++] = optarg;
            break;
        case 'n': a->name = optarg; break;
        case 'd': snprintf(a->device_set, sizeof a->device_set, "device=%s", optarg); break;
        case 't': snprintf(a->threads_set, sizeof a->threads_set, "threads=%s", optarg); break;
        case 'p': snprintf(a->precision_set, sizeof a->precision_set, "model.precision=%s", optarg); break;
        case 'r': a->resume_dir = optarg; break;
        case 'e':
            if (st_cli_int_option("train", "--epochs", optarg, 1, 1000000, &a->epochs)) return 2;
            break;
        case 'S': a->strict = 1; break;
        case 'C': a->check = 1; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "try 'simtune train --help'\n"); return 2;
        }
    }
    /* a repeated --device/--threads overwrites its one slot (sets has room for both) */
    if (a->device_set[0]) a->sets[a->n_sets++] = a->device_set;
    if (a->threads_set[0]) a->sets[a->n_sets++] = a->threads_set;
    if (a->precision_set[0]) a->sets[a->n_sets++] = a->precision_set;
    if (optind < argc || (!a->config_path && !a->resume_dir) || (a->config_path && a->resume_dir)) {
        fprintf(stderr, "simtune train: give --config FILE or --resume RUN_DIR (one of them)\n"
                        "try 'simtune train --help'\n");
        return 2;
    }
    if (a->resume_dir) {
        snprintf(a->resume_config, sizeof a->resume_config, "%s/config.yaml", a->resume_dir);
        a->config_path = a->resume_config;
    }
    return -1;
}

/* The run folder: the resumed one, output.dir/(--name | output.name) when it holds no run yet,
 * or a new default-named folder (only named, not created, for --check). 0 or -1. */
static int choose_run_dir(const train_args *a, const st_train_config *cfg, char *run_dir, size_t size) {
    if (a->resume_dir) {
        snprintf(run_dir, size, "%s", a->resume_dir);
    } else if (a->name || cfg->output.name) {
        snprintf(run_dir, size, "%s/%s", cfg->output.dir, a->name ? a->name : cfg->output.name);
        if (holds_a_run(run_dir))
            return st_error_set("%s: a run folder with metrics or checkpoints already exists; a new run would mix "
                                "with it (HINT: `simtune train --resume %s` continues it, --name NAME starts another)",
                                run_dir, run_dir);
    } else if (a->check) {
        char run_name[320];
        default_run_name(a->config_path, run_name, sizeof run_name);
        snprintf(run_dir, size, "%s/%s", cfg->output.dir, run_name);
    } else {
        return claim_default_run_dir(a->config_path, cfg->output.dir, run_dir, size);
    }
    return 0;
}

/* With several ranks the run folder is rank 0's choice (a default name is claimed by one mkdir),
 * sent to the others. */
static int choose_run_dir_on_ranks(const train_args *a, const st_train_config *cfg, char *run_dir, size_t size) {
    int rc = st_comm_rank() == 0 ? choose_run_dir(a, cfg, run_dir, size) : 0;
    st_comm_broadcast(&rc, sizeof rc, 0);
    if (rc == 0) {
        st_comm_broadcast(run_dir, size, 0);
        return 0;
    }
    return st_comm_rank() == 0 ? rc : st_error_set("rank 0 could not choose the run folder (its message says why)");
}

/* st_error_get() as `simtune train: ...`. With several ranks, what the ranks agreed on
 * ("rank R: ...", every rank has it) is printed by rank 0, a rank's own error by that rank. */
static void print_error(void) {
    const char *msg = st_error_get();
    if (st_comm_size() == 1) fprintf(stderr, "simtune train: %s\n", msg);
    else if (strncmp(msg, "rank ", 5) != 0) fprintf(stderr, "simtune train: rank %d: %s\n", st_comm_rank(), msg);
    else if (st_comm_rank() == 0) fprintf(stderr, "simtune train: %s\n", msg);
}

static int check_config(const char *config_path, const st_train_config *cfg, const st_train_options *opt) {
    if (st_train_check(cfg, opt)) {
        fprintf(stderr, "simtune train: %s: %s\n", config_path, st_error_get());
        return 1;
    }
    printf("%s: valid: %s at %d px, %d dataset(s), %d phase(s), %d epochs, loss %s; run folder %s\n", config_path,
           cfg->model.arch, cfg->model.image_size, cfg->data.n_train, cfg->n_phases > 0 ? cfg->n_phases : 1,
           cfg->epochs, cfg->loss.kind == ST_LOSS_XENT ? "cross_entropy" : "triplet", opt->run_dir);
    return 0;
}

static int train_config(const st_train_config *cfg, const st_train_options *opt) {
    st_train_result res;
    if (st_train_run(cfg, opt, &res)) {
        print_error();
        return 1;
    }
    if (st_comm_rank() != 0) return res.interrupted ? 130 : 0; /* rank 0 reports */
    if (res.interrupted) {
        printf("stopped: resume with `simtune train --resume %s`\n", opt->run_dir);
        return 130;
    }
    printf("done: %d epochs, %ld steps; best %.4f at epoch %d; validation %s on %d images of %d classes\n"
           "open %s/metrics.jsonl and %s/curves.png; fine-tuned weights: %s/best_weights.h5\n",
           res.epochs_done, res.steps_done, res.best_metric, res.best_epoch,
           res.open_set ? "open-set (classes never trained on)" : "closed-set", res.n_val_images, res.n_val_classes,
           opt->run_dir, opt->run_dir, opt->run_dir);
    return 0;
}

int cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    st_train_config cfg;
    if (st_config_load(a.config_path, a.sets, a.n_sets, &cfg) || st_config_check_files(&cfg)) {
        fprintf(stderr, "simtune train: %s\n", st_error_get());
        return 1;
    }
    char run_dir[4096];
    if (choose_run_dir_on_ranks(&a, &cfg, run_dir, sizeof run_dir)) {
        print_error();
        st_config_free(&cfg);
        return 1;
    }
    st_train_options opt = {0};
    opt.run_dir = run_dir;
    opt.resume = a.resume_dir != NULL;
    opt.epochs_target = a.epochs;
    opt.progress = stdout;
    opt.strict_data = a.strict;
    rc = a.check ? check_config(a.config_path, &cfg, &opt) : train_config(&cfg, &opt);
    st_config_free(&cfg);
    return rc;
}
