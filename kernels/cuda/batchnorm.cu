/*
 * batchnorm.cu: batch normalisation over NHWC rows (rows = N*H*W, C contiguous) on the GPU,
 * training forward, inference forward and backward, each with the optional fused ReLU. The
 * formulas are kernels/math/batchnorm.h and the reduction scheme that of kernels/cpu/batchnorm.c
 * (double sums of x - pivot with pivot = the first row; g and g*xhat for backward), so the two
 * backends differ only in summation order.
 *
 *   x, y, dy, dx: (rows, C); gamma, beta, save_mean, save_rstd, running_*: (C)
 *   running_mean/running_var may be NULL; dgamma/dbeta/dx are overwritten.
 *
 * Each op: per-channel sums (device.cuh st_column_sums, deterministic), one per-channel kernel
 * turning sums into the scale/shift (or backward coefficients) in scratch, one elementwise kernel.
 */
#include "../math/activation.h"
#include "../math/batchnorm.h"
#include "device.cuh"

namespace {
/* (x - pivot, (x - pivot)^2), pivot = row 0 */
struct centred_moments {
    const float *x;
    int c;
    __device__ double2 operator()(long row, int col) const {
        double v = (double)x[(size_t)row * c + col] - (double)x[col];
        return make_double2(v, v * v);
    }
};

/* (g, g * xhat) with g the ReLU-masked upstream gradient */
struct gradient_moments {
    const float *x, *y, *dy, *mean, *rstd;
    int c, relu;
    __device__ double2 operator()(long row, int col) const {
        size_t i = (size_t)row * c + col;
        float g = st_bn_upstream(relu ? y : NULL, dy, i);
        return make_double2((double)g, (double)g * st_bn_xhat(x[i], mean[col], rstd[col]));
    }
};
} // namespace

/* Scratch layout of one op: the column sums, then 3 float arrays of C. */
static void *bn_scratch(st_backend *be, long rows, int c, double2 **sums_space, float **coef) {
    size_t sums_bytes = st_column_scratch_count(rows, c) * sizeof(double2);
    char *base = (char *)cuda_scratch(be, sums_bytes + 3 * (size_t)c * sizeof(float));
    *sums_space = (double2 *)base;
    *coef = (float *)(base + sums_bytes);
    return base;
}

static __global__ void train_stats_kernel(const st_bn_desc d, const double2 *sums, const float *x,
                                          const float *gamma, const float *beta,
                                          const st_bn_train_out out) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= d.c) return;
    st_bn_train_channel(&d, ch, sums[ch].x, sums[ch].y, x[ch], gamma[ch], beta[ch], &out);
}

static __global__ void infer_coef_kernel(const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         int c, float eps, float *scale, float *shift) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    scale[ch] = st_bn_scale(gamma[ch], st_bn_rstd(running_var[ch], eps));
    shift[ch] = st_bn_shift(beta[ch], running_mean[ch], scale[ch]);
}

static __global__ void apply_kernel(const float *x, const float *scale, const float *shift,
                                    size_t rows, int c, int relu, float *y) {
    ST_GRID_STRIDE(i, rows * (size_t)c) {
        int ch = (int)(i % (size_t)c);
        y[i] = st_maybe_relu(st_bn_apply(x[i], scale[ch], shift[ch]), relu);
    }
}

static void apply(cudaStream_t stream, const st_bn_desc *d, const float *x, const float *scale,
                  const float *shift, float *y) {
    size_t count = (size_t)d->rows * d->c;
    apply_kernel<<<st_grid_for(count), ST_BLOCK, 0, stream>>>(x, scale, shift, (size_t)d->rows,
                                                               d->c, d->relu, y);
    CUDA_CHECK_LAUNCH("apply_kernel");
}

static unsigned channel_blocks(int c) { return (unsigned)((c + ST_BLOCK - 1) / ST_BLOCK); }

extern "C" void cuda_bn_forward_train(st_backend *be, const st_bn_desc *d, const float *x,
                                      const float *gamma, const float *beta, float *y,
                                      float *save_mean, float *save_rstd, float *running_mean,
                                      float *running_var) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(d->rows > 1, "batch norm training needs more than one value per channel (rows=%ld)",
             d->rows);
    double2 *sums_space;
    float *coef;
    bn_scratch(be, d->rows, d->c, &sums_space, &coef);
    float *scale = coef, *shift = coef + d->c;
    centred_moments terms = {x, d->c};
    double2 *sums = st_column_sums(ctx->stream, d->rows, d->c, terms, sums_space);
    st_bn_train_out out = {save_mean, save_rstd, scale, shift, running_mean, running_var};
    train_stats_kernel<<<channel_blocks(d->c), ST_BLOCK, 0, ctx->stream>>>(*d, sums, x, gamma,
                                                                          beta, out);
    CUDA_CHECK_LAUNCH("train_stats_kernel");
    apply(ctx->stream, d, x, scale, shift, y);
}

extern "C" void cuda_bn_forward_infer(st_backend *be, const st_bn_desc *d, const float *x,
                                      const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var,
                                      float *y) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    float *scale = (float *)cuda_scratch(be, 2 * (size_t)d->c * sizeof(float));
    float *shift = scale + d->c;
    infer_coef_kernel<<<channel_blocks(d->c), ST_BLOCK, 0, ctx->stream>>>(
        gamma, beta, running_mean, running_var, d->c, d->eps, scale, shift);
    CUDA_CHECK_LAUNCH("infer_coef_kernel");
    apply(ctx->stream, d, x, scale, shift, y);
}

static __global__ void backward_coef_kernel(const double2 *sums, const float *gamma,
                                            const float *save_rstd, int c, double rows,
                                            const st_bn_grad_coef coef) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    st_bn_backward_channel(ch, sums[ch].x, sums[ch].y, rows, gamma[ch], save_rstd[ch], &coef);
}

static __global__ void backward_dx_kernel(const float *x, const float *y, const float *dy,
                                          const float *save_mean, const float *save_rstd,
                                          const float *gamma_rstd, const float *mean_g,
                                          const float *mean_gx, size_t rows, int c, int relu,
                                          float *dx) {
    ST_GRID_STRIDE(i, rows * (size_t)c) {
        int ch = (int)(i % (size_t)c);
        float xhat = st_bn_xhat(x[i], save_mean[ch], save_rstd[ch]);
        dx[i] = st_bn_backward_dx(st_bn_upstream(relu ? y : NULL, dy, i), xhat, gamma_rstd[ch],
                                  mean_g[ch], mean_gx[ch]);
    }
}

extern "C" void cuda_bn_backward(st_backend *be, const st_bn_desc *d, const float *x,
                                 const float *y, const float *dy, const float *gamma,
                                 const float *save_mean, const float *save_rstd, float *dx,
                                 float *dgamma, float *dbeta) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(!d->relu || y, "batch norm backward with fused ReLU needs the forward output y");
    ST_CHECK(d->rows > 0, "batch norm backward over zero rows");
    double2 *sums_space;
    float *coef;
    bn_scratch(be, d->rows, d->c, &sums_space, &coef);
    float *gamma_rstd = coef, *mean_g = coef + d->c, *mean_gx = coef + 2 * (size_t)d->c;
    gradient_moments terms = {x, y, dy, save_mean, save_rstd, d->c, d->relu};
    double2 *sums = st_column_sums(ctx->stream, d->rows, d->c, terms, sums_space);
    st_bn_grad_coef grad_coef = {dgamma, dbeta, gamma_rstd, mean_g, mean_gx};
    backward_coef_kernel<<<channel_blocks(d->c), ST_BLOCK, 0, ctx->stream>>>(
        sums, gamma, save_rstd, d->c, (double)d->rows, grad_coef);
    CUDA_CHECK_LAUNCH("backward_coef_kernel");
    size_t count = (size_t)d->rows * d->c;
    backward_dx_kernel<<<st_grid_for(count), ST_BLOCK, 0, ctx->stream>>>(
        x, y, dy, save_mean, save_rstd, gamma_rstd, mean_g, mean_gx, (size_t)d->rows, d->c,
        d->relu, dx);
    CUDA_CHECK_LAUNCH("backward_dx_kernel");
}
