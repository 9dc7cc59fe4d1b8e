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
 *
 * bf16 plans (d->bf16; conv_bf16_supported: compute capability 8.0 and later) run cuDNN's
 * PSEUDO_BFLOAT16_CONFIG, the one bf16 configuration of the legacy API: x, w and y descriptors
 * CUDNN_DATA_BFLOAT16, the convolution's compute type CUDNN_DATA_FLOAT (FP32 accumulation), in
 * all three passes, on tensor cores (candidates ranked under CUDNN_TENSOR_OP_MATH and run with
 * their own math type; FP16 conversion and non-deterministic ones still refused; the
 * SIMTUNE_CUDA_MATH mode concerns FP32 plans only). Our tensors stay FP32 as on the CPU: each
 * pass rounds its FP32 inputs (x, dy) into bf16 copies in a shared scratch (st_bf16_from_float of
 * kernels/math/bf16.h, the CPU's rounding bit for bit, with the asymmetric padding applied in the
 * same kernel), reads the kernel's cached bf16 copy, and widens cuDNN's bf16 output into our FP32
 * y, dx or dw (forward: bias and ReLU in the same epilogue). An input that arrives rounded is not
 * rounded again: with x_bf16 / dy_bf16 (a BN or conv before, a BN after wrote it as bf16,
 * st_bn_desc) x / dy hold bf16 bit patterns (NHWC, as many as the FP32 tensor) that cuDNN reads in
 * place, x being copied into the scratch only when the plan pads. With y_bf16 the forward's y is
 * bf16 bit patterns (for readers that take it so: st_bn_desc.x_bf16, a conv's x_bf16): cuDNN
 * writes it in place and the epilogue, if any, adds bias and ReLU there and rounds again, so y is
 * st_bf16_from_float of the FP32 y of the same plan without y_bf16, bit for bit. The bias
 * gradient is the column sum (in double, then FP32) of the bf16 dy the filter pass read, widened,
 * as the CPU's oneDNN sums its bf16 dy; so a plan's results are the same bits whether x and dy
 * arrive rounded or FP32. One difference from the CPU, where oneDNN writes FP32 outputs (or,
 * with y_bf16, rounds its FP32 accumulator plus bias once): cuDNN's bf16 configuration writes y,
 * dx and dw in bf16, so each output element is rounded once more (relative error <= 2^-8, then
 * FP32 bias/ReLU, and with y_bf16 the second rounding).
 * The shared bf16 scratch (x or dx, y or dy, dw of one call) is sized like the workspace, to the
 * largest need of the ready bf16 plans, when a plan is made.
 * Kernel cache: a kernel's bf16 copy (cuda_kernel16, keyed by the FP32 buffer) is made by the
 * first pass that reads the buffer and reused by every pass and plan until the buffer is written:
 * conv_weights_import and conv_fold_bn mark it stale themselves, conv_weights_changed does for
 * writers outside the conv ops (optimizer, raw copies) and drops it when the buffer is freed.
 * So a frozen kernel is rounded once and a trainable one once per step, as on the CPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../math/activation.h"
#include "../math/batchnorm.h"
#include "../math/bf16.h"
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
                                                          /* (all three bf16 in bf16 plans) */
    cudnnConvolutionDescriptor_t conv_desc;
    int ready;                      /* pass[] chosen, x_padded allocated; 0 once released */
    unsigned long long last_use;    /* ctx->plan_clock at the latest use, for the LRU */
    pass_choice pass[PASS_COUNT];
    float *x_padded; /* (N, HP, WP, C) or NULL when the padding is symmetric, the plan is bf16
                      * (it pads into its bf16 copy) or not ready */
};

/* The bf16 copy of one FP32 conv kernel buffer w (KRSC, n values): current until w is written. */
struct cuda_kernel16 {
    const float *w;
    uint16_t *w16;
    size_t n;
    int current;
    cuda_kernel16 *next;
};

/* A bf16 plan's operands in the shared bf16 scratch for one call. */
struct bf16_operands {
    uint16_t *x; /* (N, HP, WP, C): x rounded (and padded), or backward-data's padded dx */
    uint16_t *y; /* (N, P, Q, K): forward's y, or dy rounded */
    uint16_t *w; /* (K, R, S, C): backward-filter's dw */
};

/* Element access by storage type: FP32 as is, bf16 through the shared rounding (math/bf16.h). */
static __device__ float load_value(const float *p, size_t i) { return p[i]; }
static __device__ float load_value(const uint16_t *p, size_t i) { return st_bf16_to_float(p[i]); }
static __device__ void store_value(float *p, size_t i, float v) { p[i] = v; }
static __device__ void store_value(uint16_t *p, size_t i, float v) { p[i] = st_bf16_from_float(v); }
/* to[i] = from[j]: converted between types (FP32 -> bf16 rounds), copied as is within one. */
template <class From, class To>
static __device__ void copy_value(To *to, size_t i, const From *from, size_t j) {
    store_value(to, i, load_value(from, j));
}
static __device__ void copy_value(uint16_t *to, size_t i, const uint16_t *from, size_t j) {
    to[i] = from[j]; /* already rounded (x_bf16): not rounded again */
}

/* x_padded (N, HP, WP, C) = x (N, H, W, C) placed at (top, left), zeros elsewhere; x FP32 or bf16
 * (x_bf16), x_padded FP32 or bf16 (FP32 x rounded). */
template <class In, class Out>
static __global__ void pad_kernel(const In *x, Out *xp, int n, int h, int w, int c, int hp,
                                  int wp, int top, int left) {
    size_t total = (size_t)n * hp * wp * c;
    ST_GRID_STRIDE(i, total) {
        int ch = (int)(i % c);
        size_t pixel = i / c;
        int j = (int)(pixel % wp) - left;
        int row = (int)((pixel / wp) % hp) - top;
        size_t img = pixel / ((size_t)wp * hp);
        if (row >= 0 && row < h && j >= 0 && j < w)
            copy_value(xp, i, x, ((img * h + row) * w + j) * c + ch);
        else store_value(xp, i, 0.0f);
    }
}

/* dx (N, H, W, C) = the (top, left)-offset window of dx_padded (N, HP, WP, C), float or bf16. */
template <class T>
static __global__ void crop_kernel(const T *dxp, float *dx, int n, int h, int w, int c, int hp,
                                   int wp, int top, int left) {
    size_t total = (size_t)n * h * w * c;
    ST_GRID_STRIDE(i, total) {
        int ch = (int)(i % c);
        size_t pixel = i / c;
        int j = (int)(pixel % w);
        int row = (int)((pixel / w) % h);
        size_t img = pixel / ((size_t)w * h);
        dx[i] = load_value(dxp, ((img * hp + row + top) * wp + j + left) * c + ch);
    }
}

/* y (rows, K) = relu?(conv + bias): conv is cuDNN's output, y itself (FP32 plans, and bf16 plans
 * with y_bf16: bf16 in place) or its bf16 copy (bf16 plans, widened here); y FP32 or, with
 * y_bf16, bf16 (rounded). */
template <class T, class Out>
static __global__ void bias_relu_kernel(const T *conv, Out *y, const float *bias, size_t rows,
                                        int k, int relu) {
    ST_GRID_STRIDE(i, rows * (size_t)k) {
        float v = load_value(conv, i) + (bias ? bias[i % (size_t)k] : 0.0f);
        store_value(y, i, st_maybe_relu(v, relu));
    }
}

/* to = from, n values: FP32 -> bf16 rounds (st_bf16_from_float), bf16 -> FP32 widens. */
template <class From, class To>
static __global__ void convert_kernel(const From *from, To *to, size_t n) {
    ST_GRID_STRIDE(i, n) store_value(to, i, load_value(from, i));
}

/* The geometry in the words of the error messages: N,H,W,C -> K, RxS, stride, pads. */
static void describe(char *buf, size_t size, const st_conv_desc *d) {
    snprintf(buf, size,
             "conv N,H,W,C %d,%d,%d,%d -> K %d, %dx%d, stride %dx%d, pads top %d bottom %d "
             "left %d right %d%s",
             d->n, d->h, d->w, d->c, d->k, d->r, d->s, d->stride_h, d->stride_w, d->pad_top,
             d->pad_bottom, d->pad_left, d->pad_right, d->bf16 ? ", bf16" : "");
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

/* A shared buffer (*buffer, *size bytes) becomes exactly `bytes`, after the queued calls that
 * use it; `what` names it in an out-of-memory message. */
static void buffer_resize(cuda_ctx *ctx, const st_conv_plan *p, void **buffer, size_t *size,
                          size_t bytes, const char *what) {
    if (bytes == *size) return;
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* no queued call still uses it */
    if (*buffer) CUDA_CHECK(cudaFree(*buffer));
    *buffer = NULL;
    *size = 0;
    *buffer = plan_alloc(p, bytes, what);
    *size = bytes;
}

static void workspace_resize(cuda_ctx *ctx, const st_conv_plan *p, size_t bytes) {
    buffer_resize(ctx, p, &ctx->workspace, &ctx->workspace_bytes, bytes, "cuDNN workspace");
}

/* Bytes of n bf16 values in the bf16 scratch, 256-byte aligned (cuDNN's preferred alignment). */
static size_t bf16_region(size_t n) { return (n * sizeof(uint16_t) + 255) / 256 * 256; }

static size_t x_count(const st_conv_plan *p) {
    return (size_t)p->desc.n * p->hp * p->wp * p->desc.c;
}
static size_t y_count(const st_conv_plan *p) {
    return (size_t)p->desc.n * p->desc.p * p->desc.q * p->desc.k;
}
static size_t w_count(const st_conv_plan *p) {
    return (size_t)p->desc.k * p->desc.r * p->desc.s * p->desc.c;
}

/* The bf16 scratch one call of p carves (bf16_operands); 0 for an FP32 plan. */
static size_t bf16_scratch_need(const st_conv_plan *p) {
    if (!p->desc.bf16) return 0;
    return bf16_region(x_count(p)) + bf16_region(y_count(p)) + bf16_region(w_count(p));
}

static bf16_operands bf16_carve(const cuda_ctx *ctx, const st_conv_plan *p) {
    char *base = (char *)ctx->bf16_scratch;
    bf16_operands o;
    o.x = (uint16_t *)base;
    o.y = (uint16_t *)(base + bf16_region(x_count(p)));
    o.w = (uint16_t *)(base + bf16_region(x_count(p)) + bf16_region(y_count(p)));
    return o;
}

/* The workspace and the bf16 scratch shrink or grow to the largest need of the ready plans. */
static void buffers_fit(cuda_ctx *ctx, const st_conv_plan *p) {
    size_t need = 0, need16 = 0;
    for (const st_conv_plan *q = ctx->plans; q; q = q->next) {
        if (!q->ready) continue;
        for (int i = 0; i < PASS_COUNT; i++)
            if (q->pass[i].workspace > need) need = q->pass[i].workspace;
        if (bf16_scratch_need(q) > need16) need16 = bf16_scratch_need(q);
    }
    workspace_resize(ctx, p, need);
    buffer_resize(ctx, p, &ctx->bf16_scratch, &ctx->bf16_scratch_bytes, need16,
                  "bf16 operand scratch");
}

/* ---- the three passes: ranking, workspace query and execution, written once each ---- */

/* Scratch tensors of a plan's shapes and element type for the trial runs; each pass reads and
 * writes them in its roles (forward x, w -> y; backward-data y, w -> x; backward-filter x, y ->
 * w). Untyped: cuDNN reads the element type from the descriptors (FP32, or bf16 plans' bf16). */
struct trial_buffers {
    void *x; /* (N, HP, WP, C) */
    void *w; /* (K, R, S, C) */
    void *y; /* (N, P, Q, K) */
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
    static cudnnStatus_t run(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo, const void *x,
                             const void *w, void *y) {
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
    static cudnnStatus_t run(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo, const void *dy,
                             const void *w, void *dx) {
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
    static cudnnStatus_t run(cuda_ctx *ctx, const st_conv_plan *p, algo_t algo, const void *x,
                             const void *dy, void *dw) {
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

/* The math type set on the descriptor before the heuristics rank the candidates: bf16 plans
 * ask for tensor cores (bf16 data uses them only under CUDNN_TENSOR_OP_MATH). */
static cudnnMathType_t ranking_math(const cuda_ctx *ctx, const st_conv_plan *p) {
    if (p->desc.bf16) return CUDNN_TENSOR_OP_MATH;
    return ctx->math == CUDA_MATH_TF32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

/* Why a ranked candidate cannot be used for p in the context's math mode, or NULL. */
static const char *candidate_refusal(const cuda_ctx *ctx, const st_conv_plan *p,
                                     cudnnStatus_t status, cudnnDeterminism_t determinism,
                                     cudnnMathType_t math) {
    if (status != CUDNN_STATUS_SUCCESS) return cudnnGetErrorString(status);
    if (determinism != CUDNN_DETERMINISTIC) return "not deterministic";
    if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return "converts to FP16";
    if (!p->desc.bf16 && ctx->math == CUDA_MATH_FP32 && math == CUDNN_TENSOR_OP_MATH)
        return "tensor cores (fp32 mode)";
    return NULL;
}

/* The math type a usable candidate runs with: FMA in fp32 mode (no TF32, whatever the
 * heuristics reported), its own in tf32 mode and in bf16 plans. */
static cudnnMathType_t candidate_math(const cuda_ctx *ctx, const st_conv_plan *p,
                                      cudnnMathType_t math) {
    return ctx->math == CUDA_MATH_TF32 || p->desc.bf16 ? math : CUDNN_FMA_MATH;
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
    ST_FAIL("cuDNN: no usable %s algorithm for %s (%s, deterministic, "
            "workspace <= %zu MiB); candidates tried: %s",
            pass, geometry,
            p->desc.bf16                 ? "bf16 tensor-core math"
            : ctx->math == CUDA_MATH_TF32 ? "SIMTUNE_CUDA_MATH=tf32"
                                          : "SIMTUNE_CUDA_MATH=fp32",
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
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, ranking_math(ctx, p)));
    CUDNN_CHECK(Pass::rank(ctx, p, &count, perf));
    for (int i = 0; i < count; i++) {
        const char *why =
            candidate_refusal(ctx, p, perf[i].status, perf[i].determinism, perf[i].mathType);
        pass_choice choice = {(int)perf[i].algo, candidate_math(ctx, p, perf[i].mathType), 0};
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
    /* bf16: PSEUDO_BFLOAT16_CONFIG, bf16 tensors and FP32 compute (the convolution's type) */
    const cudnnDataType_t data = d->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NHWC, data, d->n, d->c, p->hp,
                                           p->wp));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NHWC, data, d->n, d->k, d->p,
                                           d->q));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w_desc, data, CUDNN_TENSOR_NHWC, d->k, d->c, d->r,
                                           d->s));
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
 * trial runs read defined values) and keeps the input scratch as x_padded when an FP32 plan
 * pads. */
static void plan_choose(cuda_ctx *ctx, st_conv_plan *p) {
    make_room(ctx, p);
    const size_t element = p->desc.bf16 ? sizeof(uint16_t) : sizeof(float);
    const int keep_x = p->padded && !p->desc.bf16;
    size_t x_bytes = x_count(p) * element, w_bytes = w_count(p) * element;
    size_t y_bytes = y_count(p) * element;
    trial_buffers t;
    t.x = plan_alloc(p, x_bytes, keep_x ? "padded input" : "trial input");
    t.w = plan_alloc(p, w_bytes, "trial kernel");
    t.y = plan_alloc(p, y_bytes, "trial output");
    CUDA_CHECK(cudaMemsetAsync(t.x, 0, x_bytes, ctx->stream));
    CUDA_CHECK(cudaMemsetAsync(t.w, 0, w_bytes, ctx->stream));
    CUDA_CHECK(cudaMemsetAsync(t.y, 0, y_bytes, ctx->stream));
    p->pass[PASS_FORWARD] = choose_pass<forward_pass>(ctx, p, &t);
    p->pass[PASS_BACKWARD_DATA] = choose_pass<backward_data_pass>(ctx, p, &t);
    p->pass[PASS_BACKWARD_FILTER] = choose_pass<backward_filter_pass>(ctx, p, &t);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* the trials are done with the scratch */
    CUDA_CHECK(cudaFree(t.w));
    CUDA_CHECK(cudaFree(t.y));
    if (keep_x) p->x_padded = (float *)t.x;
    else CUDA_CHECK(cudaFree(t.x));
    p->ready = 1;
    buffers_fit(ctx, p);
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
    ST_CHECK(!d->bf16 || ctx->bf16_capable,
             "conv plan: bf16 asked on a device before compute capability 8.0 "
             "(conv_bf16_supported is 0)");
    ST_CHECK(d->bf16 || (!d->x_bf16 && !d->y_bf16 && !d->dy_bf16),
             "conv plan: x_bf16/y_bf16/dy_bf16 set on an FP32 plan (they are for bf16 plans only)");
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

/* bf16 tensor cores and cuDNN's PSEUDO_BFLOAT16_CONFIG need compute capability 8.0 or later. */
extern "C" int cuda_conv_bf16_supported(st_backend *be) { return cuda_ctx_of(be)->bf16_capable; }

/* The link to w's kernel16 entry, or to the list's end (NULL) when w has none. */
static cuda_kernel16 **kernel16_link(cuda_ctx *ctx, const float *w) {
    cuda_kernel16 **link = &ctx->kernels16;
    while (*link && (*link)->w != w) link = &(*link)->next;
    return link;
}

static void kernel16_free(cuda_ctx *ctx, cuda_kernel16 *e) {
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream)); /* no queued conv still reads the copy */
    CUDA_CHECK(cudaFree(e->w16));
    free(e);
}

/* w was written (freed 0: its copy is rounded again when next read) or is being freed (1: the
 * entry goes, so a later buffer at the same address starts afresh and the memory returns). */
static void kernel16_forget(cuda_ctx *ctx, const float *w, int freed) {
    cuda_kernel16 **link = kernel16_link(ctx, w);
    cuda_kernel16 *e = *link;
    if (!e) return;
    if (!freed) {
        e->current = 0;
        return;
    }
    *link = e->next;
    kernel16_free(ctx, e);
}

/* The bf16 copy of the FP32 kernel w (n values) the passes of bf16 plans read: rounded on the
 * stream (after the ops that wrote w) only when stale. */
static const uint16_t *kernel16_read(cuda_ctx *ctx, const st_conv_plan *p, const float *w) {
    const size_t n = w_count(p);
    cuda_kernel16 **link = kernel16_link(ctx, w);
    if (!*link) {
        *link = (cuda_kernel16 *)ST_CALLOC(1, sizeof **link);
        (*link)->w = w;
    }
    cuda_kernel16 *e = *link;
    if (e->n != n) { /* a new entry, or another kernel now at this address */
        if (e->w16) {
            CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
            CUDA_CHECK(cudaFree(e->w16));
        }
        e->w16 = NULL;
        e->w16 = (uint16_t *)plan_alloc(p, n * sizeof(uint16_t), "bf16 kernel copy");
        e->n = n;
        e->current = 0;
    }
    if (!e->current) {
        convert_kernel<<<st_grid_for(n), ST_BLOCK, 0, ctx->stream>>>(w, e->w16, n);
        CUDA_CHECK_LAUNCH("convert_kernel (bf16 kernel copy)");
        e->current = 1;
    }
    return e->w16;
}

extern "C" void cuda_conv_weights_changed(st_backend *be, const float *w, int freed) {
    kernel16_forget(cuda_ctx_of(be), w, freed);
}

/* Every plan, bf16 kernel copy and the bf16 scratch (backend destroy). */
extern "C" void cuda_conv_plans_free(st_backend *be) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    while (ctx->plans) {
        st_conv_plan *p = ctx->plans;
        ctx->plans = p->next;
        plan_destroy(ctx, p);
    }
    while (ctx->kernels16) {
        cuda_kernel16 *e = ctx->kernels16;
        ctx->kernels16 = e->next;
        kernel16_free(ctx, e);
    }
    if (ctx->bf16_scratch) CUDA_CHECK(cudaFree(ctx->bf16_scratch));
    ctx->bf16_scratch = NULL;
    ctx->bf16_scratch_bytes = 0;
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
    kernel16_forget(cuda_ctx_of(be), w, 0);
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

/* Makes p ready for a pass and sets the pass's math type. Every op on a plan starts here. */
static void pass_begin(cuda_ctx *ctx, st_conv_plan *p, int pass) {
    plan_use(ctx, p);
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->pass[pass].math));
}

/* x (In: FP32, or bf16 under x_bf16) as cuDNN reads it (T: the plan's type): x itself when it
 * is of type T and the plan does not pad, else x converted (FP32 -> bf16 rounds) and padded by the
 * plan's explicit excess padding into out (x_padded, or the bf16 scratch's x region). */
template <class In, class T>
static const T *conv_input_from(cuda_ctx *ctx, const st_conv_plan *p, const In *x, T *out) {
    const st_conv_desc *d = &p->desc;
    if (!p->padded) {
        if constexpr (sizeof(In) == sizeof(T)) return x;
        else {
            convert_kernel<<<st_grid_for(x_count(p)), ST_BLOCK, 0, ctx->stream>>>(x, out,
                                                                                 x_count(p));
            CUDA_CHECK_LAUNCH("convert_kernel (bf16 input)");
            return out;
        }
    }
    pad_kernel<<<st_grid_for(x_count(p)), ST_BLOCK, 0, ctx->stream>>>(
        x, out, d->n, d->h, d->w, d->c, p->hp, p->wp, p->extra_top, p->extra_left);
    CUDA_CHECK_LAUNCH("pad_kernel");
    return out;
}

/* conv_input_from for the x an op was given: bf16 bit patterns under x_bf16 (bf16 plans only). */
template <class T>
static const T *conv_input(cuda_ctx *ctx, const st_conv_plan *p, const float *x, T *out) {
    if constexpr (sizeof(T) == sizeof(uint16_t))
        if (p->desc.x_bf16) return conv_input_from(ctx, p, (const uint16_t *)x, out);
    return conv_input_from(ctx, p, x, out);
}

/* dx (N, H, W, C) from cuDNN's gradient of its input grad (N, HP, WP, C): cropped when the plan
 * pads, widened when bf16 (T uint16_t); nothing to do for an unpadded FP32 plan (grad is dx). */
template <class T>
static void conv_input_gradient(cuda_ctx *ctx, const st_conv_plan *p, const T *grad, float *dx) {
    const st_conv_desc *d = &p->desc;
    size_t total = (size_t)d->n * d->h * d->w * d->c;
    if (p->padded) {
        crop_kernel<<<st_grid_for(total), ST_BLOCK, 0, ctx->stream>>>(
            grad, dx, d->n, d->h, d->w, d->c, p->hp, p->wp, p->extra_top, p->extra_left);
        CUDA_CHECK_LAUNCH("crop_kernel");
    } else if constexpr (sizeof(T) != sizeof(float)) {
        convert_kernel<<<st_grid_for(total), ST_BLOCK, 0, ctx->stream>>>(grad, dx, total);
        CUDA_CHECK_LAUNCH("convert_kernel (bf16 dx)");
    }
}

/* y (rows, K) = relu?(conv + bias), conv being y itself or a bf16 copy, y FP32 or bf16
 * (y_bf16); nothing to do without bias or ReLU when conv is y. */
template <class T, class Out>
static void conv_epilogue(cuda_ctx *ctx, const st_conv_plan *p, const T *conv, const float *bias,
                          Out *y) {
    const st_conv_desc *d = &p->desc;
    if (!bias && !d->relu && (const void *)conv == (const void *)y) return;
    size_t rows = (size_t)d->n * d->p * d->q;
    bias_relu_kernel<<<st_grid_for(rows * d->k), ST_BLOCK, 0, ctx->stream>>>(conv, y, bias, rows,
                                                                              d->k, d->relu);
    CUDA_CHECK_LAUNCH("bias_relu_kernel");
}

/* dy (N, P, Q, K) as bf16: dy itself under dy_bf16, else dy rounded into the bf16 scratch's y
 * region. */
static const uint16_t *bf16_dy(cuda_ctx *ctx, const st_conv_plan *p, const float *dy,
                               uint16_t *dy16) {
    if (p->desc.dy_bf16) return (const uint16_t *)dy;
    convert_kernel<<<st_grid_for(y_count(p)), ST_BLOCK, 0, ctx->stream>>>(dy, dy16, y_count(p));
    CUDA_CHECK_LAUNCH("convert_kernel (bf16 dy)");
    return dy16;
}

extern "C" void cuda_conv_forward(st_backend *be, st_conv_plan *p, const float *x, const float *w,
                                  const float *bias, float *y) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    pass_begin(ctx, p, PASS_FORWARD);
    const cudnnConvolutionFwdAlgo_t algo = (cudnnConvolutionFwdAlgo_t)p->pass[PASS_FORWARD].algo;
    if (!p->desc.bf16) {
        CUDNN_CHECK(forward_pass::run(ctx, p, algo, conv_input(ctx, p, x, p->x_padded), w, y));
        conv_epilogue(ctx, p, y, bias, y);
        return;
    }
    bf16_operands o = bf16_carve(ctx, p);
    /* y_bf16: cuDNN writes y itself, the epilogue (if any) rounds in place */
    uint16_t *conv = p->desc.y_bf16 ? (uint16_t *)y : o.y;
    CUDNN_CHECK(forward_pass::run(ctx, p, algo, conv_input(ctx, p, x, o.x),
                                  kernel16_read(ctx, p, w), conv));
    if (p->desc.y_bf16) conv_epilogue(ctx, p, conv, bias, conv);
    else conv_epilogue(ctx, p, conv, bias, y);
}

extern "C" void cuda_conv_backward_data(st_backend *be, st_conv_plan *p, const float *dy,
                                        const float *w, float *dx) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    pass_begin(ctx, p, PASS_BACKWARD_DATA);
    const cudnnConvolutionBwdDataAlgo_t algo =
        (cudnnConvolutionBwdDataAlgo_t)p->pass[PASS_BACKWARD_DATA].algo;
    if (!p->desc.bf16) {
        float *grad_input = p->padded ? p->x_padded : dx;
        CUDNN_CHECK(backward_data_pass::run(ctx, p, algo, dy, w, grad_input));
        conv_input_gradient(ctx, p, grad_input, dx);
        return;
    }
    bf16_operands o = bf16_carve(ctx, p);
    CUDNN_CHECK(backward_data_pass::run(ctx, p, algo, bf16_dy(ctx, p, dy, o.y),
                                        kernel16_read(ctx, p, w), o.x));
    conv_input_gradient(ctx, p, o.x, dx);
}

extern "C" void cuda_conv_backward_filter(st_backend *be, st_conv_plan *p, const float *x,
                                          const float *dy, float *dw, float *dbias) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const st_conv_desc *d = &p->desc;
    pass_begin(ctx, p, PASS_BACKWARD_FILTER);
    const cudnnConvolutionBwdFilterAlgo_t algo =
        (cudnnConvolutionBwdFilterAlgo_t)p->pass[PASS_BACKWARD_FILTER].algo;
    if (!d->bf16) {
        CUDNN_CHECK(
            backward_filter_pass::run(ctx, p, algo, conv_input(ctx, p, x, p->x_padded), dy, dw));
        if (dbias) cuda_column_sums(be, (long)d->n * d->p * d->q, d->k, dy, 0, dbias);
        return;
    }
    bf16_operands o = bf16_carve(ctx, p);
    const uint16_t *dy16 = bf16_dy(ctx, p, dy, o.y);
    CUDNN_CHECK(
        backward_filter_pass::run(ctx, p, algo, conv_input(ctx, p, x, o.x), dy16, o.w));
    convert_kernel<<<st_grid_for(w_count(p)), ST_BLOCK, 0, ctx->stream>>>(o.w, dw, w_count(p));
    CUDA_CHECK_LAUNCH("convert_kernel (bf16 dw)");
    /* the sums of the bf16 dy the filter pass read (came rounded or rounded here), as oneDNN's */
    if (dbias)
        cuda_column_sums(be, (long)d->n * d->p * d->q, d->k, (const float *)dy16, 1, dbias);
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
    kernel16_forget(ctx, w_out, 0);
}
