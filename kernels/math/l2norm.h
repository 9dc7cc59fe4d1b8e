/*
 * l2norm.h: row-wise L2 normalisation math shared by kernels/cpu/l2norm.c and the CUDA kernels.
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

ST_HD float st_l2_den(double sum_squares, float eps) {
    float norm = (float)sqrt(sum_squares);
    return norm > eps ? norm : eps;
}

/* Weight of y in dx = (dy - proj * y) / den: proj = y . dy when unclamped, 0 when clamped. */
ST_HD double st_l2_projection(double y_dot_y, double y_dot_dy) {
    return y_dot_y > 1.0 - ST_L2_UNIT_TOL ? y_dot_dy : 0.0;
}

ST_HD float st_l2_backward_dx(float dy, float y, float proj, float inv_den) {
    return (dy - proj * y) * inv_den;
}

#endif
