/*
 * batchnorm.c: batch normalisation over NHWC rows (rows = N*H*W, C channels, C contiguous),
 * training forward (batch statistics, running-statistics update), inference forward and backward,
 * each with an optional fused ReLU (d->relu). Formulas: kernels/math/batchnorm.h.
 *
 *   x, y, dy, dx: (rows, C); gamma, beta, save_mean, save_rstd, running_*: (C)
 *   running_mean/running_var may be NULL (statistics not tracked); dgamma/dbeta are overwritten.
 *
 * Reductions: rows are split across threads, each thread sums its rows per channel in double
 * (vectorised over C) into its own partial arrays, and the partials are added in thread order,
 * so results do not depend on scheduling. Variance uses sums of x - pivot (pivot = first row)
 * to avoid cancellation when |mean| >> std.
 */
#include <omp.h>
#include <stdlib.h>

#include "../check.h"
#include "../math/activation.h"
#include "../math/batchnorm.h"
#include "cpu_ops.h"

/* Per-thread partial sums: `arrays` arrays of C doubles per thread, zeroed. */
typedef struct {
    double *data;
    int threads, c, arrays;
} bn_partials;

static bn_partials partials_new(int c, int arrays) {
    bn_partials p;
    p.threads = omp_get_max_threads();
    p.c = c;
    p.arrays = arrays;
    p.data = ST_CALLOC((size_t)p.threads * arrays * c, sizeof(double));
    return p;
}

static double *partials_of(const bn_partials *p, int thread, int array) {
    return p->data + ((size_t)thread * p->arrays + array) * p->c;
}

/* total[c] = sum over threads of array `array` */
static void partials_sum(const bn_partials *p, int array, double *total) {
    for (int c = 0; c < p->c; c++) total[c] = 0.0;
    for (int t = 0; t < p->threads; t++) {
        const double *part = partials_of(p, t, array);
        for (int c = 0; c < p->c; c++) total[c] += part[c];
    }
}

/* y = relu?(x * scale + shift) per channel; scale/shift (C) */
static void bn_apply(const st_bn_desc *d, const float *x, const float *scale, const float *shift,
                     float *y) {
    const int C = d->c;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < d->rows; r++) {
        const float *xr = x + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        if (d->relu) {
            for (int c = 0; c < C; c++) yr[c] = st_relu(st_bn_apply(xr[c], scale[c], shift[c]));
        } else {
            for (int c = 0; c < C; c++) yr[c] = st_bn_apply(xr[c], scale[c], shift[c]);
        }
    }
}

void cpu_bn_forward_train(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                          const float *beta, float *y, float *save_mean, float *save_rstd,
                          float *running_mean, float *running_var) {
    (void)be;
    const int C = d->c;
    ST_CHECK(d->rows > 1, "batch norm training needs more than one value per channel (rows=%ld)",
             d->rows);
    const float *pivot = x; /* the first row */
    bn_partials part = partials_new(C, 2);
#pragma omp parallel
    {
        double *sum = partials_of(&part, omp_get_thread_num(), 0);
        double *sum2 = partials_of(&part, omp_get_thread_num(), 1);
#pragma omp for schedule(static)
        for (long r = 0; r < d->rows; r++) {
            const float *xr = x + (size_t)r * C;
            for (int c = 0; c < C; c++) {
                double v = (double)xr[c] - (double)pivot[c];
                sum[c] += v;
                sum2[c] += v * v;
            }
        }
    }
    double *sum = ST_MALLOC((size_t)C * 2 * sizeof(double)), *sum2 = sum + C;
    partials_sum(&part, 0, sum);
    partials_sum(&part, 1, sum2);
    free(part.data);

    float *scale = ST_MALLOC((size_t)C * 2 * sizeof(float)), *shift = scale + C;
    const double rows = (double)d->rows;
    for (int c = 0; c < C; c++) {
        double mean = st_bn_mean_from_sums(sum[c], pivot[c], rows);
        double var = st_bn_var_from_sums(sum[c], sum2[c], rows);
        float rstd = st_bn_rstd((float)var, d->eps);
        save_mean[c] = (float)mean;
        save_rstd[c] = rstd;
        scale[c] = st_bn_scale(gamma[c], rstd);
        shift[c] = st_bn_shift(beta[c], (float)mean, scale[c]);
        if (running_mean)
            running_mean[c] = st_bn_running_update(running_mean[c], (float)mean, d->momentum);
        if (running_var) {
            float unbiased = (float)st_bn_unbiased_var(var, rows);
            running_var[c] = st_bn_running_update(running_var[c], unbiased, d->momentum);
        }
    }
    free(sum);
    bn_apply(d, x, scale, shift, y);
    free(scale);
}

void cpu_bn_forward_infer(st_backend *be, const st_bn_desc *d, const float *x, const float *gamma,
                          const float *beta, const float *running_mean, const float *running_var,
                          float *y) {
    (void)be;
    const int C = d->c;
    float *scale = ST_MALLOC((size_t)C * 2 * sizeof(float)), *shift = scale + C;
    for (int c = 0; c < C; c++) {
        scale[c] = st_bn_scale(gamma[c], st_bn_rstd(running_var[c], d->eps));
        shift[c] = st_bn_shift(beta[c], running_mean[c], scale[c]);
    }
    bn_apply(d, x, scale, shift, y);
    free(scale);
}

void cpu_bn_backward(st_backend *be, const st_bn_desc *d, const float *x, const float *y,
                     const float *dy, const float *gamma, const float *save_mean,
                     const float *save_rstd, float *dx, float *dgamma, float *dbeta) {
    (void)be;
    const int C = d->c;
    const int relu = d->relu;
    ST_CHECK(!relu || y, "batch norm backward with fused ReLU needs the forward output y");
    /* pass 1: dbeta = sum g, dgamma = sum g * xhat, with g the (masked) upstream gradient */
    bn_partials part = partials_new(C, 2);
#pragma omp parallel
    {
        double *sg = partials_of(&part, omp_get_thread_num(), 0);
        double *sgx = partials_of(&part, omp_get_thread_num(), 1);
#pragma omp for schedule(static)
        for (long r = 0; r < d->rows; r++) {
            const float *xr = x + (size_t)r * C, *gr = dy + (size_t)r * C;
            const float *yr = relu ? y + (size_t)r * C : NULL;
            for (int c = 0; c < C; c++) {
                float g = relu ? st_relu_grad(yr[c], gr[c]) : gr[c];
                float xhat = (xr[c] - save_mean[c]) * save_rstd[c];
                sg[c] += g;
                sgx[c] += (double)g * xhat;
            }
        }
    }
    double *sg = ST_MALLOC((size_t)C * 2 * sizeof(double)), *sgx = sg + C;
    partials_sum(&part, 0, sg);
    partials_sum(&part, 1, sgx);
    free(part.data);

    /* pass 2: dx */
    float *gamma_rstd = ST_MALLOC((size_t)C * 3 * sizeof(float));
    float *mean_g = gamma_rstd + C, *mean_gx = mean_g + C;
    for (int c = 0; c < C; c++) {
        dbeta[c] = (float)sg[c];
        dgamma[c] = (float)sgx[c];
        gamma_rstd[c] = gamma[c] * save_rstd[c];
        mean_g[c] = (float)(sg[c] / (double)d->rows);
        mean_gx[c] = (float)(sgx[c] / (double)d->rows);
    }
    free(sg);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < d->rows; r++) {
        const float *xr = x + (size_t)r * C, *gr = dy + (size_t)r * C;
        const float *yr = relu ? y + (size_t)r * C : NULL;
        float *dxr = dx + (size_t)r * C;
        for (int c = 0; c < C; c++) {
            float g = relu ? st_relu_grad(yr[c], gr[c]) : gr[c];
            float xhat = (xr[c] - save_mean[c]) * save_rstd[c];
            dxr[c] = st_bn_backward_dx(g, xhat, gamma_rstd[c], mean_g[c], mean_gx[c]);
        }
    }
    free(gamma_rstd);
}
