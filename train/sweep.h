/*
 * sweep.h: Hyperband sweeps over train-config keys: the sweep file, trial sampling, and the
 * crash-safe runner (docs/config.md "Sweeps" documents the file and the folder it writes).
 *
 * Sweep file keys: base (train config, relative to the sweep file), metric {name, goal}, seed,
 * dir (output folder, default checkpoints/<sweep file stem>), keep_checkpoints (default false),
 * scheduler (hyperband | asha, default hyperband), ranks_per_trial (default 1),
 * hyperband {max_resource, min_resource, eta, iterations, rounding}, parameters {KEY.PATH:
 * {values: [...]} | {value: x} | {distribution: uniform|log_uniform|int_uniform|q_uniform, min, max, q}}.
 * The file, each parameter's spec included, is read and written back by key tables over the
 * engine train configs use (train/keytable.h), so its keys are checked and reported alike.
 *
 * Trials are numbered bracket by bracket (hyperband.h); trial t's parameters and its training
 * seed come only from (sweep seed, t), so the same seed gives the same trials in any run order.
 *
 * The runner drives a trial function (the trainer) and owns the sweep folder:
 *   sweep.yaml base.yaml plan.json state.json trials.csv trials.jsonl best.yaml curves.png
 *   (the JSON files written with libjansson, data/base/json.h; a NaN metric is null)
 *   trials/NNNN/{config.yaml, metrics.jsonl, checkpoints/ (the trainer's), worker.lock}
 *   queue.lock workers/HOST.PID.lock (below)
 * state.json (every finished evaluation, the evaluations being trained and the re-queues) is
 * rewritten atomically after each change, so after a kill at any moment `--resume` re-runs only
 * the evaluations that were in flight; promoted trials continue from their checkpoint (the trial
 * function resumes to the new epoch target). Once a rung is complete, the trials it stopped
 * lose their checkpoints (the *.h5 files of their run folder trials/NNNN/checkpoints/) unless
 * keep_checkpoints; metrics and configs stay.
 *
 * Workers: every process on a sweep folder, alone or one of several (on one or several machines
 * sharing the file system), runs the same loop over a queue kept in state.json: under the queue
 * lock DIR/queue.lock (held for a read-modify-write of state.json only) it takes the next
 * evaluation, records its claim and flocks trials/NNNN/worker.lock; it trains without the queue
 * lock and records the result under it. A claim whose trial lock nobody holds was left by a
 * worker that died: the next worker takes it over (a re-queue, logged in state.json and the
 * progress) and the trainer continues the trial from its last checkpoint. Scheduler hyperband
 * promotes after a rung is complete, so any number of workers takes the same decisions as one
 * process; asha (Li et al., MLSys 2020) promotes a trial as soon as it is in the best 1/eta of
 * its rung so far. A single process (opt.worker = 0) also holds DIR/.lock (train/lock.h) for the
 * whole run and refuses a folder with live workers; a worker holds DIR/workers/HOST.PID.lock and
 * refuses a folder held by a single process.
 *
 * Rank groups (kernels/comm.h, st_comm_split into groups of ranks_per_trial ranks): each group
 * trains one evaluation at a time, data parallel. Its rank 0, the leader, is the process above
 * (queue, locks, state.json); before each evaluation it broadcasts the trial function's
 * arguments (the train config as YAML text, trial_dir, epochs_target) and its members call the
 * same function with them; when its queue is done (or failed) it broadcasts stop with its result.
 * A member touches no file of the sweep folder. A failed evaluation cannot leave the group
 * waiting: the trainer agrees on setup errors across the ranks, so leader and members fail
 * together, and the leader then stops its members; an error that only the leader sees after
 * training (writing the sweep files) reaches them as the stop.
 *
 * Ownership: st_sweep_config owns everything it points to (st_sweep_free).
 * Callers: cmd/sweep.c, tests/test_sweep.c.
 */
#ifndef ST_SWEEP_H
#define ST_SWEEP_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "hyperband.h"
#include "yaml_tree.h"

/* Train one trial to epochs_target epochs in total, resuming from trial_dir's checkpoint when
 * present (a promoted trial continues, it is not retrained), and return in *metric the value of
 * cfg->early_stopping.metric at that epoch (the runner sets it to the sweep metric; NaN when the
 * run diverged: ranked worst). cfg->epochs is the schedule horizon (hyperband.max_resource);
 * output.dir is trial_dir/checkpoints. Returns 0, or -1 with st_error_set() on a failure that
 * should stop the sweep (state is kept; fix the cause and --resume). */
typedef int (*st_trial_fn)(const st_train_config *cfg, const char *trial_dir, int epochs_target, double *metric,
                           void *user);

/* The trainer's trial function: defined in train/trainer.c (user unused). */
int st_train_trial(const st_train_config *cfg, const char *trial_dir, int epochs_target, double *metric, void *user);

typedef enum {
    ST_SWEEP_VALUES,      /* categorical: any YAML values, mappings merge into sections */
    ST_SWEEP_VALUE,       /* constant */
    ST_SWEEP_UNIFORM,     /* min + U (max - min) */
    ST_SWEEP_LOG_UNIFORM, /* exp(ln min + U (ln max - ln min)); min, max are values > 0 */
    ST_SWEEP_INT_UNIFORM, /* integers min..max, both inclusive */
    ST_SWEEP_Q_UNIFORM    /* round(uniform / q) q, kept within [min, max] */
} st_sweep_param_kind;

typedef enum {
    ST_SWEEP_HYPERBAND, /* synchronous: a rung promotes when all its trials are evaluated */
    ST_SWEEP_ASHA       /* asynchronous: promote as soon as a trial is in its rung's best 1/eta so far */
} st_sweep_scheduler;

typedef struct st_sweep_param {
    char *key; /* train-config key path, e.g. "optimizer.lr" or "model" */
    st_sweep_param_kind kind;
    st_ynode **values; /* VALUES: n_values candidates; VALUE: one */
    int n_values;
    double min, max, q;
} st_sweep_param;

typedef struct st_sweep_config {
    char *path;      /* the sweep file read */
    char *base_path; /* the base train config, as resolved */
    st_ynode *base;  /* its tree (overrides are applied to copies) */
    char *metric;    /* default val/map@10 */
    int maximize;    /* goal, default maximize */
    uint64_t seed;
    char *dir; /* sweep folder */
    int keep_checkpoints; /* 1: stopped trials keep their checkpoints (default 0: removed) */
    st_sweep_scheduler scheduler;
    int ranks_per_trial; /* ranks per rank group (data-parallel trials), default 1 */
    st_hyperband_config hyperband;
    st_sweep_param *params;
    int n_params;
} st_sweep_config;

/* Load a sweep file with "key.path=value" overrides of the sweep file's own keys
 * (hyperband.eta=3, seed=7). Under parameters, KEY.PATH is a dotted train-config key, matched
 * whole: parameters.optimizer.lr.max=0.1 sets field max of parameter optimizer.lr;
 * parameters.optimizer.type={value: sgd} replaces (or adds) a parameter; null removes the
 * parameter (parameters.model=null) or the field. Validates the base config and every
 * parameter (each categorical value and both ends of each range are applied to the base and
 * checked like a train config). -1 with st_error_get() = "FILE:LINE:COL: key: problem". */
int st_sweep_load(const char *path, const char *const *sets, int n_sets, st_sweep_config *sc);
void st_sweep_free(st_sweep_config *sc);

/* Trial t's sampled parameters as a mapping {key: value} (caller frees) and its seed. */
st_ynode *st_sweep_sample(const st_sweep_config *sc, int trial_id, uint64_t *trial_seed);

/* The effective train config of a trial: base + parameters + seed, epochs = max_resource,
 * early_stopping metric/goal = the sweep's, output under trial_dir (NULL: the base's output). */
int st_sweep_trial_config(const st_sweep_config *sc, const st_ynode *params, uint64_t trial_seed, const char *trial_dir,
                          st_train_config *cfg);

/* Build and validate the train config of trials 0..n_trials-1 (catches parameter combinations
 * that are invalid together, e.g. loss triplet with sampler shuffle, and a global batch that
 * ranks_per_trial does not divide); check_files: also that their weights and datasets exist
 * (st_config_check_files). -1 naming the trial. */
int st_sweep_check_trials(const st_sweep_config *sc, int n_trials, int check_files);

/* Write the effective sweep file (with `base: base.yaml`) and the base config into dir. */
int st_sweep_write(const st_sweep_config *sc, const char *dir);

/* Plan JSON as printed by --dry-run --json: one array of brackets, each an array of rungs
 * {"n": trials, "r": epochs}. */
void st_sweep_plan_json(FILE *out, const st_hb_plan *plan);

typedef struct st_sweep_run_options {
    FILE *progress; /* progress lines and the closing summary; NULL: silent */
    int resume;     /* 1: dir holds a sweep started earlier; 0: dir must not hold one (a worker:
                       may hold the same sweep, which it joins) */
    int worker;     /* 1: one worker among several (dir not owned); 0: the only process */
    int quiet_summary; /* 1: no closing summary (MPI ranks other than 0) */
} st_sweep_run_options;

/* Run (or resume, or as a worker join) the sweep in dir until every bracket is finished; in a
 * rank group (st_comm_size() > 1, every rank of the group calls it), rank 0 does so and the
 * others train what it sends them, returning its result. Returns 0 then, -1 with st_error_get() when dir is held by another single process ("DIR is in
 * use by pid N on host H since T"), by workers while opt->worker = 0, or by a single process
 * while opt->worker = 1, when a worker's sweep file differs from the one dir holds, a trial
 * failed or a file could not be written (state stays consistent). */
int st_sweep_run(const st_sweep_config *sc, const char *dir, const st_sweep_run_options *opt, st_trial_fn fn,
                 void *user);

/* Open a sweep folder for --resume: loads dir/sweep.yaml (which names dir/base.yaml). */
int st_sweep_load_dir(const char *dir, st_sweep_config *sc);

#endif
