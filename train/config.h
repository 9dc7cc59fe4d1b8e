/*
 * config.h: the train configuration, a typed struct read from YAML (docs/config.md documents
 * every key, its default and its range).
 *
 * Flow: YAML file -> st_ynode tree -> `--set key.path=value` overrides merged into the tree ->
 * st_config_from_tree() validates every key (unknown keys, types, ranges, cross-key rules) and
 * fills the struct. Errors are returned as -1 with st_error_get() =
 *   "FILE:LINE:COLUMN: key.path: problem (HINT: ...)"
 * where FILE:LINE:COLUMN is where the offending value was written (a file, or the --set text).
 *
 * Paths: model.weights, data.train[].path and data.split_file are input paths resolved against
 * the directory of the file they were written in (the current directory for --set) and stored
 * absolute, so a written effective config reads back to the same struct from any directory.
 * output.dir is an output location, relative to the current directory, kept as written.
 *
 * Phases: each phase is stored fully resolved (top-level optimizer/schedule/early_stopping/
 * freeze_until with the phase's own keys applied on top).
 *
 * Sections are the modules' own structs (st_loss_config, st_optim_config, st_lr_schedule,
 * st_sampler_config), filled by the key tables (train/keytable.h), so a setting passes from the
 * file to the module in one struct.
 *
 * Ownership: the struct owns its strings and arrays; st_config_free() releases them.
 * Callers: cmd_train / train/trainer.c (training), train/sweep.c (trial configs), tests.
 */
#ifndef ST_CONFIG_H
#define ST_CONFIG_H

#include <stdint.h>

#include "../data/sampler.h"
#include "../infer/model/model.h"
#include "loss.h"
#include "optim.h"
#include "yaml_tree.h"

enum { ST_CONFIG_PREPROCESS_AUTO = -1 };

typedef enum { ST_STRATEGY_SINGLE, ST_STRATEGY_CROSS, ST_STRATEGY_SEQUENTIAL } st_data_strategy;
typedef enum { ST_DEVICE_AUTO, ST_DEVICE_CPU, ST_DEVICE_CUDA } st_device_kind; /* auto: cuda when built and present */

typedef struct st_model_section {
    char *arch;     /* an infer/model/arch.c name */
    char *weights;  /* absolute path of an HDF5 weight file; NULL = random init */
    int image_size; /* square input side, >= 32 */
    st_gpool_kind pool;
    double gem_p;       /* GeM exponent, used when pool == ST_GPOOL_GEM */
    int embed_dim;      /* 0: no embedding projection */
    int num_classes;    /* 0: auto (number of training classes) for cross-entropy; 0 for triplet */
    double bn_momentum; /* PyTorch convention: running = (1-m) running + m batch */
    st_precision precision; /* convolutions in fp32 or bf16 (model.h) */
} st_model_section;

typedef struct st_dataset_spec {
    char *path; /* absolute: an image folder (one subfolder per class) or a TSV */
    char *name; /* unique; phases name datasets by it */
} st_dataset_spec;

/* data.val_classes: whole classes held out for validation (open-set), by share or by name. */
typedef struct st_class_holdout {
    double fraction; /* share of the classes, (0, 1); 0 when names are given or nothing is held out */
    char **names;    /* class names as the trainer's dataset names them ("name/class" when combined) */
    int n_names;
} st_class_holdout;

typedef struct st_data_section {
    st_dataset_spec *train;
    int n_train;
    st_data_strategy strategy;
    double val_fraction; /* share of each class held out for validation, [0, 1) */
    uint64_t split_seed;
    st_class_holdout val_classes; /* open-set validation; replaces val_fraction when set */
    char *split_file; /* absolute; NULL: the split is computed from split_seed each run. A missing
                       * file is written with the computed split on first use */
    /* data/sampler.h's config: mode (data.sampler: shuffle, pk or balanced), batch_size
     * (data.batch_size; 0: auto, st_config_batch_size), p and k (data.pk). The trainer sets
     * batch_size, drop_last and seed when it opens a loader. */
    st_sampler_config sampler;
    int random_resized_crop;
    double crop_scale[2]; /* min, max area fraction, 0 < min <= max <= 1 */
    int flip;
    double color_jitter; /* brightness/contrast/saturation strength, [0, 1] */
    int preprocess;      /* ST_CONFIG_PREPROCESS_AUTO (the arch's own) or an st_preprocess */
    int workers;         /* decoding threads; 0 = auto */
} st_data_section;

typedef struct st_early_stopping_config {
    char *metric;     /* "val/map@10", "val/loss", "train/loss" ... */
    int maximize;     /* goal: 1 maximize, 0 minimize */
    int patience;     /* validations without improvement; 0 = early stopping off */
    int restore_best; /* reload the best checkpoint at the end */
} st_early_stopping_config;

/* A phase: the module structs themselves. optimizer is train/optim.h's (optimizer.lr is its
 * lr); schedule is train/optim.h's st_lr_schedule with the keys type (kind), warmup_epochs
 * (warmup), step_size, gamma, min_lr, patience, factor; the trainer sets base_lr, total and
 * mode_max from the phase when it opens it. */
typedef struct st_phase_config {
    char *name;
    int epochs;
    char *freeze_until;
    st_optim_config optimizer;
    st_lr_schedule schedule;
    char **data; /* dataset names this phase trains on */
    int n_data;
    st_early_stopping_config early_stopping;
} st_phase_config;

typedef struct st_validation_config {
    int every;      /* validate every N epochs (and after the last) */
    char **metrics; /* "hit@1", "map@10", "map@R", "precision@5", "recall@10", "mrr" */
    int n_metrics;
    int k; /* retrieval depth; >= every @K in metrics */
} st_validation_config;

typedef struct st_output_config {
    char *dir; /* as written, relative to the current directory */
    char *name;    /* NULL: `simtune train` names the run <config file stem>-<date>-<time> */
    int keep_last; /* epoch checkpoints kept; 0 = all */
    int save_best;
} st_output_config;

typedef struct st_train_config {
    st_model_section model;
    st_data_section data;
    st_loss_config loss; /* train/loss.h's; loss.triplet.mining is batch_all */
    st_optim_config optimizer;
    st_lr_schedule schedule;
    char *freeze_until; /* "none", "all" or a layer name (checked when the model is built) */
    st_phase_config *phases;
    int n_phases;
    int epochs; /* with phases: the sum of their epochs */
    uint64_t seed;
    st_device_kind device;
    int threads; /* 0 = all cores */
    double divergence_factor; /* stop when a step's loss exceeds this times the running mean; 0 = off */
    int sync_bn; /* data parallel: training BNs normalise with the global batch's statistics */
    st_validation_config validation;
    st_early_stopping_config early_stopping;
    st_output_config output;
} st_train_config;

/* Defaults for every key (docs/config.md). */
void st_config_defaults(st_train_config *cfg);
void st_config_free(st_train_config *cfg);

/* Load a file and apply overrides "key.path=value" (value parsed as YAML). Returns 0, or -1 with
 * st_error_get() naming the file:line:column and the key path. cfg is valid only on success. */
int st_config_load(const char *path, const char *const *sets, int n_sets, st_train_config *cfg);

/* Apply one "key.path=value" override to a tree (the value's source is "--set key.path=value"). */
int st_config_apply_set(st_ynode *root, const char *assignment);
/* The parsing half of st_config_apply_set: the key path into key[key_size] and the value as a
 * tree (an empty value is null); NULL with st_error_get() on a malformed assignment or value. */
st_ynode *st_config_parse_set(const char *assignment, char *key, size_t key_size);

/* Validate a tree and fill cfg from it (cfg need not be initialised). */
int st_config_from_tree(const st_ynode *root, st_train_config *cfg);

/* The full effective config as a tree (every key, explicit), as YAML text (caller frees; NULL
 * with st_error_get() when the emitter refuses a string), and written to a file atomically:
 * the file holds exactly the text. */
st_ynode *st_config_to_tree(const st_train_config *cfg);
char *st_config_yaml_text(const st_train_config *cfg);
int st_config_write_yaml(const st_train_config *cfg, const char *path);

/* 1 when both configs have the same value for every key. */
int st_config_equal(const st_train_config *a, const st_train_config *b);

/* Effective batch size (batch_size, or p*k with the pk sampler when batch_size is 0). */
int st_config_batch_size(const st_train_config *cfg);

/* Check that input files exist (weights, datasets): -1 with st_error_set naming the key. */
int st_config_check_files(const st_train_config *cfg);

/* Input-path keys (model.weights, data.split_file, data.train.N.path): 1 when key_path is one
 * (their values are resolved by train/keytable.h's st_key_resolve_path). */
int st_config_key_is_path(const char *key_path);

/* A metric name a trainer reports: "train/loss", "val/loss" or "val/<m>" with m one of the
 * validation metrics. Returns 0 when cfg reports it, else -1 with a message listing them. */
int st_config_check_metric(const st_train_config *cfg, const char *metric);

#endif
