/*
 * pool.h: pooling math shared by kernels/cpu/pool.c, kernels/cuda/pool.cu and the host R-MAC of
 * infer/embedder.c.
 *
 * Max pool, NHWC, x (N, H, W, C) -> y (N, P, Q, C), window (R, S): the window of output (op, oq)
 * starts at input row op * stride_h - pad_top, column oq * stride_w - pad_left; st_pool_window_of
 * clips it to the input. Padding: pad_with_zero = 1 makes padded cells hold 0 and take part in
 * the max (Keras ZeroPadding2D followed by a valid pool), 0 makes them -inf (PyTorch), i.e.
 * skipped. A value replaces the running maximum only when strictly greater (st_pool_max), so the
 * FIRST maximal cell in row-major (r, s) order wins and NaN never does; backward sends each dy
 * to that cell (st_maxpool_window_argmax), nowhere when a padded zero wins.
 * The window functions work on a channel range [c0, c1) of one image xn (H, W, C): the CPU
 * passes all channels (vectorised inner loop), a CUDA thread its one channel.
 *
 * GeM (generalised mean) of one channel over HW positions:
 *   y = ((1/HW) * sum max(x, eps)^p)^(1/p)
 *   dL/dx = dy * y^(1-p) * max(x, eps)^(p-1) / HW   where x >= eps, else 0 (the clamp's gradient,
 *   as PyTorch's clamp(min=eps), passes at x == eps).
 */
#ifndef ST_MATH_POOL_H
#define ST_MATH_POOL_H

#include <stddef.h>

#include "../backend.h"
#include "defs.h"

/* GeM's clamp in the model head and the embedder (the value of the GeM paper's code). */
#define ST_GEM_EPS 1e-6f

/* Value of a padded cell of a max pool window. */
ST_HD float st_maxpool_pad_value(int pad_with_zero) { return pad_with_zero ? 0.0f : -INFINITY; }

/* The running maximum after seeing v: strictly greater replaces (first maximum kept, NaN loses). */
ST_HD float st_pool_max(float best, float v) { return v > best ? v : best; }

/* The window of one output clipped to the input: window cells [r0, r1) x [s0, s1) lie inside;
 * (h0, w0) is the input position of window cell (0, 0); a clipped window has padded cells. */
typedef struct st_pool_window {
    int h0, w0;
    int r0, r1, s0, s1;
    int clipped;
} st_pool_window;

ST_HD st_pool_window st_pool_window_of(const st_pool_desc *d, int op, int oq) {
    st_pool_window win;
    win.h0 = op * d->stride_h - d->pad_top;
    win.w0 = oq * d->stride_w - d->pad_left;
    win.r0 = win.h0 < 0 ? -win.h0 : 0;
    win.r1 = win.h0 + d->r > d->h ? d->h - win.h0 : d->r;
    win.s0 = win.w0 < 0 ? -win.w0 : 0;
    win.s1 = win.w0 + d->s > d->w ? d->w - win.w0 : d->s;
    win.clipped = win.r0 > 0 || win.s0 > 0 || win.r1 < d->r || win.s1 < d->s;
    return win;
}

ST_HD int st_pool_cell_padded(const st_pool_window *win, int r, int s) {
    return r < win->r0 || r >= win->r1 || s < win->s0 || s >= win->s1;
}

/* Offset within the image of channel 0 of window cell (r, s), an unpadded cell. */
ST_HD long st_pool_cell_offset(const st_pool_desc *d, const st_pool_window *win, int r, int s) {
    return ((long)(win->h0 + r) * d->w + (win->w0 + s)) * d->c;
}

/* Forward of one window: y[c - c0] = the window's maximum for channels [c0, c1). */
ST_HD void st_maxpool_window_max(const st_pool_desc *d, const st_pool_window *win,
                                 const float *xn, int c0, int c1, float *ST_RESTRICT y) {
    float start = win->clipped ? st_maxpool_pad_value(d->pad_with_zero) : -INFINITY;
    for (int c = c0; c < c1; c++) y[c - c0] = start;
    for (int r = win->r0; r < win->r1; r++)
        for (int s = win->s0; s < win->s1; s++) {
            const float *xc = xn + st_pool_cell_offset(d, win, r, s);
            for (int c = c0; c < c1; c++) y[c - c0] = st_pool_max(y[c - c0], xc[c]);
        }
}

/* The first-maximum scan of one window in row-major (r, s) order, channels [c0, c1):
 * from[c - c0] = offset within the image of the first maximal cell, -1 when a padded zero wins,
 * -2 when every cell is -inf or NaN; best (c1 - c0) is the running maximum (scratch). */
ST_HD void st_maxpool_window_argmax(const st_pool_desc *d, const st_pool_window *win,
                                    const float *xn, int c0, int c1, float *ST_RESTRICT best,
                                    long *ST_RESTRICT from) {
    for (int c = c0; c < c1; c++) {
        best[c - c0] = -INFINITY;
        from[c - c0] = -2;
    }
    for (int r = 0; r < d->r; r++)
        for (int s = 0; s < d->s; s++) {
            if (st_pool_cell_padded(win, r, s)) {
                if (!d->pad_with_zero) continue;
                for (int c = c0; c < c1; c++)
                    if (0.0f > best[c - c0]) {
                        best[c - c0] = 0.0f;
                        from[c - c0] = -1;
                    }
                continue;
            }
            long base = st_pool_cell_offset(d, win, r, s);
            for (int c = c0; c < c1; c++)
                if (xn[base + c] > best[c - c0]) {
                    best[c - c0] = xn[base + c];
                    from[c - c0] = base + c;
                }
        }
}

/* Global max backward: the index of the first of hw values (`stride` floats apart) equal to the
 * forward output y, the one position that takes the gradient; hw when there is none (NaN). */
ST_HD int st_gpool_max_position(const float *x, int hw, size_t stride, float y) {
    for (int j = 0; j < hw; j++)
        if (x[(size_t)j * stride] == y) return j;
    return hw;
}

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

/* Global avg / GeM output from the double sum of its hw terms (x, or st_gem_term for GeM). */
ST_HD float st_gpool_finish(st_gpool_kind kind, double sum, int hw, float p) {
    float mean = (float)(sum / hw);
    return kind == ST_GPOOL_GEM ? st_gem_finish(mean, p) : mean;
}

/* The per-channel factor of the gradient: dy * y^(1-p) / HW. */
ST_HD float st_gem_grad_coef(float y, float dy, float p, int hw) {
    return dy * powf(y, 1.0f - p) / (float)hw;
}

/* dL/dx for one element from its channel's factor (st_gem_grad_coef). */
ST_HD float st_gem_grad(float x, float coef, float p, float eps) {
    return x >= eps ? coef * st_gem_pow(x, p - 1.0f) : 0.0f;
}

#endif
