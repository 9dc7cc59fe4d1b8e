/*
 * conv.c: 2-D convolution (cross-correlation) through oneDNN, the conversion of conv kernels
 * between the file layout (HWIO) and oneDNN's, and batch-norm folding.
 *
 * Layouts in our memory: x (N, H, W, C) NHWC, y (N, P, Q, K) NHWC, bias (K), and conv kernels w
 * in the backend layout: the blocked layout oneDNN's forward primitive picks ("any") for the
 * conv's geometry, so it runs its fast (jit / brgemm) kernels and forward never reorders
 * weights. The layout may pad channels (conv_weights_numel >= R*S*C*K floats); padding holds
 * zeros (import writes them, backward-filter and its reorder write zeros there, and the
 * elementwise optimizer keeps a zero parameter with a zero gradient at zero).
 *
 * The layout is fixed per geometry (the st_conv_desc less the batch size and the fused ReLU):
 * the first plan of a geometry lets oneDNN choose it, every later plan of that geometry (another
 * batch size: partial batches, embedding batches; or the ReLU variant) is given it explicitly,
 * because one parameter buffer serves them all. Backward primitives are first asked for the
 * plan's own layout, taken when oneDNN has a non-reference implementation for it; else they
 * choose their own ("any", hinted by the forward), and backward-data reorders w into it and
 * backward-filter reorders its result back (backward runs for trainable layers only, whose
 * weights change every step anyway). Debian's oneDNN 2.6 has only jit (not brgemm) backward
 * convolutions for NHWC, and they take only their own layouts, so on it the reorders stay.
 * Those per-call copies live in a scratch shared by every pass of every plan (one slot per
 * operand, each sized to the largest): a copy only lives during the call that made it, and
 * calls run one at a time.
 * Padding is explicit and may be asymmetric (padding_l = top/left, padding_r = bottom/right).
 *
 * Plans: one per (backend, st_conv_desc) held in a process-wide list, created by cpu_conv_plan
 * and freed by cpu_conv_plans_free (backend destroy). The forward primitive is made with the plan
 * (with fused ReLU as an eltwise post-op when d->relu); backward-data and backward-weights
 * primitives are made on first use. oneDNN's engine and stream are created with the first plan
 * and destroyed with the last. Not thread-safe: one host thread drives a backend.
 *
 * Conversions (import, export, and the batch-norm fold, which scales each output channel) are
 * single oneDNN reorders at load and save time; the fold runs in the backend layout, as a reorder
 * with per-output-channel scales, and rounds w * scale once like a loop over HWIO would.
 *
 * Forward without bias uses the plan's zero bias (the add is fused into the output write, free);
 * backward-filter has a variant without the bias reduction (created when first called with
 * dbias == NULL; saves 3-10% of its time). Backward outputs dx, dw, dbias are overwritten.
 *
 * bf16 plans (d->bf16, where the CPU has avx512_core_bf16): every pass reads bf16 copies of its
 * FP32 inputs (x, dy, the kernel) and writes FP32 (y, dx, dw, dbias): our tensors, parameters
 * and gradients stay FP32 (the FP32 master weights of mixed precision), only the convolution's
 * multiplications see bf16. x and dy are copied per call into the shared scratch, except that
 * conv_backward rounds dy once for both of its passes and that an operand arriving as bf16
 * (x_bf16, dy_bf16: a BN or conv wrote it so) is read in place; with y_bf16 the forward writes
 * y as bf16 (for the BN or convs after it); a kernel is
 * copied once into its own cache entry (kernel16, keyed by the FP32 buffer) and reused by every
 * pass and plan that reads that buffer until it changes: import and the BN fold mark the entry
 * stale themselves, conv_weights_changed does for writers outside the conv ops (the optimizer,
 * raw copies). So a frozen or inference kernel is rounded once, at its first forward, and a
 * trainable one once per step, by the forward (backward-data on Debian's oneDNN wants its own
 * layout and converts the FP32 kernel with its reorder: a relayout of the cached copy measured
 * no faster). The cache holds one bf16 copy of every kernel (half the parameters' bytes; its
 * entries go with the model, conv_weights_changed(freed = 1), or with the backend).
 * A bf16 plan's FP32 kernel layout is the one oneDNN's bf16 forward picks, with FP32 elements,
 * so every copy is an elementwise rounding in the same layout (round_to_bf16: oneDNN 2.6's
 * f32 -> bf16 reorders of blocked kernels run far below memory speed); bf16 is part of the
 * geometry, so a bf16 model's parameters have their own layout. With be->profile, every copy
 * or reorder run inside a pass adds its time to be->reorder_seconds.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dnnl.h>
#include <dnnl_debug.h>

#include "../check.h"
#include "../math/batchnorm.h"
#include "cpu_ops.h"

/* One oneDNN primitive plus, for a backward pass whose primitive chose another weight layout
 * than the plan's, the reorder between the two (reorder == NULL: the plan's layout is used). */
typedef struct {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_primitive_t reorder;
    dnnl_memory_t weights; /* primitive's layout, over the shared scratch; NULL without reorder */
    size_t weights_bytes;
} conv_pass;

/* A bf16 copy of one FP32 activation operand (x or dy) of a bf16 plan (same NHWC layout, so
 * an elementwise conversion): its descriptor and memory, bound to a scratch slot per call. */
typedef struct {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;
} bf16_copy;

struct st_conv_plan {
    st_conv_desc desc;    /* with be, the cache key */
    st_backend *be;
    st_conv_plan *next;
    dnnl_memory_desc_t src_md, dst_md, weights_md, bias_md; /* weights_md: the backend layout */
    dnnl_memory_t src, dst, weights, bias; /* our buffers; data handles set per call */
    conv_pass fwd, bwd_data;  /* bwd_data has prim == NULL until first use */
    conv_pass bwd_weights[2]; /* [with_bias], each NULL until first use */
    float *zero_bias;         /* (K) zeros: forward calls without bias */
    bf16_copy src16, dst16, w16; /* bf16 plans: x, dy and the kernel as bf16 (the kernel in
                                  * the plan's layout, bound to its kernel16 entry); unused
                                  * (NULL) otherwise */
};

/* bf16 plans: the bf16 copy of one FP32 kernel buffer (w), in the same layout; stale until the
 * first pass that reads w rounds it, and again after w is written (kernel16_mark_stale). */
typedef struct kernel16 {
    st_backend *be;
    const float *w;
    uint16_t *w16;
    size_t n;    /* bf16 values of w16 */
    int current; /* w16 holds w rounded */
    struct kernel16 *next;
} kernel16;

/* Slots of the shared scratch: the kernel in a pass's own layout, and bf16 copies of x and dy. */
enum { SCRATCH_WEIGHTS, SCRATCH_SRC, SCRATCH_DST, SCRATCH_SLOTS };

static struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    st_conv_plan *plans;
    kernel16 *kernels16; /* every kernel buffer a bf16 plan has read, of any backend */
    void *scratch[SCRATCH_SLOTS]; /* buffers of the pass being executed (64-byte aligned) */
    size_t scratch_bytes[SCRATCH_SLOTS];
} dnnl_state;

static void state_open(void) {
    if (dnnl_state.engine) return;
    ST_DNNL(dnnl_engine_create(&dnnl_state.engine, dnnl_cpu, 0));
    ST_DNNL(dnnl_stream_create(&dnnl_state.stream, dnnl_state.engine, dnnl_stream_default_flags));
}

static void state_close_if_unused(void) {
    if (dnnl_state.plans || !dnnl_state.engine) return;
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        free(dnnl_state.scratch[i]);
        dnnl_state.scratch[i] = NULL;
        dnnl_state.scratch_bytes[i] = 0;
    }
    ST_DNNL(dnnl_stream_destroy(dnnl_state.stream));
    ST_DNNL(dnnl_engine_destroy(dnnl_state.engine));
    dnnl_state.stream = NULL;
    dnnl_state.engine = NULL;
}

static void md_init(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
                    dnnl_format_tag_t tag) {
    ST_DNNL(dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag));
}

/* md with another data type in the same layout (oneDNN's strides count elements, not bytes). */
static dnnl_memory_desc_t md_retyped(const dnnl_memory_desc_t *md, dnnl_data_type_t type) {
    dnnl_memory_desc_t r = *md;
    r.data_type = type;
    return r;
}

static dnnl_memory_t memory_without_buffer(const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    ST_DNNL(dnnl_memory_create(&m, md, dnnl_state.engine, DNNL_MEMORY_NONE));
    return m;
}

static void set_handle(dnnl_memory_t m, const void *data) {
    ST_DNNL(dnnl_memory_set_data_handle(m, (void *)data));
}

static void execute(dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args) {
    ST_DNNL(dnnl_primitive_execute(prim, dnnl_state.stream, nargs, args));
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A reorder inside a pass, timed into be->reorder_seconds when profiling (the CPU stream is
 * synchronous, so the clock around the call measures it). */
static void execute_reorder(st_backend *be, dnnl_primitive_t reorder, dnnl_memory_t from,
                            dnnl_memory_t to) {
    double t0 = be->profile ? seconds_now() : 0;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    execute(reorder, 2, args);
    if (be->profile) {
        ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
        be->reorder_seconds += seconds_now() - t0;
    }
}

/* Logical oneDNN weight shape {K, C, R, S}; the file layout HWIO is one format of it. */
static void weights_dims(const st_conv_desc *d, dnnl_dims_t dims) {
    dims[0] = d->k;
    dims[1] = d->c;
    dims[2] = d->r;
    dims[3] = d->s;
}

/* What every convolution op descriptor of a plan takes besides its tensors. */
typedef struct {
    dnnl_dims_t strides, pad_l, pad_r;
    dnnl_memory_desc_t any_weights; /* oneDNN chooses the layout; FP32 */
    dnnl_memory_desc_t any_weights16; /* the same in bf16 */
} op_geometry;

static op_geometry op_geometry_of(const st_conv_desc *d) {
    op_geometry g;
    g.strides[0] = d->stride_h;
    g.strides[1] = d->stride_w;
    g.pad_l[0] = d->pad_top;
    g.pad_l[1] = d->pad_left;
    g.pad_r[0] = d->pad_bottom;
    g.pad_r[1] = d->pad_right;
    dnnl_dims_t wdims;
    weights_dims(d, wdims);
    md_init(&g.any_weights, 4, wdims, dnnl_format_tag_any);
    ST_DNNL(dnnl_memory_desc_init_by_tag(&g.any_weights16, 4, wdims, dnnl_bf16,
                                         dnnl_format_tag_any));
    return g;
}

/* Plans of one geometry share their weight layout: they differ at most in batch, ReLU and
 * which of x, y and dy are stored as bf16. */
static int same_geometry(const st_conv_desc *a, const st_conv_desc *b) {
    st_conv_desc x = *a, y = *b;
    x.n = y.n = 0;
    x.relu = y.relu = 0;
    x.x_bf16 = y.x_bf16 = x.y_bf16 = y.y_bf16 = x.dy_bf16 = y.dy_bf16 = 0;
    return memcmp(&x, &y, sizeof x) == 0;
}

/* The weight layout already fixed for d's geometry on be, NULL when d is its first plan. */
static const dnnl_memory_desc_t *geometry_layout(const st_backend *be, const st_conv_desc *d) {
    for (const st_conv_plan *p = dnnl_state.plans; p; p = p->next)
        if (p->be == be && same_geometry(&p->desc, d)) return &p->weights_md;
    return NULL;
}

/* Primitive descriptor and primitive of a pass from its op descriptor. */
static void pass_create(const st_conv_plan *p, conv_pass *pass, const dnnl_convolution_desc_t *op,
                        const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint) {
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
}

static const dnnl_memory_desc_t *pass_weights_md(const conv_pass *pass, dnnl_query_t query) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pass->pd, query, 0);
    ST_CHECK(md != NULL, "oneDNN: convolution has no weights descriptor");
    return md;
}

/* A backward pass whose primitive wants another weight layout than the plan's gets the reorder
 * between them (`query` names its weights argument). to_plan: from the primitive's layout to
 * the plan's (backward-filter's result) instead of from the plan's to it. */
static void pass_bridge_layouts(const st_conv_plan *p, conv_pass *pass, dnnl_query_t query,
                                int to_plan) {
    const dnnl_memory_desc_t *want = pass_weights_md(pass, query);
    if (dnnl_memory_desc_equal(want, &p->weights_md)) return;
    pass->weights = memory_without_buffer(want);
    pass->weights_bytes = dnnl_memory_desc_get_size(want);
    dnnl_primitive_desc_t reorder_pd;
    const dnnl_memory_desc_t *from = to_plan ? want : &p->weights_md;
    const dnnl_memory_desc_t *to = to_plan ? &p->weights_md : want;
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

/* Point mem (of `need` bytes) at scratch slot `slot`, grown to fit. */
static dnnl_memory_t bind_scratch(int slot, dnnl_memory_t mem, size_t need) {
    if (need > dnnl_state.scratch_bytes[slot]) {
        free(dnnl_state.scratch[slot]);
        size_t bytes = (need + 63) / 64 * 64;
        dnnl_state.scratch[slot] = aligned_alloc(64, bytes);
        ST_CHECK(dnnl_state.scratch[slot], "out of memory allocating %zu bytes of convolution scratch",
                 bytes);
        dnnl_state.scratch_bytes[slot] = bytes;
    }
    set_handle(mem, dnnl_state.scratch[slot]);
    return mem;
}

/* The pass's own-layout weights, over the scratch. */
static dnnl_memory_t bind_pass_weights(conv_pass *pass) {
    return bind_scratch(SCRATCH_WEIGHTS, pass->weights, pass->weights_bytes);
}

/* bf16 plans: the copy of an FP32 operand (x: src16, dy: dst16). */
static void bf16_copy_create(bf16_copy *copy, const dnnl_memory_desc_t *f32_md) {
    copy->md = md_retyped(f32_md, dnnl_bf16);
    copy->mem = memory_without_buffer(&copy->md);
}

static void bf16_copy_destroy(bf16_copy *copy) {
    if (copy->mem) ST_DNNL(dnnl_memory_destroy(copy->mem));
}

/* y = x rounded to bf16 (nearest even, as oneDNN's reorders), n values, on all threads. Our
 * own loop: oneDNN 2.6's f32 -> bf16 reorder of NHWC activations runs well below memory speed.
 * Only called where the CPU has AVX512_BF16 (bf16 plans need it). */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void round_to_bf16(const float *x,
                                                                         uint16_t *y, size_t n) {
    const size_t vectors = n / 16;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < vectors; i++) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + 16 * i));
        _mm256_storeu_si256((__m256i *)(y + 16 * i), (__m256i)v);
    }
    if (n % 16) {
        const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail, x + 16 * vectors));
        _mm256_mask_storeu_epi16(y + 16 * vectors, tail, (__m256i)v);
    }
}

/* round_to_bf16, timed into be->reorder_seconds when profiling. */
static void round_timed(st_backend *be, const float *x, uint16_t *y, size_t n) {
    double t0 = be->profile ? seconds_now() : 0;
    round_to_bf16(x, y, n);
    if (be->profile) be->reorder_seconds += seconds_now() - t0;
}

/* The bf16 copy of f32 (whose handle is set) in scratch slot `slot`, filled. */
static dnnl_memory_t bf16_copy_fill(st_backend *be, bf16_copy *copy, dnnl_memory_t f32, int slot) {
    const size_t bytes = dnnl_memory_desc_get_size(&copy->md);
    bind_scratch(slot, copy->mem, bytes);
    void *from;
    ST_DNNL(dnnl_memory_get_data_handle(f32, &from));
    round_timed(be, from, dnnl_state.scratch[slot], bytes / sizeof(uint16_t));
    return copy->mem;
}

/* The operand behind f32 (whose handle is set) already holds bf16 values: bound as the copy. */
static dnnl_memory_t bf16_as_is(bf16_copy *copy, dnnl_memory_t f32) {
    void *values;
    ST_DNNL(dnnl_memory_get_data_handle(f32, &values));
    set_handle(copy->mem, values);
    return copy->mem;
}

/* The link to w's kernel16 entry, or to the list's end (NULL) when w has none. */
static kernel16 **kernel16_link(const st_backend *be, const float *w) {
    kernel16 **link = &dnnl_state.kernels16;
    while (*link && !((*link)->be == be && (*link)->w == w)) link = &(*link)->next;
    return link;
}

/* w was written (freed == 0: its copy is rounded again when next read) or is being freed (1:
 * the entry goes, so a later buffer at the same address starts afresh and memory is returned). */
static void kernel16_forget(const st_backend *be, const float *w, int freed) {
    kernel16 **link = kernel16_link(be, w);
    kernel16 *e = *link;
    if (!e) return;
    if (!freed) {
        e->current = 0;
        return;
    }
    *link = e->next;
    free(e->w16);
    free(e);
}

/* The bf16 kernel a bf16 plan's passes read: the cached copy of p->weights' buffer (whose
 * handle is set), rounded only when stale, bound to p->w16. */
static dnnl_memory_t kernel16_read(st_backend *be, st_conv_plan *p) {
    void *w;
    ST_DNNL(dnnl_memory_get_data_handle(p->weights, &w));
    const size_t n = dnnl_memory_desc_get_size(&p->w16.md) / sizeof(uint16_t);
    kernel16 **link = kernel16_link(be, w);
    if (!*link) {
        *link = ST_CALLOC(1, sizeof **link);
        (*link)->be = be;
        (*link)->w = w;
    }
    kernel16 *e = *link;
    if (e->n != n) { /* a new entry, or another kernel now at this address */
        free(e->w16);
        const size_t bytes = (n * sizeof(uint16_t) + 63) / 64 * 64;
        e->w16 = aligned_alloc(64, bytes);
        ST_CHECK(e->w16, "out of memory allocating %zu bytes of bf16 kernel", bytes);
        e->n = n;
        e->current = 0;
    }
    if (!e->current) round_timed(be, w, e->w16, n);
    e->current = 1;
    set_handle(p->w16.mem, e->w16);
    return p->w16.mem;
}

/* The fused-ReLU attribute of a forward pass; NULL without ReLU. */
static dnnl_primitive_attr_t relu_attr(const st_conv_desc *d) {
    if (!d->relu) return NULL;
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t ops;
    ST_DNNL(dnnl_post_ops_create(&ops));
    ST_DNNL(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    ST_DNNL(dnnl_primitive_attr_create(&attr));
    ST_DNNL(dnnl_primitive_attr_set_post_ops(attr, ops));
    ST_DNNL(dnnl_post_ops_destroy(ops));
    return attr;
}

/* A bf16 forward: x and the kernel as bf16 (copies made per call, or x as given with x_bf16),
 * bias FP32, y FP32 or, with y_bf16, written as bf16 by the primitive itself. The plan's
 * FP32 kernel layout is the bf16 primitive's (given, or chosen here) with FP32 elements, so the
 * kernel's bf16 copy is an elementwise rounding like the activations'. */
static void forward_bf16_create(st_conv_plan *p, const dnnl_memory_desc_t *layout,
                                const op_geometry *g) {
    bf16_copy_create(&p->src16, &p->src_md);
    bf16_copy_create(&p->dst16, &p->dst_md);
    dnnl_memory_desc_t given16 = layout ? md_retyped(layout, dnnl_bf16) : g->any_weights16;
    dnnl_convolution_desc_t op;
    const dnnl_memory_desc_t *y_md = p->desc.y_bf16 ? &p->dst16.md : &p->dst_md;
    ST_DNNL(dnnl_convolution_forward_desc_init(&op, dnnl_forward_training, dnnl_convolution_direct,
                                               &p->src16.md, &given16, &p->bias_md, y_md,
                                               g->strides, g->pad_l, g->pad_r));
    dnnl_primitive_attr_t attr = relu_attr(&p->desc);
    pass_create(p, &p->fwd, &op, attr, NULL);
    if (attr) ST_DNNL(dnnl_primitive_attr_destroy(attr));
    p->weights_md = md_retyped(pass_weights_md(&p->fwd, dnnl_query_weights_md), dnnl_f32);
    ST_CHECK(!layout || dnnl_memory_desc_equal(&p->weights_md, layout),
             "oneDNN: forward convolution ignored the given weight layout");
    bf16_copy_create(&p->w16, &p->weights_md);
}

/* The forward primitive, given the geometry's weight layout, or choosing it (layout NULL: the
 * geometry's first plan) and fixing it as the plan's. An FP32 forward never reorders. */
static void forward_create(st_conv_plan *p, const dnnl_memory_desc_t *layout) {
    op_geometry g = op_geometry_of(&p->desc);
    dnnl_convolution_desc_t op;
    if (p->desc.bf16) {
        forward_bf16_create(p, layout, &g);
        return;
    }
    ST_DNNL(dnnl_convolution_forward_desc_init(&op, dnnl_forward_training, dnnl_convolution_direct,
                                               &p->src_md, layout ? layout : &g.any_weights,
                                               &p->bias_md, &p->dst_md, g.strides, g.pad_l,
                                               g.pad_r));
    dnnl_primitive_attr_t attr = relu_attr(&p->desc);
    pass_create(p, &p->fwd, &op, attr, NULL);
    if (attr) ST_DNNL(dnnl_primitive_attr_destroy(attr));
    p->weights_md = *pass_weights_md(&p->fwd, dnnl_query_weights_md);
    ST_CHECK(!layout || dnnl_memory_desc_equal(&p->weights_md, layout),
             "oneDNN: forward convolution ignored the given weight layout");
}

/* Create the pass from op when oneDNN has a fast (not reference) implementation for it: the
 * backward passes try the plan's own kernel layout first, so they need no reorder. */
static int pass_try_create(conv_pass *pass, const dnnl_convolution_desc_t *op,
                           const_dnnl_primitive_desc_t hint) {
    if (dnnl_primitive_desc_create(&pass->pd, op, NULL, dnnl_state.engine, hint) != dnnl_success)
        return 0;
    const char *impl = NULL;
    ST_DNNL(dnnl_primitive_desc_query(pass->pd, dnnl_query_impl_info_str, 0, &impl));
    if (!impl || !strncmp(impl, "ref", 3)) {
        ST_DNNL(dnnl_primitive_desc_destroy(pass->pd));
        pass->pd = NULL;
        return 0;
    }
    ST_DNNL(dnnl_primitive_create(&pass->prim, pass->pd));
    return 1;
}

static void backward_data_create(st_conv_plan *p) {
    op_geometry g = op_geometry_of(&p->desc);
    const int bf16 = p->desc.bf16;
    const dnnl_memory_desc_t *dy_md = bf16 ? &p->dst16.md : &p->dst_md;
    dnnl_convolution_desc_t op;
    ST_DNNL(dnnl_convolution_backward_data_desc_init(
        &op, dnnl_convolution_direct, &p->src_md, bf16 ? &p->w16.md : &p->weights_md, dy_md,
        g.strides, g.pad_l, g.pad_r));
    if (pass_try_create(&p->bwd_data, &op, p->fwd.pd)) return;
    ST_DNNL(dnnl_convolution_backward_data_desc_init(
        &op, dnnl_convolution_direct, &p->src_md, bf16 ? &g.any_weights16 : &g.any_weights,
        dy_md, g.strides, g.pad_l, g.pad_r));
    pass_create(p, &p->bwd_data, &op, NULL, p->fwd.pd);
    pass_bridge_layouts(p, &p->bwd_data, dnnl_query_weights_md, 0);
}

static void backward_weights_create(st_conv_plan *p, int with_bias) {
    op_geometry g = op_geometry_of(&p->desc);
    const int bf16 = p->desc.bf16;
    const dnnl_memory_desc_t *x_md = bf16 ? &p->src16.md : &p->src_md;
    const dnnl_memory_desc_t *dy_md = bf16 ? &p->dst16.md : &p->dst_md;
    const dnnl_memory_desc_t *db_md = with_bias ? &p->bias_md : NULL;
    conv_pass *pass = &p->bwd_weights[with_bias];
    dnnl_convolution_desc_t op;
    ST_DNNL(dnnl_convolution_backward_weights_desc_init(&op, dnnl_convolution_direct, x_md,
                                                        &p->weights_md, db_md, dy_md, g.strides,
                                                        g.pad_l, g.pad_r));
    if (pass_try_create(pass, &op, p->fwd.pd)) return;
    ST_DNNL(dnnl_convolution_backward_weights_desc_init(&op, dnnl_convolution_direct, x_md,
                                                        &g.any_weights, db_md, dy_md, g.strides,
                                                        g.pad_l, g.pad_r));
    pass_create(p, pass, &op, NULL, p->fwd.pd);
    pass_bridge_layouts(p, pass, dnnl_query_diff_weights_md, 1);
}

static st_conv_plan *plan_create(st_backend *be, const st_conv_desc *d) {
    st_conv_plan *p = ST_CALLOC(1, sizeof *p);
    p->desc = *d;
    p->be = be;
    dnnl_dims_t src_dims = {d->n, d->c, d->h, d->w}, dst_dims = {d->n, d->k, d->p, d->q};
    dnnl_dims_t bias_dims = {d->k};
    md_init(&p->src_md, 4, src_dims, dnnl_nhwc);
    md_init(&p->dst_md, 4, dst_dims, dnnl_nhwc);
    md_init(&p->bias_md, 1, bias_dims, dnnl_x);
    forward_create(p, geometry_layout(be, d));
    p->src = memory_without_buffer(&p->src_md);
    p->dst = memory_without_buffer(&p->dst_md);
    p->weights = memory_without_buffer(&p->weights_md);
    p->bias = memory_without_buffer(&p->bias_md);
    p->zero_bias = ST_CALLOC((size_t)d->k, sizeof(float));
    return p;
}

static void plan_destroy(st_conv_plan *p) {
    pass_destroy(&p->fwd);
    pass_destroy(&p->bwd_data);
    pass_destroy(&p->bwd_weights[0]);
    pass_destroy(&p->bwd_weights[1]);
    ST_DNNL(dnnl_memory_destroy(p->src));
    ST_DNNL(dnnl_memory_destroy(p->dst));
    ST_DNNL(dnnl_memory_destroy(p->weights));
    ST_DNNL(dnnl_memory_destroy(p->bias));
    bf16_copy_destroy(&p->src16);
    bf16_copy_destroy(&p->dst16);
    bf16_copy_destroy(&p->w16);
    free(p->zero_bias);
    free(p);
}

st_conv_plan *cpu_conv_plan(st_backend *be, const st_conv_desc *d) {
    ST_CHECK(d->n > 0 && d->c > 0 && d->k > 0 && d->p > 0 && d->q > 0,
             "conv plan: bad shape n=%d c=%d k=%d p=%d q=%d (st_conv_desc_finish not called?)",
             d->n, d->c, d->k, d->p, d->q);
    ST_CHECK(!d->bf16 || cpu_conv_bf16_supported(be), "conv plan: bf16 asked on a CPU without it");
    ST_CHECK(d->bf16 || !(d->x_bf16 || d->y_bf16 || d->dy_bf16),
             "conv plan: bf16 operands for an FP32 plan");
    for (st_conv_plan *p = dnnl_state.plans; p; p = p->next)
        if (p->be == be && memcmp(&p->desc, d, sizeof *d) == 0) return p;
    state_open();
    st_conv_plan *p = plan_create(be, d);
    p->next = dnnl_state.plans;
    dnnl_state.plans = p;
    return p;
}

void cpu_conv_plans_free(st_backend *be) {
    for (kernel16 **k = &dnnl_state.kernels16; *k;) {
        kernel16 *e = *k;
        if (e->be != be) {
            k = &e->next;
            continue;
        }
        *k = e->next;
        free(e->w16);
        free(e);
    }
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

size_t cpu_conv_weights_numel(st_backend *be, const st_conv_plan *p) {
    (void)be;
    return dnnl_memory_desc_get_size(&p->weights_md) / sizeof(float);
}

static dnnl_memory_desc_t hwio_md_of(const st_conv_plan *p) {
    dnnl_dims_t wdims;
    weights_dims(&p->desc, wdims);
    dnnl_memory_desc_t md;
    md_init(&md, 4, wdims, dnnl_hwio);
    return md;
}

/* to = from * k_scale[k] per output channel (k_scale NULL: a plain copy), converting between
 * two layouts of the plan's kernel in one oneDNN reorder, which writes the zero padding of a
 * padded destination. Load and save time only, so nothing is kept. */
static void convert_weights(const st_conv_plan *p, const float *from,
                            const dnnl_memory_desc_t *from_md, float *to,
                            const dnnl_memory_desc_t *to_md, const float *k_scale) {
    dnnl_primitive_attr_t attr = NULL;
    if (k_scale) {
        ST_DNNL(dnnl_primitive_attr_create(&attr));
        ST_DNNL(dnnl_primitive_attr_set_output_scales(attr, p->desc.k, 1 << 0, k_scale));
    }
    dnnl_memory_t src, dst;
    ST_DNNL(dnnl_memory_create(&src, from_md, dnnl_state.engine, (void *)from));
    ST_DNNL(dnnl_memory_create(&dst, to_md, dnnl_state.engine, to));
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t reorder;
    ST_DNNL(dnnl_reorder_primitive_desc_create(&pd, from_md, dnnl_state.engine, to_md,
                                               dnnl_state.engine, attr));
    ST_DNNL(dnnl_primitive_create(&reorder, pd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    execute(reorder, 2, args);
    ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
    ST_DNNL(dnnl_primitive_destroy(reorder));
    ST_DNNL(dnnl_primitive_desc_destroy(pd));
    ST_DNNL(dnnl_memory_destroy(src));
    ST_DNNL(dnnl_memory_destroy(dst));
    if (attr) ST_DNNL(dnnl_primitive_attr_destroy(attr));
}

void cpu_conv_weights_import(st_backend *be, st_conv_plan *p, const float *hwio_host, float *w) {
    dnnl_memory_desc_t hwio_md = hwio_md_of(p);
    convert_weights(p, hwio_host, &hwio_md, w, &p->weights_md, NULL);
    kernel16_forget(be, w, 0);
}

void cpu_conv_weights_export(st_backend *be, st_conv_plan *p, const float *w, float *hwio_host) {
    (void)be;
    dnnl_memory_desc_t hwio_md = hwio_md_of(p);
    convert_weights(p, w, &p->weights_md, hwio_host, &hwio_md, NULL);
}

/* The kernel as a pass reads it: the plan's buffer (whose handle is set), its cached bf16 copy
 * in a bf16 plan, or its copy in the pass's own layout (a reorder of the FP32 kernel; bf16 or
 * not), in the scratch. */
static dnnl_memory_t pass_read_weights(st_backend *be, st_conv_plan *p, conv_pass *pass) {
    if (pass->reorder) {
        dnnl_memory_t weights = bind_pass_weights(pass);
        execute_reorder(be, pass->reorder, p->weights, weights);
        return weights;
    }
    return p->desc.bf16 ? kernel16_read(be, p) : p->weights;
}

/* x as the passes read it: itself, its bf16 copy in a bf16 plan, or, arriving as bf16
 * (x_bf16), itself as the bf16 operand. */
static dnnl_memory_t pass_src(st_backend *be, st_conv_plan *p) {
    if (!p->desc.bf16) return p->src;
    return p->desc.x_bf16 ? bf16_as_is(&p->src16, p->src)
                          : bf16_copy_fill(be, &p->src16, p->src, SCRATCH_SRC);
}

/* dy as the backward passes read it, likewise (dy_bf16). */
static dnnl_memory_t pass_diff_dst(st_backend *be, st_conv_plan *p) {
    if (!p->desc.bf16) return p->dst;
    return p->desc.dy_bf16 ? bf16_as_is(&p->dst16, p->dst)
                           : bf16_copy_fill(be, &p->dst16, p->dst, SCRATCH_DST);
}

void cpu_conv_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                      const float *bias, float *y) {
    set_handle(p->src, x);
    set_handle(p->weights, w);
    set_handle(p->bias, bias ? bias : p->zero_bias);
    set_handle(p->dst, y);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, pass_src(be, p)},
                               {DNNL_ARG_WEIGHTS, pass_read_weights(be, p, &p->fwd)},
                               {DNNL_ARG_BIAS, p->bias},
                               {DNNL_ARG_DST, p->desc.y_bf16 ? bf16_as_is(&p->dst16, p->dst)
                                                              : p->dst}};
    execute(p->fwd.prim, 4, args);
    ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
}

/* Backward-data from dy as the pass reads it (diff_dst: dy, or its bf16 copy, filled). */
static void backward_data_run(st_backend *be, st_conv_plan *p, dnnl_memory_t diff_dst,
                              const float *w, float *dx) {
    conv_pass *pass = &p->bwd_data;
    if (!pass->prim) backward_data_create(p);
    set_handle(p->weights, w);
    set_handle(p->src, dx);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_WEIGHTS, pass_read_weights(be, p, pass)},
                               {DNNL_ARG_DIFF_SRC, p->src}};
    execute(pass->prim, 3, args);
    ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
}

/* Backward-weights from x and dy as the pass reads them (src, diff_dst: filled). */
static void backward_filter_run(st_backend *be, st_conv_plan *p, dnnl_memory_t src,
                                dnnl_memory_t diff_dst, float *dw, float *dbias) {
    const int with_bias = dbias != NULL;
    conv_pass *pass = &p->bwd_weights[with_bias];
    if (!pass->prim) backward_weights_create(p, with_bias);
    set_handle(p->weights, dw);
    if (with_bias) set_handle(p->bias, dbias);
    dnnl_memory_t dw_pass = pass->reorder ? bind_pass_weights(pass) : p->weights;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, dw_pass},
                               {DNNL_ARG_DIFF_BIAS, p->bias}};
    execute(pass->prim, with_bias ? 4 : 3, args);
    if (pass->reorder) execute_reorder(be, pass->reorder, pass->weights, p->weights);
    ST_DNNL(dnnl_stream_wait(dnnl_state.stream));
}

void cpu_conv_backward_data(st_backend *be, st_conv_plan *p, const float *dy, const float *w,
                            float *dx) {
    set_handle(p->dst, dy);
    backward_data_run(be, p, pass_diff_dst(be, p), w, dx);
}

void cpu_conv_backward_filter(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                              float *dw, float *dbias) {
    set_handle(p->src, x);
    set_handle(p->dst, dy);
    backward_filter_run(be, p, pass_src(be, p), pass_diff_dst(be, p), dw, dbias);
}

/* dy's bf16 copy (a bf16 plan) stays in its scratch slot through both passes: the filter pass
 * uses the x and weights slots only. */
void cpu_conv_backward(st_backend *be, st_conv_plan *p, const float *x, const float *dy,
                       const float *w, float *dw, float *dbias, float *dx, double *data_seconds) {
    set_handle(p->dst, dy);
    dnnl_memory_t diff_dst = pass_diff_dst(be, p);
    if (dw) {
        set_handle(p->src, x);
        backward_filter_run(be, p, pass_src(be, p), diff_dst, dw, dbias);
    }
    const double t0 = data_seconds ? seconds_now() : 0, reorder0 = be->reorder_seconds;
    if (dx) backward_data_run(be, p, diff_dst, w, dx);
    if (data_seconds) *data_seconds = seconds_now() - t0 - (be->reorder_seconds - reorder0);
}

void cpu_conv_weights_changed(st_backend *be, const float *w, int freed) {
    kernel16_forget(be, w, freed);
}

int cpu_conv_bf16_supported(st_backend *be) {
    (void)be;
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

/* The weights scale per output channel as a oneDNN reorder within the plan's layout (one pass,
 * w_out = w * scale[k] rounded once, as a loop over HWIO would compute it). */
void cpu_conv_fold_bn(st_backend *be, st_conv_plan *p, const float *w, const float *b,
                      const float *gamma, const float *beta, const float *mean, const float *var,
                      float eps, float *w_out, float *b_out) {
    float *scale = ST_MALLOC((size_t)p->desc.k * sizeof *scale);
    for (int k = 0; k < p->desc.k; k++) {
        scale[k] = st_bn_scale(gamma[k], st_bn_rstd(var[k], eps));
        b_out[k] = st_bn_shift(beta[k], mean[k] - (b ? b[k] : 0.0f), scale[k]);
    }
    convert_weights(p, w, &p->weights_md, w_out, &p->weights_md, scale);
    kernel16_forget(be, w_out, 0);
    free(scale);
}
