/*
 * l2norm.h: row-wise L2 normalisation math shared by kernels/cpu/l2norm.c, the CUDA kernels and
 * the host normalisations of infer/ (embedder, top-k preparation, PCA output).
 *
 *   y = x / den, den = max(||x||, eps); norms[i] stores den (the divisor actually used).
 * Backward (F.normalize semantics: no gradient flows through the clamp):
 *   unclamped (||x|| >= eps): dx = (dy - y * (y . dy)) / den
 *   clamped   (||x|| <  eps): dx = dy / den
 * Backward receives y and den only; the case is recovered from y: an unclamped row has
 * ||y|| = 1 up to float rounding (~1e-6 relative), a clamped one ||y|| = ||x|| / eps < 1.
 * Rows with ||y||^2 within ST_L2_UNIT_TOL of 1 count as unclamped; the only rows misjudged are
 * those with ||x|| within 0.05% below eps, right at the kink where no gradient is well defined.
 */
#ifndef ST_MATH_L2NORM_H
#define ST_MATH_L2NORM_H

#include "defs.h"

#define ST_L2_UNIT_TOL 1e-3

/* The clamp wherever embeddings are L2-normalised (torch.nn.functional.normalize's default). */
#define ST_L2_EPS 1e-12f

ST_HD float st_l2_den(double sum_squares, float eps) {
    float norm = (float)sqrt(sum_squares);
    return norm > eps ? norm : eps;
}

/* Sum of squares of a row of d floats, in double. */
ST_HD double st_l2_sum_squares(const float *x, int d) {
    double ss = 0.0;
    for (int j = 0; j < d; j++) ss += (double)x[j] * x[j];
    return ss;
}

/* y = x / den for a row of d floats (y may be x), as one multiplication by the float 1 / den. */
ST_HD void st_l2_scale_row(const float *x, float *y, int d, float den) {
    float inv = 1.0f / den;
    for (int j = 0; j < d; j++) y[j] = x[j] * inv;
}

/* y = x / max(||x||, eps) for a row of d floats (y may be x); returns the divisor. The forward
 * of kernels/cpu/l2norm.c and every host normalisation of embeddings (infer/): one formula. */
ST_HD float st_l2_normalize_row(const float *x, float *y, int d, float eps) {
    float den = st_l2_den(st_l2_sum_squares(x, d), eps);
    st_l2_scale_row(x, y, d, den);
    return den;
}

/* Weight of y in dx = (dy - proj * y) / den: proj = y . dy when unclamped, 0 when clamped. */
ST_HD double st_l2_projection(double y_dot_y, double y_dot_dy) {
    return y_dot_y > 1.0 - ST_L2_UNIT_TOL ? y_dot_dy : 0.0;
}

ST_HD float st_l2_backward_dx(float dy, float y, float proj, float inv_den) {
    return (dy - proj * y) * inv_den;
}

#endif
