/*
 * l2norm.c: row-wise L2 normalisation of embeddings x (N, D) -> y (N, D), with norms (N) holding
 * the divisor max(||x||, eps) for backward. Formulas and the clamp convention are in
 * kernels/math/l2norm.h. Rows are independent and split across threads; per-row dot products
 * accumulate in double. dx is overwritten.
 */
#include "../math/l2norm.h"
#include "cpu_ops.h"

void cpu_l2norm_forward(st_backend *be, int n, int d, const float *x, float *y, float *norms,
                        float eps) {
    (void)be;
#pragma omp parallel for schedule(static) if ((long)n * d >= 32768)
    for (int i = 0; i < n; i++) {
        norms[i] = st_l2_normalize_row(x + (size_t)i * d, y + (size_t)i * d, d, eps);
    }
}

void cpu_l2norm_backward(st_backend *be, int n, int d, const float *y, const float *norms,
                         const float *dy, float *dx) {
    (void)be;
#pragma omp parallel for schedule(static) if ((long)n * d >= 32768)
    for (int i = 0; i < n; i++) {
        const float *yr = y + (size_t)i * d, *gr = dy + (size_t)i * d;
        float *dxr = dx + (size_t)i * d;
        double yy = 0.0, yg = 0.0;
        for (int j = 0; j < d; j++) {
            yy += (double)yr[j] * yr[j];
            yg += (double)yr[j] * gr[j];
        }
        float proj = (float)st_l2_projection(yy, yg);
        float inv = 1.0f / norms[i];
        for (int j = 0; j < d; j++) dxr[j] = st_l2_backward_dx(gr[j], yr[j], proj, inv);
    }
}
