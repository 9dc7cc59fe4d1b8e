/*
 * pool.cu: max pooling with explicit padding and global (avg / max / GeM) pooling, NHWC, with the
 * exact rules of kernels/cpu/pool.c and the math of kernels/math/pool.h:
 *   - max pool forward starts from the pad value (0 with pad_with_zero, else -inf) when the
 *     window is clipped, -inf otherwise, and keeps x > best (NaN never wins);
 *   - max pool backward sends dy to the FIRST maximal cell of the window in row-major (r, s)
 *     order, padded zeros included when pad_with_zero (then the gradient goes nowhere);
 *   - global max backward sends dy to the first position equal to y.
 * Max pool backward is a gather: each input cell visits the windows that contain it in (p, q)
 * order and adds dy where it is that window's argmax, so there are no atomics and the sum order
 * equals the CPU's. dx is overwritten.
 *   x (N, H, W, C), y (N, P, Q, C); global: x (N, HW, C), y (N, C).
 */
#include "../math/pool.h"
#include "device.cuh"

/* The part [r0, r1) x [s0, s1) of the window of output (op, oq) that lies inside the input. */
struct pool_window {
    int h0, w0; /* input coordinates of window cell (0, 0) */
    int r0, r1, s0, s1;
    int clipped;
};

static __device__ pool_window window_of(const st_pool_desc d, int op, int oq) {
    pool_window win;
    win.h0 = op * d.stride_h - d.pad_top;
    win.w0 = oq * d.stride_w - d.pad_left;
    win.r0 = win.h0 < 0 ? -win.h0 : 0;
    win.r1 = win.h0 + d.r > d.h ? d.h - win.h0 : d.r;
    win.s0 = win.w0 < 0 ? -win.w0 : 0;
    win.s1 = win.w0 + d.s > d.w ? d.w - win.w0 : d.s;
    win.clipped = win.r0 > 0 || win.s0 > 0 || win.r1 < d.r || win.s1 < d.s;
    return win;
}

static __global__ void maxpool_forward_kernel(const st_pool_desc d, const float *x, float *y) {
    size_t total = (size_t)d.n * d.p * d.q * d.c;
    ST_GRID_STRIDE(i, total) {
        int c = (int)(i % d.c);
        size_t pixel = i / d.c;
        int oq = (int)(pixel % d.q), op = (int)((pixel / d.q) % d.p);
        size_t n = pixel / ((size_t)d.q * d.p);
        pool_window win = window_of(d, op, oq);
        float best = win.clipped ? st_maxpool_pad_value(d.pad_with_zero) : -INFINITY;
        const float *xn = x + n * d.h * d.w * d.c;
        for (int r = win.r0; r < win.r1; r++)
            for (int s = win.s0; s < win.s1; s++) {
                float v = xn[((size_t)(win.h0 + r) * d.w + (win.w0 + s)) * d.c + c];
                best = v > best ? v : best;
            }
        y[i] = best;
    }
}

/* Input offset (within the image) of the first maximal cell of window (op, oq) for channel c,
 * -1 when a padded zero wins, -2 when every cell is -inf or NaN (as the CPU scan). */
static __device__ long window_argmax(const st_pool_desc &d, const float *xn, int op, int oq,
                                     int c) {
    pool_window win = window_of(d, op, oq);
    float best = -INFINITY;
    long from = -2;
    for (int r = 0; r < d.r; r++)
        for (int s = 0; s < d.s; s++) {
            if (r < win.r0 || r >= win.r1 || s < win.s0 || s >= win.s1) {
                if (d.pad_with_zero && 0.0f > best) {
                    best = 0.0f;
                    from = -1;
                }
                continue;
            }
            long at = ((long)(win.h0 + r) * d.w + (win.w0 + s)) * d.c + c;
            if (xn[at] > best) {
                best = xn[at];
                from = at;
            }
        }
    return from;
}

static __device__ int ceil_div_floor0(int a, int b) { return a <= 0 ? 0 : (a + b - 1) / b; }

static __global__ void maxpool_backward_kernel(const st_pool_desc d, const float *x,
                                               const float *dy, float *dx) {
    size_t total = (size_t)d.n * d.h * d.w * d.c;
    ST_GRID_STRIDE(i, total) {
        int c = (int)(i % d.c);
        size_t pixel = i / d.c;
        int w = (int)(pixel % d.w), h = (int)((pixel / d.w) % d.h);
        size_t n = pixel / ((size_t)d.w * d.h);
        const float *xn = x + n * d.h * d.w * d.c;
        long self = (long)(((size_t)h * d.w + w) * d.c + c);
        /* windows containing row h: op * stride_h - pad_top <= h <= that + R - 1 */
        int hp = h + d.pad_top, wp = w + d.pad_left;
        int op0 = ceil_div_floor0(hp - d.r + 1, d.stride_h), op1 = hp / d.stride_h;
        int oq0 = ceil_div_floor0(wp - d.s + 1, d.stride_w), oq1 = wp / d.stride_w;
        if (op1 > d.p - 1) op1 = d.p - 1;
        if (oq1 > d.q - 1) oq1 = d.q - 1;
        float grad = 0.0f;
        for (int op = op0; op <= op1; op++)
            for (int oq = oq0; oq <= oq1; oq++)
                if (window_argmax(d, xn, op, oq, c) == self)
                    grad += dy[((n * d.p + op) * d.q + oq) * d.c + c];
        dx[i] = grad;
    }
}

extern "C" void cuda_maxpool_forward(st_backend *be, const st_pool_desc *d, const float *x,
                                     float *y) {
    size_t total = (size_t)d->n * d->p * d->q * d->c;
    if (total == 0) return;
    maxpool_forward_kernel<<<st_grid_for(total), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(*d, x, y);
    CUDA_CHECK_LAUNCH("maxpool_forward_kernel");
}

extern "C" void cuda_maxpool_backward(st_backend *be, const st_pool_desc *d, const float *x,
                                      const float *y, const float *dy, float *dx) {
    (void)y; /* the argmax is recomputed from x so ties resolve by scan order, not by value */
    size_t total = (size_t)d->n * d->h * d->w * d->c;
    if (total == 0) return;
    maxpool_backward_kernel<<<st_grid_for(total), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(*d, x,
                                                                                       dy, dx);
    CUDA_CHECK_LAUNCH("maxpool_backward_kernel");
}

/* One thread per (n, c): HW is walked with C-strided, warp-coalesced reads. */
static __global__ void gpool_forward_kernel(const st_gpool_desc d, const float *x, float *y) {
    size_t total = (size_t)d.n * d.c;
    ST_GRID_STRIDE(i, total) {
        int c = (int)(i % d.c);
        size_t n = i / d.c;
        const float *xn = x + n * d.hw * d.c + c;
        if (d.kind == ST_GPOOL_MAX) {
            float best = -INFINITY;
            for (int j = 0; j < d.hw; j++) {
                float v = xn[(size_t)j * d.c];
                best = v > best ? v : best;
            }
            y[i] = best;
            continue;
        }
        double acc = 0.0;
        for (int j = 0; j < d.hw; j++) {
            float v = xn[(size_t)j * d.c];
            acc += d.kind == ST_GPOOL_GEM ? st_gem_term(v, d.p, d.eps) : v;
        }
        float mean = (float)(acc / d.hw);
        y[i] = d.kind == ST_GPOOL_GEM ? st_gem_finish(mean, d.p) : mean;
    }
}

static __global__ void gpool_backward_kernel(const st_gpool_desc d, const float *x, const float *y,
                                             const float *dy, float *dx) {
    size_t total = (size_t)d.n * d.hw * d.c;
    ST_GRID_STRIDE(i, total) {
        int c = (int)(i % d.c);
        size_t n = i / ((size_t)d.hw * d.c);
        float g = dy[n * d.c + c];
        if (d.kind == ST_GPOOL_AVG) {
            dx[i] = g * (1.0f / (float)d.hw);
        } else { /* the channel factor is recomputed per element: same value, no extra pass */
            float coef = st_gem_grad_coef(y[n * d.c + c], g, d.p, d.hw);
            dx[i] = st_gem_grad(x[i], coef, d.p, d.eps);
        }
    }
}

static __global__ void gpool_max_backward_kernel(const st_gpool_desc d, const float *x,
                                                 const float *y, const float *dy, float *dx) {
    size_t total = (size_t)d.n * d.c;
    ST_GRID_STRIDE(i, total) {
        int c = (int)(i % d.c);
        size_t n = i / d.c;
        const float *xn = x + n * d.hw * d.c + c;
        float *dxn = dx + n * d.hw * d.c + c;
        int taken = 0;
        for (int j = 0; j < d.hw; j++) {
            int first = !taken && xn[(size_t)j * d.c] == y[i];
            dxn[(size_t)j * d.c] = first ? dy[i] : 0.0f;
            taken |= first;
        }
    }
}

extern "C" void cuda_gpool_forward(st_backend *be, const st_gpool_desc *d, const float *x,
                                   float *y) {
    size_t total = (size_t)d->n * d->c;
    if (total == 0) return;
    gpool_forward_kernel<<<st_grid_for(total), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(*d, x, y);
    CUDA_CHECK_LAUNCH("gpool_forward_kernel");
}

extern "C" void cuda_gpool_backward(st_backend *be, const st_gpool_desc *d, const float *x,
                                    const float *y, const float *dy, float *dx) {
    cudaStream_t stream = cuda_ctx_of(be)->stream;
    if (d->kind == ST_GPOOL_MAX) {
        size_t total = (size_t)d->n * d->c;
        if (total == 0) return;
        gpool_max_backward_kernel<<<st_grid_for(total), ST_BLOCK, 0, stream>>>(*d, x, y, dy, dx);
        CUDA_CHECK_LAUNCH("gpool_max_backward_kernel");
        return;
    }
    size_t total = (size_t)d->n * d->hw * d->c;
    if (total == 0) return;
    gpool_backward_kernel<<<st_grid_for(total), ST_BLOCK, 0, stream>>>(*d, x, y, dy, dx);
    CUDA_CHECK_LAUNCH("gpool_backward_kernel");
}
