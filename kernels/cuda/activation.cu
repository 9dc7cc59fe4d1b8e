/*
 * activation.cu: ReLU forward/backward and the residual add (optionally fused with ReLU) on flat
 * float arrays of n elements, elementwise with kernels/math/activation.h (as kernels/cpu/
 * activation.c). Backward masks with the forward output; dx is overwritten. In-place use
 * (y == x, y == a, dx == dy) is allowed: each thread reads its element before writing it.
 */
#include "../math/activation.h"
#include "device.cuh"

static __global__ void relu_forward_kernel(const float *x, float *y, size_t n) {
    ST_GRID_STRIDE(i, n) y[i] = st_relu(x[i]);
}

static __global__ void relu_backward_kernel(const float *y, const float *dy, float *dx, size_t n) {
    ST_GRID_STRIDE(i, n) dx[i] = st_relu_grad(y[i], dy[i]);
}

static __global__ void add_kernel(const float *a, const float *b, float *y, size_t n, int relu) {
    ST_GRID_STRIDE(i, n) y[i] = st_maybe_relu(a[i] + b[i], relu);
}

extern "C" void cuda_relu_forward(st_backend *be, const float *x, float *y, size_t n) {
    if (n == 0) return;
    relu_forward_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(x, y, n);
    CUDA_CHECK_LAUNCH("relu_forward_kernel");
}

extern "C" void cuda_relu_backward(st_backend *be, const float *y, const float *dy, float *dx,
                                   size_t n) {
    if (n == 0) return;
    relu_backward_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(y, dy, dx, n);
    CUDA_CHECK_LAUNCH("relu_backward_kernel");
}

extern "C" void cuda_add_forward(st_backend *be, const float *a, const float *b, float *y,
                                 size_t n, int relu) {
    if (n == 0) return;
    add_kernel<<<st_grid_for(n), ST_BLOCK, 0, cuda_ctx_of(be)->stream>>>(a, b, y, n, relu);
    CUDA_CHECK_LAUNCH("add_kernel");
}
