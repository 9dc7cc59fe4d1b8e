/*
 * pool.c: max pooling with explicit padding and global (avg / max / GeM) pooling, NHWC.
 *
 * Max pool: x (N, H, W, C) -> y (N, P, Q, C). Padded cells hold 0 and take part in the max when
 * d->pad_with_zero (Keras ZeroPadding2D + valid pool: matters when x can be negative, as in
 * ResNetV2), else they are -inf, i.e. ignored (PyTorch). Backward sends each dy to the FIRST
 * maximal cell of its window in row-major (r, s) order, the rule PyTorch's CPU kernel follows;
 * when a padded zero wins the gradient goes nowhere. dx is overwritten.
 * Global pool: x (N, HW, C) -> y (N, C). Window clipping, the first-maximum scan and the GeM
 * math are kernels/math/pool.h (shared with CUDA).
 * Threads split max pool forward over (image, output row), max pool backward over images (each
 * thread owns its dx slice) and global pooling over images; channels are the contiguous,
 * vectorised axis.
 */
#include <math.h>
#include <stdlib.h>

#include "../check.h"
#include "../math/pool.h"
#include "cpu_ops.h"

void cpu_maxpool_forward(st_backend *be, const st_pool_desc *d, const float *x, float *y) {
    (void)be;
    const int C = d->c;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < d->n; n++) {
        for (int op = 0; op < d->p; op++) {
            for (int oq = 0; oq < d->q; oq++) {
                const float *xn = x + (size_t)n * d->h * d->w * C;
                float *yo = y + (((size_t)n * d->p + op) * d->q + oq) * C;
                st_pool_window win = st_pool_window_of(d, op, oq);
                st_maxpool_window_max(d, &win, xn, 0, C, yo);
            }
        }
    }
}

/* Each window's first-maximum scan covers all channels at once (best, from: per-thread
 * scratch of C), then adds its dy at the winning offsets. */
void cpu_maxpool_backward(st_backend *be, const st_pool_desc *d, const float *x, const float *y,
                          const float *dy, float *dx) {
    (void)be;
    (void)y; /* the argmax is recomputed from x so ties resolve by scan order, not by value */
    const int C = d->c;
    const size_t image = (size_t)d->h * d->w * C;
#pragma omp parallel
    {
        float *best = ST_MALLOC((size_t)C * sizeof *best);
        long *from = ST_MALLOC((size_t)C * sizeof *from);
#pragma omp for schedule(static)
        for (int n = 0; n < d->n; n++) {
            float *dxn = dx + n * image;
            for (size_t i = 0; i < image; i++) dxn[i] = 0.0f;
            for (int op = 0; op < d->p; op++) {
                for (int oq = 0; oq < d->q; oq++) {
                    const float *go = dy + (((size_t)n * d->p + op) * d->q + oq) * C;
                    st_pool_window win = st_pool_window_of(d, op, oq);
                    st_maxpool_window_argmax(d, &win, x + n * image, 0, C, best, from);
                    for (int c = 0; c < C; c++)
                        if (from[c] >= 0) dxn[from[c]] += go[c];
                }
            }
        }
        free(best);
        free(from);
    }
}

void cpu_gpool_forward(st_backend *be, const st_gpool_desc *d, const float *x, float *y) {
    (void)be;
    const int C = d->c, HW = d->hw;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < d->n; n++) {
        const float *xn = x + (size_t)n * HW * C;
        float *yn = y + (size_t)n * C;
        if (d->kind == ST_GPOOL_MAX) {
            for (int c = 0; c < C; c++) yn[c] = -INFINITY;
            for (int i = 0; i < HW; i++) {
                const float *xi = xn + (size_t)i * C;
                for (int c = 0; c < C; c++) yn[c] = st_pool_max(yn[c], xi[c]);
            }
            continue;
        }
        double *acc = ST_CALLOC((size_t)C, sizeof *acc);
        for (int i = 0; i < HW; i++) {
            const float *xi = xn + (size_t)i * C;
            if (d->kind == ST_GPOOL_GEM)
                for (int c = 0; c < C; c++) acc[c] += st_gem_term(xi[c], d->p, d->eps);
            else
                for (int c = 0; c < C; c++) acc[c] += xi[c];
        }
        for (int c = 0; c < C; c++) yn[c] = st_gpool_finish(d->kind, acc[c], HW, d->p);
        free(acc);
    }
}

void cpu_gpool_backward(st_backend *be, const st_gpool_desc *d, const float *x, const float *y,
                        const float *dy, float *dx) {
    (void)be;
    const int C = d->c, HW = d->hw;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < d->n; n++) {
        const float *xn = x + (size_t)n * HW * C, *yn = y + (size_t)n * C;
        const float *gn = dy + (size_t)n * C;
        float *dxn = dx + (size_t)n * HW * C;
        if (d->kind == ST_GPOOL_AVG) {
            float inv = 1.0f / (float)HW;
            for (int i = 0; i < HW; i++)
                for (int c = 0; c < C; c++) dxn[(size_t)i * C + c] = gn[c] * inv;
        } else if (d->kind == ST_GPOOL_GEM) {
            float *coef = ST_MALLOC((size_t)C * sizeof *coef);
            for (int c = 0; c < C; c++) coef[c] = st_gem_grad_coef(yn[c], gn[c], d->p, HW);
            for (int i = 0; i < HW; i++)
                for (int c = 0; c < C; c++) {
                    size_t at = (size_t)i * C + c;
                    dxn[at] = st_gem_grad(xn[at], coef[c], d->p, d->eps);
                }
            free(coef);
        } else {
            /* max: the first position holding the maximum (y) takes the whole gradient */
            for (size_t i = 0; i < (size_t)HW * C; i++) dxn[i] = 0.0f;
            for (int c = 0; c < C; c++) {
                int at = st_gpool_max_position(xn + c, HW, (size_t)C, yn[c]);
                if (at < HW) dxn[(size_t)at * C + c] = gn[c];
            }
        }
    }
}
