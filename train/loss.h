/*
 * loss.h: the trainer's loss layer. After st_model_forward(m, n, 1) it computes the loss of
 * the first n rows and writes the gradient of the MEAN loss into exactly one head-output
 * gradient of the model, the one st_loss_input_layer names, where st_model_backward starts:
 *
 *   ST_LOSS_XENT     softmax cross-entropy with label smoothing on m->logits (N, K)
 *                    -> m->d_logits                          (needs num_classes > 0)
 *   ST_LOSS_TRIPLET  batch-hard / batch-all triplet loss (kernels/backend.h st_triplet_desc)
 *                    on m->embedding (N, D) when embed_dim > 0 -> m->d_embedding,
 *                    else on the pooled m->features (N, C) -> m->d_features.
 *                    normalize = 1 L2-normalises that input inside the loss first
 *                    (y = x / max(||x||, 1e-12), as torch.nn.functional.normalize) and
 *                    back-propagates through it; the model's own embedding is already
 *                    L2-normalised by its embedding_norm layer, so this is meant for features.
 *
 * The input is the model's final output because st_model_backward (infer/model/model.h) starts there; so the triplet
 * loss refuses a model with a classifier (its final output would be the logits).
 *
 * Stats per step: loss; accuracy (top-1 of the logits, ties to the lower class) with the
 * classifier (XENT), else -1; for the triplet loss the active fraction and mean hardest
 * positive / negative distances (kernels/cpu/triplet.c). They stay on the device: st_loss_record
 * reads nothing back (the step never waits for the device); the caller fetches the steps
 * recorded so far with st_loss_read when it wants the values (issue 15: once per logging
 * interval), one download for all of them.
 * Labels are int32 host values: class indices for XENT, identity labels of the PK batch for
 * TRIPLET. Workspace (device) is allocated once in st_loss_create for m->config.batch rows.
 *
 * Data parallel (kernels/comm.h, more than one rank): each rank's n rows are its slice of the
 * global batch, in rank order, and every rank calls st_loss_compute at the same step. The
 * loss is that of the GLOBAL batch and the gradient written is this rank's rows of the gradient
 * of the global mean loss, so summing the ranks' parameter gradients gives one process's:
 *   XENT     the row counts are summed over the ranks at each step (a host all-reduce: the
 *            gradient is scaled by 1 / global rows), the loss sums and correct top-1 counts
 *            when read (one all-reduce for all the steps read);
 *   TRIPLET  the inputs and labels of all ranks are all-gathered, batch-hard / batch-all mining
 *            and the loss run on the global batch on every rank (so mining sees the candidates
 *            one process sees), and each rank keeps its own rows of the gradient.
 * The workspace then holds the global batch (ranks x m->config.batch rows).
 * Callers: train/trainer.c, tests/test_train_loss.c.
 */
#ifndef ST_TRAIN_LOSS_H
#define ST_TRAIN_LOSS_H

#include <stdint.h>

#include "../infer/model/model.h"

typedef enum { ST_LOSS_XENT, ST_LOSS_TRIPLET } st_loss_kind;

typedef struct st_loss_config {
    st_loss_kind kind;
    double label_smoothing; /* XENT: epsilon in [0, 1) (float32 in the kernel) */
    int batch_all;         /* TRIPLET: 0 batch hard, 1 batch all */
    int soft_margin;       /* TRIPLET: softplus instead of the hinge */
    double margin;         /* TRIPLET hinge margin (> 0) (float32 in the kernel) */
    int normalize;         /* TRIPLET: L2-normalise the input inside the loss */
} st_loss_config;

typedef struct st_loss_stats {
    float loss;
    float accuracy;        /* in [0, 1], or -1 without a classifier */
    float active_fraction; /* TRIPLET; 1 for XENT */
    float mean_pos, mean_neg; /* TRIPLET; 0 for XENT */
    int rows;              /* rows of the global batch the loss is over */
} st_loss_stats;

typedef struct st_loss st_loss;

/* NULL with st_error_set on a config the model cannot serve (XENT without a classifier,
 * TRIPLET with one, smoothing outside [0, 1), a non-positive hinge margin). */
st_loss *st_loss_create(st_model *m, const st_loss_config *cfg);
void st_loss_free(st_loss *loss);

#define ST_LOSS_MAX_PENDING 1024 /* steps recorded before st_loss_read must run (16 B each) */

/* Loss and gradient of the first n <= batch rows; labels (n) host. The step's stats are kept
 * on the device; returns the number of steps recorded and not yet read (at most
 * ST_LOSS_MAX_PENDING: the caller reads before recording more). Collective with several ranks:
 * the global batch's loss (above). */
int st_loss_record(st_loss *loss, int n, const int32_t *labels);
/* The recorded steps' stats, oldest first, in *steps (owned by the loss, valid until the next
 * call); returns their count and forgets them. One download; with several ranks and XENT one
 * all-reduce (so collective, like the steps). */
int st_loss_read(st_loss *loss, const st_loss_stats **steps);
/* One step recorded and read at once (tests, benchmarks of one step, one-off callers): this
 * waits for the device. Nothing may be pending. */
st_loss_stats st_loss_compute(st_loss *loss, int n, const int32_t *labels);
/* The same over this rank's rows only, never collective (validation, which one rank runs). */
st_loss_stats st_loss_compute_local(st_loss *loss, int n, const int32_t *labels);

/* Keras name of the layer whose output gradient the loss writes: "predictions",
 * "embedding_norm" or "avg_pool". */
const char *st_loss_input_layer(const st_loss *loss);

#endif
