/*
 * pool.c: max pooling with explicit padding and global (avg / max / GeM) pooling, NHWC.
 *
 * Max pool: x (N, H, W, C) -> y (N, P, Q, C). Padded cells hold 0 and take part in the max when
 * d->pad_with_zero (Keras ZeroPadding2D + valid pool: matters when x can be negative, as in
 * ResNetV2), else they are -inf, i.e. ignored (PyTorch). Backward sends each dy to the FIRST
 * maximal cell of its window in row-major (r, s) order, the rule PyTorch's CPU kernel follows;
 * when a padded zero wins the gradient goes nowhere. dx is overwritten.
 * Global pool: x (N, HW, C) -> y (N, C); GeM math in kernels/math/pool.h.
 * Threads split max pool forward over (image, output row), max pool backward over images (each
 * thread owns its dx slice) and global pooling over images; channels are the contiguous,
 * vectorised axis.
 */
#include <math.h>
#include <stdlib.h>

#include "../check.h"
#include "../math/pool.h"
#include "cpu_ops.h"

/* The window of output (op, oq) clipped to the input: rows [r0, r1), columns [s0, s1) of the
 * window lie inside; a window that was clipped contains padded cells. */
typedef struct {
    int r0, r1, s0, s1;
    int clipped;
} pool_window;

static pool_window window_of(const st_pool_desc *d, int op, int oq) {
    pool_window win;
    int h0 = op * d->stride_h - d->pad_top, w0 = oq * d->stride_w - d->pad_left;
    win.r0 = h0 < 0 ? -h0 : 0;
    win.r1 = h0 + d->r > d->h ? d->h - h0 : d->r;
    win.s0 = w0 < 0 ? -w0 : 0;
    win.s1 = w0 + d->s > d->w ? d->w - w0 : d->s;
    win.clipped = win.r0 > 0 || win.s0 > 0 || win.r1 < d->r || win.s1 < d->s;
    return win;
}

static int is_padded(const pool_window *win, int r, int s) {
    return r < win->r0 || r >= win->r1 || s < win->s0 || s >= win->s1;
}

void cpu_maxpool_forward(st_backend *be, const st_pool_desc *d, const float *x, float *y) {
    (void)be;
    const int C = d->c;
    const float pad = st_maxpool_pad_value(d->pad_with_zero);
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < d->n; n++) {
        for (int op = 0; op < d->p; op++) {
            for (int oq = 0; oq < d->q; oq++) {
                const float *xn = x + (size_t)n * d->h * d->w * C;
                float *yo = y + (((size_t)n * d->p + op) * d->q + oq) * C;
                pool_window win = window_of(d, op, oq);
                float start = win.clipped ? pad : -INFINITY;
                for (int c = 0; c < C; c++) yo[c] = start;
                int h0 = op * d->stride_h - d->pad_top, w0 = oq * d->stride_w - d->pad_left;
                for (int r = win.r0; r < win.r1; r++) {
                    for (int s = win.s0; s < win.s1; s++) {
                        const float *xc = xn + ((size_t)(h0 + r) * d->w + (w0 + s)) * C;
                        for (int c = 0; c < C; c++) yo[c] = xc[c] > yo[c] ? xc[c] : yo[c];
                    }
                }
            }
        }
    }
}

/* Backward scans each window in row-major order keeping, per channel, the best value so far and
 * the input offset it came from (-1: a padded zero). Strict '>' keeps the first maximum. */
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
            const float *xn = x + n * image;
            float *dxn = dx + n * image;
            for (size_t i = 0; i < image; i++) dxn[i] = 0.0f;
            for (int op = 0; op < d->p; op++) {
                for (int oq = 0; oq < d->q; oq++) {
                    const float *go = dy + (((size_t)n * d->p + op) * d->q + oq) * C;
                    pool_window win = window_of(d, op, oq);
                    int h0 = op * d->stride_h - d->pad_top, w0 = oq * d->stride_w - d->pad_left;
                    for (int c = 0; c < C; c++) {
                        best[c] = -INFINITY;
                        from[c] = -2; /* nothing yet (all -inf) */
                    }
                    for (int r = 0; r < d->r; r++) {
                        for (int s = 0; s < d->s; s++) {
                            if (is_padded(&win, r, s)) {
                                if (!d->pad_with_zero) continue;
                                for (int c = 0; c < C; c++) {
                                    if (0.0f > best[c]) {
                                        best[c] = 0.0f;
                                        from[c] = -1;
                                    }
                                }
                                continue;
                            }
                            long base = ((long)(h0 + r) * d->w + (w0 + s)) * C;
                            for (int c = 0; c < C; c++) {
                                if (xn[base + c] > best[c]) {
                                    best[c] = xn[base + c];
                                    from[c] = base + c;
                                }
                            }
                        }
                    }
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
                for (int c = 0; c < C; c++) yn[c] = xi[c] > yn[c] ? xi[c] : yn[c];
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
        for (int c = 0; c < C; c++) {
            float mean = (float)(acc[c] / HW);
            yn[c] = d->kind == ST_GPOOL_GEM ? st_gem_finish(mean, d->p) : mean;
        }
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
                for (int i = 0; i < HW; i++) {
                    if (xn[(size_t)i * C + c] == yn[c]) {
                        dxn[(size_t)i * C + c] = gn[c];
                        break;
                    }
                }
            }
        }
    }
}
