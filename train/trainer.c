/*
 * trainer.c: one training run (train/trainer.h): data -> model -> loss -> backward -> optimizer,
 * phase by phase, epoch by epoch, with validation, checkpoints and early stopping.
 *
 * The pieces it drives: data/loader.h (batches), infer/model/model.h (the network),
 * train/loss.h, train/optim.h (update and lr schedules), infer/eval.h (validation metrics),
 * train/checkpoint.h (state), infer/weights_h5.h (import/export), train/plot.h (curves).
 *
 * Every checkpoint carries the effective config as the run holds it in memory (config.yaml's
 * text, the extended one after --epochs grows the run). Resume reads the newest checkpoint's
 * state first and builds the model once, for the phase it was written in.
 *
 * Checkpoint blobs written besides the model (all restored on --resume):
 *   optimizer/<m|v>/<layer>/<weight>   optimizer state tensors
 *   optimizer/counters (u64)           step, skipped steps
 *   loader/state (u64)                 position of the batch stream (mid-epoch included)
 *   trainer/position (i32)             phase, epochs done in the phase, batches done in the
 *                                      epoch in flight, best epoch, epochs without improvement,
 *                                      phase finished, plateau num_bad, plateau cooldown
 *   trainer/values (u64 = doubles)     best metric, last metric, plateau lr, plateau best,
 *                                      last train loss
 *   trainer/epoch_sums (u64 = doubles) sums of loss, accuracy, active fraction, images and
 *                                      steps over the batches done of the epoch in flight, so
 *                                      a mid-epoch resume reports the same epoch means
 *
 * Data parallel (`mpirun -np N`, kernels/comm.h): every rank runs this loop on the same config.
 * The loader's sampler draws the global batch from the shared seed and each rank takes its
 * slice (data/sampler.h), so the sample sequence and the loader state do not depend on N; the
 * model is built for global batch / N rows; the loss is the global batch's (train/loss.h);
 * between backward and the optimizer the gradient arena is all-reduced in one call (sum: the
 * loss gradient is already that of the global mean); with sync_bn every training batch norm
 * normalises with the global batch's statistics (st_model_config.sync_bn, kernels/bn_sync.h), so
 * the running statistics come out the same on every rank. Rank 0 alone writes the run folder
 * (lock, config, split file, metrics, checkpoints, curves, weights), prints, and validates,
 * broadcasting the metric so every rank takes the same early-stopping and schedule decisions;
 * every rank reads the checkpoint on --resume (any N: the state holds global positions only).
 * Decisions that one rank could take alone (setup errors, a stop signal) are agreed on at fixed
 * points.
 */
#include "trainer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/base/clock.h"
#include "data/base/fileio.h"
#include "../data/loader.h"
#include "../infer/eval.h"
#include "data/base/json.h"
#include "../infer/metrics.h"
#include "../infer/weights_h5.h"
#include "../kernels/check.h"
#include "../kernels/comm.h"
#include "data/base/rng.h"
#include "../infer/model/model.h"
#include "checkpoint.h"
#include "lock.h"
#include "loss.h"
#include "optim.h"
#include "plot.h"

/* ---- signals ------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* ---- run state ----------------------------------------------------------------------- */

enum { MAX_CURVE = 4096 };

typedef struct position {
    int phase;            /* phase in progress */
    int phase_epochs;     /* epochs finished in it */
    int epoch_batches;    /* batches finished of the epoch in flight (resume mid-epoch) */
    int best_epoch;       /* 1-based global epoch of the phase's best metric, 0 none */
    int bad_epochs;       /* validations without improvement */
    int phase_finished;   /* early-stopped or all epochs done */
    double best_metric, last_metric, last_loss;
    double epoch_sums[5]; /* loss, accuracy, active, images, steps of the epoch_batches done */
    st_plateau plateau;
} position;

typedef struct trainer {
    const st_train_config *cfg;
    const st_train_options *opt;
    char run_dir[4096];
    st_lock run_lock;     /* held from start_run_folder to the end of st_train_run */
    char *config_yaml;    /* the effective config as YAML, carried by every checkpoint */
    st_backend *be;
    st_dataset all, train, val;
    int have_val;
    int open_set;         /* validation classes are never trained on (cross, val_classes) */
    st_phase_config *phases; /* the config's, or the one (sequential: per dataset) it implies;
                              * shallow copies: strings and lists belong to cfg */
    int n_phases;
    int global_epoch;     /* epochs finished in all phases */
    long step;            /* optimizer steps in all phases */

    st_model *model;
    st_loss *loss;
    st_optimizer *optimizer;
    st_loader *loader;
    st_dataset phase_data;
    st_lr_schedule schedule;
    position pos;

    double curve_epoch[MAX_CURVE], curve_loss[MAX_CURVE], curve_metric[MAX_CURVE];
    int n_curve;
    int diverged; /* set where a divergence stops the run: st_train_run returns ST_TRAIN_DIVERGED */
} trainer;

/* Rank 0 writes the run folder and prints; the other ranks train alongside it. */
static int is_root(void) { return st_comm_rank() == 0; }

static FILE *progress_of(const trainer *t) { return is_root() ? t->opt->progress : NULL; }

static void say(const trainer *t, const char *fmt, ...) ST_PRINTF(2, 3);
static void say(const trainer *t, const char *fmt, ...) {
    FILE *out = progress_of(t);
    if (!out) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fflush(out);
}

/* ---- data ---------------------------------------------------------------------------- */

static int load_datasets(trainer *t) {
    const st_data_section *d = &t->cfg->data;
    if (d->n_train < 1) return st_error_set("data.train: no dataset configured");
    st_dataset *parts = ST_CALLOC((size_t)d->n_train, sizeof *parts);
    const char **names = ST_CALLOC((size_t)d->n_train, sizeof *names);
    int rc = 0;
    for (int i = 0; i < d->n_train && rc == 0; i++) {
        rc = st_dataset_load(d->train[i].path, &parts[i]);
        names[i] = d->train[i].name;
    }
    if (rc == 0) {
        if (d->n_train == 1) {
            t->all = parts[0];
            memset(&parts[0], 0, sizeof parts[0]);
        } else {
            st_dataset_combine(parts, names, d->n_train, &t->all);
        }
    }
    for (int i = 0; i < d->n_train; i++) st_dataset_free(&parts[i]);
    free(parts);
    free(names);
    return rc;
}

static int path_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* train = every image of all not listed in val (the split file names the validation images). */
static void complement(const st_dataset *all, const st_dataset *val, st_dataset *train) {
    char **sorted = ST_MALLOC((size_t)(val->n ? val->n : 1) * sizeof *sorted);
    memcpy(sorted, val->paths, (size_t)val->n * sizeof *sorted);
    qsort(sorted, (size_t)val->n, sizeof *sorted, path_cmp);
    int *keep = ST_MALLOC((size_t)all->n * sizeof *keep);
    int n = 0;
    for (int i = 0; i < all->n; i++)
        if (!bsearch(&all->paths[i], sorted, (size_t)val->n, sizeof *sorted, path_cmp)) keep[n++] = i;
    st_dataset_subset(all, keep, n, train);
    free(keep);
    free(sorted);
}

/* held_out (all.n_classes flags) from data.val_classes: the named classes, else a share. */
static int choose_held_out_classes(trainer *t, char *held_out) {
    const st_class_holdout *h = &t->cfg->data.val_classes;
    if (h->n_names == 0) {
        if (st_dataset_choose_classes(&t->all, h->fraction, t->cfg->data.split_seed, held_out) == 0) return 0;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st_error_get());
        return st_error_set("data.val_classes: %s", msg);
    }
    memset(held_out, 0, (size_t)t->all.n_classes);
    for (int i = 0; i < h->n_names; i++) {
        int c = st_dataset_find_class(&t->all, h->names[i]);
        if (c < 0)
            return st_error_set("data.val_classes: '%s' is not a class of data.train (HINT: classes are folder or "
                                "label names; with several datasets they are named 'dataset/class', e.g. '%s')",
                                h->names[i], t->all.class_names[0]);
        held_out[c] = 1;
    }
    for (int c = 0; c < t->all.n_classes; c++)
        if (!held_out[c]) return 0;
    return st_error_set("data.val_classes: every class is held out, none is left to train on");
}

/* strategy cross: the last dataset's classes (named "<its name>/..." in the combined set). */
static void mark_last_dataset_classes(trainer *t, char *held_out) {
    const st_data_section *d = &t->cfg->data;
    const char *last = d->train[d->n_train - 1].name;
    size_t len = strlen(last);
    for (int c = 0; c < t->all.n_classes; c++)
        held_out[c] = strncmp(t->all.class_names[c], last, len) == 0 && t->all.class_names[c][len] == '/';
}

/* The split from the config: cross and val_classes hold out whole classes (open-set), else
 * val_fraction of every class (closed-set), else no validation. */
static int compute_split(trainer *t) {
    const st_data_section *d = &t->cfg->data;
    t->open_set = d->strategy == ST_STRATEGY_CROSS || d->val_classes.fraction > 0 || d->val_classes.n_names > 0;
    if (t->open_set) {
        char *held_out = ST_CALLOC((size_t)t->all.n_classes, 1);
        int rc = 0;
        if (d->strategy == ST_STRATEGY_CROSS) mark_last_dataset_classes(t, held_out);
        else rc = choose_held_out_classes(t, held_out);
        if (rc == 0) st_dataset_split_classes(&t->all, held_out, &t->train, &t->val);
        free(held_out);
        return rc;
    }
    if (d->val_fraction > 0) return st_dataset_split(&t->all, d->val_fraction, d->split_seed, &t->train, &t->val);
    int *all = ST_MALLOC((size_t)t->all.n * sizeof *all);
    for (int i = 0; i < t->all.n; i++) all[i] = i;
    st_dataset_subset(&t->all, all, t->all.n, &t->train);
    free(all);
    return 0;
}

/* Classes with at least one image in ds. */
static int classes_present(const st_dataset *ds) {
    int *counts = ST_MALLOC((size_t)(ds->n_classes ? ds->n_classes : 1) * sizeof *counts);
    st_dataset_class_counts(ds, counts);
    int n = 0;
    for (int c = 0; c < ds->n_classes; c++) n += counts[c] > 0;
    free(counts);
    return n;
}

/* 1 when no class has images in both train and val. */
static int classes_disjoint(const st_dataset *train, const st_dataset *val) {
    char *in_train = ST_CALLOC((size_t)(train->n_classes ? train->n_classes : 1), 1);
    for (int i = 0; i < train->n; i++) in_train[train->labels[i]] = 1;
    int disjoint = 1;
    for (int i = 0; i < val->n && disjoint; i++) disjoint = !in_train[val->labels[i]];
    free(in_train);
    return disjoint;
}

/* data.split_file, when it exists, lists the validation images; when it does not, the split
 * computed from the config is written to it (docs/config.md), so later runs reuse it
 * (write_split_file 0: --check, which writes nothing). */
static int split_datasets(trainer *t, int write_split_file) {
    const st_data_section *d = &t->cfg->data;
    /* every rank reads the file or computes the split as rank 0 sees it (rank 0 writes it) */
    int exists = d->split_file && access(d->split_file, F_OK) == 0;
    st_comm_broadcast(&exists, sizeof exists, 0);
    write_split_file = write_split_file && is_root();
    if (exists) {
        if (st_dataset_select_file(&t->all, d->split_file, &t->val)) return -1;
        complement(&t->all, &t->val, &t->train);
        t->open_set = t->val.n > 0 && classes_disjoint(&t->train, &t->val);
    } else {
        if (compute_split(t)) return -1;
        if (d->split_file && !write_split_file) {
            say(t, "split file %s: does not exist yet; the run will write it\n", d->split_file);
        } else if (d->split_file && is_root()) {
            if (st_dataset_write_paths(&t->val, d->split_file)) return -1;
            say(t, "split file %s: written (%d validation images); later runs reuse it\n", d->split_file, t->val.n);
        }
    }
    t->have_val = t->val.n >= 2;
    return 0;
}

/* The validation set in a few words: open-set with the held-out classes named, or closed-set. */
static void describe_validation(const trainer *t) {
    if (!t->have_val) {
        say(t, "validation: none (HINT: data.val_fraction, data.val_classes or strategy: cross)\n");
        return;
    }
    int n_classes = classes_present(&t->val);
    if (!t->open_set) {
        say(t, "validation: closed-set, %d images of %d classes also trained on\n", t->val.n, n_classes);
        return;
    }
    say(t, "validation: open-set, %d images of %d classes never trained on:", t->val.n, n_classes);
    int shown = 0, last = -1;
    for (int i = 0; i < t->val.n && shown < 12; i++) {
        if (t->val.labels[i] == last) continue;
        last = t->val.labels[i];
        say(t, " %s", t->val.class_names[last]);
        shown++;
    }
    say(t, "%s\n", n_classes > shown ? " ..." : "");
}

/* The images of t->train that belong to the phase's datasets (class names "name/..." when
 * several datasets are combined; a single dataset keeps its own class names, and the config
 * only lets a phase name that one). */
static void phase_dataset(trainer *t, const st_phase_config *ph, st_dataset *out) {
    int *keep = ST_MALLOC((size_t)t->train.n * sizeof *keep);
    int n = 0;
    for (int i = 0; i < t->train.n; i++) {
        const char *cls = t->train.class_names[t->train.labels[i]];
        int ok = ph->n_data == 0 || t->cfg->data.n_train == 1;
        for (int j = 0; j < ph->n_data && !ok; j++) {
            size_t len = strlen(ph->data[j]);
            ok = strncmp(cls, ph->data[j], len) == 0 && cls[len] == '/';
        }
        if (ok) keep[n++] = i;
    }
    st_dataset_subset(&t->train, keep, n, out);
    free(keep);
}

static st_preprocess preprocess_of(const trainer *t) {
    if (t->cfg->data.preprocess != ST_CONFIG_PREPROCESS_AUTO) return (st_preprocess)t->cfg->data.preprocess;
    return st_arch_find(t->cfg->model.arch)->preprocess;
}

static st_transform eval_transform(const trainer *t) {
    /* torchvision's evaluation geometry, as `simtune embed` uses: shorter side to size*256/224,
     * centre crop size, so validation ranks what embed exports. */
    int size = t->cfg->model.image_size;
    return st_transform_eval(size, size * 256 / 224, preprocess_of(t));
}

static st_transform train_transform(const trainer *t) {
    const st_data_section *d = &t->cfg->data;
    int size = t->cfg->model.image_size;
    st_transform tr = eval_transform(t);
    if (d->random_resized_crop) {
        tr = st_transform_train(size, preprocess_of(t));
        tr.scale_min = d->crop_scale[0];
        tr.scale_max = d->crop_scale[1];
    }
    tr.hflip_prob = d->flip ? 0.5 : 0.0;
    tr.brightness = tr.contrast = tr.saturation = d->color_jitter;
    return tr;
}

static int workers_of(const trainer *t) {
    int w = t->cfg->data.workers;
    return w > 0 ? w : 2;
}

static int open_loader(trainer *t, const st_dataset *ds, int phase) {
    const st_train_config *cfg = t->cfg;
    st_sampler_config sc = cfg->data.sampler;
    sc.batch_size = st_config_batch_size(cfg);
    /* A final partial batch would break batch norm statistics with one image; drop it. */
    sc.drop_last = 1;
    st_transform tr = train_transform(t);
    st_loader_config lc = st_loader_config_default(ds, &tr, sc);
    lc.slice = st_comm_rank(); /* this rank's part of every global batch */
    lc.slices = st_comm_size();
    lc.n_threads = workers_of(t);
    lc.batch_memory = t->be; /* pinned batches: upload_async reads them */
    lc.seed = cfg->seed * 1000003u + (uint64_t)phase;
    lc.strict = t->opt->strict_data;
    return st_loader_create(&lc, &t->loader);
}
/* ---- model, loss, optimizer ------------------------------------------------------------ */

static int is_xent(const trainer *t) { return t->cfg->loss.kind == ST_LOSS_XENT; }

static st_model *build_model(trainer *t, const char *freeze_until) {
    const st_train_config *cfg = t->cfg;
    st_model_config mc = {0};
    mc.arch = cfg->model.arch;
    mc.batch = st_config_batch_size(cfg) / st_comm_size(); /* run() checked that it divides */
    mc.height = mc.width = cfg->model.image_size;
    mc.training = 1;
    mc.freeze_until = freeze_until;
    mc.pool = cfg->model.pool;
    mc.gem_p = (float)cfg->model.gem_p;
    mc.embed_dim = cfg->model.embed_dim;
    mc.num_classes = is_xent(t) ? (cfg->model.num_classes > 0 ? cfg->model.num_classes : t->all.n_classes) : 0;
    mc.bn_momentum = (float)cfg->model.bn_momentum;
    mc.sync_bn = cfg->sync_bn && st_comm_size() > 1; /* one rank: its batch is the global one */
    mc.precision = cfg->model.precision;
    mc.preprocess = st_preprocess_name(preprocess_of(t)); /* recorded in every weight file written */
    return st_model_create(t->be, &mc, cfg->seed);
}

/* Parameters of src into dst by (layer, weight) through a host buffer. */
static void copy_weights(st_model *dst, st_model *src) {
    for (int i = 0; i < src->n_params; i++) {
        st_param *s = &src->params[i];
        st_param *d = st_model_find_param(dst, s->layer, s->weight);
        if (!d || d->numel != s->numel) continue;
        float *host = ST_MALLOC(s->numel * sizeof *host);
        st_param_download(src, s, s->value, host);
        st_param_upload(dst, d, host, d->value);
        free(host);
    }
    st_model_weights_changed(dst);
}

/* The phase's schedule with what the phase decides: its lr, its length (epochs, which an
 * extended run grows) and the goal of its early-stopping metric (plateau). */
static st_lr_schedule phase_schedule(const st_phase_config *ph, int epochs) {
    st_lr_schedule lr = ph->schedule;
    int warmup = (int)ceil(lr.warmup);
    lr.base_lr = ph->optimizer.lr;
    lr.total = epochs > warmup ? epochs : warmup + 1;
    lr.mode_max = ph->early_stopping.maximize;
    return lr;
}
static void free_phase_objects(trainer *t) {
    st_loader_destroy(t->loader);
    st_optimizer_free(t->optimizer);
    st_loss_free(t->loss);
    st_dataset_free(&t->phase_data);
    t->loader = NULL;
    t->optimizer = NULL;
    t->loss = NULL;
}

/* A phase's training images fill a batch, and with the pk sampler hold P classes that have a
 * positive pair (2 images) for the triplet loss, 1 image otherwise. */
static int check_phase_data(const trainer *t, const st_phase_config *ph, const st_dataset *ds) {
    const st_data_section *d = &t->cfg->data;
    int classes = classes_present(ds);
    if (classes < 2)
        return st_error_set("phase '%s': the training images have %d class(es); training needs 2 or more (HINT: "
                            "a dataset folder holds one subfolder per class)",
                            ph->name, classes);
    if (ds->n < st_config_batch_size(t->cfg))
        return st_error_set("phase '%s': %d training images, fewer than one batch of %d", ph->name, ds->n,
                            st_config_batch_size(t->cfg));
    if (d->sampler.mode != ST_SAMPLE_PK) return 0;
    int min_images = t->cfg->loss.kind == ST_LOSS_TRIPLET ? 2 : 1;
    int *counts = ST_MALLOC((size_t)ds->n_classes * sizeof *counts);
    st_dataset_class_counts(ds, counts);
    int usable = 0;
    for (int c = 0; c < ds->n_classes; c++) usable += counts[c] >= min_images;
    free(counts);
    if (usable >= d->sampler.p) return 0;
    return st_error_set("phase '%s': data.pk.p = %d classes per batch, but the training images have %d class(es) "
                        "with %d or more images (HINT: lower data.pk.p to at most %d)",
                        ph->name, d->sampler.p, usable, min_images, usable);
}

/* Model (weights carried over from the previous phase; for the first phase the config's
 * weights when initial_weights), loss, optimizer and loader of phase p. */
static int open_phase(trainer *t, int p, int initial_weights) {
    const st_phase_config *ph = &t->phases[p];
    st_model *prev = t->model;
    t->model = build_model(t, ph->freeze_until);
    if (!t->model) return -1;
    if (prev) {
        copy_weights(t->model, prev);
        st_model_free(prev);
    } else if (initial_weights && t->cfg->model.weights) {
        st_weights_report rep;
        int rc = st_weights_load(t->model, t->cfg->model.weights, &rep);
        if (rc == 0) say(t, "weights: %s (%s, %d tensors, %.2f s)\n", t->cfg->model.weights, rep.arch, rep.n_tensors, rep.seconds);
        st_weights_report_free(&rep);
        if (rc) return -1;
    }
    t->loss = st_loss_create(t->model, &t->cfg->loss);
    if (!t->loss) return -1;
    t->optimizer = st_optimizer_create(t->model, &ph->optimizer);
    if (!t->optimizer) return -1;
    t->schedule = phase_schedule(ph, ph->epochs);
    if (st_lr_schedule_validate(&t->schedule, "schedule")) return -1;
    phase_dataset(t, ph, &t->phase_data);
    if (check_phase_data(t, ph, &t->phase_data)) return -1;
    return open_loader(t, &t->phase_data, p);
}

static void describe_phase(const trainer *t, const st_phase_config *ph, const st_dataset *ds) {
    say(t, "phase '%s': %d epochs on %d images of %d classes, freeze_until %s\n", ph->name, ph->epochs, ds->n,
        classes_present(ds), ph->freeze_until);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

static uint64_t bits_of(double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static double double_of(uint64_t u) {
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void add_optimizer_state(trainer *t, st_checkpoint *ck) {
    st_optimizer_stats(t->optimizer); /* folds the device's skipped steps into the counters */
    for (int i = 0; i < st_optimizer_blob_count(t->optimizer); i++) {
        st_optim_blob b = st_optimizer_blob(t->optimizer, i);
        float *host = ST_MALLOC(b.numel * sizeof *host);
        st_param_download(t->optimizer->model, b.param, b.data, host);
        char name[200];
        snprintf(name, sizeof name, "optimizer/%s", b.name);
        st_checkpoint_add_tensor(ck, name, host, b.numel);
        free(host);
    }
    uint64_t counters[2] = {(uint64_t)t->optimizer->step, (uint64_t)t->optimizer->skipped_steps};
    st_checkpoint_add_u64(ck, "optimizer/counters", counters, 2);
}

static int save_checkpoint(trainer *t, int is_best) {
    if (!is_root()) return 0;
    st_checkpoint ck;
    st_checkpoint_init(&ck);
    ck.step = t->step;
    ck.epoch = t->global_epoch;
    st_checkpoint_set_config(&ck, t->config_yaml);
    add_optimizer_state(t, &ck);
    uint64_t loader_state[ST_LOADER_STATE_WORDS];
    st_loader_save_state(t->loader, loader_state);
    st_checkpoint_add_u64(&ck, "loader/state", loader_state, ST_LOADER_STATE_WORDS);
    const position *p = &t->pos;
    int32_t ints[8] = {p->phase, p->phase_epochs, p->epoch_batches, p->best_epoch,
                       p->bad_epochs, p->phase_finished, p->plateau.num_bad, p->plateau.cooldown_left};
    st_checkpoint_add_i32(&ck, "trainer/position", ints, 8);
    uint64_t values[5] = {bits_of(p->best_metric), bits_of(p->last_metric), bits_of(p->plateau.lr),
                          bits_of(p->plateau.best), bits_of(p->last_loss)};
    st_checkpoint_add_u64(&ck, "trainer/values", values, 5);
    uint64_t sums[5];
    for (int i = 0; i < 5; i++) sums[i] = bits_of(p->epoch_sums[i]);
    st_checkpoint_add_u64(&ck, "trainer/epoch_sums", sums, 5);
    /* output.keep_last 0 means all (docs/config.md); st_checkpoint_save_run keeps the newest N */
    int keep = t->cfg->output.keep_last > 0 ? t->cfg->output.keep_last : INT_MAX;
    int rc = st_checkpoint_save_run(&ck, t->model, t->run_dir, keep, is_best && t->cfg->output.save_best);
    if (rc != 0 && !st_checkpoint_finite(&ck, t->model)) t->diverged = 1;
    st_checkpoint_free(&ck);
    return rc;
}

static int restore_optimizer(trainer *t, const st_checkpoint *ck, const char *path) {
    for (int i = 0; i < st_optimizer_blob_count(t->optimizer); i++) {
        st_optim_blob b = st_optimizer_blob(t->optimizer, i);
        char name[200];
        snprintf(name, sizeof name, "optimizer/%s", b.name);
        size_t n = 0;
        const float *host = st_checkpoint_get_tensor(ck, name, &n);
        if (!host || n != b.numel) return st_error_set("%s: %s: missing or of another size", path, name);
        st_param_upload(t->optimizer->model, b.param, host, b.data);
    }
    size_t n = 0;
    const uint64_t *counters = st_checkpoint_get_u64(ck, "optimizer/counters", &n);
    if (!counters || n != 2) return st_error_set("%s: optimizer/counters missing", path);
    t->optimizer->step = (long)counters[0];
    t->optimizer->skipped_steps = (long)counters[1];
    return 0;
}

static int read_position(const st_checkpoint *ck, const char *path, position *p) {
    size_t ni = 0, nv = 0;
    const int32_t *ints = st_checkpoint_get_i32(ck, "trainer/position", &ni);
    const uint64_t *values = st_checkpoint_get_u64(ck, "trainer/values", &nv);
    if (!ints || ni != 8 || !values || nv != 5)
        return st_error_set("%s: trainer/position or trainer/values missing (not a simtune train checkpoint?)", path);
    p->phase = ints[0];
    p->phase_epochs = ints[1];
    p->epoch_batches = ints[2];
    p->best_epoch = ints[3];
    p->bad_epochs = ints[4];
    p->phase_finished = ints[5];
    p->plateau.num_bad = ints[6];
    p->plateau.cooldown_left = ints[7];
    p->best_metric = double_of(values[0]);
    p->last_metric = double_of(values[1]);
    p->plateau.lr = double_of(values[2]);
    p->plateau.best = double_of(values[3]);
    p->last_loss = double_of(values[4]);
    size_t ns = 0;
    const uint64_t *sums = st_checkpoint_get_u64(ck, "trainer/epoch_sums", &ns);
    if (!sums || ns != 5) return st_error_set("%s: trainer/epoch_sums missing (not a simtune train checkpoint?)", path);
    for (int i = 0; i < 5; i++) p->epoch_sums[i] = double_of(sums[i]);
    return 0;
}

/* ---- metrics log and curves ------------------------------------------------------------ */

/* One line of metrics.jsonl; reals with 9 significant digits (a float survives the round
 * trip), NaN as null (data/base/json.h). */
static int append_metrics_line(trainer *t, const json_t *record) {
    if (!is_root()) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
    char *text = json_dumps(record, ST_JSON_PRECISION(9));
    ST_CHECK(text != NULL, "metrics line could not be formatted");
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    ST_CHECK(line != NULL, "out of memory");
    memcpy(line + n, "\n", 2);
    int rc = st_file_append(path, line);
    free(line);
    return rc;
}

/* The number under key in a metrics line (parsed by json_loads); NaN when absent or null. */
static double json_number(const json_t *line, const char *key) {
    const json_t *v = json_object_get(line, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* On resume: keep the metrics lines of the epochs the checkpoint covers (a kill between an
 * epoch's line and its checkpoint would otherwise leave that epoch twice in the log) and
 * refill the curves from them, so curves.png shows the whole run. */
static int reload_history(trainer *t) {
    if (!is_root()) return 0; /* the log is rank 0's */
    char path[4200], tmp[4300], line[8192];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
    FILE *in = fopen(path, "r");
    if (!in) return 0;
    FILE *out = st_atomic_open(path, tmp, sizeof tmp);
    if (!out) {
        fclose(in);
        return -1;
    }
    const char *metric = t->phases[t->pos.phase].early_stopping.metric;
    int dropped = 0;
    while (fgets(line, sizeof line, in)) {
        json_t *record = json_loads(line, 0, NULL); /* NULL for a line cut short by a kill: dropped */
        double epoch = json_number(record, "epoch");
        if (!(epoch <= t->global_epoch)) {
            dropped++;
            json_decref(record);
            continue;
        }
        fputs(line, out);
        if (t->n_curve < MAX_CURVE) {
            t->curve_epoch[t->n_curve] = epoch;
            t->curve_loss[t->n_curve] = json_number(record, "train/loss");
            t->curve_metric[t->n_curve] = json_number(record, metric);
            t->n_curve++;
        }
        json_decref(record);
    }
    fclose(in);
    if (dropped == 0) {
        st_atomic_abort(out, tmp);
        return 0;
    }
    say(t, "metrics.jsonl: dropped %d line(s) of epochs after the checkpoint\n", dropped);
    return st_atomic_commit(out, tmp, path);
}

static void write_curves(trainer *t) {
    if (t->n_curve == 0 || !is_root()) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/curves.png", t->run_dir);
    st_plot_series s[2] = {{t->curve_epoch, t->curve_loss, t->n_curve, 0},
                           {t->curve_epoch, t->curve_metric, t->n_curve, 1}};
    char metric_label[128];
    snprintf(metric_label, sizeof metric_label, "%s", t->cfg->early_stopping.metric);
    const char *legend[2] = {"train/loss", metric_label};
    st_plot_options o = {0};
    o.title = "training";
    o.x_label = "epoch";
    o.y_label = "value";
    o.legend = legend;
    o.n_legend = 2;
    if (st_plot_png(path, s, 2, &o)) say(t, "warning: %s\n", st_error_get());
}

/* ---- validation ---------------------------------------------------------------------- */

/* Retrieval vectors of the model: the embedding head when present, else pooled features. */
static st_tensor retrieval_output(const st_model *m) {
    return m->config.embed_dim > 0 ? m->embedding : m->features;
}

typedef struct val_result {
    st_eval_report report;
    double loss, accuracy; /* NaN without a classifier */
} val_result;

static int embed_validation(trainer *t, st_embeddings *e, double *loss, double *accuracy) {
    st_model *m = t->model;
    int batch = m->config.batch;
    st_transform tr = eval_transform(t);
    st_sampler_config sc = {0};
    sc.mode = ST_SAMPLE_SEQUENTIAL;
    sc.batch_size = batch;
    st_loader_config lc = st_loader_config_default(&t->val, &tr, sc);
    lc.n_threads = workers_of(t);
    lc.batch_memory = t->be;
    st_loader *L;
    if (st_loader_create(&lc, &L)) return -1;
    st_tensor out = retrieval_output(m);
    e->d = out.c;
    e->vectors = ST_CALLOC((size_t)t->val.n * (size_t)e->d, sizeof(float));
    e->labels = ST_CALLOC((size_t)t->val.n, sizeof(int32_t));
    double loss_sum = 0, acc_sum = 0;
    long rows = 0;
    st_loader_begin_epoch(L);
    st_batch *b;
    while (st_loader_next(L, &b) == 1) {
        t->be->upload_async(t->be, m->input.data, b->x, (size_t)b->n * b->h * b->w * 3 * sizeof(float));
        st_model_forward(m, b->n, 0);
        t->be->download(t->be, e->vectors + (size_t)rows * e->d, out.data, (size_t)b->n * e->d * sizeof(float));
        memcpy(e->labels + rows, b->labels, (size_t)b->n * sizeof(int32_t));
        if (is_xent(t)) {
            st_loss_stats s = st_loss_compute_local(t->loss, b->n, b->labels);
            loss_sum += (double)s.loss * b->n;
            acc_sum += (double)s.accuracy * b->n;
        }
        rows += b->n;
        t->be->upload_fence(t->be);
        st_loader_release(L, b);
    }
    st_loader_destroy(L);
    e->n = rows;
    *loss = is_xent(t) && rows ? loss_sum / rows : NAN;
    *accuracy = is_xent(t) && rows ? acc_sum / rows : NAN;
    return 0;
}

/* The ranking depth validation needs: validation.k, else the largest K of the metrics (at least
 * 10). The config has checked every name (infer/metrics.h's registry). */
static int validation_depth(const st_validation_config *v) {
    if (v->k > 0) return v->k;
    int k = 10;
    st_metric_id id;
    for (int i = 0; i < v->n_metrics; i++)
        if (st_metric_id_parse(v->metrics[i], &id) == 0 && id.k > k) k = id.k;
    return k;
}

static int validate(trainer *t, val_result *v) {
    st_embeddings e = {0};
    if (embed_validation(t, &e, &v->loss, &v->accuracy)) {
        st_embeddings_free(&e);
        return -1;
    }
    st_eval_options o;
    st_eval_defaults(&o);
    o.protocol = ST_PROTOCOL_LOO;
    o.k = validation_depth(&t->cfg->validation);
    int rc = st_eval_run(t->be, &o, &e, "validation split", NULL, NULL, &v->report);
    st_embeddings_free(&e);
    return rc;
}

/* One validation metric from the leave-one-out ranking of the held-out split, computed per
 * query by infer/metrics.h's registry and averaged over the queries that have a relevant item
 * (the evaluator's policy, infer/eval.h). "val/<m>" with m a name of the registry (as spelled in
 * validation.metrics); val/loss and val/accuracy come from the classifier. NaN when unknown. */
static double report_value(const val_result *v, const char *metric) {
    if (strcmp(metric, "val/loss") == 0) return v->loss;
    if (strcmp(metric, "val/accuracy") == 0) return v->accuracy;
    st_metric_id id;
    if (strncmp(metric, "val/", 4) != 0 || st_metric_id_parse(metric + 4, &id) != 0) return NAN;
    const st_eval_ranking *r = &v->report.first;
    double sum = 0;
    long n = 0;
    for (int q = 0; q < r->q; q++) {
        long relevant = r->n_relevant[q];
        if (relevant == 0) continue;
        sum += st_metric_of_query(id, r->rel + (size_t)q * r->depth, r->depth, relevant);
        n++;
    }
    return n ? sum / n : NAN;
}

/* ---- one epoch ------------------------------------------------------------------------ */

typedef struct epoch_stats {
    double loss, accuracy, active; /* sums over steps until the epoch ends, then means */
    long images, steps;
    double seconds;
} epoch_stats;

/* Batches between two progress lines when the output is not a terminal, and between two reads
 * of the loss statistics (st_loss_read): the loss is downloaded once per interval, not per step. */
static int progress_every(int batches) { return batches / 10 > 0 ? batches / 10 : 1; }

/* s holds the steps read so far (fold_loss_stats): on a terminal the bar moves every batch and
 * the loss shown changes once per progress_every batches. */
static void print_progress(trainer *t, int batch, int batches, const epoch_stats *s, float lr, double t0) {
    FILE *out = progress_of(t);
    if (!out) return;
    double elapsed = st_now_seconds() - t0;
    double ips = s->images / (elapsed > 0 ? elapsed : 1e-9);
    double eta = batch > 0 ? elapsed / batch * (batches - batch) : 0;
    double mean_loss = s->steps > 0 ? s->loss / s->steps : 0.0;
    int tty = isatty(fileno(out));
    if (tty) {
        int width = 24, filled = batches ? width * batch / batches : width;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(out, "\r  epoch %d [%s] %d/%d loss %.4f %.1f img/s lr %.2e eta %.0fs   ", t->global_epoch + 1, bar, batch,
                batches, mean_loss, ips, lr, eta);
        if (batch == batches) fputc('\n', out);
    } else {
        if (batch % progress_every(batches) != 0 && batch != batches) return;
        fprintf(out, "  epoch %d step %d/%d loss %.4f %.1f img/s lr %.2e eta %.0fs\n", t->global_epoch + 1, batch, batches,
                mean_loss, ips, lr, eta);
    }
    fflush(out);
}

/* A non-finite loss, or one over divergence_factor times the reference loss, stops the run. The
 * losses are read once per progress interval (fold_loss_stats), so the steps up to the read
 * have updated the weights (a non-finite gradient norm skips its update, train/optim.h), but no
 * checkpoint is written from them: one is written only after a read that found nothing. Each
 * step is still checked against the reference it had: the larger of the epoch's running mean
 * over the steps before it and the previous epoch's mean (both survive a resume): a late epoch
 * whose first batches happen to be easy (a hinge triplet loss near 0) must not make one harder
 * batch look like an explosion, and in the first epoch the running mean starts at the
 * untrained loss. `step` is the 1-based step checked, [first, last] the steps of the read. 0 fine,
 * -1 diverged (the caller marks the run diverged: sweeps score such trials NaN). */
static int check_divergence(const trainer *t, double loss, const epoch_stats *s, int batch, long step, long first,
                            long last) {
    double factor = t->cfg->divergence_factor;
    double running = s->steps > 0 ? s->loss / (double)s->steps : 0.0;
    double mean = fmax(running, t->pos.last_loss);
    int exploded = factor > 0 && mean > 0 && isfinite(mean) && loss > factor * mean;
    if (isfinite(loss) && !exploded) return 0;
    char why[160] = "";
    if (exploded) snprintf(why, sizeof why, ", over divergence_factor %g times the reference loss %g", factor, mean);
    return st_error_set("loss is %g at step %ld (epoch %d, batch %d; steps %ld-%ld read together)%s: training "
                        "diverged (HINT: lower optimizer.lr or set optimizer.grad_clip; the last good checkpoint is "
                        "kept in %s)",
                        loss, step, t->global_epoch + 1, batch, first, last, why, t->run_dir);
}

/* Read the loss statistics of the steps recorded since the last read (one download), check
 * each for divergence in step order and add it to s and to t->pos.epoch_sums (what a
 * mid-epoch checkpoint saves, so every checkpoint follows a read). `done` is the batch number
 * of the newest step, t->step its step. Collective with several ranks (st_loss_read); every
 * rank sees the same values, so all stop together. 0 fine, -1 diverged. */
static int fold_loss_stats(trainer *t, epoch_stats *s, int done) {
    const st_loss_stats *steps;
    const int count = st_loss_read(t->loss, &steps);
    const long first = t->step - count + 1;
    for (int i = 0; i < count; i++) {
        const st_loss_stats *ls = &steps[i];
        if (check_divergence(t, ls->loss, s, done - count + 1 + i, first + i, first, t->step)) {
            t->diverged = 1;
            return -1;
        }
        s->loss += ls->loss;
        s->accuracy += ls->accuracy;
        s->active += ls->active_fraction;
        s->images += ls->rows; /* the global batch's */
        s->steps++;
    }
    double now[5] = {s->loss, s->accuracy, s->active, (double)s->images, (double)s->steps};
    memcpy(t->pos.epoch_sums, now, sizeof now);
    return 0;
}

/* ---- data parallel ---------------------------------------------------------------------- */

/* A stop signal one rank caught stops every rank at the same point (a rank that stopped alone
 * would leave the others waiting in the next collective). 1 when some rank was asked to stop. */
static int stop_agreed(void) {
    if (st_comm_size() == 1) return stop_requested != 0;
    double flag = stop_requested != 0;
    st_comm_allreduce_sum_f64(&flag, 1);
    if (flag > 0) stop_requested = 1;
    return flag > 0;
}

/* Between backward and the optimizer step: each rank's gradient is its rows' part of the
 * gradient of the global mean loss (train/loss.h), so the sum over the ranks, the whole
 * gradient arena in one call, is one process's gradient. With sync_bn a training BN's dgamma
 * and dbeta are its rank's part too (the op leaves them local), and its running statistics
 * were computed from the global batch on every rank: nothing else to exchange. */
static void reduce_across_ranks(trainer *t) {
    if (st_comm_size() == 1) return;
    st_model *m = t->model;
    st_comm_allreduce_device(t->be, (float *)m->grads_arena.base, m->grads_arena.used / sizeof(float));
}

/* Train the epoch in flight from batch t->pos.epoch_batches on. 1 done, 0 stopped by a signal,
 * -1 error (diverged or bad data). */
static int train_epoch(trainer *t, float lr, epoch_stats *s) {
    st_model *m = t->model;
    int batches = st_loader_batches_per_epoch(t->loader), every = progress_every(batches);
    double t0 = st_now_seconds();
    memset(s, 0, sizeof *s);
    const double *sums = t->pos.epoch_sums; /* the batches done before a mid-epoch resume */
    s->loss = sums[0];
    s->accuracy = sums[1];
    s->active = sums[2];
    s->images = (long)sums[3];
    s->steps = (long)sums[4];
    st_loader_begin_epoch(t->loader);
    st_batch *b;
    int rc, done = t->pos.epoch_batches; /* > 0 when resumed mid-epoch */
    while ((rc = st_loader_next(t->loader, &b)) == 1) {
        t->be->upload_async(t->be, m->input.data, b->x, (size_t)b->n * b->h * b->w * 3 * sizeof(float));
        st_model_forward(m, b->n, 1);
        int pending = st_loss_record(t->loss, b->n, b->labels); /* nothing read back */
        st_model_backward(m, b->n);
        reduce_across_ranks(t);
        st_optimizer_step(t->optimizer, lr);
        t->step++;
        done++;
        t->pos.epoch_batches = done;
        t->be->upload_fence(t->be); /* the loader may refill b once the copy has read it */
        st_loader_release(t->loader, b);
        int read = done % every == 0 || done == batches || pending == ST_LOSS_MAX_PENDING;
        if (read && fold_loss_stats(t, s, done)) return -1;
        print_progress(t, done, batches, s, lr, t0);
        /* Drain nothing: the loader state saved is the consumer's position. After the epoch's
         * last batch, finish the epoch instead: a checkpoint "mid-epoch" at its very end would
         * resume into the following epoch's batches (the loader starts it) as if the same. The
         * checkpoint saves t->pos.epoch_sums: read what is pending first. */
        if (stop_agreed() && done < batches) return fold_loss_stats(t, s, done) ? -1 : 0;
    }
    if (rc < 0) return -1;
    if (fold_loss_stats(t, s, done)) return -1; /* a loader that ended the epoch early */
    long n = s->steps > 0 ? s->steps : 1;
    s->loss /= n;
    s->accuracy /= n;
    s->active /= n;
    s->seconds = st_now_seconds() - t0;
    return 1;
}

/* ---- phases --------------------------------------------------------------------------- */

/* The config's phases, or without `phases:` the one phase the top level describes (with
 * strategy sequential, one per dataset, in order). */
static void resolve_phases(trainer *t) {
    const st_train_config *cfg = t->cfg;
    if (cfg->n_phases > 0) {
        t->n_phases = cfg->n_phases;
        t->phases = ST_MALLOC((size_t)cfg->n_phases * sizeof *t->phases);
        memcpy(t->phases, cfg->phases, (size_t)cfg->n_phases * sizeof *t->phases);
        return;
    }
    int sequential = cfg->data.strategy == ST_STRATEGY_SEQUENTIAL && cfg->data.n_train > 1;
    t->n_phases = sequential ? cfg->data.n_train : 1;
    t->phases = ST_CALLOC((size_t)t->n_phases, sizeof *t->phases);
    for (int i = 0; i < t->n_phases; i++) {
        st_phase_config *ph = &t->phases[i];
        *ph = (st_phase_config){.name = sequential ? cfg->data.train[i].name : "main",
                                .epochs = cfg->epochs,
                                .freeze_until = cfg->freeze_until,
                                .optimizer = cfg->optimizer,
                                .schedule = cfg->schedule,
                                .early_stopping = cfg->early_stopping};
        if (sequential) {
            ph->data = &cfg->data.train[i].name;
            ph->n_data = 1;
        }
    }
}
static int total_epochs(const trainer *t) {
    int sum = 0;
    for (int i = 0; i < t->n_phases; i++) sum += t->phases[i].epochs;
    return sum;
}

static float lr_for_epoch(trainer *t) {
    double lr = t->schedule.kind == ST_LR_PLATEAU ? t->pos.plateau.lr : st_lr_at(&t->schedule, t->pos.phase_epochs);
    return (float)lr;
}

static int improved(double value, double best, int maximize) {
    if (!isfinite(value)) return 0;
    if (!isfinite(best)) return 1;
    return maximize ? value > best : value < best;
}

/* Record one finished epoch: validation, metrics line, early stopping, checkpoint. */
static int finish_epoch(trainer *t, const epoch_stats *s, float lr) {
    const st_phase_config *ph = &t->phases[t->pos.phase];
    const st_early_stopping_config *es = &ph->early_stopping;
    t->global_epoch++;
    t->pos.phase_epochs++;
    t->pos.epoch_batches = 0;
    memset(t->pos.epoch_sums, 0, sizeof t->pos.epoch_sums);
    t->pos.last_loss = s->loss;
    int last_of_phase = t->pos.phase_epochs >= ph->epochs;
    int every = t->cfg->validation.every > 0 ? t->cfg->validation.every : 1;
    int due = t->have_val && (t->pos.phase_epochs % every == 0 || last_of_phase);

    json_t *record = json_pack("{s:i, s:o, s:I, s:o, s:o}", "epoch", t->global_epoch, "phase", st_json_text(ph->name),
                               "step", (json_int_t)t->step, "lr", st_json_number(lr), "train/loss", st_json_number(s->loss));
    if (is_xent(t)) json_object_set_new(record, "train/accuracy", st_json_number(s->accuracy));
    else json_object_set_new(record, "train/active_fraction", st_json_number(s->active));

    double metric = strcmp(es->metric, "train/loss") == 0 ? s->loss : NAN;
    if (due && is_root()) {
        val_result v = {0};
        if (validate(t, &v)) {
            json_decref(record);
            return -1;
        }
        for (int i = 0; i < t->cfg->validation.n_metrics; i++) {
            char name[64];
            snprintf(name, sizeof name, "val/%s", t->cfg->validation.metrics[i]);
            json_object_set_new(record, name, st_json_number(report_value(&v, name)));
        }
        /* a diverging classifier gives a NaN val/loss: written as null */
        if (is_xent(t)) json_object_set_new(record, "val/loss", st_json_number(v.loss));
        if (is_xent(t)) json_object_set_new(record, "val/accuracy", st_json_number(v.accuracy));
        if (strncmp(es->metric, "val/", 4) == 0) metric = report_value(&v, es->metric);
        st_eval_report_free(&v.report);
    }
    if (due) st_comm_broadcast(&metric, sizeof metric, 0); /* rank 0 validated; all decide alike */
    json_object_set_new(record, "seconds", st_json_number(s->seconds));
    json_object_set_new(record, "images_per_second", st_json_number(s->seconds > 0 ? s->images / s->seconds : 0.0));
    int appended = append_metrics_line(t, record);
    json_decref(record);
    if (appended) return -1;

    int is_best = 0;
    if (isfinite(metric)) {
        t->pos.last_metric = metric;
        if (improved(metric, t->pos.best_metric, es->maximize)) {
            t->pos.best_metric = metric;
            t->pos.best_epoch = t->global_epoch;
            t->pos.bad_epochs = 0;
            is_best = 1;
        } else {
            t->pos.bad_epochs++;
        }
        if (t->schedule.kind == ST_LR_PLATEAU) st_plateau_update(&t->pos.plateau, &t->schedule, metric);
    }
    if (t->n_curve < MAX_CURVE) {
        t->curve_epoch[t->n_curve] = t->global_epoch;
        t->curve_loss[t->n_curve] = s->loss;
        t->curve_metric[t->n_curve] = isfinite(metric) ? metric : NAN;
        t->n_curve++;
    }
    say(t, "epoch %d/%d (%s) loss %.4f %s %.4f%s  %.1f img/s\n", t->global_epoch, total_epochs(t), ph->name, s->loss,
        es->metric, metric, is_best ? " *" : "", s->seconds > 0 ? s->images / s->seconds : 0.0);
    if (es->patience > 0 && t->pos.bad_epochs >= es->patience) {
        say(t, "early stopping: %s has not improved for %d validations (best %.4f at epoch %d)\n", es->metric,
            t->pos.bad_epochs, t->pos.best_metric, t->pos.best_epoch);
        t->pos.phase_finished = 1;
    }
    if (last_of_phase) t->pos.phase_finished = 1;
    return save_checkpoint(t, is_best);
}

static void reset_phase_position(trainer *t, int phase) {
    const st_phase_config *ph = &t->phases[phase];
    memset(&t->pos, 0, sizeof t->pos);
    t->pos.phase = phase;
    t->pos.best_metric = NAN;
    t->pos.last_metric = NAN;
    t->schedule = phase_schedule(ph, ph->epochs);
    st_plateau_init(&t->pos.plateau, &t->schedule);
}

static int restore_best(trainer *t) {
    st_comm_barrier(); /* every rank reads best.h5 once rank 0 has written its last one */
    char path[4200];
    snprintf(path, sizeof path, "%s/best.h5", t->run_dir);
    if (access(path, R_OK) != 0) {
        say(t, "warning: restore_best: %s is missing (output.save_best is off); keeping the last weights\n", path);
        return 0;
    }
    st_checkpoint ck;
    int rc = st_checkpoint_load(&ck, t->model, path);
    if (rc == 0) {
        say(t, "restored the best weights (epoch %d, %s %.4f)\n", t->pos.best_epoch,
            t->phases[t->pos.phase].early_stopping.metric, t->pos.best_metric);
        st_checkpoint_free(&ck);
    }
    return rc;
}

/* Train phase p from the position in t->pos until the phase ends, the target is reached, or a
 * signal arrives. 1 phase over, 0 stopped (target or signal), -1 error. */
static int run_phase(trainer *t, int target) {
    const st_phase_config *ph = &t->phases[t->pos.phase];
    while (!t->pos.phase_finished) {
        /* a signal during the last step, validation or between epochs: the epoch-end
         * checkpoint is already written */
        if (t->global_epoch >= target || stop_agreed()) return 0;
        float lr = lr_for_epoch(t);
        epoch_stats s;
        int rc = train_epoch(t, lr, &s);
        if (rc < 0) return -1;
        if (rc == 0) {
            say(t, "\ninterrupted: saving a checkpoint at step %ld\n", t->step);
            return save_checkpoint(t, 0) ? -1 : 0;
        }
        if (finish_epoch(t, &s, lr)) return -1;
    }
    if (ph->early_stopping.restore_best && t->pos.best_epoch > 0 && restore_best(t)) return -1;
    return 1;
}

/* ---- the run ------------------------------------------------------------------------------ */

static int start_run_folder(trainer *t) {
    if (!is_root()) return 0;
    if (st_mkdirs(t->run_dir) || st_lock_acquire(t->run_dir, &t->run_lock)) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", t->run_dir);
    if (t->opt->resume && access(path, R_OK) == 0) return 0;
    return st_config_write_yaml(t->cfg, path);
}
/* config.yaml of an extended run: the config with `epochs` (and the last phase's) raised, so
 * the checkpoints written from now on, and a later --resume, carry the new length. */
static int write_extended_config(trainer *t, int target) {
    st_ynode *tree = st_config_to_tree(t->cfg);
    st_ynode *value = st_ynode_new_int(target);
    int rc = st_ynode_set_path(tree, "epochs", value);
    st_ynode_free(value);
    if (rc == 0 && t->cfg->n_phases > 0) {
        char key[64];
        snprintf(key, sizeof key, "phases.%d.epochs", t->n_phases - 1);
        value = st_ynode_new_int(t->phases[t->n_phases - 1].epochs);
        rc = st_ynode_set_path(tree, key, value);
        st_ynode_free(value);
    }
    st_train_config extended;
    if (rc == 0) rc = st_config_from_tree(tree, &extended);
    st_ynode_free(tree);
    if (rc) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", t->run_dir);
    free(t->config_yaml);
    t->config_yaml = st_config_yaml_text(&extended);
    rc = !t->config_yaml ? -1 : is_root() ? st_config_write_yaml(&extended, path) : 0;
    st_config_free(&extended);
    return rc;
}

/* --resume --epochs N beyond the run's total: the last phase grows by the difference, exactly
 * as if N had been set from the start (the loader, optimizer and schedule continue); refused
 * with the reason where the epochs already trained would have gone otherwise with N. */
static int extend_run(trainer *t, position *p, int epochs_done, int target) {
    int last = t->n_phases - 1;
    st_phase_config *ph = &t->phases[last];
    int grown = ph->epochs + target - total_epochs(t);
    if (t->cfg->n_phases == 0 && t->n_phases > 1)
        return st_error_set("--epochs %d: strategy sequential trains `epochs` on each of its %d datasets, so a longer "
                            "run would have trained the earlier datasets longer too (HINT: give each dataset a phase "
                            "in `phases:`, then --epochs grows the last)",
                            target, t->n_phases);
    if (p->phase == last) {
        if (p->phase_finished && p->phase_epochs < ph->epochs)
            return st_error_set("--epochs %d: the run stopped early at epoch %d (%s did not improve for %d validations); "
                                "with %d epochs set from the start it would have stopped there too",
                                target, epochs_done, ph->early_stopping.metric, p->bad_epochs, target);
        st_lr_schedule was = phase_schedule(ph, ph->epochs);
        st_lr_schedule would = phase_schedule(ph, grown);
        int trained = p->phase_epochs + (p->epoch_batches > 0); /* with the epoch in flight */
        for (int e = 0; e < trained; e++)
            if (st_lr_at(&was, e) != st_lr_at(&would, e))
                return st_error_set("--epochs %d: the cosine schedule depends on the run's length: epoch %d of phase '%s' "
                                    "trained at lr %.6g, with %d epochs from the start it would have been %.6g, so the "
                                    "run cannot continue as that run would (HINT: schedules constant, step and plateau "
                                    "extend; or start a new run with epochs: %d)",
                                    target, e + 1, ph->name, st_lr_at(&was, e), target, st_lr_at(&would, e),
                                    target);
        int every = t->cfg->validation.every > 0 ? t->cfg->validation.every : 1;
        int extra_validation = p->phase_finished && p->phase_epochs % every != 0;
        if (extra_validation && (was.kind == ST_LR_PLATEAU || ph->early_stopping.patience > 0))
            return st_error_set("--epochs %d: epoch %d was validated only because it ended the run (validation.every "
                                "%d), and the plateau schedule or early stopping counted that validation, which a "
                                "longer run would not have made",
                                target, p->phase_epochs, every);
        p->phase_finished = 0;
    }
    ph->epochs = grown;
    if (write_extended_config(t, target)) return -1;
    say(t, "extended: phase '%s' now has %d epochs, %d in total (config.yaml updated)\n", ph->name, grown, target);
    return 0;
}

/* The model of a checkpoint (st_checkpoint_model_fn): its position says the phase, which decides
 * the freezing, so that phase is opened, without the config's weights (the checkpoint holds
 * every parameter); an older checkpoint of the same phase, tried after a corrupt newer one,
 * reuses it. */
static st_model *model_for_checkpoint(const st_checkpoint *ck, const char *path, void *user) {
    trainer *t = user;
    position p;
    if (read_position(ck, path, &p)) return NULL;
    if (p.phase < 0 || p.phase >= t->n_phases) {
        st_error_set("%s: trainer/position: phase %d, but the config has %d phase(s)", path, p.phase, t->n_phases);
        return NULL;
    }
    if (t->model && t->pos.phase == p.phase) return t->model;
    free_phase_objects(t);
    st_model_free(t->model);
    t->model = NULL;
    t->pos.phase = p.phase;
    return open_phase(t, p.phase, 0) ? NULL : t->model;
}

/* Resume: the newest checkpoint's phase, weights, optimizer and loader position, the model
 * built once for that phase. 1 resumed, 0 nothing to resume, -1 error. */
static int resume_from_checkpoint(trainer *t) {
    char path[4200];
    st_checkpoint ck;
    position p;
    /* the newest checkpoint that loads: corrupt or non-finite ones are skipped with a warning */
    int found = st_checkpoint_resume_latest(&ck, model_for_checkpoint, t, t->run_dir, path, sizeof path, progress_of(t));
    if (found <= 0) return found;
    if (read_position(&ck, path, &p)) {
        st_checkpoint_free(&ck);
        return -1;
    }
    if (t->opt->epochs_target > total_epochs(t) && extend_run(t, &p, (int)ck.epoch, t->opt->epochs_target)) return -1;
    t->pos = p;
    t->step = ck.step;
    t->global_epoch = (int)ck.epoch;
    t->schedule = phase_schedule(&t->phases[p.phase], t->phases[p.phase].epochs);
    int rc = 0;
    if (!p.phase_finished) {
        size_t n = 0;
        const uint64_t *words = st_checkpoint_get_u64(&ck, "loader/state", &n);
        if (!words || n != ST_LOADER_STATE_WORDS) rc = st_error_set("%s: loader/state missing", path);
        if (rc == 0) rc = restore_optimizer(t, &ck, path);
        /* saved at an epoch's end, the loader's next begin_epoch starts the following epoch
         * (data/sampler.h); saved mid-epoch, it continues with the next batch */
        if (rc == 0) rc = st_loader_restore_state(t->loader, words);
    }
    st_checkpoint_free(&ck);
    if (rc == 0) rc = reload_history(t);
    if (rc == 0)
        say(t, "resumed from %s: epoch %d, step %ld, phase '%s'\n", path, t->global_epoch, t->step, t->phases[p.phase].name);
    return rc ? -1 : 1;
}

/* best_weights.h5 with its provenance as JSON metadata (a run without validation has no best
 * value: null). */
static int export_weights(trainer *t) {
    char path[4200];
    snprintf(path, sizeof path, "%s/best_weights.h5", t->run_dir);
    json_t *doc = json_pack("{s:i, s:I, s:o, s:o}", "epochs", t->global_epoch, "steps", (json_int_t)t->step, "metric",
                            st_json_text(t->phases[t->pos.phase].early_stopping.metric), "value",
                            st_json_number(t->pos.best_metric));
    char *meta = json_dumps(doc, 0);
    json_decref(doc);
    int rc = st_weights_save(t->model, path, meta);
    free(meta);
    return rc;
}

static int open_backend(trainer *t) {
    const char *name = t->cfg->device == ST_DEVICE_CUDA ? "cuda" : "cpu";
    if (t->cfg->device == ST_DEVICE_AUTO) {
        t->be = st_backend_open("cuda", t->cfg->threads);
        if (t->be) return 0;
        name = "cpu";
    }
    t->be = st_backend_open(name, t->cfg->threads);
    if (t->be) return 0;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", st_error_get());
    return st_error_set("device %s: %s", name, msg);
}

/* The global batch splits evenly across the ranks, or the run is refused with the numbers. */
static int check_rank_count(const trainer *t) {
    int ranks = st_comm_size(), batch = st_config_batch_size(t->cfg);
    if (batch % ranks == 0) return 0;
    const st_sampler_config *sc = &t->cfg->data.sampler;
    char what[96] = "data.batch_size";
    if (sc->mode == ST_SAMPLE_PK && sc->batch_size == 0)
        snprintf(what, sizeof what, "data.pk.p %d x data.pk.k %d", sc->p, sc->k);
    return st_error_set("the global batch of %d images (%s) cannot be split evenly across %d ranks (%d %% %d = %d): "
                        "each rank trains on batch / ranks images (HINT: a batch that is a multiple of %d, or a "
                        "rank count that divides %d)",
                        batch, what, ranks, batch, ranks, batch % ranks, ranks, batch);
}

/* 64-bit hash of bytes (st_mix64 over 8-byte words, the tail zero-padded). */
static uint64_t hash_bytes(uint64_t h, const unsigned char *data, size_t n) {
    for (size_t at = 0; at < n; at += 8) {
        uint64_t word = 0;
        memcpy(&word, data + at, n - at < 8 ? n - at : 8);
        h = st_mix64(h ^ word);
    }
    return h;
}

/* Hash of the running executable: ranks built from different sources are refused. 0 when
 * /proc/self/exe cannot be read (then binaries are not compared). */
static uint64_t binary_hash(void) {
    FILE *f = fopen("/proc/self/exe", "rb");
    if (!f) return 0;
    unsigned char buf[1 << 16];
    uint64_t h = 0x53494d54554e45ull;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = hash_bytes(h, buf, n);
    fclose(f);
    return h;
}

typedef struct rank_report {
    int32_t rc;
    int64_t step;
    uint64_t config_hash, binary_hash;
    char message[1000];
} rank_report;

/* The first difference between rank r's report and rank 0's, as the run's error; 0 if none. */
static int compare_with_root(const rank_report *all, int r) {
    if (all[r].config_hash != all[0].config_hash)
        return st_error_set("rank %d has another config than rank 0 (hash %016llx vs %016llx): every rank must load "
                            "the same config file with the same --set options",
                            r, (unsigned long long)all[r].config_hash, (unsigned long long)all[0].config_hash);
    if (all[r].binary_hash != all[0].binary_hash)
        return st_error_set("rank %d runs another simtune binary than rank 0 (hash %016llx vs %016llx): install the "
                            "same build on every node",
                            r, (unsigned long long)all[r].binary_hash, (unsigned long long)all[0].binary_hash);
    if (all[r].step != all[0].step)
        return st_error_set("rank %d is at step %lld, rank 0 at step %lld after resuming (HINT: the run folder must "
                            "be on a filesystem every rank sees)",
                            r, (long long)all[r].step, (long long)all[0].step);
    return 0;
}

/* Every rank learns whether every rank got this far (a rank failing alone would leave the
 * others waiting), and the ranks run the same config, binary and position. rc: this rank's
 * result. 0 when all agree, else -1 with the first failing rank's message on every rank. */
static int ranks_agree(trainer *t, int rc) {
    int ranks = st_comm_size();
    if (ranks == 1) return rc;
    static uint64_t exe_hash;
    if (!exe_hash) exe_hash = binary_hash();
    rank_report mine = {.rc = rc, .step = t->step, .binary_hash = exe_hash};
    if (t->config_yaml) mine.config_hash = hash_bytes(0, (const unsigned char *)t->config_yaml, strlen(t->config_yaml));
    snprintf(mine.message, sizeof mine.message, "%s", rc ? st_error_get() : "");
    rank_report *all = ST_MALLOC((size_t)ranks * sizeof *all);
    st_comm_allgather(&mine, sizeof mine, all);
    int agreed = 0;
    for (int r = 0; r < ranks && agreed == 0; r++)
        if (all[r].rc) agreed = st_error_set("rank %d: %s", r, all[r].message);
    for (int r = 1; r < ranks && agreed == 0; r++) agreed = compare_with_root(all, r);
    free(all);
    return agreed;
}

static int run(trainer *t, st_train_result *res) {
    t->config_yaml = st_config_yaml_text(t->cfg);
    int rc = !t->config_yaml || open_backend(t) || check_rank_count(t) || load_datasets(t) ? -1 : 0;
    if (ranks_agree(t, rc)) return -1; /* split_datasets is collective */
    rc = split_datasets(t, 1) || start_run_folder(t) ? -1 : 0;
    if (ranks_agree(t, rc)) return -1;
    resolve_phases(t);
    int target = t->opt->epochs_target > 0 ? t->opt->epochs_target : total_epochs(t);
    say(t, "run %s: %s on %d train / %d val images, %d classes, %d epochs, device %s\n", t->run_dir, t->cfg->model.arch,
        t->train.n, t->val.n, t->all.n_classes, total_epochs(t), t->be->name);
    describe_validation(t);
    res->n_train_images = t->train.n;
    res->n_val_images = t->val.n;
    res->n_val_classes = classes_present(&t->val);
    res->open_set = t->open_set;

    int resumed = t->opt->resume ? resume_from_checkpoint(t) : 0;
    if (ranks_agree(t, resumed < 0 ? -1 : 0)) return -1;
    if (target > total_epochs(t)) target = total_epochs(t); /* extended by now when it could be */
    if (!resumed) {
        reset_phase_position(t, 0);
        if (open_phase(t, 0, 1)) return -1;
        describe_phase(t, &t->phases[t->pos.phase], &t->phase_data);
    }
    for (;;) {
        rc = run_phase(t, target);
        if (rc <= 0) break;
        int next = t->pos.phase + 1;
        if (next >= t->n_phases) break;
        free_phase_objects(t);
        reset_phase_position(t, next);
        if (open_phase(t, next, 1)) return -1;
        describe_phase(t, &t->phases[t->pos.phase], &t->phase_data);
    }
    if (rc < 0) return -1;
    res->epochs_done = t->global_epoch;
    res->steps_done = t->step;
    res->last_metric = t->pos.last_metric;
    res->best_metric = t->pos.best_metric;
    res->best_epoch = t->pos.best_epoch;
    res->last_train_loss = t->pos.last_loss;
    res->interrupted = stop_requested != 0;
    write_curves(t);
    if (!is_root()) return 0;
    if (!res->interrupted && export_weights(t)) return -1;
    if (t->loader) st_loader_print_summary(t->loader, progress_of(t) ? progress_of(t) : stderr);
    return 0;
}

st_train_status st_train_run(const st_train_config *cfg, const st_train_options *opt, st_train_result *result) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.opt = opt;
    snprintf(t.run_dir, sizeof t.run_dir, "%s", opt->run_dir);
    st_train_result res = {0};
    res.last_metric = res.best_metric = NAN;

    stop_requested = 0;
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART; /* a loader worker that takes the signal must not see EINTR */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    st_train_status rc = run(&t, &res) == 0 ? ST_TRAIN_OK : t.diverged ? ST_TRAIN_DIVERGED : ST_TRAIN_ERROR;

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    st_lock_release(&t.run_lock);
    free(t.config_yaml);
    free_phase_objects(&t);
    st_model_free(t.model);
    st_dataset_free(&t.all);
    st_dataset_free(&t.train);
    st_dataset_free(&t.val);
    free(t.phases);
    st_backend_close(t.be);
    if (result) *result = res;
    return rc;
}

/* freeze_until names a layer of the architecture: a one-image inference model at the smallest
 * input knows its layers (its weights are not needed). */
static int check_layer_name(trainer *t, const st_phase_config *ph) {
    if (!strcmp(ph->freeze_until, "none") || !strcmp(ph->freeze_until, "all")) return 0;
    st_model_config mc = {0};
    mc.arch = t->cfg->model.arch;
    mc.batch = 1;
    mc.height = mc.width = 32;
    mc.freeze_until = ph->freeze_until;
    mc.pool = t->cfg->model.pool;
    mc.gem_p = (float)t->cfg->model.gem_p;
    st_model *m = st_model_create(t->be, &mc, 0);
    if (!m) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st_error_get());
        return st_error_set("phase '%s': %s", ph->name, msg);
    }
    st_model_free(m);
    return 0;
}

/* The output folder: the run folder (or its nearest existing parent) writable, and no other
 * process holding the run folder's lock. */
static int check_output_folder(const char *run_dir) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", run_dir);
    struct stat st;
    while (stat(dir, &st) != 0) {
        char *slash = strrchr(dir, '/');
        if (!slash) {
            snprintf(dir, sizeof dir, ".");
            break;
        }
        if (slash == dir) slash[1] = 0;
        else *slash = 0;
    }
    if (access(dir, W_OK) != 0)
        return st_error_set("%s: output folder not writable (%s: %s)", run_dir, dir, strerror(errno));
    return stat(run_dir, &st) == 0 ? st_lock_probe(run_dir) : 0;
}

static int check_run(trainer *t) {
    if (open_backend(t) || load_datasets(t) || split_datasets(t, 0)) return -1;
    say(t, "data: %d train / %d val images, %d classes; device %s\n", t->train.n, t->val.n, t->all.n_classes, t->be->name);
    describe_validation(t);
    resolve_phases(t);
    for (int p = 0; p < t->n_phases; p++) {
        const st_phase_config *ph = &t->phases[p];
        st_dataset ds;
        phase_dataset(t, ph, &ds);
        int rc = check_phase_data(t, ph, &ds);
        if (rc == 0) describe_phase(t, ph, &ds);
        st_dataset_free(&ds);
        if (rc || check_layer_name(t, ph)) return -1;
    }
    return check_output_folder(t->run_dir);
}

int st_train_check(const st_train_config *cfg, const st_train_options *opt) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.opt = opt;
    snprintf(t.run_dir, sizeof t.run_dir, "%s", opt->run_dir);
    int rc = check_run(&t);
    st_dataset_free(&t.all);
    st_dataset_free(&t.train);
    st_dataset_free(&t.val);
    free(t.phases);
    st_backend_close(t.be);
    return rc;
}

/* The sweep's trial function (train/sweep.h): train the trial's run folder to epochs_target,
 * continuing from its checkpoint, and report the sweep metric at that epoch. */
int st_train_trial(const st_train_config *cfg, const char *trial_dir, int epochs_target, double *metric, void *user) {
    (void)trial_dir;
    (void)user;
    st_train_options opt = {0};
    opt.run_dir = cfg->output.dir;
    opt.resume = 1;
    opt.epochs_target = epochs_target;
    opt.progress = stdout;
    st_train_result res;
    st_train_status rc = st_train_run(cfg, &opt, &res);
    if (rc == ST_TRAIN_OK && res.interrupted)
        return st_error_set("interrupted: the trial's checkpoint is saved; `simtune sweep --resume` continues it");
    if (rc == ST_TRAIN_DIVERGED) {
        *metric = NAN;
        return 0;
    }
    *metric = res.last_metric;
    return rc == ST_TRAIN_OK ? 0 : -1;
}
