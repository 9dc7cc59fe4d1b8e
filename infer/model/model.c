/*
 * model.c: the model's life cycle and walks (model.h): create (build, plan, lay out, init),
 * free, lookup by name, the forward walk over the steps, the backward walk in reverse from the
 * gradient the loss wrote down to the delimiting layer, and the refresh of folded weights.
 *
 * Each step belongs to a layer kind file (conv.c, bn.c, pool.c, add.c, dense.c, l2norm.c);
 * the walks dispatch on the kind. Gradient routing (backward): each step reads the gradient of
 * its materialized output and writes the gradient of each input that needs one; the first
 * consumer (in reverse order) of a tensor overwrites it, later consumers (the residual shortcut)
 * compute into the shared scratch and add it with axpy (step.accumulate, planned in memory.c).
 * Steps whose output needs no gradient are skipped: frozen layers cost nothing.
 * With m->profile set, each step is timed into the row of its kind (profile.c; convs time their
 * passes themselves in conv.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/check.h"
#include "layer.h"

/* ---- create / free / lookup ------------------------------------------------------------ */

/* Index of the delimiting layer; -1 for none; -2 with st_error_set on an unknown name. */
static int resolve_freeze(st_model *m, const char *freeze_until) {
    if (!freeze_until || strcmp(freeze_until, "none") == 0) return -1;
    if (strcmp(freeze_until, "all") == 0) return st_model_layer_index(m, "avg_pool") - 1;
    int idx = st_model_layer_index(m, freeze_until);
    if (idx >= 0) return idx;
    st_error_set("freeze_until: no layer '%s' in %s (HINT: 'none', 'all', or a layer name such "
                 "as conv4_block1_out; `simtune inspect` lists them)", freeze_until, m->arch->name);
    return -2;
}

static int validate_config(const st_model_config *cfg) {
    if (!st_arch_find(cfg->arch))
        return st_error_set("arch: unknown '%s' (expected one of %s)", cfg->arch ? cfg->arch : "(null)",
                            st_arch_names());
    if (cfg->height < 32 || cfg->width < 32)
        return st_error_set("input size %dx%d: each side must be >= 32", cfg->height, cfg->width);
    if (cfg->batch < 1) return st_error_set("batch %d: must be >= 1", cfg->batch);
    if (cfg->embed_dim < 0 || cfg->num_classes < 0)
        return st_error_set("embed_dim %d / num_classes %d: must be >= 0", cfg->embed_dim,
                            cfg->num_classes);
    if (cfg->training && !(cfg->bn_momentum >= 0 && cfg->bn_momentum <= 1))
        return st_error_set("bn_momentum %g: must be in [0, 1] (PyTorch convention, 0.1 usual)",
                            (double)cfg->bn_momentum);
    if (cfg->precision != ST_PRECISION_FP32 && cfg->precision != ST_PRECISION_BF16)
        return st_error_set("precision %d: must be fp32 or bf16", (int)cfg->precision);
    if (cfg->pool == ST_GPOOL_GEM && !(cfg->gem_p > 0))
        return st_error_set("gem_p %g: must be > 0", (double)cfg->gem_p);
    return 0;
}

/* Trainable: a training model's parameters above the delimiting layer, but BN moving
 * statistics, which are updated by forward, not by gradients. */
static void mark_trainable(st_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        p->trainable = m->config.training && p->layer_index > m->freeze_index &&
                       strncmp(p->weight, "moving_", 7) != 0;
    }
}

st_model *st_model_create(st_backend *be, const st_model_config *cfg, uint64_t seed) {
    if (validate_config(cfg) < 0) return NULL;
    st_model *m = ST_CALLOC(1, sizeof *m);
    m->config = *cfg;
    m->arch = st_arch_find(cfg->arch);
    m->backend = be;
    if (cfg->precision == ST_PRECISION_BF16 && !be->conv_bf16_supported(be)) {
        fprintf(stderr, "warning: precision bf16: the %s backend has no bf16 convolutions here "
                        "(a CPU needs AVX512_BF16, a CUDA device compute capability 8.0); computing in fp32\n",
                be->name);
        m->config.precision = ST_PRECISION_FP32;
    }
    m->params_arena.name = "params";
    m->grads_arena.name = "grads";
    m->acts_arena.name = "activations";
    st_model_build(m);
    m->freeze_index = resolve_freeze(m, cfg->freeze_until);
    if (m->freeze_index < -1) {
        st_model_free(m);
        return NULL;
    }
    mark_trainable(m);
    st_model_plan(m);
    st_model_layout_memory(m);
    st_model_init_params(m, seed);
    st_model_weights_changed(m);
    return m;
}

/* Tell the backend every conv kernel of m was written (freed 0) or is about to be freed (1),
 * so it drops what it derived from them (conv_weights_changed). */
static void conv_kernels_changed(st_model *m, int freed) {
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i || l->kind != ST_LAYER_CONV) continue;
        if (l->step.w) m->backend->conv_weights_changed(m->backend, l->step.w, freed);
        if (l->step.w_fold) m->backend->conv_weights_changed(m->backend, l->step.w_fold, freed);
    }
}

void st_model_free(st_model *m) {
    if (!m) return;
    if (m->layers) conv_kernels_changed(m, 1);
    st_arena_free(&m->params_arena);
    st_arena_free(&m->grads_arena);
    st_arena_free(&m->acts_arena);
    free(m->layers);
    free(m->params);
    free(m);
}

int st_model_layer_index(const st_model *m, const char *name) {
    for (int i = 0; i < m->n_layers; i++)
        if (name && strcmp(m->layers[i].name, name) == 0) return i;
    return -1;
}

const char *st_model_layer_name(const st_model *m, int index) {
    ST_CHECK(index >= 0 && index < m->n_layers, "layer index %d out of range [0, %d)", index, m->n_layers);
    return m->layers[index].name;
}

st_param *st_model_find_param(st_model *m, const char *layer, const char *weight) {
    int idx = st_model_layer_index(m, layer);
    if (idx < 0) return NULL;
    const st_layer *l = &m->layers[idx];
    for (int i = l->first_param; i < l->first_param + l->n_params; i++)
        if (strcmp(m->params[i].weight, weight) == 0) return &m->params[i];
    return NULL;
}

/* The output of a layer after the last forward. data is NULL when the layer's output is not
 * kept: fused inside a step (conv before its folded BN, BN before its ReLU, padding) or held in
 * a reused buffer (frozen trunk, inference models, outputs of the trainable part that backward
 * does not read, such as a BN without ReLU feeding a residual add). Kept: the outputs of the
 * trainable part that backward reads, the freeze_until layer, the head and the input. An
 * inference model (training == 0) is all frozen whatever freeze_until says, so freeze_until is
 * how a caller asks to keep one trunk layer's output (embed --layer conv4_block6_out). */
st_tensor st_model_layer_output(const st_model *m, int index) {
    ST_CHECK(index >= 0 && index < m->n_layers, "layer index %d out of range [0, %d)", index, m->n_layers);
    st_tensor t = m->layers[index].out;
    if (!m->layers[index].kept) t.data = NULL;
    ST_CHECK(!t.data || !m->layers[m->layers[index].exec].step.bf16_out,
             "layer %s is stored as bf16 (between bf16 convs and BNs), not as an FP32 map",
             m->layers[index].name);
    return t;
}

void st_model_weights_changed(st_model *m) {
    conv_kernels_changed(m, 0);
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].exec == i && m->layers[i].step.fold_bn >= 0)
            st_conv_step_fold(m, &m->layers[i]);
}

/* ---- helpers of the steps ------------------------------------------------------------- */

const st_layer *st_step_output(const st_model *m, const st_layer *l) {
    return &m->layers[l->step.last];
}

const st_layer *st_step_input(const st_model *m, const st_layer *l, int k) {
    return &m->layers[l->step.in_mat[k]];
}

size_t st_batch_numel(st_tensor t, int n) { return (size_t)n * t.h * t.w * t.c; }

int st_step_input_needs_grad(const st_model *m, const st_layer *l, int k) {
    return m->layers[st_step_input(m, l, k)->exec].step.needs_grad;
}

float *st_step_dx(const st_model *m, const st_layer *l, int k) {
    if (!st_step_input_needs_grad(m, l, k) || l->step.accumulate[k]) return l->step.scratch;
    return st_step_input(m, l, k)->grad;
}

void st_step_finish_dx(st_model *m, const st_layer *l, int k, int n) {
    if (!st_step_input_needs_grad(m, l, k) || !l->step.accumulate[k]) return;
    const st_layer *in = st_step_input(m, l, k);
    m->backend->axpy(m->backend, in->grad, 1.0f, l->step.scratch, st_batch_numel(in->out, n));
}

/* ---- the walks ------------------------------------------------------------------------ */

/* The profile row of a step's forward (backward: the next row); convs time their passes in
 * conv.c. */
static st_prof_row profile_row(st_layer_kind kind) {
    switch (kind) {
    case ST_LAYER_BN: return ST_PROF_BN_FWD;
    case ST_LAYER_ADD: return ST_PROF_ELTWISE_FWD;
    case ST_LAYER_MAXPOOL:
    case ST_LAYER_GPOOL: return ST_PROF_POOL_FWD;
    default: return ST_PROF_HEAD_FWD; /* dense, l2norm */
    }
}

static void forward_step(st_model *m, const st_layer *l, int n, int training) {
    switch (l->kind) {
    case ST_LAYER_INPUT: break;
    case ST_LAYER_CONV: st_conv_step_forward(m, l, n); break;
    case ST_LAYER_BN: st_bn_step_forward(m, l, n, training); break;
    case ST_LAYER_ADD: st_add_step_forward(m, l, n); break;
    case ST_LAYER_MAXPOOL:
    case ST_LAYER_GPOOL: st_pool_step_forward(m, l, n); break;
    case ST_LAYER_DENSE: st_dense_step_forward(m, l, n); break;
    case ST_LAYER_L2NORM: st_l2norm_step_forward(m, l, n); break;
    default: ST_FAIL("%s: layer kind %d has no step", l->name, (int)l->kind);
    }
}

void st_model_forward(st_model *m, int n, int training) {
    ST_CHECK(n >= 1 && n <= m->config.batch, "forward on %d images, model sized for %d", n, m->config.batch);
    ST_CHECK(!training || m->config.training, "training forward on a model built for inference");
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i || l->kind == ST_LAYER_INPUT) continue;
        if (l->kind == ST_LAYER_CONV) { /* times itself */
            forward_step(m, l, n, training);
            continue;
        }
        st_profile_mark mark = st_profile_begin(m);
        forward_step(m, l, n, training);
        st_profile_end(m, profile_row(l->kind), mark);
    }
}

static void backward_step(st_model *m, const st_layer *l, int n) {
    ST_CHECK(st_step_output(m, l)->grad, "%s: no gradient buffer for %s", l->name,
             st_step_output(m, l)->name);
    switch (l->kind) {
    case ST_LAYER_CONV: st_conv_step_backward(m, l, n); break;
    case ST_LAYER_BN: st_bn_step_backward(m, l, n); break;
    case ST_LAYER_ADD: st_add_step_backward(m, l, n); break;
    case ST_LAYER_MAXPOOL:
    case ST_LAYER_GPOOL: st_pool_step_backward(m, l, n); break;
    case ST_LAYER_DENSE: st_dense_step_backward(m, l, n); break;
    case ST_LAYER_L2NORM: st_l2norm_step_backward(m, l, n); break;
    default: ST_FAIL("%s: layer kind %d has no backward", l->name, (int)l->kind);
    }
}

void st_model_backward(st_model *m, int n) {
    ST_CHECK(m->config.training,
             "backward on a model built for inference (it has no gradient memory)");
    ST_CHECK(n >= 1 && n <= m->config.batch, "backward on %d images, model sized for %d", n,
             m->config.batch);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i || !l->step.needs_grad) continue;
        if (l->kind == ST_LAYER_CONV) { /* times its passes */
            backward_step(m, l, n);
            continue;
        }
        st_profile_mark mark = st_profile_begin(m);
        backward_step(m, l, n);
        st_profile_end(m, profile_row(l->kind) + 1, mark);
    }
}
