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
 */
#ifndef ST_MATH_BATCHNORM_H
#define ST_MATH_BATCHNORM_H

#include "defs.h"

ST_HD float st_bn_rstd(float var, float eps) { return 1.0f / sqrtf(var + eps); }

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

/* dx of one element from the per-channel reductions (see the header comment). */
ST_HD float st_bn_backward_dx(float g, float xhat, float gamma_rstd, float mean_g,
                              float mean_g_xhat) {
    return gamma_rstd * (g - mean_g - xhat * mean_g_xhat);
}

#endif
