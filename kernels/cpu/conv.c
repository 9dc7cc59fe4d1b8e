/*
 * conv.c: 2-D convolution (cross-correlation) through oneDNN, and batch-norm folding.
 *
 * Layouts in our memory: x (N, H, W, C) NHWC, y (N, P, Q, K) NHWC, w (R, S, C, K) HWIO,
 * bias (K). oneDNN is told the activations are nhwc and the weights "any", so it picks its fast
 * (jit / brgemm) kernels with a blocked weight layout of its choice; each call reorders the HWIO
 * weights into that layout (weights change every training step, so nothing is reused across
 * calls except the reorder primitive), and backward-filter reorders its result back to HWIO.
 * The blocked copies live in ONE scratch buffer shared by every pass of every plan, sized to the
 * largest: a blocked copy only lives during the call that made it, and calls run one at a time,
 * so a ResNet-50 keeps one layer's weights extra instead of three copies of the whole network. Padding is explicit and may be asymmetric (padding_l = top/left,
 * padding_r = bottom/right).
 *
 * Plans: one per (backend, st_conv_desc) held in a process-wide list, created by cpu_conv_plan
 * and freed by cpu_conv_plans_free (backend destroy). The forward primitive is made with the plan
 * (with fused ReLU as an eltwise post-op when d->relu); backward-data and backward-weights
 * primitives are made on first use. oneDNN's engine and stream are created with the first plan
 * and destroyed with the last. Not thread-safe: one host thread drives a backend.
 *
 * Forward without bias uses the plan's zero bias (the add is fused into the output write, free);
 * backward-filter has a variant without the bias reduction (created when first called with
 * dbias == NULL; saves 3-10% of its time). Backward outputs dx, dw, dbias are overwritten.
 */
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>
#include <dnnl_debug.h>

#include "../check.h"
#include "../math/batchnorm.h"
#include "cpu_ops.h"

/* One oneDNN primitive plus the weight reorder between our HWIO layout and the layout the
 * primitive chose (reorder == NULL when they are the same and HWIO is used directly). */
typedef struct {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_primitive_t reorder;
    dnnl_memory_t weights; /* in the primitive's layout, over the shared scratch; NULL without reorder */
    size_t weights_bytes;
} conv_pass;

struct st_conv_plan {
    st_conv_desc desc;    /* with be, the cache key */
    const st_backend *be;
    st_conv_plan *next;
    dnnl_memory_desc_t src_md, dst_md, hwio_md, bias_md;
    dnnl_memory_t src, dst, hwio, bias; /* our buffers; data handles set per call */
    conv_pass fwd, bwd_data;  /* bwd_data has prim == NULL until first use */
    conv_pass bwd_weights[2]; /* [with_bias], each NULL until first use */
    float *zero_bias;         /* (K) zeros: forward calls without bias */
};

static struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    st_conv_plan *plans;
    void *scratch;         /* blocked weights of the pass being executed (64-byte aligned) */
    size_t scratch_bytes;
} dnnl_state;

static void state_open(void) {
    if (dnnl_state.engine) return;
    ST_DNNL(dnnl_engine_create(&dnnl_state.engine, dnnl_cpu, 0));
    ST_DNNL(dnnl_stream_create(&dnnl_state.stream, dnnl_state.engine, dnnl_stream_default_flags));
}

static void state_close_if_unused(void) {
    if (dnnl_state.plans || !dnnl_state.engine) return;
    free(dnnl_state.scratch);
    dnnl_state.scratch = NULL;
    dnnl_state.scratch_bytes = 0;
    ST_DNNL(dnnl_stream_destroy(dnnl_state.stream));
    ST_DNNL(dnnl_engine_destroy(dnnl_state.engine));
    dnnl_state.stream = NULL;
    dnnl_state.engine = NULL;
}

static void md_init(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
                    dnnl_format_tag_t tag) {
    ST_DNNL(dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag));
}

static dnnl_memory_t memory_without_buffer(const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    ST_DNNL(dnnl_memory_create(&m, md, dnnl_state.engine, DNNL_MEMORY_NONE));
    return m;
}

static void set_handle(dnnl_memory_t m, const void *data) {
    ST_DNNL(dnnl_memory_set_data_handle(m, (void *)data));
}

/* Logical oneDNN shapes: weights {K, C, R, S}, stored HWIO. */
static void weights_dims(const st_conv_desc *d, dnnl_dims_t dims) {
    dims[0] = d->k;
    dims[1] = d->c;
    dims[2] = d->r;
    dims[3] = d->s;
}

static void geometry(const st_conv_desc *d, dnnl_dims_t strides, dnnl_dims_t pad_l,
                     dnnl_dims_t pad_r) {
    strides[0] = d->stride_h;
    strides[1] = d->stride_w;
    pad_l[0] = d->pad_top;
    pad_l[1] = d->pad_left;
    pad_r[0] = d->pad_bottom;
    pad_r[1] = d->pad_right;
}

/* Finish a pass from its op descriptor: primitive, and the weight reorder for the layout the
 * primitive wants (`query` names its weights argument). to_hwio: reorder from the primitive's
 * layout to ours (backward weights) instead of from ours to it. */
static void pass_create(const st_conv_plan *p, conv_pass *pass, const dnnl_convolution_desc_t *op,
                        const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint,
                        dnnl_query_t query, int to_hwio) {
    const st_conv_desc *d = &p->desc;
    dnnl_status_t status = dnnl_primitive_desc_create(&pass->pd, op, attr, dnnl_state.engine, hint);
    ST_CHECK(status == dnnl_success,
             "oneDNN: no %s convolution for input %dx%dx%dx%d, filter %dx%dx%dx%d, stride %dx%d, "
             "padding %d/%d/%d/%d: %s",
             op->prop_kind == dnnl_backward_data      ? "backward-data"
             : op->prop_kind == dnnl_backward_weights ? "backward-weights"
                                                      : "forward",
             d->n, d->h, d->w, d->c, d->r, d->s, d->c, d->k, d->stride_h, d->stride_w, d->pad_top,
             d->pad_bottom, d->pad_left, d->pad_right, dnnl_status2str(status));
    ST_DNNL(dnnl_primitive_create(&pass->prim, pass->pd));
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pass->pd, query, 0);
    ST_CHECK(want != NULL, "oneDNN: convolution has no weights descriptor");
    if (dnnl_memory_desc_equal(want, &p->hwio_md)) return;
    pass->weights = memory_without_buffer(want);
    pass->weights_bytes = dnnl_memory_desc_get_size(want);
    dnnl_primitive_desc_t reorder_pd;
    const dnnl_memory_desc_t *from = to_hwio ? want : &p->hwio_md;
    const dnnl_memory_desc_t *to = to_hwio ? &p->hwio_md : want;
    ST_DNNL(dnnl_reorder_primitive_desc_create(&reorder_pd, from, dnnl_state.engine, to,
                                               dnnl_state.engine, NULL));
    ST_DNNL(dnnl_primitive_create(&pass->reorder, reorder_pd));
    ST_DNNL(dnnl_primitive_desc_destroy(reorder_pd));
}

static void pass_destroy(conv_pass *pass) {
    if (pass->reorder) ST_DNNL(dnnl_primitive_destroy(pass->reorder));
    if (pass->weights) ST_DNNL(dnnl_memory_destroy(pass->weights));
    if (pass->prim) ST_DNNL(dnnl_primitive_destroy(pass->prim));
    if (pass->pd) ST_DNNL(dnnl_primitive_desc_destroy(pass->pd));
    memset(pass, 0, sizeof *pass);
}

static void execute(dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args) {
    ST_DNNL(dnnl_primitive_execute(prim, dnnl_state.stream, nargs, args));
}

/* Point the pass's blocked weights at the shared scratch, grown to fit. */
static dnnl_memory_t bind_scratch(conv_pass *pass) {
    if (pass->weights_bytes > dnnl_state.scratch_bytes) {
        free(dnnl_state.scratch);
        size_t bytes = (pass->weights_bytes + 63) / 64 * 64;
        dnnl_state.scratch = aligned_alloc(64, bytes);
        ST_CHECK(dnnl_state.scratch, "out of memory allocating %zu bytes of convolution scratch", bytes);
        dnnl_state.scratch_bytes = bytes;
    }
    set_handle(pass->weights, dnnl_state.scratch);
    return pass->weights;
}

/* Our HWIO weights into the pass's layout; returns the memory the primitive should read. */
static dnnl_memory_t weights_in(st_conv_plan *p, conv_pass *pass) {
    if (!pass->reorder) return p->hwio;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->hwio}, {DNNL_ARG_TO, bind_scratch(pass)}};
    execute(pass->reorder, 2, args);
    return pass->weights;
}

static void forward_create(st_conv_plan *p) {
    const st_conv_desc *d = &p->desc;
    dnnl_dims_t wdims, strides, pad_l, pad_r;
    weights_dims(d, wdims);
    geometry(d, strides, pad_l, pad_r);
    dnnl_memory_desc_t w_any;
    md_init(&w_any, 4, wdims, dnnl_format_tag_any);
    dnnl_convolution_desc_t op;
    ST_DNNL(dnnl_convolution_forward_desc_init(&op, dnnl_forward_training, dnnl_convolution_direct,
                                               &p->src_md, &w_any, &p->bias_md, &p->dst_md,
                                               strides, pad_l, pad_r));
    dnnl_primitive_attr_t attr = NULL;
    if (d->relu) {
        dnnl_post_ops_t ops;
        ST_DNNL(dnnl_post_ops_create(&ops));
        ST_DNNL(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        ST_DNNL(dnnl_primitive_attr_create(&attr));
        ST_DNNL(dnnl_primitive_attr_set_post_ops(attr, ops));
        ST_DNNL(dnnl_post_ops_destroy(ops));
    }
    pass_create(p, &p->fwd, &op, attr, NULL, dnnl_query_weights_md, 0);
    if (attr) ST_DNNL(dnnl_primitive_attr_destroy(attr));
}

static void backward_data_create(st_conv_plan *p) {
    const st_conv_desc *d = &p->desc;
    dnnl_dims_t wdims, strides, pad_l, pad_r;
    weights_dims(d, wdims);
    geometry(d, strides, pad_l, pad_r);
    dnnl_memory_desc_t w_any;
    md_init(&w_any, 4, wdims, dnnl_format_tag_any);
    dnnl_convolution_desc_t op;
    ST_DNNL(dnnl_convolution_backward_data_desc_init(&op, dnnl_convolution_direct, &p->src_md,
                                                     &w_any, &p->dst_md, strides, pad_l, pad_r));
    pass_create(p, &p->bwd_data, &op, NULL, p->fwd.pd, dnnl_query_weights_md, 0);
}

static void backward_weights_create(st_conv_plan *p, int with_bias) {
    const st_conv_desc *d = &p->desc;
    dnnl_dims_t wdims, strides, pad_l, pad_r;
    weights_dims(d, wdims);
    geometry(d, strides, pad_l, pad_r);
    dnnl_memory_desc_t w_any;
    md_init(&w_any, 4, wdims, dnnl_format_tag_any);
    dnnl_convolution_desc_t op;
    ST_DNNL(dnnl_convolution_backward_weights_desc_init(&op, dnnl_convolution_direct, &p->src_md,
                                                        &w_any, with_bias ? &p->bias_md : NULL,
                                                        &p->dst_md, strides, pad_l, pad_r));
    pass_create(p, &p->bwd_weights[with_bias], &op, NULL, p->fwd.pd, dnnl_query_diff_weights_md,
                1);
}

static st_conv_plan *plan_create(const st_backend *be, const st_conv_desc *d) {
    st_conv_plan *p = ST_CALLOC(1, sizeof *p);
    p->desc = *d;
    p->be = be;
    dnnl_dims_t src_dims = {d->n, d->c, d->h, d->w}, dst_dims = {d->n, d->k, d->p, d->q};
    dnnl_dims_t wdims, bias_dims = {d->k};
    weights_dims(d, wdims);
    md_init(&p->src_md, 4, src_dims, dnnl_nhwc);
    md_init(&p->dst_md, 4, dst_dims, dnnl_nhwc);
    md_init(&p->hwio_md, 4, wdims, dnnl_hwio);
    md_init(&p->bias_md, 1, bias_dims, dnnl_x);
    p->src = memory_without_buffer(&p->src_md);
    p->dst = memory_without_buffer(&p->dst_md);
    p->hwio = memory_without_buffer(&p->hwio_md);
    p->bias = memory_without_buffer(&p->bias_md);
    p->zero_bias = ST_CALLOC((size_t)d->k, sizeof(float));
    forward_create(p);
    return p;
}

static void plan_destroy(st_conv_plan *p) {
    pass_destroy(&p->fwd);
    pass_destroy(&p->bwd_data);
    pass_destroy(&p->bwd_weights[0]);
    pass_destroy(&p->bwd_weights[1]);
    ST_DNNL(dnnl_memory_destroy(p->src));
    ST_DNNL(dnnl_memory_destroy(p->dst));
    ST_DNNL(dnnl_memory_destroy(p->hwio));
    ST_DNNL(dnnl_memory_destroy(p->bias));
    free(p->zero_bias);
    free(p);
}

st_conv_plan *cpu_conv_plan(st_backend *be, const st_conv_desc *d) {
    ST_CHECK(d->n > 0 && d->c > 0 && d->k > 0 && d->p > 0 && d->q > 0,
             "conv plan: bad shape n=%d c=%d k=%d p=%d q=%d (st_conv_desc_finish not called?)",
             d->n, d->c, d->k, d->p, d->q);
    for (st_conv_plan *p = dnnl_state.plans; p; p = p->next)
        if (p->be == be && memcmp(&p->desc, d, sizeof *d) == 0) return p;
    state_open();
    st_conv_plan *p = plan_create(be, d);
    p->next = dnnl_state.plans;
    dnnl_state.plans = p;
    return p;
}

void cpu_conv_plans_free(st_backend *be) {
    st_conv_plan **link = &dnnl_state.plans;
    while (*link) {
        st_conv_plan *p = *link;
        if (p->be == be) {
            *link = p->next;
            plan_destroy(p);
        } else {
            link = &p->next;
        }
    }
    state_close_if_unused();
}

void cpu_conv_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                      const float *bias, float *y) {
    (void)be;
    set_handle(p->src, x);
    set_handle(p->hwio, w);
    set_handle(p->bias, bias ? bias : p->zero_bias);
    set_handle(p->dst, y);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->src},
                               {DNNL_ARG_WEIGHTS, weights_in(p, &p->fwd)},
                               {DNNL_ARG_BIAS, p->bias},
                               {DNNL_ARG_DST, p->dst}};
    execute(p->fwd.prim, 4, args);
    ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
}

void cpu_conv_backward_data(st_backend *be, st_conv_plan *p, const float *dy, const float *w,
                            float *dx) {
    (void)be;
    if (!p->bwd_data.prim) backward_data_create(p);
    set_handle(p->dst, dy);
    set_handle(p->hwio, w);
    set_handle(p->src, dx);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, p->dst},
                               {DNNL_ARG_WEIGHTS, weights_in(p, &p->bwd_data)},
                               {DNNL_ARG_DIFF_SRC, p->src}};
    execute(p->bwd_data.prim, 3, args);
    ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
}

void cpu_conv_backward_filter(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                              float *dw, float *dbias) {
    (void)be;
    const int with_bias = dbias != NULL;
    conv_pass *pass = &p->bwd_weights[with_bias];
    if (!pass->prim) backward_weights_create(p, with_bias);
    set_handle(p->src, x);
    set_handle(p->dst, dy);
    set_handle(p->hwio, dw);
    if (with_bias) set_handle(p->bias, dbias);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->src},
                               {DNNL_ARG_DIFF_DST, p->dst},
                               {DNNL_ARG_DIFF_WEIGHTS, pass->reorder ? bind_scratch(pass) : p->hwio},
                               {DNNL_ARG_DIFF_BIAS, p->bias}};
    execute(pass->prim, with_bias ? 4 : 3, args);
    if (pass->reorder) {
        dnnl_exec_arg_t back[2] = {{DNNL_ARG_FROM, pass->weights}, {DNNL_ARG_TO, p->hwio}};
        execute(pass->reorder, 2, back);
    }
    ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
}

void cpu_conv_fold_bn(st_backend *be, const st_conv_desc *d, const float *w, const float *b,
                      const float *gamma, const float *beta, const float *mean, const float *var,
                      float eps, float *w_out, float *b_out) {
    (void)be;
    const int K = d->k;
    const size_t taps = (size_t)d->r * d->s * d->c; /* HWIO: K is the fastest axis */
    float *scale = ST_MALLOC((size_t)K * sizeof *scale);
    for (int k = 0; k < K; k++) {
        scale[k] = st_bn_scale(gamma[k], st_bn_rstd(var[k], eps));
        b_out[k] = ((b ? b[k] : 0.0f) - mean[k]) * scale[k] + beta[k];
    }
#pragma omp parallel for schedule(static) if (taps * K >= 32768)
    for (size_t t = 0; t < taps; t++)
        for (int k = 0; k < K; k++) w_out[t * K + k] = w[t * K + k] * scale[k];
    free(scale);
}
