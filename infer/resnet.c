/*
 * resnet.c: builds the ResNet family as a sequence of Keras-named layers (model.h, layer.h),
 * lays its memory out in the arenas, initialises the parameters and runs the forward pass.
 *
 * Families (docs/resnet-weights-hdf5.md sections 2, 5, 6):
 *   Keras v1      conv1_pad, conv1_conv, conv1_bn, conv1_relu, pool1_pad, pool1_pool, then
 *                 bottleneck blocks with the stride on the first 1x1 conv and on the shortcut
 *                 conv (_0_conv), conv biases everywhere, <p>_add + <p>_out (ReLU).
 *   Keras v2      pre-activation: conv1 without BN, zero-padded max-pool (pitfall 6.2), blocks
 *                 <p>_preact_bn/_preact_relu, stride in the 3x3 conv of a stage's LAST block with
 *                 a 1x1 max-pool shortcut (Keras auto names max_pooling2d, max_pooling2d_1, ...),
 *                 <p>_2_pad, <p>_out = add without ReLU, post_bn + post_relu.
 *   torchvision   v1.5 (stride on the 3x3) bottlenecks or BasicBlocks, no conv biases, mapped
 *                 onto the Keras names (section 5.3); the stem has conv1_pad/pool1_pad layers too.
 * Head per st_model_config: avg_pool (global avg/max/GeM), embedding (dense D) + embedding_norm
 * (L2), predictions (dense K logits). Each reads the previous head output.
 *
 * Freezing: layers [0, freeze_index] are frozen. A frozen conv followed by its frozen BN runs as
 * one conv with folded weights (w_fold, b_fold in the params arena); in a model built with
 * training == 0 every conv+BN pair is folded. Frozen BNs always use the moving statistics.
 *
 * Parameter memory order: frozen values and BN moving statistics, then trainable values (one
 * contiguous slice, mirrored in the grads arena), then folded copies.
 * Caller: commands (embed, train, eval, demo, bench), train/backward.c, tests.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/rng.h"
#include "../kernels/check.h"
#include "layer.h"

/* ---- building the layer sequence ------------------------------------------------------ */

typedef struct builder {
    st_model *m;
    int cap_layers, cap_params;
    float bn_eps;
} builder;

static int add_layer(builder *b, st_layer_kind kind, const char *name, int in0, int in1) {
    st_model *m = b->m;
    if (m->n_layers == b->cap_layers) {
        b->cap_layers = b->cap_layers ? 2 * b->cap_layers : 256;
        m->layers = realloc(m->layers, (size_t)b->cap_layers * sizeof *m->layers);
        ST_CHECK(m->layers, "out of memory growing the layer table");
    }
    int idx = m->n_layers++;
    st_layer *l = &m->layers[idx];
    memset(l, 0, sizeof *l);
    ST_CHECK(strlen(name) < ST_LAYER_NAME_MAX, "layer name too long: %s", name);
    strcpy(l->name, name);
    l->kind = kind;
    l->in[0] = in0;
    l->in[1] = in1;
    l->n_in = (in0 >= 0) + (in1 >= 0);
    l->exec = -1;
    l->first_param = m->n_params;
    l->step.in_mat[0] = l->step.in_mat[1] = -1;
    l->step.fold_bn = -1;
    if (in0 >= 0) l->out = m->layers[in0].out;
    return idx;
}

static void add_param(builder *b, int layer, const char *weight, int rank, int d0, int d1, int d2,
                      int d3) {
    st_model *m = b->m;
    if (m->n_params == b->cap_params) {
        b->cap_params = b->cap_params ? 2 * b->cap_params : 512;
        m->params = realloc(m->params, (size_t)b->cap_params * sizeof *m->params);
        ST_CHECK(m->params, "out of memory growing the parameter table");
    }
    st_param *p = &m->params[m->n_params++];
    memset(p, 0, sizeof *p);
    p->weight = weight;
    p->rank = rank;
    int dims[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < rank; i++) {
        p->dims[i] = dims[i];
        p->numel *= (size_t)dims[i];
    }
    p->layer_index = layer;
    m->layers[layer].n_params++;
}

static int add_input(builder *b, int n, int h, int w) {
    int idx = add_layer(b, ST_LAYER_INPUT, "input_1", -1, -1);
    b->m->layers[idx].out = st_tensor_4d(n, h, w, 3);
    return idx;
}

static int add_pad(builder *b, const char *name, int in, int amount) {
    int idx = add_layer(b, ST_LAYER_ZEROPAD, name, in, -1);
    st_layer *l = &b->m->layers[idx];
    l->geom.pad = amount;
    l->out.h += 2 * amount;
    l->out.w += 2 * amount;
    return idx;
}

static int window_out(int in, int window, int stride, int pad) {
    ST_CHECK(in + 2 * pad >= window, "window %d larger than the padded input %d", window, in + 2 * pad);
    return (in + 2 * pad - window) / stride + 1;
}

static int add_conv(builder *b, const char *name, int in, int filters, int kernel, int stride,
                    int pad, int bias) {
    int idx = add_layer(b, ST_LAYER_CONV, name, in, -1);
    st_layer *l = &b->m->layers[idx];
    int cin = l->out.c;
    l->geom = (st_layer_geom){filters, kernel, stride, pad, bias, 0.0f};
    l->out.h = window_out(l->out.h, kernel, stride, pad);
    l->out.w = window_out(l->out.w, kernel, stride, pad);
    l->out.c = filters;
    add_param(b, idx, "kernel", 4, kernel, kernel, cin, filters);
    if (bias) add_param(b, idx, "bias", 1, filters, 0, 0, 0);
    return idx;
}

static int add_bn(builder *b, const char *name, int in) {
    int idx = add_layer(b, ST_LAYER_BN, name, in, -1);
    int c = b->m->layers[idx].out.c;
    b->m->layers[idx].geom.eps = b->bn_eps;
    add_param(b, idx, "gamma", 1, c, 0, 0, 0);
    add_param(b, idx, "beta", 1, c, 0, 0, 0);
    add_param(b, idx, "moving_mean", 1, c, 0, 0, 0);
    add_param(b, idx, "moving_variance", 1, c, 0, 0, 0);
    return idx;
}

static int add_relu(builder *b, const char *name, int in) {
    return add_layer(b, ST_LAYER_RELU, name, in, -1);
}

static int add_maxpool(builder *b, const char *name, int in, int kernel, int stride) {
    int idx = add_layer(b, ST_LAYER_MAXPOOL, name, in, -1);
    st_layer *l = &b->m->layers[idx];
    l->geom.kernel = kernel;
    l->geom.stride = stride;
    l->out.h = window_out(l->out.h, kernel, stride, 0);
    l->out.w = window_out(l->out.w, kernel, stride, 0);
    return idx;
}

static int add_add(builder *b, const char *name, int a, int c) {
    const st_tensor ta = b->m->layers[a].out, tc = b->m->layers[c].out;
    ST_CHECK(ta.h == tc.h && ta.w == tc.w && ta.c == tc.c, "%s: branch shapes differ", name);
    return add_layer(b, ST_LAYER_ADD, name, a, c);
}

static int add_dense(builder *b, const char *name, int in, int units) {
    int idx = add_layer(b, ST_LAYER_DENSE, name, in, -1);
    st_layer *l = &b->m->layers[idx];
    int fan_in = l->out.c;
    l->geom.filters = units;
    l->out.c = units;
    add_param(b, idx, "kernel", 2, fan_in, units, 0, 0);
    add_param(b, idx, "bias", 1, units, 0, 0, 0);
    return idx;
}

/* name = prefix + suffix, e.g. "conv2_block1" + "_0_conv"; names are short by construction. */
static void join_name(char name[ST_LAYER_NAME_MAX], const char *prefix, const char *suffix) {
    size_t a = strlen(prefix), b = strlen(suffix);
    ST_CHECK(a + b < ST_LAYER_NAME_MAX, "layer name too long: %s%s", prefix, suffix);
    memcpy(name, prefix, a);
    memcpy(name + a, suffix, b + 1);
}

/* A conv followed by its BN (and ReLU): the unit every family is made of. */
static int conv_bn(builder *b, const char *prefix, int in, int filters, int kernel, int stride,
                   int pad, int bias, int relu) {
    char name[ST_LAYER_NAME_MAX];
    join_name(name, prefix, "_conv");
    int x = add_conv(b, name, in, filters, kernel, stride, pad, bias);
    join_name(name, prefix, "_bn");
    x = add_bn(b, name, x);
    if (relu) {
        join_name(name, prefix, "_relu");
        x = add_relu(b, name, x);
    }
    return x;
}

/* Keras v1 bottleneck (section 2.2): stride on the first 1x1 and the shortcut, biases. */
static int block_keras_v1(builder *b, const char *p, int x, int filters, int stride, int shortcut_conv) {
    char name[ST_LAYER_NAME_MAX];
    int shortcut = x;
    if (shortcut_conv) {
        join_name(name, p, "_0");
        shortcut = conv_bn(b, name, x, 4 * filters, 1, stride, 0, 1, 0);
    }
    join_name(name, p, "_1");
    int y = conv_bn(b, name, x, filters, 1, stride, 0, 1, 1);
    join_name(name, p, "_2");
    y = conv_bn(b, name, y, filters, 3, 1, 1, 1, 1);
    join_name(name, p, "_3");
    y = conv_bn(b, name, y, 4 * filters, 1, 1, 0, 1, 0);
    join_name(name, p, "_add");
    y = add_add(b, name, shortcut, y);
    join_name(name, p, "_out");
    return add_relu(b, name, y);
}

/* torchvision v1.5 bottleneck or BasicBlock (section 5.1), no conv biases, Keras names. */
static int block_torchvision(builder *b, const char *p, int x, int filters, int stride,
                             int shortcut_conv, int bottleneck) {
    char name[ST_LAYER_NAME_MAX];
    int out_c = bottleneck ? 4 * filters : filters;
    int shortcut = x;
    if (shortcut_conv) {
        join_name(name, p, "_0");
        shortcut = conv_bn(b, name, x, out_c, 1, stride, 0, 0, 0);
    }
    int y;
    if (bottleneck) {
        join_name(name, p, "_1");
        y = conv_bn(b, name, x, filters, 1, 1, 0, 0, 1);
        join_name(name, p, "_2");
        y = conv_bn(b, name, y, filters, 3, stride, 1, 0, 1);
        join_name(name, p, "_3");
        y = conv_bn(b, name, y, out_c, 1, 1, 0, 0, 0);
    } else {
        join_name(name, p, "_1");
        y = conv_bn(b, name, x, filters, 3, stride, 1, 0, 1);
        join_name(name, p, "_2");
        y = conv_bn(b, name, y, filters, 3, 1, 1, 0, 0);
    }
    join_name(name, p, "_add");
    y = add_add(b, name, shortcut, y);
    join_name(name, p, "_out");
    return add_relu(b, name, y);
}

/* Keras v2 pre-activation block (section 2.3). */
static int block_keras_v2(builder *b, const char *p, int x, int filters, int stride,
                          int shortcut_conv, int *n_shortcut_pools) {
    char name[ST_LAYER_NAME_MAX];
    join_name(name, p, "_preact_bn");
    int preact = add_bn(b, name, x);
    join_name(name, p, "_preact_relu");
    preact = add_relu(b, name, preact);
    int shortcut = x;
    if (shortcut_conv) {
        join_name(name, p, "_0_conv");
        shortcut = add_conv(b, name, preact, 4 * filters, 1, stride, 0, 1);
    }
    join_name(name, p, "_1");
    int y = conv_bn(b, name, preact, filters, 1, 1, 0, 0, 1);
    join_name(name, p, "_2_pad");
    y = add_pad(b, name, y, 1);
    join_name(name, p, "_2");
    y = conv_bn(b, name, y, filters, 3, stride, 0, 0, 1);
    join_name(name, p, "_3_conv");
    y = add_conv(b, name, y, 4 * filters, 1, 1, 0, 1);
    if (!shortcut_conv && stride > 1) {
        if (*n_shortcut_pools == 0)
            snprintf(name, sizeof name, "max_pooling2d");
        else
            snprintf(name, sizeof name, "max_pooling2d_%d", *n_shortcut_pools);
        (*n_shortcut_pools)++;
        shortcut = add_maxpool(b, name, x, 1, stride);
    }
    join_name(name, p, "_out");
    return add_add(b, name, shortcut, y);
}

static int build_trunk(builder *b, const st_arch_info *arch) {
    st_model *m = b->m;
    const st_model_config *cfg = &m->config;
    int x = add_input(b, cfg->batch, cfg->height, cfg->width);
    x = add_pad(b, "conv1_pad", x, 3);
    if (arch->family == ST_FAMILY_KERAS_V2) {
        x = add_conv(b, "conv1_conv", x, 64, 7, 2, 0, 1);
    } else {
        x = conv_bn(b, "conv1", x, 64, 7, 2, 0, arch->family == ST_FAMILY_KERAS_V1, 1);
    }
    x = add_pad(b, "pool1_pad", x, 1);
    x = add_maxpool(b, "pool1_pool", x, 3, 2);

    int n_shortcut_pools = 0;
    for (int stage = 0; stage < 4; stage++) {
        int filters = 64 << stage;
        for (int blk = 0; blk < arch->blocks[stage]; blk++) {
            char p[ST_LAYER_NAME_MAX];
            snprintf(p, sizeof p, "conv%d_block%d", stage + 2, blk + 1);
            if (arch->family == ST_FAMILY_KERAS_V1) {
                int stride = (blk == 0 && stage > 0) ? 2 : 1;
                x = block_keras_v1(b, p, x, filters, stride, blk == 0);
            } else if (arch->family == ST_FAMILY_TORCHVISION) {
                int stride = (blk == 0 && stage > 0) ? 2 : 1;
                int shortcut_conv = blk == 0 && (stage > 0 || arch->bottleneck);
                x = block_torchvision(b, p, x, filters, stride, shortcut_conv, arch->bottleneck);
            } else {
                int last = blk == arch->blocks[stage] - 1;
                int stride = (last && stage < 3) ? 2 : 1;
                x = block_keras_v2(b, p, x, filters, stride, blk == 0, &n_shortcut_pools);
            }
        }
    }
    if (arch->family == ST_FAMILY_KERAS_V2) {
        x = add_bn(b, "post_bn", x);
        x = add_relu(b, "post_relu", x);
    }
    return x;
}

static void build_head(builder *b, int x) {
    st_model *m = b->m;
    const st_model_config *cfg = &m->config;
    int pool = add_layer(b, ST_LAYER_GPOOL, "avg_pool", x, -1);
    st_layer *l = &m->layers[pool];
    l->out = st_tensor_4d(cfg->batch, 1, 1, l->out.c);
    x = pool;
    if (cfg->embed_dim > 0) {
        x = add_dense(b, "embedding", x, cfg->embed_dim);
        x = add_layer(b, ST_LAYER_L2NORM, "embedding_norm", x, -1);
    }
    if (cfg->num_classes > 0) add_dense(b, "predictions", x, cfg->num_classes);
}

/* ---- fusion into steps ------------------------------------------------------------------ */

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
                                     .relu = s->relu};
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

/* ---- memory -------------------------------------------------------------------------- */

/* Reuse plan of the activations that need not survive the step that reads them last:
 * uniform blocks ("slots") handed out and returned in execution order. */
typedef struct slot_plan {
    int *slot_of;      /* per layer: slot index of its output, -1 when kept or absent */
    int *inplace_of;   /* per layer: the add that overwrites its output in place, -1 none */
    int n_slots;
    size_t slot_numel;
    int *gslot_of;     /* per layer: gradient slot, -1 when dedicated or absent */
    int n_gslots;
    size_t gslot_numel;
    size_t scratch_numel; /* backward: one extra gradient-sized buffer (accumulation, unused dx) */
} slot_plan;

static int is_head(const st_layer *l) {
    return l->kind == ST_LAYER_GPOOL || l->kind == ST_LAYER_DENSE || l->kind == ST_LAYER_L2NORM;
}

/* Which forward values the backward of a step reads (train/backward.c): its inputs (x) and its
 * output (y). Only these must outlive the forward pass; everything else goes to reused slots.
 * A BN without ReLU feeding a residual add is the big case: neither the BN's backward (x only)
 * nor the add's (y only, for the ReLU mask) reads it, and it is about a quarter of a ResNet's
 * activations. */
static void backward_reads(const st_layer *l, int *reads_x, int *reads_y) {
    const st_step *s = &l->step;
    switch (l->kind) {
    case ST_LAYER_CONV: /* x for the filter gradient; the data gradient needs only weights */
        *reads_x = s->trains;
        *reads_y = 0;
        break;
    case ST_LAYER_BN: /* x for the normalised values; y for the fused ReLU's mask */
        *reads_x = 1;
        *reads_y = s->relu;
        break;
    case ST_LAYER_ADD: /* the gradient passes through unchanged but for the ReLU's mask */
        *reads_x = 0;
        *reads_y = s->relu;
        break;
    case ST_LAYER_DENSE:
        *reads_x = 1;
        *reads_y = 0;
        break;
    case ST_LAYER_L2NORM:
        *reads_x = 0;
        *reads_y = 1;
        break;
    default: /* pools: the argmax / the pooled value */
        *reads_x = *reads_y = 1;
        break;
    }
}

static void mark_kept(st_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        const st_step *s = &l->step;
        st_layer *out = &m->layers[s->last];
        if (l->kind == ST_LAYER_INPUT || is_head(l) || s->last == m->freeze_index) out->kept = 1;
        if (!s->needs_grad) continue;
        int reads_x, reads_y;
        backward_reads(l, &reads_x, &reads_y);
        if (reads_y) out->kept = 1;
        for (int k = 0; k < s->n_in && reads_x; k++) m->layers[s->in_mat[k]].kept = 1;
    }
}

static int slot_take(int *free_list, int *n_free, int *n_slots) {
    return *n_free ? free_list[--*n_free] : (*n_slots)++;
}

/* A residual add writes its sum over one of its inputs: one that is not kept, has no other
 * reader and so dies at the add. That input is then produced straight into the add's output
 * buffer (its kept block, or its slot, which the add inherits): one buffer less per block, the
 * last BN output of a residual branch in training, its last conv output in inference. */
static void plan_inplace_adds(const st_model *m, slot_plan *sp) {
    int *readers = ST_CALLOC((size_t)m->n_layers, sizeof(int));
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i) continue;
        for (int k = 0; k < s->n_in; k++) readers[s->in_mat[k]]++;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i || m->layers[i].kind != ST_LAYER_ADD) continue;
        for (int k = 0; k < s->n_in; k++) {
            int in = s->in_mat[k];
            if (m->layers[in].kept || readers[in] != 1) continue;
            sp->inplace_of[in] = s->last;
            break;
        }
    }
    free(readers);
}

/* Forward: an output that is not kept takes a slot at its step and returns it after the step
 * that reads it last; an add's output inherits the slot of the input it overwrites, and that
 * input takes none when the add's output is kept. */
static void plan_forward_slots(const st_model *m, slot_plan *sp, int *free_list) {
    int n = m->n_layers, n_free = 0;
    int *last_use = ST_MALLOC((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) last_use[i] = -1;
    for (int i = 0; i < n; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i) continue;
        for (int k = 0; k < s->n_in; k++) last_use[s->in_mat[k]] = i;
    }
    for (int i = 0; i < n; i++) {
        const st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        int out = l->step.last, overwritten = -1;
        for (int k = 0; k < l->step.n_in; k++)
            if (sp->inplace_of[l->step.in_mat[k]] == out) overwritten = l->step.in_mat[k];
        int into_kept = sp->inplace_of[out] >= 0 && m->layers[sp->inplace_of[out]].kept;
        if (overwritten >= 0 && sp->slot_of[overwritten] >= 0) {
            sp->slot_of[out] = sp->slot_of[overwritten];
        } else if (!m->layers[out].kept && !into_kept) {
            sp->slot_of[out] = slot_take(free_list, &n_free, &sp->n_slots);
            size_t numel = st_numel(m->layers[out].out);
            if (numel > sp->slot_numel) sp->slot_numel = numel;
        }
        for (int k = 0; k < l->step.n_in; k++) {
            int in = l->step.in_mat[k];
            if (sp->slot_of[in] >= 0 && last_use[in] == i && in != overwritten)
                free_list[n_free++] = sp->slot_of[in];
        }
        if (sp->slot_of[out] >= 0 && last_use[out] < 0) free_list[n_free++] = sp->slot_of[out];
    }
    free(last_use);
}

/* Backward: the gradient of a backbone output lives from its first consumer's backward (in
 * reverse order) to its producer's; the first writer overwrites, later ones accumulate. Also
 * sizes the scratch. */
static void plan_grad_slots(st_model *m, slot_plan *sp, int *free_list) {
    int n_free = 0;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        st_layer *l = &m->layers[i];
        if (l->exec != i || !l->step.needs_grad) continue;
        size_t out_numel = st_numel(m->layers[l->step.last].out);
        if (out_numel > sp->scratch_numel) sp->scratch_numel = out_numel;
        for (int k = 0; k < l->step.n_in; k++) {
            int in = l->step.in_mat[k];
            st_layer *src = &m->layers[m->layers[in].exec];
            size_t numel = st_numel(m->layers[in].out);
            if (numel > sp->scratch_numel) sp->scratch_numel = numel;
            if (!src->step.needs_grad) continue;
            l->step.accumulate[k] = 0;
            if (is_head(src)) continue; /* dedicated head gradient, one consumer */
            if (sp->gslot_of[in] < 0) {
                sp->gslot_of[in] = slot_take(free_list, &n_free, &sp->n_gslots);
                if (numel > sp->gslot_numel) sp->gslot_numel = numel;
            } else {
                l->step.accumulate[k] = 1;
            }
        }
        int out = l->step.last;
        if (sp->gslot_of[out] >= 0) free_list[n_free++] = sp->gslot_of[out];
    }
}

static void plan_slots(st_model *m, slot_plan *sp) {
    int n = m->n_layers;
    sp->slot_of = ST_MALLOC((size_t)n * sizeof(int));
    sp->inplace_of = ST_MALLOC((size_t)n * sizeof(int));
    sp->gslot_of = ST_MALLOC((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) sp->slot_of[i] = sp->inplace_of[i] = sp->gslot_of[i] = -1;
    int *free_list = ST_MALLOC((size_t)n * sizeof(int));
    plan_inplace_adds(m, sp);
    plan_forward_slots(m, sp, free_list);
    plan_grad_slots(m, sp, free_list);
    free(free_list);
}

static float *take_tensor(st_arena *a, st_tensor *t) { return t->data = st_arena_take(a, st_numel(*t)); }

/* Parameter values: frozen ones and moving statistics first, then the trainable ones as one
 * slice mirrored by the gradients. */
static void layout_params(st_model *m) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n_params; i++) {
            st_param *p = &m->params[i];
            if (p->trainable != pass) continue;
            p->value = st_arena_take(&m->params_arena, p->numel);
            if (p->trainable) p->grad = st_arena_take(&m->grads_arena, p->numel);
        }
}

/* Materialized outputs: kept ones get their own block, the others a slot or the kept block of
 * the add that overwrites them; gradients their slot. */
static void layout_outputs(st_model *m, const slot_plan *sp) {
    st_arena *acts = &m->acts_arena;
    m->input = m->layers[0].out;
    m->layers[0].out.data = take_tensor(acts, &m->input);
    float **slots = ST_CALLOC((size_t)sp->n_slots + (size_t)sp->n_gslots + 1, sizeof(float *));
    float **gslots = slots + sp->n_slots;
    for (int k = 0; k < sp->n_slots; k++) slots[k] = st_arena_take(acts, sp->slot_numel);
    for (int k = 0; k < sp->n_gslots; k++) gslots[k] = st_arena_take(acts, sp->gslot_numel);

    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        l->grad = NULL;
        if (i > 0) l->out.data = NULL;
        if (i > 0 && l->materialized && l->kept) l->out.data = st_arena_take(acts, st_numel(l->out));
        if (i > 0 && l->materialized && sp->slot_of[i] >= 0) l->out.data = slots[sp->slot_of[i]];
        if (l->materialized && sp->gslot_of[i] >= 0) l->grad = gslots[sp->gslot_of[i]];
    }
    for (int i = 0; i < m->n_layers; i++) /* the add comes later than what it overwrites */
        if (!m->layers[i].out.data && sp->inplace_of[i] >= 0)
            m->layers[i].out.data = m->layers[sp->inplace_of[i]].out.data;
    free(slots);
}

/* Per-step parameter views, folded copies (params arena) and saved statistics. */
static void layout_steps(st_model *m) {
    st_arena *acts = &m->acts_arena;
    for (int i = 0; i < m->n_layers; i++) {
        st_layer *l = &m->layers[i];
        if (l->exec != i) continue;
        st_step *s = &l->step;
        const st_param *p = &m->params[l->first_param];
        s->w = s->b = s->gamma = s->beta = s->mean = s->var = NULL;
        s->dw = s->db = s->dgamma = s->dbeta = NULL;
        switch (l->kind) {
        case ST_LAYER_CONV:
        case ST_LAYER_DENSE:
            s->w = p[0].value;
            s->dw = p[0].grad;
            if (l->n_params > 1) {
                s->b = p[1].value;
                s->db = p[1].grad;
            }
            if (s->fold_bn >= 0) {
                const st_param *q = &m->params[m->layers[s->fold_bn].first_param];
                s->gamma = q[0].value;
                s->beta = q[1].value;
                s->mean = q[2].value;
                s->var = q[3].value;
                s->w_fold = st_arena_take(&m->params_arena, p[0].numel);
                s->b_fold = st_arena_take(&m->params_arena, (size_t)l->geom.filters);
            }
            break;
        case ST_LAYER_BN:
            s->gamma = p[0].value;
            s->beta = p[1].value;
            s->mean = p[2].value;
            s->var = p[3].value;
            s->dgamma = p[0].grad;
            s->dbeta = p[1].grad;
            if (s->trains) {
                s->save_mean = st_arena_take(acts, (size_t)l->out.c);
                s->save_rstd = st_arena_take(acts, (size_t)l->out.c);
            }
            break;
        case ST_LAYER_L2NORM:
            s->norms = st_arena_take(acts, (size_t)l->out.n);
            break;
        default:
            break;
        }
    }
}

/* Head tensors, the gradients the loss writes (backward.h) and the backward scratch. */
static void layout_head(st_model *m, const slot_plan *sp) {
    const st_model_config *cfg = &m->config;
    st_arena *acts = &m->acts_arena;
    for (int i = 0; i < m->n_layers; i++) {
        const st_layer *l = &m->layers[i];
        if (strcmp(l->name, "avg_pool") == 0) m->features = l->out;
        if (strcmp(l->name, "embedding_norm") == 0) m->embedding = l->out;
        if (strcmp(l->name, "predictions") == 0) m->logits = l->out;
    }
    m->feature_dim = m->features.c;
    m->d_features = m->features;
    m->d_embedding = m->embedding;
    m->d_logits = m->logits;
    m->d_features.data = m->d_embedding.data = m->d_logits.data = NULL;
    if (cfg->training) {
        take_tensor(acts, &m->d_features);
        if (cfg->embed_dim > 0) take_tensor(acts, &m->d_embedding);
        if (cfg->num_classes > 0) take_tensor(acts, &m->d_logits);
        for (int i = 0; i < m->n_layers; i++) {
            st_layer *l = &m->layers[i];
            if (!l->materialized || !is_head(&m->layers[l->exec])) continue;
            if (strcmp(l->name, "avg_pool") == 0) l->grad = m->d_features.data;
            else if (strcmp(l->name, "embedding_norm") == 0) l->grad = m->d_embedding.data;
            else if (strcmp(l->name, "predictions") == 0) l->grad = m->d_logits.data;
            else l->grad = st_arena_take(acts, st_numel(l->out));
        }
        float *scratch = st_arena_take(acts, sp->scratch_numel);
        for (int i = 0; i < m->n_layers; i++) m->layers[i].step.scratch = scratch;
    }
}

/* One layout pass; run once while sizing (NULL pointers) and once after commit. */
static void layout(st_model *m, const slot_plan *sp) {
    st_arena_rewind(&m->params_arena);
    st_arena_rewind(&m->grads_arena);
    st_arena_rewind(&m->acts_arena);
    layout_params(m);
    layout_outputs(m, sp);
    layout_steps(m);
    layout_head(m, sp);
}

/* ---- initialisation ------------------------------------------------------------------- */

/* Uniform in (0, 1) from the top 24 bits: exact in float. */
static float uniform01(uint64_t *state) { return ((float)(st_splitmix64(state) >> 40) + 0.5f) * 0x1.0p-24f; }

/* Two independent standard normals (Marsaglia's polar method: one log per pair). */
static void normal_pair(uint64_t *state, float out[2]) {
    float u, v, r2;
    do {
        u = 2.0f * uniform01(state) - 1.0f;
        v = 2.0f * uniform01(state) - 1.0f;
        r2 = u * u + v * v;
    } while (r2 >= 1.0f || r2 == 0.0f);
    float scale = sqrtf(-2.0f * logf(r2) / r2);
    out[0] = u * scale;
    out[1] = v * scale;
}

enum { INIT_CHUNK = 1 << 14 };

/* Fill host[0, numel) for one tensor. Each chunk of INIT_CHUNK values has its own stream derived
 * from the seed, the tensor's position and the chunk, so the values do not depend on memory
 * order nor on the thread count. He normal std sqrt(2/fan_in) for conv kernels, Glorot uniform
 * for dense kernels. */
static void init_kernel(const st_param *p, int index, uint64_t seed, float *host) {
    int conv = p->rank == 4;
    float scale = conv ? (float)sqrt(2.0 / ((double)p->dims[0] * p->dims[1] * p->dims[2]))
                       : (float)sqrt(6.0 / ((double)p->dims[0] + p->dims[1]));
    long n_chunks = (long)((p->numel + INIT_CHUNK - 1) / INIT_CHUNK);
#pragma omp parallel for schedule(static) if (n_chunks > 1)
    for (long c = 0; c < n_chunks; c++) {
        uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(index + 1)) ^
                         (0x8CB92BA72F3D8DD7ull * (uint64_t)(c + 1));
        size_t begin = (size_t)c * INIT_CHUNK;
        size_t end = begin + INIT_CHUNK < p->numel ? begin + INIT_CHUNK : p->numel;
        for (size_t j = begin; j < end; j += 2) {
            float z[2];
            if (conv) {
                normal_pair(&state, z);
            } else {
                z[0] = 2.0f * uniform01(&state) - 1.0f;
                z[1] = 2.0f * uniform01(&state) - 1.0f;
            }
            host[j] = scale * z[0];
            if (j + 1 < end) host[j + 1] = scale * z[1];
        }
    }
}

/* Kernels as above; zero biases and betas, unit gammas, moving statistics (0, 1). */
static void init_params(st_model *m, uint64_t seed) {
    size_t max_numel = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > max_numel) max_numel = m->params[i].numel;
    float *host = ST_MALLOC(max_numel * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (strcmp(p->weight, "kernel") == 0) {
            init_kernel(p, i, seed, host);
        } else {
            float v = (strcmp(p->weight, "gamma") == 0 || strcmp(p->weight, "moving_variance") == 0)
                          ? 1.0f : 0.0f;
            for (size_t j = 0; j < p->numel; j++) host[j] = v;
        }
        m->backend->upload(m->backend, p->value, host, p->numel * sizeof(float));
    }
    free(host);
}

void st_model_weights_changed(st_model *m) {
    st_backend *be = m->backend;
    for (int i = 0; i < m->n_layers; i++) {
        const st_step *s = &m->layers[i].step;
        if (m->layers[i].exec != i || s->fold_bn < 0) continue;
        be->conv_fold_bn(be, &s->conv, s->w, s->b, s->gamma, s->beta, s->mean, s->var, s->bn_eps,
                         s->w_fold, s->b_fold);
    }
}

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
    if (cfg->pool == ST_GPOOL_GEM && !(cfg->gem_p > 0))
        return st_error_set("gem_p %g: must be > 0", (double)cfg->gem_p);
    return 0;
}

static void commit_arena(st_arena *a, st_backend *be) {
    if (a->used) st_arena_commit(a, be);
}

st_model *st_model_create(st_backend *be, const st_model_config *cfg, uint64_t seed) {
    if (validate_config(cfg) < 0) return NULL;
    st_model *m = ST_CALLOC(1, sizeof *m);
    m->config = *cfg;
    m->arch = st_arch_find(cfg->arch);
    m->backend = be;
    m->params_arena.name = "params";
    m->grads_arena.name = "grads";
    m->acts_arena.name = "activations";

    builder b = {.m = m, .bn_eps = m->arch->bn_eps};
    build_head(&b, build_trunk(&b, m->arch));
    for (int i = 0; i < m->n_params; i++) m->params[i].layer = m->layers[m->params[i].layer_index].name;

    m->freeze_index = resolve_freeze(m, cfg->freeze_until);
    if (m->freeze_index < -1) {
        st_model_free(m);
        return NULL;
    }
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        p->trainable = cfg->training && p->layer_index > m->freeze_index &&
                       strncmp(p->weight, "moving_", 7) != 0;
    }

    plan_steps(m);
    describe_steps(m);
    mark_kept(m);
    slot_plan sp = {0};
    plan_slots(m, &sp);
    layout(m, &sp); /* sizing */
    commit_arena(&m->params_arena, be);
    commit_arena(&m->grads_arena, be);
    commit_arena(&m->acts_arena, be);
    layout(m, &sp); /* real pointers */
    free(sp.slot_of);
    free(sp.inplace_of);
    free(sp.gslot_of);

    for (int i = 0; i < m->n_layers; i++) {
        st_step *s = &m->layers[i].step;
        if (m->layers[i].exec == i && m->layers[i].kind == ST_LAYER_CONV) s->plan = be->conv_plan(be, &s->conv);
    }
    init_params(m, seed);
    st_model_weights_changed(m);
    return m;
}

void st_model_free(st_model *m) {
    if (!m) return;
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
 * inference model (training == 0) is all
 * frozen whatever freeze_until says, so freeze_until is how a caller asks to keep one trunk
 * layer's output (embed --layer conv4_block6_out). */
st_tensor st_model_layer_output(const st_model *m, int index) {
    ST_CHECK(index >= 0 && index < m->n_layers, "layer index %d out of range [0, %d)", index, m->n_layers);
    st_tensor t = m->layers[index].out;
    if (!m->layers[index].kept) t.data = NULL;
    return t;
}

/* ---- forward ------------------------------------------------------------------------- */

static void forward_step(st_model *m, st_layer *l, int n, int training) {
    st_backend *be = m->backend;
    st_step *s = &l->step;
    st_tensor y = m->layers[s->last].out;
    const float *x = s->n_in ? m->layers[s->in_mat[0]].out.data : NULL;
    size_t rows = (size_t)n * y.h * y.w;
    switch (l->kind) {
    case ST_LAYER_INPUT:
        break;
    case ST_LAYER_CONV: {
        st_conv_desc d = s->conv;
        st_conv_plan *plan = s->plan;
        if (n != d.n) {
            d.n = n;
            plan = be->conv_plan(be, &d);
        }
        if (s->fold_bn >= 0)
            be->conv_forward(be, plan, x, s->w_fold, s->b_fold, y.data);
        else
            be->conv_forward(be, plan, x, s->w, s->b, y.data);
        break;
    }
    case ST_LAYER_BN: {
        st_bn_desc d = {.rows = (long)rows, .c = y.c, .eps = s->bn_eps,
                        .momentum = m->config.bn_momentum, .relu = s->relu};
        if (training && s->trains)
            be->bn_forward_train(be, &d, x, s->gamma, s->beta, y.data, s->save_mean, s->save_rstd,
                                 s->mean, s->var);
        else
            be->bn_forward_infer(be, &d, x, s->gamma, s->beta, s->mean, s->var, y.data);
        break;
    }
    case ST_LAYER_ADD:
        be->add_forward(be, x, m->layers[s->in_mat[1]].out.data, y.data, rows * (size_t)y.c, s->relu);
        break;
    case ST_LAYER_MAXPOOL: {
        st_pool_desc d = s->pool;
        d.n = n;
        be->maxpool_forward(be, &d, x, y.data);
        break;
    }
    case ST_LAYER_GPOOL: {
        st_gpool_desc d = s->gpool;
        d.n = n;
        be->gpool_forward(be, &d, x, y.data);
        break;
    }
    case ST_LAYER_DENSE:
        be->dense_forward(be, n, m->layers[s->in_mat[0]].out.c, y.c, x, s->w, s->b, y.data);
        break;
    case ST_LAYER_L2NORM:
        be->l2norm_forward(be, n, y.c, x, y.data, s->norms, 1e-12f);
        break;
    default:
        ST_FAIL("%s: layer kind %d has no step", l->name, (int)l->kind);
    }
}

void st_model_forward(st_model *m, int n, int training) {
    ST_CHECK(n >= 1 && n <= m->config.batch, "forward on %d images, model sized for %d", n, m->config.batch);
    ST_CHECK(!training || m->config.training, "training forward on a model built for inference");
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].exec == i) forward_step(m, &m->layers[i], n, training);
}
