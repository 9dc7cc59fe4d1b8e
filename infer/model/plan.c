/*
 * plan.c: fusion of the layer sequence into steps, and the steps' descriptors (layer.h).
 *
 * A step is one backend call (or a few for the residual add) owned by its compute layer, the
 * layer with exec == own index. Weightless neighbours fuse into it: a ZeroPadding2D into the
 * conv or max-pool after it, a ReLU into the BN or add before it (the only reader of its
 * output), a frozen BN into the frozen conv before it (weights folded, conv.c). In a model
 * built with training == 0 every layer is frozen, so every conv+BN pair is folded.
 * Then each step gets its descriptor (conv, pool, global pool, BN epsilon), whether it trains
 * and whether its output needs a gradient, which BNs read their gradient through the residual
 * add after them, in a bf16 model which activations and conv gradients stay bf16 between convs
 * and BNs, and each conv its full-batch plan (made here, before the arenas are sized, so that a
 * parameter's storage size may depend on it: param.c).
 */
#include <stdlib.h>

#include "../../kernels/check.h"
#include "layer.h"

static int count_consumers(const st_model *m, int layer) {
    int n = 0;
    for (int i = layer + 1; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i].n_in; k++) n += m->layers[i].in[k] == layer;
    return n;
}

/* The next layer fuses into `layer` when it is of `kind` and the only reader of its output. */
static int fusable_next(const st_model *m, int layer, st_layer_kind kind) {
    int next = layer + 1;
    return next < m->n_layers && m->layers[next].kind == kind && m->layers[next].in[0] == layer &&
           count_consumers(m, layer) == 1;
}

static int is_frozen(const st_model *m, int layer) {
    return !m->config.training || layer <= m->freeze_index;
}

static int resolve_padding(const st_model *m, int layer) {
    return m->layers[layer].kind == ST_LAYER_ZEROPAD ? m->layers[layer].in[0] : layer;
}

static void plan_steps(st_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        if (l->exec >= 0) continue; /* fused into an earlier step */
        switch (l->kind) {
        case ST_LAYER_ZEROPAD:
            ST_CHECK(i + 1 < m->n_layers && m->layers[i + 1].in[0] == i &&
                         (m->layers[i + 1].kind == ST_LAYER_CONV || m->layers[i + 1].kind == ST_LAYER_MAXPOOL),
                     "%s: padding must feed a conv or max-pool", l->name);
            l->exec = i + 1;
            continue;
        case ST_LAYER_RELU:
            ST_FAIL("%s: a ReLU that follows neither a BN nor an add cannot be fused", l->name);
        default:
            break;
        }
        l->exec = i;
        st_step *s = &l->step;
        s->last = i;
        if (l->kind == ST_LAYER_CONV && fusable_next(m, i, ST_LAYER_BN) && is_frozen(m, i) &&
            is_frozen(m, i + 1)) {
            s->fold_bn = i + 1;
            s->last = i + 1;
            m->layers[i + 1].exec = i;
        }
        if ((l->kind == ST_LAYER_BN || l->kind == ST_LAYER_ADD || s->fold_bn >= 0) &&
            fusable_next(m, s->last, ST_LAYER_RELU)) {
            m->layers[s->last + 1].exec = i;
            s->last++;
            s->relu = 1;
        }
        s->n_in = l->n_in;
        for (int k = 0; k < l->n_in; k++) s->in_mat[k] = resolve_padding(m, l->in[k]);
    }
    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        if (l->exec == i) m->layers[l->step.last].materialized = 1;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i) continue;
        for (int k = 0; k < s->n_in; k++)
            ST_CHECK(m->layers[s->in_mat[k]].materialized, "%s reads %s, which is fused away",
                     m->layers[i].name, m->layers[s->in_mat[k]].name);
    }
}

/* Descriptors and the trainability of each step. */
static void describe_steps(st_model *m) {
    const st_model_config *cfg = &m->config;
    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        st_step *s = &l->step;
        const st_tensor x = s->n_in ? m->layers[s->in_mat[0]].out : l->out;
        const st_layer *pad = (l->in[0] >= 0 && m->layers[l->in[0]].kind == ST_LAYER_ZEROPAD)
                                  ? &m->layers[l->in[0]] : NULL;
        int p = pad ? pad->geom.pad : l->geom.pad;
        switch (l->kind) {
        case ST_LAYER_CONV:
            s->conv = (st_conv_desc){.n = x.n, .h = x.h, .w = x.w, .c = x.c, .k = l->geom.filters,
                                     .r = l->geom.kernel, .s = l->geom.kernel,
                                     .stride_h = l->geom.stride, .stride_w = l->geom.stride,
                                     .pad_top = p, .pad_bottom = p, .pad_left = p, .pad_right = p,
                                     .relu = s->relu,
                                     .bf16 = cfg->precision == ST_PRECISION_BF16};
            st_conv_desc_finish(&s->conv);
            ST_CHECK(s->conv.p == l->out.h && s->conv.q == l->out.w, "%s: shape mismatch", l->name);
            if (s->fold_bn >= 0) s->bn_eps = m->layers[s->fold_bn].geom.eps;
            break;
        case ST_LAYER_BN:
            s->bn_eps = l->geom.eps;
            break;
        case ST_LAYER_MAXPOOL:
            s->pool = (st_pool_desc){.n = x.n, .h = x.h, .w = x.w, .c = x.c, .r = l->geom.kernel,
                                     .s = l->geom.kernel, .stride_h = l->geom.stride,
                                     .stride_w = l->geom.stride, .pad_top = p, .pad_bottom = p,
                                     .pad_left = p, .pad_right = p, .pad_with_zero = 1};
            st_pool_desc_finish(&s->pool);
            ST_CHECK(s->pool.p == l->out.h && s->pool.q == l->out.w, "%s: shape mismatch", l->name);
            break;
        case ST_LAYER_GPOOL:
            s->gpool = (st_gpool_desc){.n = x.n, .hw = x.h * x.w, .c = x.c, .kind = cfg->pool,
                                       .p = cfg->gem_p, .eps = 1e-6f};
            break;
        default:
            break;
        }
        /* A step trains when its compute layer has parameters and is not frozen; a folded
         * conv is frozen by construction. */
        s->trains = l->n_params > 0 && !is_frozen(m, i);
        s->needs_grad = s->trains;
        for (int k = 0; k < s->n_in; k++)
            if (m->layers[m->layers[s->in_mat[k]].exec].step.needs_grad) s->needs_grad = 1;
    }
}

/* A BN without ReLU whose output only a residual add reads takes its upstream gradient from
 * the add (step.grad_via_add): the add's gradient reaches its inputs unchanged but for the
 * add's ReLU mask, which the add applies in place, so the BN's backward reads the add's output
 * gradient directly and the add copies no gradient for it: 10 tensor-sized reads and writes
 * per block instead of 12, 13 instead of 17 with a projection shortcut (docs/benchmarks.md). */
static void route_add_gradients(st_model *m) {
    for (int i = 0; i < m->n_layers; i++) m->layers[i].step.grad_via_add = -1;
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *add = &m->layers[i];
        if (add->exec != i || add->kind != ST_LAYER_ADD) continue;
        for (int k = 0; k < add->step.n_in; k++) {
            int in = add->step.in_mat[k];
            st_layer *src = &m->layers[m->layers[in].exec];
            if (src->kind == ST_LAYER_BN && !src->step.relu && count_consumers(m, in) == 1)
                src->step.grad_via_add = i;
        }
    }
}

/* The step index of every reader of layer `out` (materialized), *n of them (caller frees). */
static int *step_readers(const st_model *m, int out, int *n) {
    int *readers = ST_MALLOC((size_t)m->n_layers * sizeof(int));
    *n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i) continue;
        for (int k = 0; k < s->n_in; k++)
            if (s->in_mat[k] == out) readers[(*n)++] = i;
    }
    return readers;
}

static int is_bf16_conv(const st_model *m, int step) {
    const st_layer *l = &m->layers[step];
    return l->kind == ST_LAYER_CONV && l->step.conv.bf16;
}

/* Steps that read their input as bf16 when asked: bf16 convs (x_bf16) and BNs (bf16_in). */
static int reads_bf16(const st_model *m, int step) {
    return is_bf16_conv(m, step) || m->layers[step].kind == ST_LAYER_BN;
}

/* A BN or bf16 conv whose output only bf16 convs and BNs read writes it as bf16 for them
 * (bf16_out; the readers' x_bf16 / bf16_in): they need no copy of it, and a kept activation is
 * half the bytes. */
static void plan_bf16_output(st_model *m, int step) {
    int n, *readers = step_readers(m, m->layers[step].step.last, &n);
    int all = n > 0;
    for (int r = 0; r < n; r++) all &= reads_bf16(m, readers[r]);
    st_step *s = &m->layers[step].step;
    s->bf16_out = all;
    s->conv.y_bf16 = all && m->layers[step].kind == ST_LAYER_CONV;
    for (int r = 0; r < n && all; r++) {
        st_step *reader = &m->layers[readers[r]].step;
        if (m->layers[readers[r]].kind == ST_LAYER_BN) reader->bf16_in = 1;
        else reader->conv.x_bf16 = 1;
    }
    free(readers);
}

/* A BN that alone reads a bf16 conv's output writes that conv's dy as bf16 (bf16_dx, dy_bf16)
 * when the conv's backward runs: it needs no copy of dy. */
static void plan_bf16_dx(st_model *m, int bn) {
    st_step *s = &m->layers[bn].step;
    int in = s->in_mat[0], conv = m->layers[in].exec;
    if (count_consumers(m, in) != 1 || !s->needs_grad || !is_bf16_conv(m, conv) ||
        !m->layers[conv].step.needs_grad)
        return;
    s->bf16_dx = 1;
    m->layers[conv].step.conv.dy_bf16 = 1;
}

/* bf16 models: the activations and gradients that pass between convs and BNs stay bf16
 * (docs/benchmarks.md, "bf16 between convs and BNs"); adds, pools and the head read FP32, and so
 * does whoever reads the delimiting layer's map (st_model_layer_output: `embed --layer`). */
static void plan_bf16_operands(st_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        if ((l->kind == ST_LAYER_BN || is_bf16_conv(m, i)) && l->step.last != m->freeze_index)
            plan_bf16_output(m, i);
        if (l->kind == ST_LAYER_BN) plan_bf16_dx(m, i);
    }
}

/* The full-batch conv plans. */
static void plan_convs(st_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        st_step *s = &m->layers[i].step;
        if (m->layers[i].exec == i && m->layers[i].kind == ST_LAYER_CONV)
            s->plan = m->backend->conv_plan(m->backend, &s->conv);
    }
}

void st_model_plan(st_model *m) {
    plan_steps(m);
    describe_steps(m);
    route_add_gradients(m);
    plan_bf16_operands(m);
    plan_convs(m);
}
