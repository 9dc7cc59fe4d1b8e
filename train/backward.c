/*
 * backward.c: reverse walk over the model's steps (infer/layer.h), from the gradient the loss
 * wrote (backward.h) down to the delimiting layer.
 *
 * Each step reads the gradient of its materialized output (layers[step.last].grad) and writes the
 * gradient of each input that needs one. The first consumer (in reverse order) of a tensor
 * overwrites its gradient; later consumers (the residual shortcut) compute into the shared
 * scratch and add it with axpy (step.accumulate, planned in infer/resnet.c). Parameter gradients
 * are overwritten. Steps whose output needs no gradient are skipped: frozen layers cost nothing.
 */
#include "backward.h"

#include "../infer/layer.h"
#include "../kernels/check.h"

static size_t batch_numel(const st_tensor t, int n) { return (size_t)n * t.h * t.w * t.c; }

/* Input k of step s needs its gradient when the step that produced it needs one. */
static int input_needs_grad(const st_model *m, const st_step *s, int k) {
    const st_layer *in = &m->layers[s->in_mat[k]];
    return m->layers[in->exec].step.needs_grad;
}

/* Where a step writes the gradient of input k: the input's own buffer, or the scratch when the
 * value must be added to another consumer's part (or nobody reads it). */
static float *dx_target(const st_model *m, const st_step *s, int k) {
    if (!input_needs_grad(m, s, k) || s->accumulate[k]) return s->scratch;
    return m->layers[s->in_mat[k]].grad;
}

static void finish_dx(st_model *m, const st_step *s, int k, int n) {
    if (!input_needs_grad(m, s, k) || !s->accumulate[k]) return;
    const st_layer *in = &m->layers[s->in_mat[k]];
    m->backend->axpy(m->backend, in->grad, 1.0f, s->scratch, batch_numel(in->out, n));
}

static void backward_conv(st_model *m, const st_step *s, const float *x, const float *dy, int n) {
    st_backend *be = m->backend;
    st_conv_desc d = s->conv;
    st_conv_plan *plan = s->plan;
    if (d.n != n) {
        d.n = n;
        plan = be->conv_plan(be, &d);
    }
    if (s->trains) be->conv_backward_filter(be, plan, x, dy, s->dw, s->db);
    if (input_needs_grad(m, s, 0)) {
        be->conv_backward_data(be, plan, dy, s->w, dx_target(m, s, 0));
        finish_dx(m, s, 0, n);
    }
}

static void backward_add(st_model *m, const st_step *s, const st_tensor y, const float *dy, int n) {
    st_backend *be = m->backend;
    size_t count = batch_numel(y, n);
    const float *dsum = dy;
    if (s->relu) {
        be->relu_backward(be, y.data, dy, s->scratch, count);
        dsum = s->scratch;
    }
    for (int k = 0; k < 2; k++) {
        if (!input_needs_grad(m, s, k)) continue;
        float *dx = m->layers[s->in_mat[k]].grad;
        if (s->accumulate[k])
            be->axpy(be, dx, 1.0f, dsum, count);
        else
            be->copy(be, dx, dsum, count * sizeof(float));
    }
}

static void backward_step(st_model *m, const st_layer *l, int n) {
    st_backend *be = m->backend;
    const st_step *s = &l->step;
    const st_layer *out = &m->layers[s->last];
    const st_tensor y = out->out;
    const float *dy = out->grad;
    const st_tensor xt = m->layers[s->in_mat[0]].out;
    const float *x = xt.data;
    ST_CHECK(dy, "%s: no gradient buffer for %s", l->name, out->name);
    switch (l->kind) {
    case ST_LAYER_CONV:
        backward_conv(m, s, x, dy, n);
        break;
    case ST_LAYER_BN: {
        ST_CHECK(s->trains, "%s: gradient through a frozen BN below a trainable layer", l->name);
        st_bn_desc d = {.rows = (long)n * y.h * y.w, .c = y.c, .eps = s->bn_eps,
                        .momentum = m->config.bn_momentum, .relu = s->relu};
        be->bn_backward(be, &d, x, s->relu ? y.data : NULL, dy, s->gamma, s->save_mean,
                        s->save_rstd, dx_target(m, s, 0), s->dgamma, s->dbeta);
        finish_dx(m, s, 0, n);
        break;
    }
    case ST_LAYER_ADD:
        backward_add(m, s, y, dy, n);
        break;
    case ST_LAYER_MAXPOOL: {
        st_pool_desc d = s->pool;
        d.n = n;
        be->maxpool_backward(be, &d, x, y.data, dy, dx_target(m, s, 0));
        finish_dx(m, s, 0, n);
        break;
    }
    case ST_LAYER_GPOOL: {
        st_gpool_desc d = s->gpool;
        d.n = n;
        be->gpool_backward(be, &d, x, y.data, dy, dx_target(m, s, 0));
        finish_dx(m, s, 0, n);
        break;
    }
    case ST_LAYER_DENSE:
        ST_CHECK(s->trains, "%s: gradient through a frozen dense layer below a trainable one", l->name);
        be->dense_backward(be, n, xt.c, y.c, x, s->w, dy,
                           input_needs_grad(m, s, 0) ? dx_target(m, s, 0) : NULL, s->dw, s->db);
        finish_dx(m, s, 0, n);
        break;
    case ST_LAYER_L2NORM:
        be->l2norm_backward(be, n, y.c, y.data, s->norms, dy, dx_target(m, s, 0));
        finish_dx(m, s, 0, n);
        break;
    default:
        ST_FAIL("%s: layer kind %d has no backward", l->name, (int)l->kind);
    }
}

void st_model_backward(st_model *m, int n) {
    ST_CHECK(m->config.training, "backward on a model built for inference");
    ST_CHECK(n >= 1 && n <= m->config.batch, "backward on %d images, model sized for %d", n,
             m->config.batch);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const st_layer *l = &m->layers[i];
        if (l->exec == i && l->step.needs_grad) backward_step(m, l, n);
    }
}
