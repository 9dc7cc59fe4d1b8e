/*
 * loss.c: the trainer's loss layer (contract in train/loss.h). The math is the backend's
 * xent_forward/backward and triplet_loss ops (kernels/math/{xent,triplet}.h); this file picks
 * the input tensor, owns the workspace, keeps one device stats record per step until the caller
 * reads them and turns those into host statistics; with several ranks it makes the loss the
 * global batch's (kernels/comm.h).
 */
#include "loss.h"

#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"
#include "../kernels/comm.h"

#define ST_LOSS_NORMALIZE_EPS 1e-12f /* torch.nn.functional.normalize's default */

struct st_loss {
    st_loss_config config;
    st_model *model;
    int rows;            /* batch rows of this rank (the model's batch) */
    int global_rows;     /* rows of the global batch: rows x ranks */
    int dim;             /* TRIPLET input width (D or C_feat) */
    int32_t *labels;     /* device (global_rows) */
    float *global_input; /* TRIPLET, several ranks: device (global_rows, dim), all ranks' rows */
    float *global_grad;  /* TRIPLET, several ranks: device (global_rows, dim), its gradient */
    char *gather_send;   /* TRIPLET, several ranks: host block (n, labels, rows) of this rank */
    char *gather_recv;   /* TRIPLET, several ranks: host blocks of all ranks, rank order */
    float *probs;        /* XENT device (rows, K) */
    float *loss_rows;    /* XENT device (rows) */
    float *dist;         /* TRIPLET device (global_rows, global_rows) */
    float *normalized;   /* TRIPLET + normalize: device (global_rows, dim) */
    float *norms;        /* TRIPLET + normalize: device (global_rows) */
    float *d_normalized; /* TRIPLET + normalize: device (global_rows, dim) */
    void *records;       /* device (ST_LOSS_MAX_PENDING): st_xent_stats or st_triplet_stats */
    void *host_records;  /* host copy of the records read */
    int pending;         /* steps recorded, not yet read */
    int pending_global;  /* the pending steps are the global batch's (all-reduce at read) */
    int *pending_rows;   /* host (ST_LOSS_MAX_PENDING): rows of each pending step's batch */
    double *sums;        /* XENT host (2 * ST_LOSS_MAX_PENDING): loss sums, hits, all-reduced */
    st_loss_stats *steps; /* host (ST_LOSS_MAX_PENDING): what st_loss_read returns */
};

/* Bytes of one step's stats record: the op's own stats struct. */
static size_t record_bytes(const st_loss *l) {
    return l->config.kind == ST_LOSS_XENT ? sizeof(st_xent_stats) : sizeof(st_triplet_stats);
}

static int loss_config_check(const st_model *m, const st_loss_config *cfg) {
    if (cfg->kind == ST_LOSS_XENT) {
        if (m->config.num_classes <= 0)
            return st_error_set("loss: cross-entropy needs a classifier (HINT: set num_classes "
                                "> 0 or use the triplet loss)");
        if (!(cfg->label_smoothing >= 0 && cfg->label_smoothing < 1))
            return st_error_set("loss: label_smoothing %g must be in [0, 1)", cfg->label_smoothing);
        return 0;
    }
    if (cfg->kind == ST_LOSS_TRIPLET) {
        if (m->config.num_classes > 0)
            return st_error_set("loss: the triplet loss needs a model without a classifier: "
                                "backward starts at the model's final output, here the logits "
                                "(HINT: set num_classes to 0)");
        if (!cfg->soft_margin && !(cfg->margin > 0))
            return st_error_set("loss: triplet margin %g must be > 0 (HINT: or use the soft "
                                "margin)", cfg->margin);
        return 0;
    }
    return st_error_set("loss: unknown kind %d", (int)cfg->kind);
}

/* Bytes of one rank's block in the triplet all-gather: its row count, labels and input rows. */
static size_t gather_block_bytes(const st_loss *l) {
    return sizeof(int32_t) * (1 + (size_t)l->rows) + sizeof(float) * (size_t)l->rows * l->dim;
}

static void triplet_workspace(st_loss *l, st_backend *be) {
    const size_t rows = (size_t)l->global_rows, dim = (size_t)l->dim;
    l->dist = be->alloc(be, sizeof(float) * rows * rows);
    if (l->config.normalize) {
        l->normalized = be->alloc(be, sizeof(float) * rows * dim);
        l->norms = be->alloc(be, sizeof(float) * rows);
        l->d_normalized = be->alloc(be, sizeof(float) * rows * dim);
    }
    if (st_comm_size() == 1) return;
    l->global_input = be->alloc(be, sizeof(float) * rows * dim);
    l->global_grad = be->alloc(be, sizeof(float) * rows * dim);
    l->gather_send = ST_MALLOC(gather_block_bytes(l));
    l->gather_recv = ST_MALLOC(gather_block_bytes(l) * (size_t)st_comm_size());
}

st_loss *st_loss_create(st_model *m, const st_loss_config *cfg) {
    if (loss_config_check(m, cfg) < 0) return NULL;
    st_backend *be = m->backend;
    st_loss *l = ST_CALLOC(1, sizeof *l);
    l->config = *cfg;
    l->model = m;
    l->rows = m->config.batch;
    l->global_rows = l->rows * st_comm_size();
    const size_t rows = (size_t)l->rows, classes = (size_t)m->config.num_classes;
    l->labels = be->alloc(be, sizeof(int32_t) * (size_t)l->global_rows);
    l->records = be->alloc(be, record_bytes(l) * ST_LOSS_MAX_PENDING);
    l->host_records = ST_MALLOC(record_bytes(l) * ST_LOSS_MAX_PENDING);
    l->pending_rows = ST_MALLOC(sizeof(int) * ST_LOSS_MAX_PENDING);
    l->sums = ST_MALLOC(sizeof(double) * 2 * ST_LOSS_MAX_PENDING);
    l->steps = ST_MALLOC(sizeof(st_loss_stats) * ST_LOSS_MAX_PENDING);
    if (cfg->kind == ST_LOSS_XENT) {
        l->probs = be->alloc(be, sizeof(float) * rows * classes);
        l->loss_rows = be->alloc(be, sizeof(float) * rows);
    } else {
        l->dim = m->config.embed_dim > 0 ? m->config.embed_dim : m->feature_dim;
        triplet_workspace(l, be);
    }
    return l;
}

void st_loss_free(st_loss *l) {
    if (!l) return;
    st_backend *be = l->model->backend;
    float *device[] = {l->probs,        l->loss_rows,    l->dist,        l->normalized,
                       l->norms,        l->d_normalized, l->global_input, l->global_grad};
    for (size_t i = 0; i < sizeof device / sizeof device[0]; i++)
        if (device[i]) be->free(be, device[i]);
    be->free(be, l->labels);
    be->free(be, l->records);
    free(l->host_records);
    free(l->pending_rows);
    free(l->sums);
    free(l->steps);
    free(l->gather_send);
    free(l->gather_recv);
    free(l);
}

const char *st_loss_input_layer(const st_loss *l) {
    if (l->config.kind == ST_LOSS_XENT) return "predictions";
    return l->model->config.embed_dim > 0 ? "embedding_norm" : "avg_pool";
}

/* The labels are host values here, so they are checked here: the CUDA op cannot without a read
 * back (kernels/backend.h xent_forward). */
static void check_labels(int n, int k, const int32_t *labels) {
    for (int i = 0; i < n; i++)
        ST_CHECK(labels[i] >= 0 && labels[i] < k, "xent: label %d of row %d outside [0, %d)",
                 (int)labels[i], i, k);
}

/* The step's loss sum and top-1 hits into record slot `slot`; the gradient of the global
 * batch's mean, the row count summed over the ranks first. Returns the global row count. */
static int xent(st_loss *l, int n, const int32_t *labels, int global, int slot) {
    st_model *m = l->model;
    st_backend *be = m->backend;
    const float eps = (float)l->config.label_smoothing;
    const int k = m->config.num_classes;
    check_labels(n, k, labels);
    be->upload(be, l->labels, labels, sizeof(int32_t) * (size_t)n);
    be->xent_forward(be, n, k, m->logits.data, l->labels, eps, l->probs, l->loss_rows,
                     (st_xent_stats *)l->records + slot);
    double rows = n;
    if (global) st_comm_allreduce_sum_f64(&rows, 1);
    be->xent_backward(be, n, k, l->probs, l->labels, eps, 1.0f / (float)rows, m->d_logits.data);
    return (int)rows;
}

/* Triplet loss of n rows of input (device; labels already in l->labels), its gradient into
 * d_input, its stats into record slot `slot`. */
static void triplet_rows(st_loss *l, int n, const float *input, float *d_input, int slot) {
    st_backend *be = l->model->backend;
    st_triplet_desc d = {.n = n, .d = l->dim, .batch_all = l->config.batch_all,
                         .soft_margin = l->config.soft_margin, .margin = (float)l->config.margin,
                         .eps = 1e-12f};
    st_triplet_stats *stats = (st_triplet_stats *)l->records + slot;
    if (l->config.normalize) {
        be->l2norm_forward(be, n, l->dim, input, l->normalized, l->norms, ST_LOSS_NORMALIZE_EPS);
        be->triplet_loss(be, &d, l->normalized, l->labels, l->dist, l->d_normalized, stats);
        be->l2norm_backward(be, n, l->dim, l->normalized, l->norms, l->d_normalized, d_input);
    } else {
        be->triplet_loss(be, &d, input, l->labels, l->dist, d_input, stats);
    }
}

/* Every rank's rows and labels, in rank order, into l->global_input and l->labels; returns
 * the global row count and this rank's first row in *offset. A rank may have fewer rows than
 * its share (images that failed to decode were left out), hence the count in each block. */
static int gather_global(st_loss *l, int n, const float *input, const int32_t *labels, int *offset) {
    st_backend *be = l->model->backend;
    const size_t block = gather_block_bytes(l), row_bytes = sizeof(float) * (size_t)l->dim;
    int32_t header = n;
    memcpy(l->gather_send, &header, sizeof header);
    memcpy(l->gather_send + sizeof header, labels, sizeof(int32_t) * (size_t)n);
    be->download(be, l->gather_send + sizeof(int32_t) * (1 + (size_t)l->rows), input, row_bytes * (size_t)n);
    st_comm_allgather(l->gather_send, block, l->gather_recv);
    int total = 0;
    for (int r = 0; r < st_comm_size(); r++) {
        const char *b = l->gather_recv + block * (size_t)r;
        memcpy(&header, b, sizeof header);
        if (r == st_comm_rank()) *offset = total;
        be->upload(be, l->labels + total, b + sizeof header, sizeof(int32_t) * (size_t)header);
        be->upload(be, l->global_input + (size_t)total * l->dim, b + sizeof(int32_t) * (1 + (size_t)l->rows),
                   row_bytes * (size_t)header);
        total += header;
    }
    return total;
}

/* Returns the row count the loss is over (the global batch's with several ranks). */
static int triplet(st_loss *l, int n, const int32_t *labels, int global, int slot) {
    st_model *m = l->model;
    st_backend *be = m->backend;
    const int on_embedding = m->config.embed_dim > 0;
    const float *input = on_embedding ? m->embedding.data : m->features.data;
    float *d_input = on_embedding ? m->d_embedding.data : m->d_features.data;
    if (!global || st_comm_size() == 1) {
        be->upload(be, l->labels, labels, sizeof(int32_t) * (size_t)n);
        triplet_rows(l, n, input, d_input, slot);
        return n;
    }
    int offset = 0;
    int total = gather_global(l, n, input, labels, &offset);
    triplet_rows(l, total, l->global_input, l->global_grad, slot);
    be->copy(be, d_input, l->global_grad + (size_t)offset * l->dim, sizeof(float) * (size_t)n * l->dim);
    return total;
}

static int record(st_loss *l, int n, const int32_t *labels, int global) {
    ST_CHECK(n > 0 && n <= l->rows, "loss: %d rows for a workspace of %d", n, l->rows);
    ST_CHECK(l->pending < ST_LOSS_MAX_PENDING, "loss: %d steps recorded and not read", l->pending);
    ST_CHECK(l->pending == 0 || l->pending_global == global, "loss: global and local steps mixed");
    const int slot = l->pending;
    l->pending_rows[slot] = l->config.kind == ST_LOSS_XENT ? xent(l, n, labels, global, slot)
                                                             : triplet(l, n, labels, global, slot);
    l->pending_global = global;
    return ++l->pending;
}

int st_loss_record(st_loss *l, int n, const int32_t *labels) { return record(l, n, labels, 1); }

/* XENT: the steps' loss sums and hits, all-reduced over the ranks when global, as means. */
static void read_xent(st_loss *l, int count) {
    const st_xent_stats *r = l->host_records;
    for (int i = 0; i < count; i++) {
        l->sums[2 * i] = r[i].loss_sum;
        l->sums[2 * i + 1] = r[i].correct;
    }
    if (l->pending_global && st_comm_size() > 1) st_comm_allreduce_sum_f64(l->sums, 2 * count);
    for (int i = 0; i < count; i++) {
        const int rows = l->pending_rows[i];
        l->steps[i] = (st_loss_stats){.loss = (float)(l->sums[2 * i] / rows), .active_fraction = 1.0f,
                                      .accuracy = (float)l->sums[2 * i + 1] / (float)rows, .rows = rows};
    }
}

/* TRIPLET: every rank ran the loss on the same global batch, so nothing to reduce. */
static void read_triplet(st_loss *l, int count) {
    const st_triplet_stats *r = l->host_records;
    for (int i = 0; i < count; i++)
        l->steps[i] = (st_loss_stats){.loss = r[i].loss, .accuracy = -1.0f,
                                      .active_fraction = r[i].active_fraction, .mean_pos = r[i].mean_pos,
                                      .mean_neg = r[i].mean_neg, .rows = l->pending_rows[i]};
}

int st_loss_read(st_loss *l, const st_loss_stats **steps) {
    const int count = l->pending;
    *steps = l->steps;
    if (count == 0) return 0;
    st_backend *be = l->model->backend;
    be->download(be, l->host_records, l->records, record_bytes(l) * (size_t)count);
    if (l->config.kind == ST_LOSS_XENT)
        read_xent(l, count);
    else
        read_triplet(l, count);
    l->pending = 0;
    return count;
}

static st_loss_stats compute(st_loss *l, int n, const int32_t *labels, int global) {
    ST_CHECK(l->pending == 0, "loss: %d recorded steps not read before a one-step compute", l->pending);
    record(l, n, labels, global);
    const st_loss_stats *steps;
    st_loss_read(l, &steps);
    return steps[0];
}

st_loss_stats st_loss_compute(st_loss *l, int n, const int32_t *labels) { return compute(l, n, labels, 1); }

st_loss_stats st_loss_compute_local(st_loss *l, int n, const int32_t *labels) { return compute(l, n, labels, 0); }
