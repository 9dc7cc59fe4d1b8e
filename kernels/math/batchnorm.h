/*
 * batchnorm.h: per-channel batch-norm formulas shared by kernels/cpu/batchnorm.c, the BN fold in
 * kernels/cpu/conv.c and the CUDA kernels.
 *
 * Semantics (PyTorch's): training normalises with the BIASED batch variance and updates
 *   running_mean = (1 - momentum) * running_mean + momentum * batch_mean
 *   running_var  = (1 - momentum) * running_var  + momentum * batch_var * rows / (rows - 1)
 * Forward is applied as one multiply-add per element: y = x * scale + shift with
 *   scale = gamma * rstd, shift = beta - mean * scale, rstd = 1 / sqrt(var + eps).
 * Backward with xhat = (x - mean) * rstd, g = dL/dy (after the ReLU mask when fused):
 *   dbeta = sum g, dgamma = sum g * xhat,
 *   dx = gamma * rstd * (g - dbeta / rows - xhat * dgamma / rows).
 * With st_bn_desc.sync (sync_bn, kernels/bn_sync.h) rows, mean, variance and the sums in dx are
 * the global batch's over the ranks; dgamma and dbeta stay this rank's part. With the bf16 flags
 * of st_bn_desc the arithmetic is this FP32 one on the stored values: a bf16 x is read widened,
 * y and dx are rounded as they are stored (math/bf16.h).
 */
#ifndef ST_MATH_BATCHNORM_H
#define ST_MATH_BATCHNORM_H

#include "../backend.h"
#include "activation.h"
#include "bf16.h"
#include "defs.h"

ST_HD float st_bn_rstd(float var, float eps) { return 1.0f / sqrtf(var + eps); }

/* The normalised input. */
ST_HD float st_bn_xhat(float x, float mean, float rstd) { return (x - mean) * rstd; }

/* g: the upstream gradient dy[i], masked (the op has a fused ReLU) by the forward output y, FP32
 * or, with y_bf16, bf16: then the mask is the value the bf16 conv after the BN read, so a positive
 * y that rounded to zero (an FP32 denormal) masks its gradient as that zero did in the conv. */
ST_HD float st_bn_upstream(int masked, const float *y, int y_bf16, const float *dy, size_t i) {
    return masked ? st_relu_grad(st_stored_load(y, y_bf16, i), dy[i]) : dy[i];
}

/* The multiply-add form of the affine normalisation. */
ST_HD float st_bn_scale(float gamma, float rstd) { return gamma * rstd; }
ST_HD float st_bn_shift(float beta, float mean, float scale) { return beta - mean * scale; }
ST_HD float st_bn_apply(float x, float scale, float shift) { return x * scale + shift; }

/* Mean and biased variance from sums of d = x - pivot (pivot: any value near the data, which
 * keeps E[d^2] - E[d]^2 free of cancellation when |mean| >> std). */
ST_HD double st_bn_mean_from_sums(double sum_d, double pivot, double rows) {
    return pivot + sum_d / rows;
}
ST_HD double st_bn_var_from_sums(double sum_d, double sum_d2, double rows) {
    double m = sum_d / rows;
    double var = sum_d2 / rows - m * m;
    return var > 0.0 ? var : 0.0;
}

/* PyTorch's running-statistics update; batch_var is already the unbiased one for the variance. */
ST_HD float st_bn_running_update(float running, float batch, float momentum) {
    return (1.0f - momentum) * running + momentum * batch;
}
ST_HD double st_bn_unbiased_var(double biased_var, double rows) {
    return biased_var * rows / (rows - 1.0);
}

/* Per-channel outputs of a training forward, arrays of C; running_* may be NULL. */
typedef struct st_bn_train_out {
    float *save_mean, *save_rstd, *scale, *shift, *running_mean, *running_var;
} st_bn_train_out;

/* Channel c of a training forward from the sums of d = x - pivot over the batch's rows (d->rows,
 * or the global batch's with sync_bn: kernels/bn_sync.h): the saved statistics, scale and
 * shift, and the running-statistics update. */
ST_HD void st_bn_train_channel(const st_bn_desc *d, int c, double rows, double sum_d,
                               double sum_d2, float pivot, float gamma, float beta,
                               const st_bn_train_out *out) {
    double mean = st_bn_mean_from_sums(sum_d, pivot, rows);
    double var = st_bn_var_from_sums(sum_d, sum_d2, rows);
    float rstd = st_bn_rstd((float)var, d->eps);
    out->save_mean[c] = (float)mean;
    out->save_rstd[c] = rstd;
    out->scale[c] = st_bn_scale(gamma, rstd);
    out->shift[c] = st_bn_shift(beta, (float)mean, out->scale[c]);
    if (out->running_mean)
        out->running_mean[c] = st_bn_running_update(out->running_mean[c], (float)mean, d->momentum);
    if (out->running_var) {
        float unbiased = (float)st_bn_unbiased_var(var, rows);
        out->running_var[c] = st_bn_running_update(out->running_var[c], unbiased, d->momentum);
    }
}

/* Per-channel coefficients of backward, arrays of C (dgamma, dbeta are the op's outputs). */
typedef struct st_bn_grad_coef {
    float *dgamma, *dbeta, *gamma_rstd, *mean_g, *mean_g_xhat;
} st_bn_grad_coef;

/* Channel c of backward from sum_g = sum g and sum_gx = sum g * xhat. The dx coefficients use
 * the sums and rows of the whole batch; dgamma and dbeta the sums over this process's rows
 * (local_*): with sync_bn (kernels/bn_sync.h) the trainer sums the gradient arena over the
 * ranks, so each rank leaves its own part; without it local and whole are the same. */
ST_HD void st_bn_backward_channel(int c, double local_g, double local_gx, double sum_g,
                                  double sum_gx, double rows, float gamma, float rstd,
                                  const st_bn_grad_coef *out) {
    out->dbeta[c] = (float)local_g;
    out->dgamma[c] = (float)local_gx;
    out->gamma_rstd[c] = gamma * rstd;
    out->mean_g[c] = (float)(sum_g / rows);
    out->mean_g_xhat[c] = (float)(sum_gx / rows);
}

/* dx of one element from the per-channel reductions (see the header comment). */
ST_HD float st_bn_backward_dx(float g, float xhat, float gamma_rstd, float mean_g,
                              float mean_g_xhat) {
    return gamma_rstd * (g - mean_g - xhat * mean_g_xhat);
}

#endif
