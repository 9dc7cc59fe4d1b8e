/*
 * sweep.c: `simtune sweep`: plan (--dry-run) or run a Hyperband sweep described by a sweep
 * file (train/sweep.h, docs/config.md "Sweeps"). Real runs train each trial with the trainer's
 * st_train_trial (train/trainer.c); the sweep folder makes them resumable (--resume) and lets
 * several processes work on it (--worker; every rank under mpirun or srun).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "kernels/check.h"
#include "kernels/comm.h"
#include "train/sweep.h"

static void usage(FILE *out) {
    fprintf(out, "usage: simtune sweep --config SWEEP.yaml [options]\n"
                 "       simtune sweep --resume SWEEP_DIR [--dry-run]\n"
                 "       simtune sweep --worker SWEEP_DIR\n"
                 "       mpirun -np N simtune sweep --config SWEEP.yaml [--ranks-per-trial G]   (srun alike)\n\n"
                 "Hyperband search over train-config keys (docs/config.md, section Sweeps).\n\n"
                 "options:\n"
                 "  --config FILE      sweep file: base, metric, seed, dir, keep_checkpoints, scheduler,\n"
                 "                     ranks_per_trial, hyperband, parameters\n"
                 "  --set KEY=VALUE    override a key of the sweep file (repeatable), value in YAML; under\n"
                 "                     parameters, KEY.PATH is a dotted train-config key; null removes:\n"
                 "                     --set hyperband.eta=3  --set 'parameters.optimizer.lr.max=0.1'\n"
                 "                     --set 'parameters.optimizer.type={value: sgd}'  --set parameters.model=null\n"
                 "  --seed S           sweep seed (same seed, same trials); default: the file's seed, else 0\n"
                 "  --dry-run          print the plan (brackets, rungs, epochs) and the first trials after\n"
                 "                     checking every trial's config and input files; train nothing\n"
                 "  --json             with --dry-run: print only the plan as one JSON array of brackets,\n"
                 "                     each an array of rungs {\"n\": trials, \"r\": epochs}\n"
                 "  --resume DIR       continue the sweep in DIR (settings come from DIR/sweep.yaml)\n"
                 "  --worker           work on the sweep as one of several processes, on this machine or on\n"
                 "                     others sharing the file system: with --config, start the sweep in\n"
                 "                     its dir or join it there; --worker DIR joins the sweep in DIR\n"
                 "  --ranks-per-trial G  under mpirun/srun: train each trial data parallel on G ranks (for\n"
                 "                     this launch; overrides the file's ranks_per_trial, default 1); the\n"
                 "                     rank count must be a multiple of G, G must divide the global batch\n"
                 "  --help             this text\n\n"
                 "A single process (no --worker) owns the sweep folder: a second one is refused, and so are\n"
                 "workers. Workers share it through a queue in DIR/state.json; a worker that dies leaves its\n"
                 "evaluation to the others, which continue it from the trial's last checkpoint. Under mpirun\n"
                 "or srun with more than one rank (OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_STEP_NUM_TASKS), the N\n"
                 "ranks form N/G groups of G consecutive ranks (G = ranks_per_trial, default 1); each group's\n"
                 "first rank is a worker on the folder (the only process when N = G) and the group trains its\n"
                 "trials together, data parallel as `mpirun -np G simtune train` (docs/scaling.md); rank 0\n"
                 "prints the closing summary.\n");
}

static int bad_usage(const char *msg, const char *arg) {
    fprintf(stderr, "simtune sweep: %s%s%s\ntry 'simtune sweep --help'\n", msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static void print_param(const st_sweep_param *p) {
    static const char *const names[] = {"values", "value", "uniform", "log_uniform", "int_uniform", "q_uniform"};
    char flow[1024];
    printf("  %-24s %-11s ", p->key, names[p->kind]);
    if (p->kind == ST_SWEEP_VALUES || p->kind == ST_SWEEP_VALUE)
        for (int i = 0; i < p->n_values; i++)
            printf("%s%s", i ? " | " : "", st_ynode_flow(p->values[i], flow, sizeof flow));
    else if (p->kind == ST_SWEEP_Q_UNIFORM)
        printf("[%g, %g] step %g", p->min, p->max, p->q);
    else
        printf("[%g, %g]", p->min, p->max);
    putchar('\n');
}

/* What the metric is measured on, as trial 0's config says (trials checked valid before). */
static void print_validation(const st_sweep_config *sc) {
    uint64_t seed;
    st_ynode *params = st_sweep_sample(sc, 0, &seed);
    st_train_config cfg;
    if (st_sweep_trial_config(sc, params, seed, NULL, &cfg) == 0) {
        const st_class_holdout *h = &cfg.data.val_classes;
        if (cfg.data.strategy == ST_STRATEGY_CROSS)
            printf("  validation: open-set, the last dataset's classes (data.strategy: cross)\n");
        else if (h->n_names)
            printf("  validation: open-set, %d named classes held out (data.val_classes)\n", h->n_names);
        else if (h->fraction > 0)
            printf("  validation: open-set, %g of the classes held out (data.val_classes)\n", h->fraction);
        else
            printf("  validation: closed-set, %g of each class's images held out (data.val_fraction)\n",
                   cfg.data.val_fraction);
        st_config_free(&cfg);
    }
    st_ynode_free(params);
}

static void print_plan(const st_sweep_config *sc, const st_hb_plan *plan, const char *dir) {
    const st_hyperband_config *c = &plan->config;
    printf("sweep %s\n  base %s\n  metric %s (%s), seed %llu\n", sc->path, sc->base_path, sc->metric,
           sc->maximize ? "maximize" : "minimize", (unsigned long long)sc->seed);
    print_validation(sc);
    printf("hyperband: max_resource %d epochs, min_resource %d, eta %d, iterations %d, rounding %s -> s_max %d\n",
           c->max_resource, c->min_resource, c->eta, c->iterations,
           c->rounding == ST_HB_ROUNDING_PAPER ? "paper" : "algorithm", plan->s_max);
    if (sc->ranks_per_trial > 1)
        printf("ranks per trial: %d (each trial trains data parallel on %d ranks: mpirun -np a multiple of %d)\n",
               sc->ranks_per_trial, sc->ranks_per_trial, sc->ranks_per_trial);
    printf("scheduler: %s\n\n", sc->scheduler == ST_SWEEP_ASHA
                                     ? "asha (a trial continues as soon as it is in the best 1/eta of its rung so far)"
                                     : "hyperband (a rung's promotions wait until all its trials are evaluated)");
    printf("%-8s %3s %-40s %7s %8s\n", "bracket", "s", "rungs (trials x epochs)", "trials", "epochs");
    for (int b = 0; b < plan->n_brackets; b++) {
        const st_hb_bracket *br = &plan->brackets[b];
        char rungs[512] = "";
        long long epochs = 0;
        for (int i = 0; i < br->n_rungs; i++) {
            size_t used = strlen(rungs);
            snprintf(rungs + used, sizeof rungs - used, "%s%dx%d", i ? " " : "", br->rungs[i].n, br->rungs[i].r);
            epochs += (long long)br->rungs[i].n * (br->rungs[i].r - (i ? br->rungs[i - 1].r : 0));
        }
        printf("%-8d %3d %-40s %7d %8lld\n", b + 1, br->s, rungs, br->rungs[0].n, epochs);
    }
    printf("\ntotal: %d trials, %lld epochs (promoted trials continue from their checkpoint; %lld if every rung "
           "retrained)\n",
           plan->n_trials, st_hb_total_epochs(plan, 1), st_hb_total_epochs(plan, 0));
    printf("\nparameters:\n");
    if (sc->n_params == 0) printf("  (none: every trial is the base config with its own seed)\n");
    for (int i = 0; i < sc->n_params; i++) print_param(&sc->params[i]);
    printf("\nfirst trials:\n");
    for (int t = 0; t < plan->n_trials && t < 5; t++) {
        uint64_t seed;
        char flow[2048];
        st_ynode *params = st_sweep_sample(sc, t, &seed);
        printf("  trial %04d seed %llu %s\n", t, (unsigned long long)seed, st_ynode_flow(params, flow, sizeof flow));
        st_ynode_free(params);
    }
    printf("\nsweep folder: %s (checkpoints of stopped trials: %s)\n", dir,
           sc->keep_checkpoints ? "kept, keep_checkpoints: true" : "removed, keep_checkpoints: false");
}

static int dry_run(const st_sweep_config *sc, const char *dir, int json) {
    st_hb_plan plan;
    if (st_hyperband_plan(&sc->hyperband, &plan)) return -1;
    int rc = st_sweep_check_trials(sc, plan.n_trials, 1); /* input files too: fail before any training */
    if (rc == 0) {
        if (json)
            st_sweep_plan_json(stdout, &plan);
        else
            print_plan(sc, &plan, dir);
    }
    st_hb_plan_free(&plan);
    return rc;
}

/* The world's ranks into groups of ranks_per_trial, or -1 with the numbers. */
static int split_ranks(const st_sweep_config *sc) {
    int g = sc->ranks_per_trial;
    if (st_comm_split(g) == 0) return 0;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", st_error_get());
    return st_error_set("ranks_per_trial %d: %s: each trial trains on %d ranks (HINT: mpirun -np a multiple of %d, or "
                        "--ranks-per-trial dividing the rank count)",
                        g, msg, g, g);
}

/* Run (or resume, or join) the sweep in dir; 0, or 1 with the message printed. Under mpirun or
 * srun (cmd/main.c joined the ranks) each group's rank 0 is a worker on the folder queue; the
 * trainer's collectives stay within the group, which trains one trial: it must not all-reduce
 * with a rank that trains another trial. */
static int run_sweep(const st_sweep_config *sc, const char *dir, int resume, int worker) {
    int rank = st_comm_rank(), size = st_comm_size();
    if (split_ranks(sc) != 0) {
        if (rank == 0) fprintf(stderr, "simtune sweep: %s\n", st_error_get()); /* every rank refuses alike */
        return 1;
    }
    st_sweep_run_options run = {.progress = stdout,
                                .resume = resume,
                                .worker = worker || size > sc->ranks_per_trial,
                                .quiet_summary = rank > 0};
    if (st_sweep_run(sc, dir, &run, st_train_trial, NULL) == 0) return 0;
    fprintf(stderr, "simtune sweep: %s\n", st_error_get());
    return 1;
}

int cmd_sweep(int argc, char **argv) {
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"seed", required_argument, NULL, 'S'},   {"dry-run", no_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},         {"resume", required_argument, NULL, 'r'},
        {"worker", no_argument, NULL, 'w'},       {"ranks-per-trial", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *config = NULL, *resume = NULL;
    const char **sets = ST_CALLOC((size_t)argc + 1, sizeof *sets);
    char seed_set[64];
    int n_sets = 0, dry = 0, json = 0, worker = 0, ranks_per_trial = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case 's': sets[n_sets++] = optarg; break;
        case 'S': {
            uint64_t seed; /* a train config's seed is an int64 */
            if (st_cli_u64_option("sweep", "--seed", optarg, INT64_MAX, &seed)) {
                free(sets);
                return 2;
            }
            snprintf(seed_set, sizeof seed_set, "seed=%llu", (unsigned long long)seed);
            sets[n_sets++] = seed_set;
            break;
        }
        case 'n': dry = 1; break;
        case 'j': json = 1; break;
        case 'r': resume = optarg; break;
        case 'w': worker = 1; break;
        case 'g':
            if (st_cli_int_option("sweep", "--ranks-per-trial", optarg, 1, 1 << 20, &ranks_per_trial)) {
                free(sets);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            free(sets);
            return 0;
        default: free(sets); return bad_usage("bad option", NULL);
        }
    }
    if (worker && !config && !resume && optind == argc - 1) resume = argv[optind++]; /* --worker DIR */
    const char *problem = NULL;
    if (optind < argc)
        problem = "unexpected argument";
    else if (worker && dry)
        problem = "--dry-run trains nothing: drop --worker";
    else if (!config == !resume)
        problem = "give exactly one of --config FILE, --resume DIR or --worker DIR";
    else if (resume && n_sets)
        problem = "--set and --seed cannot change a sweep being resumed (its settings are in DIR/sweep.yaml)";
    else if (json && !dry)
        problem = "--json goes with --dry-run";
    if (problem) {
        free(sets);
        return bad_usage(problem, optind < argc ? argv[optind] : NULL);
    }

    st_sweep_config sc;
    int rc = resume ? st_sweep_load_dir(resume, &sc) : st_sweep_load(config, sets, n_sets, &sc);
    free(sets);
    if (rc != 0) {
        fprintf(stderr, "simtune sweep: %s\n", st_error_get());
        return 1;
    }
    const char *dir = resume ? resume : sc.dir;
    if (ranks_per_trial) sc.ranks_per_trial = ranks_per_trial;
    if (dry) {
        rc = dry_run(&sc, dir, json);
        if (rc != 0) fprintf(stderr, "simtune sweep: %s\n", st_error_get());
    } else {
        rc = run_sweep(&sc, dir, resume != NULL, worker);
    }
    st_sweep_free(&sc);
    return rc == 0 ? 0 : 1;
}
