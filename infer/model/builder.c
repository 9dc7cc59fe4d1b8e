/*
 * builder.c: the ResNet architectures as sequences of Keras-named layers with their parameter
 * tables (layer.h, model.h); the family table (block counts, epsilon) is arch.c.
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
 * Output shapes are full-batch (config.batch) NHWC; parameters get their Keras shapes (HWIO
 * conv kernels, (in, out) dense kernels); no memory is assigned here (memory.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/check.h"
#include "layer.h"

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

void st_model_build(st_model *m) {
    builder b = {.m = m, .bn_eps = m->arch->bn_eps};
    build_head(&b, build_trunk(&b, m->arch));
    for (int i = 0; i < m->n_params; i++) m->params[i].layer = m->layers[m->params[i].layer_index].name;
}
