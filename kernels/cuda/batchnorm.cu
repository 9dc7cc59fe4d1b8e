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
 * With d->sync (sync_bn) the per-channel sums are copied to the host, combined over the ranks
 * (kernels/bn_sync.h, MPI on the host) and copied back between the two: a host sync point in
 * every training BN op, the price of the global batch's statistics.
 *
 * bf16 storage (the BN sits between bf16 convolutions, st_bn_desc): with x_bf16 every op reads x
 * as bf16 bit patterns (uint16_t, rows*C; widened, the pivot row too); with y_bf16 the forward ops
 * write y so (st_bf16_from_float after the ReLU) and bn_backward takes its ReLU mask from that
 * bf16 y (st_bn_upstream); with dx_bf16 bn_backward writes dx as bf16 (st_bf16_from_float
 * of the FP32 dx). The computation stays FP32 on the stored values; the same kernels serve every
 * combination, told by the flags how x, y and dx are stored.
 */
#include "../bn_sync.h"
#include "../math/activation.h"
#include "../math/batchnorm.h"
#include "device.cuh"

namespace {
/* (x - pivot, (x - pivot)^2), pivot = row 0 */
struct centred_moments {
    const float *x;
    int c, x_bf16;
    __device__ double2 operator()(long row, int col) const {
        double v = (double)st_stored_load(x, x_bf16, (size_t)row * c + col) -
                   (double)st_stored_load(x, x_bf16, (size_t)col);
        return make_double2(v, v * v);
    }
};

/* (g, g * xhat) with g the ReLU-masked upstream gradient */
struct gradient_moments {
    const float *x, *y, *dy, *mean, *rstd;
    int c, relu, x_bf16, y_bf16;
    __device__ double2 operator()(long row, int col) const {
        size_t i = (size_t)row * c + col;
        float g = st_bn_upstream(relu, y, y_bf16, dy, i);
        float xhat = st_bn_xhat(st_stored_load(x, x_bf16, i), mean[col], rstd[col]);
        return make_double2((double)g, (double)g * xhat);
    }
};
} // namespace

/* Scratch layout of one op: the column sums, C double2 for the global batch's sums (sync),
 * then 3 float arrays of C. */
static void *bn_scratch(st_backend *be, long rows, int c, double2 **sums_space, double2 **whole,
                        float **coef) {
    size_t sums_bytes = st_column_scratch_count(rows, c) * sizeof(double2);
    size_t whole_bytes = (size_t)c * sizeof(double2);
    char *base = (char *)cuda_scratch(be, sums_bytes + whole_bytes + 3 * (size_t)c * sizeof(float));
    *sums_space = (double2 *)base;
    *whole = (double2 *)(base + sums_bytes);
    *coef = (float *)(base + sums_bytes + whole_bytes);
    return base;
}

/* sync_bn forward: this rank's sums (C double2) and pivot (its first row, C floats, device)
 * through the pinned host buffer to st_bn_sync_moments and back as the global batch's sums about
 * rank 0's pivot, into sums and pivot_out (device; may be pivot). Returns the global rows. The
 * host buffer is written only after a stream sync, and later copies into it queue behind this
 * upload. */
static double sync_moments(st_backend *be, int c, long rows, double2 *sums, const float *pivot,
                           float *pivot_out) {
    cudaStream_t stream = cuda_ctx_of(be)->stream;
    size_t sums_bytes = (size_t)c * sizeof(double2), pivot_bytes = (size_t)c * sizeof(float);
    char *host = (char *)cuda_host_result(be, sums_bytes + pivot_bytes);
    double2 *host_sums = (double2 *)host;
    float *host_pivot = (float *)(host + sums_bytes);
    CUDA_CHECK(cudaMemcpyAsync(host_sums, sums, sums_bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaMemcpyAsync(host_pivot, pivot, pivot_bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    double total_rows = (double)rows;
    st_bn_sync_moments(c, &total_rows, host_pivot, &host_sums[0].x, &host_sums[0].y, 2);
    CUDA_CHECK(cudaMemcpyAsync(sums, host_sums, sums_bytes, cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaMemcpyAsync(pivot_out, host_pivot, pivot_bytes, cudaMemcpyHostToDevice, stream));
    return total_rows;
}

/* sync_bn backward: this rank's (sum g, sum g * xhat) (C double2) summed over the ranks into
 * whole (device); returns the global rows. Host buffer as in sync_moments. */
static double sync_grad_sums(st_backend *be, int c, long rows, const double2 *sums,
                             double2 *whole) {
    cudaStream_t stream = cuda_ctx_of(be)->stream;
    size_t bytes = (size_t)c * sizeof(double2);
    double2 *host = (double2 *)cuda_host_result(be, bytes);
    CUDA_CHECK(cudaMemcpyAsync(host, sums, bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    double total_rows = (double)rows;
    st_bn_sync_grad_sums(&host[0].x, 2 * (size_t)c, &total_rows);
    CUDA_CHECK(cudaMemcpyAsync(whole, host, bytes, cudaMemcpyHostToDevice, stream));
    return total_rows;
}

static __global__ void train_stats_kernel(const st_bn_desc d, const double2 *sums, double rows,
                                          const float *pivot, const float *gamma,
                                          const float *beta, const st_bn_train_out out) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= d.c) return;
    st_bn_train_channel(&d, ch, rows, sums[ch].x, sums[ch].y, pivot[ch], gamma[ch], beta[ch],
                        &out);
}

static __global__ void infer_coef_kernel(const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         int c, float eps, float *scale, float *shift) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    scale[ch] = st_bn_scale(gamma[ch], st_bn_rstd(running_var[ch], eps));
    shift[ch] = st_bn_shift(beta[ch], running_mean[ch], scale[ch]);
}

/* The first row of x, widened from bf16 (x_bf16), into pivot (C): the centring pivot. */
static __global__ void widen_row_kernel(const float *x, int c, float *pivot) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) pivot[ch] = st_stored_load(x, 1, (size_t)ch);
}

/* y = relu?(x * scale + shift), x and y FP32 or bf16 (d.x_bf16, d.y_bf16) */
static __global__ void apply_kernel(const st_bn_desc d, const float *x, const float *scale,
                                    const float *shift, float *y) {
    ST_GRID_STRIDE(i, (size_t)d.rows * d.c) {
        int ch = (int)(i % (size_t)d.c);
        float v = st_bn_apply(st_stored_load(x, d.x_bf16, i), scale[ch], shift[ch]);
        st_stored_store(y, d.y_bf16, i, st_maybe_relu(v, d.relu));
    }
}

static void apply(cudaStream_t stream, const st_bn_desc *d, const float *x, const float *scale,
                  const float *shift, float *y) {
    size_t count = (size_t)d->rows * d->c;
    apply_kernel<<<st_grid_for(count), ST_BLOCK, 0, stream>>>(*d, x, scale, shift, y);
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
    double2 *sums_space, *whole;
    float *coef;
    bn_scratch(be, d->rows, d->c, &sums_space, &whole, &coef);
    float *scale = coef, *shift = coef + d->c;
    centred_moments terms = {x, d->c, d->x_bf16};
    double2 *sums = st_column_sums(ctx->stream, d->rows, d->c, terms, sums_space);
    const float *pivot = x; /* the first row, FP32: x's own, or widened into pivot_space */
    float *pivot_space = coef + 2 * (size_t)d->c;
    if (d->x_bf16) {
        widen_row_kernel<<<channel_blocks(d->c), ST_BLOCK, 0, ctx->stream>>>(x, d->c,
                                                                            pivot_space);
        CUDA_CHECK_LAUNCH("widen_row_kernel");
        pivot = pivot_space;
    }
    double rows = (double)d->rows;
    if (d->sync) {
        rows = sync_moments(be, d->c, d->rows, sums, pivot, pivot_space);
        pivot = pivot_space; /* the common pivot */
    }
    st_bn_train_out out = {save_mean, save_rstd, scale, shift, running_mean, running_var};
    train_stats_kernel<<<channel_blocks(d->c), ST_BLOCK, 0, ctx->stream>>>(*d, sums, rows, pivot,
                                                                          gamma, beta, out);
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

/* local: this rank's sums (dgamma, dbeta); whole: the whole batch's (dx coefficients) */
static __global__ void backward_coef_kernel(const double2 *local, const double2 *whole,
                                            const float *gamma, const float *save_rstd, int c,
                                            double rows, const st_bn_grad_coef coef) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    st_bn_backward_channel(ch, local[ch].x, local[ch].y, whole[ch].x, whole[ch].y, rows,
                           gamma[ch], save_rstd[ch], &coef);
}

/* dx, FP32 or bf16 (d.dx_bf16), from the per-channel coefficients; x and the mask's y as stored
 * (d.x_bf16, d.y_bf16) */
static __global__ void backward_dx_kernel(const st_bn_desc d, const float *x, const float *y,
                                          const float *dy, const float *save_mean,
                                          const float *save_rstd, const float *gamma_rstd,
                                          const float *mean_g, const float *mean_gx, float *dx) {
    ST_GRID_STRIDE(i, (size_t)d.rows * d.c) {
        int ch = (int)(i % (size_t)d.c);
        float xhat = st_bn_xhat(st_stored_load(x, d.x_bf16, i), save_mean[ch], save_rstd[ch]);
        float g = st_bn_upstream(d.relu, y, d.y_bf16, dy, i);
        st_stored_store(dx, d.dx_bf16, i,
                        st_bn_backward_dx(g, xhat, gamma_rstd[ch], mean_g[ch], mean_gx[ch]));
    }
}

extern "C" void cuda_bn_backward(st_backend *be, const st_bn_desc *d, const float *x,
                                 const float *y, const float *dy, const float *gamma,
                                 const float *save_mean, const float *save_rstd, float *dx,
                                 float *dgamma, float *dbeta) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    ST_CHECK(!d->relu || y, "batch norm backward with fused ReLU needs the forward output y");
    ST_CHECK(d->rows > 0, "batch norm backward over zero rows");
    double2 *sums_space, *whole;
    float *coef;
    bn_scratch(be, d->rows, d->c, &sums_space, &whole, &coef);
    float *gamma_rstd = coef, *mean_g = coef + d->c, *mean_gx = coef + 2 * (size_t)d->c;
    gradient_moments terms = {x, y, dy, save_mean, save_rstd, d->c, d->relu, d->x_bf16,
                              d->y_bf16};
    double2 *sums = st_column_sums(ctx->stream, d->rows, d->c, terms, sums_space);
    double rows = (double)d->rows;
    if (d->sync) rows = sync_grad_sums(be, d->c, d->rows, sums, whole);
    else whole = sums;
    st_bn_grad_coef grad_coef = {dgamma, dbeta, gamma_rstd, mean_g, mean_gx};
    backward_coef_kernel<<<channel_blocks(d->c), ST_BLOCK, 0, ctx->stream>>>(
        sums, whole, gamma, save_rstd, d->c, rows, grad_coef);
    CUDA_CHECK_LAUNCH("backward_coef_kernel");
    size_t count = (size_t)d->rows * d->c;
    backward_dx_kernel<<<st_grid_for(count), ST_BLOCK, 0, ctx->stream>>>(
        *d, x, y, dy, save_mean, save_rstd, gamma_rstd, mean_g, mean_gx, dx);
    CUDA_CHECK_LAUNCH("backward_dx_kernel");
}
