/*
 * batchnorm.c: batch normalisation over NHWC rows (rows = N*H*W, C channels, C contiguous),
 * training forward (batch statistics, running-statistics update), inference forward and backward,
 * each with an optional fused ReLU (d->relu). Formulas: kernels/math/batchnorm.h.
 *
 *   x, y, dy, dx: (rows, C); gamma, beta, save_mean, save_rstd, running_*: (C)
 *   running_mean/running_var may be NULL (statistics not tracked); dgamma/dbeta are overwritten.
 *
 * Reductions: rows are split across threads in blocks of BN_BLOCK_ROWS; a block is summed per
 * channel in float (vectorised over C, 16 lanes, so the passes stay bound by memory, not by
 * double-precision arithmetic), each block's sums are added into the thread's double partials,
 * and the partials are added in thread order, so results do not depend on scheduling. Variance
 * uses sums of x - pivot (pivot = first row) to avoid cancellation when |mean| >> std.
 * With d->sync the sums are combined over the ranks (kernels/bn_sync.h) before the per-channel
 * step, so normalisation and dx use the global batch's statistics.
 * bf16 operands beside bf16 convs (d->x_bf16 reads x, d->y_bf16 writes y and reads the ReLU mask
 * from it, d->dx_bf16 writes dx as bf16 bit patterns): the loop over a row's channels is an
 * always-inlined function called with the storage types as constants (BN_SPECIALISE*, per row,
 * inside the threads' loops), so every combination is its own vectorised loop with the
 * conversions (kernels/math/bf16.h, the convs' rounding bit for bit) inline; the arithmetic is
 * the FP32 path's on the stored values.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../bn_sync.h"
#include "../check.h"
#include "../math/activation.h"
#include "../math/batchnorm.h"
#include "cpu_ops.h"

/* Inlined wherever called, so a storage flag passed as a constant vanishes from the loop. */
#define BN_INLINE static inline __attribute__((always_inline))

/* f(args..., a, b, ...) with each flag turned into the constant 0 or 1. */
#define BN_SPECIALISE1(f, a, ...) ((a) ? f(__VA_ARGS__, 1) : f(__VA_ARGS__, 0))
#define BN_SPECIALISE2(f, a, b, ...)                                                             \
    ((a) ? BN_SPECIALISE1(f, b, __VA_ARGS__, 1) : BN_SPECIALISE1(f, b, __VA_ARGS__, 0))
#define BN_SPECIALISE3(f, a, b, c, ...)                                                          \
    ((a) ? BN_SPECIALISE2(f, b, c, __VA_ARGS__, 1) : BN_SPECIALISE2(f, b, c, __VA_ARGS__, 0))
#define BN_SPECIALISE4(f, a, b, c, e, ...)                                                       \
    ((a) ? BN_SPECIALISE3(f, b, c, e, __VA_ARGS__, 1)                                            \
         : BN_SPECIALISE3(f, b, c, e, __VA_ARGS__, 0))

/* bf16 operands feed and come from bf16 convs, which need AVX512_BF16 (so their rounding is the
 * instruction's). */
static void check_bf16_operands(st_backend *be, const st_bn_desc *d) {
    ST_CHECK(!(d->x_bf16 || d->y_bf16 || d->dx_bf16) || cpu_conv_bf16_supported(be),
             "batch norm: bf16 operands asked on a CPU without AVX512_BF16");
}

/* Rows summed in float before a block's sums go into double: 16 additions keep the float
 * rounding near 1e-6 relative, far below what the PyTorch comparisons allow (1e-4). */
enum { BN_BLOCK_ROWS = 16 };

/* Per-thread sums of two per-channel quantities: 2 * C doubles per thread (zeroed), and 2 * C
 * floats per thread for the block being summed (zeroed after each flush). */
typedef struct {
    double *data;
    float *block;
    int threads, c;
} bn_partials;

static bn_partials partials_new(int c) {
    bn_partials p;
    p.threads = omp_get_max_threads();
    p.c = c;
    p.data = ST_CALLOC((size_t)p.threads * 2 * c, sizeof(double));
    p.block = ST_CALLOC((size_t)p.threads * 2 * c, sizeof(float));
    return p;
}

/* The calling thread's float block sums: first quantity at [0, C), second at [C, 2C). */
static float *partials_block(const bn_partials *p) {
    return p->block + (size_t)omp_get_thread_num() * 2 * p->c;
}

/* Add the calling thread's block sums into its double partials and clear them. */
static void partials_flush(const bn_partials *p) {
    float *block = partials_block(p);
    double *mine = p->data + (size_t)omp_get_thread_num() * 2 * p->c;
    for (int i = 0; i < 2 * p->c; i++) {
        mine[i] += block[i];
        block[i] = 0.0f;
    }
}

/* The totals (2 * C, caller frees), added in thread order; the partials are freed. */
static double *partials_total(bn_partials *p) {
    double *total = ST_CALLOC((size_t)2 * p->c, sizeof(double));
    for (int t = 0; t < p->threads; t++)
        for (int i = 0; i < 2 * p->c; i++) total[i] += p->data[(size_t)t * 2 * p->c + i];
    free(p->data);
    free(p->block);
    return total;
}

static long block_count(long rows) { return (rows + BN_BLOCK_ROWS - 1) / BN_BLOCK_ROWS; }

static long block_end(long block, long rows) {
    long end = (block + 1) * BN_BLOCK_ROWS;
    return end < rows ? end : rows;
}

/* One row of y = relu?(x * scale + shift); x, y stored as x16, y16 say. */
BN_INLINE void apply_row(const st_bn_desc *d, const float *x, const float *scale,
                         const float *shift, float *y, size_t row, int x16, int y16) {
    if (d->relu) {
        for (int c = 0; c < d->c; c++)
            st_stored_store(
                y, y16, row + c,
                st_relu(st_bn_apply(st_stored_load(x, x16, row + c), scale[c], shift[c])));
    } else {
        for (int c = 0; c < d->c; c++)
            st_stored_store(y, y16, row + c,
                            st_bn_apply(st_stored_load(x, x16, row + c), scale[c], shift[c]));
    }
}

/* y = relu?(x * scale + shift) per channel; scale/shift (C). */
static void bn_apply(const st_bn_desc *d, const float *x, const float *scale, const float *shift,
                     float *y) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < d->rows; r++)
        BN_SPECIALISE2(apply_row, d->x_bf16, d->y_bf16, d, x, scale, shift, y, (size_t)r * d->c);
}

/* One row's x - pivot and its square added into sum, sum2 (C); x stored as x16. */
BN_INLINE void moments_row(const float *x, const float *pivot, float *sum, float *sum2, int C,
                           size_t row, int x16) {
    for (int c = 0; c < C; c++) {
        float v = st_stored_load(x, x16, row + c) - pivot[c];
        sum[c] += v;
        sum2[c] += v * v;
    }
}

/* Per-channel sums of x - pivot and its square (2 * C doubles, caller frees). */
static double *moment_sums(const st_bn_desc *d, const float *x, const float *pivot) {
    const int C = d->c;
    bn_partials part = partials_new(C);
#pragma omp parallel
    {
        float *sum = partials_block(&part), *sum2 = sum + C;
#pragma omp for schedule(static)
        for (long b = 0; b < block_count(d->rows); b++) {
            for (long r = b * BN_BLOCK_ROWS; r < block_end(b, d->rows); r++)
                BN_SPECIALISE1(moments_row, d->x_bf16, x, pivot, sum, sum2, C, (size_t)r * C);
            partials_flush(&part);
        }
    }
    return partials_total(&part);
}

void cpu_bn_forward_train(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                          const float *beta, float *y, float *save_mean, float *save_rstd,
                          float *running_mean, float *running_var) {
    check_bf16_operands(be, d);
    const int C = d->c;
    ST_CHECK(d->rows > 1, "batch norm training needs more than one value per channel (rows=%ld)",
             d->rows);
    float *pivot = ST_MALLOC((size_t)C * sizeof(float));
    for (int c = 0; c < C; c++) pivot[c] = st_stored_load(x, d->x_bf16, (size_t)c); /* first row */
    double *sum = moment_sums(d, x, pivot);
    double *sum2 = sum + C, rows = (double)d->rows;
    if (d->sync) st_bn_sync_moments(C, &rows, pivot, sum, sum2, 1);
    float *scale = ST_MALLOC((size_t)C * 2 * sizeof(float)), *shift = scale + C;
    st_bn_train_out out = {save_mean, save_rstd, scale, shift, running_mean, running_var};
    for (int c = 0; c < C; c++)
        st_bn_train_channel(d, c, rows, sum[c], sum2[c], pivot[c], gamma[c], beta[c], &out);
    free(sum);
    free(pivot);
    bn_apply(d, x, scale, shift, y);
    free(scale);
}

void cpu_bn_forward_infer(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                          const float *beta, const float *running_mean, const float *running_var,
                          float *y) {
    check_bf16_operands(be, d);
    const int C = d->c;
    float *scale = ST_MALLOC((size_t)C * 2 * sizeof(float)), *shift = scale + C;
    for (int c = 0; c < C; c++) {
        scale[c] = st_bn_scale(gamma[c], st_bn_rstd(running_var[c], d->eps));
        shift[c] = st_bn_shift(beta[c], running_mean[c], scale[c]);
    }
    bn_apply(d, x, scale, shift, y);
    free(scale);
}

/* One row's g and g * xhat added into sg, sgx (C), g the upstream gradient dy, masked by the
 * fused ReLU's y when `masked`; x, y stored as x16, y16. */
BN_INLINE void grad_sums_row(const float *x, const float *y, const float *dy,
                             const float *save_mean, const float *save_rstd, float *sg,
                             float *sgx, int C, size_t row, int x16, int masked, int y16) {
    for (int c = 0; c < C; c++) {
        float g = st_bn_upstream(masked, y, y16, dy, row + c);
        sg[c] += g;
        sgx[c] += g * st_bn_xhat(st_stored_load(x, x16, row + c), save_mean[c], save_rstd[c]);
    }
}

/* Backward pass 1: the sums over the rows of g and g * xhat (2 * C doubles, caller frees). */
static double *backward_sums(const st_bn_desc *d, const float *x, const float *y, const float *dy,
                             const float *save_mean, const float *save_rstd) {
    const int C = d->c;
    bn_partials part = partials_new(C);
#pragma omp parallel
    {
        float *sg = partials_block(&part), *sgx = sg + C;
#pragma omp for schedule(static)
        for (long b = 0; b < block_count(d->rows); b++) {
            for (long r = b * BN_BLOCK_ROWS; r < block_end(b, d->rows); r++)
                BN_SPECIALISE3(grad_sums_row, d->x_bf16, y != NULL, d->y_bf16, x, y, dy,
                               save_mean, save_rstd, sg, sgx, C, (size_t)r * C);
            partials_flush(&part);
        }
    }
    return partials_total(&part);
}

/* Backward pass 2, one row of dx from the per-channel coefficients (g masked when `masked`); x,
 * y, dx stored as x16, y16, dx16. */
BN_INLINE void dx_row(const float *x, const float *y, const float *dy, const float *save_mean,
                      const float *save_rstd, const st_bn_grad_coef *grad, float *dx, int C,
                      size_t row, int x16, int masked, int y16, int dx16) {
    for (int c = 0; c < C; c++) {
        float xhat = st_bn_xhat(st_stored_load(x, x16, row + c), save_mean[c], save_rstd[c]);
        float g = st_bn_upstream(masked, y, y16, dy, row + c);
        st_stored_store(dx, dx16, row + c,
                        st_bn_backward_dx(g, xhat, grad->gamma_rstd[c], grad->mean_g[c],
                                          grad->mean_g_xhat[c]));
    }
}

void cpu_bn_backward(st_backend *be, const st_bn_desc *d, const float *x, const float *y,
                     const float *dy, const float *gamma, const float *save_mean,
                     const float *save_rstd, float *dx, float *dgamma, float *dbeta) {
    check_bf16_operands(be, d);
    const int C = d->c;
    ST_CHECK(!d->relu || y, "batch norm backward with fused ReLU needs the forward output y");
    const float *mask = d->relu ? y : NULL;
    double *sg = backward_sums(d, x, mask, dy, save_mean, save_rstd), *sgx = sg + C;
    /* dx takes the whole batch's sums: with sync all ranks' (dgamma/dbeta stay this rank's) */
    double *whole = sg, rows = (double)d->rows;
    if (d->sync) {
        whole = ST_MALLOC((size_t)2 * C * sizeof(double));
        memcpy(whole, sg, (size_t)2 * C * sizeof(double));
        st_bn_sync_grad_sums(whole, (size_t)2 * C, &rows);
    }
    float *coef = ST_MALLOC((size_t)C * 3 * sizeof(float));
    float *gamma_rstd = coef, *mean_g = gamma_rstd + C, *mean_gx = mean_g + C;
    st_bn_grad_coef grad = {dgamma, dbeta, gamma_rstd, mean_g, mean_gx};
    for (int c = 0; c < C; c++)
        st_bn_backward_channel(c, sg[c], sgx[c], whole[c], whole[C + c], rows, gamma[c],
                               save_rstd[c], &grad);
    if (whole != sg) free(whole);
    free(sg);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < d->rows; r++)
        BN_SPECIALISE4(dx_row, d->x_bf16, mask != NULL, d->y_bf16, d->dx_bf16, x, mask, dy,
                       save_mean, save_rstd, &grad, dx, C, (size_t)r * C);
    free(coef);
}
