/*
 * trainer.h: `simtune train` as a library call: one run of a train config (train/config.h), in
 * phases, with validation by retrieval metrics, checkpoints, early stopping and export.
 *
 * A run folder (opt->run_dir) holds:
 *   config.yaml      the effective config (written first; --resume reads it back)
 *   metrics.jsonl    one JSON object per epoch: epoch, phase, lr, train/loss, train/accuracy,
 *                    train/active_fraction, val/<metric> ..., seconds, images_per_second
 *   ckpt-<step>.h5   the last output.keep_last checkpoints (train/checkpoint.h), best.h5
 *   best_weights.h5  the best (or last) weights as a Keras-layout file (infer/weights_h5.h)
 *   curves.png       loss and validation metrics per epoch
 *   .lock            while a process trains in it (train/lock.h): a second one is refused
 * Every file is written atomically; metrics.jsonl is appended and fsynced line by line, so a
 * kill loses at most the epoch in flight and --resume continues from the last checkpoint.
 *
 * Phases: without `phases:` a run is one phase with the top-level freezing, optimizer, schedule
 * and early stopping. Each phase builds the model with its own freeze_until (weights carried
 * over by name), a fresh optimizer and schedule, and trains on its datasets (all by default).
 * Early stopping ends the phase; restore_best reloads the phase's best weights.
 *
 * Validation: every validation.every epochs (and at the end of each phase), the held-out split
 * is embedded with the evaluation transform and ranked leave-one-out (infer/eval.h), giving
 * val/hit@1, val/map@10 ... as configured; with a classifier also val/loss and val/accuracy.
 * The held-out split is, in this order: the images data.split_file lists when it exists;
 * strategy cross: every image of the last dataset; data.val_classes: whole classes (open-set);
 * else data.val_fraction of every class (closed-set). A split_file that does not exist yet is
 * written with the split computed. Open-set metrics go under the same val/ names, so early
 * stopping and sweeps use them unchanged; the summary says which kind it is.
 *
 * Interrupts: SIGINT/SIGTERM finish the current step, save a checkpoint, and return with
 * result->interrupted = 1. A non-finite loss stops the run (result->diverged = 1) keeping the
 * last good checkpoint.
 */
#ifndef ST_TRAINER_H
#define ST_TRAINER_H

#include <stdio.h>

#include "config.h"

typedef struct st_train_options {
    const char *run_dir;  /* the run folder; created when absent */
    int resume;           /* continue from run_dir's newest checkpoint (if any) */
    int epochs_target;    /* stop once this many epochs are done in total; 0 = cfg->epochs.
                           * With resume, more than the run's total extends its last phase as
                           * if set from the start (config.yaml rewritten), or fails saying why
                           * it cannot be exact (a cosine schedule already annealed, an early
                           * stop, sequential without phases): docs/config.md */
    FILE *progress;       /* progress and summary lines; NULL = silent */
    int strict_data;      /* a bad image is fatal instead of skipped with a warning */
} st_train_options;

typedef struct st_train_result {
    int n_train_images, n_val_images;
    int n_val_classes;    /* classes with validation images */
    int open_set;         /* 1: no validation class is trained on (strategy cross, data.val_classes) */
    int epochs_done;
    long steps_done;
    double last_metric;   /* cfg->early_stopping.metric at the last validation (NaN if none) */
    double best_metric;
    int best_epoch;       /* 1-based epoch of best_metric, 0 if none */
    double last_train_loss;
    int interrupted;      /* stopped by a signal after saving a checkpoint */
} st_train_result;

/* How a run ended. Callers act on the status, never on the message text: the sweep scores a
 * diverged trial NaN and goes on, any other failure stops it. */
typedef enum {
    ST_TRAIN_OK = 0,        /* reached its target, stopped early, or interrupted after a clean save */
    ST_TRAIN_ERROR = -1,    /* bad data, bad weights, a write error ...: st_error_get() says */
    ST_TRAIN_DIVERGED = -2, /* a non-finite or exploding loss (divergence_factor), or a checkpoint
                             * refused for non-finite weights: st_error_get() says which */
} st_train_status;

st_train_status st_train_run(const st_train_config *cfg, const st_train_options *opt, st_train_result *result);

/* `simtune train --check`: every check a run makes before its first step, training nothing and
 * writing nothing: the device opens; every dataset is scanned (flat, empty and looping folders
 * fail); the validation split (a split file is read when it exists); per phase, the training
 * images fill a batch and the pk sampler's P classes, and freeze_until names a layer of the
 * architecture; opt->run_dir (or its nearest existing parent) is writable and not locked by
 * another process. 0, or -1 with st_error_get(); a summary goes to opt->progress. */
int st_train_check(const st_train_config *cfg, const st_train_options *opt);

#endif
