/*
 * pool.h: per-element pooling math shared by kernels/cpu/pool.c and the CUDA kernels.
 *
 * Max pool padding: pad_with_zero = 1 makes padded cells hold 0 and take part in the max (Keras
 * ZeroPadding2D followed by a valid pool), 0 makes them -inf (PyTorch), i.e. skipped.
 * GeM (generalised mean) of one channel over HW positions:
 *   y = ((1/HW) * sum max(x, eps)^p)^(1/p)
 *   dL/dx = dy * y^(1-p) * max(x, eps)^(p-1) / HW   where x >= eps, else 0 (the clamp's gradient,
 *   as PyTorch's clamp(min=eps), passes at x == eps).
 */
#ifndef ST_MATH_POOL_H
#define ST_MATH_POOL_H

#include "defs.h"

/* Value of a padded cell of a max pool window. */
ST_HD float st_maxpool_pad_value(int pad_with_zero) { return pad_with_zero ? 0.0f : -INFINITY; }

ST_HD float st_gem_clamp(float x, float eps) { return x > eps ? x : eps; }

/* x^p for x > 0: repeated multiplication when p is a small positive integer (GeM's usual p = 3;
 * within (p-1) ulp, like powf, and several times faster), powf otherwise. */
ST_HD float st_gem_pow(float x, float p) {
    int ip = (int)p;
    if ((float)ip == p && ip >= 1 && ip <= 8) {
        float r = x;
        for (int i = 1; i < ip; i++) r *= x;
        return r;
    }
    return powf(x, p);
}

/* One term of the GeM sum. */
ST_HD float st_gem_term(float x, float p, float eps) { return st_gem_pow(st_gem_clamp(x, eps), p); }

/* y from the mean of the terms. */
ST_HD float st_gem_finish(float mean_term, float p) { return powf(mean_term, 1.0f / p); }

/* The per-channel factor of the gradient: dy * y^(1-p) / HW. */
ST_HD float st_gem_grad_coef(float y, float dy, float p, int hw) {
    return dy * powf(y, 1.0f - p) / (float)hw;
}

/* dL/dx for one element from its channel's factor (st_gem_grad_coef). */
ST_HD float st_gem_grad(float x, float coef, float p, float eps) {
    return x >= eps ? coef * st_gem_pow(x, p - 1.0f) : 0.0f;
}

#endif
