/*
 * optim.h: the trainer's optimizer over a model's parameters, and the learning-rate schedules.
 *
 * Optimizer: one slot per trainable parameter tensor (st_param with a gradient; frozen layers
 * and BN moving statistics are excluded). Each slot belongs to a parameter group given by
 *   - weight decay: on every slot, or (decay_norm_and_bias = 0) only on conv/dense kernels,
 *     not on BN gamma/beta and biases;
 *   - learning-rate multiplier: head_lr_mult for the new head layers `embedding` and
 *     `predictions`, 1 elsewhere.
 * The state tensors (m, v: roles in kernels/math/optim.h) live in one optimizer-state arena
 * allocated once at creation. A step never waits for the device: be->optim_grad_norm reduces
 * the global gradient norm over all slots into a device status (st_optim_status) and decides
 * there the optional clipping to clip_norm as torch.nn.utils.clip_grad_norm_ (scale
 * clip/(norm + 1e-6) when that is < 1) and the skip of a step whose norm is not finite
 * (parameters and state untouched, so one bad batch cannot poison the weights); then
 * be->optim_step per slot applies the PyTorch 1.13 update under that verdict.
 *
 * Counters: `step` counts the steps issued, and st_optimizer_stats (one download, so call it at
 * the logging interval, not per step) reads the norm of the last step and folds the steps the
 * device skipped since the last call into `step` (minus) and `skipped_steps` (plus). Read
 * st_optimizer_stats before saving the counters; after restoring them into a fresh optimizer
 * the device has no skips pending, so plain assignment of `step` and `skipped_steps` is right.
 *
 * Checkpoints: the state is a list of named float blobs (st_optimizer_blob: "m/<layer>/<weight>",
 * "v/<layer>/<weight>", device memory) plus the counters `step` and `skipped_steps`; an
 * optimizer created for the same model and config has the same blobs, so saving and restoring
 * them (download/upload) continues training bit-exactly. Schedule state: st_plateau is plain
 * data (doubles and ints) to save field by field.
 *
 * Schedules are pure functions of a tick count (st_lr_at) or a small struct (st_plateau). The
 * tick is the caller's unit; simtune's trainer ticks once per EPOCH (the lr is set at the start
 * of each epoch, like torch schedulers stepped once per epoch), so warmup, total and step_size
 * count epochs. Definitions (tick t = 0, 1, ...):
 *   constant  lr = base
 *   step      lr = base * gamma^floor(t / step_size)                      (torch StepLR)
 *   cosine    t <  W: lr = base * (t + 1) / (W + 1)                        (torch LinearLR with
 *                     start_factor 1/(W+1), end_factor 1, total_iters W)
 *             t >= W: lr = min_lr + (base - min_lr) * (1 + cos(pi * u / (T - W))) / 2,
 *                     u = min(t - W, T - W)                                 (torch
 *                     CosineAnnealingLR(T_max = T - W, eta_min = min_lr) started at tick W)
 *   plateau   torch ReduceLROnPlateau (mode min|max, threshold_mode rel): see st_plateau_update.
 * Callers: train/trainer.c (config -> these structs), tests/test_optim_torch.c.
 */
#ifndef ST_TRAIN_OPTIM_H
#define ST_TRAIN_OPTIM_H

#include "../infer/model/model.h"

/* ---- learning-rate schedules ---------------------------------------------------------- */

typedef enum { ST_LR_CONSTANT, ST_LR_STEP, ST_LR_COSINE, ST_LR_PLATEAU } st_lr_kind;

typedef struct st_lr_schedule {
    st_lr_kind kind;
    double base_lr;
    int step_size;     /* step: ticks between decays (>= 1) */
    double gamma;      /* step: decay factor */
    double warmup;     /* cosine: linear warmup ticks, may be fractional: W = ceil(warmup) (0: none) */
    int total;         /* cosine: T ticks in all, T > W */
    double min_lr;     /* cosine: eta_min; plateau: lower bound */
    int mode_max;      /* plateau: 1 the metric should increase (accuracy, mAP), 0 decrease */
    int patience;      /* plateau: ticks without improvement tolerated */
    double factor;     /* plateau: lr *= factor on a plateau, 0 < factor < 1 */
    double threshold;  /* plateau: relative improvement needed (torch default 1e-4) */
    int cooldown;      /* plateau: ticks to wait after a reduction (torch default 0) */
} st_lr_schedule;

/* Fill the defaults of a kind (torch's where it has them); callers override fields. */
st_lr_schedule st_lr_schedule_default(st_lr_kind kind, double base_lr);
/* 0, or -1 with st_error_set naming `what` (e.g. the config file and key) on bad values. */
int st_lr_schedule_validate(const st_lr_schedule *s, const char *what);
/* The lr at tick t for constant, step and cosine (plateau: base_lr, use st_plateau). */
double st_lr_at(const st_lr_schedule *s, long tick);

typedef struct st_plateau {
    double lr;          /* lr in force */
    double best;        /* best metric so far (+-inf before the first) */
    int num_bad;        /* ticks since the last improvement */
    int cooldown_left;  /* ticks of cooldown remaining */
} st_plateau;

void st_plateau_init(st_plateau *p, const st_lr_schedule *s);
/* Feed the metric of the tick just finished; returns the lr for the next tick. */
double st_plateau_update(st_plateau *p, const st_lr_schedule *s, double metric);

/* ---- optimizer ------------------------------------------------------------------------ */

/* Hyperparameters as configured (doubles, so a config reads and writes back exactly); a step
 * runs with each rounded to float32, as the backend's st_optim_desc holds them. */
typedef struct st_optim_config {
    st_opt_kind kind;
    double lr;                 /* base learning rate: the schedule's start (a step takes the lr in force) */
    double momentum;           /* SGD, RMSprop (0: none) */
    int nesterov;              /* SGD, needs momentum > 0 */
    double beta1, beta2, eps;  /* Adam/AdamW; eps also RMSprop */
    double alpha;              /* RMSprop smoothing constant */
    double weight_decay;       /* L2 (SGD, Adam, RMSprop) or decoupled (AdamW) */
    int decay_norm_and_bias;   /* 1: decay every tensor (torch default); 0: kernels only */
    double head_lr_mult;       /* lr multiplier of layers `embedding` and `predictions` */
    double clip_norm;          /* > 0: clip the global gradient norm to this */
} st_optim_config;

/* Torch's defaults for a kind (lr is passed per step). */
st_optim_config st_optim_config_default(st_opt_kind kind);

typedef struct st_optim_slot {
    st_param *param;
    float *m, *v;       /* (numel) state in the optimizer arena, NULL when the kind has none */
    float lr_mult;
    int decay;          /* weight decay applies */
} st_optim_slot;

typedef struct st_optimizer {
    st_optim_config config;
    st_model *model;
    st_optim_slot *slots;
    int n_slots;
    st_arena state_arena;   /* "optimizer": every m and v */
    long step;              /* steps taken, counting the device's unfolded skips (above) */
    long skipped_steps;     /* steps refused for a non-finite gradient norm, as last folded */
    st_span *spans;         /* (n_slots) device: each slot's gradient, for optim_grad_norm */
    st_optim_status *status;/* device: the last step's norm verdict and its unfolded skips */
} st_optimizer;

typedef struct st_optim_stats {
    double norm;            /* global gradient norm of the last step, before clipping */
    long step;              /* steps taken (skipped ones excluded) */
    long skipped_steps;     /* steps refused for a non-finite gradient norm */
} st_optim_stats;

/* NULL with st_error_set on a bad config (negative lr multiplier, betas outside [0, 1) ...)
 * or a model without trainable parameters. */
st_optimizer *st_optimizer_create(st_model *m, const st_optim_config *cfg);
void st_optimizer_free(st_optimizer *o);

/* One step at learning rate lr (the schedule's value), queued on the backend; nothing is read
 * back. A step whose gradient norm is not finite is skipped on the device. */
void st_optimizer_step(st_optimizer *o, float lr);
/* Waits for the steps queued so far: the last step's norm (not finite: it was skipped) and the
 * counters, with the device's skips folded into o->step and o->skipped_steps. */
st_optim_stats st_optimizer_stats(st_optimizer *o);

/* Checkpoint view of the state: 2 blobs per slot at most. */
typedef struct st_optim_blob {
    char name[160];     /* "m/<layer>/<weight>" or "v/<layer>/<weight>" */
    float *data;        /* device memory in the optimizer arena, in param's storage layout */
    const st_param *param; /* the parameter it belongs to: copy through st_param_upload/download */
    size_t numel;       /* host (file layout) floats */
} st_optim_blob;

int st_optimizer_blob_count(const st_optimizer *o);
st_optim_blob st_optimizer_blob(const st_optimizer *o, int index);

#endif
