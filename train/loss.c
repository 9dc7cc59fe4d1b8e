/*
 * loss.c: the trainer's loss layer (contract in train/loss.h). The math is the backend's
 * xent_forward/backward and triplet_loss ops (kernels/math/{xent,triplet}.h); this file picks
 * the input tensor, owns the workspace and turns device results into host statistics.
 */
#include "loss.h"

#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"

#define ST_LOSS_NORMALIZE_EPS 1e-12f /* torch.nn.functional.normalize's default */

struct st_loss {
    st_loss_config config;
    st_model *model;
    int rows;            /* batch rows the workspace holds */
    int dim;             /* TRIPLET input width (D or C_feat) */
    int32_t *labels;     /* device (rows) */
    float *probs;        /* XENT device (rows, K) */
    float *loss_rows;    /* XENT device (rows) */
    float *dist;         /* TRIPLET device (rows, rows) */
    float *normalized;   /* TRIPLET + normalize: device (rows, dim) */
    float *norms;        /* TRIPLET + normalize: device (rows) */
    float *d_normalized; /* TRIPLET + normalize: device (rows, dim) */
    float *host_rows;    /* host (rows * max(K, 1)): logits or per-row losses downloaded */
};

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

st_loss *st_loss_create(st_model *m, const st_loss_config *cfg) {
    if (loss_config_check(m, cfg) < 0) return NULL;
    st_backend *be = m->backend;
    st_loss *l = ST_CALLOC(1, sizeof *l);
    l->config = *cfg;
    l->model = m;
    l->rows = m->config.batch;
    const size_t rows = (size_t)l->rows, classes = (size_t)m->config.num_classes;
    l->labels = be->alloc(be, sizeof(int32_t) * rows);
    l->host_rows = ST_MALLOC(sizeof(float) * rows * (classes > 0 ? classes : 1));
    if (cfg->kind == ST_LOSS_XENT) {
        l->probs = be->alloc(be, sizeof(float) * rows * classes);
        l->loss_rows = be->alloc(be, sizeof(float) * rows);
    } else {
        l->dim = m->config.embed_dim > 0 ? m->config.embed_dim : m->feature_dim;
        l->dist = be->alloc(be, sizeof(float) * rows * rows);
        if (cfg->normalize) {
            l->normalized = be->alloc(be, sizeof(float) * rows * (size_t)l->dim);
            l->norms = be->alloc(be, sizeof(float) * rows);
            l->d_normalized = be->alloc(be, sizeof(float) * rows * (size_t)l->dim);
        }
    }
    return l;
}

void st_loss_free(st_loss *l) {
    if (!l) return;
    st_backend *be = l->model->backend;
    float *device[] = {l->probs, l->loss_rows, l->dist, l->normalized, l->norms, l->d_normalized};
    for (size_t i = 0; i < sizeof device / sizeof device[0]; i++)
        if (device[i]) be->free(be, device[i]);
    be->free(be, l->labels);
    free(l->host_rows);
    free(l);
}

const char *st_loss_input_layer(const st_loss *l) {
    if (l->config.kind == ST_LOSS_XENT) return "predictions";
    return l->model->config.embed_dim > 0 ? "embedding_norm" : "avg_pool";
}

/* Top-1 accuracy of the model's logits for the first n rows (labels already checked to be
 * class indices by xent_forward). */
static float logits_accuracy(st_loss *l, int n, const int32_t *labels) {
    const st_model *m = l->model;
    const int k = m->config.num_classes;
    m->backend->download(m->backend, l->host_rows, m->logits.data, sizeof(float) * (size_t)n * k);
    int correct = 0;
    for (int i = 0; i < n; i++) {
        const float *row = l->host_rows + (size_t)i * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (row[j] > row[best]) best = j;
        correct += best == labels[i];
    }
    return (float)correct / (float)n;
}

static st_loss_stats xent(st_loss *l, int n, const int32_t *labels) {
    st_model *m = l->model;
    st_backend *be = m->backend;
    const float eps = (float)l->config.label_smoothing;
    const int k = m->config.num_classes;
    be->xent_forward(be, n, k, m->logits.data, l->labels, eps, l->probs, l->loss_rows);
    be->xent_backward(be, n, k, l->probs, l->labels, eps, 1.0f / (float)n, m->d_logits.data);
    be->download(be, l->host_rows, l->loss_rows, sizeof(float) * (size_t)n);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += l->host_rows[i];
    st_loss_stats s = {.loss = (float)(sum / n), .active_fraction = 1.0f,
                       .accuracy = logits_accuracy(l, n, labels)};
    return s;
}

static st_loss_stats triplet(st_loss *l, int n) {
    st_model *m = l->model;
    st_backend *be = m->backend;
    const int on_embedding = m->config.embed_dim > 0;
    const float *input = on_embedding ? m->embedding.data : m->features.data;
    float *d_input = on_embedding ? m->d_embedding.data : m->d_features.data;
    st_triplet_desc d = {.n = n, .d = l->dim, .batch_all = l->config.batch_all,
                         .soft_margin = l->config.soft_margin, .margin = (float)l->config.margin,
                         .eps = 1e-12f};
    st_triplet_stats ts;
    if (l->config.normalize) {
        be->l2norm_forward(be, n, l->dim, input, l->normalized, l->norms, ST_LOSS_NORMALIZE_EPS);
        be->triplet_loss(be, &d, l->normalized, l->labels, l->dist, l->d_normalized, &ts);
        be->l2norm_backward(be, n, l->dim, l->normalized, l->norms, l->d_normalized, d_input);
    } else {
        be->triplet_loss(be, &d, input, l->labels, l->dist, d_input, &ts);
    }
    st_loss_stats s = {.loss = ts.loss, .accuracy = -1.0f, .active_fraction = ts.active_fraction,
                       .mean_pos = ts.mean_pos, .mean_neg = ts.mean_neg};
    return s;
}

st_loss_stats st_loss_compute(st_loss *l, int n, const int32_t *labels) {
    ST_CHECK(n > 0 && n <= l->rows, "loss: %d rows for a workspace of %d", n, l->rows);
    st_backend *be = l->model->backend;
    be->upload(be, l->labels, labels, sizeof(int32_t) * (size_t)n);
    return l->config.kind == ST_LOSS_XENT ? xent(l, n, labels) : triplet(l, n);
}
