/*
 * pool.cu: max pooling with explicit padding and global (avg / max / GeM) pooling, NHWC, with the
 * exact rules of kernels/cpu/pool.c through the same functions of kernels/math/pool.h (window
 * clipping, window max, first-maximum scan, GeM), each thread on its one channel:
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

static __global__ void maxpool_forward_kernel(const st_pool_desc d, const float *x, float *y) {
    size_t total = (size_t)d.n * d.p * d.q * d.c;
    ST_GRID_STRIDE(i, total) {
        st_nhwc_at out = st_nhwc_of(i, d.p, d.q, d.c); /* y = op, x = oq */
        st_pool_window win = st_pool_window_of(&d, out.y, out.x);
        float best; /* in a register, stored once */
        st_maxpool_window_max(&d, &win, x + out.n * d.h * d.w * d.c, out.c, out.c + 1, &best);
        y[i] = best;
    }
}

/* Input offset (within the image) of the first maximal cell of window (op, oq) for channel c,
 * -1 when a padded zero wins, -2 when every cell is -inf or NaN (as the CPU scan). */
static __device__ long window_argmax(const st_pool_desc &d, const float *xn, int op, int oq,
                                     int c) {
    st_pool_window win = st_pool_window_of(&d, op, oq);
    float best;
    long from;
    st_maxpool_window_argmax(&d, &win, xn, c, c + 1, &best, &from);
    return from;
}

static __device__ int ceil_div_floor0(int a, int b) { return a <= 0 ? 0 : (a + b - 1) / b; }

static __global__ void maxpool_backward_kernel(const st_pool_desc d, const float *x,
                                               const float *dy, float *dx) {
    size_t total = (size_t)d.n * d.h * d.w * d.c;
    ST_GRID_STRIDE(i, total) {
        st_nhwc_at in = st_nhwc_of(i, d.h, d.w, d.c);
        int c = in.c, h = in.y, w = in.x;
        size_t n = in.n;
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
            for (int j = 0; j < d.hw; j++) best = st_pool_max(best, xn[(size_t)j * d.c]);
            y[i] = best;
            continue;
        }
        double acc = 0.0;
        for (int j = 0; j < d.hw; j++) {
            float v = xn[(size_t)j * d.c];
            acc += d.kind == ST_GPOOL_GEM ? st_gem_term(v, d.p, d.eps) : v;
        }
        y[i] = st_gpool_finish(d.kind, acc, d.hw, d.p);
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
        int at = st_gpool_max_position(xn, d.hw, (size_t)d.c, y[i]);
        for (int j = 0; j < d.hw; j++) dxn[(size_t)j * d.c] = j == at ? dy[i] : 0.0f;
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
