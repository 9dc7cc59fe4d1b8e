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
 * Algorithms: chosen once per plan with cudnnGet*Algorithm_v7 (heuristics; no trial runs, no
 * device memory needed at plan time): the first deterministic one (else the first at all) that
 * succeeds within ST_CONV_WORKSPACE_LIMIT and, unless SIMTUNE_CUDA_TF32=1, runs in CUDNN_FMA_MATH
 * (plain FP32, no TF32 tensor cores), so the GPU matches the CPU to FP32 rounding. The shared
 * cuDNN workspace grows to the largest need of any plan when the plan is made, never in a step.
 *
 * Forward applies bias and the fused ReLU in one epilogue kernel after cuDNN. Backward outputs dx,
 * dw, dbias are overwritten (alpha 1, beta 0). Plans live in the context's list until destroy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../math/activation.h"
#include "../math/batchnorm.h"
#include "device.cuh"

#define ST_CONV_WORKSPACE_LIMIT ((size_t)1 << 30)

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
    cudnnConvolutionFwdAlgo_t fwd_algo;
    cudnnConvolutionBwdDataAlgo_t bwd_data_algo;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo;
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
    float *x_padded; /* (N, HP, WP, C) or NULL when the padding is symmetric */
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

/* cuDNN may use TF32 tensor cores only when the user allowed it. */
static int math_allowed(const cuda_ctx *ctx, cudnnMathType_t math) {
    return ctx->allow_tf32 || math == CUDNN_FMA_MATH || math == CUDNN_DEFAULT_MATH;
}

static cudnnMathType_t base_math(const cuda_ctx *ctx) {
    return ctx->allow_tf32 ? CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION : CUDNN_FMA_MATH;
}

/* The math type a pass runs with: FMA unless TF32 is allowed, then the algorithm's own. */
static cudnnMathType_t pass_math(const cuda_ctx *ctx, cudnnMathType_t algo_math) {
    return ctx->allow_tf32 ? algo_math : CUDNN_FMA_MATH;
}

static void describe(char *buf, size_t size, const st_conv_desc *d) {
    snprintf(buf, size, "conv n=%d h=%d w=%d c=%d k=%d r=%d s=%d stride=%dx%d pad=%d,%d,%d,%d",
             d->n, d->h, d->w, d->c, d->k, d->r, d->s, d->stride_h, d->stride_w, d->pad_top,
             d->pad_bottom, d->pad_left, d->pad_right);
}

/* Index of the algorithm to use in cuDNN's ranked list (fastest first): the first that succeeds,
 * fits ST_CONV_WORKSPACE_LIMIT and runs in an allowed math type, preferring deterministic ones
 * (no atomics: the same step gives the same bits); -1 when none qualifies. */
template <class Perf>
static int pick_algorithm(const cuda_ctx *ctx, const Perf *perf, int count) {
    for (int deterministic_only = 1; deterministic_only >= 0; deterministic_only--) {
        for (int i = 0; i < count; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS ||
                perf[i].memory > ST_CONV_WORKSPACE_LIMIT || !math_allowed(ctx, perf[i].mathType))
                continue;
            if (deterministic_only && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            return i;
        }
    }
    return -1;
}

ST_NORETURN static void fail_no_algorithm(const st_conv_plan *p, const char *pass) {
    char what[200];
    describe(what, sizeof what, &p->desc);
    ST_FAIL("cuDNN: no %s algorithm for %s (FP32, workspace <= %zu MiB)", pass, what,
            ST_CONV_WORKSPACE_LIMIT >> 20);
}

/* The algorithm (and its perf record: math type, workspace) for one pass: `query` fills
 * cuDNN's ranked list, as cudnnGet*Algorithm_v7(..., capacity, &count, perf) does. */
template <class Perf, int Capacity, class Query>
static Perf choose_algorithm(const cuda_ctx *ctx, const st_conv_plan *p, const char *pass,
                             Query query) {
    Perf perf[Capacity];
    int count = 0;
    CUDNN_CHECK(query(Capacity, &count, perf));
    int i = pick_algorithm(ctx, perf, count);
    if (i < 0) fail_no_algorithm(p, pass);
    return perf[i];
}

/* Algorithms and math types of the three passes into the plan; returns the largest workspace. */
static size_t choose_algorithms(cuda_ctx *ctx, st_conv_plan *p) {
    auto fwd = choose_algorithm<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
        ctx, p, "forward", [&](int cap, int *count, cudnnConvolutionFwdAlgoPerf_t *perf) {
            return cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, p->x_desc, p->w_desc,
                                                          p->conv_desc, p->y_desc, cap, count,
                                                          perf);
        });
    auto data = choose_algorithm<cudnnConvolutionBwdDataAlgoPerf_t,
                                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
        ctx, p, "backward-data", [&](int cap, int *count, cudnnConvolutionBwdDataAlgoPerf_t *perf) {
            return cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx->cudnn, p->w_desc, p->y_desc,
                                                               p->conv_desc, p->x_desc, cap,
                                                               count, perf);
        });
    auto filter = choose_algorithm<cudnnConvolutionBwdFilterAlgoPerf_t,
                                   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
        ctx, p, "backward-filter",
        [&](int cap, int *count, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
            return cudnnGetConvolutionBackwardFilterAlgorithm_v7(ctx->cudnn, p->x_desc, p->y_desc,
                                                                 p->conv_desc, p->w_desc, cap,
                                                                 count, perf);
        });
    p->fwd_algo = fwd.algo;
    p->fwd_math = pass_math(ctx, fwd.mathType);
    p->bwd_data_algo = data.algo;
    p->bwd_data_math = pass_math(ctx, data.mathType);
    p->bwd_filter_algo = filter.algo;
    p->bwd_filter_math = pass_math(ctx, filter.mathType);
    size_t ws = fwd.memory > data.memory ? fwd.memory : data.memory;
    return filter.memory > ws ? filter.memory : ws;
}

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

static st_conv_plan *plan_create(st_backend *be, const st_conv_desc *d) {
    cuda_ctx *ctx = cuda_ctx_of(be);
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
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, base_math(ctx)));

    int on, ok, oh, ow; /* cuDNN's output grid must be ours (st_conv_desc_finish) */
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv_desc, p->x_desc, p->w_desc, &on,
                                                      &ok, &oh, &ow));
    ST_CHECK(on == d->n && ok == d->k && oh == d->p && ow == d->q,
             "conv plan: cuDNN output %dx%dx%dx%d differs from the descriptor's %dx%dx%dx%d", on,
             oh, ow, ok, d->n, d->p, d->q, d->k);

    cuda_workspace_reserve(be, choose_algorithms(ctx, p));
    if (p->padded)
        CUDA_CHECK(cudaMalloc((void **)&p->x_padded,
                              (size_t)d->n * p->hp * p->wp * d->c * sizeof(float)));
    return p;
}

static void plan_destroy(st_conv_plan *p) {
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->x_desc));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->y_desc));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(p->w_desc));
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->conv_desc));
    if (p->x_padded) CUDA_CHECK(cudaFree(p->x_padded));
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
    for (st_conv_plan *p = ctx->plans; p; p = p->next)
        if (memcmp(&p->desc, d, sizeof *d) == 0) return p;
    st_conv_plan *p = plan_create(be, d);
    p->next = ctx->plans;
    ctx->plans = p;
    return p;
}

extern "C" void cuda_conv_plans_free(st_backend *be) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    while (ctx->plans) {
        st_conv_plan *p = ctx->plans;
        ctx->plans = p->next;
        plan_destroy(p);
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

static const float alpha_one = 1.0f, beta_zero = 0.0f; /* cuDNN: overwrite the output */

/* Sets the pass's math type and returns the input cuDNN reads: x, or x padded by the plan's
 * explicit excess padding into x_padded. */
static const float *prepare_input(cuda_ctx *ctx, st_conv_plan *p, const float *x,
                                  cudnnMathType_t math) {
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, math));
    if (!p->padded) return x;
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
    const float *input = prepare_input(ctx, p, x, p->fwd_math);
    CUDNN_CHECK(cudnnConvolutionForward(ctx->cudnn, &alpha_one, p->x_desc, input, p->w_desc, w,
                                        p->conv_desc, p->fwd_algo, ctx->workspace,
                                        ctx->workspace_bytes, &beta_zero, p->y_desc, y));
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
    float *grad_input = p->padded ? p->x_padded : dx;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv_desc, p->bwd_data_math));
    CUDNN_CHECK(cudnnConvolutionBackwardData(ctx->cudnn, &alpha_one, p->w_desc, w, p->y_desc, dy,
                                             p->conv_desc, p->bwd_data_algo, ctx->workspace,
                                             ctx->workspace_bytes, &beta_zero, p->x_desc,
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
    const float *input = prepare_input(ctx, p, x, p->bwd_filter_math);
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx->cudnn, &alpha_one, p->x_desc, input, p->y_desc,
                                               dy, p->conv_desc, p->bwd_filter_algo,
                                               ctx->workspace, ctx->workspace_bytes, &beta_zero,
                                               p->w_desc, dw));
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
