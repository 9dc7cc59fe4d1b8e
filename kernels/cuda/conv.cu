/*
 * conv.cu: 2-D convolution (cross-correlation) through cuDNN, the conversion of conv kernels
 * between the file layout (HWIO) and cuDNN's, and batch-norm folding.
 *
 * Layouts in our memory: x (N, H, W, C) NHWC, y (N, P, Q, K) NHWC, bias (K), and conv kernels w
 * in the backend layout: cuDNN's NHWC filter layout KRSC (K, R, S, C), no padding. Kernels are
 * converted on the host at load (conv_weights_import: HWIO -> KRSC, then upload) and save
 * (conv_weights_export), so forward, backward-data and backward-filter hand w / dw to cuDNN as
 * they are; the layout depends on the geometry only, so every batch size's plan shares it.
 *
 * Padding: cuDNN takes one symmetric pad per axis. The plan gives cuDNN the symmetric part
 * min(top, bottom) / min(left, right) and, only when a side has more, pads the input explicitly
 * by the excess (extra_top = top - min, ...) into the plan-owned x_padded (N, HP, WP, C). The
 * padded input then sees exactly the requested zero cells, so the output grid is unchanged.
 * Backward-data then produces the gradient of the padded input, cropped back into dx;
 * backward-filter pads x again (the buffer is shared by the three passes; the stream orders them).
 *
 * Algorithms, per pass (forward, backward-data, backward-filter), chosen when a plan is made:
 * the candidates of cudnnGet*Algorithm_v7 in its ranked order; a candidate is rejected when its
 * status is not SUCCESS, it is not CUDNN_DETERMINISTIC (a step repeats bit for bit), its math
 * converts to FP16 (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) or, in fp32 mode, it needs tensor
 * cores (CUDNN_TENSOR_OP_MATH). The math type the pass will run with (fp32 mode: always
 * CUDNN_FMA_MATH; tf32 mode: the candidate's own) is set on the descriptor, the workspace is
 * queried with cudnnGet*WorkspaceSize for that exact algorithm and math type (at most
 * ST_CONV_WORKSPACE_LIMIT), and the candidate is run once on scratch buffers of the real shapes,
 * because a heuristic's SUCCESS can still be refused at execution. The first that runs is kept;
 * when none does, the failure names the geometry and every candidate with why it was refused.
 *
 * Plan cache: a plan (st_conv_plan) is a handle per st_conv_desc that lives until the backend is
 * destroyed (the model keeps pointers to its full-batch plans). Its device state (the chosen
 * algorithms, x_padded, its share of the shared workspace) is "ready" for at most
 * ST_CONV_PLANS_PER_GEOMETRY batch sizes per geometry (the desc less n): making another one
 * ready releases the least recently used of that geometry, freeing x_padded and shrinking the
 * workspace to the largest need of the ready plans. A released plan keeps only its host
 * descriptors (< 1 KiB) and is re-planned on its next use, so a variable last batch (embed packs
 * batches around undecodable images) costs a few plan sets, not one per size. Planning and
 * re-planning happen between steps' ops on the stream, never inside a cuDNN call.
 * Out of device memory while planning: the message names the buffer, the bytes asked, the bytes
 * free (cudaMemGetInfo) and the hint of a smaller --batch.
 *
 * Forward applies bias and the fused ReLU in one epilogue kernel after cuDNN. Backward outputs dx,
 * dw, dbias are overwritten (alpha 1, beta 0).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../math/activation.h"
#include "../math/batchnorm.h"
#include "device.cuh"

#define ST_CONV_WORKSPACE_LIMIT ((size_t)1 << 30)
#define ST_CONV_PLANS_PER_GEOMETRY 3 /* full batch, last partial batch, one more */

enum { PASS_FORWARD, PASS_BACKWARD_DATA, PASS_BACKWARD_FILTER, PASS_COUNT };

/* The algorithm a pass runs: its cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t value, the math
 * type set on the descriptor before each call, the workspace cuDNN reported for both. */
struct pass_choice {
    int algo;
    cudnnMathType_t math;
    size_t workspace;
};

struct st_conv_plan {
    st_conv_desc desc;
    st_conv_plan *next;
    int extra_top, extra_bottom, extra_left, extra_right; /* explicit part of the padding */
    int padded;                                           /* any extra_* > 0 */
    int hp, wp;                                           /* input height/width given to cuDNN */
    cudnnTensorDescriptor_t x_desc;                       /* (N, C, HP, WP) NHWC */
    cudnnTensorDescriptor_t y_desc;                       /* (N, K, P, Q) NHWC */
    cudnnFilterDescriptor_t w_desc;                       /* (K, C, R, S) NHWC = KRSC */
    cudnnConvolutionDescriptor_t conv_desc;
    int ready;                      /* pass[] chosen, x_padded allocated; 0 once released */
    unsigned long long last_use;    /* ctx->plan_clock at the latest use, for the LRU */
    pass_choice pass[PASS_COUNT];
    float *x_padded; /* (N, HP, WP, C) or NULL when the padding is symmetric or not ready */
};

/* x_padded (N, HP, WP, C) = x (N, H, W, C) placed at (top, left), zeros elsewhere. */
static __global__ void pad_kernel(const float *x, float *xp, int n, int h, int w, int c, int hp,
                                  int wp, int top, int left) {
    size_t total = (size_t)n * hp * wp * c;
    ST_GRID_STRIDE(i, total) {
        int ch = (int)(i % c);
        size_t pixel = i / c;
        int j = (int)(pixel % wp) - left;
        int row = (int)((pixel / wp) % hp) - top;
        size_t img = pixel / ((size_t)wp * hp);
        xp[i] = (row >= 0 && row < h && j >= 0 && j < w)
                    ? x[((img * h + row) * w + j) * c + ch]
                    : 0.0f;
    }
}

/* dx (N, H, W, C) = the (top, left)-offset window of dx_padded (N, HP, WP, C). */
static __global__ void crop_kernel(const float *dxp, float *dx, int n, int h, int w, int c, int hp,
                                   int wp, int top, int left) {
    size_t total = (size_t)n * h * w * c;
    ST_GRID_STRIDE(i, total) {
        int ch = (int)(i % c);
        size_t pixel = i / c;
        int j = (int)(pixel % w);
        int row = (int)((pixel / w) % h);
        size_t img = pixel / ((size_t)w * h);
        dx[i] = dxp[((img * hp + row + top) * wp + j + left) * c + ch];
    }
}

/* y (rows, K) = relu?(y + bias) */
static __global__ void bias_relu_kernel(float *y, const float *bias, size_t rows, int k, int relu) {
    ST_GRID_STRIDE(i, rows * (size_t)k) {
        float v = y[i] + (bias ? bias[i % (size_t)k] : 0.0f);
        y[i] = st_maybe_relu(v, relu);
    }
}

/* The geometry in the words of the error messages: N,H,W,C -> K, RxS, stride, pads. */
static void describe(char *buf, size_t size, const st_conv_desc *d) {
    snprintf(buf, size,
             "conv N,H,W,C %d,%d,%d,%d -> K %d, %dx%d, stride %dx%d, pads top %d bottom %d "
             "left %d right %d",
             d->n, d->h, d->w, d->c, d->k, d->r, d->s, d->stride_h, d->stride_w, d->pad_top,
             d->pad_bottom, d->pad_left, d->pad_right);
}

/* Device memory for `what` of plan p (NULL for 0 bytes); out of memory stops naming the conv's
 * geometry, the bytes asked and free and the hint of a smaller batch (cuda_device_malloc). */
static void *plan_alloc(const st_conv_plan *p, size_t bytes, const char *what) {
    if (bytes == 0) return NULL;
    char geometry[200], purpose[260];
    describe(geometry, sizeof geometry, &p->desc);
    snprintf(purpose, sizeof purpose, "the %s of %s", what, geometry);
    return cuda_device_malloc(bytes, purpose);
}

/* The shared workspace becomes exactly `bytes` (after the queued calls that use it). */
static void workspace_resize(cuda_ctx *ctx, const st_conv_plan *p, size_t bytes) {
    if (bytes == ctx->workspace_bytes) return;
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* no queued cuDNN call still uses it */
    if (ctx->workspace) CUDA_CHECK(cudaFree(ctx->workspace));
    ctx->workspace = NULL;
    ctx->workspace_bytes = 0;
    ctx->workspace = plan_alloc(p, bytes, "cuDNN workspace");
    ctx->workspace_bytes = bytes;
}

/* The workspace shrinks or grows to the largest need of the ready plans. */
static void workspace_fit(cuda_ctx *ctx, const st_conv_plan *p) {
    size_t need = 0;
    for (const st_conv_plan *q = ctx->plans; q; q = q->next)
        for (int i = 0; q->ready && i < PASS_COUNT; i++)
            if (q->pass[i].workspace > need) need = q->pass[i].workspace;
    workspace_resize(ctx, p, need);
}

/* ---- the three passes: ranking, workspace query and execution, written once each ---- */

/* Scratch tensors of a plan's shapes for the trial runs; each pass reads and writes them in its
 * roles (forward x, w -> y; backward-data y, w -> x; backward-filter x, y -> w). */
struct trial_buffers {
    float *x; /* (N, HP, WP, C) */
    float *w; /* (K, R, S, C) */
    float *y; /* (N, P, Q, K) */
};

static const float alpha_one = 1.0f, beta_zero = 0.0f; /* cuDNN: overwrite the output */

struct forward_pass {
    typedef cudnnConvolutionFwdAlgoPerf_t perf_t;
    typedef cudnnConvolutionFwdAlgo_t algo_t;
    static const int capacity = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    static const char *name() { return "forward"; }
    static cudnnStatus_t rank(cuda_ctx *ctx, const st_conv_plan *p, int *count, perf_t *perf) {
        return cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, p->x_desc, p->w_desc,
                                                      p->conv_desc, p->y_desc, capacity, count,
                                                      perf);
    }
    static cudnnStatus_t workspace(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo,
                                   size_t *bytes) {
        return cudnnGetConvolutionForwardWorkspaceSize(ctx->cudnn, p->x_desc, p->w_desc,
                                                       p->conv_desc, p->y_desc, algo, bytes);
    }
    /* y = conv(x, w) */
    static cudnnStatus_t run(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo, const float *x,
                             const float *w, float *y) {
        return cudnnConvolutionForward(ctx->cudnn, &alpha_one, p->x_desc, x, p->w_desc, w,
                                       p->conv_desc, algo, ctx->workspace, ctx->workspace_bytes,
                                       &beta_zero, p->y_desc, y);
    }
    static cudnnStatus_t trial(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo,
                               const trial_buffers *t) {
        return run(ctx, p, algo, t->x, t->w, t->y);
    }
};

struct backward_data_pass {
    typedef cudnnConvolutionBwdDataAlgoPerf_t perf_t;
    typedef cudnnConvolutionBwdDataAlgo_t algo_t;
    static const int capacity = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    static const char *name() { return "backward-data"; }
    static cudnnStatus_t rank(cuda_ctx *ctx, const st_conv_plan *p, int *count, perf_t *perf) {
        return cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx->cudnn, p->w_desc, p->y_desc,
                                                           p->conv_desc, p->x_desc, capacity,
                                                           count, perf);
    }
    static cudnnStatus_t workspace(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo,
                                   size_t *bytes) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(ctx->cudnn, p->w_desc, p->y_desc,
                                                            p->conv_desc, p->x_desc, algo, bytes);
    }
    /* dx = gradient of the (padded) input from dy and w */
    static cudnnStatus_t run(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo, const float *dy,
                             const float *w, float *dx) {
        return cudnnConvolutionBackwardData(ctx->cudnn, &alpha_one, p->w_desc, w, p->y_desc, dy,
                                            p->conv_desc, algo, ctx->workspace,
                                            ctx->workspace_bytes, &beta_zero, p->x_desc, dx);
    }
    static cudnnStatus_t trial(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo,
                               const trial_buffers *t) {
        return run(ctx, p, algo, t->y, t->w, t->x);
    }
};

struct backward_filter_pass {
    typedef cudnnConvolutionBwdFilterAlgoPerf_t perf_t;
    typedef cudnnConvolutionBwdFilterAlgo_t algo_t;
    static const int capacity = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    static const char *name() { return "backward-filter"; }
    static cudnnStatus_t rank(cuda_ctx *ctx, const st_conv_plan *p, int *count, perf_t *perf) {
        return cudnnGetConvolutionBackwardFilterAlgorithm_v7(ctx->cudnn, p->x_desc, p->y_desc,
                                                             p->conv_desc, p->w_desc, capacity,
                                                             count, perf);
    }
    static cudnnStatus_t workspace(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo,
                                   size_t *bytes) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(
            ctx->cudnn, p->x_desc, p->y_desc, p->conv_desc, p->w_desc, algo, bytes);
    }
    /* dw = gradient of the kernel from x and dy */
    static cudnnStatus_t run(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo, const float *x,
                             const float *dy, float *dw) {
        return cudnnConvolutionBackwardFilter(ctx->cudnn, &alpha_one, p->x_desc, x, p->y_desc, dy,
                                              p->conv_desc, algo, ctx->workspace,
                                              ctx->workspace_bytes, &beta_zero, p->w_desc, dw);
    }
    static cudnnStatus_t trial(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo,
                               const trial_buffers *t) {
        return run(ctx, p, algo, t->x, t->y, t->w);
    }
};

/* ---- choosing a pass's algorithm ---- */

/* The math type set on the descriptor before the heuristics rank the candidates. */
static cudnnMathType_t ranking_math(const cuda_ctx *ctx) {
    return ctx->math == CUDA_MATH_TF32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

/* Why a ranked candidate cannot be used in the context's math mode, or NULL. */
static const char *candidate_refusal(const cuda_ctx *ctx, cudnnStatus_t status,
                                     cudnnDeterminism_t determinism, cudnnMathType_t math) {
    if (status != CUDNN_STATUS_SUCCESS) return cudnnGetErrorString(status);
    if (determinism != CUDNN_DETERMINISTIC) return "not deterministic";
    if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return "converts to FP16";
    if (ctx->math == CUDA_MATH_FP32 && math == CUDNN_TENSOR_OP_MATH)
        return "tensor cores (fp32 mode)";
    return NULL;
}

/* The math type a usable candidate runs with: FMA in fp32 mode (no TF32, whatever the
 * heuristics reported), its own in tf32 mode. */
static cudnnMathType_t candidate_math(const cuda_ctx *ctx, cudnnMathType_t math) {
    return ctx->math == CUDA_MATH_TF32 ? math : CUDNN_FMA_MATH;
}

/* Appends "algo A: why; " to the log of refused candidates (truncated when full). */
static void log_refusal(char *log, size_t size, int algo, const char *why) {
    size_t used = strlen(log);
    if (used + 1 < size) snprintf(log + used, size - used, "algo %d: %s; ", algo, why);
}

ST_NORETURN static void fail_no_algorithm(const cuda_ctx *ctx, const st_conv_plan *p,
                                          const char *pass, const char *log) {
    char geometry[200];
    describe(geometry, sizeof geometry, &p->desc);
    ST_FAIL("cuDNN: no usable %s algorithm for %s (SIMTUNE_CUDA_MATH=%s, deterministic, "
            "workspace <= %zu MiB); candidates tried: %s",
            pass, geometry, ctx->math == CUDA_MATH_TF32 ? "tf32" : "fp32",
            ST_CONV_WORKSPACE_LIMIT >> 20, log[0] ? log : "none ranked");
}

/* Why the candidate failed its workspace query or trial run, or NULL when it ran: sets its math
 * type, queries its workspace, grows the shared workspace to it and runs it once on t. */
template <class Pass>
static const char *try_candidate(cuda_ctx *ctx, st_conv_plan *p, typename Pass::algo_t algo,
                                 cudnnMathType_t math, const trial_buffers *t, size_t *bytes) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, math));
    cudnnStatus_t status = Pass::workspace(ctx, p, algo, bytes);
    if (status != CUDNN_STATUS_SUCCESS) return cudnnGetErrorString(status);
    if (*bytes > ST_CONV_WORKSPACE_LIMIT) return "workspace over the limit";
    if (*bytes > ctx->workspace_bytes) workspace_resize(ctx, p, *bytes);
    status = Pass::trial(ctx, p, algo, t);
    if (status != CUDNN_STATUS_SUCCESS) return cudnnGetErrorString(status);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* a fault inside the kernel is fatal */
    return NULL;
}

/* The first ranked candidate of the pass that is usable and runs on t; none stops the process
 * naming the geometry and why each candidate was refused. */
template <class Pass>
static pass_choice choose_pass(cuda_ctx *ctx, st_conv_plan *p, const trial_buffers *t) {
    typename Pass::perf_t perf[Pass::capacity];
    int count = 0;
    char log[1024] = "";
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, ranking_math(ctx)));
    CUDNN_CHECK(Pass::rank(ctx, p, &count, perf));
    for (int i = 0; i < count; i++) {
        const char *why =
            candidate_refusal(ctx, perf[i].status, perf[i].determinism, perf[i].mathType);
        pass_choice choice = {(int)perf[i].algo, candidate_math(ctx, perf[i].mathType), 0};
        if (!why)
            why = try_candidate<Pass>(ctx, p, perf[i].algo, choice.math, t, &choice.workspace);
        if (!why) return choice;
        log_refusal(log, sizeof log, (int)perf[i].algo, why);
    }
    fail_no_algorithm(ctx, p, Pass::name(), log);
}

/* ---- plans and their cache ---- */

static void split_padding(st_conv_plan *p, int *sym_h, int *sym_w) {
    const st_conv_desc *d = &p->desc;
    *sym_h = d->pad_top < d->pad_bottom ? d->pad_top : d->pad_bottom;
    *sym_w = d->pad_left < d->pad_right ? d->pad_left : d->pad_right;
    p->extra_top = d->pad_top - *sym_h;
    p->extra_bottom = d->pad_bottom - *sym_h;
    p->extra_left = d->pad_left - *sym_w;
    p->extra_right = d->pad_right - *sym_w;
    p->padded = p->extra_top || p->extra_bottom || p->extra_left || p->extra_right;
    p->hp = d->h + p->extra_top + p->extra_bottom;
    p->wp = d->w + p->extra_left + p->extra_right;
}

/* The handle with its cuDNN descriptors; no algorithm chosen, nothing on the device. */
static st_conv_plan *plan_create(const st_conv_desc *d) {
    st_conv_plan *p = (st_conv_plan *)ST_CALLOC(1, sizeof *p);
    p->desc = *d;
    int sym_h, sym_w;
    split_padding(p, &sym_h, &sym_w);

    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x_desc));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y_desc));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w_desc));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv_desc));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, d->n,
                                           d->c, p->hp, p->wp));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, d->n,
                                           d->k, d->p, d->q));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, d->k,
                                           d->c, d->r, d->s));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv_desc, sym_h, sym_w, d->stride_h,
                                                d->stride_w, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));

    int on, ok, oh, ow; /* cuDNN's output grid must be ours (st_conv_desc_finish) */
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv_desc, p->x_desc, p->w_desc, &on,
                                                      &ok, &oh, &ow));
    ST_CHECK(on == d->n && ok == d->k && oh == d->p && ow == d->q,
             "conv plan: cuDNN output %dx%dx%dx%d differs from the descriptor's %dx%dx%dx%d", on,
             oh, ow, ok, d->n, d->p, d->q, d->k);
    return p;
}

/* Frees the plan's device state (x_padded; its workspace share goes at the next
 * workspace_fit); the handle and its descriptors stay valid. */
static void plan_release(cuda_ctx *ctx, st_conv_plan *p) {
    if (p->x_padded) {
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* no queued op still reads it */
        CUDA_CHECK(cudaFree(p->x_padded));
    }
    p->x_padded = NULL;
    p->ready = 0;
}

static int same_geometry(const st_conv_desc *a, const st_conv_desc *b) {
    st_conv_desc ga = *a, gb = *b;
    ga.n = gb.n = 0;
    return memcmp(&ga, &gb, sizeof ga) == 0;
}

/* Releases the least recently used ready plans of p's geometry until one more fits. */
static void make_room(cuda_ctx *ctx, const st_conv_plan *p) {
    for (;;) {
        int ready = 0;
        st_conv_plan *oldest = NULL;
        for (st_conv_plan *q = ctx->plans; q; q = q->next) {
            if (q == p || !q->ready || !same_geometry(&q->desc, &p->desc)) continue;
            ready++;
            if (!oldest || q->last_use < oldest->last_use) oldest = q;
        }
        if (ready < ST_CONV_PLANS_PER_GEOMETRY) return;
        plan_release(ctx, oldest);
    }
}

/* Chooses the three passes' algorithms on scratch buffers of the plan's shapes (zeroed, so the
 * trial runs read defined values) and keeps the input scratch as x_padded when the plan pads. */
static void plan_choose(cuda_ctx *ctx, st_conv_plan *p) {
    const st_conv_desc *d = &p->desc;
    make_room(ctx, p);
    size_t x_bytes = (size_t)d->n * p->hp * p->wp * d->c * sizeof(float);
    size_t w_bytes = (size_t)d->k * d->r * d->s * d->c * sizeof(float);
    size_t y_bytes = (size_t)d->n * d->p * d->q * d->k * sizeof(float);
    trial_buffers t;
    t.x = (float *)plan_alloc(p, x_bytes, p->padded ? "padded input" : "trial input");
    t.w = (float *)plan_alloc(p, w_bytes, "trial kernel");
    t.y = (float *)plan_alloc(p, y_bytes, "trial output");
    CUDA_CHECK(cudaMemsetAsync(t.x, 0, x_bytes, ctx->stream));
    CUDA_CHECK(cudaMemsetAsync(t.w, 0, w_bytes, ctx->stream));
    CUDA_CHECK(cudaMemsetAsync(t.y, 0, y_bytes, ctx->stream));
    p->pass[PASS_FORWARD] = choose_pass<forward_pass>(ctx, p, &t);
    p->pass[PASS_BACKWARD_DATA] = choose_pass<backward_data_pass>(ctx, p, &t);
    p->pass[PASS_BACKWARD_FILTER] = choose_pass<backward_filter_pass>(ctx, p, &t);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* the trials are done with the scratch */
    CUDA_CHECK(cudaFree(t.w));
    CUDA_CHECK(cudaFree(t.y));
    if (p->padded) p->x_padded = t.x;
    else CUDA_CHECK(cudaFree(t.x));
    p->ready = 1;
    workspace_fit(ctx, p);
}

/* Marks p used now and makes it ready (re-planning a released plan). Every op on a plan calls
 * it first. */
static void plan_use(cuda_ctx *ctx, st_conv_plan *p) {
    p->last_use = ++ctx->plan_clock;
    if (!p->ready) plan_choose(ctx, p);
}

static void plan_destroy(cuda_ctx *ctx, st_conv_plan *p) {
    plan_release(ctx, p);
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->x_desc));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->y_desc));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(p->w_desc));
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->conv_desc));
    free(p);
}

extern "C" st_conv_plan *cuda_conv_plan(st_backend *be, const st_conv_desc *d) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(d->n > 0 && d->c > 0 && d->k > 0 && d->p > 0 && d->q > 0,
             "conv plan: bad shape n=%d c=%d k=%d p=%d q=%d (st_conv_desc_finish not called?)",
             d->n, d->c, d->k, d->p, d->q);
    ST_CHECK((size_t)d->n * d->h * d->w * d->c < ((size_t)1 << 31) &&
                 (size_t)d->n * d->p * d->q * d->k < ((size_t)1 << 31),
             "conv plan: tensor of 2^31 or more elements (cuDNN 4-d descriptors use int)");
    ST_CHECK(!d->bf16, "conv plan: bf16 convolutions are not implemented on CUDA yet");
    st_conv_plan *p = ctx->plans;
    while (p && memcmp(&p->desc, d, sizeof *d) != 0) p = p->next;
    if (!p) {
        p = plan_create(d);
        p->next = ctx->plans;
        ctx->plans = p;
    }
    plan_use(ctx, p);
    return p;
}

/* bf16 convolutions (tensor cores) are not implemented here yet: callers run FP32. */
extern "C" int cuda_conv_bf16_supported(st_backend *be) {
    (void)be;
    return 0;
}

/* Nothing derived from a kernel outlives a call here (no bf16 copies), so nothing to drop. */
extern "C" void cuda_conv_weights_changed(st_backend *be, const float *w, int freed) {
    (void)be;
    (void)w;
    (void)freed;
}

extern "C" void cuda_conv_plans_free(st_backend *be) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    while (ctx->plans) {
        st_conv_plan *p = ctx->plans;
        ctx->plans = p->next;
        plan_destroy(ctx, p);
    }
}

extern "C" size_t cuda_conv_weights_numel(st_backend *be, const st_conv_plan *p) {
    (void)be;
    return (size_t)p->desc.k * p->desc.r * p->desc.s * p->desc.c;
}

/* out (cols, rows) = in (rows, cols)^T on the host: HWIO is (R*S*C, K), KRSC is (K, R*S*C). */
static void host_transpose(const float *in, float *out, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) out[c * rows + r] = in[r * cols + c];
}

extern "C" void cuda_conv_weights_import(st_backend *be, st_conv_plan *p, const float *hwio_host,
                                         float *w) {
    const st_conv_desc *d = &p->desc;
    size_t taps = (size_t)d->r * d->s * d->c, numel = taps * d->k;
    float *krsc = (float *)ST_MALLOC(numel * sizeof *krsc);
    host_transpose(hwio_host, krsc, taps, (size_t)d->k);
    cuda_upload(be, w, krsc, numel * sizeof *krsc); /* krsc may be freed on return */
    free(krsc);
}

extern "C" void cuda_conv_weights_export(st_backend *be, st_conv_plan *p, const float *w,
                                         float *hwio_host) {
    const st_conv_desc *d = &p->desc;
    size_t taps = (size_t)d->r * d->s * d->c, numel = taps * d->k;
    float *krsc = (float *)ST_MALLOC(numel * sizeof *krsc);
    cuda_download(be, krsc, w, numel * sizeof *krsc);
    host_transpose(krsc, hwio_host, (size_t)d->k, taps);
    free(krsc);
}

/* Makes p ready, sets the pass's math type and returns the input cuDNN reads: x, or x padded by
 * the plan's explicit excess padding into x_padded. */
static const float *prepare_input(cuda_ctx *ctx, st_conv_plan *p, const float *x, int pass) {
    plan_use(ctx, p);
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->pass[pass].math));
    if (!p->padded || !x) return x;
    const st_conv_desc *d = &p->desc;
    size_t total = (size_t)d->n * p->hp * p->wp * d->c;
    pad_kernel<<<st_grid_for(total), ST_BLOCK, 0, ctx->stream>>>(
        x, p->x_padded, d->n, d->h, d->w, d->c, p->hp, p->wp, p->extra_top, p->extra_left);
    CUDA_CHECK_LAUNCH("pad_kernel");
    return p->x_padded;
}

extern "C" void cuda_conv_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                                  const float *bias, float *y) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const st_conv_desc *d = &p->desc;
    const float *input = prepare_input(ctx, p, x, PASS_FORWARD);
    CUDNN_CHECK(forward_pass::run(ctx, p, (cudnnConvolutionFwdAlgo_t)p->pass[PASS_FORWARD].algo,
                                  input, w, y));
    if (bias || d->relu) {
        size_t rows = (size_t)d->n * d->p * d->q;
        bias_relu_kernel<<<st_grid_for(rows * d->k), ST_BLOCK, 0, ctx->stream>>>(y, bias, rows,
                                                                                  d->k, d->relu);
        CUDA_CHECK_LAUNCH("bias_relu_kernel");
    }
}

extern "C" void cuda_conv_backward_data(st_backend *be, st_conv_plan *p, const float *dy,
                                        const float *w, float *dx) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const st_conv_desc *d = &p->desc;
    prepare_input(ctx, p, NULL, PASS_BACKWARD_DATA); /* nothing to pad: dx is the output */
    float *grad_input = p->padded ? p->x_padded : dx;
    CUDNN_CHECK(backward_data_pass::run(
        ctx, p, (cudnnConvolutionBwdDataAlgo_t)p->pass[PASS_BACKWARD_DATA].algo, dy, w,
        grad_input));
    if (p->padded) {
        size_t total = (size_t)d->n * d->h * d->w * d->c;
        crop_kernel<<<st_grid_for(total), ST_BLOCK, 0, ctx->stream>>>(
            p->x_padded, dx, d->n, d->h, d->w, d->c, p->hp, p->wp, p->extra_top, p->extra_left);
        CUDA_CHECK_LAUNCH("crop_kernel");
    }
}

extern "C" void cuda_conv_backward_filter(st_backend *be, st_conv_plan *p, const float *x,
                                          const float *dy, float *dw, float *dbias) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const st_conv_desc *d = &p->desc;
    const float *input = prepare_input(ctx, p, x, PASS_BACKWARD_FILTER);
    CUDNN_CHECK(backward_filter_pass::run(
        ctx, p, (cudnnConvolutionBwdFilterAlgo_t)p->pass[PASS_BACKWARD_FILTER].algo, input, dy,
        dw));
    if (dbias) cuda_column_sums(be, (long)d->n * d->p * d->q, d->k, dy, dbias);
}

/* w_out (K, taps) = w * scale[k] (KRSC: K is the slowest axis); same formulas
 * (math/batchnorm.h) as the CPU fold. */
static __global__ void fold_weights_kernel(const float *w, const float *gamma, const float *var,
                                           float eps, size_t taps, int k, float *w_out) {
    ST_GRID_STRIDE(i, taps * (size_t)k) {
        int ch = (int)(i / taps);
        w_out[i] = w[i] * st_bn_scale(gamma[ch], st_bn_rstd(var[ch], eps));
    }
}

static __global__ void fold_bias_kernel(const float *b, const float *gamma, const float *beta,
                                        const float *mean, const float *var, float eps, int k,
                                        float *b_out) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= k) return;
    float scale = st_bn_scale(gamma[ch], st_bn_rstd(var[ch], eps));
    b_out[ch] = st_bn_shift(beta[ch], mean[ch] - (b ? b[ch] : 0.0f), scale);
}

extern "C" void cuda_conv_fold_bn(st_backend *be, st_conv_plan *p, const float *w, const float *b,
                                  const float *gamma, const float *beta, const float *mean,
                                  const float *var, float eps, float *w_out, float *b_out) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const st_conv_desc *d = &p->desc;
    size_t taps = (size_t)d->r * d->s * d->c;
    fold_bias_kernel<<<(d->k + ST_BLOCK - 1) / ST_BLOCK, ST_BLOCK, 0, ctx->stream>>>(
        b, gamma, beta, mean, var, eps, d->k, b_out);
    CUDA_CHECK_LAUNCH("fold_bias_kernel");
    fold_weights_kernel<<<st_grid_for(taps * d->k), ST_BLOCK, 0, ctx->stream>>>(
        w, gamma, var, eps, taps, d->k, w_out);
    CUDA_CHECK_LAUNCH("fold_weights_kernel");
}
